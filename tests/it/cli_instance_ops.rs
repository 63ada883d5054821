//! Whole-instance verbs without a VM: offline snapshots (`qemu-img` on the
//! tiny image's diffdisk), clone / rename / factory-reset file effects,
//! `autostart` (its unit checked by `systemd-analyze verify`), `disk import`.

use crate::common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use common::Env;

fn qemu_img_tags(disk: &Path) -> String {
    let out = std::process::Command::new("qemu-img")
        .args(["snapshot", "-l"])
        .arg(disk)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn offline_snapshots_are_qcow2_snapshots_of_the_diffdisk() {
    let env = Env::new();
    env.create_tiny("vm");
    let disk = env.instance_dir("vm").join("diffdisk");
    // None yet: the table is empty, as Lima prints it.
    assert_eq!(env.ok(&["snapshot", "list", "vm"]), "");
    let (code, _, err) = env.run(&["snapshot", "create", "vm"]);
    assert_eq!(code, 1);
    assert!(err.contains("expected tag"), "{err}");
    let (code, _, err) = env.run(&["snapshot", "create", "vm", "--tag", "a b"]);
    assert_eq!(code, 1);
    assert!(err.contains("invalid snapshot tag"), "{err}");

    env.ok(&["snapshot", "create", "vm", "--tag", "one"]);
    env.ok(&["snapshot", "save", "vm", "--tag", "two"]);
    let raw = qemu_img_tags(&disk);
    assert!(raw.contains(" one ") && raw.contains(" two "), "{raw}");
    let list = env.ok(&["snapshot", "list", "vm"]);
    assert!(!list.contains("Snapshot list:"), "{list}");
    let header: Vec<&str> = list.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(&header[..2], ["ID", "TAG"], "{list}");
    assert_eq!(env.ok(&["snapshot", "ls", "-q", "vm"]), "one\ntwo\n");

    // Apply: the disk's content is back to the snapshot's. Write a
    // recognisable cluster after "one", then apply "one": it is gone.
    let probe = env.dir.path().join("probe.bin");
    std::fs::write(&probe, vec![0xabu8; 65536]).unwrap();
    let io = |args: &[&str]| {
        let ok = std::process::Command::new("qemu-io")
            .args(args)
            .arg(&disk)
            .output()
            .expect("qemu-io (qemu-utils) is installed");
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
        String::from_utf8_lossy(&ok.stdout).into_owned()
    };
    io(&["-f", "qcow2", "-c", "write -P 0xab 0 64k"]);
    assert!(io(&["-f", "qcow2", "-c", "read -P 0xab 0 64k"]).contains("read 65536/65536"));
    env.ok(&["snapshot", "apply", "vm", "--tag", "one"]);
    let after = io(&["-f", "qcow2", "-c", "read -P 0 0 64k"]);
    assert!(after.contains("read 65536/65536"), "not reverted: {after}");

    let (code, _, err) = env.run(&["snapshot", "apply", "vm", "--tag", "nope"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("instance `vm`") && err.contains("nope"),
        "{err}"
    );
    env.ok(&["snapshot", "delete", "vm", "--tag", "one"]);
    env.ok(&["snapshot", "del", "vm", "--tag", "two"]);
    assert_eq!(env.ok(&["snapshot", "list", "-q", "vm"]), "");
    let (code, _, err) = env.run(&["snapshot", "list", "absent"]);
    assert_eq!(code, 1);
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn clone_rename_and_factory_reset_file_effects() {
    let env = Env::new();
    env.create_tiny("src");
    let src = env.instance_dir("src");
    // What a run and a source leave behind, which a clone must not take.
    for f in [
        "ha.pid",
        "ha.sock",
        "cidata.iso",
        "serial.log",
        "started.json",
    ] {
        std::fs::write(src.join(f), "x").unwrap();
    }
    std::fs::write(src.join("owner"), "/some/dir\n").unwrap();
    env.ok(&["protect", "src"]);
    let before = std::fs::read(src.join("diffdisk")).unwrap();

    env.ok(&[
        "clone",
        "src",
        "dst",
        "--cpus",
        "2",
        "--set",
        ".memory = \"2GiB\"",
    ]);
    let dst = env.instance_dir("dst");
    for f in ["lima.yaml", "lima-version", "basedisk", "diffdisk"] {
        assert!(dst.join(f).exists(), "{f} not cloned");
    }
    for f in [
        "ha.pid",
        "ha.sock",
        "cidata.iso",
        "serial.log",
        "started.json",
        "owner",
        "protected",
    ] {
        assert!(!dst.join(f).exists(), "{f} was cloned");
    }
    assert_eq!(std::fs::read(dst.join("diffdisk")).unwrap(), before);
    // Sparse: the clone allocates no more than the original.
    let (a, b) = (
        std::fs::metadata(src.join("basedisk")).unwrap(),
        std::fs::metadata(dst.join("basedisk")).unwrap(),
    );
    assert!(
        b.blocks() <= a.blocks() + 8,
        "{} > {}",
        b.blocks(),
        a.blocks()
    );
    let mode = std::fs::metadata(&dst).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "the clone's directory is private");
    let j = env.list_json("dst");
    assert_eq!(j["cpus"], 2, "{j}");
    assert_eq!(j["memory"], 2u64 << 30, "{j}");
    assert_eq!(env.list_json("src")["cpus"], 1, "the original is unchanged");
    assert!(src.join("protected").exists() && src.join("owner").exists());

    // Refusals: an existing target, the same name, an edit that does not validate.
    let (code, _, err) = env.run(&["clone", "src", "dst"]);
    assert_eq!(code, 1);
    assert!(err.contains("already exists"), "{err}");
    let (code, _, err) = env.run(&["clone", "src", "src"]);
    assert_eq!(code, 1, "{err}");
    let (code, _, err) = env.run(&["clone", "src", "bad", "--set", ".cpus = \"many\""]);
    assert_eq!(code, 1, "{err}");
    assert!(!env.instance_dir("bad").exists(), "a failed clone was left");

    // rename: moved, owner dropped (no longer what that source declares).
    std::fs::write(dst.join("owner"), "/some/dir\n").unwrap();
    let (code, _, err) = env.run(&["rename", "dst", "moved", "--cpus", "3"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("was managed by /some/dir"), "{err}");
    assert!(!dst.exists());
    let moved = env.instance_dir("moved");
    assert!(!moved.join("owner").exists());
    assert_eq!(std::fs::read(moved.join("diffdisk")).unwrap(), before);
    assert_eq!(env.list_json("moved")["cpus"], 3);

    // factory-reset: configuration kept, disk state gone; protected refused.
    let (code, _, err) = env.run(&["factory-reset", "src"]);
    assert_eq!(code, 1);
    assert!(err.contains("protected"), "{err}");
    std::fs::write(moved.join("cloud-config.yaml"), "#cloud-config\n").unwrap();
    std::fs::write(moved.join("owner"), "/other\n").unwrap();
    let yaml = std::fs::read(moved.join("lima.yaml")).unwrap();
    env.ok(&["factory-reset", "moved"]);
    let mut left: Vec<String> = std::fs::read_dir(&moved)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "instance.lock")
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["cloud-config.yaml", "lima-version", "lima.yaml", "owner"]
    );
    assert_eq!(std::fs::read(moved.join("lima.yaml")).unwrap(), yaml);
    assert_eq!(env.status("moved"), "Stopped");
    let (code, _, err) = env.run(&["factory-reset", "absent"]);
    assert_eq!(code, 0);
    assert!(err.contains("Instance `absent` not found"), "{err}");
}

#[test]
fn autostart_installs_a_systemd_user_unit_that_verifies() {
    let env = Env::new();
    env.create_tiny("vm");
    let home = env.dir.path().join("home");
    let unit = home.join(".config/systemd/user/lima-vm@vm.service");
    env.ok(&["autostart", "enable", "vm"]);
    let text = std::fs::read_to_string(&unit).unwrap();
    let bin = assert_cmd::cargo::cargo_bin("limactl");
    assert!(
        text.contains(&format!(
            "ExecStart=\"{}\" start %i --foreground\n",
            bin.display()
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "Environment=\"LIMA_HOME={}\"\n",
            env.lima_home().display()
        )),
        "{text}"
    );
    assert!(text.contains("WantedBy=default.target"), "{text}");
    // Enabled: the symlink `systemctl --user enable` makes.
    let wants = home.join(".config/systemd/user/default.target.wants/lima-vm@vm.service");
    assert_eq!(std::fs::read_link(&wants).unwrap(), unit);
    // systemd itself accepts the unit (ExecStart executable, no unknown keys;
    // the lima(1) man page it documents is not installed here).
    let runtime = env.dir.path().join("run");
    std::fs::create_dir(&runtime).unwrap();
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .args(["--user", "verify", "--man=no"])
        .arg(&unit)
        .env("HOME", &home)
        .env("XDG_RUNTIME_DIR", &runtime)
        .output()
        .expect("systemd-analyze (package systemd) is installed");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.trim().is_empty(), "{said}");

    let (code, _, err) = env.run(&["autostart", "enable", "absent"]);
    assert_eq!(code, 1);
    assert!(err.contains("does not exist"), "{err}");
    let err = env.run(&["autostart", "disable", "vm"]).2;
    assert!(err.contains("will no longer start automatically"), "{err}");
    assert!(!unit.exists() && wants.symlink_metadata().is_err());
    let err = env.run(&["autostart", "disable", "vm"]).2;
    assert!(err.contains("is not registered"), "{err}");
}

