//! `user-data` (cloud-config; reference §3.3).

use super::yaml::{Y, emit};
use super::{CidataError, Facts, check_line};
use crate::spec::typed::MountType;
use crate::store::paths::guest_files;

/// The per-boot hook: mount the cidata volume read-only and run `boot.sh`.
fn boot_hook() -> String {
    format!(
        r#"#!/bin/sh
# Written by limactl through cloud-init: runs the boot scripts of the cidata volume.
set -eu
LIMA_CIDATA_MNT={mnt}
LIMA_CIDATA_DEV=/dev/disk/by-label/cidata
if ! mountpoint -q "$LIMA_CIDATA_MNT"; then
  # (Usually mounted already by the early start; the volume is read-only.)
  mkdir -p "$LIMA_CIDATA_MNT"
  chmod 0700 "$LIMA_CIDATA_MNT"
  mount -o ro,mode=0700,dmode=0700,overriderockperm,exec,uid=0 "$LIMA_CIDATA_DEV" "$LIMA_CIDATA_MNT"
fi
export LIMA_CIDATA_MNT
exec "$LIMA_CIDATA_MNT"/boot.sh
"#,
        mnt = guest_files::CIDATA_MNT
    )
}

/// The per-boot hook of a folded volume: its files are already on the root
/// disk (`write_files`), nothing to mount.
fn folded_boot_hook() -> String {
    format!(
        r#"#!/bin/sh
# Written by limactl through cloud-init's write_files: runs the boot scripts that
# write_files put in {dir} (there is no cidata volume to mount).
set -eu
LIMA_CIDATA_MNT={dir}
export LIMA_CIDATA_MNT
exec "$LIMA_CIDATA_MNT"/boot.sh
"#,
        dir = guest_files::FOLDED_CIDATA_DIR
    )
}

/// The first boot's `runcmd` of a folded volume: link the per-boot hook for
/// later boots, then run it. (cloud-init's per-boot scripts run before
/// `runcmd` in the final stage, so the first boot runs `boot.sh` once.)
fn folded_runcmd() -> String {
    format!(
        "mkdir -p {hook_dir} && ln -sf {dir}/{hook} {boot_hook}\n{dir}/{hook}\n",
        hook_dir = guest_files::BOOT_HOOK
            .rsplit_once('/')
            .map_or("/", |(d, _)| d),
        dir = guest_files::FOLDED_CIDATA_DIR,
        hook = guest_files::FOLDED_BOOT_HOOK,
        boot_hook = guest_files::BOOT_HOOK,
    )
}

/// How user-data is made.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Flavor<'a> {
    /// For the cidata ISO: the per-boot hook mounts the volume.
    Iso,
    /// Lima's `cloud-config.yaml` "for reference": no hook, no mounts, no resolv.conf.
    Reference,
    /// No volume beside user-data (a KubeVirt `cloudInitNoCloud`): the
    /// volume's other files go into `write_files` under
    /// [`guest_files::FOLDED_CIDATA_DIR`] and `runcmd` starts `boot.sh`.
    Folded(&'a [super::CidataFile]),
}

