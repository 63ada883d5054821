//! The watch daemon with a real VM: a file becomes a running VM, an edit
//! restarts it with the new size, garbage changes nothing, a killed VM is
//! relaunched (runStrategy Always), killing the daemon never stops the VM
//! and a new daemon adopts it, `Manual` leaves a user's stop and start
//! alone, `RerunOnFailure` respects a guest poweroff, a deleted file deletes
//! it (prune).

use crate::common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{
    Env, guest_lock, http_get, logged_metrics_addr, require_qemu, skipped, test_template,
};

use common::DaemonGuard;

fn start_daemon(env: &Env, src: &Path) -> DaemonGuard {
    let log = env.dir.path().join("daemon.log");
    DaemonGuard(start_daemon_child(env, src, &log), log)
}

fn start_daemon_child(env: &Env, src: &Path, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    std::process::Command::new(assert_cmd::cargo::cargo_bin("limactl"))
        .env("LIMA_HOME", env.lima_home())
        .env("HOME", env.dir.path().join("home"))
        .args(["apply", "--watch", "--prune", "--resync", "2s"])
        .args(["--metrics-addr", "127.0.0.1:0", "-f"])
        .arg(src)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// The address the `nth` daemon (from 1) of this test serves metrics on:
/// they all log to the same file.
fn metrics_addr(env: &Env, daemon: &DaemonGuard, nth: usize) -> std::net::SocketAddr {
    let mut addr = None;
    env.wait_for(
        "the daemon to serve metrics",
        Duration::from_secs(30),
        || {
            addr =
                logged_metrics_addr(&std::fs::read_to_string(&daemon.1).unwrap_or_default(), nth);
            addr.is_some()
        },
    );
    addr.unwrap()
}

/// The reconciles of `vm` this daemon finished, whatever their result.
fn reconciles(addr: std::net::SocketAddr) -> u64 {
    let prefix = r#"lima_reconcile_total{instance="vm","#;
    http_get(addr, "/metrics")
        .1
        .lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Waits until the daemon has looked at `vm` as it is now: two more
/// reconciles, so that at least one began after this call (a
/// worker never runs two on one instance at a time). What the daemon would
/// do about the present state, it has done by then: a recorded fact instead
/// of a sleep.
fn settled(env: &Env, addr: std::net::SocketAddr) {
    let before = reconciles(addr);
    env.wait_for(
        "the daemon to reconcile the instance twice",
        Duration::from_secs(60),
        || reconciles(addr) >= before + 2,
    );
}

fn json(env: &Env) -> Option<serde_json::Value> {
    let out = env.cmd().args(["list", "--json", "vm"]).output().ok()?;
    serde_json::from_str(String::from_utf8(out.stdout).ok()?.lines().next()?).ok()
}

fn qemu_pid(env: &Env) -> Option<i64> {
    json(env).filter(|j| j["status"] == "Running")?["driverPID"].as_i64()
}

/// Running and Ready (the guest finished booting).
fn ready(env: &Env) -> bool {
    qemu_pid(env).is_some()
        && env
            .cmd()
            .args(["status", "--json", "vm"])
            .output()
            .is_ok_and(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .contains("\"type\":\"Ready\",\"status\":\"True\"")
            })
}

fn mem_total_kib(env: &Env) -> u64 {
    let out = env.ok(&["shell", "vm", "grep", "MemTotal", "/proc/meminfo"]);
    out.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn daemon_converges_relaunches_and_survives_its_own_death() {
    if skipped("daemon e2e") {
        return;
    }
    require_qemu();
    let template = test_template(false);
    let env = Env::new();
    let src = env.dir.path().join("gitops");
    std::fs::create_dir_all(&src).unwrap();
    let file = src.join("vm.yaml");
    let write_with = |strategy: &str, memory: &str| {
        std::fs::write(
            &file,
            format!(
                "base: {}\nrunStrategy: {strategy}\nmemory: {memory}\n",
                template.display()
            ),
        )
        .unwrap();
    };
    let write = |memory: &str| write_with("Always", memory);
    let _guest = guest_lock();
    let mut daemon = start_daemon(&env, &src);
    let metrics = metrics_addr(&env, &daemon, 1);

    write("2GiB");
    env.wait_for("the VM to be ready", Duration::from_secs(300), || {
        ready(&env)
    });
    let before = mem_total_kib(&env);
    assert!(before > 1_800_000, "{before}");

    // Memory edited: restarted with the new size.
    let pid1 = qemu_pid(&env).unwrap();
    write("1GiB");
    env.wait_for("the restart with 1GiB", Duration::from_secs(300), || {
        qemu_pid(&env).is_some_and(|p| p != pid1)
            && json(&env).is_some_and(|j| j["memory"] == 1u64 << 30)
            && ready(&env)
    });
    let after = mem_total_kib(&env);
    assert!(
        after < 1_100_000,
        "the guest sees the new memory size: {after} KiB"
    );

    // Garbage: an error on the status; the VM is untouched.
    let pid2 = qemu_pid(&env).unwrap();
    std::fs::write(&file, "memory: [[ broken\n").unwrap();
    env.wait_for("the error on the status", Duration::from_secs(30), || {
        env.ok(&["status", "--json", "vm"]).contains("not applied")
    });
    settled(&env, metrics);
    assert_eq!(qemu_pid(&env), Some(pid2), "a broken file touched the VM");
    write("1GiB");
    settled(&env, metrics);
    assert_eq!(
        qemu_pid(&env),
        Some(pid2),
        "restoring the same content needs no action"
    );

    // QEMU killed: relaunched under Always.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid2 as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let killed = Instant::now();
    env.wait_for("a new QEMU", Duration::from_secs(30), || {
        json(&env)
            .and_then(|j| j["driverPID"].as_i64())
            .is_some_and(|p| p != pid2)
    });
    eprintln!(
        "relaunch began {:.1}s after the kill",
        killed.elapsed().as_secs_f64()
    );
    env.wait_for(
        "the relaunched VM to be ready",
        Duration::from_secs(300),
        || ready(&env),
    );
    let pid3 = qemu_pid(&env).unwrap();
    // The relaunch is a recorded fact; the backoff's failure count is not
    // one to assert on: a healthy run resets it after 60 s.
    let st = env.ok(&["status", "--json", "vm"]);
    let st: serde_json::Value = serde_json::from_str(st.lines().next().unwrap_or("")).unwrap();
    assert_eq!(
        st["restarts"], 1,
        "the crash and its relaunch are counted: {st}"
    );

    // The daemon killed: the VM keeps running; a new daemon adopts it.
    daemon.0.kill().unwrap();
    daemon.0.wait().unwrap();
    assert_eq!(qemu_pid(&env), Some(pid3));
    let daemon = start_daemon(&env, &src);
    let metrics = metrics_addr(&env, &daemon, 2);
    settled(&env, metrics);
    assert_eq!(
        qemu_pid(&env),
        Some(pid3),
        "the new daemon adopted the VM without a restart"
    );
    assert_eq!(env.ok(&["shell", "vm", "echo", "alive"]).trim(), "alive");

    // Manual: the daemon changes no power state, neither fighting a user's
    // `limactl stop` nor their `limactl start`.
    write_with("Manual", "1GiB");
    settled(&env, metrics);
    assert_eq!(qemu_pid(&env), Some(pid3), "Manual needs no action");
    env.ok(&["stop", "vm"]);
    settled(&env, metrics);
    assert_eq!(
        qemu_pid(&env),
        None,
        "the daemon restarted a Manual instance a user stopped"
    );
    env.ok(&["start", "vm"]);
    let pid4 = qemu_pid(&env).unwrap();
    settled(&env, metrics);
    assert_eq!(qemu_pid(&env), Some(pid4));

    // RerunOnFailure: a clean poweroff from inside the guest is respected.
    write_with("RerunOnFailure", "1GiB");
    settled(&env, metrics);
    assert_eq!(
        qemu_pid(&env),
        Some(pid4),
        "a strategy change needs no action"
    );
    let _ = env
        .cmd()
        .args(["shell", "vm", "sudo", "systemctl", "poweroff"])
        .output();
    env.wait_for("the guest to power off", Duration::from_secs(120), || {
        json(&env).is_some_and(|j| j["status"] == "Stopped")
    });
    settled(&env, metrics);
    assert_eq!(
        json(&env).map(|j| j["status"].clone()),
        Some("Stopped".into()),
        "a clean guest poweroff was treated as a failure"
    );

    // The file deleted (prune): deleted.
    std::fs::remove_file(&file).unwrap();
    env.wait_for("the VM to be deleted", Duration::from_secs(120), || {
        !env.instance_dir("vm").exists()
    });
    for pid in [pid3, pid4] {
        assert!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_err(),
            "QEMU is gone"
        );
    }
    drop(daemon);
}
