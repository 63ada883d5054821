//! `hack/install-deps.sh`: its final verification and its install rounds,
//! run against a fake apt (`apt-get`, `dpkg-query` and the promised tools are
//! small scripts in a temporary PATH; absolute paths live under
//! `LIMA_DEPS_ROOT`), so no package is installed and the machine's own tools
//! do not matter.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("hack/install-deps.sh")
}

/// The script's `binaries=(…)`, `firmware=(…)` and `pip_tools=(…)` entries, `WHAT:PACKAGE`.
fn promised() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(script()).unwrap();
    let mut out = Vec::new();
    for array in ["binaries=(", "firmware=(", "pip_tools=("] {
        let start = text.find(array).unwrap() + array.len();
        let end = start + text[start..].find(')').unwrap();
        for tok in text[start..end].split_whitespace() {
            let (what, pkg) = tok.split_once(':').unwrap();
            out.push((what.to_string(), pkg.to_string()));
        }
    }
    assert!(out.iter().any(|(w, _)| w == "qemu-img"));
    out
}

fn write_exe(path: &Path, body: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A fake machine: every promised tool present, every package installed.
/// `state/absent/PKG` makes dpkg say PKG is not installed; `apt-get install`
/// removes that mark and creates the package's tools (from
/// `state/provides/PKG`), and runs `state/hooks/PKG` if there is one.
struct Machine {
    dir: tempfile::TempDir,
}

impl Machine {
    fn new() -> Machine {
        let m = Machine {
            dir: tempfile::tempdir().unwrap(),
        };
        let bin = m.bin();
        std::fs::create_dir_all(&bin).unwrap();
        for tool in ["bash", "sh", "grep", "id", "sort", "rm", "chmod", "touch"] {
            let real = which(tool);
            std::os::unix::fs::symlink(real, bin.join(tool)).unwrap();
        }
        let state = m.state();
        for d in ["absent", "provides", "hooks"] {
            std::fs::create_dir_all(state.join(d)).unwrap();
        }
        write_exe(
            &bin.join("dpkg-query"),
            &format!(
                "for p; do :; done\n[ -e {s}/absent/\"$p\" ] || printf 'install ok installed'",
                s = state.display()
            ),
        );
        write_exe(
            &bin.join("apt-get"),
            &format!(
                "echo \"$*\" >> {s}/apt.log\n[ \"$1\" = install ] || exit 0\nfor p; do\n  case $p in -*|install) continue;; esac\n  rm -f {s}/absent/\"$p\"\n  [ -e {s}/provides/\"$p\" ] && while read -r t; do printf '#!/bin/sh\\n' > \"$t\"; chmod 755 \"$t\"; done < {s}/provides/\"$p\"\n  [ -e {s}/hooks/\"$p\" ] && sh {s}/hooks/\"$p\"\ndone\nexit 0",
                s = state.display()
            ),
        );
        write_exe(&bin.join("sudo"), "exec \"$@\"");
        for (what, pkg) in promised() {
            let path = m.tool_path(&what);
            write_exe(&path, "");
            let line = format!("{}\n", path.display());
            let provides = state.join("provides").join(&pkg);
            let mut old = std::fs::read_to_string(&provides).unwrap_or_default();
            old.push_str(&line);
            std::fs::write(provides, old).unwrap();
        }
        m
    }

    fn bin(&self) -> PathBuf {
        self.dir.path().join("bin")
    }
    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }
    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn tool_path(&self, what: &str) -> PathBuf {
        match what.strip_prefix('/') {
            Some(abs) => self.root().join(abs),
            None => self.bin().join(what),
        }
    }

    fn remove_tool(&self, what: &str) {
        std::fs::remove_file(self.tool_path(what)).unwrap();
    }

    fn mark_absent(&self, pkg: &str) {
        std::fs::write(self.state().join("absent").join(pkg), "").unwrap();
    }

    fn run(&self, args: &[&str]) -> Output {
        std::process::Command::new(script())
            .args(args)
            .env_clear()
            .env("PATH", self.bin())
            .env("LIMA_DEPS_ROOT", self.root())
            .output()
            .unwrap()
    }

    fn apt_log(&self) -> String {
        std::fs::read_to_string(self.state().join("apt.log")).unwrap_or_default()
    }
}

fn which(tool: &str) -> PathBuf {
    for dir in ["/usr/bin", "/bin", "/usr/sbin", "/sbin"] {
        let p = Path::new(dir).join(tool);
        if p.exists() {
            return p;
        }
    }
    panic!("{tool} not found on this machine");
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn the_check_passes_when_every_tool_is_there() {
    let m = Machine::new();
    let out = m.run(&["--check"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(m.apt_log().is_empty(), "the check installs nothing");
}

#[test]
fn a_missing_binary_fails_the_check_with_its_name() {
    for what in [
        "qemu-img",
        "/usr/lib/openssh/sftp-server",
        "/usr/share/OVMF/OVMF_CODE.fd",
        "promtool",
    ] {
        let m = Machine::new();
        m.remove_tool(what);
        let out = m.run(&["--check"]);
        assert_eq!(out.status.code(), Some(1), "{what}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&format!("missing: {what} (package ")),
            "{what}: {err}"
        );
        // Only that one is named.
        assert_eq!(err.matches("(package ").count(), 1, "{err}");
    }
}

/// The case: the machine came with a backported qemu-utils, and
/// installing the distribution's qemu-system-x86 made apt remove it. One run
/// must notice and install qemu-utils again.
#[test]
fn a_tool_apt_removes_while_installing_another_is_installed_again() {
    let m = Machine::new();
    m.mark_absent("qemu-system-x86");
    m.remove_tool("qemu-system-x86_64");
    std::fs::write(
        m.state().join("hooks/qemu-system-x86"),
        format!(
            "rm -f {}\ntouch {}",
            m.tool_path("qemu-img").display(),
            m.state().join("absent/qemu-utils").display()
        ),
    )
    .unwrap();
    let out = m.run(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let log = m.apt_log();
    let installs: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("install"))
        .collect::<Vec<_>>();
    assert_eq!(installs.len(), 2, "{installs:?}");
    assert!(installs[0].ends_with(" qemu-system-x86"), "{installs:?}");
    assert!(installs[1].ends_with(" qemu-utils"), "{installs:?}");
    assert!(m.tool_path("qemu-img").exists());
}

/// dpkg says installed, yet the binary is gone (replaced by a package
/// without it): reinstalled by its package; if that never brings it back,
/// the run fails naming it.
#[test]
fn a_binary_missing_under_an_installed_package_is_reinstalled_or_named() {
    let m = Machine::new();
    m.remove_tool("qemu-img");
    let out = m.run(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(m.apt_log().contains(" qemu-utils"), "{}", m.apt_log());
    assert!(m.tool_path("qemu-img").exists());

    let m = Machine::new();
    m.remove_tool("qemu-img");
    std::fs::write(m.state().join("provides/qemu-utils"), "").unwrap();
    let out = m.run(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("still missing after two rounds: qemu-utils"),
        "{err}"
    );
    assert!(
        err.contains("missing: qemu-img (package qemu-utils)"),
        "{err}"
    );
}
