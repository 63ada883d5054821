//! Lima's defaults: layering `_config/default.yaml` (d), the file (y) and
//! `_config/override.yaml` (o), then the builtin defaults, then template
//! variables — `FillDefault` in Lima (reference §6.1–6.3).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value as J};
use sha2::{Digest, Sha256};

use super::gotmpl;
use super::host::HostInfo;
use super::types::*;
use super::units::{format_size, parse_size};

/// Everything besides the YAML that defaults depend on.
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

/// How a list is combined across d, y and o.
enum ListRule {
    /// Highest priority set value wins (o, then y, then d).
    Scalar,
    /// Concatenation override first: o, y, d (first matching rule wins).
    OverrideFirst,
    /// Concatenation d, y, o (later entries can amend earlier ones).
    DefaultFirst,
    /// Highest-priority non-empty list wins.
    FirstNonEmpty,
    /// d, y, o without duplicates.
    Unique,
}

fn list_rule(path: &str) -> ListRule {
    match path {
        "images"
        | "additionalDisks"
        | "provision"
        | "probes"
        | "portForwards"
        | "copyToHost"
        | "firmware.images"
        | "containerd.archives"
        | "mountTypesUnsupported" => ListRule::OverrideFirst,
        "mounts" | "networks" => ListRule::DefaultFirst,
        "dns" => ListRule::FirstNonEmpty,
        "caCerts.files" | "caCerts.certs" => ListRule::Unique,
        _ => ListRule::Scalar,
    }
}

/// Where the file's own entries start in each concatenated list, so that a
/// message about `provision[3]` can point at the right line of the file.
pub type ListOffsets = BTreeMap<String, usize>;

/// Layers d < y < o the way Lima's `FillDefault` does, on the JSON form.
pub fn layer(d: &J, y: &J, o: &J) -> (J, ListOffsets) {
    let mut offsets = ListOffsets::new();
    let v = layer_at("", d, y, o, &mut offsets);
    (v, offsets)
}

fn layer_at(path: &str, d: &J, y: &J, o: &J, offsets: &mut ListOffsets) -> J {
    let is_obj = |v: &J| v.is_object();
    if is_obj(d) || is_obj(y) || is_obj(o) {
        let empty = Map::new();
        let dm = d.as_object().unwrap_or(&empty);
        let ym = y.as_object().unwrap_or(&empty);
        let om = o.as_object().unwrap_or(&empty);
        let mut keys: Vec<&String> = Vec::new();
        for m in [ym, dm, om] {
            for k in m.keys() {
                if !keys.contains(&k) {
                    keys.push(k);
                }
            }
        }
        let mut out = Map::new();
        for k in keys {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            let v = layer_at(
                &p,
                dm.get(k).unwrap_or(&J::Null),
                ym.get(k).unwrap_or(&J::Null),
                om.get(k).unwrap_or(&J::Null),
                offsets,
            );
            if !v.is_null() {
                out.insert(k.clone(), v);
            }
        }
        return J::Object(out);
    }
    let arr = |v: &J| v.as_array().cloned().unwrap_or_default();
    if d.is_array() || y.is_array() || o.is_array() {
        match list_rule(path) {
            ListRule::OverrideFirst => {
                let (o, y, d) = (arr(o), arr(y), arr(d));
                offsets.insert(path.to_string(), o.len());
                return J::Array(o.into_iter().chain(y).chain(d).collect());
            }
            ListRule::DefaultFirst => {
                let (d, y, o) = (arr(d), arr(y), arr(o));
                offsets.insert(path.to_string(), d.len());
                return J::Array(d.into_iter().chain(y).chain(o).collect());
            }
            ListRule::Unique => {
                let mut out: Vec<J> = Vec::new();
                for v in arr(d).into_iter().chain(arr(y)).chain(arr(o)) {
                    if !out.contains(&v) {
                        out.push(v);
                    }
                }
                return J::Array(out);
            }
            ListRule::FirstNonEmpty => {
                for v in [o, y, d] {
                    if v.as_array().is_some_and(|a| !a.is_empty()) {
                        return v.clone();
                    }
                }
                return J::Array(vec![]);
            }
            ListRule::Scalar => {}
        }
    }
    for v in [o, y, d] {
        if !v.is_null() {
            return v.clone();
        }
    }
    J::Null
}

