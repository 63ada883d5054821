//! Lima's edit flags (`--cpus`, `--memory`, `--set`, …) as yq expressions
//! (reference §8.12), applied to a lima.yaml document. The flags are
//! declared here (clap derives them) because they are what the lifecycle
//! operations accept; `cli/` flattens them into its verbs.

use super::OpsError;
use crate::spec::yaml::{Node, go_quote};

fn usage(msg: String) -> OpsError {
    OpsError::Usage(msg)
}

/// Flags that change an instance's configuration (create, start, edit, restart).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct EditFlags {
    /// Number of CPUs.
    #[arg(long, value_name = "N")]
    pub cpus: Option<u32>,
    /// Memory in GiB (e.g. 4 or 1.5).
    #[arg(long, value_name = "GIB")]
    pub memory: Option<f32>,
    /// Disk size in GiB.
    #[arg(long, value_name = "GIB")]
    pub disk: Option<f32>,
    /// Mount type: reverse-sshfs, 9p, virtiofs.
    #[arg(long = "mount-type", value_name = "TYPE")]
    pub mount_type: Option<String>,
    /// Make every mount writable.
    #[arg(long = "mount-writable")]
    pub mount_writable: bool,
    /// Remove every mount.
    #[arg(long = "mount-none")]
    pub mount_none: bool,
    /// VM type (only qemu is available on this host).
    #[arg(long = "vm-type", value_name = "TYPE")]
    pub vm_type: Option<String>,
    /// SSH port on 127.0.0.1 (0: a free port at each start).
    #[arg(long = "ssh-port", value_name = "PORT")]
    pub ssh_port: Option<u16>,
    /// Set a template parameter, KEY=VALUE (the template must define KEY).
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub param: Vec<String>,
    /// Login shell of the guest user.
    #[arg(long = "shell", value_name = "PATH", id = "user_shell")]
    pub shell: Option<String>,
    /// A yq expression applied to the YAML (repeatable), e.g. '.cpus = 2'.
    #[arg(long = "set", value_name = "EXPR")]
    pub set: Vec<String>,
    /// Custom DNS servers (disables the host resolver), comma-separated.
    #[arg(long, value_name = "IP", value_delimiter = ',')]
    pub dns: Vec<String>,
    /// Directories to mount in addition to the template's, `DIR[:w]`, comma-separated.
    #[arg(long, value_name = "DIR[:w]", value_delimiter = ',', conflicts_with_all = ["mount_only", "mount_none"])]
    pub mount: Vec<String>,
    /// Directories to mount instead of the template's, `DIR[:w]`, comma-separated.
    #[arg(
        long = "mount-only",
        value_name = "DIR[:w]",
        value_delimiter = ',',
        conflicts_with = "mount_none"
    )]
    pub mount_only: Vec<String>,
    /// Enable inotify for mounts (experimental).
    #[arg(long = "mount-inotify")]
    pub mount_inotify: bool,
    /// Networks to add: `vzNAT` or `lima:NAME`, comma-separated.
    #[arg(long, value_name = "NETWORK", value_delimiter = ',')]
    pub network: Vec<String>,
    /// Allow nested virtualization.
    #[arg(long = "nested-virt")]
    pub nested_virt: bool,
    /// Enable Rosetta (vz only).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub rosetta: Option<bool>,
    /// Enable the video output (a display window).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub video: Option<bool>,
    /// Audio device, e.g. `default` (experimental).
    #[arg(long = "audio-device", value_name = "DEVICE")]
    pub audio_device: Option<String>,
    /// Audio interface, e.g. `default` (experimental).
    #[arg(long = "audio-interface", value_name = "INTERFACE")]
    pub audio_interface: Option<String>,
    /// Forward a port, `HOST:GUEST[,static=true]` (repeatable).
    #[arg(long = "port-forward", value_name = "HOST:GUEST")]
    pub port_forward: Vec<String>,
}

/// `DIR[:w]` → the JSON of a mount of `DIR` (`~` expanded) at the same path.
fn mount_entry(spec: &str) -> Result<String, OpsError> {
    let (dir, writable) = match spec.rsplit_once(':') {
        Some((d, "w")) => (d, true),
        Some((_, other)) if !other.contains('/') => {
            return Err(usage(format!(
                "--mount: expected DIR or DIR:w, got {}",
                go_quote(spec)
            )));
        }
        _ => (spec, false),
    };
    if dir.is_empty() {
        return Err(usage(format!(
            "--mount: empty directory in {}",
            go_quote(spec)
        )));
    }
    let home = crate::spec::host::HostInfo::detect().home;
    let loc = crate::spec::defaults::expand_host_path(dir, &home);
    Ok(format!(
        "{{\"location\": {q}, \"mountPoint\": {q}, \"writable\": {writable}}}",
        q = go_quote(&loc)
    ))
}

