//! The reliability suite without a guest: every step of every plan kind
//! killed (SIGKILL before and after it) and converged by the next run; a full
//! disk; many CLI operations racing a daemon on the same instances.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{self, Env};

fn yaml(image: &Path, cpus: u32, disk: &str, plain: bool) -> String {
    format!(
        "images:\n- location: {}\n  arch: x86_64\nrunStrategy: Halted\ncpus: {cpus}\nmemory: 1GiB\ndisk: {disk}\nplain: {plain}\nmounts: []\ncontainerd: {{user: false, system: false}}\n",
        image.display()
    )
}

fn no_leftovers(env: &Env, what: &str) {
    let mut left = Vec::new();
    let home = env.lima_home();
    for e in std::fs::read_dir(&home).unwrap().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with(".tmp") || n.starts_with(".deleting") {
            left.push(n.clone());
        }
        if e.path().is_dir() && !n.starts_with('_') && !n.starts_with('.') {
            for f in std::fs::read_dir(e.path()).unwrap().flatten() {
                let f = f.file_name().to_string_lossy().into_owned();
                if f.ends_with(".tmp") {
                    left.push(format!("{n}/{f}"));
                }
            }
            let lock = e.path().join("instance.lock");
            assert!(
                !lima::store::lock::is_held(&lock),
                "{what}: {} is still locked",
                lock.display()
            );
        }
    }
    assert!(left.is_empty(), "{what}: temp files left: {left:?}");
}

/// `qemu-io` on an instance's root disk: writes or checks a marker pattern.
fn disk_marker(disk: &Path, write: bool) -> bool {
    let cmd = if write {
        "write -P 0x5a 0 64k"
    } else {
        "read -P 0x5a 0 64k"
    };
    let out = Command::new("qemu-io")
        .args(["-f", "qcow2", "-c", cmd])
        .arg(disk)
        .output()
        .expect("qemu-io is installed (hack/install-deps.sh)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    out.status.success() && !text.contains("verification failed") && !text.contains("error")
}

/// One plan kind: how to reach the starting state, and what to change.
struct Kind {
    name: &'static str,
    /// The steps of its plan, each killed before and after.
    steps: &'static [&'static str],
    extra: &'static [&'static str],
    change: fn(&Path, &Path),
    converged: fn(&Env) -> bool,
    /// The disk survives this plan (checked by its marker).
    keeps_disk: bool,
}

fn grow(src: &Path, img: &Path) {
    std::fs::write(src.join("k.yaml"), yaml(img, 2, "2GiB", false)).unwrap();
}

fn recreate(src: &Path, img: &Path) {
    std::fs::write(src.join("k.yaml"), yaml(img, 1, "1GiB", true)).unwrap();
}

fn prune(src: &Path, _img: &Path) {
    std::fs::remove_file(src.join("k.yaml")).unwrap();
}

