//! A resolved instance as KubeVirt objects: a `kubevirt.io/v1`
//! `VirtualMachine` (its cloud-init as a `cloudInitNoCloud` volume from a
//! `Secret`, its additional disks as CDI `dataVolumeTemplates`), the CDI
//! `cdi.kubevirt.io/v1beta1` `DataVolume` importing its root disk (see
//! [`root_data_volume`] for why it is not a template), and one `v1` `Service`
//! per port forward that maps to one. What has no KubeVirt counterpart is a [`Warning`]
//! naming the instance and the field, never dropped silently.
//!
//! The README's "Export to KubeVirt" section has the mapping table; the
//! tests check it row by row. Output is deterministic: the same input gives
//! the same objects, in the same order, with the same bytes once emitted.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::cidata::{self, CidataInput};
use crate::spec::Spec;
use crate::spec::typed::{Arch, Proto, Provision, VmType};
use crate::spec::yaml::quote_name;

/// Labels and annotations of every object.
pub const LABEL_INSTANCE: &str = "lima-vm.io/instance";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const ANNOTATION_SOURCE: &str = "lima-vm.io/source";
pub const ANNOTATION_SPEC_HASH: &str = "lima-vm.io/spec-hash";
/// The value of [`LABEL_MANAGED_BY`].
pub const MANAGER: &str = "limactl";

/// What one instance's export needs besides its spec.
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    pub name: &'a str,
    /// The resolved configuration (defaults filled, validated).
    pub spec: &'a Spec,
    /// The spec hash recorded in [`ANNOTATION_SPEC_HASH`] (`sha256:HEX` of
    /// the filled configuration; [`spec_hash`]).
    pub spec_hash: &'a str,
    /// The declaring file, relative to its source ([`ANNOTATION_SOURCE`]).
    pub source: &'a str,
    pub namespace: Option<&'a str>,
    /// Public keys authorized for the guest user.
    pub authorized_keys: &'a [String],
    /// The host user's home (`~` in `caCerts.files`).
    pub host_home: &'a Path,
    /// Sizes of the `additionalDisks` that exist in `LIMA_HOME` (`_disk/NAME`).
    pub disk_sizes: &'a BTreeMap<String, u64>,
}

/// Something of the instance that has no KubeVirt counterpart (or only a
/// partial one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    pub instance: String,
    /// The `lima.yaml` field, e.g. `mounts[0]`.
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "instance {}: field `{}`: {}",
            quote_name(&self.instance),
            self.field,
            self.message
        )
    }
}

/// One Kubernetes object.
#[derive(Clone, Debug, PartialEq)]
pub struct Object {
    pub kind: &'static str,
    pub name: String,
    pub value: Value,
}

/// One instance, exported.
#[derive(Clone, Debug, PartialEq)]
pub struct Exported {
    /// The VirtualMachine, its root DataVolume, its cloud-init Secret, then
    /// its Services by name.
    pub objects: Vec<Object>,
    pub warnings: Vec<Warning>,
    /// What cloud-init gets (also in the Secret).
    pub user_data: String,
    pub network_data: String,
    /// The NIC's MAC address, which network-data matches on.
    pub mac: String,
}

/// Why an instance cannot be exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Kubernetes object names are DNS-1123 labels.
    #[error(
        "instance {}: the name is not a valid Kubernetes object name (lowercase letters, digits and `-`, starting with a letter, at most {max} characters); rename its file to export it",
        quote_name(name),
        max = MAX_NAME
    )]
    Name { name: String },
    /// The namespace is not a DNS-1123 label.
    #[error(
        "--namespace {}: not a valid Kubernetes namespace (lowercase letters, digits and `-`, at most 63 characters)",
        quote_name(namespace)
    )]
    Namespace { namespace: String },
    /// The cloud-init data cannot be made.
    #[error("instance {}: {source}", quote_name(name))]
    Cidata {
        name: String,
        #[source]
        source: cidata::CidataError,
    },
}

