//! The boot scripts shipped on the cidata volume (this project's own; `guest/`).

/// The module that writes `/etc/environment` and the session marker (also
/// run from `bootcmd`, before sshd starts).
pub(crate) const ETC_ENVIRONMENT_MODULE: &str = "boot.Linux/01-etc-environment.sh";

/// The module that sets up what rootless engines need; its `delegate` step (the
/// user managers' cgroup delegation) is also run from `bootcmd`, before sshd starts.
pub(crate) const ROOTLESS_BASE_MODULE: &str = "boot.Linux/20-rootless-base.sh";

/// The module that loads the kernel modules containers need; also started from
/// `bootcmd` as a unit of its own, beside cloud-init's init stage.
pub(crate) const MODPROBE_MODULE: &str = "boot.Linux/00-modprobe.sh";

/// (path on the volume, content); all are executable.
pub(crate) const GUEST_SCRIPTS: &[(&str, &str)] = &[
    (
        MODPROBE_MODULE,
        include_str!("guest/boot.Linux/00-modprobe.sh"),
    ),
    (
        "boot.Linux/00-reboot-if-required.sh",
        include_str!("guest/boot.Linux/00-reboot-if-required.sh"),
    ),
    (
        "boot.Linux/00-systemd-user-group.sh",
        include_str!("guest/boot.Linux/00-systemd-user-group.sh"),
    ),
    (
        ETC_ENVIRONMENT_MODULE,
        include_str!("guest/boot.Linux/01-etc-environment.sh"),
    ),
    (
        "boot.Linux/04-persistent-data-volume.sh",
        include_str!("guest/boot.Linux/04-persistent-data-volume.sh"),
    ),
    (
        "boot.Linux/05-lima-disks.sh",
        include_str!("guest/boot.Linux/05-lima-disks.sh"),
    ),
    (
        "boot.Linux/05-lima-mounts.sh",
        include_str!("guest/boot.Linux/05-lima-mounts.sh"),
    ),
    (
        "boot.Linux/06-etc-hosts.sh",
        include_str!("guest/boot.Linux/06-etc-hosts.sh"),
    ),
    (
        "boot.Linux/09-host-dns-setup.sh",
        include_str!("guest/boot.Linux/09-host-dns-setup.sh"),
    ),
    (
        "boot.Linux/10-alpine-cgroups.sh",
        include_str!("guest/boot.Linux/10-alpine-cgroups.sh"),
    ),
    (
        ROOTLESS_BASE_MODULE,
        include_str!("guest/boot.Linux/20-rootless-base.sh"),
    ),
    (
        "boot.Linux/25-guestagent-base.sh",
        include_str!("guest/boot.Linux/25-guestagent-base.sh"),
    ),
    (
        "boot.Linux/26-host-services.sh",
        include_str!("guest/boot.Linux/26-host-services.sh"),
    ),
    (
        "boot.Linux/30-install-packages.sh",
        include_str!("guest/boot.Linux/30-install-packages.sh"),
    ),
    (
        "boot.Linux/35-setup-packages.sh",
        include_str!("guest/boot.Linux/35-setup-packages.sh"),
    ),
    (
        "boot.Linux/40-install-containerd.sh",
        include_str!("guest/boot.Linux/40-install-containerd.sh"),
    ),
    (
        "boot.essential.Linux/00-alpine-user-group.sh",
        include_str!("guest/boot.essential.Linux/00-alpine-user-group.sh"),
    ),
    (
        "boot.essential.Linux/01-alpine-ash-as-bash.sh",
        include_str!("guest/boot.essential.Linux/01-alpine-ash-as-bash.sh"),
    ),
    (
        "boot.essential.Linux/05-guest-home.sh",
        include_str!("guest/boot.essential.Linux/05-guest-home.sh"),
    ),
    (
        "boot.essential.Linux/10-alpine-prep.sh",
        include_str!("guest/boot.essential.Linux/10-alpine-prep.sh"),
    ),
    (
        crate::store::paths::cidata_files::BOOT_SH,
        include_str!("guest/boot.sh"),
    ),
    (
        "util/lima-provision.sh",
        include_str!("guest/util/lima-provision.sh"),
    ),
    (
        "util/provision-data.sh",
        include_str!("guest/util/provision-data.sh"),
    ),
    (
        "util/provision-yq.sh",
        include_str!("guest/util/provision-yq.sh"),
    ),
];
