//! Reading an instance directory into what the rest of the program observes:
//! which files exist, the applied configuration, and whether its host agent
//! and QEMU are alive (from kernel-held locks, reference §1.5 with the pid-file
//! logic replaced).

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::lock;
use super::paths::{Home, files};
use crate::spec::{self, LimaYaml, LoadEnv};

/// Lima's instance statuses (`limactl list`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Status {
    /// The configuration could not be loaded (Lima prints an empty status).
    #[serde(rename = "")]
    Unknown,
    Broken,
    Stopped,
    Running,
    /// Not running, with a saved state that `start` resumes (this project's addition).
    Suspended,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Unknown => "",
            Status::Broken => "Broken",
            Status::Stopped => "Stopped",
            Status::Running => "Running",
            Status::Suspended => "Suspended",
        }
    }
}

/// Liveness of the processes that run an instance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Liveness {
    pub host_agent: bool,
    pub qemu: bool,
}

/// Name of the lock QEMU inherits from the host agent (alive = locked).
pub const QEMU_LOCK: &str = "qemu.lock";

impl Liveness {
    pub fn probe(dir: &Path) -> Liveness {
        Liveness {
            host_agent: lock::is_held(&dir.join(files::HA_LOCK)),
            qemu: lock::is_held(&dir.join(QEMU_LOCK)),
        }
    }
}

/// Which of the instance's files exist.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Present {
    pub lima_yaml: bool,
    pub basedisk: bool,
    pub diffdisk: bool,
    pub cidata: bool,
    pub kernel: bool,
    pub initrd: bool,
    pub protected: bool,
    /// A delete failed part-way and put back what was left (`delete-failed`).
    pub delete_failed: bool,
}

/// Everything known about one instance directory, read without side effects.
#[derive(Clone, Debug)]
pub struct Instance {
    pub name: String,
    pub dir: PathBuf,
    /// Whether the directory exists at all (it may lack lima.yaml: Broken).
    pub dir_exists: bool,
    pub present: Present,
    /// The raw `lima.yaml` as stored.
    pub lima_yaml: Option<String>,
    /// The filled configuration, when `lima.yaml` loads and validates.
    pub config: Option<LimaYaml>,
    pub status: Status,
    pub errors: Vec<String>,
    pub liveness: Liveness,
    /// pid from `ha.pid`, reported only while the liveness lock is held.
    pub host_agent_pid: Option<i32>,
    /// pid from `qemu.pid`, reported only while QEMU's lock is held.
    pub driver_pid: Option<i32>,
    pub ssh_local_port: u16,
    pub lima_version: Option<String>,
    /// Virtual size of the root disk (`diffdisk`), from its qcow2 header.
    pub disk_size: Option<u64>,
    /// The `apply` source that manages the instance (`owner` file).
    pub owner: Option<String>,
    /// The filled configuration the running VM was started with (`started.json`).
    pub started: Option<LimaYaml>,
}

/// What the host agent records when it starts QEMU.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct StartedSpec {
    /// sha256 of the filled configuration's JSON.
    pub fingerprint: String,
    pub config: LimaYaml,
}

impl StartedSpec {
    pub fn new(config: &LimaYaml) -> StartedSpec {
        StartedSpec {
            fingerprint: fingerprint(config),
            config: config.clone(),
        }
    }
}

/// A stable digest of a filled configuration.
pub fn fingerprint(config: &LimaYaml) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(
        config.to_json().to_string().as_bytes(),
    ))
}

/// The source recorded in the `owner` file, if any.
pub fn read_owner(dir: &Path) -> Option<String> {
    std::fs::read_to_string(dir.join(files::OWNER))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Reads the pid in a pid file; garbage or absence gives `None`.
pub fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path)
        .ok()?
        .trim()
        .parse::<i32>()
        .ok()
        .filter(|p| *p > 0)
}

/// The `Port` line of `ssh.config` (written by the host agent at every start).
pub fn ssh_port_from_config(dir: &Path) -> Option<u16> {
    let text = std::fs::read_to_string(dir.join(files::SSH_CONFIG)).ok()?;
    text.lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("Port "))
        .and_then(|p| p.trim().parse().ok())
}

