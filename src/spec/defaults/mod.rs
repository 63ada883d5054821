//! Lima's defaults: layering `_config/default.yaml` (d), the file (y) and
//! `_config/override.yaml` (o), then the builtin defaults, then template
//! variables — `FillDefault` in Lima (reference §6.1–6.3).
//!
//! [`fill`] runs the sections in Lima's order; each section module fills
//! one part of the file: `images` (images, disks, firmware, containerd),
//! `mounts`, `networks`, `user` (ssh and user), `provision` (probes,
//! provision, copyToHost) and `port_forwards`. `layer` merges the three
//! files, `template` expands template variables.

mod images;
mod layer;
mod mounts;
mod networks;
mod port_forwards;
mod provision;
mod template;
mod user;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use layer::{ListOffsets, layer};
pub use mounts::mount_tag;
pub use networks::{instance_mac, mac_address};
pub use port_forwards::fill_port_forward;
pub use template::{clean_path, expand_host_path, hostname_for};

use super::host::HostInfo;
use super::types::*;
use super::units::{format_size, parse_size};

#[derive(Clone, Debug)]
pub struct FillContext<'a> {
    pub host: &'a HostInfo,
    pub instance_name: String,
    /// `$LIMA_HOME/<name>` (need not exist).
    pub instance_dir: PathBuf,
    pub lima_home: PathBuf,
}

impl FillContext<'_> {
    pub fn lima_yaml_path(&self) -> PathBuf {
        self.instance_dir.join(crate::layout::files::LIMA_YAML)
    }
}

/// Non-fatal findings while filling defaults (template errors and the like).
pub type Warnings = Vec<String>;

fn is_unset(s: &Option<String>) -> bool {
    s.as_deref().is_none_or(|s| s.is_empty() || s == "default")
}

/// Fills every builtin default and expands template variables. `y` is the
/// already layered configuration.
pub fn fill(y: &mut LimaYaml, ctx: &FillContext) -> Warnings {
    let mut w = Warnings::new();
    let host = ctx.host;

    let (os, arch) = fill_platform(y, host, &mut w);
    images::fill_images(y, &arch);
    fill_resources(y, host);
    images::fill_additional_disks(y);
    let mount_type = mounts::fill_mount_type(y);
    user::fill_ssh(y);
    images::fill_firmware(y, &arch);
    fill_devices(y);
    images::fill_containerd(y, &os, &arch);
    let param = fill_guest_environment(y, host, &mut w);
    networks::fill_networks(y, ctx);

    let guest_user = user::fill_user(y, ctx, &os, &param, &mut w);
    let guest = template::guest_template_data(
        ctx,
        &guest_user.name,
        guest_user.uid,
        &guest_user.home,
        &param,
    );
    let hostd = template::host_template_data(ctx, &param);

    mounts::fill_mounts(y, ctx, &mount_type, &guest, &hostd, &mut w);
    provision::fill_probes(y, &guest, &mut w);
    provision::fill_provision(y, &os, &guest, &mut w);
    port_forwards::fill_port_forwards(y, ctx, &guest, &hostd, &mut w);
    provision::fill_copy_to_host(y, &guest, &hostd, &mut w);
    apply_plain_mode(y);
    w
}

/// `os`, `arch`, `vmType`, `runStrategy`, and the deprecated top-level
/// `cpuType`; returns the OS and arch the other sections depend on.
fn fill_platform(y: &mut LimaYaml, host: &HostInfo, w: &mut Warnings) -> (String, String) {
    if is_unset(&y.os) {
        y.os = Some("Linux".into());
    }
    let os = y.os.clone().unwrap();
    if is_unset(&y.arch) {
        y.arch = Some(host.arch.clone());
    }
    let arch = y.arch.clone().unwrap();
    if is_unset(&y.vm_type) {
        y.vm_type = Some("qemu".into());
    }
    y.run_strategy.get_or_insert_with(|| "Always".into());

    // Deprecated top-level cpuType moves under vmOpts.qemu.cpuType.
    if let Some(cpu_type) = y.cpu_type.take()
        && !cpu_type.is_empty()
    {
        w.push("`cpuType` is deprecated; use `vmOpts.qemu.cpuType`".into());
        let q = y
            .vm_opts
            .get_or_insert_with(Default::default)
            .qemu
            .get_or_insert_with(Default::default);
        let m = q.cpu_type.get_or_insert_with(Default::default);
        for (k, v) in cpu_type {
            m.entry(k).or_insert(v);
        }
    }
    (os, arch)
}