/// `HOST:GUEST[,static=BOOL]` → the JSON of a `portForwards` entry.
fn port_forward_entry(spec: &str) -> Result<String, OpsError> {
    let bad = || {
        usage(format!(
            "--port-forward: expected HOST:GUEST or HOST:GUEST,static=true, got {}",
            go_quote(spec)
        ))
    };
    let (ports, opts) = spec.split_once(',').unwrap_or((spec, ""));
    let is_static = match opts {
        "" => false,
        o => match o.strip_prefix("static=") {
            Some("true") => true,
            Some("false") => false,
            _ => return Err(bad()),
        },
    };
    let (host, guest) = ports.split_once(':').ok_or_else(bad)?;
    let host: u16 = host.trim().parse().map_err(|_| bad())?;
    let guest: u16 = guest.trim().parse().map_err(|_| bad())?;
    Ok(format!(
        "{{\"guestPort\": {guest}, \"hostPort\": {host}, \"static\": {is_static}}}"
    ))
}

/// Flags that only make sense for a new instance.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct CreateFlags {
    /// Machine architecture (x86_64, aarch64, …).
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<String>,
    /// containerd: user, system, user+system, none.
    #[arg(long, value_name = "MODE")]
    pub containerd: Option<String>,
    /// Plain mode: no mounts, no port forwarding, no containerd.
    #[arg(long)]
    pub plain: bool,
    /// Keep only the template's images of this `variant`.
    #[arg(long, value_name = "VARIANT")]
    pub image_variant: Option<String>,
    /// Keep only the template's images of this `archVariant`.
    #[arg(long, value_name = "VARIANT")]
    pub arch_variant: Option<String>,
}

/// Go's `%v` of a float32 (`2` → `2`, `1.5` → `1.5`).
fn go_float(f: f32) -> String {
    if f.fract() == 0.0 && f.abs() < 1e7 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

impl EditFlags {
    /// The yq expressions, in Lima's fixed order. `doc` is the document the
    /// flags apply to (for checking `--param` keys).
    pub fn expressions(&self, doc: &Node) -> Result<Vec<String>, OpsError> {
        let mut e = Vec::new();
        if let Some(c) = self.cpus {
            e.push(format!(".cpus = {c}"));
        }
        if !self.dns.is_empty() {
            crate::warn!(
                "Disabling the host resolver, as custom DNS addresses (--dns) are specified"
            );
            let ips: Vec<String> = self.dns.iter().map(|d| go_quote(d.trim())).collect();
            e.push(format!(
                ".dns += [{}] | .dns |= unique | .hostResolver.enabled = false",
                ips.join(", ")
            ));
        }
        if let Some(m) = self.memory {
            e.push(format!(".memory = \"{}GiB\"", go_float(m)));
        }
        if !self.mount.is_empty() {
            let mounts = self
                .mount
                .iter()
                .map(|m| mount_entry(m))
                .collect::<Result<Vec<_>, _>>()?;
            e.push(format!(".mounts = [{}] + .mounts", mounts.join(", ")));
        }
        if !self.mount_only.is_empty() {
            let mounts = self
                .mount_only
                .iter()
                .map(|m| mount_entry(m))
                .collect::<Result<Vec<_>, _>>()?;
            e.push(format!(".mounts = [{}]", mounts.join(", ")));
        }
        if self.mount_none {
            e.push(".mounts = null".into());
        }
        if let Some(t) = &self.mount_type {
            e.push(format!(".mountType = {}", go_quote(t)));
        }
        if let Some(t) = &self.vm_type {
            e.push(format!(".vmType = {}", go_quote(t)));
        }
        if self.mount_inotify {
            e.push(".mountInotify = true".into());
        }
        if self.mount_writable {
            e.push(".mounts[].writable = true".into());
        }
        if !self.network.is_empty() {
            let nets = self
                .network
                .iter()
                .map(|n| match n.trim() {
                    "vzNAT" => Ok("{\"vzNAT\": true}".to_string()),
                    n => match n.strip_prefix("lima:") {
                        Some(name) if !name.is_empty() => {
                            Ok(format!("{{\"lima\": {}}}", go_quote(name)))
                        }
                        _ => Err(usage(format!(
                            "--network: expected vzNAT or lima:NAME, got {}",
                            go_quote(n)
                        ))),
                    },
                })
                .collect::<Result<Vec<_>, _>>()?;
            e.push(format!(
                ".networks += [{}] | .networks |= unique_by(.lima)",
                nets.join(", ")
            ));
        }
        if self.nested_virt {
            e.push(".nestedVirtualization = true".into());
        }
        if let Some(r) = self.rosetta {
            e.push(format!(
                ".vmOpts.vz.rosetta.enabled = {r} | .vmOpts.vz.rosetta.binfmt = {r}"
            ));
        }
        for s in &self.set {
            e.push(s.clone());
        }
        for p in &self.param {
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| usage(format!("--param must be KEY=VALUE, got {}", go_quote(p))))?;
            let defined = doc.get("param").and_then(|m| m.get(k)).is_some();
            if !defined && !doc.is_null() {
                return Err(usage(format!(
                    "error while processing flag `param`: template does not define param {}",
                    crate::spec::yaml::quote_name(k)
                )));
            }
            e.push(format!(".param[{}] = {}", go_quote(k), go_quote(v)));
        }
        if let Some(v) = self.video {
            let display = if v { "default" } else { "none" };
            e.push(format!(".video.display = \"{display}\""));
        }
        if let Some(d) = &self.audio_device {
            e.push(format!(".audio.device = {}", go_quote(d)));
        }
        if let Some(i) = &self.audio_interface {
            e.push(format!(".audio.interface = {}", go_quote(i)));
        }
        if let Some(port) = self.ssh_port {
            e.push(format!(".ssh.localPort = {port}"));
        }
        if let Some(d) = self.disk {
            e.push(format!(".disk = \"{}GiB\"", go_float(d)));
        }
        if !self.port_forward.is_empty() {
            let pfs = self
                .port_forward
                .iter()
                .map(|p| port_forward_entry(p))
                .collect::<Result<Vec<_>, _>>()?;
            e.push(format!(".portForwards += [{}]", pfs.join(", ")));
        }
        if let Some(s) = &self.shell {
            e.push(format!(".user.shell = {}", go_quote(s)));
        }
        Ok(e)
    }
}

