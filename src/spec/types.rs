//! The `lima.yaml` schema: every field Lima knows, as serde + schemars types.
//!
//! Every field is optional here, exactly as in Lima: "unset" must stay
//! distinguishable from "set to the zero value" so that `_config/default.yaml`,
//! the file itself and `_config/override.yaml` can be layered
//! (see [`crate::spec::defaults`]). After defaults are filled every field a
//! consumer needs is `Some`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

/// Architectures Lima knows.
pub const ARCHES: &[&str] = &["x86_64", "aarch64", "armv7l", "ppc64le", "riscv64", "s390x"];
/// Guest operating systems Lima knows.
pub const OSES: &[&str] = &["Linux", "Darwin", "FreeBSD", "Windows"];
/// VM types (drivers) Lima knows; only `qemu` is implemented on this host.
pub const VM_TYPES: &[&str] = &["qemu", "vz", "wsl2"];
/// Mount types Lima knows.
pub const MOUNT_TYPES: &[&str] = &["reverse-sshfs", "9p", "virtiofs", "wsl2"];
/// Provision modes Lima knows.
pub const PROVISION_MODES: &[&str] = &[
    "system",
    "user",
    "boot",
    "data",
    "dependency",
    "ansible",
    "yq",
];
/// Desired power states (this project's extension, modelled on KubeVirt).
pub const RUN_STRATEGIES: &[&str] = &["Always", "RerunOnFailure", "Halted", "Manual"];

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(
    title = "lima.yaml",
    description = "A Lima instance configuration (also a desired-state file for `limactl apply`)."
)]
pub struct LimaYaml {
    /// Templates this file is based on (merged under this file), e.g. `template:_images/ubuntu`.
    #[serde(default, deserialize_with = "de_base")]
    #[schemars(with = "Option<BaseSchema>")]
    pub base: Option<Vec<Locator>>,
    /// Minimum limactl version (semver) this file needs.
    #[serde(default, deserialize_with = "de_opt_string")]
    pub minimum_lima_version: Option<String>,
    /// Desired power state for `limactl apply`: `Always` (default), `RerunOnFailure`,
    /// `Halted` or `Manual`. Not a Lima field; Lima ignores it with a warning.
    #[schemars(extend("enum" = ["Always", "RerunOnFailure", "Halted", "Manual", null]))]
    pub run_strategy: Option<String>,
    /// VM driver: `qemu` (default on Linux), `vz`, `wsl2`.
    #[schemars(extend("enum" = ["qemu", "vz", "wsl2", null]))]
    pub vm_type: Option<String>,
    /// Driver-specific options, keyed by VM type.
    pub vm_opts: Option<VmOpts>,
    /// Guest OS: `Linux` (default), `Darwin`, `FreeBSD`, `Windows`.
    #[schemars(extend("enum" = ["Linux", "Darwin", "FreeBSD", "Windows", "default", null]))]
    pub os: Option<String>,
    /// Guest architecture; defaults to the host's.
    #[schemars(extend("enum" = ["x86_64", "aarch64", "armv7l", "ppc64le", "riscv64", "s390x", "default", null]))]
    pub arch: Option<String>,
    /// Disk images; the first one matching the architecture that can be fetched is used.
    pub images: Option<Vec<Image>>,
    /// Deprecated: use `vmOpts.qemu.cpuType`.
    pub cpu_type: Option<BTreeMap<String, String>>,
    /// Number of CPUs; default min(4, host CPUs).
    pub cpus: Option<i64>,
    /// Memory size, e.g. `4GiB`; default min(4GiB, half of host RAM).
    #[serde(default, deserialize_with = "de_opt_string")]
    pub memory: Option<String>,
    /// Root disk size, e.g. `100GiB` (the default).
    #[serde(default, deserialize_with = "de_opt_string")]
    pub disk: Option<String>,
    /// Disks from `limactl disk create`, attached as /mnt/lima-NAME.
    pub additional_disks: Option<Vec<Disk>>,
    /// Host directories shared with the guest.
    pub mounts: Option<Vec<Mount>>,
    /// Mount types this guest cannot use.
    pub mount_types_unsupported: Option<Vec<String>>,
    /// `reverse-sshfs`, `9p`, `virtiofs` or `wsl2`.
    #[schemars(extend("enum" = ["reverse-sshfs", "9p", "virtiofs", "wsl2", "default", "", null]))]
    pub mount_type: Option<String>,
    /// Experimental: forward inotify events from writable host mounts.
    pub mount_inotify: Option<bool>,
    pub ssh: Option<Ssh>,
    pub firmware: Option<Firmware>,
    pub audio: Option<Audio>,
    pub video: Option<Video>,
    /// Scripts and files provisioned at every boot.
    pub provision: Option<Vec<Provision>>,
    /// Run the package manager's upgrade at first boot.
    pub upgrade_packages: Option<bool>,
    pub containerd: Option<Containerd>,
    /// Where the guest agent and nerdctl are installed in the guest (default /usr/local).
    pub guest_install_prefix: Option<String>,
    /// Readiness probes run after boot.
    pub probes: Option<Vec<Probe>>,
    /// Port forwarding rules; the first match wins.
    pub port_forwards: Option<Vec<PortForward>>,
    /// Files copied from the guest to the host after boot.
    pub copy_to_host: Option<Vec<CopyToHost>>,
    /// Message (a Go template) shown after the instance is ready.
    pub message: Option<String>,
    pub networks: Option<Vec<Network>>,
    /// Environment variables for the guest (`/etc/environment`).
    #[serde(default, deserialize_with = "de_opt_string_map")]
    pub env: Option<BTreeMap<String, String>>,
    /// Parameters for provision scripts (`PARAM_<KEY>`, `{{.Param.KEY}}`).
    #[serde(default, deserialize_with = "de_opt_string_map")]
    pub param: Option<BTreeMap<String, String>>,
    /// DNS servers for the guest; empty means automatic.
    pub dns: Option<Vec<String>>,
    pub host_resolver: Option<HostResolver>,
    /// Propagate the host's proxy variables to the guest (default true).
    pub propagate_proxy_env: Option<bool>,
    pub ca_certs: Option<CaCerts>,
    /// Deprecated: use `vmOpts.vz.rosetta`.
    pub rosetta: Option<Rosetta>,
    /// Plain mode: no mounts, no port forwarding except static, no containerd, no guest agent.
    pub plain: Option<bool>,
    /// Guest timezone; defaults to the host's.
    #[serde(default, deserialize_with = "de_opt_string")]
    pub timezone: Option<String>,
    pub nested_virtualization: Option<bool>,
    pub user: Option<User>,
    /// Attach an emulated TPM 2.0 (swtpm).
    pub tpm: Option<bool>,
    /// Driver-specific OS options.
    pub os_opts: Option<BTreeMap<String, serde_json::Value>>,
}

