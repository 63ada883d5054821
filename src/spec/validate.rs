//! Validation of a filled `lima.yaml` (Lima's `limayaml.Validate`, reference
//! §6.4). Every problem names its field path, e.g. ``field `mounts[2].mountPoint`
//! must be an absolute path``; the loader adds the file, line and column.

use std::net::IpAddr;

use super::names::validate_identifier;
use super::types::*;
use super::units::parse_size;
use super::yaml::{go_quote, quote_name};

/// One validation problem: the field it is about and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Path like `mounts[2].mountPoint`; empty for whole-document problems.
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.message)
    }
}

struct V {
    errors: Vec<FieldError>,
    warnings: Vec<String>,
}

impl V {
    fn err(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }
    /// ``field `F` <rest>``
    fn field(&mut self, field: impl Into<String>, rest: impl AsRef<str>) {
        let field = field.into();
        let message = format!("field {} {}", quote_name(&field), rest.as_ref());
        self.err(field, message);
    }
}

/// Directories a mount must never cover in the guest.
const RESERVED_MOUNT_POINTS: &[&str] = &[
    "/", "/bin", "/dev", "/etc", "/home", "/opt", "/sbin", "/tmp", "/usr", "/var",
];

/// Validates a filled configuration. Returns errors and warnings.
pub fn validate(y: &LimaYaml, running_version: &str) -> (Vec<FieldError>, Vec<String>) {
    let mut v = V {
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    if y.base.as_ref().is_some_and(|b| !b.is_empty()) {
        v.field(
            "base",
            "must be empty (base templates are merged before validation)",
        );
    }
    if let Some(min) = &y.minimum_lima_version {
        match semver_parse(min) {
            None => v.field(
                "minimumLimaVersion",
                format!("must be a semver version, got {}", go_quote(min)),
            ),
            Some(min_v) => {
                if let Some(cur) = semver_parse(running_version)
                    && cur < min_v
                {
                    v.field(
                        "minimumLimaVersion",
                        format!("requires limactl version {min}, but this is {running_version}"),
                    );
                }
            }
        }
    }
    if let Some(rs) = &y.run_strategy
        && !RUN_STRATEGIES.contains(&rs.as_str())
    {
        v.field(
            "runStrategy",
            format!(
                "must be one of {}, got {}",
                RUN_STRATEGIES.join(", "),
                go_quote(rs)
            ),
        );
    }
    let os = y.os.as_deref().unwrap_or("Linux");
    if !OSES.contains(&os) {
        v.field(
            "os",
            format!("must be one of {}, got {}", quote_list(OSES), go_quote(os)),
        );
    }
    let arch = y.arch.as_deref().unwrap_or("");
    if !ARCHES.contains(&arch) {
        v.field(
            "arch",
            format!(
                "must be one of {}, got {}",
                quote_list(ARCHES),
                go_quote(arch)
            ),
        );
    }
    let vm_type = y.vm_type.as_deref().unwrap_or("qemu");
    if !VM_TYPES.contains(&vm_type) {
        v.field(
            "vmType",
            format!(
                "must be one of {}, got {} (vmType {} is not a registered driver)",
                quote_list(VM_TYPES),
                go_quote(vm_type),
                quote_name(vm_type)
            ),
        );
    }
    if os == "Windows" && (vm_type != "qemu" || !(arch == "x86_64" || arch == "aarch64")) {
        v.field(
            "os",
            "Windows requires vmType `qemu` and arch x86_64 or aarch64",
        );
    }
    if let Some(user) = &y.user {
        if let Some(shell) = &user.shell {
            if os == "Windows" {
                let base = shell
                    .rsplit(['/', '\\'])
                    .next()
                    .unwrap_or("")
                    .to_lowercase();
                if !["cmd.exe", "powershell.exe", "pwsh.exe"].contains(&base.as_str()) {
                    v.field("user.shell", "must be cmd.exe, powershell.exe or pwsh.exe");
                }
            } else if !shell.starts_with('/') {
                v.field(
                    "user.shell",
                    format!("must be an absolute path, got {}", go_quote(shell)),
                );
            }
        }
        if let Some(name) = &user.name
            && !is_linux_user_name(name)
        {
            v.field(
                "user.name",
                format!("must match ^[a-z_][a-z0-9_-]*$, got {}", go_quote(name)),
            );
        }
        if let Some(home) = &user.home
            && !home.starts_with('/')
        {
            v.field(
                "user.home",
                format!("must be an absolute path, got {}", go_quote(home)),
            );
        }
        match (user.passwordless_sudo, os, vm_type) {
            (Some(true), "Darwin", _) => v.field(
                "user.passwordlessSudo",
                "must not be true for Darwin guests",
            ),
            (Some(false), _, "wsl2") => v.field("user.passwordlessSudo", "must be true for wsl2"),
            (Some(false), o, _) if o != "Darwin" && y.plain != Some(true) => v.field(
                "user.passwordlessSudo",
                "can only be false in plain mode (`plain: true`)",
            ),
            (Some(false), _, _) => v
                .warnings
                .push("`user.passwordlessSudo: false` is experimental".into()),
            _ => {}
        }
    }

    match &y.images {
        None => v.field("images", "must be set"),
        Some(images) if images.is_empty() => v.field("images", "must be set"),
        Some(images) => {
            for (i, img) in images.iter().enumerate() {
                let f = format!("images[{i}]");
                validate_file(
                    &mut v,
                    &f,
                    &img.location,
                    img.arch.as_deref(),
                    img.digest.as_deref(),
                );
                if let Some(k) = &img.kernel {
                    validate_file(
                        &mut v,
                        &format!("{f}.kernel"),
                        &k.location,
                        k.arch.as_deref(),
                        k.digest.as_deref(),
                    );
                    if k.arch != img.arch {
                        v.field(format!("{f}.kernel.arch"), "must match the image arch");
                    }
                }
                if let Some(initrd) = &img.initrd {
                    validate_file(
                        &mut v,
                        &format!("{f}.initrd"),
                        &initrd.location,
                        initrd.arch.as_deref(),
                        initrd.digest.as_deref(),
                    );
                    if initrd.arch != img.arch {
                        v.field(format!("{f}.initrd.arch"), "must match the image arch");
                    }
                    if img.kernel.is_none() {
                        v.field(format!("{f}.initrd"), "requires `kernel` to be set too");
                    }
                }
            }
        }
    }

    match y.cpus {
        Some(c) if c <= 0 => v.field(
            "cpus",
            format!("must be a positive number of CPUs, got {c} (omit it for the default)"),
        ),
        Some(c) if c > 1024 => v.field("cpus", format!("is implausibly large ({c})")),
        _ => {}
    }
    for (name, val) in [("memory", &y.memory), ("disk", &y.disk)] {
        if let Some(s) = val {
            match parse_size(s) {
                Err(e) => v.field(name, format!("has an invalid value: {e}")),
                Ok(0) => v.field(name, "must be larger than zero"),
                Ok(_) => {}
            }
        }
    }
    if let (Some(m), Some(Ok(bytes))) = (&y.memory, y.memory.as_deref().map(parse_size))
        && bytes < (64 << 20)
    {
        v.field(
            "memory",
            format!("is too small ({m}); a guest needs at least 64MiB"),
        );
    }

    for (i, d) in y.additional_disks.iter().flatten().enumerate() {
        if let Err(e) = validate_identifier(&d.name) {
            v.field(
                format!("additionalDisks[{i}].name"),
                format!("is invalid: {e}"),
            );
        }
    }

    let home = y.user.as_ref().and_then(|u| u.home.clone());
    for (i, m) in y.mounts.iter().flatten().enumerate() {
        let f = format!("mounts[{i}]");
        if !(m.location.starts_with('/') || m.location.starts_with('~')) {
            v.field(
                format!("{f}.location"),
                format!(
                    "must be an absolute path or start with `~`, got {}",
                    go_quote(&m.location)
                ),
            );
        } else {
            // A missing location is created at start; a file is an error.
            if std::fs::metadata(&m.location).is_ok_and(|md| !md.is_dir()) {
                v.field(
                    format!("{f}.location"),
                    format!("refers to a non-directory path {}", quote_name(&m.location)),
                );
            }
        }
        if let Some(mp) = &m.mount_point {
            let clean = super::defaults::clean_path(mp);
            if mp.starts_with('~') {
                v.field(format!("{f}.mountPoint"), "must not start with `~`");
            } else if !mp.starts_with('/') {
                v.field(
                    format!("{f}.mountPoint"),
                    format!("must be an absolute path, got {}", go_quote(mp)),
                );
            } else if RESERVED_MOUNT_POINTS.contains(&clean.as_str()) {
                v.field(
                    format!("{f}.mountPoint"),
                    format!(
                        "must not be {} (it would hide a system directory of the guest)",
                        quote_name(&clean)
                    ),
                );
            } else if home.as_deref() == Some(clean.as_str()) {
                v.field(
                    format!("{f}.mountPoint"),
                    format!("must not be the guest user's home {}", quote_name(&clean)),
                );
            }
        }
        if let Some(msize) = m.nine_p.as_ref().and_then(|n| n.msize.as_ref())
            && let Err(e) = parse_size(msize)
        {
            v.field(
                format!("{f}.9p.msize"),
                format!("has an invalid value: {e}"),
            );
        }
    }

    if let Some(port) = y.ssh.as_ref().and_then(|s| s.local_port)
        && port != 0
    {
        validate_port(&mut v, "ssh.localPort", port);
    }

    if let Some(mt) = &y.mount_type {
        if !MOUNT_TYPES.contains(&mt.as_str()) {
            v.field(
                "mountType",
                format!(
                    "must be one of {}, got {}",
                    quote_list(MOUNT_TYPES),
                    go_quote(mt)
                ),
            );
        } else if y.mount_types_unsupported.iter().flatten().any(|u| u == mt) {
            v.field(
                "mountType",
                format!(
                    "uses mount type {} which is explicitly unsupported (`mountTypesUnsupported`)",
                    quote_name(mt)
                ),
            );
        }
        if mt == "virtiofs" {
            v.warnings
                .push("mountType `virtiofs` is experimental on Linux hosts".into());
        }
    }
    if y.mount_inotify == Some(true) {
        v.warnings.push("`mountInotify` is experimental".into());
    }

    for (i, p) in y.provision.iter().flatten().enumerate() {
        validate_provision(&mut v, i, p, os);
    }

    let containerd = y.containerd.as_ref();
    if containerd.is_some_and(|c| c.system == Some(true) || c.user == Some(true))
        && containerd.is_none_or(|c| c.archives.as_ref().is_none_or(Vec::is_empty))
    {
        v.field(
            "containerd.archives",
            "must be set when containerd is enabled",
        );
    }
    for (i, a) in containerd
        .and_then(|c| c.archives.as_ref())
        .into_iter()
        .flatten()
        .enumerate()
    {
        validate_file(
            &mut v,
            &format!("containerd.archives[{i}]"),
            &a.location,
            a.arch.as_deref(),
            a.digest.as_deref(),
        );
    }

    for (i, p) in y.probes.iter().flatten().enumerate() {
        let f = format!("probes[{i}]");
        if p.file.as_ref().is_some_and(|l| !l.url.is_empty()) {
            v.field(
                format!("{f}.file"),
                "must be embedded into `script` before validation",
            );
        }
        if !p.script.as_deref().unwrap_or("").starts_with("#!") {
            v.field(format!("{f}.script"), "must start with a `#!` line");
        }
        if p.mode.as_deref().is_some_and(|m| m != "readiness") {
            v.field(format!("{f}.mode"), "must be `readiness`");
        }
    }

    for (i, pf) in y.port_forwards.iter().flatten().enumerate() {
        validate_port_forward(&mut v, i, pf);
    }

    for (i, c) in y.copy_to_host.iter().flatten().enumerate() {
        for (n, val) in [("guest", &c.guest), ("host", &c.host)] {
            match val {
                Some(p) if p.starts_with('/') => {}
                Some(p) => v.field(
                    format!("copyToHost[{i}].{n}"),
                    format!("must be an absolute path, got {}", go_quote(p)),
                ),
                None => v.field(format!("copyToHost[{i}].{n}"), "must be set"),
            }
        }
    }

    for (i, d) in y.dns.iter().flatten().enumerate() {
        if d.parse::<IpAddr>().is_err() {
            v.field(
                format!("dns[{i}]"),
                format!("must be an IP address, got {}", go_quote(d)),
            );
        }
    }
    if y.dns.as_ref().is_some_and(|d| !d.is_empty())
        && y.host_resolver.as_ref().and_then(|h| h.enabled) == Some(true)
    {
        v.field("dns", "must be empty when `hostResolver.enabled` is true");
    }

    validate_networks(&mut v, y);

    for (k, val) in y.param.iter().flatten() {
        if !is_param_name(k) {
            v.field(
                format!("param.{k}"),
                "name must match ^[a-zA-Z][a-zA-Z0-9_]*$",
            );
        }
        if val.chars().any(|c| c.is_control() && c != '\t') {
            v.field(
                format!("param.{k}"),
                "value must not contain control characters",
            );
        }
    }
    for (k, _) in y.env.iter().flatten() {
        if k.is_empty() || k.contains('=') || k.contains(char::is_whitespace) {
            v.field(
                format!("env.{k}"),
                "is not a valid environment variable name",
            );
        }
    }

    if y.tpm == Some(true) && !["x86_64", "aarch64", "armv7l", "riscv64"].contains(&arch) {
        v.field(
            "tpm",
            format!("is not supported on arch {}", quote_name(arch)),
        );
    }
    if let Some(iface) = y.audio.as_ref().and_then(|a| a.interface.as_deref())
        && !["", "hda", "virtio"].contains(&iface)
    {
        v.field(
            "audio.interface",
            format!("must be \"\", `hda` or `virtio`, got {}", go_quote(iface)),
        );
    }
    if y.video.as_ref().and_then(|v| v.display.as_deref()) == Some("vnc") {
        v.warnings
            .push("`video.display: vnc` is experimental".into());
    }
    if y.audio
        .as_ref()
        .and_then(|a| a.device.as_deref())
        .is_some_and(|d| !d.is_empty())
    {
        v.warnings.push("`audio.device` is experimental".into());
    }
    if os == "Windows" {
        v.warnings.push("Windows guests are experimental".into());
    }
    if ["riscv64", "armv7l", "s390x", "ppc64le"].contains(&arch) {
        v.warnings
            .push(format!("arch {} is experimental", quote_name(arch)));
    }
    (v.errors, v.warnings)
}

/// `^[a-z_][a-z0-9_-]*$`
pub fn is_linux_user_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// `^[a-zA-Z][a-zA-Z0-9_]*$`
pub fn is_param_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn quote_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| quote_name(s))
        .collect::<Vec<_>>()
        .join(", ")
}