/// Non-fatal findings while filling defaults (template errors and the like).
pub type Warnings = Vec<String>;

fn host_template_data(ctx: &FillContext, param: &BTreeMap<String, String>) -> J {
    serde_json::json!({
        "Dir": ctx.instance_dir.to_string_lossy(),
        "Name": ctx.instance_name,
        "Hostname": hostname_for(&ctx.instance_name),
        "UID": ctx.host.uid,
        "User": ctx.host.user,
        "Home": ctx.host.home.to_string_lossy(),
        "Param": param,
        "GlobalTempDir": "/tmp",
        "TempDir": std::env::temp_dir().to_string_lossy(),
        "Instance": ctx.instance_name,
        "LimaHome": ctx.lima_home.to_string_lossy(),
    })
}

fn guest_template_data(
    ctx: &FillContext,
    user: &str,
    uid: u32,
    home: &str,
    param: &BTreeMap<String, String>,
) -> J {
    serde_json::json!({
        "Name": ctx.instance_name,
        "Hostname": hostname_for(&ctx.instance_name),
        "UID": uid,
        "User": user,
        "Home": home,
        "Param": param,
    })
}

/// `lima-` + the instance name with `.` and `_` replaced by `-`.
pub fn hostname_for(instance: &str) -> String {
    format!("lima-{}", instance.replace(['.', '_'], "-"))
}

fn expand(s: &mut String, data: &J, field: &str, warnings: &mut Warnings) {
    match gotmpl::render(s, data) {
        Ok(out) => *s = out,
        Err(e) => warnings.push(format!(
            "couldn't process {field} {} as a template: {e}",
            super::yaml::quote_name(s)
        )),
    }
}

fn expand_opt(s: &mut Option<String>, data: &J, field: &str, warnings: &mut Warnings) {
    if let Some(s) = s {
        expand(s, data, field, warnings);
    }
}

/// Expands `~` and `~/…` against the host home, then cleans the path.
pub fn expand_host_path(p: &str, home: &Path) -> String {
    let expanded = if p == "~" {
        home.to_string_lossy().into_owned()
    } else if let Some(rest) = p.strip_prefix("~/") {
        home.join(rest).to_string_lossy().into_owned()
    } else {
        p.to_string()
    };
    clean_path(&expanded)
}

/// Go's `filepath.Clean` for absolute and relative paths.
pub fn clean_path(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let abs = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !abs {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let joined = parts.join("/");
    if abs {
        format!("/{joined}")
    } else if joined.is_empty() {
        ".".into()
    } else {
        joined
    }
}

/// `52:55:55:` + the first three bytes of sha256(machine id + `key`).
pub fn mac_address(machine_id: &str, key: &str) -> String {
    let sum = Sha256::digest(format!("{machine_id}{key}").as_bytes());
    format!("52:55:55:{:02x}:{:02x}:{:02x}", sum[0], sum[1], sum[2])
}

/// The MAC of an instance's slirp NIC: [`mac_address`] of this host's
/// machine id and the instance directory. QEMU's NIC and cidata's
/// network-config must agree, so both call this.
pub fn instance_mac(instance_dir: &Path) -> String {
    mac_address(
        &super::host::host().machine_id,
        &instance_dir.to_string_lossy(),
    )
}

/// The 9p/virtiofs mount tag: `lima-` + 16 hex of sha256(location:mountPoint).
pub fn mount_tag(location: &str, mount_point: &str) -> String {
    let sum = Sha256::digest(format!("{location}:{mount_point}").as_bytes());
    format!("lima-{}", hex::encode(&sum[..8]))
}

fn default_shell(os: &str) -> &'static str {
    match os {
        "Darwin" => "/bin/zsh",
        "FreeBSD" => "/bin/sh",
        "Windows" => "cmd.exe",
        _ => "/bin/bash",
    }
}

