//! Which accelerator QEMU uses, and the CPU model that goes with it.
//!
//! KVM is used only when it actually works. `/dev/kvm` existing (or even
//! opening) proves nothing: on some hosts QEMU aborts when it sets up a vCPU
//! (`failed to set MSR 0x10a`), on others the vCPU is created but runs guest
//! code at a crawl (a kernel never gets through its decompressor). So the
//! first start runs a probe guest ([`PROBE_GUEST`], `kvm_probe.S`: long mode,
//! 32 MiB of page writes, a counting loop, then an `isa-debug-exit`) under
//! TCG and under KVM:
//!
//! ```text
//! qemu-system-x86_64 -accel tcg|kvm -M pc -cpu max|host -display none -nodefaults
//!   -no-reboot -m 128 -device isa-debug-exit,iobase=0xf4,iosize=0x04
//!   -drive format=raw,file=<probe>,if=floppy,readonly=on -boot a
//! ```
//!
//! KVM is used when its run reports success and is faster than TCG's; a
//! failure or a run slower than TCG's means TCG. The decision compares two
//! runs on the same machine at the same time, never a fixed duration. The answer is cached
//! in `$LIMA_HOME/_cache/qemu-accel.json`, keyed by the QEMU binary (path and
//! mtime), the host kernel release (`uname -r`) and whether `/dev/kvm` exists,
//! so later starts do not probe again. Delete that file to probe again.
//!
//! # Forcing an accelerator
//!
//! Set **`LIMA_QEMU_ACCEL=kvm`** or **`LIMA_QEMU_ACCEL=tcg`** in the environment
//! of `limactl` (it is inherited by the host agent). `kvm` skips the probe and
//! the cache entirely (QEMU then fails loudly if KVM is broken); `tcg` never
//! touches KVM. An empty value or `auto` means "probe".

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::QemuError;
use crate::spec::typed::{Arch, QemuOpts};

/// Environment variable that forces the accelerator: `kvm`, `tcg` (or `auto`).
pub const ACCEL_ENV: &str = "LIMA_QEMU_ACCEL";
/// How long the probe guest may take under TCG before the probe is given up
/// (and TCG used, uncached).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(60);
/// The probe guest: a boot sector built from `kvm_probe.S`.
pub const PROBE_GUEST: &[u8; 512] = include_bytes!("kvm_probe.bin");
/// QEMU's exit status when the probe guest finished: `(0x2a << 1) | 1`.
const PROBE_SUCCESS: i32 = 85;
const DEV_KVM: &str = "/dev/kvm";
const MAX_CACHE_ENTRIES: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }

    pub fn parse(s: &str) -> Option<Accel> {
        match s.trim().to_ascii_lowercase().as_str() {
            "kvm" => Some(Accel::Kvm),
            "tcg" => Some(Accel::Tcg),
            _ => None,
        }
    }
}

impl std::fmt::Display for Accel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the accelerator was chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccelSource {
    /// `LIMA_QEMU_ACCEL` said so.
    Forced,
    /// The guest architecture is not the host's: always TCG.
    NotNative,
    /// `/dev/kvm` is missing or cannot be opened: TCG without probing.
    NoKvmDevice,
    /// The probe ran now (and its answer was cached).
    Probed,
    /// The probe did not finish in time or could not run: TCG, not cached.
    ProbeInconclusive,
    /// A cached probe answer was used; QEMU was not run.
    Cached,
}

/// The chosen accelerator and a human reason (always mentions KVM when TCG
/// is chosen on a native guest).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccelChoice {
    pub accel: Accel,
    pub reason: String,
    pub source: AccelSource,
}

impl AccelChoice {
    /// The log line for this choice, e.g. `KVM is not usable (…); using TCG. Expect slow guests.`
    pub fn message(&self) -> String {
        match (self.accel, self.source) {
            (a, AccelSource::Forced) => format!("Using accelerator `{a}` ({})", self.reason),
            (Accel::Kvm, _) => format!("Using KVM ({})", self.reason),
            (Accel::Tcg, AccelSource::NotNative) => {
                format!("Using TCG ({}). Expect slow guests.", self.reason)
            }
            (Accel::Tcg, _) => format!(
                "KVM is not usable ({}); using TCG. Expect slow guests. \
                 Set {ACCEL_ENV}=kvm to force KVM",
                self.reason
            ),
        }
    }