fn validate_file(v: &mut V, f: &str, location: &str, arch: Option<&str>, digest: Option<&str>) {
    if location.is_empty() {
        v.field(format!("{f}.location"), "must be set");
    } else if !location.contains("://") && !location.starts_with('/') && !location.starts_with('~')
    {
        v.field(
            format!("{f}.location"),
            format!(
                "must be a URL, an absolute path or start with `~`, got {}",
                go_quote(location)
            ),
        );
    }
    if let Some(a) = arch
        && !ARCHES.contains(&a)
    {
        v.field(
            format!("{f}.arch"),
            format!("must be one of {}, got {}", quote_list(ARCHES), go_quote(a)),
        );
    }
    if let Some(d) = digest
        && let Err(e) = validate_digest(d)
    {
        v.field(format!("{f}.digest"), e);
    }
}

/// Checks an OCI digest such as `sha256:<64 hex>`.
pub fn validate_digest(d: &str) -> Result<(), String> {
    let Some((algo, hexpart)) = d.split_once(':') else {
        return Err(format!("must be `<algorithm>:<hex>`, got {}", go_quote(d)));
    };
    let len = match algo {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => {
            return Err(format!(
                "uses unsupported digest algorithm {} (use sha256 or sha512)",
                quote_name(algo)
            ));
        }
    };
    if hexpart.len() != len
        || !hexpart
            .bytes()
            .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(format!(
            "must be {algo}: followed by {len} lowercase hex digits, got {}",
            go_quote(d)
        ));
    }
    Ok(())
}

