//! The QEMU driver: binary lookup and version check, accelerator probe
//! ([`accel`]), firmware search ([`firmware`]), the pure argument builder
//! ([`argv`]) and a QMP client ([`qmp`]).
//!
//! The host agent calls [`command_line`] (or [`prepare`] for the details),
//! starts the binary with the returned arguments as its direct child, and
//! talks to it with [`qmp::Qmp`] on `<inst>/qmp.sock`.
//!
//! Environment:
//! * `QEMU_SYSTEM_X86_64` — the QEMU binary, optionally followed by extra
//!   arguments (shell words) that are put first and win over generated options
//!   (debugging only).
//! * `LIMA_QEMU_ACCEL=kvm|tcg` — force the accelerator (see [`accel`]).

pub mod accel;
pub mod argv;
pub mod firmware;
pub mod migrate;
pub mod qmp;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub use accel::{Accel, AccelChoice, AccelSource};
pub use argv::{QemuArgs, build};

use crate::spec::Spec;
use crate::spec::typed::MountType;
use crate::store::paths::files;

/// The only guest architecture this driver runs.
pub const GUEST_ARCH: &str = "x86_64";
/// The binary looked up in `PATH`.
pub const BINARY_NAME: &str = "qemu-system-x86_64";
/// Overrides the binary (first word) and prepends arguments (the rest).
pub const BINARY_ENV: &str = "QEMU_SYSTEM_X86_64";
/// The Debian package that provides [`BINARY_NAME`].
pub const DEBIAN_PACKAGE: &str = "qemu-system-x86";
/// Below this QEMU version the driver refuses to start (Lima, Linux hosts).
pub const HARD_MINIMUM_VERSION: Version = Version(4, 0, 0);
/// Below this QEMU version the driver warns.
pub const SOFT_MINIMUM_VERSION: Version = Version(6, 2, 0);

/// Errors of the QEMU driver; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    /// The binary is not installed.
    #[error(
        "{name} not found in PATH: install the Debian package `{DEBIAN_PACKAGE}` (`hack/install-deps.sh` does), or set {BINARY_ENV} to the QEMU binary"
    )]
    BinaryNotFound { name: String },
    /// `QEMU_SYSTEM_X86_64` is set but unusable.
    #[error("${BINARY_ENV}={value:?} is not usable: {reason}")]
    BadBinaryEnv { value: String, reason: String },
    #[error("cannot run `{command}`: {source}")]
    Run {
        command: String,
        source: std::io::Error,
    },
    #[error(
        "QEMU {version} ({qemu}) is too old: at least {minimum} is required; install a newer `{DEBIAN_PACKAGE}`"
    )]
    VersionTooOld {
        qemu: PathBuf,
        version: Version,
        minimum: Version,
    },
    #[error(
        "QEMU {version} ({qemu}) is older than `vmOpts.qemu.minimumVersion` {required}; install a newer QEMU or lower the requirement"
    )]
    VersionBelowRequired {
        qemu: PathBuf,
        version: Version,
        required: String,
    },
    #[error("${} must be `kvm`, `tcg` or `auto`, got {value:?}", accel::ACCEL_ENV)]
    BadAccelEnv { value: String },
    #[error("cpu `{cpu}` is not supported by {qemu} (see `{} -cpu help`); fix `vmOpts.qemu.cpuType`", qemu.display())]
    UnsupportedCpu { cpu: String, qemu: PathBuf },
    #[error(
        "could not find UEFI firmware for x86_64 (searched {}): install the Debian package `ovmf`, or try setting `firmware.legacyBIOS` to `true`",
        searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    NoFirmware { searched: Vec<PathBuf> },
    #[error("this QEMU driver runs {GUEST_ARCH} guests only, not `arch: {arch}`")]
    UnsupportedArch { arch: String },
    #[error("{what} is not supported by this QEMU driver yet")]
    Unsupported { what: String },
    #[error("{}: the instance's disk does not exist (its image was never prepared); `limactl start` prepares it", path.display())]
    MissingDisk { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A QEMU version `major.minor.micro`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u64, pub u64, pub u64);