fn list_json(env: &Env, name: &str) -> Option<serde_json::Value> {
    let out = env.cmd().args(["list", "--json", name]).output().ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

#[test]
fn killed_before_or_after_any_step_of_every_plan_kind_the_next_apply_converges() {
    let kinds = [
        Kind {
            name: "grow",
            steps: &["update-config", "grow-disk"],
            extra: &[],
            change: grow,
            converged: |env| {
                list_json(env, "k").is_some_and(|j| j["cpus"] == 2 && j["disk"] == 2u64 << 30)
            },
            keeps_disk: true,
        },
        Kind {
            name: "recreate",
            steps: &["delete", "create", "prepare-images", "create-disk"],
            extra: &["--recreate"],
            change: recreate,
            converged: |env| {
                std::fs::read_to_string(env.instance_dir("k").join("lima.yaml"))
                    .is_ok_and(|y| y.contains("plain: true"))
                    && env.instance_dir("k").join("diffdisk").exists()
            },
            keeps_disk: false,
        },
        Kind {
            name: "prune",
            steps: &["delete"],
            extra: &["--prune"],
            change: prune,
            converged: |env| !env.instance_dir("k").exists(),
            keeps_disk: false,
        },
    ];
    for kind in &kinds {
        for step in kind.steps {
            for when in ["before", "after"] {
                let point = format!("{step}:{when}");
                let what = format!("{} killed at {point}", kind.name);
                let env = Env::new();
                let img = common::tiny_image(env.dir.path());
                let src = env.dir.path().join("src");
                std::fs::create_dir_all(&src).unwrap();
                std::fs::write(src.join("k.yaml"), yaml(&img, 1, "1GiB", false)).unwrap();
                let src_arg = src.to_str().unwrap();
                env.ok(&["apply", "-f", src_arg]);
                let disk = env.instance_dir("k").join("diffdisk");
                assert!(disk_marker(&disk, true), "{what}: marker written");

                (kind.change)(&src, &img);
                let mut args = vec!["apply", "-f", src_arg];
                args.extend(kind.extra);
                let out = env
                    .cmd()
                    .env("LIMA_FAULT_INJECT", &point)
                    .args(&args)
                    .output()
                    .unwrap();
                use std::os::unix::process::ExitStatusExt;
                assert_eq!(out.status.signal(), Some(9), "{what}: killed itself");

                let (code, _, err) = env.run(&args);
                assert_eq!(code, 0, "{what}: the next apply converges: {err}");
                assert!((kind.converged)(&env), "{what}: converged");
                let (code, out, _) = env.run(&["diff", "-f", src_arg]);
                assert_eq!(code, 0, "{what}: nothing left to do: {out}");
                if kind.keeps_disk {
                    assert!(disk_marker(&disk, false), "{what}: the disk kept its data");
                }
                no_leftovers(&env, &what);
            }
        }
    }
}

/// A restart (`limactl restart -f --cpus 2`: force-stop, update-config,
/// start) of a running VM — QEMU running the tiny image, which has no OS, so
/// it never becomes Ready: the restart's wait for readiness times out, which
/// is expected; what is checked is the VM running again with the new
/// configuration, and nothing lost.
#[test]
fn killed_before_or_after_any_step_of_a_restart_the_next_restart_converges() {
    common::require_qemu();
    for step in ["force-stop", "update-config", "start"] {
        for when in ["before", "after"] {
            let point = format!("{step}:{when}");
            let env = Env::new();
            let img = common::tiny_image(env.dir.path());
            let file = env.dir.path().join("k.yaml");
            std::fs::write(&file, yaml(&img, 1, "1GiB", false)).unwrap();
            env.ok(&["create", "--name", "k", file.to_str().unwrap()]);
            let disk = env.instance_dir("k").join("diffdisk");
            assert!(disk_marker(&disk, true), "{point}: marker written");
            // Running (QEMU up), never Ready: the start times out waiting
            // (for QEMU too on a slow machine: its host agent goes on).
            let (code, _, _) = env.run(&["start", "--timeout", "3s", "k"]);
            assert_eq!(code, 1);
            let running = |env: &Env| list_json(env, "k").is_some_and(|j| j["status"] == "Running");
            env.wait_for("QEMU to run", Duration::from_secs(120), || running(&env));

            let restart = ["restart", "-f", "--cpus", "2", "--timeout", "3s", "k"];
            let out = env
                .cmd()
                .env("LIMA_FAULT_INJECT", &point)
                .args(restart)
                .output()
                .unwrap();
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(out.status.signal(), Some(9), "{point}: killed itself");

            let (_, _, err) = env.run(&restart);
            assert!(
                err.contains("did not become ready within 3s"),
                "{point}: the restart went as far as waiting: {err}"
            );
            env.wait_for("QEMU to run again", Duration::from_secs(120), || {
                running(&env)
            });
            assert_eq!(
                list_json(&env, "k").unwrap()["cpus"],
                2,
                "{point}: running with the new configuration"
            );
            let started =
                std::fs::read_to_string(env.instance_dir("k").join("started.json")).unwrap();
            let started: serde_json::Value = serde_json::from_str(&started).unwrap();
            assert_eq!(started["config"]["cpus"], 2, "{point}: QEMU has 2 CPUs");
            env.ok(&["stop", "-f", "k"]);
            assert!(disk_marker(&disk, false), "{point}: the disk kept its data");
            no_leftovers(&env, &point);
        }
    }
}

/// A tmpfs of `size` mounted at `dir` for the life of the value.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let st = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .expect("mount(8) runs");
        assert!(
            st.success(),
            "cannot mount a tmpfs at {} (the disk-full test needs root, as CI runs it)",
            dir.display()
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the filesystem of `dir` until writing fails (ENOSPC).
fn fill(dir: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(dir.join("filler")).unwrap();
    let chunk = vec![0x42u8; 1 << 20];
    while f.write_all(&chunk).and_then(|_| f.sync_data()).is_ok() {}
}

#[test]
fn a_full_disk_fails_cleanly_and_damages_nothing() {
    let env = Env::new();
    let _fs = Tmpfs::mount(&env.lima_home(), "24m");
    let img = common::tiny_image(env.dir.path());
    // An instance that exists before the disk fills up, with data on its disk.
    let keep = env.dir.path().join("keep.yaml");
    std::fs::write(&keep, yaml(&img, 1, "1GiB", false)).unwrap();
    env.ok(&["create", "--name", "keep", keep.to_str().unwrap()]);
    let keep_disk = env.instance_dir("keep").join("diffdisk");
    assert!(disk_marker(&keep_disk, true));
    let keep_yaml = std::fs::read(env.instance_dir("keep").join("lima.yaml")).unwrap();

    // A base image bigger than what is left: create and apply fail clearly.
    let big = env.dir.path().join("big.raw");
    let st = Command::new("qemu-img")
        .args(["create", "-q", "-f", "raw", "-o", "preallocation=full"])
        .arg(&big)
        .arg("32M")
        .status()
        .unwrap();
    assert!(st.success());
    let big_yaml = env.dir.path().join("big.yaml");
    std::fs::write(&big_yaml, yaml(&big, 1, "1GiB", false)).unwrap();
    let (code, _, err) = env.run(&["create", "--name", "big", big_yaml.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("No space left on device") || err.contains("no space"),
        "the error says the disk is full: {err}"
    );
    assert!(!env.instance_dir("big").exists(), "no partial instance");
    let src = env.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::copy(&big_yaml, src.join("big.yaml")).unwrap();
    let (code, _, err) = env.run(&["apply", "-f", src.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("big"), "the error names the instance: {err}");
    assert!(!env.instance_dir("big").exists(), "no partial instance");

    // Full to the last byte: a start fails with a message, the instance stays.
    fill(&env.lima_home());
    let (code, _, err) = env.run(&["start", "--timeout", "120s", "keep"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert_eq!(env.status("keep"), "Stopped");
    std::fs::remove_file(env.lima_home().join("filler")).unwrap();
    assert_eq!(
        std::fs::read(env.instance_dir("keep").join("lima.yaml")).unwrap(),
        keep_yaml,
        "the existing instance's configuration is intact"
    );
    assert!(disk_marker(&keep_disk, false), "its disk kept its data");
    no_leftovers(&env, "disk full");
}

#[test]
fn many_cli_operations_racing_a_daemon_leave_every_instance_sound() {
    let env = Env::new();
    let img = common::tiny_image(env.dir.path());
    let src = env.dir.path().join("watched");
    std::fs::create_dir_all(&src).unwrap();
    for n in ["a", "b", "c"] {
        std::fs::write(src.join(format!("{n}.yaml")), yaml(&img, 1, "1GiB", false)).unwrap();
    }
    let template = env.dir.path().join("t.yaml");
    std::fs::write(&template, yaml(&img, 1, "1GiB", false)).unwrap();
    let mut daemon = Command::new(assert_cmd::cargo::cargo_bin("limactl"))
        .env("LIMA_HOME", env.lima_home())
        .env("HOME", env.dir.path().join("home"))
        .args(["apply", "--watch", "--prune", "--resync", "1s", "-f"])
        .arg(&src)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    env.wait_for(
        "the daemon to create a, b, c",
        Duration::from_secs(60),
        || {
            ["a", "b", "c"]
                .iter()
                .all(|n| env.instance_dir(n).join("diffdisk").exists())
        },
    );

    let t = template.to_str().unwrap().to_string();
    let s = src.to_str().unwrap().to_string();
    let img_for = img.clone();
    let src_for = src.clone();
    let ops: Vec<Box<dyn Fn(usize) -> Vec<String> + Send + Sync>> = vec![
        Box::new(|i| {
            ["edit", ["a", "b", "c"][i % 3], "--set"]
                .map(String::from)
                .into_iter()
                .chain([format!(".cpus = {}", 1 + i % 2)])
                .collect()
        }),
        Box::new(|i| {
            vec![
                ["protect", "unprotect"][i % 2].into(),
                ["a", "b", "c"][i % 3].into(),
            ]
        }),
        Box::new(|_| vec!["list".into(), "--json".into()]),
        Box::new(move |i| {
            let name = ["d", "e"][i % 2];
            vec!["create".into(), "--name".into(), name.into(), t.clone()]
        }),
        Box::new(|i| vec!["delete".into(), "-f".into(), ["d", "e"][i % 2].into()]),
        Box::new(move |_| vec!["apply".into(), "-f".into(), s.clone()]),
        Box::new(move |i| {
            // The daemon's own files change under it too.
            let n = ["a", "b", "c"][i % 3];
            let f = src_for.join(format!("{n}.yaml"));
            std::fs::write(&f, yaml(&img_for, 1 + (i % 2) as u32, "1GiB", false)).unwrap();
            vec!["status".into(), "--json".into()]
        }),
    ];
    let next = std::sync::atomic::AtomicUsize::new(0);
    let panics = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if i >= 100 {
                        break;
                    }
                    let args = ops[i % ops.len()](i);
                    let out = env.cmd().args(&args).output().unwrap();
                    let err = String::from_utf8_lossy(&out.stderr).into_owned();
                    if err.contains("panicked") || out.status.code().is_none() {
                        panics.lock().unwrap().push(format!("{args:?}: {err}"));
                    }
                }
            });
        }
    });
    assert!(
        panics.lock().unwrap().is_empty(),
        "{:?}",
        panics.lock().unwrap()
    );

    // Let the daemon finish what it is doing, then stop it.
    let settled = Instant::now();
    while settled.elapsed() < Duration::from_secs(60) {
        if env.run(&["diff", "-f", src.to_str().unwrap()]).0 == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let _ = daemon.kill();
    let _ = daemon.wait();
    for e in std::fs::read_dir(env.lima_home()).unwrap().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with('_') || n.starts_with('.') {
            continue;
        }
        let j = list_json(&env, &n).unwrap_or_else(|| panic!("{n} is not listed"));
        assert!(
            j["status"] == "Stopped",
            "every instance directory parses and is whole: {n}: {j}"
        );
    }
    no_leftovers(&env, "after the races");
}
