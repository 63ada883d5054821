//! The watch daemon (`apply -f DIR --watch`) without booting a guest:
//! instances are `runStrategy: Halted` from a tiny local image.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::Env;

fn tiny_image(env: &Env) -> PathBuf {
    common::tiny_image(env.dir.path())
}

fn yaml(image: &Path, cpus: u32) -> String {
    format!(
        "images:\n- location: {}\n  arch: x86_64\nrunStrategy: Halted\ncpus: {cpus}\nmemory: 1GiB\ndisk: 1GiB\nmounts: []\ncontainerd: {{user: false, system: false}}\n",
        image.display()
    )
}

/// A running daemon, killed (SIGKILL) when dropped.
struct Daemon(Child);

impl Daemon {
    fn start(env: &Env, src: &Path, extra_env: &[(&str, &str)]) -> Daemon {
        Daemon::start_with(env, src, extra_env, &[])
    }

    fn start_with(env: &Env, src: &Path, extra_env: &[(&str, &str)], args: &[&str]) -> Daemon {
        let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("limactl"));
        c.env("LIMA_HOME", env.lima_home())
            .env("HOME", env.dir.path().join("home"))
            .args(["apply", "--watch", "--prune", "--resync", "2s"])
            .args(args)
            .arg("-f")
            .arg(src)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in extra_env {
            c.env(k, v);
        }
        Daemon(c.spawn().unwrap())
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn cpus(env: &Env, name: &str) -> Option<u64> {
    let out = env.cmd().args(["list", "--json", name]).output().unwrap();
    let line = String::from_utf8(out.stdout).ok()?;
    let v: serde_json::Value = serde_json::from_str(line.lines().next()?).ok()?;
    v["cpus"].as_u64()
}

#[test]
fn files_drive_instances_and_bad_files_change_nothing() {
    let env = Env::new();
    let img = tiny_image(&env);
    let src = env.dir.path().join("watched");
    std::fs::create_dir_all(&src).unwrap();
    let _d = Daemon::start(&env, &src, &[]);
    std::thread::sleep(Duration::from_millis(500));

    // A second daemon on the same LIMA_HOME refuses.
    let out = env
        .cmd()
        .args(["apply", "--watch", "-f"])
        .arg(&src)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("another `limactl apply --watch`") && err.contains("one daemon per LIMA_HOME"),
        "{err}"
    );

    // Written → created.
    std::fs::write(src.join("w.yaml"), yaml(&img, 1)).unwrap();
    wait_for("w to be created", Duration::from_secs(20), || {
        env.instance_dir("w").join("diffdisk").exists()
    });
    wait_for("w to be listed", Duration::from_secs(10), || {
        cpus(&env, "w") == Some(1)
    });
    let owner = std::fs::read_to_string(env.instance_dir("w").join("owner")).unwrap();
    assert_eq!(
        owner.trim(),
        std::fs::canonicalize(&src).unwrap().to_str().unwrap()
    );

    // Edited, with an editor-style atomic save (write elsewhere, rename over).
    std::fs::write(src.join(".w.yaml.swp"), yaml(&img, 2)).unwrap();
    std::fs::rename(src.join(".w.yaml.swp"), src.join("w.yaml")).unwrap();
    wait_for("the edit to apply", Duration::from_secs(20), || {
        cpus(&env, "w") == Some(2)
    });