/// `base:` as written: one locator, or a list of locators or `{url, digest}`.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum BaseSchema {
    One(String),
    Many(Vec<LocatorSchema>),
}

#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum LocatorSchema {
    Url(String),
    WithDigest(Locator),
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Locator {
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

fn de_base<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<Locator>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum One {
        Url(String),
        Full(Locator),
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Base {
        One(String),
        Many(Vec<One>),
    }
    let v: Option<Base> = Option::deserialize(d).map_err(|_| {
        serde::de::Error::custom("expected a locator string or a list of locators / {url, digest}")
    })?;
    Ok(v.map(|b| match b {
        Base::One(s) => vec![Locator {
            url: s,
            digest: None,
        }],
        Base::Many(list) => list
            .into_iter()
            .map(|o| match o {
                One::Url(url) => Locator { url, digest: None },
                One::Full(l) => l,
            })
            .collect(),
    }))
}

/// A string field that also accepts a YAML number or boolean (Go's YAML
/// decoder turns `memory: 4` or `permissions: 644` into strings).
fn de_opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v: Option<serde_json::Value> = Option::deserialize(d)?;
    match v {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => scalar_to_string(v)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

fn scalar_to_string(v: serde_json::Value) -> Result<String, String> {
    match v {
        serde_json::Value::String(s) => Ok(s),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        serde_json::Value::Bool(b) => Ok(b.to_string()),
        other => Err(format!(
            "invalid type: {}, expected a string",
            json_kind(&other)
        )),
    }
}

pub(crate) fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "sequence",
        serde_json::Value::Object(_) => "map",
    }
}

