//! Shared helpers of the end-to-end tests: a temp LIMA_HOME, the locally
//! built test guest, and a machine-wide lock so that only one guest boots at
//! a time (2 cores under TCG).

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use assert_cmd::Command;

/// The explicit local opt-out; `.ci/run` never sets it.
pub const SKIP_VAR: &str = "LIMA_SKIP_E2E";

/// Whether the developer explicitly opted out of VM tests on this machine.
pub fn skipped(test: &str) -> bool {
    if std::env::var_os(SKIP_VAR).is_some_and(|v| v == "1") {
        eprintln!("{test}: skipped because {SKIP_VAR}=1 (CI never sets it)");
        return true;
    }
    false
}

/// The test guest's template, built by hack/build-test-image.sh (cached) or
/// named by LIMA_TEST_TEMPLATE. Panics with what to do when unavailable.
pub fn test_template(uefi: bool) -> PathBuf {
    let path = match std::env::var_os("LIMA_TEST_TEMPLATE") {
        Some(p) => PathBuf::from(p),
        None => hack_output("build-test-image.sh", "(run hack/install-deps.sh first)"),
    };
    let path = if uefi {
        path.with_file_name("test-image-uefi.yaml")
    } else {
        path
    };
    assert!(
        path.is_file(),
        "test template {} is missing",
        path.display()
    );
    path
}

/// The static guest agent: LIMA_GUESTAGENT (hack/test.sh sets it), else
/// built by hack/build-guestagent.sh (cached by cargo).
pub fn guest_agent() -> PathBuf {
    if let Some(p) = std::env::var_os("LIMA_GUESTAGENT").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    hack_output("build-guestagent.sh", "")
}

/// Runs `hack/SCRIPT` and returns the path its last output line names.
fn hack_output(script: &str, hint: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("hack")
        .join(script);
    let out = std::process::Command::new(&path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
    assert!(
        out.status.success(),
        "hack/{script} failed {hint}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .last()
            .unwrap_or_default(),
    )
}

/// Fails loudly when QEMU is missing.
pub fn require_qemu() {
    let ok = std::process::Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "qemu-system-x86_64 is not installed: run hack/install-deps.sh"
    );
}

/// Held while a guest runs; the same lock file hack/test-image/smoke-boot.sh uses.
/// An flock on a fresh open of the file, so it serializes the e2e tests of this
/// one binary whether they run as processes (nextest) or as threads (`cargo test`).
/// Two guests at once do not finish sooner here: the test guest's two vCPUs keep
/// both cores busy while it boots (measured: two boots 71.0 s in a row, 70.1 s at
/// once). On release, a line `TEST waited Ws held Hs` goes to [`GUEST_LOCK_LOG`]
/// (hack/test.sh prints it): what each test costs the serialized part of the suite.
pub struct GuestLock {
    _file: std::fs::File,
    test: String,
    waited: Duration,
    acquired: Instant,
}

/// Where each holder of the guest lock records its wait and hold times.
pub const GUEST_LOCK_LOG: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/guest-lock.log");

#[track_caller]
pub fn guest_lock() -> GuestLock {
    let caller = std::panic::Location::caller();
    let test = std::thread::current()
        .name()
        .filter(|n| *n != "main")
        .map_or_else(
            || format!("{}:{}", caller.file(), caller.line()),
            str::to_string,
        );
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(std::env::temp_dir().join("lima-rs-smoke-boot.lock"))
        .unwrap();
    let t = Instant::now();
    f.lock().unwrap();
    GuestLock {
        _file: f,
        test,
        waited: t.elapsed(),
        acquired: Instant::now(),
    }
}

impl Drop for GuestLock {
    fn drop(&mut self) {
        use std::io::Write;
        let line = format!(
            "{} waited {:.1}s held {:.1}s{}\n",
            self.test,
            self.waited.as_secs_f64(),
            self.acquired.elapsed().as_secs_f64(),
            if std::thread::panicking() {
                " (failed)"
            } else {
                ""
            }
        );
        // One write of one short line to an O_APPEND file: lines do not interleave.
        if let Ok(mut log) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(GUEST_LOCK_LOG)
        {
            let _ = log.write_all(line.as_bytes());
        }
    }
}

pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        // Short paths: unix socket paths in the instance directory must fit in 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("lt")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        std::fs::create_dir_all(dir.path().join("lima")).unwrap();
        Env { dir }
    }

    pub fn lima_home(&self) -> PathBuf {
        self.dir.path().join("lima")
    }

    pub fn instance_dir(&self, name: &str) -> PathBuf {
        self.lima_home().join(name)
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("limactl").unwrap();
        c.env("LIMA_HOME", self.lima_home())
            .env("HOME", self.dir.path().join("home"))
            .env_remove("LIMA_TEMPLATES_PATH")
            .current_dir(self.dir.path());
        c
    }

    /// Runs limactl; returns (exit code, stdout, stderr) and logs them.
    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        self.run_with(args, |_| {})
    }

    /// [`Env::run`] with `configure` applied to the command first (more
    /// variables, stdin, a timeout).
    pub fn run_with(
        &self,
        args: &[&str],
        configure: impl FnOnce(&mut Command),
    ) -> (i32, String, String) {
        let start = Instant::now();
        let mut cmd = self.cmd();
        cmd.args(args);
        configure(&mut cmd);
        let out: Output = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        eprintln!(
            "$ limactl {} ({:.1}s, exit {:?})\n{stdout}{stderr}",
            args.join(" "),
            start.elapsed().as_secs_f64(),
            out.status.code()
        );
        assert!(!stderr.contains("panicked"), "limactl panicked");
        (out.status.code().unwrap_or(-1), stdout, stderr)
    }

    /// Runs limactl and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_with(args, |_| {})
    }

    /// [`Env::ok`] with `configure` applied to the command first.
    pub fn ok_with(&self, args: &[&str], configure: impl FnOnce(&mut Command)) -> String {
        let (code, out, err) = self.run_with(args, configure);
        assert_eq!(code, 0, "limactl {} failed:\n{err}", args.join(" "));
        out
    }

    pub fn list_json(&self, name: &str) -> serde_json::Value {
        let out = self.ok(&["list", "--json", name]);
        serde_json::from_str(out.lines().next().expect("one instance")).unwrap()
    }

    pub fn status(&self, name: &str) -> String {
        self.list_json(name)["status"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// Creates instance `name` (stopped, never booted) from [`tiny_image`]:
    /// one CPU, no mounts, no containerd.
    pub fn create_tiny(&self, name: &str) {
        let img = tiny_image(self.dir.path());
        let t = self.dir.path().join(format!("{name}.yaml"));
        std::fs::write(
            &t,
            format!(
                "images:\n- location: {}\n  arch: x86_64\ncpus: 1\nmemory: 1GiB\ndisk: 2GiB\nmounts: []\ncontainerd: {{user: false, system: false}}\n",
                img.display()
            ),
        )
        .unwrap();
        self.ok(&["create", "--name", name, t.to_str().unwrap()]);
    }

    /// Polls until `f` holds, up to `timeout`.
    pub fn wait_for(&self, what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
        let start = Instant::now();
        while !f() {
            assert!(
                start.elapsed() < timeout,
                "timed out after {timeout:?} waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // Never leave a VM behind, whatever the test did.
        if let Ok(rd) = std::fs::read_dir(self.lima_home()) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !name.starts_with('_') && !name.starts_with('.') {
                    let _ = self.cmd().args(["stop", "-f", &name]).output();
                }
            }
        }
    }
}

/// A tiny qcow2 "image" (no OS) at `dir/tiny.qcow2`, made once: enough to
/// create instances, never booted.
pub fn tiny_image(dir: &Path) -> PathBuf {
    let image = dir.join("tiny.qcow2");
    if !image.exists() {
        let ok = std::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&image)
            .arg("64M")
            .status()
            .expect("qemu-img is installed (hack/install-deps.sh)");
        assert!(ok.success());
    }
    image
}

/// (file name, mtime) of every entry of `dir`, sorted: to show that a
/// no-op touched nothing.
pub fn mtimes(dir: &Path) -> Vec<(String, std::time::SystemTime)> {
    let mut v: Vec<(String, std::time::SystemTime)> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().modified().unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// A daemon child and its log file: killed when dropped (also when an
/// assertion fails), its log shown when the test is failing.
pub struct DaemonGuard(pub std::process::Child, pub PathBuf);

impl Drop for DaemonGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        if std::thread::panicking() {
            eprintln!(
                "daemon log:\n{}",
                std::fs::read_to_string(&self.1).unwrap_or_default()
            );
        }
    }
}

/// GET `path` over HTTP/1.1 from `addr`: (status code, body).
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    write!(c, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut text = String::new();
    c.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, body.to_string())
}

/// The value of the Prometheus sample whose line starts with `series` (name
/// and labels).
pub fn metric_sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The address in the `nth` (from 1) `Serving metrics on http://ADDR/metrics`
/// line of a watch daemon's log.
pub fn logged_metrics_addr(log: &str, nth: usize) -> Option<std::net::SocketAddr> {
    log.split("Serving metrics on http://")
        .nth(nth)
        .and_then(|rest| rest.split('/').next())
        .and_then(|a| a.parse().ok())
}
