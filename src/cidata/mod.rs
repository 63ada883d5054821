//! The cloud-init NoCloud seed `cidata.iso` (seed "cidata.iso"; reference §3).
//!
//! [`generate`] turns a filled `lima.yaml` into the files of the volume (pure:
//! it reads only `caCerts.files` and the guest agent binary); [`write_iso`]
//! writes them as ISO 9660 + Rock Ridge + Joliet, label `cidata`. The host agent
//! regenerates the ISO on every start with a new instance id (`iid-<unix
//! seconds>`), so cloud-init re-runs its per-instance modules each start.
//!
//! # Layout
//!
//! `user-data`, `meta-data`, `network-config`, `lima.env`, `param.env`,
//! `etc_environment`, `boot.sh`, `boot.essential.Linux/*.sh` (also in plain
//! mode), `boot.Linux/*.sh`, `util/*.sh` (on `PATH` while `boot.sh` runs),
//! `provision.{system,user,dependency,data,yq}/NNNNNNNN` (NNNNNNNN = the
//! zero-padded index in the provision list) and, when given, `lima-guestagent`.
//! `mode: boot` scripts go into user-data's `bootcmd`; `mode: ansible` is not
//! shipped. The boot scripts are this project's own (in `src/cidata/guest/`).
//!
//! # What the guest reports back
//!
//! Markers (each holds the instance id and a newline; see
//! [`crate::store::paths::guest_files`]): `/run/lima-ssh-ready` once
//! `/etc/environment` is final (`01-etc-environment.sh`; in plain mode right
//! after the essential modules), `/run/lima-fuse-ready` (reverse-sshfs with
//! mounts, `35-setup-packages.sh`) and `/run/lima-boot-done` when `boot.sh` has
//! run everything (not while `/run/lima-reboot-required` exists). boot-done is
//! written also when modules or provision scripts failed: look at the status
//! files to tell.
//!
//! Provision results, per boot, in `/run/lima-provision/` (the directory is
//! emptied when `boot.sh` starts; one pair per `data`, `yq`, `system`, `user`
//! and `dependency` entry that ran, named by its 8-digit index):
//!
//! * `NNNNNNNN.status` (0644, written atomically after the script ended):
//!   `key=value` lines `mode=<mode>`, `exit=<exit status>`, `iid=<instance id>`,
//!   `started=<date -Iseconds>`, `finished=<date -Iseconds>`. `exit=0` is
//!   success; 127 for `yq` means no yq was available.
//! * `NNNNNNNN.log` (0640, root:<user's group>): stdout and stderr of the run,
//!   at most the last 256 KiB. The same lines, prefixed `[<mode> NNNNNNNN] `,
//!   are in `/var/log/cloud-init-output.log`.
//!
//! A failing script does not stop the others; `boot.sh` then exits 1, which
//! cloud-init records as a failed `scripts_per_boot`. `boot.sh` logs its own
//! steps as `LIMA <date -Iseconds>| …` lines.

mod env;
mod iso;
mod network;
mod scripts;
mod userdata;
mod yaml;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use iso::write_iso;

use crate::spec::Spec;
use crate::spec::defaults::{expand_host_path, hostname_for, mount_tag};
use crate::spec::typed::{MountType, Os, Provision, VmType};
use crate::store::paths::cidata_files as names;
use userdata::Flavor;

/// The slirp network (reference §3.3, QEMU user networking).
pub const SLIRP_NETWORK: &str = "192.168.5.0/24";
/// The host, as the guest sees it.
pub const SLIRP_GATEWAY: &str = "192.168.5.2";
/// QEMU's built-in DNS forwarder.
pub const SLIRP_DNS: &str = "192.168.5.3";
/// The guest's address (first DHCP lease).
pub const SLIRP_IP_ADDRESS: &str = "192.168.5.15";
/// The slirp NIC's name in the guest.
pub const SLIRP_NIC: &str = "eth0";

