//! The resolved configuration: what a filled, validated `lima.yaml` means,
//! with every default applied, as plain values and enums.
//!
//! [`LimaYaml`](crate::spec::LimaYaml) is the wire type: every field is
//! optional so that `_config/default.yaml`, the file and
//! `_config/override.yaml` can be layered, and it is what `limactl` writes
//! back and diffs (field mutability). [`Spec`] is built from it once, after
//! defaults are filled and validation passed ([`Spec::from_filled`]), and is
//! what the cidata generator, the QEMU driver and the image preparation read
//! — as Firecracker keeps a full VM configuration apart from the partial
//! update it was assembled from. Nothing here is `Option` unless Lima gives
//! "unset" a meaning of its own (documented on the field).
//!
//! Types are as permissive as validation: a value validation does not check
//! (e.g. a network's metric) keeps Lima's wire type, so every configuration
//! that validates converts.

mod convert;
mod enums;

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Serialize;

pub use enums::{Arch, ByteSize, Mode, MountType, Os, Proto, RunStrategy, VmType};

/// A resolved `lima.yaml`. Field names follow Lima's keys.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    /// `minimumLimaVersion`, already checked against this build.
    pub minimum_lima_version: Option<String>,
    /// `runStrategy`: the desired power state (default `Always`).
    pub run_strategy: RunStrategy,
    /// `vmType`: the driver (default `qemu`).
    pub vm_type: VmType,
    /// `vmOpts`, with the deprecated top-level `cpuType` and `rosetta` folded in.
    pub vm_opts: VmOpts,
    /// `os`: the guest OS (default `Linux`).
    pub os: Os,
    /// `arch`: the guest architecture (default: the host's).
    pub arch: Arch,
    /// `images`: candidates in order; the first for [`Spec::arch`] that can
    /// be fetched is used.
    pub images: Vec<Image>,
    /// `cpus` (default min(4, host CPUs)).
    pub cpus: u32,
    /// `memory` (default min(4GiB, half of the host's RAM)).
    pub memory: ByteSize,
    /// `disk`: the root disk's size (default 100GiB).
    pub disk: ByteSize,
    /// `additionalDisks`: disks of `limactl disk create`, as `/mnt/lima-NAME`.
    pub additional_disks: Vec<AdditionalDisk>,
    /// `mounts`, merged by mount point, with their type's options filled.
    pub mounts: Vec<Mount>,
    /// `mountTypesUnsupported`: mount types this guest cannot use.
    pub mount_types_unsupported: Vec<String>,
    /// `mountType` (default `reverse-sshfs` here; `9p` when that is unsupported).
    pub mount_type: MountType,
    /// `mountInotify`: forward inotify events of writable mounts (experimental).
    pub mount_inotify: bool,
    pub ssh: Ssh,
    pub firmware: Firmware,
    pub audio: Audio,
    pub video: Video,
    /// `provision`: what runs (or is written) at every boot, in order.
    pub provision: Vec<Provision>,
    /// `upgradePackages`: run the package manager's upgrade at first boot.
    pub upgrade_packages: bool,
    pub containerd: Containerd,
    /// `guestInstallPrefix`: where the guest agent and nerdctl go (default `/usr/local`).
    pub guest_install_prefix: String,
    /// `probes`: readiness scripts run after boot.
    pub probes: Vec<Probe>,
    /// `portForwards`: the first matching rule wins.
    pub port_forwards: Vec<PortForward>,
    /// `copyToHost`: files copied from the guest after boot.
    pub copy_to_host: Vec<CopyToHost>,
    /// `message`: a Go template shown once the instance is ready (may be empty).
    pub message: String,
    /// `networks`: NICs beside the user-mode network.
    pub networks: Vec<Network>,
    /// `env`: variables for the guest's `/etc/environment`.
    pub env: BTreeMap<String, String>,
    /// `param`: `PARAM_<KEY>` in provision scripts, `{{.Param.KEY}}` in templates.
    pub param: BTreeMap<String, String>,
    /// `dns`: the guest's DNS servers; empty means automatic.
    pub dns: Vec<IpAddr>,
    pub host_resolver: HostResolver,
    /// `propagateProxyEnv`: pass the host's proxy variables to the guest.
    pub propagate_proxy_env: bool,
    pub ca_certs: CaCerts,
    /// `plain`: no mounts, no dynamic port forwards, no containerd, no guest agent.
    pub plain: bool,
    /// `timezone`: the guest's zone; `None` leaves the guest's own (Lima's `""`).
    pub timezone: Option<String>,
    /// `nestedVirtualization`.
    pub nested_virtualization: bool,
    pub user: User,
    /// `tpm`: attach an emulated TPM 2.0.
    pub tpm: bool,
}