/// Virtual size from a qcow2 header (bytes 24..32, big endian), or the file
/// size of a raw image.
pub fn image_virtual_size(path: &Path) -> Option<u64> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).ok()?;
    let mut hdr = [0u8; 32];
    let n = f.read(&mut hdr).ok()?;
    if n >= 32 && &hdr[..4] == b"QFI\xfb" {
        return Some(u64::from_be_bytes(hdr[24..32].try_into().unwrap()));
    }
    f.metadata().ok().map(|m| m.len())
}

/// The disk the VM boots from: `diffdisk` (seed layout) or Lima ≥ 2.1's `disk`.
pub fn root_disk(dir: &Path) -> Option<PathBuf> {
    [files::DIFF_DISK, files::DISK_V21]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.exists())
}

/// Inspects instance `name` of `home`. Never fails: problems are recorded in
/// `errors` and reflected in `status`.
pub fn inspect(home: &Home, env: &LoadEnv, name: &str) -> Instance {
    let dir = home.instance_dir(name);
    let exists = |f: &str| dir.join(f).symlink_metadata().is_ok();
    let present = Present {
        lima_yaml: exists(files::LIMA_YAML),
        basedisk: exists(files::BASE_DISK),
        diffdisk: exists(files::DIFF_DISK) || exists(files::DISK_V21),
        cidata: exists(files::CIDATA_ISO),
        kernel: exists(files::KERNEL),
        initrd: exists(files::INITRD),
        protected: exists(files::PROTECTED),
        delete_failed: exists(files::DELETE_FAILED),
    };
    let liveness = Liveness::probe(&dir);
    let mut inst = Instance {
        name: name.to_string(),
        dir: dir.clone(),
        dir_exists: dir.is_dir(),
        present,
        lima_yaml: None,
        config: None,
        status: Status::Unknown,
        errors: Vec::new(),
        liveness,
        host_agent_pid: liveness
            .host_agent
            .then(|| read_pid(&dir.join(files::HA_PID)))
            .flatten(),
        driver_pid: liveness
            .qemu
            .then(|| read_pid(&dir.join(files::QEMU_PID)))
            .flatten(),
        ssh_local_port: 0,
        lima_version: std::fs::read_to_string(dir.join(files::LIMA_VERSION))
            .ok()
            .map(|s| s.trim().to_string()),
        disk_size: root_disk(&dir).and_then(|p| image_virtual_size(&p)),
        owner: read_owner(&dir),
        started: std::fs::read(dir.join(files::STARTED_SPEC))
            .ok()
            .and_then(|b| serde_json::from_slice::<StartedSpec>(&b).ok())
            .map(|s| s.config),
    };
    if !inst.present.lima_yaml {
        if !inst.dir_exists {
            return inst;
        }
        inst.status = Status::Broken;
        inst.errors.push(format!(
            "instance directory {} has no lima.yaml",
            spec::yaml::quote_name(&dir.display().to_string())
        ));
        inst.errors.extend(delete_failed(&dir, name));
        return inst;
    }
    let path = dir.join(files::LIMA_YAML);
    match spec::load::read_limited(&path) {
        Ok(text) => {
            let tmpl = spec::load::Template::from_text(&path, text.clone());
            inst.lima_yaml = Some(text);
            let mut warnings = Vec::new();
            match spec::load::parse_template(&tmpl).and_then(|node| {
                spec::resolve::resolve(&node, &path.display().to_string(), name, env, &mut warnings)
            }) {
                Ok(r) => inst.config = Some(r.config),
                Err(e) => inst.errors.push(e.to_string()),
            }
        }
        Err(e) => inst.errors.push(e.to_string()),
    }
    inst.ssh_local_port = ssh_port_from_config(&dir).unwrap_or(0);
    if let Some(e) = delete_failed(&dir, name)
        && !(liveness.host_agent || liveness.qemu)
    {
        // What a failed delete left (its disks may be gone) is not started,
        // edited or applied to until someone decides: it has no usable
        // configuration, only a way out (delete again, or keep it).
        inst.errors.push(e);
        inst.config = None;
        inst.status = Status::Broken;
        return inst;
    }
    if inst.config.is_none() {
        // Lima: an instance whose lima.yaml does not load has an empty status.
        return inst;
    }
    if let Some(port) = inst
        .config
        .as_ref()
        .and_then(|c| c.ssh.as_ref())
        .and_then(|s| s.local_port)
        .filter(|p| *p > 0)
        && inst.ssh_local_port == 0
    {
        inst.ssh_local_port = port as u16;
    }
    inst.status = match (liveness.host_agent, liveness.qemu) {
        (true, true) => Status::Running,
        (false, false) if super::suspended::read(&dir).is_some() => Status::Suspended,
        (false, false) => Status::Stopped,
        (true, false) => {
            inst.errors
                .push("host agent is running but driver is not".into());
            Status::Broken
        }
        (false, true) => {
            inst.errors
                .push("qemu driver is running but host agent is not".into());
            Status::Broken
        }
    };
    inst
}