/// Everything [`generate`] needs besides the configuration.
#[derive(Clone, Copy, Debug)]
pub struct CidataInput<'a> {
    /// The resolved configuration (`spec::Resolved::spec`, or
    /// `Spec::from_filled` of a filled, validated `lima.yaml`).
    pub spec: &'a Spec,
    pub name: &'a str,
    pub instance_dir: &'a Path,
    /// `iid-<unix seconds>`, new at every start.
    pub iid: &'a str,
    /// Public keys (`_config/user.pub`, and `~/.ssh/*.pub` per `ssh.loadDotSSHPubKeys`).
    pub authorized_keys: &'a [String],
    /// limactl's `--debug` (`LIMA_CIDATA_DEBUG`).
    pub debug: bool,
    /// The host user's home (`~` in `caCerts.files`, `LIMA_CIDATA_HOSTHOME_MOUNTPOINT`).
    pub host_home: &'a Path,
    /// The limactl process environment, for `propagateProxyEnv`.
    pub host_env: &'a BTreeMap<String, String>,
    /// Binary shipped as `lima-guestagent` (`.gz` is decompressed).
    pub guest_agent: Option<&'a Path>,
    /// The verified nerdctl-full archive ([`crate::image::containerd_archive`]),
    /// shipped as `nerdctl-full.tgz`; required when containerd is enabled.
    pub containerd_archive: Option<&'a Path>,
    /// The host agent's DNS ports (0: none); used only with `hostResolver.enabled`.
    pub udp_dns_port: u16,
    pub tcp_dns_port: u16,
}

/// One file of the volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CidataFile {
    /// Relative, `/`-separated, e.g. `boot.Linux/05-lima-disks.sh`.
    pub path: String,
    pub data: Vec<u8>,
    /// Permission bits recorded in Rock Ridge, e.g. `0o755`.
    pub mode: u32,
}

/// The volume's files, and `cloud-config.yaml` (user-data without the boot
/// hook, mounts and resolv.conf, as Lima writes it "for reference").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cidata {
    pub files: Vec<CidataFile>,
    pub cloud_config: String,
}

impl Cidata {
    pub fn file(&self, path: &str) -> Option<&CidataFile> {
        self.files.iter().find(|f| f.path == path)
    }
}

/// Why the cidata volume cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum CidataError {
    /// Only Linux guests boot from this cidata layout.
    #[error("cidata: guest OS {0:?} is not supported (only Linux)")]
    UnsupportedOs(String),
    /// Lima refuses to start without a key the guest can authorize.
    #[error("cidata: no SSH public key to authorize in the guest: run `ssh-keygen`")]
    NoSshKeys,
    /// A value cannot be written into a cidata file.
    #[error("cidata: {what} {key:?}: {message}")]
    InvalidValue {
        what: &'static str,
        key: String,
        message: String,
    },
    /// A `caCerts.files` entry cannot be read.
    #[error("cidata: cannot read CA certificate {}: {source}", path.display())]
    CaCert {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The guest agent binary cannot be read.
    #[error("cidata: cannot read the guest agent {}: {source}", path.display())]
    GuestAgent {
        path: PathBuf,
        source: std::io::Error,
    },
    /// containerd is enabled but the caller has no archive for it.
    #[error(
        "cidata: containerd.system or containerd.user is enabled but no containerd archive was fetched; set both to false, or fix containerd.archives"
    )]
    NoContainerdArchive,
    /// The containerd archive cannot be read.
    #[error("cidata: cannot read the containerd archive {}: {source}", path.display())]
    ContainerdArchive {
        path: PathBuf,
        source: std::io::Error,
    },
    /// ISO 9660 names on the cidata volume are limited to 30 characters.
    #[error(
        "cidata: file name {name:?} (in {path:?}) has {len} characters; the cidata ISO allows at most {max}",
        max = names::MAX_NAME_LEN
    )]
    NameTooLong {
        path: String,
        name: String,
        len: usize,
    },
}