fn validate_port(v: &mut V, f: &str, port: i64) {
    if port <= 0 {
        v.field(f, format!("must be > 0, got {port}"));
    } else if port == 22 {
        v.field(f, "must not be 22");
    } else if port >= 65536 {
        v.field(f, format!("must be < 65536, got {port}"));
    }
}

fn validate_provision(v: &mut V, i: usize, p: &Provision, os: &str) {
    let f = format!("provision[{i}]");
    if p.file.as_ref().is_some_and(|l| !l.url.is_empty()) {
        v.field(format!("{f}.file"), "must be embedded before validation");
    }
    let mode = p.mode.as_deref().unwrap_or("system");
    if !PROVISION_MODES.contains(&mode) {
        v.field(
            format!("{f}.mode"),
            format!(
                "must be one of {}, got {}",
                quote_list(PROVISION_MODES),
                go_quote(mode)
            ),
        );
        return;
    }
    if os == "Windows" && ["ansible", "boot", "yq"].contains(&mode) {
        v.field(
            format!("{f}.mode"),
            format!("{} is not supported for Windows guests", quote_name(mode)),
        );
    }
    if p.skip_default_dependency_resolution.is_some() && mode != "dependency" {
        v.field(
            format!("{f}.skipDefaultDependencyResolution"),
            "can only be set for mode `dependency`",
        );
    }
    if p.playbook.is_some() && mode != "ansible" {
        v.field(
            format!("{f}.playbook"),
            "can only be set for mode `ansible`",
        );
    }
    match mode {
        "data" | "yq" => {
            match &p.path {
                None => {
                    v.field(format!("{f}.path"), "must be set");
                    return;
                }
                Some(path) if !path.starts_with('/') => v.field(
                    format!("{f}.path"),
                    format!("must be an absolute path, got {}", go_quote(path)),
                ),
                _ => {}
            }
            if mode == "data" && p.content.is_none() {
                v.field(format!("{f}.content"), "must be set");
            }
            if mode == "yq" && p.expression.as_deref().is_none_or(str::is_empty) {
                v.field(format!("{f}.expression"), "must be set");
            }
            if let Some(perm) = &p.permissions
                && (perm.is_empty() || !perm.bytes().all(|c| (b'0'..=b'7').contains(&c)))
            {
                v.field(
                    format!("{f}.permissions"),
                    format!("must be an octal number, got {}", go_quote(perm)),
                );
            }
            if p.script.is_some() {
                v.field(
                    format!("{f}.script"),
                    format!("must not be set for mode {}", quote_name(mode)),
                );
            }
        }
        "ansible" => {
            v.warnings
                .push(format!("`{f}`: provision mode `ansible` is deprecated"));
            match &p.playbook {
                None => v.field(format!("{f}.playbook"), "must be set for mode `ansible`"),
                Some(pb) if !std::path::Path::new(pb).exists() => v.field(
                    format!("{f}.playbook"),
                    format!("refers to a missing file {}", quote_name(pb)),
                ),
                _ => {}
            }
            if p.script.is_some() {
                v.field(format!("{f}.script"), "must not be set for mode `ansible`");
            }
        }
        _ => {
            if p.script.as_deref().is_none_or(|s| s.trim().is_empty()) {
                v.field(format!("{f}.script"), "must not be empty");
            }
            for (n, set) in [
                ("content", p.content.is_some()),
                ("overwrite", p.overwrite.is_some()),
                ("owner", p.owner.is_some()),
                ("path", p.path.is_some()),
                ("permissions", p.permissions.is_some()),
                ("format", p.format.is_some()),
                ("expression", p.expression.is_some()),
            ] {
                if set {
                    v.field(
                        format!("{f}.{n}"),
                        format!("must not be set for mode {}", quote_name(mode)),
                    );
                }
            }
        }
    }
    if let Some(s) = &p.script
        && s.contains("LIMA_CIDATA")
    {
        v.warnings.push(format!(
            "`{f}.script`: LIMA_CIDATA variables are internal and may change"
        ));
    }
}