/// `cpus`, `memory` and `disk` from the host's size.
fn fill_resources(y: &mut LimaYaml, host: &HostInfo) {
    if y.cpus.is_none() {
        y.cpus = Some(host.cpus.clamp(1, 4) as i64);
    }
    if y.memory.as_deref().is_none_or(str::is_empty) {
        y.memory = Some(format_size((4u64 << 30).min(host.memory_bytes / 2)));
    }
    if y.disk.as_deref().is_none_or(str::is_empty) {
        y.disk = Some("100GiB".into());
    }
}

/// `audio` (none) and `video` (no display; VNC on localhost when asked for).
fn fill_devices(y: &mut LimaYaml) {
    let audio = y.audio.get_or_insert_with(Default::default);
    audio.device.get_or_insert_with(String::new);
    audio.interface.get_or_insert_with(String::new);
    let video = y.video.get_or_insert_with(Default::default);
    if video.display.as_deref().is_none_or(str::is_empty) {
        video.display = Some("none".into());
    }
    video
        .vnc
        .get_or_insert_with(Default::default)
        .display
        .get_or_insert_with(|| "127.0.0.1:0,to=9".into());
}

/// `message`, `param`, `env`, `dns`, `hostResolver`, `propagateProxyEnv`,
/// `caCerts`, `plain`, `nestedVirtualization`, `tpm` and `timezone`; returns
/// the params the template variables expose.
fn fill_guest_environment(
    y: &mut LimaYaml,
    host: &HostInfo,
    w: &mut Warnings,
) -> BTreeMap<String, String> {
    y.message.get_or_insert_with(String::new);
    let param = y.param.get_or_insert_with(BTreeMap::new).clone();
    y.env.get_or_insert_with(BTreeMap::new);
    y.dns.get_or_insert_with(Vec::new);
    let hr = y.host_resolver.get_or_insert_with(Default::default);
    hr.enabled.get_or_insert(true);
    hr.ipv6.get_or_insert(false);
    hr.hosts.get_or_insert_with(BTreeMap::new);
    y.propagate_proxy_env.get_or_insert(true);
    let ca = y.ca_certs.get_or_insert_with(Default::default);
    ca.remove_defaults.get_or_insert(false);
    ca.files.get_or_insert_with(Vec::new);
    ca.certs.get_or_insert_with(Vec::new);
    y.plain.get_or_insert(false);
    y.nested_virtualization.get_or_insert(false);
    y.tpm.get_or_insert(false);
    if y.timezone.is_none() {
        match &host.timezone {
            Some(tz) => y.timezone = Some(tz.clone()),
            None => {
                w.push("cannot determine the host timezone; the guest keeps its own".into());
                y.timezone = Some(String::new());
            }
        }
    }
    param
}

/// Plain mode keeps only what works without the guest agent.
fn apply_plain_mode(y: &mut LimaYaml) {
    if y.plain == Some(true) {
        if let Some(pfs) = &mut y.port_forwards {
            pfs.retain(|p| p.static_ == Some(true));
        }
        y.mounts = Some(Vec::new());
        let c = y.containerd.get_or_insert_with(Default::default);
        c.system = Some(false);
        c.user = Some(false);
        y.timezone = Some(String::new());
    }
}

/// Parses a configured size, for callers that already validated it.
pub fn size_bytes(s: &Option<String>) -> u64 {
    s.as_deref().and_then(|s| parse_size(s).ok()).unwrap_or(0)
}