    // Written in two halves with a pause: the first half is never applied.
    let full = yaml(&img, 3);
    let (first, second) = full.split_at(full.find("cpus").unwrap() + 4);
    std::fs::write(src.join("w.yaml"), first).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        cpus(&env, "w"),
        Some(2),
        "a partial file changed the instance"
    );
    let st = env.ok(&["status", "--json", "w"]);
    assert!(
        st.contains("not applied"),
        "the partial file's error is on the status: {st}"
    );
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(src.join("w.yaml"))
        .unwrap();
    use std::io::Write;
    f.write_all(second.as_bytes()).unwrap();
    drop(f);
    wait_for(
        "the completed file to apply",
        Duration::from_secs(20),
        || cpus(&env, "w") == Some(3),
    );

    // Garbage: an error on the status, the instance untouched.
    std::fs::write(src.join("w.yaml"), "cpus: [[[ garbage\n").unwrap();
    wait_for("the error on the status", Duration::from_secs(20), || {
        env.ok(&["status", "--json", "w"])
            .contains("garbage")
            .then_some(())
            .is_some()
            || env.ok(&["status", "--json", "w"]).contains("not applied")
    });
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(cpus(&env, "w"), Some(3));
    assert!(env.instance_dir("w").join("diffdisk").exists());

    // The reconciler's events are in `limactl watch`.
    let mut w = std::process::Command::new(assert_cmd::cargo::cargo_bin("limactl"))
        .env("LIMA_HOME", env.lima_home())
        .args(["watch", "--json", "--history", "w"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    w.kill().unwrap();
    let out = String::from_utf8(w.wait_with_output().unwrap().stdout).unwrap();
    assert!(
        out.contains("\"reconcile\":{") && out.contains("\"step\":\"create\""),
        "{out}"
    );
    assert!(out.contains("\"phase\":\"error\""), "{out}");

    // Deleted (prune on) → deleted.
    std::fs::remove_file(src.join("w.yaml")).unwrap();
    wait_for("w to be deleted", Duration::from_secs(20), || {
        !env.instance_dir("w").exists()
    });
}

#[test]
fn killed_at_any_step_of_a_create_the_next_daemon_converges() {
    for point in [
        "create:after",
        "prepare-images:before",
        "prepare-images:after",
        "create-disk:before",
        "create-disk:after",
    ] {
        let env = Env::new();
        let img = tiny_image(&env);
        let src = env.dir.path().join("watched");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("k.yaml"), yaml(&img, 1)).unwrap();
        let mut d = Daemon::start(&env, &src, &[("LIMA_FAULT_INJECT", point)]);
        let status = d.0.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            Some(9),
            "{point}: the daemon killed itself"
        );
        // Nothing half-made is visible as a complete instance.
        assert!(
            !env.instance_dir("k").join("diffdisk").exists() || point == "create-disk:after",
            "{point}"
        );
        let _d2 = Daemon::start(&env, &src, &[]);
        wait_for(
            &format!("convergence after {point}"),
            Duration::from_secs(20),
            || {
                env.instance_dir("k").join("diffdisk").exists()
                    && env.instance_dir("k").join("basedisk").exists()
                    && cpus(&env, "k") == Some(1)
            },
        );
        let out = env.ok(&["diff", "-f", src.to_str().unwrap()]);
        assert!(out.contains("1 unchanged"), "{point}: {out}");
        assert!(
            std::fs::read_dir(env.lima_home())
                .unwrap()
                .flatten()
                .all(|e| !e.file_name().to_string_lossy().starts_with(".tmp")),
            "{point}: temp directories left"
        );
    }
}

#[test]
fn systemd_unit_for_the_daemon() {
    let env = Env::new();
    let src = env.dir.path().join("watched");
    std::fs::create_dir_all(&src).unwrap();
    let unit = env.ok(&[
        "apply",
        "--watch",
        "--prune",
        "--systemd-unit",
        "-f",
        src.to_str().unwrap(),
    ]);
    assert!(
        unit.contains("ExecStart=") && unit.contains("apply --watch --prune -f"),
        "{unit}"
    );
    assert!(
        unit.contains("KillMode=process"),
        "stopping the service must not kill the VMs: {unit}"
    );
    assert!(
        unit.contains(&format!(
            "Environment=LIMA_HOME={}",
            env.lima_home().display()
        )),
        "{unit}"
    );
    // The daemon's tuning is passed on, in a form the daemon reads back.
    let tuned = env.ok(&[
        "apply",
        "--watch",
        "--prune",
        "--resync",
        "3s",
        "--prune-grace",
        "7s",
        "--systemd-unit",
        "-f",
        src.to_str().unwrap(),
    ]);
    let exec = tuned
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap();
    assert!(
        exec.contains("--resync 3s") && exec.contains("--prune-grace 7000ms"),
        "{exec}"
    );
    let mut again: Vec<&str> = exec.split(' ').skip(1).collect();
    again.push("--systemd-unit");
    assert_eq!(
        env.ok(&again),
        tuned,
        "the unit's command line parses as given"
    );
    let path = env.dir.path().join("limactl-apply.service");
    std::fs::write(&path, &unit).unwrap();
    match std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
    {
        Ok(out) => {
            let err = String::from_utf8_lossy(&out.stderr);
            // Only complaints about this unit count (the sandbox's own units may be odd).
            let ours: Vec<&str> = err
                .lines()
                .filter(|l| l.contains("limactl-apply.service"))
                .collect();
            assert!(ours.is_empty(), "systemd-analyze verify: {err}");
        }
        Err(e) => eprintln!("systemd-analyze is not available ({e}); unit not verified"),
    }
}