fn de_opt_string_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<BTreeMap<String, String>>, D::Error> {
    let v: Option<BTreeMap<String, serde_json::Value>> = Option::deserialize(d)?;
    let Some(m) = v else { return Ok(None) };
    let mut out = BTreeMap::new();
    for (k, v) in m {
        let s = match v {
            serde_json::Value::Null => String::new(),
            v => scalar_to_string(v)
                .map_err(|e| serde::de::Error::custom(format!("key `{k}`: {e}")))?,
        };
        out.insert(k, s);
    }
    Ok(Some(out))
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VmOpts {
    pub qemu: Option<QemuOpts>,
    pub vz: Option<VzOpts>,
    /// Options of external drivers.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QemuOpts {
    /// Minimum QEMU version (semver).
    #[serde(default, deserialize_with = "de_opt_string")]
    pub minimum_version: Option<String>,
    /// CPU model per architecture, e.g. `{x86_64: max}`.
    pub cpu_type: Option<BTreeMap<String, String>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VzOpts {
    pub rosetta: Option<Rosetta>,
    pub disk_image_format: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rosetta {
    pub enabled: Option<bool>,
    pub binfmt: Option<bool>,
}

/// A file to download: `location` is a URL, an absolute path or `~/…`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct File {
    pub location: String,
    pub arch: Option<String>,
    /// OCI digest, e.g. `sha256:…`.
    pub digest: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    pub location: String,
    pub arch: Option<String>,
    pub digest: Option<String>,
    pub kernel: Option<Kernel>,
    pub initrd: Option<File>,
    pub variant: Option<String>,
    pub arch_variant: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Kernel {
    pub location: String,
    pub arch: Option<String>,
    pub digest: Option<String>,
    pub cmdline: Option<String>,
}

/// An additional disk: a name, or an object.
#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(with = "DiskSchema")]
pub struct Disk {
    pub name: String,
    /// Format the disk when it has no filesystem yet (default true).
    pub format: Option<bool>,
    pub fs_type: Option<String>,
    pub fs_args: Option<Vec<String>>,
}

#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum DiskSchema {
    Name(String),
    Full(DiskObject),
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct DiskObject {
    name: String,
    format: Option<bool>,
    fs_type: Option<String>,
    fs_args: Option<Vec<String>>,
}

impl<'de> Deserialize<'de> for Disk {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Name(String),
            Full(DiskObject),
        }
        match Either::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expected a disk name or {name, format, fsType, fsArgs}")
        })? {
            Either::Name(name) => Ok(Disk {
                name,
                ..Default::default()
            }),
            Either::Full(o) => Ok(Disk {
                name: o.name,
                format: o.format,
                fs_type: o.fs_type,
                fs_args: o.fs_args,
            }),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Mount {
    /// Host directory (absolute or `~`).
    pub location: String,
    /// Where it appears in the guest (default: same as location).
    pub mount_point: Option<String>,
    pub writable: Option<bool>,
    pub sshfs: Option<Sshfs>,
    #[serde(rename = "9p")]
    pub nine_p: Option<NineP>,
    pub virtiofs: Option<Virtiofs>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Sshfs {
    pub cache: Option<bool>,
    pub follow_symlinks: Option<bool>,
    /// `openssh-sftp-server`, `builtin` or empty (auto).
    pub sftp_driver: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NineP {
    pub security_model: Option<String>,
    pub protocol_version: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub msize: Option<String>,
    pub cache: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Virtiofs {
    pub queue_size: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Ssh {
    /// Host port forwarded to the guest's sshd; 0 picks a free port at each start.
    pub local_port: Option<i64>,
    /// Also authorize `~/.ssh/*.pub` in the guest.
    #[serde(rename = "loadDotSSHPubKeys")]
    pub load_dot_ssh_pub_keys: Option<bool>,
    pub forward_agent: Option<bool>,
    #[serde(rename = "forwardX11")]
    pub forward_x11: Option<bool>,
    #[serde(rename = "forwardX11Trusted")]
    pub forward_x11_trusted: Option<bool>,
    pub over_vsock: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Firmware {
    #[serde(rename = "legacyBIOS")]
    pub legacy_bios: Option<bool>,
    pub images: Option<Vec<FirmwareImage>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FirmwareImage {
    pub location: String,
    pub arch: Option<String>,
    pub digest: Option<String>,
    pub vm_type: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Audio {
    pub device: Option<String>,
    pub interface: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Video {
    pub display: Option<String>,
    pub vnc: Option<Vnc>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Vnc {
    pub display: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Provision {
    /// `system` (default), `user`, `boot`, `dependency`, `data`, `yq`, `ansible`.
    #[schemars(extend("enum" = ["system", "user", "boot", "data", "dependency", "ansible", "yq", null]))]
    pub mode: Option<String>,
    pub skip_default_dependency_resolution: Option<bool>,
    pub script: Option<String>,
    /// A file whose content becomes `script` (or `content`, `expression`).
    #[serde(default, deserialize_with = "de_opt_locator")]
    #[schemars(with = "Option<LocatorSchemaPub>")]
    pub file: Option<Locator>,
    /// Deprecated (ansible mode).
    pub playbook: Option<String>,
    /// `data` mode: the file content.
    pub content: Option<String>,
    pub overwrite: Option<bool>,
    pub owner: Option<String>,
    pub path: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub permissions: Option<String>,
    /// `yq` mode: the expression.
    pub expression: Option<String>,
    pub format: Option<String>,
}

#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub(crate) enum LocatorSchemaPub {
    Url(String),
    WithDigest(Locator),
}

fn de_opt_locator<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Locator>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum One {
        Url(String),
        Full(Locator),
    }
    let v: Option<One> = Option::deserialize(d)
        .map_err(|_| serde::de::Error::custom("expected a locator string or {url, digest}"))?;
    Ok(v.map(|o| match o {
        One::Url(url) => Locator { url, digest: None },
        One::Full(l) => l,
    }))
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Containerd {
    pub system: Option<bool>,
    pub user: Option<bool>,
    pub archives: Option<Vec<File>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    /// Only `readiness`.
    pub mode: Option<String>,
    pub description: Option<String>,
    pub script: Option<String>,
    #[serde(default, deserialize_with = "de_opt_locator")]
    #[schemars(with = "Option<LocatorSchemaPub>")]
    pub file: Option<Locator>,
    pub hint: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PortForward {
    #[serde(rename = "guestIPMustBeZero")]
    pub guest_ip_must_be_zero: Option<bool>,
    #[serde(rename = "guestIP")]
    pub guest_ip: Option<String>,
    pub guest_port: Option<i64>,
    pub guest_port_range: Option<[i64; 2]>,
    pub guest_socket: Option<String>,
    #[serde(rename = "hostIP")]
    pub host_ip: Option<String>,
    pub host_port: Option<i64>,
    pub host_port_range: Option<[i64; 2]>,
    pub host_socket: Option<String>,
    /// `tcp`, `udp` or `any` (default).
    pub proto: Option<String>,
    pub reverse: Option<bool>,
    pub ignore: Option<bool>,
    /// Forward at start-up over SSH, without the guest agent (works in plain mode).
    #[serde(rename = "static")]
    pub static_: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CopyToHost {
    pub guest: Option<String>,
    pub host: Option<String>,
    pub skip_if_missing: Option<bool>,
    pub delete_on_stop: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Network {
    pub lima: Option<String>,
    pub socket: Option<String>,
    #[serde(rename = "vzNAT")]
    pub vz_nat: Option<bool>,
    pub mac_address: Option<String>,
    pub interface: Option<String>,
    pub metric: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostResolver {
    pub enabled: Option<bool>,
    pub ipv6: Option<bool>,
    #[serde(default, deserialize_with = "de_opt_string_map")]
    pub hosts: Option<BTreeMap<String, String>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaCerts {
    pub remove_defaults: Option<bool>,
    pub files: Option<Vec<String>>,
    pub certs: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    #[serde(default, deserialize_with = "de_opt_string")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub comment: Option<String>,
    pub home: Option<String>,
    pub shell: Option<String>,
    pub uid: Option<u32>,
    pub passwordless_sudo: Option<bool>,
}

impl LimaYaml {
    /// Serializes to JSON without the unset (`null`) fields.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("LimaYaml always serializes");
        prune_nulls(&mut v);
        v
    }
}

/// Removes `null` members of objects recursively (unset optional fields).
pub fn prune_nulls(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            m.retain(|_, v| !v.is_null());
            for v in m.values_mut() {
                prune_nulls(v);
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(prune_nulls),
        _ => {}
    }
}