/// `vmOpts`: driver-specific options.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VmOpts {
    pub qemu: QemuOpts,
    pub vz: VzOpts,
}

/// `vmOpts.qemu`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QemuOpts {
    /// `minimumVersion`: the oldest QEMU to accept (semver, checked at start).
    pub minimum_version: Option<String>,
    /// `cpuType`: the CPU model per arch (Lima's keys, e.g. `x86_64: max`);
    /// an arch without an entry gets the driver's choice.
    pub cpu_type: BTreeMap<String, String>,
}

/// `vmOpts.vz` (macOS only; kept so that the configuration is complete).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VzOpts {
    /// `vmOpts.vz.rosetta`, else the deprecated top-level `rosetta`.
    pub rosetta: Rosetta,
    pub disk_image_format: Option<String>,
}

/// `rosetta`: Rosetta 2 for x86_64 binaries in an aarch64 guest (vz).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rosetta {
    pub enabled: bool,
    /// Register Rosetta with binfmt_misc.
    pub binfmt: bool,
}

/// An `images` entry: a disk image, optionally booted by its own kernel.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    /// A URL, an absolute path or `~/…`.
    pub location: String,
    pub arch: Arch,
    /// OCI digest (`sha256:…`) the download must match.
    pub digest: Option<String>,
    /// Direct kernel boot.
    pub kernel: Option<Kernel>,
    pub initrd: Option<File>,
    /// Only entries of the first match's `variant`/`archVariant` are tried.
    pub variant: Option<String>,
    pub arch_variant: Option<String>,
}

/// `images[].kernel`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Kernel {
    pub location: String,
    pub arch: Arch,
    pub digest: Option<String>,
    /// The kernel command line; `None` leaves QEMU's.
    pub cmdline: Option<String>,
}

/// A downloadable file (`images[].initrd`, `containerd.archives[]`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct File {
    pub location: String,
    pub arch: Arch,
    pub digest: Option<String>,
}

/// An `additionalDisks` entry.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdditionalDisk {
    /// The disk's name in `_disk/` (`limactl disk create NAME`).
    pub name: String,
    /// Format it when it has no filesystem yet (default true).
    pub format: bool,
    /// `fsType` for formatting (default `ext4`).
    pub fs_type: String,
    /// Extra `mkfs` arguments.
    pub fs_args: Vec<String>,
}

/// A `mounts` entry.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Mount {
    /// The host directory, `~` and templates expanded, cleaned.
    pub location: String,
    /// Where it appears in the guest (default: `location`).
    pub mount_point: String,
    pub writable: bool,
    /// Options for `mountType: reverse-sshfs`.
    pub sshfs: Sshfs,
    /// Options for `mountType: 9p`.
    #[serde(rename = "9p")]
    pub nine_p: NineP,
    /// Options for `mountType: virtiofs`.
    pub virtiofs: Virtiofs,
}

/// `mounts[].sshfs`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sshfs {
    /// sshfs's cache (default true).
    pub cache: bool,
    pub follow_symlinks: bool,
    /// `openssh-sftp-server` or `builtin`; `None` chooses automatically.
    pub sftp_driver: Option<String>,
}

/// `mounts[].9p`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NineP {
    /// QEMU's `security_model` (default `none`).
    pub security_model: String,
    /// The 9p dialect (default `9p2000.L`).
    pub protocol_version: String,
    /// The largest 9p message (default 128KiB).
    pub msize: ByteSize,
    /// The guest's cache mode (default `mmap` when writable, else `fscache`).
    pub cache: String,
}

/// `mounts[].virtiofs`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Virtiofs {
    /// The request queue size; set (default 1024) only with `mountType: virtiofs`.
    pub queue_size: Option<i64>,
}

