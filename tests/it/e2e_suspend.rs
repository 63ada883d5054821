//! Suspend and resume end to end, on one cold boot (plus the one a
//! configuration change while suspended must cause): state held in guest
//! memory survives, the mount, a forwarded port and the clock work after a
//! resume, and `kill -9` during a suspend (of the CLI, of QEMU) leaves a
//! resumable or a cleanly stopped instance, never a broken one.

use crate::common;

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use common::{Env, guest_lock, require_qemu, skipped, test_template};

const SAVED: [&str; 3] = ["vmstate", "vmstate.json", "vmstate.partial.tmp"];

fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET `path` from 127.0.0.1:`port` (the forwarded guest web server). The
/// forward accepts before the guest listens, so a reset is "not yet".
fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// What must hold after every resume: the guest's memory is as it was.
fn check_state(env: &Env, name: &str, pid: &str) {
    assert_eq!(
        env.ok(&["shell", name, "cat", "/dev/shm/state"]).trim(),
        "42"
    );
    // The process that was running is still running.
    env.ok(&["shell", name, "kill", "-0", pid]);
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn no_saved_state(dir: &Path) {
    for f in SAVED {
        assert!(!dir.join(f).exists(), "{f} left in {}", dir.display());
    }
}

/// Starts `limactl suspend`, and SIGKILLs `victim` (its pid, or the CLI's
/// when `None`) once QEMU is writing the state.
fn suspend_and_kill(env: &Env, name: &str, victim: Option<i32>) {
    let dir = env.instance_dir(name);
    let mut cli = std::process::Command::new(assert_cmd::cargo::cargo_bin("limactl"))
        .env("LIMA_HOME", env.lima_home())
        .env("HOME", env.dir.path().join("home"))
        .args(["suspend", name])
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !dir.join("vmstate.partial.tmp").exists()
        && !dir.join("vmstate.json").exists()
        && start.elapsed() < Duration::from_secs(120)
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    let pid = victim.unwrap_or(cli.id() as i32);
    eprintln!(
        "SIGKILL to {pid} after {:.2}s",
        start.elapsed().as_secs_f64()
    );
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = cli.wait();
    env.wait_for("the host agent to finish", Duration::from_secs(300), || {
        env.status(name) != "Running"
    });
}

#[test]
fn suspend_resume_keeps_memory_mounts_forwards_and_clock() {
    if skipped("suspend") {
        return;
    }
    require_qemu();
    let template = test_template(false);
    let env = Env::new();
    let _guest = guest_lock();
    let name = "sus";
    let dir = env.instance_dir(name);
    let share = env.dir.path().join("share");
    std::fs::create_dir(&share).unwrap();
    let port = free_port();
    let set = format!(
        r#".mountType = "reverse-sshfs" | .mounts = [{{"location": "{}", "writable": true}}] | .portForwards = [{{"guestPort": 8765, "hostPort": {port}, "static": true}}]"#,
        share.display()
    );
    env.ok(&[
        "create",
        "--name",
        name,
        "--set",
        &set,
        template.to_str().unwrap(),
    ]);
    let t = Instant::now();
    env.ok(&["start", name]);
    let cold = t.elapsed();
    eprintln!("cold boot ready after {:.1}s", cold.as_secs_f64());

    // State that lives only in guest memory: a tmpfs file, and a web
    // server process serving it through the forwarded port.
    env.ok(&["shell", name, "sh", "-c", "echo 42 > /dev/shm/state"]);
    let pid = env.ok(&[
        "shell",
        name,
        "sh",
        "-c",
        "cd /dev/shm && setsid python3 -m http.server 8765 >/dev/null 2>&1 < /dev/null & echo $!",
    ]);
    let pid = pid.trim().to_string();
    env.wait_for("the guest web server", Duration::from_secs(60), || {
        http_get(port, "/state").is_ok_and(|r| r.ends_with("42\n"))
    });

    // Suspend: the state is saved, nothing runs, list says so (JSON too).
    let (code, _, err) = env.run(&["suspend", name]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("is suspended"), "{err}");
    let j = env.list_json(name);
    assert_eq!(j["status"], "Suspended", "{j}");
    assert!(
        j.get("driverPID").is_none() && j.get("hostAgentPID").is_none(),
        "{j}"
    );
    let table = env.ok(&["list", name]);
    assert!(table.contains("Suspended"), "{table}");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("vmstate.json")).unwrap()).unwrap();
    assert_eq!(meta["ready"], true, "saved while ready: {meta}");
    use std::os::unix::fs::PermissionsExt;
    for f in ["vmstate", "vmstate.json"] {
        let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{f} is readable by others: {mode:o}");
    }
    // Suspending again changes nothing.
    let (code, _, err) = env.run(&["suspend", name]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("suspended already"), "{err}");
    // Written on the host while the guest is suspended: the mount is back.
    std::fs::write(share.join("from-host"), "while suspended\n").unwrap();
    // Let the clock drift: the guest's stands still while it is suspended.
    std::thread::sleep(Duration::from_secs(5));

    let t = Instant::now();
    let (code, _, err) = env.run(&["start", name]);
    assert_eq!(code, 0, "{err}");
    let resume = t.elapsed();
    eprintln!(
        "resume ready after {:.1}s (cold boot {:.1}s)",
        resume.as_secs_f64(),
        cold.as_secs_f64()
    );
    assert!(
        err.contains("Resuming the instance `sus` from its saved state"),
        "{err}"
    );
    assert!(
        err.contains("resume from the saved state"),
        "the plan shows the resume step and its reason: {err}"
    );
    assert!(err.contains("Resumed from the saved state"), "{err}");
    assert!(err.contains("READY"), "{err}");
    // The clock was set by the guest agent while SSH logged in; what the
    // guest keeps in its state (sshfs installed, fuse allowing others, the
    // boot scripts done) held when it was saved and is not checked again.
    assert!(err.contains("through the guest agent"), "{err}");
    for kept in [
        "fuse to allow_other as user",
        "boot scripts must have finished",
    ] {
        let waited = err
            .lines()
            .position(|l| l.contains("Waiting for") && l.contains(kept))
            .unwrap_or_else(|| panic!("{kept}: {err}"));
        // The next requirement line (another thread may log in between).
        assert!(
            err.lines()
                .skip(waited + 1)
                .find(|l| l.contains(" requirement "))
                .is_some_and(|l| l.contains("(it was when the instance was suspended)")),
            "{kept}: {err}"
        );
    }
    assert_eq!(env.status(name), "Running");
    no_saved_state(&dir);
    check_state(&env, name, &pid);
    assert_eq!(
        env.ok(&[
            "shell",
            name,
            "cat",
            share.join("from-host").to_str().unwrap()
        ]),
        "while suspended\n"
    );
    env.ok(&[
        "shell",
        name,
        "sh",
        "-c",
        &format!("echo from-guest > {}/from-guest", share.display()),
    ]);
    assert_eq!(
        std::fs::read_to_string(share.join("from-guest")).unwrap(),
        "from-guest\n"
    );
    // The same server process answers through the re-established forward.
    env.wait_for("the forward after resume", Duration::from_secs(60), || {
        http_get(port, "/state").is_ok_and(|r| r.ends_with("42\n"))
    });
    let before = now_secs();
    let guest: f64 = env
        .ok(&["shell", name, "date", "+%s.%N"])
        .trim()
        .parse()
        .unwrap();
    let after = now_secs();
    assert!(
        guest > before - 2.0 && guest < after + 2.0,
        "guest clock {guest} vs host {before}..{after}"
    );

    // kill -9 of the suspending CLI: the host agent carries on, and what
    // is left resumes (or, had it not got that far, is stopped cleanly).
    suspend_and_kill(&env, name, None);
    match env.status(name).as_str() {
        "Suspended" => {
            env.ok(&["start", name]);
            check_state(&env, name, &pid);
        }
        "Stopped" => panic!("the host agent finishes a suspend whoever asked for it"),
        other => panic!("status {other} after kill -9 of limactl suspend"),
    }

    // A configuration change while suspended: the plan discards the state
    // and says why, and the instance boots afresh with the new configuration.
    env.ok(&["suspend", name]);
    let (code, _, err) = env.run(&["start", name, "--cpus", "1"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("discard-state")
            && err.contains("the saved state does not match the configuration (cpus 2 → 1)"),
        "{err}"
    );
    assert!(err.contains("Discarding the saved state"), "{err}");
    assert_eq!(env.ok(&["shell", name, "nproc"]).trim(), "1");
    let (code, _, _) = env.run(&["shell", name, "test", "-e", "/dev/shm/state"]);
    assert_eq!(code, 1, "a cold boot has a fresh tmpfs");
    no_saved_state(&dir);

    // kill -9 of QEMU while it writes the state: never a broken instance.
    let qemu = env.list_json(name)["driverPID"].as_i64().unwrap() as i32;
    suspend_and_kill(&env, name, Some(qemu));
    match env.status(name).as_str() {
        "Stopped" => {
            no_saved_state(&dir);
            // As after a power cut: the disk is consistent (leaked clusters,
            // exit 3, are not damage). A boot to prove it would cost a minute.
            let out = std::process::Command::new("qemu-img")
                .args(["check", "-q"])
                .arg(dir.join("diffdisk"))
                .output()
                .unwrap();
            let code = out.status.code();
            assert!(
                matches!(code, Some(0 | 3)),
                "diffdisk damaged ({code:?}): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // It finished writing before the signal landed: it resumes.
        "Suspended" => {
            env.ok(&["start", name]);
            assert_eq!(env.status(name), "Running");
        }
        other => panic!("status {other} after kill -9 of QEMU during a suspend"),
    }
    env.ok(&["delete", "-f", name]);
    assert!(!dir.exists());
}