/// Refuses a value that would not stay on its line: a control character in a
/// line of `lima.env`, `param.env`, `etc_environment` or a boot script (a tab
/// passes when `allow_tab`), or in an fstab field (never a tab: it separates
/// fields). Validation rejects these already; this catches a value that
/// arrives unvalidated (e.g. a proxy variable of the limactl process).
pub(crate) fn check_line(
    what: &'static str,
    key: &str,
    value: &str,
    allow_tab: bool,
) -> Result<(), CidataError> {
    match value
        .char_indices()
        .find(|&(_, c)| c.is_control() && !(allow_tab && c == '\t'))
    {
        None => Ok(()),
        Some((i, c)) => Err(CidataError::InvalidValue {
            what,
            key: key.to_string(),
            message: format!(
                "the value holds the control character U+{:04X} at byte {i}, which would break the line it is written into; fix the value (`limactl validate` names the field)",
                c as u32
            ),
        }),
    }
}

/// A mount as cidata describes it.
#[derive(Clone, Debug)]
pub(crate) struct MountFact {
    pub tag: String,
    pub mount_point: String,
    /// `9p`, `virtiofs` or `sshfs`.
    pub fstype: String,
    /// fstab options (9p/virtiofs only).
    pub options: String,
}

#[derive(Clone, Debug)]
pub(crate) struct DiskFact {
    pub name: String,
    pub device: String,
    pub format: bool,
    pub fs_type: String,
    pub fs_args: Vec<String>,
}

#[derive(Clone, Debug)]
pub(crate) struct DataFileFact {
    pub index: String,
    pub overwrite: bool,
    pub owner: String,
    pub path: String,
    pub permissions: String,
}

#[derive(Clone, Debug)]
pub(crate) struct YqFact {
    pub index: String,
    pub format: String,
    pub owner: String,
    pub path: String,
    pub permissions: String,
}

#[derive(Clone, Debug)]
pub(crate) struct NicFact {
    pub interface: String,
    pub mac: String,
    pub metric: i64,
}

/// The configuration, reduced to what the cidata files say.
#[derive(Clone, Debug)]
pub(crate) struct Facts {
    pub debug: bool,
    pub iid: String,
    pub name: String,
    pub hostname: String,
    pub user: String,
    pub uid: u32,
    pub comment: String,
    pub home: String,
    pub shell: String,
    pub passwordless_sudo: bool,
    pub host_home_mount_point: String,
    pub mount_type: MountType,
    pub mounts: Vec<MountFact>,
    pub disks: Vec<DiskFact>,
    pub data_files: Vec<DataFileFact>,
    pub yq_files: Vec<YqFact>,
    pub guest_install_prefix: String,
    pub upgrade_packages: bool,
    pub containerd_user: bool,
    pub containerd_system: bool,
    /// The sha256 (hex) of the nerdctl-full archive on the volume: the guest
    /// compares it with its install stamp instead of hashing the archive
    /// itself on every boot (most of a second under emulation).
    pub containerd_archive_sha256: Option<String>,
    pub slirp_dns: String,
    pub udp_dns_port: u16,
    pub tcp_dns_port: u16,
    pub rosetta_enabled: bool,
    pub rosetta_binfmt: bool,
    pub skip_default_dependency_resolution: bool,
    pub vm_type: VmType,
    pub plain: bool,
    /// `None`: the guest keeps its own zone.
    pub timezone: Option<String>,
    pub dns: Vec<String>,
    pub nics: Vec<NicFact>,
    pub netplan_optional: bool,
    /// `Some(remove_defaults)` when `ca_certs:` is written.
    pub ca_remove_defaults: Option<bool>,
    pub ca_trusted: Vec<String>,
    /// `mode: boot` scripts: (index in the provision list, script).
    pub boot_scripts: Vec<(usize, String)>,
    pub param: BTreeMap<String, String>,
    pub ssh_keys: Vec<String>,
}

pub use crate::spec::defaults::instance_mac as slirp_mac;

/// The `/dev/vdX` name of additional disk `i` (the root disk is `vda`).
pub fn disk_device(i: usize) -> String {
    let letters = b"bcdefghijklmnopqrstuvwxyz";
    match letters.get(i) {
        Some(c) => format!("vd{}", *c as char),
        None => format!("vd{}", i + 2),
    }
}

