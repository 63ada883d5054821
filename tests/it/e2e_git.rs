//! A Git source with a real VM: a commit that changes `cpus` restarts the
//! VM, and the guest sees the new count.

use crate::cli_git::Repo;
use crate::common;

use std::process::Stdio;
use std::time::Duration;

use common::{Env, guest_lock, require_qemu, skipped, test_template};

use common::DaemonGuard;

fn json(env: &Env, what: &str) -> Option<serde_json::Value> {
    let out = env.cmd().args([what, "--json", "vm"]).output().ok()?;
    serde_json::from_str(String::from_utf8(out.stdout).ok()?.lines().next()?).ok()
}

fn qemu_pid(env: &Env) -> Option<i64> {
    json(env, "list").filter(|j| j["status"] == "Running")?["driverPID"].as_i64()
}

fn ready_at(env: &Env, commit: &str) -> bool {
    qemu_pid(env).is_some()
        && json(env, "status").is_some_and(|s| {
            s["observedRevision"] == commit
                && s["conditions"].as_array().is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
        })
}

fn nproc(env: &Env) -> u32 {
    env.ok(&["shell", "vm", "nproc"]).trim().parse().unwrap()
}

#[test]
fn a_commit_changing_cpus_restarts_the_vm() {
    if skipped("git e2e") {
        return;
    }
    require_qemu();
    let template = test_template(false);
    let env = Env::new();
    let repo = Repo::new(&env.dir.path().join("repo"));
    let file = |cpus: u32| {
        format!(
            "base: {}\nrunStrategy: Always\ncpus: {cpus}\nmemory: 1GiB\n",
            template.display()
        )
    };
    let c1 = repo.commit(&[("vms/vm.yaml", Some(&file(1)))]);
    let _guest = guest_lock();
    let log = env.dir.path().join("daemon.log");
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("limactl"))
        .env("LIMA_HOME", env.lima_home())
        .env("HOME", env.dir.path().join("home"))
        .args(["apply", "--watch", "--prune", "--git-interval", "1h", "-f"])
        .arg(repo.locator("vms", "main"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let daemon = DaemonGuard(child, log);
    env.wait_for("the VM from c1", Duration::from_secs(300), || {
        ready_at(&env, &c1)
    });
    assert_eq!(nproc(&env), 1);

    let pid = qemu_pid(&env).unwrap();
    let c2 = repo.commit(&[("vms/vm.yaml", Some(&file(2)))]);
    // On demand: SIGHUP fetches at once (the interval is an hour).
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.0.id() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    env.wait_for("the restart from c2", Duration::from_secs(300), || {
        qemu_pid(&env).is_some_and(|p| p != pid) && ready_at(&env, &c2)
    });
    assert_eq!(nproc(&env), 2, "the guest sees the new CPU count");
    let events = std::fs::read_to_string(env.instance_dir("vm").join("reconcile.log")).unwrap();
    assert!(
        events
            .lines()
            .any(|l| l.contains("\"step\":\"stop\"") && l.contains(&c2)),
        "the restart's events carry the commit: {events}"
    );
}