/// Reconciles are short: with one worker, a guest that never finishes
/// booting (QEMU runs the tiny image, which has no OS) does not hold up a
/// change to another instance.
#[test]
fn one_worker_applies_a_change_while_another_instance_boots() {
    common::require_qemu();
    let env = Env::new();
    let img = tiny_image(&env);
    let src = env.dir.path().join("watched");
    std::fs::create_dir_all(&src).unwrap();
    let booting = yaml(&img, 1).replace("runStrategy: Halted", "runStrategy: Always");
    std::fs::write(src.join("a.yaml"), booting).unwrap();
    std::fs::write(src.join("b.yaml"), yaml(&img, 1)).unwrap();
    let _d = Daemon::start_with(&env, &src, &[], &["--parallel", "1"]);
    let json = |name: &str| -> Option<serde_json::Value> {
        let out = env.cmd().args(["list", "--json", name]).output().ok()?;
        serde_json::from_slice(&out.stdout).ok()
    };
    wait_for("a's VM to run", Duration::from_secs(180), || {
        json("a").is_some_and(|j| j["status"] == "Running")
    });
    wait_for("b to be created", Duration::from_secs(60), || {
        cpus(&env, "b") == Some(1)
    });
    let not_ready = |env: &Env| {
        env.ok(&["status", "--json", "a"])
            .contains("\"type\":\"Ready\",\"status\":\"False\"")
    };
    assert!(not_ready(&env), "the tiny image never becomes Ready");

    std::fs::write(src.join("b.yaml"), yaml(&img, 2)).unwrap();
    wait_for("b's change to apply", Duration::from_secs(60), || {
        cpus(&env, "b") == Some(2)
    });
    assert_eq!(
        json("a").map(|j| j["status"].clone()),
        Some("Running".into()),
        "a is still booting"
    );
    assert!(not_ready(&env), "b converged while a was not Ready");
}