#[test]
fn disk_import_copies_qcow2_and_raw_images_and_refuses_others() {
    let env = Env::new();
    let d = env.dir.path();
    let qcow = common::tiny_image(d);
    env.ok(&["disk", "import", "q", qcow.to_str().unwrap()]);
    let raw = d.join("disk.raw");
    std::fs::File::create(&raw)
        .unwrap()
        .set_len(32 << 20)
        .unwrap();
    env.ok(&["disk", "import", "r", raw.to_str().unwrap()]);
    let list = env.ok(&["disk", "list", "--json"]);
    let rows: Vec<serde_json::Value> = list
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows[0]["name"], "q");
    assert_eq!(rows[0]["format"], "qcow2");
    assert_eq!(rows[0]["size"], 64u64 << 20);
    assert_eq!(rows[1]["name"], "r");
    assert_eq!(rows[1]["format"], "raw");
    assert_eq!(rows[1]["size"], 32u64 << 20);
    let data = env.lima_home().join("_disk/r/datadisk");
    let m = std::fs::metadata(&data).unwrap();
    assert_eq!(m.permissions().mode() & 0o777, 0o600);
    assert!(m.blocks() * 512 < 1 << 20, "the raw copy is not sparse");
    assert!(raw.exists(), "the imported file is left in place");

    let (code, _, err) = env.run(&["disk", "import", "q", raw.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("already exists"), "{err}");
    // An overlay is not self-contained: refused, nothing left behind.
    let over = d.join("over.qcow2");
    let ok = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(&qcow)
        .arg(&over)
        .status()
        .unwrap();
    assert!(ok.success());
    let (code, _, err) = env.run(&["disk", "import", "o", over.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("backing file"), "{err}");
    assert!(!env.lima_home().join("_disk/o").exists());
    let (code, _, err) = env.run(&["disk", "import", "m", "/nonexistent/x.img"]);
    assert_eq!(code, 1);
    assert!(err.contains("/nonexistent/x.img"), "{err}");
}

#[test]
fn a_forced_stop_leaves_no_vnc_password_behind() {
    // What a host agent killed with its QEMU leaves: it never removed them.
    let env = Env::new();
    env.create_tiny("vnc");
    let dir = env.instance_dir("vnc");
    for f in ["vncdisplay", "vncpassword"] {
        std::fs::write(dir.join(f), "stale").unwrap();
    }
    env.ok(&["stop", "--force", "vnc"]);
    for f in ["vncdisplay", "vncpassword"] {
        assert!(!dir.join(f).exists(), "{f} survived a forced stop");
    }
    assert!(dir.join("diffdisk").exists(), "only run-time files go");
}