fn validate_port_forward(v: &mut V, i: usize, pf: &PortForward) {
    let f = format!("portForwards[{i}]");
    let guest_ip = pf.guest_ip.as_deref().unwrap_or("127.0.0.1");
    for (n, ip) in [("guestIP", &pf.guest_ip), ("hostIP", &pf.host_ip)] {
        if let Some(ip) = ip
            && ip.parse::<IpAddr>().is_err()
        {
            v.field(
                format!("{f}.{n}"),
                format!("must be an IP address, got {}", go_quote(ip)),
            );
        }
    }
    if pf.guest_ip_must_be_zero == Some(true) && guest_ip != "0.0.0.0" {
        v.field(
            format!("{f}.guestIPMustBeZero"),
            "can only be true when `guestIP` is 0.0.0.0",
        );
    }
    let guest_socket = pf.guest_socket.as_deref().unwrap_or("");
    let host_socket = pf.host_socket.as_deref().unwrap_or("");
    if guest_socket.is_empty() {
        if let Some(p) = pf.guest_port {
            validate_port(v, &format!("{f}.guestPort"), p);
        }
    } else {
        if pf.guest_port.is_some_and(|p| p != 0) {
            v.field(
                format!("{f}.guestPort"),
                "must not be set when `guestSocket` is set",
            );
        }
        if !guest_socket.starts_with('/') {
            v.field(format!("{f}.guestSocket"), "must be an absolute path");
        }
    }
    if host_socket.is_empty() {
        if let Some(p) = pf.host_port {
            validate_port(v, &format!("{f}.hostPort"), p);
        }
    } else {
        if pf.host_port.is_some_and(|p| p != 0) {
            v.field(
                format!("{f}.hostPort"),
                "must not be set when `hostSocket` is set",
            );
        }
        if !host_socket.starts_with('/') {
            v.field(format!("{f}.hostSocket"), "must be an absolute path");
        }
        if host_socket.len() >= 108 {
            v.field(
                format!("{f}.hostSocket"),
                "is too long for a unix socket path (must be < 108 bytes)",
            );
        }
    }
    for (n, range) in [
        ("guestPortRange", pf.guest_port_range),
        ("hostPortRange", pf.host_port_range),
    ] {
        if let Some([a, b]) = range {
            if !(1..=65535).contains(&a) || !(1..=65535).contains(&b) {
                v.field(
                    format!("{f}.{n}"),
                    format!("must be within 1–65535, got [{a}, {b}]"),
                );
            } else if a > b {
                v.field(
                    format!("{f}.{n}"),
                    format!("must be ordered (start <= end), got [{a}, {b}]"),
                );
            }
        }
    }
    if let (Some(p), Some([a, b])) = (pf.guest_port, pf.guest_port_range)
        && guest_socket.is_empty()
        && p != 0
        && (p != a || p != b)
    {
        v.field(
            format!("{f}.guestPort"),
            format!("{p} does not match `guestPortRange` [{a}, {b}]"),
        );
    }
    if let (Some(p), Some([a, b])) = (pf.host_port, pf.host_port_range)
        && host_socket.is_empty()
        && p != 0
        && (p != a || p != b)
    {
        v.field(
            format!("{f}.hostPort"),
            format!("{p} does not match `hostPortRange` [{a}, {b}]"),
        );
    }
    if let (Some(g), Some(h)) = (pf.guest_port_range, pf.host_port_range)
        && host_socket.is_empty()
        && guest_socket.is_empty()
        && g[1] - g[0] != h[1] - h[0]
    {
        v.field(
            format!("{f}.hostPortRange"),
            "must span as many ports as `guestPortRange`",
        );
    }
    if !host_socket.is_empty()
        && guest_socket.is_empty()
        && let Some([a, b]) = pf.guest_port_range
        && a != b
    {
        v.field(
            format!("{f}.hostSocket"),
            "can only forward a single guest port",
        );
    }
    if let Some(proto) = &pf.proto
        && !["tcp", "udp", "any"].contains(&proto.as_str())
    {
        v.field(
            format!("{f}.proto"),
            format!("must be `tcp`, `udp` or `any`, got {}", go_quote(proto)),
        );
    }
    if pf.reverse == Some(true) && (guest_socket.is_empty() || host_socket.is_empty()) {
        v.field(
            format!("{f}.reverse"),
            "requires both `guestSocket` and `hostSocket`",
        );
    }
}