/// The last `bootcmd`: mount the cidata volume and start `boot.sh` in the
/// background through systemd-run, so boot scripts run while cloud-init's
/// later stages (each a new Python process, seconds under emulation) are
/// still going; the per-boot hook then only waits for that run. Not used
/// with `upgradePackages` (its package upgrade would race provisioning).
///
/// Before that, unless plain, it writes `/etc/environment` and the session
/// marker itself: cloud-init's init stage runs before sshd starts, so the
/// host's first SSH connection already logs in with the final environment
/// and may stay on as the ControlMaster (no second connection). Likewise the
/// user managers' cgroup delegation (`20-rootless-base.sh delegate`): the
/// user manager that first connection starts then has it, and the module
/// needs no `daemon-reload` (two seconds of a boot under emulation).
///
/// The kernel modules (`00-modprobe.sh`, most of a second under emulation)
/// load in a unit of their own without default dependencies, so at once and
/// beside cloud-init's Python on the other vCPU, not after its stage; by the
/// time boot.sh reaches that module there is nothing left to load.
///
/// A folded volume (`folded`) has nothing to mount: its files are on the
/// root disk from the first boot's `write_files` on, which runs after
/// `bootcmd`, so the early start happens from the second boot on.
fn early_boot(plain: bool, folded: bool) -> String {
    let mnt = if folded {
        guest_files::FOLDED_CIDATA_DIR
    } else {
        guest_files::CIDATA_MNT
    };
    let env_now = if plain {
        String::new()
    } else {
        format!(
            "  systemd-run --quiet --no-block --collect --unit=lima-modprobe-early --property=DefaultDependencies=no {mnt}/{modprobe} || true\n  LIMA_CIDATA_MNT={mnt} LIMA_CIDATA_IID=$(sed -n 's/^LIMA_CIDATA_IID=//p' {mnt}/lima.env) {mnt}/{script} || true\n  {mnt}/{rootless} delegate || true\n",
            modprobe = super::scripts::MODPROBE_MODULE,
            script = super::scripts::ETC_ENVIRONMENT_MODULE,
            rootless = super::scripts::ROOTLESS_BASE_MODULE,
        )
    };
    let (comment, guard, mount) = if folded {
        (
            "(from the second boot on; the per-boot hook waits for them)",
            format!("[ -x {mnt}/boot.sh ] && "),
            String::new(),
        )
    } else {
        (
            "(the per-boot hook waits for them)",
            String::new(),
            format!(
                "  mkdir -p {mnt} && chmod 0700 {mnt}\n  mountpoint -q {mnt} || mount -o ro,mode=0700,dmode=0700,overriderockperm,exec,uid=0 /dev/disk/by-label/cidata {mnt}\n"
            ),
        )
    };
    format!(
        r#"# lima: start the boot scripts now {comment}
if {guard}command -v systemd-run >/dev/null 2>&1; then
{mount}{env_now}  systemd-run --quiet --no-block --collect --unit=lima-boot-early --setenv=LIMA_CIDATA_MNT={mnt} --setenv=LIMA_BOOT_EARLY=1 {mnt}/boot.sh || true
fi
"#
    )
}

/// The first `bootcmd`: give every NIC the name network-config expects (a
/// rename can fail when the interface was already up), then wait up to 30 s
/// for an IPv4 address on eth0 so that `mode: boot` scripts have a network.
/// Each `MAC=name` pair is one shell-quoted word: a Linux interface name may
/// hold `$`, `;` or quotes.
fn nic_heal(f: &Facts) -> Result<String, CidataError> {
    let mut pairs = Vec::new();
    for (i, n) in f.nics.iter().enumerate() {
        check_line("network", &format!("NIC {i} MAC address"), &n.mac, false)?;
        check_line(
            "network",
            &format!("NIC {i} interface"),
            &n.interface,
            false,
        )?;
        pairs.push(crate::ssh::shell_quote(&format!(
            "{}={}",
            n.mac, n.interface
        )));
    }
    Ok(format!(
        r#"# lima: NIC names and the slirp address
for lima_nic in {pairs}; do
  lima_mac=${{lima_nic%%=*}}
  lima_want=${{lima_nic#*=}}
  for lima_dev in /sys/class/net/*; do
    [ "$(cat "$lima_dev/address" 2>/dev/null)" = "$lima_mac" ] || continue
    lima_cur=${{lima_dev##*/}}
    if [ "$lima_cur" != "$lima_want" ] && [ ! -e "/sys/class/net/$lima_want" ]; then
      ip link set dev "$lima_cur" down && ip link set dev "$lima_cur" name "$lima_want" && ip link set dev "$lima_want" up
    fi
  done
done
if [ -e /sys/class/net/{nic} ]; then
  lima_i=0
  while [ "$lima_i" -lt 30 ] && ! ip -4 -o addr show dev {nic} 2>/dev/null | grep -q ' inet '; do
    sleep 1
    lima_i=$((lima_i + 1))
  done
fi
"#,
        pairs = pairs.join(" "),
        nic = super::SLIRP_NIC,
    ))
}