/// Instance names must leave room for the longest derived name
/// (`NAME-udp-65535` of a Service, `NAME-disk-…` of a DataVolume is
/// checked separately): a DNS-1035 label has at most 63 characters.
const MAX_NAME: usize = 52;

fn dns_label(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && !s.ends_with('-')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Checks a `--namespace`.
pub fn check_namespace(ns: &str) -> Result<(), ExportError> {
    // A namespace is a DNS-1123 label: it may start with a digit.
    if !ns.is_empty() && dns_label(&format!("a{ns}"), 64) {
        Ok(())
    } else {
        Err(ExportError::Namespace {
            namespace: ns.to_string(),
        })
    }
}

/// `sha256:HEX` of a filled configuration's JSON form (its field order is
/// the types', so the hash is stable).
pub fn spec_hash(filled: &impl serde::Serialize) -> String {
    let bytes = serde_json::to_vec(filled).unwrap_or_default();
    format!("sha256:{}", hex::encode(Sha256::digest(&bytes)))
}

/// The MAC of the exported NIC: derived from the namespace and the name
/// only, so that an export does not depend on the machine it runs on.
pub fn mac_for(namespace: Option<&str>, name: &str) -> String {
    crate::spec::defaults::mac_address("kubevirt/", &format!("{}/{name}", namespace.unwrap_or("")))
}

/// KubeVirt's `spec.template.spec.architecture` for a Lima arch.
pub fn architecture(arch: Arch) -> Option<&'static str> {
    match arch {
        Arch::X86_64 => Some("amd64"),
        Arch::Aarch64 => Some("arm64"),
        Arch::S390x => Some("s390x"),
        Arch::Ppc64le => Some("ppc64le"),
        Arch::Armv7l | Arch::Riscv64 => None,
    }
}

/// A Kubernetes quantity for a size in bytes: the largest binary unit that
/// divides it exactly.
pub fn quantity(bytes: u64) -> String {
    for (unit, shift) in [("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)] {
        if bytes != 0 && bytes.is_multiple_of(1u64 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

struct Warnings<'a> {
    name: &'a str,
    list: Vec<Warning>,
}

impl Warnings<'_> {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.list.push(Warning {
            instance: self.name.to_string(),
            field: field.into(),
            message: message.into(),
        });
    }
}

/// The objects of one instance.
pub fn export(input: &Input) -> Result<Exported, ExportError> {
    let name = input.name;
    if !dns_label(name, MAX_NAME) {
        return Err(ExportError::Name { name: name.into() });
    }
    if let Some(ns) = input.namespace {
        check_namespace(ns)?;
    }
    let spec = input.spec;
    let mut w = Warnings {
        name,
        list: Vec::new(),
    };
    refused_fields(spec, &mut w);

    // What reaches cidata: only what maps (host mounts, extra NICs and the
    // host's resolver do not exist in a cluster).
    let mut guest = spec.clone();
    guest.mounts.clear();
    guest.networks.clear();
    guest.host_resolver.enabled = false;
    guest.host_resolver.hosts.clear();
    guest.vm_opts.vz.rosetta.enabled = false;
    guest.containerd.system = false;
    guest.containerd.user = false;
    guest
        .provision
        .retain(|p| !matches!(p, Provision::Ansible { .. }));
    let disks = additional_disks(input, &mut w);
    guest
        .additional_disks
        .retain(|d| disks.iter().any(|(n, _)| *n == d.name));

    let mac = mac_for(input.namespace, name);
    // KubeVirt's own meta-data says `instance-id: NAME.NAMESPACE`.
    let iid = format!("{name}.{}", input.namespace.unwrap_or("default"));
    let no_env = BTreeMap::new();
    let nocloud = cidata::generate_nocloud(
        &CidataInput {
            spec: &guest,
            name,
            instance_dir: Path::new("/nonexistent"),
            iid: &iid,
            authorized_keys: input.authorized_keys,
            debug: false,
            host_home: input.host_home,
            // The exporting machine's proxies are not the cluster's.
            host_env: &no_env,
            guest_agent: None,
            containerd_archive: None,
            udp_dns_port: 0,
            tcp_dns_port: 0,
        },
        &mac,
    )
    .map_err(|source| ExportError::Cidata {
        name: name.into(),
        source,
    })?;

    let mut objects = vec![
        Object {
            kind: "VirtualMachine",
            name: name.to_string(),
            value: virtual_machine(input, &guest, &disks, &mac),
        },
        Object {
            kind: "DataVolume",
            name: format!("{name}-root"),
            value: root_data_volume(input, &mut w),
        },
        Object {
            kind: "Secret",
            name: cloud_init_secret_name(name),
            value: cloud_init_secret(input, &nocloud),
        },
    ];
    objects.extend(services(input, &mut w));
    Ok(Exported {
        objects,
        warnings: w.list,
        user_data: nocloud.user_data,
        network_data: nocloud.network_data,
        mac,
    })
}

