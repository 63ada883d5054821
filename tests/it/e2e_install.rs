//! `hack/install.sh PREFIX` and a start from that tree alone: one VM boots
//! with only PREFIX/bin on PATH (plus the system's), no `LIMA_GUESTAGENT`,
//! and its guest agent runs in the guest (found by limactl as
//! `PREFIX/share/lima/lima-guestagent.Linux-x86_64`). The start runs under
//! a pseudo-terminal, where it draws what it waits for.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::{Env, guest_lock, require_qemu, skipped, test_template};

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn the_installed_tree_starts_an_instance_with_its_guest_agent() {
    if skipped("install e2e") {
        return;
    }
    require_qemu();
    let template = test_template(false);
    let env = Env::new();
    let prefix = env.dir.path().join("prefix");
    let limactl = assert_cmd::cargo::cargo_bin("limactl");
    // target/debug/limactl → target: the build this test run made.
    let target = limactl.parent().unwrap().parent().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let built = std::fs::metadata(&limactl).unwrap().modified().unwrap();
    let mut install = std::process::Command::new(repo.join("hack/install.sh"));
    // The CARGO_* variables cargo sets for this test would reach the build
    // scripts of install.sh's cargo (ring's declares some with
    // rerun-if-env-changed) and rebuild the whole release guest agent that
    // hack/test.sh has just built: install as a user's shell would.
    for (k, _) in std::env::vars_os() {
        if k.to_str()
            .is_some_and(|k| k == "CARGO" || (k.starts_with("CARGO_") && k != "CARGO_HOME"))
        {
            install.env_remove(k);
        }
    }
    let out = install
        .arg(&prefix)
        .env("CARGO_TARGET_DIR", target)
        // The binaries this run built: building them again would relink
        // the limactl the other tests are running (hack/install.sh).
        .env("LIMA_INSTALL_FROM", limactl.parent().unwrap())
        .env_remove("LIMA_GUESTAGENT")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "hack/install.sh failed:\n{err}");
    assert_eq!(
        std::fs::metadata(&limactl).unwrap().modified().unwrap(),
        built,
        "the install relinked the limactl the other tests run"
    );
    let bin = prefix.join("bin");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().last(),
        Some(bin.to_str().unwrap())
    );

    // Lima's tree.
    for f in ["limactl", "lima"] {
        assert!(bin.join(f).is_file(), "bin/{f}");
    }
    for w in ["nerdctl", "docker", "podman", "kubectl", "apptainer"] {
        let text = read(&bin.join(format!("{w}.lima")));
        assert!(
            text.starts_with("#!/bin/sh") && text.contains(&format!("exec lima {w} ")),
            "{text}"
        );
    }
    let ga = prefix.join("share/lima/lima-guestagent.Linux-x86_64");
    assert!(ga.is_file());
    assert!(
        !lima::hostagent::guest::is_dynamically_linked(&ga),
        "the installed guest agent is static"
    );
    // Templates where Lima keeps them; `info` names their files.
    let info = std::process::Command::new(bin.join("limactl"))
        .arg("info")
        .env("LIMA_HOME", env.lima_home())
        .output()
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    let default = info["templates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "default")
        .unwrap();
    assert_eq!(
        default["location"].as_str(),
        prefix.join("share/lima/templates/default.yaml").to_str()
    );
    assert!(
        prefix
            .join("share/lima/templates/_images/debian-12.yaml")
            .is_file()
    );
    let man = prefix.join("share/man/man1");
    assert!(read(&man.join("limactl.1")).contains(".TH limactl"));
    assert!(read(&man.join("limactl-start.1")).contains(".TH limactl-start"));
    assert!(
        !man.join("limactl-hostagent.1").exists(),
        "hidden commands get no page"
    );
    assert!(read(&prefix.join("share/bash-completion/completions/limactl")).contains("_limactl"));
    assert!(
        read(&prefix.join("share/zsh/site-functions/_limactl")).starts_with("#compdef limactl")
    );
    assert!(
        read(&prefix.join("share/fish/vendor_completions.d/limactl.fish"))
            .contains("complete -c limactl")
    );

    // The quick start, from the installed tree only, under a terminal.
    let _guest = guest_lock();
    let path = format!(
        "{}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        bin.display()
    );
    let script = format!("limactl start --name inst {}", template.display());
    let out = std::process::Command::new("script")
        .args(["-qefc", &script, "/dev/null"])
        .env("PATH", &path)
        .env("LIMA_HOME", env.lima_home())
        .env("HOME", env.dir.path().join("home"))
        .env("TERM", "xterm")
        .env_remove("LIMA_GUESTAGENT")
        .current_dir(env.dir.path())
        .output()
        .unwrap();
    let drawn = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{drawn}");
    // Whatever happened, stop the VM (Env's drop uses the test's limactl too).
    let stop = || {
        let _ = std::process::Command::new(bin.join("limactl"))
            .args(["stop", "-f", "inst"])
            .env("LIMA_HOME", env.lima_home())
            .env("HOME", env.dir.path().join("home"))
            .output();
    };
    if !out.status.success() {
        stop();
        panic!("start or shell from the installed tree failed:\n{drawn}");
    }
    assert!(drawn.contains("READY."), "{drawn}");
    // The spinner: the instance, the requirement it waits for, the time.
    assert!(
        drawn.contains("inst: Waiting for the essential requirement"),
        "{drawn}"
    );
    assert!(!drawn.contains("dynamically linked"), "{drawn}");

    let dir = env.instance_dir("inst");
    let ha = read(&dir.join("ha.stderr.log"));
    assert!(
        ha.contains(&format!(
            "Guest agent: {}",
            bin.join("../share/lima/lima-guestagent.Linux-x86_64")
                .display()
        )),
        "{ha}"
    );
    env.wait_for(
        "the host agent to hear from the guest agent",
        Duration::from_secs(120),
        || read(&dir.join("ha.stderr.log")).contains("Guest agent is running"),
    );
    // In the guest, through the installed `lima`.
    let mut ps = String::new();
    env.wait_for(
        "lima-guestagent to run in the guest",
        Duration::from_secs(60),
        || {
            let out = std::process::Command::new(bin.join("lima"))
                .args(["pgrep", "-a", "lima-guestagent"])
                .env("PATH", &path)
                .env("LIMA_INSTANCE", "inst")
                .env("LIMA_HOME", env.lima_home())
                .env("HOME", env.dir.path().join("home"))
                .output()
                .unwrap();
            ps = String::from_utf8_lossy(&out.stdout).into_owned();
            out.status.success()
        },
    );
    assert!(ps.contains("lima-guestagent daemon"), "{ps}");
    // The host agent runs the installed limactl.
    let pid = read(&dir.join("ha.pid"));
    let exe = std::fs::read_link(format!("/proc/{}/exe", pid.trim())).unwrap();
    assert_eq!(exe, std::fs::canonicalize(bin.join("limactl")).unwrap());
    stop();
}