/// The nerdctl-full archives used when `containerd.archives` is empty
/// (nerdctl v2.1.4, the release and digests Lima pins).
fn default_containerd_archives() -> Vec<File> {
    const VERSION: &str = "2.1.4";
    [
        (
            "amd64",
            "x86_64",
            "sha256:03c1a3194b6e5fec02d866a35d0029c694b4cedb865b28f931187aa0c85dd125",
        ),
        (
            "arm64",
            "aarch64",
            "sha256:124b171778f8cc9bb317e094e5a92de5faf6d1bb5f5c9ded4b82a55df2c3c295",
        ),
    ]
    .into_iter()
    .map(|(goarch, arch, digest)| File {
        location: format!(
            "https://github.com/containerd/nerdctl/releases/download/v{VERSION}/nerdctl-full-{VERSION}-linux-{goarch}.tar.gz"
        ),
        arch: Some(arch.into()),
        digest: Some(digest.into()),
    })
    .collect()
}

fn is_unset(s: &Option<String>) -> bool {
    s.as_deref().is_none_or(|s| s.is_empty() || s == "default")
}

/// Fills every builtin default and expands template variables. `y` is the
/// already layered configuration.
pub fn fill(y: &mut LimaYaml, ctx: &FillContext) -> Warnings {
    let mut w = Warnings::new();
    let host = ctx.host;

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

    for img in y.images.iter_mut().flatten() {
        if is_unset(&img.arch) {
            img.arch = Some(arch.clone());
        }
        let img_arch = img.arch.clone();
        if let Some(k) = &mut img.kernel
            && is_unset(&k.arch)
        {
            k.arch = img_arch.clone();
        }
        if let Some(i) = &mut img.initrd
            && is_unset(&i.arch)
        {
            i.arch = img_arch.clone();
        }
    }

    if y.cpus.is_none() {
        y.cpus = Some(host.cpus.clamp(1, 4) as i64);
    }
    if y.memory.as_deref().is_none_or(str::is_empty) {
        y.memory = Some(format_size((4u64 << 30).min(host.memory_bytes / 2)));
    }
    if y.disk.as_deref().is_none_or(str::is_empty) {
        y.disk = Some("100GiB".into());
    }

    for d in y.additional_disks.iter_mut().flatten() {
        d.format.get_or_insert(true);
        d.fs_type.get_or_insert_with(|| "ext4".into());
        d.fs_args.get_or_insert_with(Vec::new);
    }

    let unsupported = y
        .mount_types_unsupported
        .get_or_insert_with(Vec::new)
        .clone();
    if is_unset(&y.mount_type) {
        // This project's QEMU driver defaults to reverse-sshfs (it needs no
        // 9p support in the guest kernel); 9p when reverse-sshfs is excluded.
        y.mount_type = Some(if unsupported.iter().any(|t| t == "reverse-sshfs") {
            "9p".into()
        } else {
            "reverse-sshfs".into()
        });
    }
    let mount_type = y.mount_type.clone().unwrap();
    y.mount_inotify.get_or_insert(false);

    let ssh = y.ssh.get_or_insert_with(Default::default);
    ssh.local_port.get_or_insert(0);
    ssh.load_dot_ssh_pub_keys.get_or_insert(false);
    ssh.forward_agent.get_or_insert(false);
    ssh.forward_x11.get_or_insert(false);
    ssh.forward_x11_trusted.get_or_insert(false);
    ssh.over_vsock.get_or_insert(false);

    let fw = y.firmware.get_or_insert_with(Default::default);
    fw.legacy_bios.get_or_insert(false);
    for img in fw.images.get_or_insert_with(Vec::new) {
        if is_unset(&img.arch) {
            img.arch = Some(arch.clone());
        }
    }
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

    y.upgrade_packages.get_or_insert(false);
    let containerd = y.containerd.get_or_insert_with(Default::default);
    containerd.system.get_or_insert(false);
    containerd
        .user
        .get_or_insert(os == "Linux" && (arch == "x86_64" || arch == "aarch64"));
    let archives = containerd.archives.get_or_insert_with(Vec::new);
    if archives.is_empty() {
        *archives = default_containerd_archives();
    }
    for a in archives {
        if is_unset(&a.arch) {
            a.arch = Some(arch.clone());
        }
    }
    y.guest_install_prefix
        .get_or_insert_with(|| "/usr/local".into());

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

    // Networks: interface, metric, MAC.
    for (i, n) in y.networks.iter_mut().flatten().enumerate() {
        if n.interface.as_deref().is_none_or(str::is_empty) {
            n.interface = Some(format!("lima{i}"));
        }
        n.metric.get_or_insert(100);
        if n.mac_address.as_deref().is_none_or(str::is_empty) {
            let key = format!("{}#{i}", ctx.lima_yaml_path().display());
            n.mac_address = Some(mac_address(&host.machine_id, &key));
        }
    }

    // User.
    let user = y.user.get_or_insert_with(Default::default);
    if user.name.as_deref().is_none_or(str::is_empty) {
        user.name = Some(host.user.clone());
    }
    if user.comment.is_none() {
        user.comment = Some(host.comment.clone());
    }
    user.uid.get_or_insert(host.uid);
    if user.shell.as_deref().is_none_or(str::is_empty) {
        user.shell = Some(default_shell(&os).into());
    }
    user.passwordless_sudo.get_or_insert(os != "Darwin");
    if user.home.as_deref().is_none_or(str::is_empty) {
        user.home = Some(if os == "Darwin" {
            "/Users/{{.User}}.guest".into()
        } else {
            "/home/{{.User}}.guest".into()
        });
    }
    let user_name = user.name.clone().unwrap();
    let uid = user.uid.unwrap();
    {
        let data = guest_template_data(ctx, &user_name, uid, "", &param);
        expand_opt(&mut user.home, &data, "`user.home`", &mut w);
    }
    let home = user.home.clone().unwrap();
    let guest = guest_template_data(ctx, &user_name, uid, &home, &param);
    let hostd = host_template_data(ctx, &param);

    // Mounts: expand, per-entry defaults, then merge entries with the same mountPoint.
    let mut merged: Vec<Mount> = Vec::new();
    for (i, mut m) in y.mounts.take().unwrap_or_default().into_iter().enumerate() {
        expand(
            &mut m.location,
            &hostd,
            &format!("`mounts[{i}].location`"),
            &mut w,
        );
        m.location = expand_host_path(&m.location, &host.home);
        expand_opt(
            &mut m.mount_point,
            &guest,
            &format!("`mounts[{i}].mountPoint`"),
            &mut w,
        );
        if m.mount_point.as_deref().is_none_or(str::is_empty) {
            m.mount_point = Some(m.location.clone());
        }
        if let Some(prev) = merged.iter_mut().find(|p| p.mount_point == m.mount_point) {
            merge_mount(prev, m);
        } else {
            merged.push(m);
        }
    }
    for m in &mut merged {
        let writable = *m.writable.get_or_insert(false);
        let s = m.sshfs.get_or_insert_with(Default::default);
        s.cache.get_or_insert(true);
        s.follow_symlinks.get_or_insert(false);
        s.sftp_driver.get_or_insert_with(String::new);
        let p = m.nine_p.get_or_insert_with(Default::default);
        p.security_model.get_or_insert_with(|| "none".into());
        p.protocol_version.get_or_insert_with(|| "9p2000.L".into());
        p.msize.get_or_insert_with(|| "128KiB".into());
        p.cache
            .get_or_insert_with(|| if writable { "mmap" } else { "fscache" }.into());
        if mount_type == "virtiofs" {
            m.virtiofs
                .get_or_insert_with(Default::default)
                .queue_size
                .get_or_insert(1024);
        }
    }
    y.mounts = Some(merged);

    let n_probes = y.probes.as_ref().map_or(0, Vec::len);
    for (i, p) in y.probes.iter_mut().flatten().enumerate() {
        if p.mode.as_deref().is_none_or(str::is_empty) {
            p.mode = Some("readiness".into());
        }
        if p.description.as_deref().is_none_or(str::is_empty) {
            p.description = Some(format!("user probe {}/{}", i + 1, n_probes));
        }
        p.script.get_or_insert_with(String::new);
        expand_opt(
            &mut p.script,
            &guest,
            &format!("`probes[{i}].script`"),
            &mut w,
        );
    }

    let owner_default = if os == "Darwin" || os == "FreeBSD" {
        "root:wheel"
    } else {
        "root:root"
    };
    for (i, p) in y.provision.iter_mut().flatten().enumerate() {
        if p.mode.as_deref().is_none_or(str::is_empty) {
            p.mode = Some("system".into());
        }
        let mode = p.mode.clone().unwrap();
        if mode == "dependency" {
            p.skip_default_dependency_resolution.get_or_insert(false);
        }
        if mode == "data" {
            p.content.get_or_insert_with(String::new);
            p.overwrite.get_or_insert(true);
        }
        if mode == "yq" {
            p.format.get_or_insert_with(|| "auto".into());
        }
        if mode == "data" || mode == "yq" {
            p.owner.get_or_insert_with(|| owner_default.into());
            p.permissions.get_or_insert_with(|| "644".into());
        }
        let f = |n: &str| format!("`provision[{i}].{n}`");
        expand_opt(&mut p.script, &guest, &f("script"), &mut w);
        expand_opt(&mut p.content, &guest, &f("content"), &mut w);
        expand_opt(&mut p.expression, &guest, &f("expression"), &mut w);
        expand_opt(&mut p.owner, &guest, &f("owner"), &mut w);
        expand_opt(&mut p.path, &guest, &f("path"), &mut w);
    }

    for (i, pf) in y.port_forwards.iter_mut().flatten().enumerate() {
        fill_port_forward(pf, ctx);
        expand_opt(
            &mut pf.guest_socket,
            &guest,
            &format!("`portForwards[{i}].guestSocket`"),
            &mut w,
        );
        expand_opt(
            &mut pf.host_socket,
            &hostd,
            &format!("`portForwards[{i}].hostSocket`"),
            &mut w,
        );
        if let Some(hs) = &mut pf.host_socket
            && !hs.is_empty()
            && !hs.starts_with('/')
        {
            *hs = ctx
                .instance_dir
                .join(crate::layout::files::SOCK_DIR)
                .join(&*hs)
                .to_string_lossy()
                .into();
        }
    }

    for (i, c) in y.copy_to_host.iter_mut().flatten().enumerate() {
        expand_opt(
            &mut c.guest,
            &guest,
            &format!("`copyToHost[{i}].guest`"),
            &mut w,
        );
        expand_opt(
            &mut c.host,
            &hostd,
            &format!("`copyToHost[{i}].host`"),
            &mut w,
        );
        c.skip_if_missing.get_or_insert(false);
        c.delete_on_stop.get_or_insert(false);
    }

    // Plain mode keeps only what works without the guest agent.
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
    w
}

