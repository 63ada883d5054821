//! Every file and directory name of `LIMA_HOME`, of an instance directory,
//! of the download cache and of the cidata volume, defined once (the seed's
//! layout).
//!
//! This module sits at the bottom of the crate and imports nothing, so that
//! `spec` (which reads `_config/default.yaml` and `_templates`) and `store`
//! (which owns the paths built from these names, see [`crate::store::paths`])
//! can both use it.

/// File names inside an instance directory (seed: "Instance directory").
pub mod files {
    pub const LIMA_VERSION: &str = "lima-version";
    pub const LIMA_YAML: &str = "lima.yaml";
    pub const PROTECTED: &str = "protected";
    pub const CLOUD_CONFIG: &str = "cloud-config.yaml";
    pub const CIDATA_ISO: &str = "cidata.iso";
    pub const ANSIBLE_INVENTORY: &str = "ansible-inventory.yaml";
    pub const BASE_DISK: &str = "basedisk";
    pub const DIFF_DISK: &str = "diffdisk";
    /// Lima ≥ 2.1 names (read for compatibility, never created).
    pub const DISK_V21: &str = "disk";
    pub const IMAGE_V21: &str = "image";
    pub const ISO_V21: &str = "iso";
    pub const KERNEL: &str = "kernel";
    pub const KERNEL_CMDLINE: &str = "kernel.cmdline";
    pub const INITRD: &str = "initrd";
    pub const QEMU_PID: &str = "qemu.pid";
    pub const QMP_SOCK: &str = "qmp.sock";
    pub const QEMU_EFI_CODE: &str = "qemu-efi-code.fd";
    pub const SERIAL_LOG: &str = "serial.log";
    pub const SERIAL_SOCK: &str = "serial.sock";
    pub const SERIALP_LOG: &str = "serialp.log";
    pub const SERIALP_SOCK: &str = "serialp.sock";
    pub const SERIALV_LOG: &str = "serialv.log";
    pub const SERIALV_SOCK: &str = "serialv.sock";
    pub const SSH_SOCK: &str = "ssh.sock";
    pub const SSH_CONFIG: &str = "ssh.config";
    pub const VNC_DISPLAY: &str = "vncdisplay";
    pub const VNC_PASSWORD: &str = "vncpassword";
    pub const GA_SOCK: &str = "ga.sock";
    pub const HA_PID: &str = "ha.pid";
    pub const HA_SOCK: &str = "ha.sock";
    pub const HA_STDOUT_LOG: &str = "ha.stdout.log";
    pub const HA_STDERR_LOG: &str = "ha.stderr.log";
    /// Held (flock) by the host agent for its whole life: "running" means locked.
    pub const HA_LOCK: &str = "ha.lock";
    /// Taken (flock) by every actor that changes the instance.
    pub const MUTATION_LOCK: &str = "instance.lock";
    /// Reconciler status and conditions (this project's addition).
    pub const STATUS: &str = "status.json";
    /// Which `apply` source owns the instance (this project's addition).
    pub const OWNER: &str = "owner";
    /// The reconciler's step events (JSON lines; this project's addition).
    pub const RECONCILE_LOG: &str = "reconcile.log";
    /// Written when a delete failed part-way and the instance was put back:
    /// why, for `list` (Broken) and for the next delete (this project's addition).
    pub const DELETE_FAILED: &str = "delete-failed";
    /// Fingerprint of the configuration the running VM was started with.
    pub const STARTED_SPEC: &str = "started.json";
    /// A suspended VM's state: QEMU's migration stream (this project's addition).
    pub const VM_STATE: &str = "vmstate";
    /// What the saved state was made with (fingerprints, SSH port, instance
    /// id); written last, so it is the commit marker of a suspend.
    pub const VM_STATE_META: &str = "vmstate.json";
    /// Where QEMU writes the stream until the suspend completes (a `.tmp`,
    /// so a forced stop sweeps an interrupted one).
    pub const VM_STATE_PARTIAL: &str = "vmstate.partial.tmp";
    /// Directory for relative `portForwards[].hostSocket` paths.
    pub const SOCK_DIR: &str = "sock";
    /// Prefix of the temporary directory an image download is staged in
    /// (`.download.tmp.<pid>.<n>`, removed when done or found stale).
    pub const DOWNLOAD_TEMP_DIR: &str = "download";
    /// Suffixes of run-time files removed after a forced stop.
    pub const RUNTIME_SUFFIXES: &[&str] = &[".pid", ".sock", ".tmp"];
}