fn metadata(input: &Input, name: &str) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("name".into(), json!(name));
    if let Some(ns) = input.namespace {
        m.insert("namespace".into(), json!(ns));
    }
    m.insert("labels".into(), labels(input));
    m.insert(
        "annotations".into(),
        json!({
            ANNOTATION_SOURCE: input.source,
            ANNOTATION_SPEC_HASH: input.spec_hash,
        }),
    );
    Value::Object(m)
}

fn labels(input: &Input) -> Value {
    json!({
        LABEL_MANAGED_BY: MANAGER,
        LABEL_INSTANCE: input.name,
    })
}

/// Fields with no KubeVirt counterpart.
fn refused_fields(spec: &Spec, w: &mut Warnings) {
    match spec.vm_type {
        VmType::Qemu => {}
        other => w.add(
            "vmType",
            format!(
                "`{other}` has no KubeVirt counterpart: KubeVirt runs QEMU/KVM; exported as a KubeVirt VM"
            ),
        ),
    }
    if spec.vm_opts.vz.rosetta.enabled {
        w.add(
            "vmOpts.vz.rosetta",
            "Rosetta exists only under vz on macOS; not exported",
        );
    }
    for (i, m) in spec.mounts.iter().enumerate() {
        w.add(
            format!("mounts[{i}]"),
            format!(
                "host directory {} cannot be mounted from a cluster node; not exported (use a PVC or a DataVolume)",
                quote_name(&m.location)
            ),
        );
    }
    for (i, _) in spec.networks.iter().enumerate() {
        w.add(
            format!("networks[{i}]"),
            "host networks (socket_vmnet, vzNAT) do not exist in a cluster; only the pod network is exported (add Multus networks by hand)",
        );
    }
    for (i, c) in spec.copy_to_host.iter().enumerate() {
        w.add(
            format!("copyToHost[{i}]"),
            format!(
                "copying {} to the host has no KubeVirt counterpart; not exported",
                quote_name(&c.guest)
            ),
        );
    }
    for (i, _) in spec.probes.iter().enumerate() {
        w.add(
            format!("probes[{i}]"),
            "readiness probes run over SSH from the host; not exported (a KubeVirt readinessProbe needs the QEMU guest agent)",
        );
    }
    for (i, p) in spec.provision.iter().enumerate() {
        if let Provision::Ansible { .. } = p {
            w.add(
                format!("provision[{i}]"),
                "`mode: ansible` playbooks run on the host; not exported",
            );
        }
    }
    for (i, img) in spec.images.iter().enumerate() {
        if img.arch == spec.arch && img.kernel.is_some() {
            w.add(
                format!("images[{i}].kernel"),
                "direct kernel boot needs the kernel in a container image (KubeVirt `firmware.kernelBoot`); not exported: the root disk must boot by itself",
            );
        }
    }
    if !spec.firmware.images.is_empty() {
        w.add(
            "firmware.images",
            "custom UEFI code volumes cannot be passed to KubeVirt; its own OVMF is used",
        );
    }
    if spec.ssh.local_port != 0 {
        w.add(
            "ssh.localPort",
            "a host port for sshd does not exist in a cluster; use `virtctl ssh` or a Service",
        );
    }
    if spec.containerd.system || spec.containerd.user {
        w.add(
            "containerd",
            "containerd and nerdctl are not installed by the export (their archive is a host download); not exported",
        );
    }
    if spec.nested_virtualization {
        w.add(
            "nestedVirtualization",
            "nested virtualization is a property of the cluster's nodes (KVM module options), not of a VirtualMachine; not exported",
        );
    }
    if !spec.audio.device.is_empty() {
        w.add(
            "audio.device",
            "a host audio backend does not exist in a cluster; not exported",
        );
    }
    if !spec.host_resolver.hosts.is_empty() {
        w.add(
            "hostResolver.hosts",
            "the host resolver does not exist in a cluster (the guest uses the cluster's DNS); add the names with `provision` or CoreDNS instead",
        );
    }
    if architecture(spec.arch).is_none() {
        w.add(
            "arch",
            format!(
                "KubeVirt has no architecture `{}`; `spec.template.spec.architecture` is left out",
                spec.arch
            ),
        );
    }
}

