//! Lifecycle verbs without booting a guest: create from a local image,
//! bad input and faults that must fail clearly and leave nothing behind.

use crate::common;

use std::path::PathBuf;

use common::Env;

/// A tiny qcow2 "image" (no OS): enough for create, never booted here.
fn image(env: &Env) -> PathBuf {
    common::tiny_image(env.dir.path())
}

fn template(env: &Env, name: &str, extra: &str) -> PathBuf {
    let img = image(env);
    let p = env.dir.path().join(format!("{name}.yaml"));
    std::fs::write(
        &p,
        format!(
            "images:\n- location: {}\n  arch: x86_64\ncpus: 1\nmemory: 1GiB\ndisk: 2GiB\nmounts: []\ncontainerd: {{user: false, system: false}}\n{extra}",
            img.display()
        ),
    )
    .unwrap();
    p
}

#[test]
fn create_prepares_disks_and_refuses_a_second_create() {
    let env = Env::new();
    let t = template(&env, "vm", "");
    let (code, _, err) = env.run(&[
        "create",
        "--cpus",
        "2",
        "--set",
        ".memory = \"1.5GiB\"",
        t.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("Run `limactl start vm` to start the instance."),
        "{err}"
    );
    let dir = env.instance_dir("vm");
    for f in ["lima.yaml", "lima-version", "basedisk", "diffdisk"] {
        assert!(dir.join(f).exists(), "{f}");
    }
    let yaml = std::fs::read_to_string(dir.join("lima.yaml")).unwrap();
    assert!(
        yaml.contains("cpus: 2") && yaml.contains("memory: 1.5GiB"),
        "{yaml}"
    );
    let j = env.list_json("vm");
    assert_eq!(j["status"], "Stopped");
    assert_eq!(j["cpus"], 2);
    // diffdisk is an overlay on basedisk, with the configured size.
    let info = std::process::Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(dir.join("diffdisk"))
        .output()
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["virtual-size"], 2u64 << 30);
    assert_eq!(info["backing-filename"], "basedisk");
    let (code, _, err) = env.run(&["create", t.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("instance `vm` already exists"), "{err}");
    // stop of a stopped instance: an error, as in Lima; -f is not.
    let (code, _, err) = env.run(&["stop", "vm"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(
            "level=fatal msg=\"expected status `Running`, got `Stopped` (maybe use `limactl stop -f`?)\""
        ),
        "{err}"
    );
    let (code, _, err) = env.run(&["stop", "-f", "vm"]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn missing_image_and_digest_mismatch_leave_nothing() {
    let env = Env::new();
    let t = env.dir.path().join("missing.yaml");
    std::fs::write(
        &t,
        "images:\n- location: /nonexistent/image.qcow2\n  arch: x86_64\n",
    )
    .unwrap();
    let (code, _, err) = env.run(&["create", t.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("/nonexistent/image.qcow2"), "{err}");
    assert!(
        !env.instance_dir("missing").exists(),
        "a half-made instance was left"
    );

    let t = template(&env, "badsum", "");
    let text = std::fs::read_to_string(&t).unwrap().replace(
        "  arch: x86_64\n",
        &format!("  arch: x86_64\n  digest: sha256:{}\n", "0".repeat(64)),
    );
    std::fs::write(&t, text).unwrap();
    let (code, _, err) = env.run(&["create", t.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("expected digest"), "{err}");
    assert!(err.contains(&"0".repeat(64)), "{err}");
    assert!(!env.instance_dir("badsum").exists());
    assert!(
        std::fs::read_dir(env.lima_home()).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(".tmp"))
    );
}

#[test]
fn missing_qemu_is_named_with_its_package() {
    let env = Env::new();
    let t = template(&env, "vm", "");
    env.ok(&["create", t.to_str().unwrap()]);
    let empty = env.dir.path().join("emptybin");
    std::fs::create_dir_all(&empty).unwrap();
    let out = env
        .cmd()
        .env("PATH", &empty)
        .args(["start", "vm"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("qemu-system-x86_64 not found"), "{err}");
    assert!(err.contains("qemu-system-x86"), "{err}");
    assert!(!env.instance_dir("vm").join("ha.pid").exists());
    assert_eq!(env.status("vm"), "Stopped");
}

#[test]
fn a_taken_ssh_port_fails_before_qemu_starts() {
    let env = Env::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let t = template(&env, "vm", &format!("ssh: {{localPort: {port}}}\n"));
    env.ok(&["create", t.to_str().unwrap()]);
    let (code, _, err) = env.run(&["start", "--timeout", "60s", "vm"]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("SSH port {port}")) && err.contains("already in use"),
        "{err}"
    );
    let dir = env.instance_dir("vm");
    assert!(
        !dir.join("qemu.pid").exists(),
        "QEMU must not have been started"
    );
    assert_eq!(env.status("vm"), "Stopped");
}

#[test]
fn broken_and_protected_instances() {
    let env = Env::new();
    std::fs::create_dir_all(env.instance_dir("broken")).unwrap();
    let (code, _, err) = env.run(&["start", "broken"]);
    assert_eq!(code, 1);
    assert!(err.contains("instance `broken` is Broken"), "{err}");

    let t = template(&env, "keep", "");
    env.ok(&["create", t.to_str().unwrap()]);
    env.ok(&["protect", "keep"]);
    let (code, _, err) = env.run(&["delete", "keep"]);
    assert_eq!(code, 1);
    assert!(err.contains("protected"), "{err}");
    assert!(
        env.instance_dir("keep").join("diffdisk").exists(),
        "nothing was deleted"
    );
    env.ok(&["unprotect", "keep"]);
    env.ok(&["delete", "keep"]);
    assert!(!env.instance_dir("keep").exists());
}

#[test]
fn names_with_path_tricks_are_refused() {
    let env = Env::new();
    let t = template(&env, "vm", "");
    for bad in ["../escape", "a/b", ".hidden", "x.yaml"] {
        let (code, _, err) = env.run(&["create", "--name", bad, t.to_str().unwrap()]);
        assert_eq!(code, 1, "{bad}: {err}");
        assert!(err.contains("invalid instance name"), "{bad}: {err}");
    }
    assert!(!env.dir.path().join("escape").exists());
    assert_eq!(std::fs::read_dir(env.lima_home()).unwrap().count(), 0);
}

#[test]
fn create_from_stdin_show_ssh_and_the_lima_wrapper() {
    let env = Env::new();
    let t = template(&env, "src", "");
    let text = std::fs::read_to_string(&t).unwrap();
    let (code, _, err) = {
        let out = env
            .cmd()
            .args(["create", "-"])
            .write_stdin(text.clone())
            .output()
            .unwrap();
        (
            out.status.code(),
            (),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(code, Some(1));
    assert!(err.contains("--name must be given"), "{err}");
    let out = env
        .cmd()
        .args(["create", "--name", "piped", "-"])
        .write_stdin(text)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(env.status("piped"), "Stopped");

    // show-ssh prints Lima's option forms (the port is 0 until the first start).
    let out = env.ok(&["show-ssh", "--format", "config", "piped"]);
    assert!(out.starts_with("Host lima-piped\n"), "{out}");
    assert!(out.contains("  ControlPath \""), "{out}");
    assert!(out.contains("  Port 0"), "{out}");
    let out = env.ok(&["show-ssh", "piped"]);
    assert!(
        out.starts_with("ssh -o ") && out.trim_end().ends_with(" lima-piped"),
        "{out}"
    );

    // `lima` is `limactl shell $LIMA_INSTANCE`: here it reaches the stopped instance.
    let lima = assert_cmd::cargo::cargo_bin("lima");
    let out = std::process::Command::new(&lima)
        .env("LIMA_HOME", env.lima_home())
        .env("HOME", env.dir.path().join("home"))
        .env("LIMA_INSTANCE", "piped")
        .env("LIMACTL", assert_cmd::cargo::cargo_bin("limactl"))
        .args(["uname", "-a"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("instance `piped` is stopped, run `limactl start piped`"),
        "{err}"
    );
    let out = std::process::Command::new(&lima)
        .env("LIMA_HOME", env.lima_home())
        .env("LIMA_INSTANCE", "nope")
        .env("LIMACTL", assert_cmd::cargo::cargo_bin("limactl"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("instance `nope` does not exist"));
    let out = std::process::Command::new(&lima)
        .arg("--version")
        .env("LIMACTL", assert_cmd::cargo::cargo_bin("limactl"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("limactl version "));
}

#[test]
fn lima_edit_flags_for_mounts_ports_dns_and_devices() {
    let env = Env::new();
    let t = template(&env, "flags", "");
    let (code, _, err) = env.run(&[
        "create",
        "--mount",
        "/tmp/a:w,/tmp/b",
        "--port-forward",
        "18080:80",
        "--port-forward",
        "2223:23,static=true",
        "--dns",
        "1.1.1.1,9.9.9.9",
        "--video",
        "--nested-virt",
        "--mount-inotify",
        t.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("Disabling the host resolver"), "{err}");
    let inst = env.ok(&["list", "--json", "flags"]);
    let j: serde_json::Value = serde_json::from_str(inst.lines().next().unwrap()).unwrap();
    let c = &j["config"];
    assert_eq!(c["mounts"][0]["location"], "/tmp/a");
    assert_eq!(c["mounts"][0]["mountPoint"], "/tmp/a");
    assert_eq!(c["mounts"][0]["writable"], true);
    assert_eq!(c["mounts"][1]["location"], "/tmp/b");
    assert_eq!(c["mounts"][1]["writable"], false);
    let pf = c["portForwards"].as_array().unwrap();
    assert!(
        pf.iter()
            .any(|p| p["guestPort"] == 80 && p["hostPort"] == 18080 && p["static"] != true),
        "{pf:?}"
    );
    assert!(
        pf.iter()
            .any(|p| p["guestPort"] == 23 && p["hostPort"] == 2223 && p["static"] == true),
        "{pf:?}"
    );
    assert_eq!(c["dns"], serde_json::json!(["1.1.1.1", "9.9.9.9"]));
    assert_eq!(c["hostResolver"]["enabled"], false);
    assert_eq!(c["video"]["display"], "default");
    assert_eq!(c["nestedVirtualization"], true);
    assert_eq!(c["mountInotify"], true);

    // --mount-only replaces, --mount-none clears; they conflict with --mount.
    env.ok(&["edit", "flags", "--mount-only", "/tmp/c"]);
    let j = env.list_json("flags");
    assert_eq!(j["config"]["mounts"].as_array().unwrap().len(), 1, "{j}");
    assert_eq!(j["config"]["mounts"][0]["location"], "/tmp/c");
    let (code, _, err) = env.run(&["edit", "flags", "--mount", "/x", "--mount-none"]);
    assert_ne!(code, 0);
    assert!(err.contains("cannot be used with"), "{err}");
    for (flag, value, msg) in [
        ("--port-forward", "80", "expected HOST:GUEST"),
        ("--network", "bridged", "expected vzNAT or lima:NAME"),
        ("--mount", "/x:rw", "expected DIR or DIR:w"),
    ] {
        let (code, _, err) = env.run(&["edit", "flags", flag, value]);
        assert_eq!(code, 1, "{flag} {value}: {err}");
        assert!(err.contains(msg), "{flag} {value}: {err}");
    }
}

#[test]
fn start_foreground_becomes_the_host_agent() {
    let env = Env::new();
    let t = template(&env, "fg", "");
    env.ok(&["create", t.to_str().unwrap()]);
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("limactl"))
        .env("LIMA_HOME", env.lima_home())
        .env("HOME", env.dir.path().join("home"))
        .args(["start", "fg", "--foreground"])
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let dir = env.instance_dir("fg");
    let start = std::time::Instant::now();
    // Same PID: the command was replaced by the host agent, which holds the
    // instance (ha.pid) and runs QEMU (this image boots nothing; that is fine).
    while std::fs::read_to_string(dir.join("ha.pid"))
        .map(|p| p.trim().to_string())
        .ok()
        != Some(pid.to_string())
    {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the foreground start exited: {}",
            std::fs::read_to_string(dir.join("ha.stderr.log")).unwrap_or_default()
        );
        assert!(start.elapsed().as_secs() < 30, "no ha.pid with {pid}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    while !std::fs::read_to_string(dir.join("ha.stderr.log"))
        .unwrap_or_default()
        .contains("Starting QEMU")
    {
        assert!(child.try_wait().unwrap().is_none(), "the host agent exited");
        assert!(start.elapsed().as_secs() < 30, "QEMU was not started");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(env.list_json("fg")["hostAgentPID"], pid);
    env.ok(&["stop", "-f", "fg"]);
    let status = child.wait().unwrap();
    assert!(!status.success(), "killed by stop -f: {status:?}");
    assert_eq!(env.status("fg"), "Stopped");
}

/// Issue 13 row 9: a directory without lima.yaml may be an instance being
/// created or cloned into: neither `delete` nor `apply --prune` removes it.
#[test]
fn a_directory_without_lima_yaml_is_not_deleted() {
    let env = Env::new();
    let probe = env.instance_dir("probe");
    std::fs::create_dir_all(&probe).unwrap();
    std::fs::write(probe.join("diffdisk"), b"being copied").unwrap();
    for args in [&["delete", "probe"][..], &["delete", "-f", "probe"]] {
        let (code, _, err) = env.run(args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(
            err.contains("instance `probe`")
                && err.contains("has no lima.yaml")
                && err.contains("NOT deleted")
                && err.contains("cloned into")
                && err.contains(&format!("rm -rf {}", probe.display())),
            "{err}"
        );
        assert_eq!(
            std::fs::read(probe.join("diffdisk")).unwrap(),
            b"being copied"
        );
    }

    // An instance an apply source owns, whose lima.yaml is gone, and whose
    // file is gone from the source: prune refuses it too.
    let src = env.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let t = template(&env, "owned", "runStrategy: Halted\n");
    std::fs::rename(&t, src.join("owned.yaml")).unwrap();
    env.ok(&["apply", "-f", src.to_str().unwrap()]);
    let owned = env.instance_dir("owned");
    assert!(owned.join("diffdisk").exists());
    std::fs::remove_file(owned.join("lima.yaml")).unwrap();
    std::fs::remove_file(src.join("owned.yaml")).unwrap();
    let (code, out, err) = env.run(&["apply", "--prune", "-f", src.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("! owned: refused") && out.contains("has no lima.yaml"),
        "{out}"
    );
    assert!(owned.join("diffdisk").exists(), "nothing was deleted");
}

/// What makes a delete fail part-way even for root, undone on drop (so the
/// temp directory can go): `chattr +i` on a file (needs CAP_LINUX_IMMUTABLE
/// and a filesystem with the flag: ext4, xfs, btrfs), else — for a user
/// other than root, who bypasses permissions — a directory without write
/// permission holding a file.
struct Undeletable {
    path: PathBuf,
    immutable: bool,
}

impl Undeletable {
    fn new(dir: &std::path::Path) -> Undeletable {
        let file = dir.join("serial.log");
        std::fs::write(&file, b"boot log").unwrap();
        let chattr = std::process::Command::new("chattr")
            .arg("+i")
            .arg(&file)
            .output();
        if chattr.is_ok_and(|o| o.status.success()) {
            return Undeletable {
                path: file,
                immutable: true,
            };
        }
        assert!(
            !nix::unistd::geteuid().is_root(),
            "running as root, a failing delete needs `chattr +i` (e2fsprogs, and a LIMA_HOME on ext4, xfs or btrfs)"
        );
        use std::os::unix::fs::PermissionsExt;
        let sub = dir.join("sock");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join("agent.sock"), b"").unwrap();
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o500)).unwrap();
        Undeletable {
            path: sub,
            immutable: false,
        }
    }

    /// The entry whose removal fails.
    fn failing_entry(&self) -> PathBuf {
        if self.immutable {
            self.path.clone()
        } else {
            self.path.join("agent.sock")
        }
    }

    fn undo(&self) {
        if !self.path.exists() {
            // Undone already, and deleted since.
        } else if self.immutable {
            let _ = std::process::Command::new("chattr")
                .arg("-i")
                .arg(&self.path)
                .output();
        } else {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o700));
        }
    }
}

impl Drop for Undeletable {
    fn drop(&mut self) {
        self.undo();
    }
}

fn hidden_entries(env: &Env) -> Vec<String> {
    std::fs::read_dir(env.lima_home())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect()
}

/// Issue 13 row 8: a delete that fails part-way puts the instance back —
/// listed, Broken, with the reason, its disks intact — and hides nothing.
#[test]
fn a_failed_delete_leaves_the_instance_listed_and_hides_nothing() {
    let env = Env::new();
    let t = template(&env, "vm", "");
    env.ok(&["create", t.to_str().unwrap()]);
    let dir = env.instance_dir("vm");
    let stuck = Undeletable::new(&dir);
    let (code, _, err) = env.run(&["delete", "vm"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("`vm`: delete failed")
            && err.contains(&format!(
                "cannot remove {}",
                stuck.failing_entry().display()
            ))
            && err.contains("was put back"),
        "{err}"
    );
    assert!(
        hidden_entries(&env).is_empty(),
        "{:?}",
        hidden_entries(&env)
    );
    for f in ["lima.yaml", "basedisk", "diffdisk"] {
        assert!(dir.join(f).exists(), "{f} is kept");
    }
    let j = env.list_json("vm");
    assert_eq!(j["status"], "Broken", "{j}");
    assert!(
        j["errors"][0]
            .as_str()
            .unwrap()
            .contains("a delete failed part-way"),
        "{j}"
    );
    // What a failed delete left is not started (its disks may be gone).
    let (code, _, err) = env.run(&["start", "vm"]);
    assert_eq!(code, 1);
    assert!(err.contains("a delete failed part-way"), "{err}");

    // With the cause gone, deleting again finishes the job.
    stuck.undo();
    env.ok(&["delete", "vm"]);
    assert!(!dir.exists());
    assert!(
        hidden_entries(&env).is_empty(),
        "{:?}",
        hidden_entries(&env)
    );

    // What a killed delete left hidden is reported by `list`.
    let dead = std::process::Command::new("true").spawn().unwrap();
    let pid = dead.id();
    dead.wait_with_output().unwrap();
    let left = env.lima_home().join(format!(".deleting-old-{pid}"));
    std::fs::create_dir_all(&left).unwrap();
    std::fs::write(left.join("diffdisk"), b"data").unwrap();
    let (code, _, err) = env.run(&["list"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(&format!(
            "`{}` holds what an interrupted delete left",
            left.display()
        )) && err.contains(&format!("rm -rf {}", left.display())),
        "{err}"
    );
}

/// Issue 13 row 13: file errors name the instance and what was being done,
/// never a bare "No such file or directory (os error 2)": direct calls on an
/// instance whose directory is gone.
#[test]
fn file_errors_name_the_instance_and_the_operation() {
    use lima::reconcile::{Action, ExecOptions, Plan, Reason, Step, execute};
    let env = Env::new();
    let home = lima::store::Home::new(env.lima_home());
    let gone = home.instance_dir("gone");
    let err = execute::lock(&gone, std::time::Duration::from_secs(1))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`gone`")
            && err.contains("lock")
            && err.contains(&gone.join("instance.lock").display().to_string())
            && err.contains("deleted meanwhile"),
        "{err}"
    );
    let mut plan = Plan::new("gone");
    plan.steps.push(Step {
        action: Action::Adopt {
            owner: "/src".into(),
        },
        reason: Reason::Unmanaged,
    });
    let err = execute(&home, &plan, &ExecOptions::default(), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("`gone`: adopt failed: cannot write")
            && err.contains(&gone.join("owner").display().to_string())
            && err.ends_with("No such file or directory (os error 2)"),
        "{err}"
    );
    // LIMA_HOME that cannot be made: named.
    let file_home = env.dir.path().join("not-a-dir");
    std::fs::write(&file_home, b"").unwrap();
    let err = lima::store::create_instance_dir(&lima::store::Home::new(&file_home), "vm", &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&file_home.display().to_string()) && err.contains("cannot create"),
        "{err}"
    );
}

/// Issue 13 row 13, as users meet it: a create racing a delete of the same
/// name. Whatever errors the race produces name the instance, and a file
/// error also says what it was doing and on which file.
#[test]
fn a_create_racing_a_delete_reports_errors_that_name_the_instance() {
    let env = Env::new();
    let t = template(&env, "r", "");
    let spawn = |args: &[&str]| {
        std::process::Command::new(assert_cmd::cargo::cargo_bin("limactl"))
            .env("LIMA_HOME", env.lima_home())
            .env("HOME", env.dir.path().join("home"))
            .env_remove("LIMA_TEMPLATES_PATH")
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut errors = Vec::new();
    for _ in 0..30 {
        let create = spawn(&["create", "--name", "r", t.to_str().unwrap()]);
        let delete = spawn(&["delete", "-f", "r"]);
        for child in [create, delete] {
            let out = child.wait_with_output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(!err.contains("panicked"), "{err}");
            errors.extend(
                err.lines()
                    .filter(|l| l.contains("level=fatal"))
                    .map(String::from),
            );
        }
    }
    let home = env.lima_home().display().to_string();
    for e in &errors {
        assert!(e.contains("`r`"), "the instance is named: {e}");
        if e.contains("(os error") {
            assert!(
                e.contains(" failed: ") && e.contains(&home),
                "a file error says what failed on which file: {e}"
            );
        }
    }
    // Whatever happened, what is left is a whole instance or nothing.
    let _ = env.run(&["delete", "-f", "r"]);
    assert!(!env.instance_dir("r").exists());
}
