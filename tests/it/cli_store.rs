//! The store and its read-side commands against a temp LIMA_HOME: list, info,
//! protect, disk, yq; liveness from kernel-held locks (real processes hold
//! them, via util-linux `flock`), stale pid files, concurrent creation.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use assert_cmd::Command;

struct Env {
    dir: tempfile::TempDir,
}

const YAML: &str =
    "images:\n- location: /images/x.qcow2\n  arch: x86_64\ncpus: 2\nmemory: 2GiB\ndisk: 10GiB\n";

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        std::fs::create_dir_all(dir.path().join("lima")).unwrap();
        Env { dir }
    }
    fn lima_home(&self) -> PathBuf {
        self.dir.path().join("lima")
    }
    fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("limactl").unwrap();
        c.env("LIMA_HOME", self.lima_home())
            .env("HOME", self.dir.path().join("home"))
            .env_remove("LIMA_TEMPLATES_PATH");
        c
    }
    /// `cmd` as a std `Command`, for control over its pipes.
    fn std_cmd(&self) -> std::process::Command {
        let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("limactl"));
        c.env("LIMA_HOME", self.lima_home())
            .env("HOME", self.dir.path().join("home"))
            .env_remove("LIMA_TEMPLATES_PATH");
        c
    }
    fn instance(&self, name: &str, yaml: &str) -> PathBuf {
        let d = self.lima_home().join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("lima.yaml"), yaml).unwrap();
        d
    }
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.cmd().args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!stderr.contains("panicked"), "{stderr}");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr,
        )
    }
    fn list_json(&self) -> Vec<serde_json::Value> {
        let (code, out, err) = self.run(&["list", "--json"]);
        assert_eq!(code, 0, "{err}");
        out.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// A real process holding the given lock files (as the host agent and QEMU do).
struct Holder(Child);

impl Holder {
    fn id(&self) -> u32 {
        self.0.id()
    }
    fn kill(&mut self) -> std::io::Result<()> {
        let pgid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL)
            .map_err(std::io::Error::from)
    }
    fn wait(&mut self) -> std::io::Result<()> {
        self.0.wait()?;
        // The group's other members exit with it; give the kernel a moment to
        // release their descriptors.
        for _ in 0..200 {
            if nix::sys::signal::killpg(nix::unistd::Pid::from_raw(self.0.id() as i32), None)
                .is_err()
            {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Ok(())
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.kill();
        let _ = self.0.wait();
    }
}

// The child is reaped by `Holder`'s Drop; only a panic below leaks it.
#[allow(clippy::zombie_processes)]
fn hold_locks(dir: &Path, locks: &[&str]) -> Holder {
    let mut args: Vec<String> = Vec::new();
    for l in locks {
        args.push("flock".into());
        args.push(dir.join(l).display().to_string());
    }
    args.extend(["sleep".into(), "300".into()]);
    use std::os::unix::process::CommandExt;
    // Its own process group, so that killing it kills the whole chain of
    // `flock` processes that share the locked descriptors.
    let child = std::process::Command::new(&args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("util-linux flock is installed");
    // Wait until the innermost lock is held.
    let last = dir.join(locks.last().unwrap());
    for _ in 0..500 {
        if lima::store::lock::is_held(&last) {
            return Holder(child);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("lock {} never taken", last.display());
}

#[test]
fn list_table_and_formats() {
    let env = Env::new();
    let (code, out, err) = env.run(&["list"]);
    assert_eq!(code, 0);
    assert!(out.is_empty());
    assert!(
        err.contains("No instance found. Run `limactl create` to create an instance."),
        "{err}"
    );

    env.instance("beta", YAML);
    env.instance("alpha", &YAML.replace("cpus: 2", "cpus: 1"));
    let (code, out, _) = env.run(&["list"]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME", "STATUS", "SSH", "VMTYPE", "ARCH", "CPUS", "MEMORY", "DISK", "DIR"
        ]
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        &row[..8],
        [
            "alpha",
            "Stopped",
            "127.0.0.1:0",
            "qemu",
            "x86_64",
            "1",
            "2GiB",
            "10GiB"
        ]
    );
    assert!(lines[2].starts_with("beta "), "{out}");

    let j = env.list_json();
    assert_eq!(j.len(), 2);
    assert_eq!(j[0]["name"], "alpha");
    assert_eq!(j[0]["status"], "Stopped");
    assert_eq!(j[0]["memory"], 2u64 << 30);
    assert_eq!(j[0]["disk"], 10u64 << 30);
    assert_eq!(j[0]["config"]["cpus"], 1);
    let keys: Vec<&String> = j[0].as_object().unwrap().keys().collect();
    assert_eq!(&keys[..4], ["name", "hostname", "status", "dir"]);

    let (_, out, _) = env.run(&["list", "--format", "{{.Name}}:{{.Status}}:{{.CPUs}}"]);
    assert_eq!(out, "alpha:Stopped:1\nbeta:Stopped:2\n");
    let (_, out, _) = env.run(&["list", "--format", "yaml"]);
    assert!(out.starts_with("---\nname: alpha\n"), "{out}");
    let (_, out, _) = env.run(&["ls", "-q"]);
    assert_eq!(out, "alpha\nbeta\n");
    let (_, out, _) = env.run(&["list", "--filter", ".config.cpus > 1", "-q"]);
    assert_eq!(out, "beta\n");
    // yq prints a string result unquoted, as Lima's list does.
    let (_, out, _) = env.run(&["list", "--yq", ".name"]);
    assert_eq!(out, "alpha\nbeta\n");
    let (_, out, _) = env.run(&["list", "--list-fields"]);
    assert!(out.lines().any(|l| l == "SSHLocalPort"), "{out}");
    let (code, _, err) = env.run(&["list", "-q", "--format", "json"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("option --quiet can only be used with '--format table'"),
        "{err}"
    );
    let (code, _, err) = env.run(&["list", "--yq", "env.HOME"]);
    assert_eq!(code, 1);
    assert!(err.contains("env operations have been disabled"), "{err}");
}

#[test]
fn unknown_names_and_broken_dirs() {
    let env = Env::new();
    env.instance("good", YAML);
    let (code, out, err) = env.run(&["list", "good", "nope"]);
    assert_eq!(code, 1);
    assert!(out.contains("good"), "matches are still printed: {out}");
    assert!(err.contains("No instance matching nope found."), "{err}");
    assert!(
        err.contains("level=fatal msg=\"unmatched instances\""),
        "{err}"
    );

    std::fs::create_dir_all(env.lima_home().join("nofile")).unwrap();
    env.instance("unparsable", "images: [\n");
    std::fs::create_dir_all(env.lima_home().join("_config")).unwrap();
    std::fs::create_dir_all(env.lima_home().join(".hidden")).unwrap();
    let j = env.list_json();
    let by = |n: &str| j.iter().find(|i| i["name"] == n).cloned().unwrap();
    assert_eq!(j.len(), 3, "{j:?}");
    assert_eq!(by("nofile")["status"], "Broken");
    assert_eq!(by("unparsable")["status"], "");
    assert!(
        by("unparsable")["errors"][0]
            .as_str()
            .unwrap()
            .contains("lima.yaml:"),
        "{j:?}"
    );
    let (code, _, err) = env.run(&["list"]);
    assert_eq!(code, 0);
    assert!(err.contains("instance `nofile` has errors"), "{err}");
}

#[test]
fn liveness_comes_from_locks_not_pid_files() {
    let env = Env::new();
    let dir = env.instance("vm", YAML);

    // A stale ha.pid naming a live, unrelated process (this test) must not
    // make the instance look running, and nothing may be signalled.
    std::fs::write(dir.join("ha.pid"), format!("{}\n", std::process::id())).unwrap();
    std::fs::write(dir.join("qemu.pid"), "garbage\n").unwrap();
    let j = env.list_json();
    assert_eq!(j[0]["status"], "Stopped");
    assert!(j[0].get("hostAgentPID").is_none(), "{j:?}");

    // The host agent and QEMU holding their locks: Running, pids reported.
    let mut holder = hold_locks(&dir, &["ha.lock", "qemu.lock"]);
    std::fs::write(dir.join("ha.pid"), format!("{}\n", holder.id())).unwrap();
    let j = env.list_json();
    assert_eq!(j[0]["status"], "Running", "{j:?}");
    assert_eq!(j[0]["hostAgentPID"], holder.id());
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(env.list_json()[0]["status"], "Stopped");

    // Only the host agent alive: Broken with Lima's reason.
    let mut holder = hold_locks(&dir, &["ha.lock"]);
    let j = env.list_json();
    assert_eq!(j[0]["status"], "Broken");
    assert_eq!(j[0]["errors"][0], "host agent is running but driver is not");
    holder.kill().unwrap();
    holder.wait().unwrap();

    // The ssh port recorded by the last start is reported.
    std::fs::write(
        dir.join("ssh.config"),
        "Host lima-vm\n  Hostname 127.0.0.1\n  Port 60123\n",
    )
    .unwrap();
    assert_eq!(env.list_json()[0]["sshLocalPort"], 60123);
}

#[test]
fn protect_and_unprotect() {
    let env = Env::new();
    let dir = env.instance("vm", YAML);
    let (code, _, err) = env.run(&["protect", "vm"]);
    assert_eq!(code, 0);
    assert!(err.contains("Protected `vm`"), "{err}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(dir.join("protected"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o400
    );
    let (_, _, err) = env.run(&["protect", "vm"]);
    assert!(
        err.contains("Instance `vm` is already protected. Skipping."),
        "{err}"
    );
    assert_eq!(env.list_json()[0]["protected"], true);
    let (code, _, err) = env.run(&["protect", "nope", "../etc"]);
    assert_eq!(code, 1);
    assert!(err.contains("failed to inspect instance `nope`"), "{err}");
    assert!(err.contains("invalid instance name `../etc`"), "{err}");
    let (_, _, err) = env.run(&["unprotect", "vm"]);
    assert!(err.contains("Unprotected `vm`"), "{err}");
    let (_, _, err) = env.run(&["unprotect", "vm"]);
    assert!(
        err.contains("Instance `vm` isn't protected. Skipping."),
        "{err}"
    );
}

#[test]
fn disks() {
    let env = Env::new();
    let (code, _, err) = env.run(&["disk", "create", "data", "--size", "1GiB"]);
    assert_eq!(code, 0, "{err}");
    let datadisk = env.lima_home().join("_disk/data/datadisk");
    assert!(datadisk.exists());
    let (code, _, err) = env.run(&["disk", "create", "data", "--size", "1GiB"]);
    assert_eq!(code, 1);
    assert!(err.contains("disk `data` already exists"), "{err}");
    for bad in ["../x", "a/b", ".x", ""] {
        let (code, _, err) = env.run(&["disk", "create", bad, "--size", "1GiB"]);
        assert_eq!(code, 1, "{bad:?}: {err}");
        assert!(!env.lima_home().join("x").exists());
    }
    let (code, _, err) = env.run(&["disk", "create", "y", "--size", "lots"]);
    assert_eq!(code, 1);
    assert!(err.contains("invalid size"), "{err}");

    let (_, out, _) = env.run(&["disk", "list", "--json"]);
    let d: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(d["name"], "data");
    assert_eq!(d["size"], 1u64 << 30);
    assert_eq!(d["format"], "qcow2");
    assert_eq!(d["mountPoint"], "/mnt/lima-data");

    let (code, _, _) = env.run(&["disk", "resize", "data", "--size", "2GiB"]);
    assert_eq!(code, 0);
    let (code, _, err) = env.run(&["disk", "resize", "data", "--size", "1GiB"]);
    assert_eq!(code, 1);
    assert!(err.contains("disk shrinking is not supported"), "{err}");
    let (_, out, _) = env.run(&["disk", "ls"]);
    assert!(out.contains("2GiB"), "{out}");

    // Locked by a running instance: delete and resize refuse, unlock refuses.
    let inst = env.instance("vm", YAML);
    std::os::unix::fs::symlink(&inst, env.lima_home().join("_disk/data/in_use_by")).unwrap();
    let mut holder = hold_locks(&inst, &["ha.lock", "qemu.lock"]);
    let (code, _, err) = env.run(&["disk", "delete", "data"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("cannot delete disk `data` in use by instance `vm`"),
        "{err}"
    );
    let (code, _, _) = env.run(&["disk", "unlock", "data"]);
    assert_eq!(code, 1);
    let (code, _, err) = env.run(&["disk", "delete", "-f", "data"]);
    assert_eq!(code, 1, "a running user is never overridden: {err}");
    holder.kill().unwrap();
    holder.wait().unwrap();

    // The owner stopped: the lock is stale, reported as such, and can be removed.
    let (_, out, _) = env.run(&["disk", "list"]);
    assert!(out.contains("vm (stale)"), "{out}");
    let (code, _, err) = env.run(&["disk", "unlock", "data"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("which is not running"), "{err}");
    assert!(!env.lima_home().join("_disk/data/in_use_by").exists());

    // A lock naming a deleted instance does not block deletion.
    std::os::unix::fs::symlink(
        env.lima_home().join("gone"),
        env.lima_home().join("_disk/data/in_use_by"),
    )
    .unwrap();
    let (code, _, err) = env.run(&["disk", "delete", "data"]);
    assert_eq!(code, 0, "{err}");
    assert!(!env.lima_home().join("_disk/data").exists());
    let (code, _, err) = env.run(&["disk", "delete", "data"]);
    assert_eq!(code, 0);
    assert!(err.contains("Ignoring non-existent disk `data`"), "{err}");
}

#[test]
fn list_never_sees_half_instances() {
    let env = Env::new();
    let home = lima::store::Home::new(env.lima_home());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let home2 = home.clone();
    let churn = std::thread::spawn(move || {
        let mut n = 0u64;
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            let name = format!("churn{}", n % 3);
            let _ = lima::store::create_instance_dir(
                &home2,
                &name,
                &[lima::store::NewFile {
                    name: "lima.yaml",
                    data: YAML.as_bytes(),
                    mode: 0o644,
                }],
            );
            let _ = lima::store::remove_instance_dir(&home2, &format!("churn{}", (n + 1) % 3));
            n += 1;
        }
        n
    });
    for _ in 0..200 {
        let out = env.cmd().args(["list", "--json"]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for line in String::from_utf8(out.stdout).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(
                v["status"], "Stopped",
                "a half-made or half-deleted instance was listed: {v}"
            );
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rounds = churn.join().unwrap();
    assert!(rounds > 10, "the churn thread ran ({rounds} rounds)");
}

#[test]
fn yq_command() {
    let env = Env::new();
    let f = env.dir.path().join("doc.yaml");
    std::fs::write(&f, "a: 1\nb: [x, y]\n---\na: 2\n").unwrap();
    let (code, out, err) = env.run(&["yq", ".a", f.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "1\n---\n2\n");
    let (_, out, _) = env.run(&["yq", "-o", "json", "-I", "0", ".b", f.to_str().unwrap()]);
    assert_eq!(out, "[\"x\",\"y\"]\nnull\n");
    let (_, out, _) = env.run(&["yq", "-n", ".x = {\"k\": \"v\"}"]);
    assert_eq!(out, "x:\n  k: v\n");
    let (code, _, err) = env.run(&["yq", "-n", "env"]);
    assert_eq!(code, 1);
    assert!(err.contains("env operations have been disabled"), "{err}");
    let (code, _, err) = env.run(&["yq", ".a", "missing.yaml"]);
    assert_eq!(code, 1);
    assert!(err.contains("missing.yaml"), "{err}");
}

#[test]
fn info_reports_home_and_templates() {
    let env = Env::new();
    let (code, out, err) = env.run(&["info"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["limaHome"], env.lima_home().to_string_lossy().as_ref());
    assert!(v["version"].as_str().unwrap().starts_with("2.0.0"));
    assert!(
        v["templates"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "default")
    );
    assert_eq!(v["vmTypes"], serde_json::json!(["qemu"]));
    assert!(v["defaultTemplate"]["images"].is_array());
    let (_, out, _) = env.run(&["info", "--yq", ".hostOS"]);
    assert_eq!(out.trim(), "\"linux\"");
}

/// How a command ended whose stdout's reader went away: (signal, exit code, stderr).
fn ended(child: std::process::Child) -> (Option<i32>, Option<i32>, String) {
    use std::os::unix::process::ExitStatusExt;
    let out = child.wait_with_output().unwrap();
    (
        out.status.signal(),
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Issue 13 row 6: a closed stdout ends every command quietly, as it ends
/// Lima (a Go program killed by SIGPIPE: the shell reports 141), never with
/// a panic or a `level=fatal` line.
#[test]
fn a_closed_stdout_ends_commands_quietly() {
    use std::io::BufRead;
    let env = Env::new();
    for n in ["a", "b"] {
        env.instance(n, YAML);
    }
    let file = env.dir.path().join("c.yaml");
    std::fs::write(&file, YAML).unwrap();
    let file = file.to_str().unwrap();
    let commands: &[&[&str]] = &[
        &["info"],
        &["list"],
        &["list", "--format", "json"],
        &["list", "--format", "{{.Name}}"],
        &["apply", "--dry-run", "-o", "json", "-f", file],
        &["apply", "--dry-run", "-f", file],
        &["diff", "-f", file],
        &["template", "list"],
        &["template", "copy", "template:default"],
        &["validate", "--fill", file],
        &["status"],
        &["yq", "-n", ".a = 1"],
        &["--version"],
        &["generate-jsonschema"],
    ];
    // The reader is gone before the first write: every command meets EPIPE.
    for args in commands {
        let (r, w) = nix::unistd::pipe().unwrap();
        drop(r);
        let child = env
            .std_cmd()
            .args(*args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(w))
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (signal, code, err) = ended(child);
        assert!(
            !err.contains("panicked") && !err.contains("level=fatal"),
            "limactl {args:?}: {err}"
        );
        assert_eq!(
            (signal, code),
            (Some(nix::libc::SIGPIPE), None),
            "limactl {args:?} dies of SIGPIPE, as Lima does: {err}"
        );
    }
    // The reader goes away after the first line of an output larger than
    // the pipe's buffer, so the command is still writing when it does.
    for n in 0..300 {
        env.instance(&format!("vm{n:03}"), YAML);
    }
    let big: &[&[&str]] = &[
        &["list", "--format", "json"],
        // More than the pipe's 64 KiB, fewer than yq's 100 000-result cap.
        &["yq", "-n", "-o", "json", "-I", "0", "range(50000)"],
    ];
    for args in big {
        let mut child = env
            .std_cmd()
            .args(*args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        reader.read_line(&mut first).unwrap();
        assert!(!first.is_empty(), "limactl {args:?} printed a first line");
        drop(reader);
        let (signal, code, err) = ended(child);
        assert!(
            !err.contains("panicked") && !err.contains("level=fatal"),
            "limactl {args:?}: {err}"
        );
        assert_eq!(
            (signal, code),
            (Some(nix::libc::SIGPIPE), None),
            "limactl {args:?}: {err}"
        );
    }
}