    /// Logs [`AccelChoice::message`]: info for KVM or a forced choice, warning for TCG.
    pub fn log(&self) {
        if self.accel == Accel::Kvm || self.source == AccelSource::Forced {
            crate::info!("{}", self.message());
        } else {
            crate::warn!("{}", self.message());
        }
        if self.source == AccelSource::Cached {
            crate::debug!(
                "The accelerator was decided by an earlier probe (cached in $LIMA_HOME/{}/{}; delete it to probe again)",
                crate::store::paths::LIMA_CACHE_DIR,
                crate::store::paths::QEMU_ACCEL_CACHE
            );
        }
    }
}

/// Reads [`ACCEL_ENV`]: `Ok(None)` when unset, empty or `auto`.
pub fn forced_from_env() -> Result<Option<Accel>, QemuError> {
    match std::env::var(ACCEL_ENV) {
        Ok(v) if v.trim().is_empty() || v.trim().eq_ignore_ascii_case("auto") => Ok(None),
        Ok(v) => Accel::parse(&v)
            .map(Some)
            .ok_or(QemuError::BadAccelEnv { value: v }),
        Err(_) => Ok(None),
    }
}

/// The cache file under `lima_home`.
pub fn cache_file(lima_home: &Path) -> PathBuf {
    lima_home
        .join(crate::store::paths::LIMA_CACHE_DIR)
        .join(crate::store::paths::QEMU_ACCEL_CACHE)
}

/// Chooses the accelerator for a `guest_arch` guest run by `qemu`.
/// `cache` is the cache file ([`cache_file`]); `None` disables caching.
pub fn choose(
    qemu: &Path,
    guest_arch: &str,
    cache: Option<&Path>,
    forced: Option<Accel>,
) -> AccelChoice {
    if let Some(accel) = forced {
        return AccelChoice {
            accel,
            reason: format!("forced by {ACCEL_ENV}={accel}"),
            source: AccelSource::Forced,
        };
    }
    let host = crate::spec::host::host_arch();
    if guest_arch != host {
        return AccelChoice {
            accel: Accel::Tcg,
            reason: format!(
                "guest architecture {guest_arch} differs from the host's {host}; KVM needs a native guest"
            ),
            source: AccelSource::NotNative,
        };
    }
    let dev_kvm = Path::new(DEV_KVM);
    if !dev_kvm.exists() {
        return AccelChoice {
            accel: Accel::Tcg,
            reason: format!("{DEV_KVM} is not available"),
            source: AccelSource::NoKvmDevice,
        };
    }
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dev_kvm)
    {
        return AccelChoice {
            accel: Accel::Tcg,
            reason: format!("cannot open {DEV_KVM}: {e} (is the user in the `kvm` group?)"),
            source: AccelSource::NoKvmDevice,
        };
    }

    let key = CacheKey::of(qemu, true);
    if let (Some(cache), Some(key)) = (cache, &key)
        && let Some(hit) = read_cache(cache, key)
    {
        return AccelChoice {
            accel: hit.accel,
            reason: hit.reason,
            source: AccelSource::Cached,
        };
    }

    let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1000.0);
    let (accel, reason, source) = match probe_kvm(qemu, PROBE_TIMEOUT) {
        KvmProbe::Works { kvm, tcg } => (
            Accel::Kvm,
            format!("the KVM probe guest ran in {} (TCG: {})", ms(kvm), ms(tcg)),
            AccelSource::Probed,
        ),
        KvmProbe::Broken(why) => (Accel::Tcg, why, AccelSource::Probed),
        KvmProbe::Slow { kvm, tcg } => (
            Accel::Tcg,
            match kvm {
                Some(kvm) => format!(
                    "KVM ran the probe guest in {}, no faster than TCG ({})",
                    ms(kvm),
                    ms(tcg)
                ),
                None => format!(
                    "KVM did not finish the probe guest in {}, twice TCG's time",
                    ms(tcg * 2)
                ),
            },
            AccelSource::Probed,
        ),
        KvmProbe::TimedOut => (
            Accel::Tcg,
            format!(
                "the probe guest did not finish under TCG within {}s",
                PROBE_TIMEOUT.as_secs()
            ),
            AccelSource::ProbeInconclusive,
        ),
        KvmProbe::CannotRun(why) => (
            Accel::Tcg,
            format!("cannot run the KVM probe: {why}"),
            AccelSource::ProbeInconclusive,
        ),
    };
    if source == AccelSource::Probed
        && let (Some(cache), Some(key)) = (cache, key)
        && let Err(e) = write_cache(cache, key, accel, &reason)
    {
        crate::warn!(
            "cannot cache the accelerator probe in {}: {e}",
            cache.display()
        );
    }
    AccelChoice {
        accel,
        reason,
        source,
    }
}