/// Why the instance in `dir` is what a failed delete left, if it is.
fn delete_failed(dir: &Path, name: &str) -> Option<String> {
    let marker = dir.join(files::DELETE_FAILED);
    let why = std::fs::read_to_string(&marker).ok()?;
    Some(format!(
        "a delete failed part-way and what is left was put back ({}); fix the cause and run `limactl delete {name}` again, or remove {} to keep the instance",
        why.trim(),
        spec::yaml::quote_name(&marker.display().to_string())
    ))
}

/// Like [`inspect`], for an instance found by listing `home`: `None` if it
/// vanished meanwhile. Deletion renames the directory away before removing
/// it, so a missing `lima.yaml` in a directory that is still the same one at
/// the same path is a genuinely broken instance, while a changed or missing
/// directory means it was deleted (and maybe recreated) under us.
pub fn inspect_listed(home: &Home, env: &LoadEnv, name: &str) -> Option<Instance> {
    inspect_listed_with(home, name, &mut || inspect(home, env, name))
}

fn inspect_listed_with(
    home: &Home,
    name: &str,
    inspect: &mut dyn FnMut() -> Instance,
) -> Option<Instance> {
    use std::os::unix::fs::MetadataExt;
    let dir = home.instance_dir(name);
    // The inode number alone does not tell: ext4 gives a directory made
    // right after one was removed the same number. Its birth time does.
    let identity = |m: std::fs::Metadata| (m.dev(), m.ino(), m.created().ok());
    for _ in 0..5 {
        let before = identity(std::fs::metadata(&dir).ok()?);
        let inst = inspect();
        if inst.errors.is_empty() && inst.dir_exists {
            return Some(inst);
        }
        // A problem was seen: believe it only if the directory is still the
        // one we started with.
        let after = identity(std::fs::metadata(&dir).ok()?);
        if after == before {
            return Some(inst);
        }
    }
    None
}

/// Names of the instance directories in `home`: directories whose name does
/// not start with `.` or `_`, sorted.
pub fn instance_names(home: &Home) -> std::io::Result<Vec<String>> {
    let rd = match std::fs::read_dir(&home.root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(super::at(&home.root, "list the instances of LIMA_HOME")(e)),
    };
    let mut names: Vec<String> = rd
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.') && !n.starts_with('_'))
        .collect();
    names.sort();
    Ok(names)
}

impl Instance {
    pub fn exists(&self) -> bool {
        self.dir.is_dir()
    }

    pub fn hostname(&self) -> String {
        spec::defaults::hostname_for(&self.name)
    }

    pub fn memory_bytes(&self) -> u64 {
        self.config
            .as_ref()
            .map_or(0, |c| spec::defaults::size_bytes(&c.memory))
    }

    pub fn disk_bytes(&self) -> u64 {
        self.config
            .as_ref()
            .map_or(0, |c| spec::defaults::size_bytes(&c.disk))
    }

