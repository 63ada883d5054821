//! Facts about the host that defaults depend on (CPUs, RAM, arch, user, TZ).
//!
//! Detected once per process; tests construct a [`HostInfo`] by hand so that
//! defaults are deterministic.

use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq)]
pub struct HostInfo {
    pub cpus: u32,
    pub memory_bytes: u64,
    /// Lima spelling: `x86_64`, `aarch64`, …
    pub arch: String,
    /// Guest user name derived from the host user (see [`guest_user_name`]).
    pub user: String,
    pub uid: u32,
    pub comment: String,
    pub home: PathBuf,
    pub hostname: String,
    /// IANA zone, e.g. `Europe/Berlin`; `None` when it cannot be determined.
    pub timezone: Option<String>,
    /// Stable machine identity, for MAC address derivation.
    pub machine_id: String,
}

impl HostInfo {
    /// Reads the facts of the machine this process runs on.
    pub fn detect() -> HostInfo {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1);
        let memory_bytes = read_meminfo_total().unwrap_or(4 << 30);
        let arch = host_arch().to_string();
        let uid = nix::unistd::getuid().as_raw();
        let pw = nix::unistd::User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten();
        let host_user = pw
            .as_ref()
            .map(|u| u.name.clone())
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "lima".into());
        let comment = pw
            .as_ref()
            .map(|u| {
                u.gecos
                    .to_string_lossy()
                    .split(',')
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
            .unwrap_or_default();
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .or_else(|| pw.as_ref().map(|u| u.dir.clone()))
            .unwrap_or_else(|| PathBuf::from("/"));
        let (user, uid) = guest_user_name(&host_user, uid);
        let hostname = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".into());
        HostInfo {
            cpus,
            memory_bytes,
            arch,
            user,
            uid,
            comment,
            home,
            hostname: hostname.clone(),
            timezone: host_timezone(Path::new("/etc")),
            machine_id: read_machine_id().unwrap_or(hostname),
        }
    }

    /// A fixed host for tests.
    pub fn for_tests() -> HostInfo {
        HostInfo {
            cpus: 8,
            memory_bytes: 16 << 30,
            arch: "x86_64".into(),
            user: "alice".into(),
            uid: 1001,
            comment: "Alice".into(),
            home: PathBuf::from("/home/alice"),
            hostname: "testhost".into(),
            timezone: Some("Europe/Berlin".into()),
            machine_id: "0123456789abcdef".into(),
        }
    }
}

/// The process-wide detected host.
pub fn host() -> &'static HostInfo {
    static HOST: std::sync::OnceLock<HostInfo> = std::sync::OnceLock::new();
    HOST.get_or_init(HostInfo::detect)
}

pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "x86_64",
        "aarch64" => "aarch64",
        "arm" => "armv7l",
        "powerpc64" => "ppc64le",
        "riscv64" => "riscv64",
        "s390x" => "s390x",
        other => other,
    }
}

/// Lima's rule: the host user name if it is a valid Linux user name, else
/// `lima`. Lima refuses to run as root; this project allows it, and then the
/// guest user is `lima` with UID 1000 (a guest `root` login would collide with
/// the guest's own root).
pub fn guest_user_name(host_user: &str, uid: u32) -> (String, u32) {
    if uid == 0 {
        return ("lima".into(), 1000);
    }
    if super::validate::is_linux_user_name(host_user) && host_user != "admin" {
        (host_user.to_string(), uid)
    } else {
        ("lima".into(), uid)
    }
}

fn read_meminfo_total() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = s.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn read_machine_id() -> Option<String> {
    ["/etc/machine-id", "/var/lib/dbus/machine-id"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .find(|s| !s.is_empty())
}

/// `/etc/timezone` if it names a zone, else the zone `/etc/localtime` links to.
pub fn host_timezone(etc: &Path) -> Option<String> {
    if let Ok(tz) = std::fs::read_to_string(etc.join("timezone")) {
        let tz = tz.trim();
        if !tz.is_empty() && !tz.contains("..") && !tz.starts_with('/') {
            return Some(tz.to_string());
        }
    }
    let target = std::fs::read_link(etc.join("localtime")).ok()?;
    let s = target.to_string_lossy();
    let idx = s.find("zoneinfo/")?;
    let zone = &s[idx + "zoneinfo/".len()..];
    let zone = zone
        .strip_prefix("posix/")
        .or_else(|| zone.strip_prefix("right/"))
        .unwrap_or(zone);
    (!zone.is_empty()).then(|| zone.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_maps_to_lima_user() {
        assert_eq!(guest_user_name("root", 0), ("lima".into(), 1000));
        assert_eq!(guest_user_name("bob", 501), ("bob".into(), 501));
        assert_eq!(guest_user_name("Bob Smith", 501), ("lima".into(), 501));
        assert_eq!(guest_user_name("admin", 501), ("lima".into(), 501));
    }

    #[test]
    fn timezone_from_localtime_link() {
        let d = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/usr/share/zoneinfo/Asia/Tokyo", d.path().join("localtime"))
            .unwrap();
        assert_eq!(host_timezone(d.path()).as_deref(), Some("Asia/Tokyo"));
        std::fs::write(d.path().join("timezone"), "Europe/Paris\n").unwrap();
        assert_eq!(host_timezone(d.path()).as_deref(), Some("Europe/Paris"));
    }
}