/// The outcome of [`probe_kvm`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvmProbe {
    /// The probe guest ran to its end under KVM, faster than under TCG.
    Works { kvm: Duration, tcg: Duration },
    /// QEMU failed under KVM; the text says how (its stderr and exit status).
    Broken(String),
    /// KVM ran the probe guest no faster than TCG (or not to its end in
    /// twice TCG's time, and was killed).
    Slow {
        kvm: Option<Duration>,
        tcg: Duration,
    },
    /// The TCG run did not finish within the timeout: nothing to compare with.
    TimedOut,
    /// QEMU could not be started, or the probe guest could not be written.
    CannotRun(String),
}

/// The arguments that run the probe guest at `image` under `accel`.
pub fn probe_args(accel: Accel, image: &Path) -> Vec<String> {
    let cpu = match accel {
        Accel::Kvm => "host",
        Accel::Tcg => "max",
    };
    [
        "-accel",
        accel.as_str(),
        "-M",
        "pc",
        "-cpu",
        cpu,
        "-display",
        "none",
        "-nodefaults",
        "-no-reboot",
        "-m",
        "128",
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=0x04",
        "-drive",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        format!(
            "format=raw,file={},if=floppy,readonly=on",
            super::argv::escape_option(&image.display().to_string())
        ),
        "-boot".into(),
        "a".into(),
    ])
    .collect()
}

/// How one run of the probe guest ended.
enum Run {
    /// It reported success after this long.
    Finished(Duration),
    /// QEMU exited otherwise (stderr, status).
    Failed(String, std::process::ExitStatus),
    /// Killed at the timeout.
    Killed,
    CannotStart(String),
}

fn run_probe_guest(qemu: &Path, accel: Accel, image: &Path, timeout: Duration) -> Run {
    let args = probe_args(accel, image);
    crate::debug!("Probing {}: {} {}", accel, qemu.display(), args.join(" "));
    let start = Instant::now();
    let mut child = match Command::new(qemu)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return Run::CannotStart(format!("{}: {e}", qemu.display())),
    };
    let err = child.stderr.take().map(|mut r| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    });
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) if start.elapsed() < timeout => {
                std::thread::sleep(Duration::from_millis(5));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let took = start.elapsed();
    let stderr = err.and_then(|t| t.join().ok()).unwrap_or_default();
    match status {
        None => Run::Killed,
        Some(st) if st.code() == Some(PROBE_SUCCESS) => Run::Finished(took),
        Some(st) => Run::Failed(stderr, st),
    }
}

/// Writes the probe guest where QEMU can read it; removed when dropped.
struct ProbeImage(PathBuf);

impl ProbeImage {
    fn write() -> std::io::Result<ProbeImage> {
        use std::os::unix::fs::OpenOptionsExt;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path =
            std::env::temp_dir().join(format!("lima-kvm-probe-{}-{nanos}.img", std::process::id()));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        f.write_all(PROBE_GUEST)?;
        Ok(ProbeImage(path))
    }
}