/// `additionalDisks` that exist in `LIMA_HOME`, with their sizes; the others are warned about.
fn additional_disks<'a>(input: &'a Input, w: &mut Warnings) -> Vec<(&'a str, u64)> {
    let mut out = Vec::new();
    for (i, d) in input.spec.additional_disks.iter().enumerate() {
        match input.disk_sizes.get(&d.name) {
            Some(&size) if dns_label(&format!("{}-disk-{}", input.name, d.name), 63) => {
                out.push((d.name.as_str(), size))
            }
            Some(_) => w.add(
                format!("additionalDisks[{i}]"),
                format!(
                    "DataVolume name `{}-disk-{}` is not a valid Kubernetes name (lowercase letters, digits and `-`, at most 63 characters); not exported",
                    input.name, d.name
                ),
            ),
            None => w.add(
                format!("additionalDisks[{i}]"),
                format!(
                    "there is no disk {} in LIMA_HOME to take its size from; not exported (create it with `limactl disk create {} --size SIZE` and export again)",
                    quote_name(&d.name),
                    d.name
                ),
            ),
        }
    }
    out
}

/// The root DataVolume's source: CDI's HTTP import of the first `images`
/// entry for the arch, with its digest as `checksum`; without an http(s)
/// image, an upload (`virtctl image-upload`).
fn root_source(spec: &Spec, name: &str, w: &mut Warnings) -> Value {
    let for_arch: Vec<(usize, &crate::spec::typed::Image)> = spec
        .images
        .iter()
        .enumerate()
        .filter(|(_, i)| i.arch == spec.arch)
        .collect();
    let http = for_arch
        .iter()
        .find(|(_, i)| i.location.starts_with("http://") || i.location.starts_with("https://"));
    match http {
        Some((_, img)) => {
            let mut h = serde_json::Map::new();
            h.insert("url".into(), json!(img.location));
            if let Some(d) = &img.digest {
                h.insert("checksum".into(), json!(d));
            }
            json!({ "http": h })
        }
        None => {
            let (field, what) = match for_arch.first() {
                Some((i, img)) => (
                    format!("images[{i}].location"),
                    format!("{} is not an http(s) URL", quote_name(&img.location)),
                ),
                None => (
                    "images".to_string(),
                    format!("no image for arch `{}`", spec.arch),
                ),
            };
            w.add(
                field,
                format!(
                    "{what}, so CDI cannot import it; the root DataVolume waits for an upload: `virtctl image-upload dv {name}-root --image-path=FILE`"
                ),
            );
            json!({ "upload": {} })
        }
    }
}

fn data_volume_spec(source: Value, size: u64) -> Value {
    json!({
        "source": source,
        "storage": {
            "resources": { "requests": { "storage": quantity(size) } },
        },
    })
}