impl CreateFlags {
    pub fn expressions(&self) -> Result<Vec<String>, OpsError> {
        let mut e = Vec::new();
        // Lima's order: the variants, then --arch.
        if let Some(v) = &self.image_variant {
            e.push(format!(
                ".images = [.images[] | select(.variant == {})]",
                go_quote(v)
            ));
        }
        if let Some(v) = &self.arch_variant {
            e.push(format!(
                ".images = [.images[] | select(.archVariant == {})]",
                go_quote(v)
            ));
        }
        if let Some(a) = &self.arch {
            e.push(format!(".arch = {}", go_quote(a)));
        }
        if let Some(c) = &self.containerd {
            let (user, system) = match c.as_str() {
                "user" => (true, false),
                "system" => (false, true),
                "user+system" | "system+user" => (true, true),
                "none" => (false, false),
                other => {
                    return Err(usage(format!(
                        "--containerd must be user, system, user+system or none, got {}",
                        go_quote(other)
                    )));
                }
            };
            e.push(format!(
                ".containerd.user = {user} | .containerd.system = {system}"
            ));
        }
        if self.plain {
            e.push(".plain = true".into());
        }
        Ok(e)
    }
}

/// Applies yq expressions to a document (joined with ` | ` as Lima does).
pub fn apply(doc: &Node, exprs: &[String]) -> Result<Node, OpsError> {
    if exprs.is_empty() {
        return Ok(doc.clone());
    }
    let joined = exprs.join(" | ");
    let out = crate::yq::eval_one(&joined, &doc.to_json())?;
    Ok(Node::from_json(&out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_become_lima_expressions() {
        let f = EditFlags {
            cpus: Some(4),
            memory: Some(1.5),
            disk: Some(20.0),
            set: vec![".mountType = \"9p\"".into()],
            ..Default::default()
        };
        assert_eq!(
            f.expressions(&Node::null()).unwrap(),
            vec![
                ".cpus = 4",
                ".memory = \"1.5GiB\"",
                ".mountType = \"9p\"",
                ".disk = \"20GiB\""
            ]
        );
        let doc = crate::spec::yaml::parse_single("t", "cpus: 1\n")
            .unwrap()
            .unwrap();
        let out = apply(&doc, &f.expressions(&doc).unwrap())
            .unwrap()
            .to_json();
        assert_eq!(out["cpus"], 4);
        assert_eq!(out["memory"], "1.5GiB");
        assert!(
            EditFlags::default()
                .expressions(&Node::null())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn mount_and_port_forward_specs() {
        let home = crate::spec::host::HostInfo::detect().home;
        let m = mount_entry("~/src:w").unwrap();
        let want = home.join("src");
        assert!(
            m.contains(&format!("\"location\": \"{}\"", want.display()))
                && m.ends_with("\"writable\": true}"),
            "{m}"
        );
        assert!(mount_entry(":w").is_err());
        assert_eq!(
            port_forward_entry("8080:80").unwrap(),
            "{\"guestPort\": 80, \"hostPort\": 8080, \"static\": false}"
        );
        assert!(
            port_forward_entry("8080:80,static=true")
                .unwrap()
                .ends_with("true}")
        );
        for bad in ["80", "a:b", "1:2,static=yes", "70000:1"] {
            assert!(port_forward_entry(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn params_must_exist_in_the_template() {
        let doc = crate::spec::yaml::parse_single("t", "param: {A: x}\n")
            .unwrap()
            .unwrap();
        let ok = EditFlags {
            param: vec!["A=y".into()],
            ..Default::default()
        };
        assert_eq!(
            apply(&doc, &ok.expressions(&doc).unwrap())
                .unwrap()
                .to_json()["param"]["A"],
            "y"
        );
        let bad = EditFlags {
            param: vec!["B=y".into()],
            ..Default::default()
        };
        assert!(
            bad.expressions(&doc)
                .unwrap_err()
                .to_string()
                .contains("template does not define param `B`")
        );
    }
}