fn validate_networks(v: &mut V, y: &LimaYaml) {
    let mut seen: Vec<&str> = Vec::new();
    for (i, n) in y.networks.iter().flatten().enumerate() {
        let f = format!("networks[{i}]");
        let set = [
            n.lima.as_deref().is_some_and(|s| !s.is_empty()),
            n.socket.as_deref().is_some_and(|s| !s.is_empty()),
            n.vz_nat == Some(true),
        ];
        match set.iter().filter(|b| **b).count() {
            0 => v.field(f.clone(), "must set one of `lima`, `socket` or `vzNAT`"),
            1 => {}
            _ => v.field(
                f.clone(),
                "must set only one of `lima`, `socket` and `vzNAT`",
            ),
        }
        if n.lima.as_deref().is_some_and(|s| !s.is_empty()) {
            v.field(
                format!("{f}.lima"),
                "is only supported on macOS hosts (socket_vmnet); use `socket` on Linux",
            );
        }
        if n.vz_nat == Some(true) {
            v.field(format!("{f}.vzNAT"), "requires vmType `vz` (macOS)");
        }
        if let Some(s) = n.socket.as_deref().filter(|s| !s.is_empty()) {
            use std::os::unix::fs::FileTypeExt;
            if let Ok(md) = std::fs::metadata(s)
                && !md.file_type().is_socket()
            {
                v.field(
                    format!("{f}.socket"),
                    format!("{} is not a socket", quote_name(s)),
                );
            }
        }
        if let Some(mac) = n.mac_address.as_deref().filter(|s| !s.is_empty()) {
            let ok = mac.split(':').count() == 6
                && mac
                    .split(':')
                    .all(|b| b.len() == 2 && b.bytes().all(|c| c.is_ascii_hexdigit()));
            if !ok {
                v.field(
                    format!("{f}.macAddress"),
                    format!("must be a 6-byte MAC address, got {}", go_quote(mac)),
                );
            }
        }
        if let Some(iface) = n.interface.as_deref().filter(|s| !s.is_empty()) {
            if iface.len() >= 16 || iface.contains(char::is_whitespace) || iface.contains('/') {
                v.field(
                    format!("{f}.interface"),
                    "must be shorter than 16 bytes and contain no whitespace or `/`",
                );
            }
            if iface == "eth0" {
                v.field(
                    format!("{f}.interface"),
                    "must not be `eth0` (used by the default network)",
                );
            }
            if seen.contains(&iface) {
                v.field(
                    format!("{f}.interface"),
                    format!("{} is used twice", quote_name(iface)),
                );
            }
            seen.push(iface);
        }
    }
}