/// The reconciler's events of an instance (`reconcile.log`) with this phase.
fn journal(env: &Env, name: &str, phase: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(env.instance_dir(name).join("reconcile.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["phase"] == phase)
        .collect()
}

fn status_json(env: &Env, name: &str) -> serde_json::Value {
    let out = env.cmd().args(["status", "--json", name]).output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

/// A file that exists but cannot be read, or a directory that cannot be
/// listed, is never taken for a file gone: the daemon deletes nothing.
#[test]
fn the_daemon_never_prunes_what_it_cannot_read() {
    let env = Env::new();
    let img = tiny_image(&env);
    let src = env.dir.path().join("watched");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("w.yaml"), yaml(&img, 1)).unwrap();
    let _d = Daemon::start(&env, &src, &[]);
    wait_for("w to be created", Duration::from_secs(20), || {
        cpus(&env, "w") == Some(1)
    });

    // Replaced at once (rename) by a dangling symlink.
    std::os::unix::fs::symlink("/nonexistent", src.join(".w.tmp")).unwrap();
    std::fs::rename(src.join(".w.tmp"), src.join("w.yaml")).unwrap();
    // Several reconciles (resyncs every 2 s) each record the error; with
    // the file taken for gone, the first would have deleted it.
    wait_for(
        "the error recorded by three reconciles",
        Duration::from_secs(60),
        || {
            journal(&env, "w", "error")
                .iter()
                .filter(|e| {
                    e["reason"]
                        .as_str()
                        .is_some_and(|r| r.contains("dangling symlink (to /nonexistent)"))
                })
                .count()
                >= 3
        },
    );
    assert!(env.instance_dir("w").join("diffdisk").exists());
    let st = status_json(&env, "w");
    assert!(
        st["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("instance `w` is left alone")),
        "{st}"
    );
    assert!(st.get("pendingDeletion").is_none(), "{st}");

    // The whole directory gone (unmounted, renamed): nothing can be concluded.
    std::fs::rename(&src, env.dir.path().join("moved-away")).unwrap();
    wait_for(
        "the daemon to say it does not prune, three times",
        Duration::from_secs(60),
        || {
            journal(&env, "w", "error")
                .iter()
                .filter(|e| {
                    e["reason"]
                        .as_str()
                        .is_some_and(|r| r.starts_with("not pruned: cannot read directory"))
                })
                .count()
                >= 3
        },
    );
    assert!(env.instance_dir("w").join("diffdisk").exists());
    assert!(journal(&env, "w", "pending").is_empty());
}

/// With `--watch --prune`, a file removed and put back (a checkout, a
/// non-atomic deploy) costs nothing: the deletion waits for the grace
/// period, shows in `status`, and is cancelled by the file's return. A file
/// that stays gone is deleted once the grace period is over.
#[test]
fn a_file_gone_for_a_moment_is_not_pruned() {
    let env = Env::new();
    let img = tiny_image(&env);
    let src = env.dir.path().join("watched");
    std::fs::create_dir_all(&src).unwrap();
    let file = src.join("w.yaml");
    std::fs::write(&file, yaml(&img, 1)).unwrap();
    let mut d = Daemon::start_with(&env, &src, &[], &["--prune-grace", "10m"]);
    wait_for("w to be created", Duration::from_secs(20), || {
        cpus(&env, "w") == Some(1) && env.instance_dir("w").join("diffdisk").exists()
    });
    let dir = env.instance_dir("w");
    std::fs::write(dir.join("marker"), "data").unwrap();
    let disk = || {
        std::fs::metadata(dir.join("diffdisk"))
            .unwrap()
            .modified()
            .unwrap()
    };
    let disk_before = disk();

    let saved = std::fs::read(&file).unwrap();
    std::fs::remove_file(&file).unwrap();
    wait_for("the pending deletion", Duration::from_secs(20), || {
        status_json(&env, "w").get("pendingDeletion").is_some()
    });
    let st = status_json(&env, "w");
    assert!(
        st["pendingDeletion"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("unless the file returns (--prune-grace 600s)")),
        "{st}"
    );
    let table = env.ok(&["status", "w"]);
    assert!(
        table.contains("PENDING-DELETION") && table.contains(" at "),
        "{table}"
    );
    assert_eq!(journal(&env, "w", "pending").len(), 1);
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(&file, &saved).unwrap();
    wait_for(
        "the deletion to be cancelled",
        Duration::from_secs(20),
        || {
            !journal(&env, "w", "cancelled").is_empty()
                && status_json(&env, "w").get("pendingDeletion").is_none()
        },
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("marker")).unwrap(),
        "data",
        "the instance was never recreated"
    );
    assert_eq!(disk(), disk_before, "the disk is untouched");
    assert_eq!(cpus(&env, "w"), Some(1));
    // `limactl watch` shows both events.
    let mut watch = std::process::Command::new(assert_cmd::cargo::cargo_bin("limactl"))
        .env("LIMA_HOME", env.lima_home())
        .args(["watch", "--history", "--json", "w"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = std::io::BufRead::lines(std::io::BufReader::new(watch.stdout.take().unwrap()));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || lines.map_while(Result::ok).try_for_each(|l| tx.send(l)));
    let mut seen = String::new();
    wait_for(
        "`limactl watch` to show them",
        Duration::from_secs(20),
        || {
            seen.extend(rx.try_iter().map(|l| l + "\n"));
            seen.contains("\"phase\":\"pending\"") && seen.contains("\"phase\":\"cancelled\"")
        },
    );
    let _ = watch.kill();
    let _ = watch.wait();
    d.kill();

    // A file that stays gone: deleted after the grace period.
    let _d = Daemon::start_with(&env, &src, &[], &["--prune-grace", "1s"]);
    std::fs::remove_file(&file).unwrap();
    wait_for("w to be deleted", Duration::from_secs(30), || !dir.exists());
}

#[test]
fn files_whose_base_is_a_fifo_never_hold_a_worker() {
    let env = Env::new();
    let img = tiny_image(&env);
    let src = env.dir.path().join("watched");
    std::fs::create_dir_all(&src).unwrap();
    let fifo = env.dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    // Two bad files: as many as the daemon has workers.
    for f in ["e1.yaml", "e2.yaml"] {
        std::fs::write(src.join(f), format!("base: {}\n", fifo.display())).unwrap();
    }
    std::fs::write(src.join("good.yaml"), yaml(&img, 1)).unwrap();
    let mut d = Daemon::start_with(&env, &src, &[], &["--parallel", "2"]);
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = d.0.stderr.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    wait_for("good to be created", Duration::from_secs(60), || {
        cpus(&env, "good") == Some(1)
    });
    // Each bad file's error is reported, naming the FIFO.
    let mut log = String::new();
    let fifo_err = format!("cannot read `{}`: it is a FIFO", fifo.display());
    wait_for(
        "both FIFO errors in the log",
        Duration::from_secs(60),
        || {
            log.extend(rx.try_iter().map(|l| l + "\n"));
            ["e1.yaml", "e2.yaml"]
                .iter()
                .all(|f| log.lines().any(|l| l.contains(f) && l.contains(&fifo_err)))
        },
    );
    assert!(!env.instance_dir("e1").exists());
    assert!(!env.instance_dir("e2").exists());
}