/// `ssh`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Ssh {
    /// Host port forwarded to the guest's sshd; 0 picks a free port at each start.
    pub local_port: u16,
    /// Also authorize `~/.ssh/*.pub` in the guest.
    #[serde(rename = "loadDotSSHPubKeys")]
    pub load_dot_ssh_pub_keys: bool,
    pub forward_agent: bool,
    #[serde(rename = "forwardX11")]
    pub forward_x11: bool,
    #[serde(rename = "forwardX11Trusted")]
    pub forward_x11_trusted: bool,
    /// SSH over vsock instead of the forwarded port (vz).
    pub over_vsock: bool,
}

/// `firmware`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Firmware {
    /// BIOS instead of UEFI.
    #[serde(rename = "legacyBIOS")]
    pub legacy_bios: bool,
    /// UEFI code volumes to use instead of the system's.
    pub images: Vec<FirmwareImage>,
}

/// `firmware.images[]`. Lima does not validate these, so `arch` and
/// `vmType` stay text (`arch` defaults to the instance's).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FirmwareImage {
    pub location: String,
    pub arch: String,
    pub digest: Option<String>,
    pub vm_type: Option<String>,
}

/// `audio`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Audio {
    /// QEMU's audio backend; `""` is none, `default` the platform's.
    pub device: String,
    /// `""` (`hda`), `hda` or `virtio`.
    pub interface: String,
}

/// `video`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Video {
    /// QEMU's `-display` (default `none`; `vnc` serves `vnc_display`).
    pub display: String,
    /// `video.vnc.display` (default `127.0.0.1:0,to=9`).
    pub vnc_display: String,
}

/// A `provision` entry, by mode, with what that mode needs.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "mode", rename_all = "camelCase")]
pub enum Provision {
    /// A script run as root at every boot.
    System { script: String },
    /// A script run as the guest user at every boot.
    User { script: String },
    /// A script run by cloud-init's `bootcmd` early in every boot.
    Boot { script: String },
    /// A script run as root before the packages are installed.
    #[serde(rename_all = "camelCase")]
    Dependency {
        script: String,
        /// Skip Lima's own dependency installation.
        skip_default_dependency_resolution: bool,
    },
    /// A file written into the guest.
    Data(DataFile),
    /// A yq expression applied to a file in the guest.
    Yq(YqFile),
    /// A playbook run from the host (deprecated).
    Ansible { playbook: String },
}

impl Provision {
    pub fn mode(&self) -> Mode {
        match self {
            Provision::System { .. } => Mode::System,
            Provision::User { .. } => Mode::User,
            Provision::Boot { .. } => Mode::Boot,
            Provision::Dependency { .. } => Mode::Dependency,
            Provision::Data(_) => Mode::Data,
            Provision::Yq(_) => Mode::Yq,
            Provision::Ansible { .. } => Mode::Ansible,
        }
    }

    /// The script of the modes that run one (system, user, boot, dependency).
    pub fn script(&self) -> Option<&str> {
        match self {
            Provision::System { script }
            | Provision::User { script }
            | Provision::Boot { script }
            | Provision::Dependency { script, .. } => Some(script),
            _ => None,
        }
    }
}

/// `provision[]` with `mode: data`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DataFile {
    /// Absolute path in the guest.
    pub path: String,
    pub content: String,
    /// Replace an existing file (default true).
    pub overwrite: bool,
    /// `user:group` (default `root:root`, `root:wheel` on BSDs and macOS).
    pub owner: String,
    /// Octal mode (default `644`).
    pub permissions: String,
}

/// `provision[]` with `mode: yq`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct YqFile {
    /// Absolute path in the guest.
    pub path: String,
    pub expression: String,
    /// The file's format for yq (default `auto`).
    pub format: String,
    pub owner: String,
    pub permissions: String,
}

/// `containerd`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Containerd {
    /// Rootful containerd.
    pub system: bool,
    /// Rootless containerd (default on Linux x86_64 and aarch64).
    pub user: bool,
    /// nerdctl-full archives (default: the release Lima pins).
    pub archives: Vec<File>,
}

/// A `probes` entry (Lima knows only readiness probes).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    /// Default `user probe <i>/<n>`.
    pub description: String,
    /// A script starting with `#!`; it succeeds once the guest is ready.
    pub script: String,
    /// Shown when the probe fails.
    pub hint: Option<String>,
}