/// A `mode: boot` script as a bootcmd entry. cloud-init joins all entries
/// into one `sh` script, so the script is written to a file and run by the
/// interpreter of its `#!` line, else `sh` (an `exit` in it ends only itself;
/// no exec permission is needed, /run is often `noexec`). PARAM_* are
/// exported first because the cidata volume is not mounted yet (one line
/// each, so a value must stay on its line).
fn boot_cmd(index: usize, script: &str, f: &Facts) -> Result<String, CidataError> {
    let mut params = String::new();
    for (k, v) in &f.param {
        super::env::check_env_pair("param", k, v)?;
        params.push_str(&format!("PARAM_{k}={v}\n"));
    }
    let mut delim = format!("LIMA_BOOT_SCRIPT_{index}");
    while script.lines().any(|l| l == delim) {
        delim.push('_');
    }
    let mut body = script.to_string();
    if !body.ends_with('\n') {
        body.push('\n');
    }
    Ok(format!(
        r#"# lima: provision[{index}] (mode: boot)
while IFS= read -r lima_line; do [ -n "$lima_line" ] && export "$lima_line"; done <<'LIMA_PARAM_EOF'
{params}LIMA_PARAM_EOF
lima_script=$(mktemp /run/lima-boot-script.XXXXXX)
cat >"$lima_script" <<'{delim}'
{body}{delim}
lima_interp=sh
IFS= read -r lima_first <"$lima_script" || true
case "$lima_first" in '#!'*) lima_interp=${{lima_first#??}} ;; esac
$lima_interp "$lima_script" </dev/null || echo "LIMA: provision[{index}] (mode: boot) failed with exit status $?" >&2
rm -f "$lima_script"
"#
    ))
}

/// user-data of a [`Flavor`]. Refuses a value that would break the guest
/// file cloud-init writes it into (an fstab line, `/etc/timezone`, a boot
/// command).
pub(crate) fn user_data(f: &Facts, flavor: Flavor) -> Result<String, CidataError> {
    let iso = matches!(flavor, Flavor::Iso);
    let folded = match flavor {
        Flavor::Folded(files) => Some(files),
        _ => None,
    };
    let mut top: Vec<(&str, Y)> = vec![(
        "growpart",
        Y::map([("mode", Y::s("auto")), ("devices", Y::strs(["/"]))]),
    )];
    if f.upgrade_packages {
        top.push(("package_update", Y::Bool(true)));
        top.push(("package_upgrade", Y::Bool(true)));
        top.push(("package_reboot_if_required", Y::Bool(true)));
    }
    let mut mounts = Vec::new();
    if f.rosetta_enabled {
        mounts.push(Y::strs([
            "vz-rosetta",
            "/mnt/lima-rosetta",
            "virtiofs",
            "defaults",
            "0",
            "0",
        ]));
    }
    if matches!(f.mount_type, MountType::NineP | MountType::Virtiofs) {
        for (i, m) in f.mounts.iter().enumerate() {
            // cloud-init joins the fields with tabs into one /etc/fstab line.
            check_line(
                "fstab",
                &format!("mounts[{i}].mountPoint"),
                &m.mount_point,
                false,
            )?;
            check_line("fstab", &format!("mounts[{i}] tag"), &m.tag, false)?;
            check_line("fstab", &format!("mounts[{i}] options"), &m.options, false)?;
            if m.options.contains(char::is_whitespace) {
                return Err(CidataError::InvalidValue {
                    what: "fstab",
                    key: format!("mounts[{i}] options"),
                    message: format!(
                        "the options {:?} hold whitespace, which would split the fstab line; fix `mounts[{i}].9p`",
                        m.options
                    ),
                });
            }
            mounts.push(Y::strs([
                m.tag.as_str(),
                m.mount_point.as_str(),
                m.fstype.as_str(),
                m.options.as_str(),
                "0",
                "0",
            ]));
        }
    }
    if iso && !mounts.is_empty() {
        top.push(("mounts", Y::Seq(mounts)));
    }
    if let Some(tz) = &f.timezone {
        check_line("user-data", "timezone", tz, false)?;
        top.push(("timezone", Y::s(tz)));
    }
    top.push(("hostname", Y::s(&f.hostname)));
    // A resolvable hostname keeps sudo from stalling on DNS.
    top.push(("manage_etc_hosts", Y::Bool(true)));

    let mut user: Vec<(&str, Y)> = vec![("name", Y::s(&f.user)), ("uid", Y::Int(i64::from(f.uid)))];
    if !f.comment.is_empty() {
        user.push(("gecos", Y::s(&f.comment)));
    }
    user.push(("homedir", Y::s(&f.home)));
    user.push(("shell", Y::s(&f.shell)));
    if f.passwordless_sudo {
        user.push(("sudo", Y::s("ALL=(ALL) NOPASSWD:ALL")));
        user.push(("lock_passwd", Y::Bool(true)));
    } else {
        user.push(("sudo", Y::s("ALL=(ALL) ALL")));
        user.push(("lock_passwd", Y::Bool(false)));
    }
    // Lima writes `ssh-authorized-keys`; cloud-init accepts both spellings,
    // but its schema check (warning on every boot) knows only this one.
    user.push(("ssh_authorized_keys", Y::strs(f.ssh_keys.iter().cloned())));
    top.push(("users", Y::Seq(vec![Y::map(user)])));

    if iso {
        top.push((
            "write_files",
            Y::Seq(vec![Y::map([
                ("content", Y::s(boot_hook())),
                ("owner", Y::s("root:root")),
                ("path", Y::s(guest_files::BOOT_HOOK)),
                ("permissions", Y::s("0755")),
            ])]),
        ));
    }
    if let Some(files) = folded {
        top.push(("write_files", folded_write_files(files)?));
    }
    if (iso || folded.is_some()) && !f.dns.is_empty() {
        top.push(("manage_resolv_conf", Y::Bool(true)));
        top.push((
            "resolv_conf",
            Y::map([("nameservers", Y::strs(f.dns.iter().cloned()))]),
        ));
    }
    if let Some(remove) = f.ca_remove_defaults {
        let mut ca: Vec<(&str, Y)> = vec![("remove_defaults", Y::Bool(remove))];
        if !f.ca_trusted.is_empty() {
            ca.push(("trusted", Y::strs(f.ca_trusted.iter().cloned())));
        }
        top.push(("ca_certs", Y::map(ca)));
    }
    let mut bootcmd = vec![Y::s(nic_heal(f)?)];
    for (i, script) in &f.boot_scripts {
        bootcmd.push(Y::s(boot_cmd(*i, script, f)?));
    }
    if (iso || folded.is_some()) && !f.upgrade_packages {
        bootcmd.push(Y::s(early_boot(f.plain, folded.is_some())));
    }
    top.push(("bootcmd", Y::Seq(bootcmd)));
    if folded.is_some() {
        top.push(("runcmd", Y::Seq(vec![Y::s(folded_runcmd())])));
    }

    Ok(format!("#cloud-config\n{}", emit(&Y::map(top))))
}

/// The volume's files as `write_files` entries under
/// [`guest_files::FOLDED_CIDATA_DIR`], root's only (as the volume is mounted
/// `mode=0700`), then the per-boot hook.
fn folded_write_files(files: &[super::CidataFile]) -> Result<Y, CidataError> {
    let mut out = Vec::new();
    for file in files {
        let text = std::str::from_utf8(&file.data).map_err(|_| CidataError::InvalidValue {
            what: "write_files",
            key: file.path.clone(),
            message: "the file is not UTF-8 text, which cloud-config cannot carry as is".into(),
        })?;
        let permissions = if file.mode & 0o111 != 0 {
            "0700"
        } else {
            "0600"
        };
        out.push(Y::map([
            ("content", Y::s(text)),
            ("owner", Y::s("root:root")),
            (
                "path",
                Y::s(format!("{}/{}", guest_files::FOLDED_CIDATA_DIR, file.path)),
            ),
            ("permissions", Y::s(permissions)),
        ]));
    }
    out.push(Y::map([
        ("content", Y::s(folded_boot_hook())),
        ("owner", Y::s("root:root")),
        (
            "path",
            Y::s(format!(
                "{}/{}",
                guest_files::FOLDED_CIDATA_DIR,
                guest_files::FOLDED_BOOT_HOOK
            )),
        ),
        ("permissions", Y::s("0700")),
    ]));
    Ok(Y::Seq(out))
}