fn facts(input: &CidataInput) -> Result<Facts, CidataError> {
    let c = input.spec;
    if c.os != Os::Linux {
        return Err(CidataError::UnsupportedOs(c.os.as_str().into()));
    }
    let host_home = input.host_home.to_string_lossy();
    let host_home = expand_host_path(&host_home, input.host_home);

    let fstype = match c.mount_type {
        MountType::NineP => "9p",
        MountType::Virtiofs => "virtiofs",
        _ => "sshfs",
    };
    let mut mounts = Vec::new();
    let mut host_home_mount_point = String::new();
    for m in &c.mounts {
        let mut options = String::new();
        if fstype == "9p" || fstype == "virtiofs" {
            options.push_str(if m.writable { "rw" } else { "ro" });
            if fstype == "9p" {
                options.push_str(&format!(
                    ",trans=virtio,version={},msize={},cache={}",
                    m.nine_p.protocol_version,
                    m.nine_p.msize.bytes(),
                    m.nine_p.cache,
                ));
            }
            options.push_str(",nofail");
        }
        if expand_host_path(&m.location, input.host_home) == host_home {
            host_home_mount_point = m.mount_point.clone();
        }
        mounts.push(MountFact {
            tag: mount_tag(&m.location, &m.mount_point),
            mount_point: m.mount_point.clone(),
            fstype: fstype.into(),
            options,
        });
    }

    let disks = c
        .additional_disks
        .iter()
        .enumerate()
        .map(|(i, d)| DiskFact {
            name: d.name.clone(),
            device: disk_device(i),
            format: d.format,
            fs_type: d.fs_type.clone(),
            fs_args: d.fs_args.clone(),
        })
        .collect();

    let slirp_dns = if c.vm_type == VmType::Vz {
        SLIRP_GATEWAY
    } else {
        SLIRP_DNS
    };
    let (mut udp_dns_port, mut tcp_dns_port) = (0, 0);
    let dns: Vec<String> = if !c.dns.is_empty() {
        c.dns.iter().map(ToString::to_string).collect()
    } else if c.vm_type == VmType::Vz {
        vec![slirp_dns.into()]
    } else if c.host_resolver.enabled {
        udp_dns_port = input.udp_dns_port;
        tcp_dns_port = input.tcp_dns_port;
        vec![slirp_dns.into()]
    } else {
        Vec::new()
    };

    let mut nics = vec![NicFact {
        interface: SLIRP_NIC.into(),
        mac: slirp_mac(input.instance_dir),
        metric: 200,
    }];
    for n in &c.networks {
        nics.push(NicFact {
            interface: n.interface.clone(),
            mac: n.mac_address.clone(),
            metric: n.metric,
        });
    }
    let netplan_optional = c
        .param
        .get("internal_netplanOptional")
        .is_some_and(|v| v == "true");

    let mut ca_trusted = Vec::new();
    for f in &c.ca_certs.files {
        let path = PathBuf::from(expand_host_path(f, input.host_home));
        let text = std::fs::read_to_string(&path)
            .map_err(|source| CidataError::CaCert { path, source })?;
        ca_trusted.push(cert_block(&text));
    }
    for cert in &c.ca_certs.certs {
        ca_trusted.push(cert_block(cert));
    }
    let remove_defaults = c.ca_certs.remove_defaults;
    let ca_remove_defaults = (remove_defaults || !ca_trusted.is_empty()).then_some(remove_defaults);

    let mut data_files = Vec::new();
    let mut yq_files = Vec::new();
    let mut boot_scripts = Vec::new();
    let mut skip_deps = false;
    for (i, p) in c.provision.iter().enumerate() {
        let index = format!("{i:08}");
        match p {
            Provision::Dependency {
                skip_default_dependency_resolution,
                ..
            } => {
                skip_deps |= skip_default_dependency_resolution;
            }
            Provision::Data(d) => data_files.push(DataFileFact {
                index,
                overwrite: d.overwrite,
                owner: d.owner.clone(),
                path: d.path.clone(),
                permissions: d.permissions.clone(),
            }),
            Provision::Yq(y) => yq_files.push(YqFact {
                index,
                format: y.format.clone(),
                owner: y.owner.clone(),
                path: y.path.clone(),
                permissions: y.permissions.clone(),
            }),
            Provision::Boot { script } => boot_scripts.push((i, script.clone())),
            _ => {}
        }
    }

    let user = &c.user;
    let comment = user.comment.clone();
    Ok(Facts {
        debug: input.debug,
        iid: input.iid.to_string(),
        name: input.name.to_string(),
        hostname: hostname_for(input.name),
        user: user.name.clone(),
        uid: user.uid,
        comment,
        home: user.home.clone(),
        shell: user.shell.clone(),
        passwordless_sudo: user.passwordless_sudo,
        host_home_mount_point,
        mount_type: c.mount_type,
        mounts,
        disks,
        data_files,
        yq_files,
        guest_install_prefix: c.guest_install_prefix.clone(),
        upgrade_packages: c.upgrade_packages,
        containerd_user: c.containerd.user,
        containerd_system: c.containerd.system,
        containerd_archive_sha256: None,
        slirp_dns: slirp_dns.into(),
        udp_dns_port,
        tcp_dns_port,
        rosetta_enabled: c.vm_opts.vz.rosetta.enabled,
        rosetta_binfmt: c.vm_opts.vz.rosetta.binfmt,
        skip_default_dependency_resolution: skip_deps,
        vm_type: c.vm_type,
        plain: c.plain,
        timezone: c.timezone.clone(),
        dns,
        nics,
        netplan_optional,
        ca_remove_defaults,
        ca_trusted,
        boot_scripts,
        param: c.param.clone(),
        ssh_keys: input.authorized_keys.to_vec(),
    })
}