/// A semver `major.minor.patch` (pre-release and build metadata ignored).
pub fn semver_parse(s: &str) -> Option<(u64, u64, u64)> {
    let s = s.trim().trim_start_matches('v');
    let core = s.split(['-', '+']).next()?;
    let mut it = core.split('.');
    let major = it.next()?.parse().ok()?;
    let minor = it.next().map_or(Some(0), |m| m.parse().ok())?;
    let patch = it.next().map_or(Some(0), |p| p.parse().ok())?;
    if it.next().is_some() {
        return None;
    }
    Some((major, minor, patch))
}

/// Lima's rule that every `param` key is used somewhere: an unused key is
/// almost always a typo.
pub fn unused_params(y: &LimaYaml) -> Vec<String> {
    let Some(params) = &y.param else {
        return Vec::new();
    };
    let mut texts: Vec<&str> = Vec::new();
    for p in y.provision.iter().flatten() {
        for s in [
            &p.script,
            &p.content,
            &p.expression,
            &p.owner,
            &p.path,
            &p.playbook,
        ]
        .into_iter()
        .flatten()
        {
            texts.push(s);
        }
    }
    for p in y.probes.iter().flatten() {
        texts.extend(p.script.as_deref());
    }
    for c in y.copy_to_host.iter().flatten() {
        texts.extend(c.guest.as_deref());
        texts.extend(c.host.as_deref());
    }
    for pf in y.port_forwards.iter().flatten() {
        texts.extend(pf.guest_socket.as_deref());
        texts.extend(pf.host_socket.as_deref());
    }
    for m in y.mounts.iter().flatten() {
        texts.push(&m.location);
        texts.extend(m.mount_point.as_deref());
    }
    let mut unused = Vec::new();
    for key in params.keys() {
        if key == "internal_netplanOptional" {
            continue;
        }
        let k = regex::escape(key);
        let re = regex::Regex::new(&format!(
            r"\{{\{{[^}}]*\.Param\.{k}\b[^}}]*\}}\}}|\bPARAM_{k}\b"
        ))
        .unwrap();
        if !texts.iter().any(|t| re.is_match(t)) {
            unused.push(key.clone());
        }
    }
    unused
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors_of(v: serde_json::Value) -> Vec<String> {
        let mut y: LimaYaml = serde_json::from_value(v).unwrap();
        let host = super::super::host::HostInfo::for_tests();
        super::super::defaults::fill(
            &mut y,
            &super::super::defaults::FillContext {
                host: &host,
                instance_name: "t".into(),
                instance_dir: "/lh/t".into(),
                lima_home: "/lh".into(),
            },
        );
        validate(&y, "2.0.0")
            .0
            .into_iter()
            .map(|e| e.message)
            .collect()
    }

    fn img() -> serde_json::Value {
        json!([{"location": "/img.qcow2", "arch": "x86_64"}])
    }

    #[test]
    fn minimal_config_is_valid() {
        assert_eq!(errors_of(json!({"images": img()})), Vec::<String>::new());
    }

    #[test]
    fn images_are_required() {
        assert_eq!(errors_of(json!({})), vec!["field `images` must be set"]);
    }

    #[test]
    fn mount_point_errors_name_the_field() {
        let e = errors_of(json!({"images": img(), "mounts": [
            {"location": "/tmp"}, {"location": "/tmp/a", "mountPoint": "/x"},
            {"location": "/tmp/b", "mountPoint": "rel"}, {"location": "/tmp/c", "mountPoint": "/etc"}]}));
        assert!(
            e[0].starts_with("field `mounts[0].mountPoint` must not be `/tmp`"),
            "{e:?}"
        );
        assert!(
            e[1].starts_with("field `mounts[2].mountPoint` must be an absolute path"),
            "{e:?}"
        );
        assert!(
            e[2].starts_with("field `mounts[3].mountPoint` must not be `/etc`"),
            "{e:?}"
        );
    }

    #[test]
    fn bad_scalars() {
        let e = errors_of(
            json!({"images": img(), "cpus": 0, "memory": "lots", "arch": "sparc", "vmType": "vbox"}),
        );
        assert!(
            e.iter()
                .any(|m| m.starts_with("field `cpus` must be a positive")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.starts_with("field `memory` has an invalid value")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.starts_with("field `arch` must be one of")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.starts_with("field `vmType` must be one of")),
            "{e:?}"
        );
        let e = errors_of(json!({"images": img(), "cpus": -2}));
        assert!(e[0].contains("got -2"), "{e:?}");
    }

    #[test]
    fn digests_are_checked() {
        assert!(validate_digest("sha256:0123").is_err());
        assert!(validate_digest("md5:00").is_err());
        assert!(validate_digest(&format!("sha256:{}", "a".repeat(64))).is_ok());
        assert!(validate_digest(&format!("sha512:{}", "0".repeat(128))).is_ok());
    }

    #[test]
    fn port_forward_rules() {
        let e = errors_of(json!({"images": img(), "portForwards": [
            {"guestPort": 22}, {"guestPort": 80, "hostPortRange": [1, 10]},
            {"guestSocket": "/a", "hostSocket": "/b", "proto": "sctp"}]}));
        assert!(
            e.iter()
                .any(|m| m == "field `portForwards[0].guestPort` must not be 22"),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.starts_with("field `portForwards[1].hostPortRange` must span")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.starts_with("field `portForwards[2].proto`")),
            "{e:?}"
        );
    }

    #[test]
    fn provision_modes() {
        let e = errors_of(json!({"images": img(), "provision": [
            {"mode": "data", "path": "/etc/x", "content": "x", "permissions": "9"},
            {"mode": "system"}, {"mode": "wat", "script": "x"},
            {"mode": "user", "script": "#!/bin/sh", "path": "/x"}]}));
        assert!(
            e.iter()
                .any(|m| m.starts_with("field `provision[0].permissions` must be an octal")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m == "field `provision[1].script` must not be empty"),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.starts_with("field `provision[2].mode` must be one of")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.starts_with("field `provision[3].path` must not be set")),
            "{e:?}"
        );
    }

    #[test]
    fn unused_params_are_found() {
        let y: LimaYaml = serde_json::from_value(json!({
            "param": {"A": "1", "B": "2", "C": "3"},
            "provision": [{"script": "echo {{.Param.A}} $PARAM_C"}]
        }))
        .unwrap();
        assert_eq!(unused_params(&y), vec!["B"]);
    }

    #[test]
    fn minimum_version() {
        let e = errors_of(json!({"images": img(), "minimumLimaVersion": "9.0.0"}));
        assert!(e[0].contains("requires limactl version 9.0.0"), "{e:?}");
        assert_eq!(semver_parse("v2.0.1-rc1"), Some((2, 0, 1)));
        assert_eq!(semver_parse("x"), None);
    }
}