impl Version {
    /// Parses `7.2.22`, `8.0` or `v9.1.0-rc1` (pre-release and build suffixes ignored).
    pub fn parse(s: &str) -> Option<Version> {
        let s = s.trim().trim_start_matches('v');
        let core = s.split(['-', '+', ' ']).next()?;
        let mut it = core.split('.');
        let major = it.next()?.parse().ok()?;
        let minor = it.next().map_or(Some(0), |m| m.parse().ok())?;
        let micro = it.next().map_or(Some(0), |m| m.parse().ok())?;
        if it.next().is_some() {
            return None;
        }
        Some(Version(major, minor, micro))
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// The QEMU binary and the arguments `QEMU_SYSTEM_X86_64` prepends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binary {
    pub path: PathBuf,
    pub extra_args: Vec<String>,
}

/// Finds the binary: `$QEMU_SYSTEM_X86_64` (shell words; first = binary, a
/// bare name is looked up in `PATH`) or `qemu-system-x86_64` in `PATH`.
pub fn find_binary() -> Result<Binary, QemuError> {
    find_binary_with(
        std::env::var(BINARY_ENV).ok().as_deref(),
        std::env::var_os("PATH").as_deref(),
    )
}

/// [`find_binary`] with explicit environment values.
pub fn find_binary_with(
    env: Option<&str>,
    path_var: Option<&std::ffi::OsStr>,
) -> Result<Binary, QemuError> {
    if let Some(value) = env.filter(|v| !v.trim().is_empty()) {
        let bad = |reason: String| QemuError::BadBinaryEnv {
            value: value.to_string(),
            reason,
        };
        let mut words = argv::shell_words(value).map_err(bad)?.into_iter();
        let first = words.next().unwrap_or_default();
        let path = if first.contains('/') {
            let p = PathBuf::from(&first);
            if !is_executable(&p) {
                return Err(bad(format!("{first} is not an executable file")));
            }
            p
        } else {
            lookup_path(&first, path_var)
                .ok_or_else(|| bad(format!("{first} not found in PATH")))?
        };
        return Ok(Binary {
            path,
            extra_args: words.collect(),
        });
    }
    lookup_path(BINARY_NAME, path_var)
        .map(|path| Binary {
            path,
            extra_args: Vec::new(),
        })
        .ok_or_else(|| QemuError::BinaryNotFound {
            name: BINARY_NAME.into(),
        })
}

fn lookup_path(name: &str, path_var: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    std::env::split_paths(path_var?)
        .filter(|d| !d.as_os_str().is_empty())
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Parses the first line of `qemu-system-* --version`.
pub fn parse_version_output(out: &str) -> Option<Version> {
    let line = out.lines().next()?;
    let rest = line.trim().strip_prefix("QEMU emulator version ")?;
    let v: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    (v.split('.').count() == 3)
        .then(|| Version::parse(&v))
        .flatten()
}

/// Runs `<qemu> --version`; `Ok(None)` when the output has no version.
pub fn version(qemu: &Path) -> Result<Option<Version>, QemuError> {
    let out = Command::new(qemu)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|source| QemuError::Run {
            command: format!("{} --version", qemu.display()),
            source,
        })?;
    Ok(parse_version_output(&String::from_utf8_lossy(&out.stdout)))
}

/// Applies the minimums: an error below [`HARD_MINIMUM_VERSION`] or below
/// `vmOpts.qemu.minimumVersion`; warnings (returned) below
/// [`SOFT_MINIMUM_VERSION`] or when the version is unknown.
pub fn check_version(
    qemu: &Path,
    version: Option<Version>,
    required: Option<&str>,
) -> Result<Vec<String>, QemuError> {
    let Some(v) = version else {
        return Ok(vec![format!(
            "cannot detect the version of {}; assuming it is recent enough",
            qemu.display()
        )]);
    };
    let mut warnings = Vec::new();
    if v < HARD_MINIMUM_VERSION {
        return Err(QemuError::VersionTooOld {
            qemu: qemu.to_path_buf(),
            version: v,
            minimum: HARD_MINIMUM_VERSION,
        });
    }
    if v < SOFT_MINIMUM_VERSION {
        warnings.push(format!(
            "QEMU {v} is older than {SOFT_MINIMUM_VERSION}, the oldest version known to work well; consider upgrading"
        ));
    }
    if let Some(req) = required.map(str::trim).filter(|r| !r.is_empty()) {
        match Version::parse(req) {
            Some(r) if v < r => {
                return Err(QemuError::VersionBelowRequired {
                    qemu: qemu.to_path_buf(),
                    version: v,
                    required: req.to_string(),
                });
            }
            Some(_) => {}
            None => warnings.push(format!(
                "ignoring `vmOpts.qemu.minimumVersion` {req:?}: not a version"
            )),
        }
    }
    Ok(warnings)
}

pub use crate::spec::defaults::instance_mac;

/// `path` holds an ISO 9660 image (`CD001` at byte 0x8001).
pub fn is_iso9660(path: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let mut magic = [0u8; 5];
    f.seek(SeekFrom::Start(0x8001)).is_ok()
        && f.read_exact(&mut magic).is_ok()
        && &magic == b"CD001"
}

/// What the host agent knows when it is about to start QEMU.
#[derive(Clone, Debug)]
pub struct Launch<'a> {
    /// The resolved `lima.yaml`.
    pub spec: &'a Spec,
    pub name: &'a str,
    pub instance_dir: &'a Path,
    pub ssh_local_port: u16,
    /// `_disk/<NAME>/datadisk` of each additional disk, already locked.
    pub additional_disks: Vec<PathBuf>,
    /// `LIMA_HOME` (for the accelerator probe cache).
    pub lima_home: &'a Path,
}