    /// Lima's instance JSON (`limactl list --json`), keys in Lima's order.
    pub fn to_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        let c = self.config.as_ref();
        m.insert("name".into(), self.name.clone().into());
        m.insert("hostname".into(), self.hostname().into());
        m.insert("status".into(), self.status.as_str().into());
        m.insert("dir".into(), self.dir.display().to_string().into());
        m.insert(
            "vmType".into(),
            c.and_then(|c| c.vm_type.clone()).unwrap_or_default().into(),
        );
        m.insert(
            "arch".into(),
            c.and_then(|c| c.arch.clone()).unwrap_or_default().into(),
        );
        if let Some(cpus) = c.and_then(|c| c.cpus) {
            m.insert("cpus".into(), cpus.into());
        }
        if self.memory_bytes() > 0 {
            m.insert("memory".into(), self.memory_bytes().into());
        }
        if self.disk_bytes() > 0 {
            m.insert("disk".into(), self.disk_bytes().into());
        }
        if let Some(msg) = c.and_then(|c| c.message.clone()).filter(|s| !s.is_empty()) {
            m.insert("message".into(), msg.into());
        }
        if let Some(d) = c
            .and_then(|c| c.additional_disks.clone())
            .filter(|d| !d.is_empty())
        {
            m.insert("additionalDisks".into(), serde_json::to_value(d).unwrap());
        }
        if let Some(n) = c.and_then(|c| c.networks.clone()).filter(|n| !n.is_empty()) {
            m.insert("network".into(), serde_json::to_value(n).unwrap());
        }
        if self.ssh_local_port > 0 {
            m.insert("sshLocalPort".into(), self.ssh_local_port.into());
        }
        if c.is_some() {
            m.insert(
                "sshConfigFile".into(),
                self.dir
                    .join(files::SSH_CONFIG)
                    .display()
                    .to_string()
                    .into(),
            );
        }
        if let Some(p) = self.host_agent_pid {
            m.insert("hostAgentPID".into(), p.into());
        }
        if let Some(p) = self.driver_pid {
            m.insert("driverPID".into(), p.into());
        }
        if !self.errors.is_empty() {
            m.insert("errors".into(), self.errors.clone().into());
        }
        if let Some(c) = c {
            m.insert("config".into(), c.to_json());
            m.insert("sshAddress".into(), "127.0.0.1".into());
        }
        m.insert("protected".into(), self.present.protected.into());
        m.insert(
            "limaVersion".into(),
            self.lima_version.clone().unwrap_or_default().into(),
        );
        if let Some(p) = c.and_then(|c| c.param.clone()).filter(|p| !p.is_empty()) {
            m.insert("param".into(), serde_json::to_value(p).unwrap());
        }
        serde_json::Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qcow2_header_size() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.qcow2");
        let mut hdr = vec![0u8; 64];
        hdr[..4].copy_from_slice(b"QFI\xfb");
        hdr[24..32].copy_from_slice(&(5u64 << 30).to_be_bytes());
        std::fs::write(&p, &hdr).unwrap();
        assert_eq!(image_virtual_size(&p), Some(5 << 30));
        std::fs::write(&p, b"raw").unwrap();
        assert_eq!(image_virtual_size(&p), Some(3));
    }

    /// An instance deleted and made again while it is inspected is not
    /// reported as the broken half it was seen as, although its new
    /// directory may have the old one's inode number (ext4 reuses it).
    #[test]
    fn an_instance_recreated_while_inspected_is_inspected_again() {
        let d = tempfile::tempdir().unwrap();
        let home = Home::new(d.path());
        let env = LoadEnv::new(d.path());
        let dir = home.instance_dir("vm");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join(files::LIMA_YAML), "").unwrap();
        let mut calls = 0;
        let inst = inspect_listed_with(&home, "vm", &mut || {
            calls += 1;
            if calls == 1 {
                // Seen half-deleted, then deleted and made again.
                std::fs::remove_file(dir.join(files::LIMA_YAML)).unwrap();
                let seen = inspect(&home, &env, "vm");
                std::fs::remove_dir(&dir).unwrap();
                std::fs::create_dir(&dir).unwrap();
                std::fs::write(dir.join(files::LIMA_YAML), "").unwrap();
                return seen;
            }
            inspect(&home, &env, "vm")
        })
        .unwrap();
        assert_eq!(calls, 2, "inspected again");
        assert!(inst.present.lima_yaml, "{:?}", inst.errors);
    }

    #[test]
    fn pid_files_are_parsed_defensively() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("ha.pid");
        assert_eq!(read_pid(&p), None);
        std::fs::write(&p, "garbage\n").unwrap();
        assert_eq!(read_pid(&p), None);
        std::fs::write(&p, "-5\n").unwrap();
        assert_eq!(read_pid(&p), None);
        std::fs::write(&p, "1234\n").unwrap();
        assert_eq!(read_pid(&p), Some(1234));
    }
}
