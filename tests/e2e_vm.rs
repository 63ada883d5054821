//! End to end with a real VM: QEMU (TCG here) boots the Debian test image
//! built by hack/build-test-image.sh, with real cloud-init and OpenSSH.
//! Few boots, several checks per boot. Fails (never skips) when QEMU or the
//! image is missing; LIMA_SKIP_E2E=1 is a local opt-out CI never sets.

mod common;

use std::time::{Duration, Instant};

use common::{Env, guest_lock, require_qemu, skipped, test_template};

#[test]
fn lifecycle_create_start_shell_stop_restart_kill_delete() {
    if skipped("lifecycle") {
        return;
    }
    require_qemu();
    let template = test_template(false);
    let env = Env::new();
    let _guest = guest_lock();
    let name = "e2e";
    let dir = env.instance_dir(name);

    env.ok(&["create", "--name", name, template.to_str().unwrap()]);
    assert_eq!(env.status(name), "Stopped");
    for f in [
        "lima.yaml",
        "lima-version",
        "basedisk",
        "diffdisk",
        "kernel",
        "kernel.cmdline",
        "initrd",
    ] {
        assert!(dir.join(f).exists(), "{f} missing after create");
    }
    // create again: refused, nothing changed.
    let (code, _, err) = env.run(&["create", "--name", name, template.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("instance `e2e` already exists"), "{err}");

    let t = Instant::now();
    env.ok(&["start", name]);
    eprintln!("first boot ready after {:.1}s", t.elapsed().as_secs_f64());
    let j = env.list_json(name);
    assert_eq!(j["status"], "Running");
    let port = j["sshLocalPort"].as_u64().unwrap();
    assert!(port > 0, "{j}");
    assert!(
        j["hostAgentPID"].as_u64().is_some() && j["driverPID"].as_u64().is_some(),
        "{j}"
    );

    let uname = env.ok(&["shell", name, "uname", "-a"]);
    assert!(uname.starts_with("Linux lima-e2e "), "{uname}");
    let os = env.ok(&["shell", name, "cat", "/etc/os-release"]);
    assert!(os.contains("ID=debian"), "{os}");
    assert!(os.contains("VERSION_ID=\"12\""), "{os}");
    let (code, _, _) = env.run(&["shell", name, "sh", "-c", "exit 7"]);
    assert_eq!(code, 7, "the guest command's exit code is propagated");
    env.ok(&[
        "shell",
        name,
        "sh",
        "-c",
        "echo first-boot >\"$HOME/marker\" && sync",
    ]);
    // Starting a running instance is a no-op.
    let (code, _, err) = env.run(&["start", name]);
    assert_eq!(code, 0);
    assert!(err.contains("is already running"), "{err}");

    // Files are private (never readable by others).
    use std::os::unix::fs::PermissionsExt;
    for f in [
        "ssh.config",
        "ha.sock",
        "qmp.sock",
        "serial.log",
        "cidata.iso",
        "basedisk",
        "diffdisk",
    ] {
        let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode();
        assert_eq!(mode & 0o007, 0, "{f} is accessible to others: {mode:o}");
    }
    let key = env.lima_home().join("_config/user");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o077,
        0
    );

    let t = Instant::now();
    env.ok(&["stop", name]);
    let stop_secs = t.elapsed().as_secs_f64();
    eprintln!("stopped after {stop_secs:.1}s");
    assert!(stop_secs < 60.0, "graceful stop took {stop_secs:.1}s");
    assert_eq!(env.status(name), "Stopped");
    for f in ["ha.pid", "ha.sock", "qmp.sock", "qemu.pid"] {
        assert!(!dir.join(f).exists(), "{f} left behind after stop");
    }
    // Stopping a stopped instance is a no-op.
    let (code, _, err) = env.run(&["stop", name]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("is not running"), "{err}");

    // A stale ha.pid (this test's own, live pid) and ha.sock from a killed run
    // must not block the next start, and nothing gets signalled.
    std::fs::write(dir.join("ha.pid"), format!("{}\n", std::process::id())).unwrap();
    std::fs::write(dir.join("ha.sock"), "").unwrap();
    let t = Instant::now();
    env.ok(&["start", name]);
    eprintln!("second boot ready after {:.1}s", t.elapsed().as_secs_f64());
    let marker = env.ok(&["shell", name, "cat", "marker"]);
    assert_eq!(
        marker.trim(),
        "first-boot",
        "the file written in the first boot survives"
    );

    // SIGKILL the host agent: no longer Running; `stop -f` cleans up.
    let pid = env.list_json(name)["hostAgentPID"].as_i64().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    env.wait_for("status to leave Running", Duration::from_secs(10), || {
        env.status(name) != "Running"
    });
    let j = env.list_json(name);
    assert_eq!(j["status"], "Broken", "{j}");
    assert!(
        j["errors"]
            .to_string()
            .contains("qemu driver is running but host agent is not"),
        "{j}"
    );
    env.ok(&["stop", "-f", name]);
    assert_eq!(env.status(name), "Stopped");

    env.ok(&["delete", name]);
    assert!(!dir.exists(), "delete left the instance directory behind");
    let (code, _, err) = env.run(&["delete", name]);
    assert_eq!(code, 0);
    assert!(
        err.contains("Ignoring non-existent instance `e2e`"),
        "{err}"
    );
}