impl Drop for ProbeImage {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs the KVM probe once (no cache): the probe guest under TCG, then
/// under KVM with twice TCG's time (any slower and TCG wins anyway).
pub fn probe_kvm(qemu: &Path, timeout: Duration) -> KvmProbe {
    let image = match ProbeImage::write() {
        Ok(i) => i,
        Err(e) => return KvmProbe::CannotRun(format!("cannot write the probe guest: {e}")),
    };
    let tcg = match run_probe_guest(qemu, Accel::Tcg, &image.0, timeout) {
        Run::Finished(t) => t,
        Run::Killed => return KvmProbe::TimedOut,
        Run::CannotStart(why) => return KvmProbe::CannotRun(why),
        Run::Failed(stderr, status) => {
            return KvmProbe::CannotRun(describe_failure(qemu, "tcg", &stderr, status));
        }
    };
    match run_probe_guest(qemu, Accel::Kvm, &image.0, tcg * 2) {
        Run::Finished(kvm) if kvm < tcg => KvmProbe::Works { kvm, tcg },
        Run::Finished(kvm) => KvmProbe::Slow {
            kvm: Some(kvm),
            tcg,
        },
        Run::Killed => KvmProbe::Slow { kvm: None, tcg },
        Run::CannotStart(why) => KvmProbe::CannotRun(why),
        Run::Failed(stderr, status) => {
            KvmProbe::Broken(describe_failure(qemu, "kvm", &stderr, status))
        }
    }
}

fn describe_failure(
    qemu: &Path,
    accel: &str,
    stderr: &str,
    status: std::process::ExitStatus,
) -> String {
    use std::os::unix::process::ExitStatusExt;
    let bin = qemu
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| qemu.display().to_string());
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let line = lines
        .iter()
        .find(|l| l.contains("error"))
        .or(lines.first())
        .map(|l| {
            let l = l
                .strip_prefix(&format!("{}:", qemu.display()))
                .or_else(|| l.strip_prefix(&format!("{bin}:")))
                .unwrap_or(l)
                .trim();
            l.strip_prefix("error:").unwrap_or(l).trim().to_string()
        });
    let how = match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => {
            let name = nix::sys::signal::Signal::try_from(s)
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|_| format!("signal {s}"));
            format!("killed by {name}, status {}", 128 + s)
        }
        _ => status.to_string(),
    };
    match line {
        Some(l) => format!("{bin} -accel {accel}: {l} ({how})"),
        None => format!("{bin} -accel {accel}: {how}"),
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CacheKey {
    qemu: String,
    qemu_mtime: String,
    kernel_release: String,
    dev_kvm: bool,
}

impl CacheKey {
    fn of(qemu: &Path, dev_kvm: bool) -> Option<CacheKey> {
        let resolved = std::fs::canonicalize(qemu).ok()?;
        let mtime = std::fs::metadata(&resolved).ok()?.modified().ok()?;
        let mtime = mtime.duration_since(std::time::UNIX_EPOCH).ok()?;
        Some(CacheKey {
            qemu: resolved.to_string_lossy().into_owned(),
            qemu_mtime: format!("{}.{:09}", mtime.as_secs(), mtime.subsec_nanos()),
            kernel_release: kernel_release()?,
            dev_kvm,
        })
    }
}

fn kernel_release() -> Option<String> {
    if let Ok(s) = std::fs::read_to_string("/proc/sys/kernel/osrelease") {
        return Some(s.trim().to_string());
    }
    let out = Command::new("uname").arg("-r").output().ok()?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CacheEntry {
    key: CacheKey,
    accel: Accel,
    reason: String,
    probed_at: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    entries: Vec<CacheEntry>,
}

fn load_cache(path: &Path) -> CacheFile {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn read_cache(path: &Path, key: &CacheKey) -> Option<CacheEntry> {
    load_cache(path).entries.into_iter().find(|e| &e.key == key)
}

fn write_cache(path: &Path, key: CacheKey, accel: Accel, reason: &str) -> std::io::Result<()> {
    let mut file = load_cache(path);
    file.entries.retain(|e| e.key != key);
    file.entries.push(CacheEntry {
        key,
        accel,
        reason: reason.to_string(),
        probed_at: crate::logging::now_rfc3339(),
    });
    let excess = file.entries.len().saturating_sub(MAX_CACHE_ENTRIES);
    file.entries.drain(..excess);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut data = serde_json::to_vec_pretty(&file).map_err(std::io::Error::other)?;
    data.push(b'\n');
    crate::store::atomic::write(path, &data, 0o600)
}

/// The CPU model: `vmOpts.qemu.cpuType.<arch>` when set, else `host` under
/// KVM and `max` under TCG (reference §2.3).
pub fn cpu_type(qemu: &QemuOpts, arch: Arch, accel: Accel) -> String {
    let configured = qemu
        .cpu_type
        .get(arch.as_str())
        .filter(|s| !s.trim().is_empty());
    match configured {
        Some(c) => c.trim().to_string(),
        None if accel == Accel::Kvm => "host".into(),
        None => "max".into(),
    }
}

/// Checks `cpu` against `<qemu> -cpu help -machine q35` unless it is `max`.
pub fn validate_cpu_type(qemu: &Path, cpu: &str) -> Result<(), QemuError> {
    let model = cpu.split(',').next().unwrap_or("").trim();
    if model == "max" {
        return Ok(());
    }
    let out = Command::new(qemu)
        .args(["-cpu", "help", "-machine", "q35"])
        .stdin(Stdio::null())
        .output()
        .map_err(|source| QemuError::Run {
            command: format!("{} -cpu help", qemu.display()),
            source,
        })?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    if text.trim().is_empty() {
        text = String::from_utf8_lossy(&out.stderr).into_owned();
    }
    if cpu_help_lists(&text, model) {
        Ok(())
    } else {
        Err(QemuError::UnsupportedCpu {
            cpu: cpu.to_string(),
            qemu: qemu.to_path_buf(),
        })
    }
}

fn cpu_help_lists(help: &str, model: &str) -> bool {
    help.split(|c: char| c.is_whitespace() || c == '\'' || c == '"')
        .any(|w| w == model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_type_defaults_and_override() {
        let mut q = QemuOpts::default();
        assert_eq!(cpu_type(&q, Arch::X86_64, Accel::Kvm), "host");
        assert_eq!(cpu_type(&q, Arch::X86_64, Accel::Tcg), "max");
        q.cpu_type = [("x86_64".to_string(), "Haswell-v4".to_string())].into();
        assert_eq!(cpu_type(&q, Arch::X86_64, Accel::Kvm), "Haswell-v4");
        assert_eq!(cpu_type(&q, Arch::Aarch64, Accel::Tcg), "max");
    }

    #[test]
    fn cpu_help_matching() {
        let help = "Available CPUs:\nx86 Haswell-v4  Intel Core Processor (Haswell, no TSX)\nx86 host  processor with all supported host features\n";
        assert!(cpu_help_lists(help, "host"));
        assert!(cpu_help_lists(help, "Haswell-v4"));
        assert!(!cpu_help_lists(help, "Haswell"));
        assert!(!cpu_help_lists(help, "Int"));
    }

    #[test]
    fn forced_and_non_native_skip_the_probe() {
        let q = Path::new("/nonexistent/qemu");
        let c = choose(q, "x86_64", None, Some(Accel::Kvm));
        assert_eq!((c.accel, c.source), (Accel::Kvm, AccelSource::Forced));
        assert!(c.message().contains("LIMA_QEMU_ACCEL=kvm"));
        let other = if crate::spec::host::host_arch() == "x86_64" {
            "aarch64"
        } else {
            "x86_64"
        };
        let c = choose(q, other, None, None);
        assert_eq!((c.accel, c.source), (Accel::Tcg, AccelSource::NotNative));
        assert!(c.reason.contains("KVM"));
    }

    #[test]
    fn messages() {
        let c = AccelChoice {
            accel: Accel::Tcg,
            reason: "qemu-system-x86_64 -accel kvm: failed to set MSR 0x10a to 0x69 (killed by SIGABRT, status 134)".into(),
            source: AccelSource::Probed,
        };
        assert!(
            c.message()
                .starts_with("KVM is not usable (qemu-system-x86_64 -accel kvm: failed")
        );
        assert!(c.message().contains("; using TCG. Expect slow guests."));
    }

    #[test]
    fn cache_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("_cache/qemu-accel.json");
        let key = CacheKey {
            qemu: "/usr/bin/qemu".into(),
            qemu_mtime: "1.000000000".into(),
            kernel_release: "6.1".into(),
            dev_kvm: true,
        };
        assert!(read_cache(&file, &key).is_none());
        write_cache(&file, key.clone(), Accel::Tcg, "broken").unwrap();
        let hit = read_cache(&file, &key).unwrap();
        assert_eq!((hit.accel, hit.reason.as_str()), (Accel::Tcg, "broken"));
        let other = CacheKey {
            kernel_release: "6.2".into(),
            ..key.clone()
        };
        assert!(read_cache(&file, &other).is_none());
        write_cache(&file, other.clone(), Accel::Kvm, "ok").unwrap();
        assert_eq!(read_cache(&file, &key).unwrap().accel, Accel::Tcg);
        assert_eq!(read_cache(&file, &other).unwrap().accel, Accel::Kvm);
        // A corrupt file is a cache miss, not an error.
        std::fs::write(&file, "{not json").unwrap();
        assert!(read_cache(&file, &key).is_none());
    }
}
