//! End to end (real QEMU, real guest): online snapshots, the VNC display
//! with a real VNC client, offline snapshots of the stopped instance, then
//! a clone booted beside its untouched original. Three boots: the
//! original's, the clone's, and the original's again beside the clone (the
//! last two see what the offline apply left on the disk).

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::{Env, guest_lock, require_qemu, skipped, test_template};

const MARKER: &str = "/var/tmp/lima-e2e-marker";

/// `limactl shell NAME CMD…`, retried while SSH reconnects (after `loadvm`
/// the guest's TCP state is the snapshot's, and the old SSH master dies).
fn shell_retry(env: &Env, name: &str, cmd: &[&str]) -> String {
    let start = Instant::now();
    loop {
        let mut args = vec!["shell", name];
        args.extend_from_slice(cmd);
        // Bounded: a session over a dead connection must not hang the test.
        let (code, out, err) = env.run_with(&args, |c| {
            c.timeout(Duration::from_secs(60));
        });
        if code == 0 {
            return out;
        }
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "shell {cmd:?} kept failing: {err}"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
}

fn sha256(path: &std::path::Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// `vncdo` (vncdotool, hack/install-deps.sh) authenticating with
/// `password` and capturing the screen into `png`.
fn vnc_capture(display: &str, password: &str, png: &std::path::Path) -> (bool, String) {
    let out = std::process::Command::new("vncdo")
        .args(["-t", "120", "-s", display, "-p", password, "capture"])
        .arg(png)
        .output()
        .expect("vncdo is installed (hack/install-deps.sh installs vncdotool)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn online_snapshot_vnc_and_a_clone_that_boots_beside_its_original() {
    if skipped("snapshot") {
        return;
    }
    require_qemu();
    let template = test_template(false);
    let env = Env::new();
    let _guest = guest_lock();
    let (name, copy) = ("snap", "snapc");
    let dir = env.instance_dir(name);
    env.ok(&[
        "create",
        "--name",
        name,
        "--set",
        ".video.display = \"vnc\" | .memory = \"1GiB\"",
        template.to_str().unwrap(),
    ]);
    let (code, _, err) = env.run(&["start", name]);
    assert_eq!(code, 0, "{err}");
    let port = env.list_json(name)["sshLocalPort"].as_u64().unwrap();

    // VNC: both files 0600, a password nobody else knows, a real client in.
    let ha_log = std::fs::read_to_string(dir.join("ha.stderr.log")).unwrap();
    assert!(
        ha_log.contains("VNC server running at 127.0.0.1:")
            || err.contains("VNC server running at 127.0.0.1:"),
        "{ha_log}"
    );
    let display = std::fs::read_to_string(dir.join("vncdisplay")).unwrap();
    let password = std::fs::read_to_string(dir.join("vncpassword")).unwrap();
    for f in ["vncdisplay", "vncpassword"] {
        let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    assert_eq!(password.len(), 8);
    assert!(password.bytes().all(|b| b.is_ascii_alphanumeric()));
    assert!(display.starts_with("127.0.0.1:"), "{display}");
    let png = env.dir.path().join("screen.png");
    let (ok, said) = vnc_capture(&display, &password, &png);
    assert!(ok, "vncdo with the password failed: {said}");
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let wrong = env.dir.path().join("wrong.png");
    let (ok, said) = vnc_capture(&display, "wrong-pw", &wrong);
    assert!(!ok && !wrong.exists(), "a wrong password got in: {said}");

    // Online snapshot: taken, the guest changed, applied: the change is gone.
    // Synced first: the offline apply below restores only t1's disk, not
    // the guest's page cache.
    env.ok(&[
        "shell",
        name,
        "sh",
        "-c",
        &format!("echo before > {MARKER} && sync"),
    ]);
    let mac = env.ok(&["shell", name, "cat", "/sys/class/net/eth0/address"]);
    env.ok(&["snapshot", "create", name, "--tag", "t1"]);
    let list = env.ok(&["snapshot", "list", name]);
    assert!(list.lines().next().unwrap().contains("TAG"), "{list}");
    assert_eq!(env.ok(&["snapshot", "list", "--quiet", name]), "t1\n");
    env.ok(&["shell", name, "sh", "-c", &format!("echo after > {MARKER}")]);
    env.ok(&["snapshot", "apply", name, "--tag", "t1"]);
    assert_eq!(shell_retry(&env, name, &["cat", MARKER]).trim(), "before");
    // A change after the snapshot, on disk before the (forced) stop: the
    // offline apply below must undo it.
    shell_retry(
        &env,
        name,
        &["sh", "-c", &format!("echo changed > {MARKER} && sync")],
    );
    let (code, _, err) = env.run(&["snapshot", "apply", name, "--tag", "missing"]);
    assert_eq!(code, 1);
    assert!(err.contains("missing"), "{err}");
    // Deleted while running (`delvm`); t1 stays for the offline apply.
    env.ok(&["snapshot", "create", name, "--tag", "t2"]);
    assert_eq!(env.ok(&["snapshot", "list", "--quiet", name]), "t1\nt2\n");
    env.ok(&["snapshot", "delete", name, "--tag", "t2"]);
    assert_eq!(env.ok(&["snapshot", "list", "--quiet", name]), "t1\n");

    // A running instance cannot be cloned.
    let (code, _, err) = env.run(&["clone", name, copy]);
    assert_eq!(code, 1);
    assert!(err.contains("stop it first"), "{err}");
    // Forced: after `loadvm` with a VNC display the guest ignores the ACPI
    // power button (README, known defect), so a graceful stop would wait its
    // full 180 s before QMP `quit`. The data was synced above; the VNC files
    // must go even though the host agent is killed.
    env.ok(&["stop", "--force", name]);
    for f in ["vncdisplay", "vncpassword"] {
        assert!(!dir.join(f).exists(), "{f} left behind after stop");
    }

    // Offline (qemu-img on the stopped instance's diffdisk): t1's disk
    // state applied, proved by the two boots that follow; one created.
    env.ok(&["snapshot", "apply", name, "--tag", "t1"]);
    env.ok(&["snapshot", "create", name, "--tag", "off"]);
    assert_eq!(env.ok(&["snapshot", "list", "--quiet", name]), "t1\noff\n");
    env.ok(&["snapshot", "delete", name, "--tag", "t1"]);
    env.ok(&["snapshot", "delete", name, "--tag", "off"]);
    assert_eq!(env.ok(&["snapshot", "list", "--quiet", name]), "");

    // The clone boots with its own identity; the original is untouched.
    let original = sha256(&dir.join("diffdisk"));
    let (code, _, err) = env.run(&[
        "clone",
        name,
        copy,
        "--set",
        ".video.display = \"none\"",
        "--start",
    ]);
    assert_eq!(code, 0, "clone --start: {err}");
    assert_eq!(env.status(copy), "Running", "clone --start started it");
    let host = env.ok(&["shell", copy, "hostname"]);
    assert_eq!(host.trim(), "lima-snapc");
    assert_eq!(
        env.ok(&["shell", copy, "cat", MARKER]).trim(),
        "before",
        "the clone has the original's data, as the offline apply left it"
    );
    let copy_mac = env.ok(&["shell", copy, "cat", "/sys/class/net/eth0/address"]);
    assert_ne!(copy_mac.trim(), mac.trim(), "the clone has its own MAC");
    let copy_port = env.list_json(copy)["sshLocalPort"].as_u64().unwrap();
    assert!(copy_port > 0 && copy_port != port, "{copy_port} vs {port}");
    env.ok(&["shell", copy, "sh", "-c", &format!("echo clone > {MARKER}")]);
    assert_eq!(sha256(&dir.join("diffdisk")), original);
    assert_eq!(env.status(name), "Stopped");

    // Both running: `copy` from one instance to the other (scp -3 through the host).
    let (code, _, err) = env.run(&["start", name]);
    assert_eq!(code, 0, "{err}");
    env.ok(&[
        "copy",
        &format!("{name}:{MARKER}"),
        &format!("{copy}:/tmp/from-original"),
    ]);
    assert_eq!(
        env.ok(&["shell", copy, "cat", "/tmp/from-original"]).trim(),
        "before",
        "the original's file after the offline apply, copied into the clone"
    );
    assert_eq!(
        env.ok(&["shell", name, "cat", MARKER]).trim(),
        "before",
        "the clone's writes stay in the clone"
    );
    env.ok(&["stop", copy]);
    env.ok(&["stop", name]);
}