fn merge_mount(prev: &mut Mount, m: Mount) {
    if m.writable.is_some() {
        prev.writable = m.writable;
    }
    prev.location = m.location;
    if let Some(s) = m.sshfs {
        let p = prev.sshfs.get_or_insert_with(Default::default);
        p.cache = s.cache.or(p.cache);
        p.follow_symlinks = s.follow_symlinks.or(p.follow_symlinks);
        p.sftp_driver = s.sftp_driver.or(p.sftp_driver.take());
    }
    if let Some(n) = m.nine_p {
        let p = prev.nine_p.get_or_insert_with(Default::default);
        p.security_model = n.security_model.or(p.security_model.take());
        p.protocol_version = n.protocol_version.or(p.protocol_version.take());
        p.msize = n.msize.or(p.msize.take());
        p.cache = n.cache.or(p.cache.take());
    }
    if let Some(v) = m.virtiofs {
        let p = prev.virtiofs.get_or_insert_with(Default::default);
        p.queue_size = v.queue_size.or(p.queue_size);
    }
}

/// Lima's `FillPortForwardDefaults`.
pub fn fill_port_forward(pf: &mut PortForward, _ctx: &FillContext) {
    if pf.proto.as_deref().is_none_or(str::is_empty) {
        pf.proto = Some("any".into());
    }
    let must_be_zero = pf.guest_ip_must_be_zero == Some(true);
    if pf.guest_ip.as_deref().is_none_or(str::is_empty) {
        pf.guest_ip = Some(if must_be_zero { "0.0.0.0" } else { "127.0.0.1" }.into());
    }
    if pf.guest_ip_must_be_zero.is_none() {
        pf.guest_ip_must_be_zero = Some(pf.guest_ip.as_deref() == Some("0.0.0.0"));
    }
    if pf.host_ip.as_deref().is_none_or(str::is_empty) {
        pf.host_ip = Some("127.0.0.1".into());
    }
    if pf.guest_port_range.is_none_or(|r| r == [0, 0]) {
        pf.guest_port_range = Some(match pf.guest_port {
            Some(p) if p != 0 => [p, p],
            _ => [1, 65535],
        });
    }
    if pf.host_port_range.is_none_or(|r| r == [0, 0]) {
        pf.host_port_range = Some(match pf.host_port {
            Some(p) if p != 0 => [p, p],
            _ => pf.guest_port_range.unwrap(),
        });
    }
    pf.reverse.get_or_insert(false);
    pf.ignore.get_or_insert(false);
    pf.static_.get_or_insert(false);
}