/// A certificate as a literal block: lines trimmed, empty lines dropped (Lima's `getCert`).
fn cert_block(text: &str) -> String {
    let mut out = String::new();
    for line in text.split('\n').filter(|l| !l.trim().is_empty()) {
        out.push_str(line.trim());
        out.push('\n');
    }
    out
}

/// The files of the cidata volume for `input` (reference §3.2).
pub fn generate(input: &CidataInput) -> Result<Cidata, CidataError> {
    // Only on the ISO: folded user-data (generate_nocloud) cannot carry an archive.
    let archive = if crate::image::containerd_enabled(input.spec) {
        let path = input
            .containerd_archive
            .ok_or(CidataError::NoContainerdArchive)?;
        Some(
            std::fs::read(path).map_err(|source| CidataError::ContainerdArchive {
                path: path.to_path_buf(),
                source,
            })?,
        )
    } else {
        None
    };
    let mut f = facts(input)?;
    f.containerd_archive_sha256 = archive
        .as_ref()
        .map(|data| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(data)));
    let volume = volume_files(input, &f)?;
    let user_data = userdata::user_data(&f, Flavor::Iso)?;

    let mut files = vec![
        CidataFile {
            path: names::USER_DATA.into(),
            data: user_data.into_bytes(),
            mode: 0o644,
        },
        CidataFile {
            path: names::META_DATA.into(),
            data: network::meta_data(&f).into_bytes(),
            mode: 0o644,
        },
        CidataFile {
            path: names::NETWORK_CONFIG.into(),
            data: network::network_config(&f).into_bytes(),
            mode: 0o644,
        },
    ];
    files.extend(volume);
    if let Some(data) = archive {
        files.push(CidataFile {
            path: names::NERDCTL_ARCHIVE.into(),
            data,
            mode: 0o644,
        });
    }
    check_names(&files)?;
    Ok(Cidata {
        files,
        cloud_config: userdata::user_data(&f, Flavor::Reference)?,
    })
}

/// What a NoCloud source without files of its own carries (KubeVirt's
/// `cloudInitNoCloud`): user-data with the rest of the volume folded in,
/// network-data, and the meta-data a NoCloud seed would hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoCloud {
    pub user_data: String,
    pub network_data: String,
    pub meta_data: String,
}