/// Names inside the download cache (seed: "Download cache"; reference §7.1):
/// `<cache_dir>/download/by-url-sha256/<sha256 of the URL>/…`.
pub mod cache_files {
    pub const DOWNLOAD_DIR: &str = "download";
    pub const BY_URL_SHA256: &str = "by-url-sha256";
    /// The URL, no trailing newline.
    pub const URL: &str = "url";
    /// The bytes as downloaded (still compressed).
    pub const DATA: &str = "data";
    /// `Last-Modified` of the response that produced `data`.
    pub const TIME: &str = "time";
    /// `Content-Type` of the response that produced `data`.
    pub const TYPE: &str = "type";
    /// `ETag` of the response that produced `data` (this project's addition).
    pub const ETAG: &str = "etag";
    /// `<algo>.digest`, e.g. `sha256.digest` holding `sha256:<hex>`.
    pub const DIGEST_SUFFIX: &str = ".digest";
    /// A resumable partial download (Lima ≥ 2 uses the same name).
    pub const DATA_PART: &str = "data.part";
    /// Validators of the response `data.part` came from (JSON; this project's addition).
    pub const DATA_PART_INFO: &str = "data.part.info";
    /// Prefix of Lima's in-progress downloads `data.tmp.<pid>.<n>`.
    pub const DATA_TMP_PREFIX: &str = "data.tmp.";
    /// Raw conversions kept by Lima for VZ; removed with their entry.
    pub const IMGCONV_DIR: &str = "imgconv";
    /// `verified-local/<sha256 of the path>`: a local image's digest as
    /// last verified, with the file's identity then (this project's
    /// addition; see `image::local_memo`).
    pub const VERIFIED_LOCAL_DIR: &str = "verified-local";
}

/// File names inside `_config`.
pub mod config_files {
    pub const USER_KEY: &str = "user";
    pub const USER_PUB_KEY: &str = "user.pub";
    pub const DEFAULT_YAML: &str = "default.yaml";
    pub const OVERRIDE_YAML: &str = "override.yaml";
    pub const BASE_YAML: &str = "base.yaml";
}

/// Files on the cidata ISO (seed: "cidata.iso"; reference §3.2).
pub mod cidata_files {
    /// The ISO 9660 volume label cloud-init's NoCloud datasource looks for.
    pub const VOLUME_LABEL: &str = "cidata";
    /// Longest file name (one path component) the cidata ISO may hold.
    pub const MAX_NAME_LEN: usize = 30;
    pub const USER_DATA: &str = "user-data";
    pub const META_DATA: &str = "meta-data";
    pub const NETWORK_CONFIG: &str = "network-config";
    pub const LIMA_ENV: &str = "lima.env";
    pub const PARAM_ENV: &str = "param.env";
    pub const ETC_ENVIRONMENT: &str = "etc_environment";
    pub const BOOT_SH: &str = "boot.sh";
    pub const GUEST_AGENT: &str = "lima-guestagent";
    /// The nerdctl-full archive, renamed to fit the name limit.
    pub const NERDCTL_ARCHIVE: &str = "nerdctl-full.tgz";
    /// Directories of provision files: `provision.<mode>/<8-digit index>`.
    pub const PROVISION_DIR_PREFIX: &str = "provision.";
    /// The guest agent's virtio-serial port name.
    pub const VIRTIO_PORT: &str = "io.lima-vm.guest_agent.0";
}