/// A `portForwards` rule, defaults applied (Lima's `FillPortForwardDefaults`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PortForward {
    /// Match only guest sockets bound to 0.0.0.0 (default: `guestIP` is 0.0.0.0).
    #[serde(rename = "guestIPMustBeZero")]
    pub guest_ip_must_be_zero: bool,
    /// Default 127.0.0.1.
    #[serde(rename = "guestIP")]
    pub guest_ip: IpAddr,
    /// Inclusive; from `guestPort`, default 1–65535.
    pub guest_port_range: [u16; 2],
    /// A guest unix socket instead of ports.
    pub guest_socket: Option<String>,
    /// Default 127.0.0.1.
    #[serde(rename = "hostIP")]
    pub host_ip: IpAddr,
    /// Inclusive; from `hostPort`, default the guest range.
    pub host_port_range: [u16; 2],
    /// A host unix socket (absolute; relative ones are under the instance's `sock/`).
    pub host_socket: Option<String>,
    pub proto: Proto,
    /// Forward from the guest to the host socket's listener instead.
    pub reverse: bool,
    /// Matching ports are not forwarded.
    pub ignore: bool,
    /// Forwarded at start-up over SSH, without the guest agent.
    #[serde(rename = "static")]
    pub static_: bool,
}

/// A `copyToHost` entry.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CopyToHost {
    /// Absolute path in the guest.
    pub guest: String,
    /// Absolute path on the host.
    pub host: String,
    pub skip_if_missing: bool,
    /// Remove the host copy when the instance stops.
    pub delete_on_stop: bool,
}

/// A `networks` entry.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Network {
    /// What the NIC is attached to (exactly one of Lima's keys).
    pub attachment: NetworkAttachment,
    /// Default derived from the instance and the index (`52:55:55:…`).
    pub mac_address: String,
    /// The guest's name for the NIC (default `lima<i>`).
    pub interface: String,
    /// The route metric (default 100).
    pub metric: i64,
}

/// `networks[].lima`, `.socket` or `.vzNAT`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum NetworkAttachment {
    /// A network of `networks.yaml` (socket_vmnet, macOS).
    Lima(String),
    /// A socket_vmnet-style unix socket on the host.
    Socket(String),
    /// vz's NAT (macOS).
    #[serde(rename = "vzNAT")]
    VzNat,
}

/// `hostResolver`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostResolver {
    /// The host agent answers the guest's DNS queries (default true).
    pub enabled: bool,
    pub ipv6: bool,
    /// Extra names the resolver answers.
    pub hosts: BTreeMap<String, String>,
}

/// `caCerts`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CaCerts {
    /// Drop the guest's default CA certificates.
    pub remove_defaults: bool,
    /// Host files holding certificates (`~` allowed).
    pub files: Vec<String>,
    /// Certificates inline.
    pub certs: Vec<String>,
}

/// `user`: the guest user (default: derived from the host user).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub name: String,
    /// The GECOS comment (default the host user's).
    pub comment: String,
    /// Default `/home/<name>.guest`.
    pub home: String,
    /// Default `/bin/bash` on Linux.
    pub shell: String,
    pub uid: u32,
    /// Sudo without a password (false only in plain mode or on macOS).
    pub passwordless_sudo: bool,
}

#[cfg(any(test, fuzzing))]
impl Spec {
    /// The spec of `json` (a lima.yaml as JSON), filled as instance `test`
    /// in `/lima` on [`HostInfo::for_tests`](crate::spec::host::HostInfo::for_tests)
    /// but not validated, so that tests can build odd configurations.
    pub(crate) fn for_tests(json: serde_json::Value) -> Spec {
        let mut y: crate::spec::LimaYaml = serde_json::from_value(json).unwrap();
        let host = crate::spec::host::HostInfo::for_tests();
        crate::spec::defaults::fill(
            &mut y,
            &crate::spec::defaults::FillContext {
                host: &host,
                instance_name: "test".into(),
                instance_dir: "/lima/test".into(),
                lima_home: "/lima".into(),
            },
        );
        Spec::from_filled(&y).unwrap()
    }
}

#[cfg(test)]
mod tests;