/// The root disk: a CDI `DataVolume` of its own, not a `dataVolumeTemplates`
/// entry, because KubeVirt's VirtualMachine API (v1.9) embeds an older CDI
/// `DataVolumeSourceHTTP` without `checksum`: a template carrying the digest
/// fails `kubectl apply --validate=strict`, and dropping the digest would
/// import an unverified image. The VM refers to it by name.
fn root_data_volume(input: &Input, w: &mut Warnings) -> Value {
    let name = format!("{}-root", input.name);
    json!({
        "apiVersion": "cdi.kubevirt.io/v1beta1",
        "kind": "DataVolume",
        "metadata": metadata(input, &name),
        "spec": data_volume_spec(root_source(input.spec, input.name, w), input.spec.disk.bytes()),
    })
}

/// The Secret holding the cloud-init data: `NAME-cloudinit`.
pub fn cloud_init_secret_name(name: &str) -> String {
    format!("{name}-cloudinit")
}

/// The keys KubeVirt reads from the Secrets of `cloudInitNoCloud`.
pub const SECRET_USER_DATA: &str = "userdata";
pub const SECRET_NETWORK_DATA: &str = "networkdata";

fn cloud_init_secret(input: &Input, nocloud: &cidata::NoCloud) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(input, &cloud_init_secret_name(input.name)),
        "type": "Opaque",
        "stringData": {
            SECRET_USER_DATA: nocloud.user_data,
            SECRET_NETWORK_DATA: nocloud.network_data,
        },
    })
}

fn virtual_machine(input: &Input, guest: &Spec, disks: &[(&str, u64)], mac: &str) -> Value {
    let name = input.name;
    let spec = input.spec;
    let mut templates = Vec::new();
    // Device order is the guest's /dev/vdX order: root (vda), then the
    // additional disks (vdb, …, as cidata's lima.env says), then cloud-init.
    let mut dev_disks = vec![json!({ "name": "rootdisk", "disk": { "bus": "virtio" } })];
    let mut volumes =
        vec![json!({ "name": "rootdisk", "dataVolume": { "name": format!("{name}-root") } })];
    for (i, (disk, size)) in disks.iter().enumerate() {
        let dv = format!("{name}-disk-{disk}");
        // A blank disk has no digest: a template (owned by the VM) is valid.
        templates.push(json!({
            "metadata": { "name": dv, "labels": labels(input) },
            "spec": data_volume_spec(json!({ "blank": {} }), *size),
        }));
        let vol = format!("disk{i}");
        dev_disks.push(json!({ "name": vol, "disk": { "bus": "virtio" } }));
        volumes.push(json!({ "name": vol, "dataVolume": { "name": dv } }));
    }
    dev_disks.push(json!({ "name": "cloudinitdisk", "disk": { "bus": "virtio" } }));
    // KubeVirt refuses inline user-data over 2048 bytes (its webhook: "Should
    // use UserDataSecretRef for larger data"); Lima's folded boot scripts are
    // tens of KiB, so both go into a Secret of their own.
    let secret = cloud_init_secret_name(name);
    volumes.push(json!({
        "name": "cloudinitdisk",
        "cloudInitNoCloud": {
            "secretRef": { "name": secret },
            "networkDataSecretRef": { "name": secret },
        },
    }));

    let mut devices = serde_json::Map::new();
    if guest.video.display == "none" {
        devices.insert("autoattachGraphicsDevice".into(), json!(false));
    }
    devices.insert("disks".into(), Value::Array(dev_disks));
    devices.insert(
        "interfaces".into(),
        json!([{ "name": "default", "masquerade": {}, "macAddress": mac }]),
    );
    if guest.tpm {
        devices.insert("tpm".into(), json!({}));
    }
    let firmware = if guest.firmware.legacy_bios {
        json!({ "bootloader": { "bios": {} } })
    } else {
        // Lima's OVMF boots without Secure Boot (KubeVirt's default needs SMM and signed images).
        json!({ "bootloader": { "efi": { "secureBoot": false } } })
    };

    let mut vmi_spec = serde_json::Map::new();
    if let Some(a) = architecture(guest.arch) {
        vmi_spec.insert("architecture".into(), json!(a));
    }
    vmi_spec.insert(
        "domain".into(),
        json!({
            "cpu": { "cores": guest.cpus },
            "memory": { "guest": quantity(guest.memory.bytes()) },
            "firmware": firmware,
            "devices": devices,
        }),
    );
    vmi_spec.insert(
        "hostname".into(),
        json!(crate::spec::defaults::hostname_for(name)),
    );
    vmi_spec.insert("networks".into(), json!([{ "name": "default", "pod": {} }]));
    vmi_spec.insert("volumes".into(), Value::Array(volumes));

    let mut vm_spec = serde_json::Map::new();
    vm_spec.insert("runStrategy".into(), json!(spec.run_strategy.as_str()));
    if !templates.is_empty() {
        vm_spec.insert("dataVolumeTemplates".into(), Value::Array(templates));
    }
    vm_spec.insert(
        "template".into(),
        json!({
            "metadata": { "labels": labels(input) },
            "spec": vmi_spec,
        }),
    );
    json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": metadata(input, name),
        "spec": vm_spec,
    })
}