/// Paths inside the guest that the boot scripts write and the host reads.
pub mod guest_files {
    /// Where the per-boot hook mounts the cidata volume.
    pub const CIDATA_MNT: &str = "/mnt/lima-cidata";
    /// The cloud-init per-boot hook that mounts cidata and runs `boot.sh`.
    pub const BOOT_HOOK: &str = "/var/lib/cloud/scripts/per-boot/00-lima.boot.sh";
    /// Without a cidata volume (a KubeVirt export's NoCloud volume carries
    /// only user-data and network-data), cloud-init's `write_files` puts the
    /// volume's files here; it stands in for [`CIDATA_MNT`].
    pub const FOLDED_CIDATA_DIR: &str = "/var/lib/lima-cidata";
    /// In [`FOLDED_CIDATA_DIR`]: the per-boot hook, linked to [`BOOT_HOOK`]
    /// by `runcmd` after the first boot's run.
    pub const FOLDED_BOOT_HOOK: &str = "boot-hook.sh";
    /// Holds the instance id once `/etc/environment` is final for SSH sessions.
    pub const SSH_READY: &str = "/run/lima-ssh-ready";
    /// Holds the instance id once fuse allows `allow_other` (reverse-sshfs).
    pub const FUSE_READY: &str = "/run/lima-fuse-ready";
    /// Holds the instance id once `boot.sh` has finished.
    pub const BOOT_DONE: &str = "/run/lima-boot-done";
    /// Exists while a reboot is pending (boot-done is then not written).
    pub const REBOOT_REQUIRED: &str = "/run/lima-reboot-required";
    /// Per-boot provision results: `<8-digit index>.status` and `.log`
    /// (format: `crate::cidata` module documentation).
    pub const PROVISION_STATUS_DIR: &str = "/run/lima-provision";
}

/// Names inside `_disk/<DISK>`.
pub mod disk_files {
    pub const DATA_DISK: &str = "datadisk";
    pub const IN_USE_BY: &str = "in_use_by";
}

/// `$LIMA_HOME/_config`: the SSH identity and `default.yaml`, `override.yaml`,
/// `base.yaml` (names in [`config_files`]).
pub const CONFIG_DIR: &str = "_config";
/// The seed's disk directory.
pub const DISK_DIR: &str = "_disk";
/// Lima ≥ 1.0 names it `_disks`; disks found there are listed too.
pub const DISKS_DIR_LIMA: &str = "_disks";
/// `$LIMA_HOME/_templates`: the user's templates (`template:NAME`).
pub const TEMPLATES_DIR: &str = "_templates";
/// This project's small caches inside `LIMA_HOME` (e.g. the accelerator probe).
pub const LIMA_CACHE_DIR: &str = "_cache";
/// Names of the Git sources' cache: `_cache/git/<key of the URL>/…`.
pub mod git_files {
    /// In `LIMA_HOME/_cache`: one directory per repository URL.
    pub const GIT_DIR: &str = "git";
    /// The bare mirror `git fetch` updates.
    pub const MIRROR: &str = "mirror.git";
    /// Commits checked out once each: `snapshots/<commit>`.
    pub const SNAPSHOTS: &str = "snapshots";
    /// Taken (flock) while fetching.
    pub const LOCK: &str = "lock";
    /// The repository URL, for humans.
    pub const URL: &str = "url";
    /// In the mirror: the remote's default branch, when no ref is given.
    pub const REMOTE_HEAD: &str = "refs/lima/remote-head";
    /// In `_daemon`: the watch daemon's status of each Git source (JSON).
    pub const SOURCES_STATUS: &str = "sources.json";
}
/// In [`LIMA_CACHE_DIR`]: the cached KVM probe results of the QEMU driver.
pub const QEMU_ACCEL_CACHE: &str = "qemu-accel.json";

/// `LIMA_HOME` when `$LIMA_HOME` is unset: `~/.lima`.
pub const DEFAULT_LIMA_HOME: &str = ".lima";
/// The download cache under `$XDG_CACHE_HOME` (or `~/.cache`): `lima`.
pub const CACHE_DIR_NAME: &str = "lima";
/// `~/.cache`, used when `$XDG_CACHE_HOME` is unset.
pub const XDG_CACHE_DEFAULT: &str = ".cache";
/// Templates installed beside the binary: `<prefix>/share/lima/templates`.
pub const SHARE_TEMPLATES_DIR: &str = "share/lima/templates";