/// Parses a configured size, for callers that already validated it.
pub fn size_bytes(s: &Option<String>) -> u64 {
    s.as_deref().and_then(|s| parse_size(s).ok()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx(host: &HostInfo) -> FillContext<'_> {
        FillContext {
            host,
            instance_name: "dev".into(),
            instance_dir: "/lh/dev".into(),
            lima_home: "/lh".into(),
        }
    }

    #[test]
    fn scalars_override_then_file_then_default() {
        let (v, _) = layer(
            &json!({"cpus": 1, "memory": "1GiB", "disk": "9GiB"}),
            &json!({"cpus": 2, "memory": "2GiB"}),
            &json!({"cpus": 3}),
        );
        assert_eq!(v, json!({"cpus": 3, "memory": "2GiB", "disk": "9GiB"}));
    }

    #[test]
    fn lists_follow_lima_concatenation_order() {
        let (v, off) = layer(
            &json!({"provision": ["d"], "mounts": ["d"], "dns": ["1.1.1.1"]}),
            &json!({"provision": ["y"], "mounts": ["y"], "dns": []}),
            &json!({"provision": ["o"], "mounts": ["o"]}),
        );
        assert_eq!(v["provision"], json!(["o", "y", "d"]));
        assert_eq!(v["mounts"], json!(["d", "y", "o"]));
        assert_eq!(v["dns"], json!(["1.1.1.1"]));
        assert_eq!(off["provision"], 1);
        assert_eq!(off["mounts"], 1);
    }

    #[test]
    fn maps_merge_key_wise() {
        let (v, _) = layer(
            &json!({"env": {"A": "d", "B": "d"}}),
            &json!({"env": {"B": "y", "C": "y"}}),
            &json!({"env": {"C": "o"}}),
        );
        assert_eq!(v["env"], json!({"B": "y", "C": "o", "A": "d"}));
    }

    #[test]
    fn builtin_defaults_follow_host() {
        let host = HostInfo::for_tests();
        let mut y = LimaYaml::default();
        fill(&mut y, &ctx(&host));
        assert_eq!(y.cpus, Some(4));
        assert_eq!(y.memory.as_deref(), Some("4GiB"));
        assert_eq!(y.disk.as_deref(), Some("100GiB"));
        assert_eq!(y.arch.as_deref(), Some("x86_64"));
        assert_eq!(y.os.as_deref(), Some("Linux"));
        assert_eq!(y.vm_type.as_deref(), Some("qemu"));
        let u = y.user.unwrap();
        assert_eq!(u.name.as_deref(), Some("alice"));
        assert_eq!(u.home.as_deref(), Some("/home/alice.guest"));
        assert_eq!(u.uid, Some(1001));
        assert_eq!(y.timezone.as_deref(), Some("Europe/Berlin"));

        let small = HostInfo {
            cpus: 2,
            memory_bytes: 3 << 30,
            ..HostInfo::for_tests()
        };
        let mut y = LimaYaml::default();
        fill(&mut y, &ctx(&small));
        assert_eq!(y.cpus, Some(2));
        assert_eq!(y.memory.as_deref(), Some("1.5GiB"));
    }

    #[test]
    fn mounts_expand_and_merge_by_mount_point() {
        let host = HostInfo::for_tests();
        let mut y: LimaYaml = serde_json::from_value(json!({
            "mounts": [
                {"location": "~"},
                {"location": "/tmp/lima", "writable": true},
                {"location": "~", "mountPoint": "/home/alice", "writable": true},
                {"location": "/data", "mountPoint": "/mnt/{{.User}}"},
            ]
        }))
        .unwrap();
        fill(&mut y, &ctx(&host));
        let m = y.mounts.unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].location, "/home/alice");
        assert_eq!(m[0].writable, Some(true));
        assert_eq!(m[0].nine_p.as_ref().unwrap().cache.as_deref(), Some("mmap"));
        assert_eq!(m[2].mount_point.as_deref(), Some("/mnt/alice"));
    }

    #[test]
    fn port_forward_defaults() {
        let host = HostInfo::for_tests();
        let mut pf = PortForward {
            guest_port: Some(8080),
            ..Default::default()
        };
        fill_port_forward(&mut pf, &ctx(&host));
        assert_eq!(pf.guest_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(pf.guest_port_range, Some([8080, 8080]));
        assert_eq!(pf.host_port_range, Some([8080, 8080]));
        assert_eq!(pf.proto.as_deref(), Some("any"));
        let mut pf = PortForward {
            guest_ip: Some("0.0.0.0".into()),
            ..Default::default()
        };
        fill_port_forward(&mut pf, &ctx(&host));
        assert_eq!(pf.guest_ip_must_be_zero, Some(true));
        assert_eq!(pf.host_port_range, Some([1, 65535]));
    }

    #[test]
    fn mac_and_tag_are_stable() {
        assert_eq!(mac_address("id", "/x").len(), 17);
        assert!(mac_address("id", "/x").starts_with("52:55:55:"));
        assert_eq!(mount_tag("/a", "/b").len(), 5 + 16);
        assert_eq!(hostname_for("my.vm_1"), "lima-my-vm-1");
        assert_eq!(clean_path("/a/./b/../c/"), "/a/c");
        assert_eq!(expand_host_path("~/x/../y", Path::new("/h")), "/h/y");
    }

    #[test]
    fn plain_mode_drops_dynamic_features() {
        let host = HostInfo::for_tests();
        let mut y: LimaYaml = serde_json::from_value(json!({
            "plain": true,
            "mounts": [{"location": "/tmp"}],
            "portForwards": [{"guestPort": 80, "static": true}, {"guestPort": 81}],
        }))
        .unwrap();
        fill(&mut y, &ctx(&host));
        assert!(y.mounts.unwrap().is_empty());
        assert_eq!(y.port_forwards.unwrap().len(), 1);
        assert_eq!(y.containerd.unwrap().user, Some(false));
    }
}