/// Everything decided before QEMU starts.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub binary: PathBuf,
    /// Arguments after the binary.
    pub argv: Vec<String>,
    pub accel: AccelChoice,
    pub version: Option<Version>,
}

/// [`prepare`], returning only the binary and its arguments.
pub fn command_line(l: &Launch) -> Result<(PathBuf, Vec<String>), QemuError> {
    let p = prepare(l)?;
    Ok((p.binary, p.argv))
}

/// Finds and checks QEMU, chooses the accelerator (probing KVM once, cached),
/// the CPU type and the firmware, looks at the instance's boot files, creates
/// 9p mount sources, and builds the arguments. Logs what it chose.
pub fn prepare(l: &Launch) -> Result<Prepared, QemuError> {
    let y = l.spec;
    let arch = y.arch.as_str();
    if arch != GUEST_ARCH {
        return Err(QemuError::UnsupportedArch { arch: arch.into() });
    }
    if y.mount_type == MountType::Virtiofs && !y.mounts.is_empty() {
        return Err(QemuError::Unsupported {
            what: "`mountType: virtiofs` (use `9p` or `reverse-sshfs`)".into(),
        });
    }
    if !y.networks.is_empty() {
        crate::warn!(
            "`networks` are not supported by this QEMU driver yet; ignoring them (the user-mode network is always there)"
        );
    }
    if y.tpm {
        crate::warn!("`tpm: true` is not supported by this QEMU driver yet; ignoring it");
    }

    let binary = find_binary()?;
    if !binary.extra_args.is_empty() {
        crate::warn!(
            "Specifying args ({}) via ${BINARY_ENV} is supported only for debugging!",
            binary.extra_args.join(" ")
        );
    }
    let version = version(&binary.path)?;
    let required = y.vm_opts.qemu.minimum_version.as_deref();
    for w in check_version(&binary.path, version, required)? {
        crate::warn!("{w}");
    }

    let forced = accel::forced_from_env()?;
    let cache = accel::cache_file(l.lima_home);
    let choice = accel::choose(&binary.path, arch, Some(&cache), forced);
    choice.log();
    let cpu = accel::cpu_type(&y.vm_opts.qemu, y.arch, choice.accel);
    accel::validate_cpu_type(&binary.path, &cpu)?;

    let fw = firmware::find(&y.firmware, l.instance_dir, &binary.path)?;
    match &fw {
        Some(p) => crate::debug!("Using UEFI firmware {}", p.display()),
        None => crate::debug!("Using legacy BIOS"),
    }

    let dir = l.instance_dir;
    let diff = dir.join(files::DIFF_DISK);
    if !diff.exists() {
        return Err(QemuError::MissingDisk { path: diff });
    }
    let kernel_cmdline = match std::fs::read_to_string(dir.join(files::KERNEL_CMDLINE)) {
        Ok(s) => Some(s.trim_end_matches(['\n', '\r']).to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(QemuError::Io {
                path: dir.join(files::KERNEL_CMDLINE),
                source,
            });
        }
    };

    if y.mount_type == MountType::NineP {
        for m in &y.mounts {
            let p = Path::new(&m.location);
            if !p.exists() {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(p)
                    .map_err(|source| QemuError::Io {
                        path: p.to_path_buf(),
                        source,
                    })?;
            }
        }
    }

    let args = QemuArgs {
        spec: y,
        name: l.name,
        instance_dir: dir,
        ssh_local_port: l.ssh_local_port,
        accel: choice.accel,
        cpu_type: cpu,
        firmware: fw,
        has_kernel: dir.join(files::KERNEL).is_file(),
        has_initrd: dir.join(files::INITRD).is_file(),
        kernel_cmdline,
        mac: instance_mac(dir),
        additional_disks: l.additional_disks.clone(),
        base_disk_is_iso: is_iso9660(&dir.join(files::BASE_DISK)),
        extra_prefix_args: binary.extra_args.clone(),
    };
    let (argv, warnings) = argv::build_with_warnings(&args);
    for w in warnings {
        crate::warn!("{w}");
    }
    Ok(Prepared {
        binary: binary.path,
        argv,
        accel: choice,
        version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_parsing_and_minimums() {
        let out = "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright (c) 2003-2022\n";
        assert_eq!(parse_version_output(out), Some(Version(7, 2, 22)));
        assert_eq!(parse_version_output("qemu 7"), None);
        let q = Path::new("/usr/bin/qemu-system-x86_64");
        assert!(
            check_version(q, Some(Version(7, 2, 22)), None)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            check_version(q, Some(Version(6, 0, 0)), None)
                .unwrap()
                .len(),
            1
        );
        let e = check_version(q, Some(Version(3, 1, 0)), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("too old") && e.contains("4.0.0"), "{e}");
        let e = check_version(q, Some(Version(7, 2, 22)), Some("8.2.1"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("minimumVersion") && e.contains("8.2.1"), "{e}");
        assert!(
            check_version(q, Some(Version(7, 2, 22)), Some("7.2.0"))
                .unwrap()
                .is_empty()
        );
        assert_eq!(check_version(q, None, None).unwrap().len(), 1);
        assert_eq!(Version::parse("v9.1.0-rc1"), Some(Version(9, 1, 0)));
        assert_eq!(Version::parse("8"), Some(Version(8, 0, 0)));
    }

    #[test]
    fn binary_lookup() {
        let d = tempfile::tempdir().unwrap();
        let bin = d.path().join(BINARY_NAME);
        std::fs::write(&bin, "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = std::ffi::OsString::from(format!("/nonexistent:{}", d.path().display()));

        let b = find_binary_with(None, Some(&path)).unwrap();
        assert_eq!(b.path, bin);
        assert!(b.extra_args.is_empty());

        let e = find_binary_with(None, Some(std::ffi::OsStr::new("/nonexistent")))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("qemu-system-x86") && e.contains("hack/install-deps.sh"),
            "{e}"
        );

        let env = format!("{} -cpu 'Haswell,-avx' -d guest_errors", bin.display());
        let b = find_binary_with(Some(&env), None).unwrap();
        assert_eq!(b.path, bin);
        assert_eq!(b.extra_args, ["-cpu", "Haswell,-avx", "-d", "guest_errors"]);

        let b = find_binary_with(Some(&format!("{BINARY_NAME} -S")), Some(&path)).unwrap();
        assert_eq!(
            (b.path, b.extra_args),
            (bin.clone(), vec!["-S".to_string()])
        );

        let e = find_binary_with(Some("/nope/qemu"), Some(&path))
            .unwrap_err()
            .to_string();
        assert!(e.contains("QEMU_SYSTEM_X86_64"), "{e}");
    }

    #[test]
    fn iso_detection() {
        let d = tempfile::tempdir().unwrap();
        let iso = d.path().join("iso");
        let mut data = vec![0u8; 0x8010];
        data[0x8001..0x8006].copy_from_slice(b"CD001");
        std::fs::write(&iso, &data).unwrap();
        assert!(is_iso9660(&iso));
        std::fs::write(&iso, b"QFI\xfb").unwrap();
        assert!(!is_iso9660(&iso));
        assert!(!is_iso9660(&d.path().join("missing")));
    }
}