/// The cidata of [`generate`] for a guest that gets only user-data and
/// network-data: every other file of the volume (lima.env, the boot scripts,
/// the provision scripts, …) goes into cloud-config `write_files` and `runcmd`
/// starts `boot.sh` from there ([`Flavor::Folded`]). `mac` replaces the slirp
/// NIC's MAC (which [`generate`] derives from the instance directory), so the
/// NIC the other engine creates matches network-data. The containerd archive
/// is never folded in (callers turn containerd off: KubeVirt's export does).
pub fn generate_nocloud(input: &CidataInput, mac: &str) -> Result<NoCloud, CidataError> {
    let mut f = facts(input)?;
    if let Some(nic) = f.nics.first_mut() {
        nic.mac = mac.to_string();
    }
    let volume = volume_files(input, &f)?;
    check_names(&volume)?;
    Ok(NoCloud {
        user_data: userdata::user_data(&f, Flavor::Folded(&volume))?,
        network_data: network::network_config(&f),
        meta_data: network::meta_data(&f),
    })
}

/// The volume's files besides user-data, meta-data and network-config:
/// lima.env, param.env, etc_environment, the boot scripts, the provision
/// scripts and the guest agent. Shared by the ISO and the folded user-data.
fn volume_files(input: &CidataInput, f: &Facts) -> Result<Vec<CidataFile>, CidataError> {
    if f.ssh_keys.is_empty() {
        return Err(CidataError::NoSshKeys);
    }
    let env = env::setup_env(
        &input.spec.env,
        input.spec.propagate_proxy_env,
        input.host_env,
    );
    // lima.env first: it names the variable of a value that cannot be written.
    let lima_env = env::lima_env(f)?;
    let param_env = env::param_env(&f.param)?;
    let etc_environment = env::etc_environment(&env)?;

    let mut files = Vec::new();
    let mut add = |path: &str, data: Vec<u8>, mode: u32| {
        files.push(CidataFile {
            path: path.to_string(),
            data,
            mode,
        })
    };
    add(names::LIMA_ENV, lima_env.into_bytes(), 0o644);
    add(names::PARAM_ENV, param_env.into_bytes(), 0o644);
    add(names::ETC_ENVIRONMENT, etc_environment.into_bytes(), 0o644);
    for (path, text) in scripts::GUEST_SCRIPTS {
        add(path, text.as_bytes().to_vec(), 0o755);
    }
    for (i, p) in input.spec.provision.iter().enumerate() {
        let (data, perm) = match p {
            Provision::System { script }
            | Provision::User { script }
            | Provision::Dependency { script, .. } => (script.as_str(), 0o755),
            Provision::Data(d) => (d.content.as_str(), 0o644),
            Provision::Yq(y) => (y.expression.as_str(), 0o644),
            Provision::Boot { .. } | Provision::Ansible { .. } => continue,
        };
        add(
            &format!("{}{}/{i:08}", names::PROVISION_DIR_PREFIX, p.mode()),
            data.as_bytes().to_vec(),
            perm,
        );
    }
    if let Some(path) = input.guest_agent {
        add(names::GUEST_AGENT, read_guest_agent(path)?, 0o755);
    }
    Ok(files)
}

fn read_guest_agent(path: &Path) -> Result<Vec<u8>, CidataError> {
    use std::io::Read;
    let err = |source| CidataError::GuestAgent {
        path: path.to_path_buf(),
        source,
    };
    let raw = std::fs::read(path).map_err(err)?;
    if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(err)?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Every path component must fit ISO 9660's (and Lima's) 30 characters.
pub(crate) fn check_names(files: &[CidataFile]) -> Result<(), CidataError> {
    for f in files {
        for name in f.path.split('/') {
            let len = name.chars().count();
            if len > names::MAX_NAME_LEN {
                return Err(CidataError::NameTooLong {
                    path: f.path.clone(),
                    name: name.to_string(),
                    len,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