/// One Service per `portForwards` rule that maps: one guest port to one
/// host port (the Service port), TCP, UDP or both. The first rule matching a
/// guest port wins, as in Lima.
fn services(input: &Input, w: &mut Warnings) -> Vec<Object> {
    let mut out: Vec<Object> = Vec::new();
    let mut host_ports: BTreeMap<u16, usize> = BTreeMap::new();
    let rules = &input.spec.port_forwards;
    for (i, r) in rules.iter().enumerate() {
        let field = format!("portForwards[{i}]");
        if r.ignore {
            continue;
        }
        if r.guest_socket.is_some() || r.host_socket.is_some() {
            w.add(
                format!(
                    "{field}.{}",
                    if r.guest_socket.is_some() {
                        "guestSocket"
                    } else {
                        "hostSocket"
                    }
                ),
                "unix socket forwards have no Service counterpart; not exported",
            );
            continue;
        }
        if r.reverse {
            w.add(
                format!("{field}.reverse"),
                "a reverse forward (guest to host) has no Service counterpart; not exported",
            );
            continue;
        }
        let [g0, g1] = r.guest_port_range;
        let [h0, h1] = r.host_port_range;
        if g0 != g1 || h0 != h1 {
            w.add(
                field,
                format!(
                    "a port range ({g0}-{g1}) cannot be one Service port; not exported (write one rule per port)"
                ),
            );
            continue;
        }
        let protos: &[&str] = match r.proto {
            Proto::Tcp => &["TCP"],
            Proto::Udp => &["UDP"],
            Proto::Any => &["TCP", "UDP"],
        };
        // An earlier rule (an `ignore` one too) that matches this guest port wins.
        if let Some(j) = rules[..i].iter().position(|e| {
            e.guest_socket.is_none()
                && (e.guest_port_range[0]..=e.guest_port_range[1]).contains(&g0)
                && (e.proto == Proto::Any || r.proto == Proto::Any || e.proto == r.proto)
        }) {
            w.add(
                field,
                format!("guest port {g0} is matched by portForwards[{j}] first; not exported"),
            );
            continue;
        }
        if let Some(j) = host_ports.get(&h0) {
            w.add(
                field,
                format!(
                    "host port {h0} is already the Service port of portForwards[{j}]; not exported"
                ),
            );
            continue;
        }
        host_ports.insert(h0, i);
        let svc = format!("{}-{h0}", input.name);
        let ports: Vec<Value> = protos
            .iter()
            .map(|p| {
                json!({
                    "name": format!("{}-{h0}", p.to_ascii_lowercase()),
                    "protocol": p,
                    "port": h0,
                    "targetPort": g0,
                })
            })
            .collect();
        out.push(Object {
            kind: "Service",
            name: svc.clone(),
            value: json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": metadata(input, &svc),
                "spec": {
                    "selector": { LABEL_INSTANCE: input.name },
                    "ports": ports,
                },
            }),
        });
    }
    out.sort_by_key(|o| o.name.clone());
    out
}

#[cfg(test)]
mod tests;
