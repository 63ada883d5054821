//! End to end with a real VM: QEMU (TCG here) boots the Debian test image
//! built by hack/build-test-image.sh, with real cloud-init and OpenSSH.
//! Few boots, several checks per boot. Fails (never skips) when QEMU or the
//! image is missing; LIMA_SKIP_E2E=1 is a local opt-out CI never sets.

use crate::common;

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

    env.ok(&[
        "create",
        "--name",
        name,
        "--set",
        ".env.LIMA_E2E_ENV = \"from-lima-yaml\"",
        template.to_str().unwrap(),
    ]);
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
    let (code, _, err) = env.run(&["start", name]);
    assert_eq!(code, 0, "{err}");
    eprintln!("first boot ready after {:.1}s", t.elapsed().as_secs_f64());
    // Progress is shown as it happens: the host agent's first requirement
    // line is re-logged long before READY (each line carries its own time).
    let when = |needle: &str| {
        let line = err
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in {err}"));
        let time = line.split('"').nth(1).unwrap();
        chrono::DateTime::parse_from_rfc3339(time).unwrap()
    };
    let shown = when("[hostagent] Waiting for the essential requirement 1");
    let ready = when("READY.");
    assert!(
        (ready - shown).num_seconds() >= 5,
        "progress was held back until the end:\n{err}"
    );
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
    // `env` reaches sessions over the ControlMaster, which is the first SSH
    // connection when it logged in after /etc/environment was written.
    let e = env.ok(&["shell", name, "sh", "-c", "echo \"$LIMA_E2E_ENV\""]);
    assert_eq!(e.trim(), "from-lima-yaml");
    let (code, _, _) = env.run(&["shell", name, "sh", "-c", "exit 7"]);
    assert_eq!(code, 7, "the guest command's exit code is propagated");
    // The user manager delegates every cgroup controller (20-rootless-base's
    // drop-in, written before the first login; Debian's own unit delegates
    // only pids, memory and cpu).
    let controllers = env.ok(&[
        "shell",
        name,
        "sh",
        "-c",
        "cat /sys/fs/cgroup/user.slice/user-$(id -u).slice/user@$(id -u).service/cgroup.controllers",
    ]);
    for c in ["cpuset", "io", "memory", "pids"] {
        assert!(
            controllers.split_whitespace().any(|w| w == c),
            "{c} not delegated: {controllers}"
        );
    }
    everyday_shell_checks(&env, name);
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
    // Stopping a stopped instance is an error, as in Lima.
    let (code, _, err) = env.run(&["stop", name]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("expected status `Running`, got `Stopped`"),
        "{err}"
    );

    // A stale ha.pid (this test's own, live pid) and ha.sock from a killed run
    // must not block the next start, and nothing gets signalled.
    std::fs::write(dir.join("ha.pid"), format!("{}\n", std::process::id())).unwrap();
    std::fs::write(dir.join("ha.sock"), "").unwrap();
    let t = Instant::now();
    // `edit --start` edits the stopped instance, then boots it.
    env.ok(&[
        "edit",
        "--start",
        "--set",
        ".env.LIMA_E2E_ENV = \"edited\"",
        name,
    ]);
    eprintln!("second boot ready after {:.1}s", t.elapsed().as_secs_f64());
    assert_eq!(env.status(name), "Running");
    let e = env.ok(&["shell", name, "sh", "-c", "echo \"$LIMA_E2E_ENV\""]);
    assert_eq!(e.trim(), "edited");
    let marker = env.ok(&["shell", name, "cat", "marker"]);
    assert_eq!(
        marker.trim(),
        "first-boot",
        "the file written in the first boot survives"
    );
    // cloud-init (incl. the per-boot hook) finished cleanly; no unit failed.
    let ci = env.ok(&["shell", name, "cloud-init", "status", "--wait"]);
    assert!(ci.contains("status: done"), "{ci}");
    let failed = env.ok(&[
        "shell",
        name,
        "systemctl",
        "--failed",
        "--no-legend",
        "--plain",
    ]);
    assert_eq!(failed.trim(), "", "failed units in the guest");

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

/// `shell`, `copy` and `tunnel` against a running guest without mounts (issue 15).
fn everyday_shell_checks(env: &Env, name: &str) {
    // No mount holds the host's directory: the session starts in the guest
    // home, which is also reachable under Lima's older `.linux` spelling.
    let out = env.ok(&[
        "shell",
        name,
        "sh",
        "-c",
        "pwd; echo \"$HOME\"; readlink -f \"/home/$(id -un).linux\"",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[1].ends_with(".guest"), "{out}");
    assert_eq!(lines[0], lines[1], "not started in the guest home: {out}");
    assert_eq!(lines[2], lines[1], "no /home/USER.linux: {out}");
    let guest_home = lines[1].to_string();
    let w = env.ok(&["shell", "--workdir", "/tmp", name, "pwd"]);
    assert_eq!(w.trim(), "/tmp");
    let (code, _, _) = env.run(&["shell", "--workdir", "/no/such/dir", name, "true"]);
    assert_eq!(
        code, 1,
        "a missing --workdir fails instead of running elsewhere"
    );
    // --preserve-env carries the host's variables, minus the block list
    // (HOME, PATH, XDG_*), plus what LIMA_SHELLENV_ALLOW exempts.
    let host_path = std::env::var("PATH").unwrap();
    let out = env
        .cmd()
        .env("E2E_KEEP", "kept 'value'")
        .env("XDG_E2E_BLOCKED", "x")
        .env("XDG_E2E_ALLOWED", "y")
        .env("LIMA_SHELLENV_ALLOW", "XDG_E2E_ALLOWED")
        .args([
            "shell",
            "--preserve-env",
            name,
            "sh",
            "-c",
            "printf '%s|%s|%s|%s\\n' \"$E2E_KEEP\" \"$XDG_E2E_BLOCKED\" \"$XDG_E2E_ALLOWED\" \"$HOME\"; echo \"$PATH\"",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        format!("kept 'value'||y|{guest_home}")
    );
    assert_ne!(
        lines.next().unwrap(),
        host_path,
        "the host PATH reached the guest"
    );
    // Without --preserve-env nothing of the host's comes along.
    let out = env
        .cmd()
        .env("E2E_KEEP", "kept")
        .args(["shell", name, "sh", "-c", "echo \"[$E2E_KEEP]\""])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
    // --sync: the host directory is copied under the guest home, the
    // session runs there, and the changes come back only when confirmed.
    let proj = env.dir.path().join("proj");
    std::fs::create_dir_all(&proj).unwrap();
    std::fs::write(proj.join("in.txt"), "from host\n").unwrap();
    let p = proj.to_str().unwrap();
    let script = "pwd; cat in.txt; echo from guest >out.txt";
    let out = env.ok(&["shell", "--sync", p, name, "sh", "-c", script]);
    assert_eq!(out, format!("{guest_home}{p}\nfrom host\n"));
    assert!(
        !proj.join("out.txt").exists(),
        "changes came back without a confirmation"
    );
    env.ok(&["shell", "-y", "--sync", p, name, "sh", "-c", script]);
    assert_eq!(
        std::fs::read_to_string(proj.join("out.txt")).unwrap(),
        "from guest\n"
    );
    // --reconnect drops the ControlMaster; the next login works.
    assert_eq!(
        env.ok(&["shell", "--reconnect", name, "echo", "again"]),
        "again\n"
    );
    // copy with both paths in the instance (auto must not pick rsync).
    env.ok(&[
        "copy",
        &format!("{name}:/etc/hostname"),
        &format!("{name}:/tmp/hn"),
    ]);
    assert_eq!(
        env.ok(&["shell", name, "cat", "/tmp/hn"]).trim(),
        format!("lima-{name}")
    );
    // tunnel: a SOCKS5 proxy on 127.0.0.1 that reaches the guest's sshd.
    let out = env.ok(&["tunnel", name]);
    let port: u16 = out
        .split("socks5h://127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split('`').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {out}"));
    assert!(
        out.contains(&format!("<http://lima-{name}.internal>")),
        "{out}"
    );
    let banner = socks5_read(port, 22);
    assert!(banner.starts_with("SSH-2.0-"), "{banner:?}");
}

/// Connects through the SOCKS5 proxy on `proxy` to the guest's own
/// 127.0.0.1:`port` and returns the first bytes the service sends.
fn socks5_read(proxy: u16, port: u16) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", proxy)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(&[5, 1, 0]).unwrap();
    let mut hello = [0u8; 2];
    s.read_exact(&mut hello).unwrap();
    assert_eq!(hello, [5, 0], "no-auth SOCKS5 refused");
    let mut req = vec![5, 1, 0, 1, 127, 0, 0, 1];
    req.extend(port.to_be_bytes());
    s.write_all(&req).unwrap();
    let mut reply = [0u8; 10];
    s.read_exact(&mut reply).unwrap();
    assert_eq!(reply[1], 0, "SOCKS5 connect failed: {reply:?}");
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Serves one file over HTTP/1.1 on 127.0.0.1 (GET and HEAD); returns the port.
fn serve_file(path: std::path::PathBuf) -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            let path = path.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(&conn);
                let mut line = String::new();
                let _ = r.read_line(&mut line);
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                }
                let mut w = &conn;
                let len = std::fs::metadata(&path).unwrap().len();
                let _ = write!(
                    w,
                    "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nContent-Type: application/octet-stream\r\nLast-Modified: Mon, 01 Jan 2024 00:00:00 GMT\r\nConnection: close\r\n\r\n"
                );
                if line.starts_with("GET ") {
                    let mut f = std::fs::File::open(&path).unwrap();
                    let _ = std::io::copy(&mut f, &mut w);
                }
            });
        }
    });
    port
}

#[test]
fn uefi_boot_of_an_image_downloaded_over_http() {
    if skipped("uefi over http") {
        return;
    }
    require_qemu();
    let uefi = test_template(true);
    let node = lima::spec::yaml::parse_single("t", &std::fs::read_to_string(&uefi).unwrap())
        .unwrap()
        .unwrap()
        .to_json();
    let image = std::path::PathBuf::from(node["images"][0]["location"].as_str().unwrap());
    let digest = node["images"][0]["digest"].as_str().unwrap().to_string();
    let port = serve_file(image);
    let env = Env::new();
    // A writable 9p share (this boot also checks mountType 9p). With 9p's
    // security_model none the guest user needs the host's permission bits.
    let share = env.dir.path().join("share9p");
    std::fs::create_dir_all(&share).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&share, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::write(share.join("from-host"), "hello over 9p\n").unwrap();
    let t = env.dir.path().join("uefi.yaml");
    std::fs::write(
        &t,
        format!(
            "images:\n- location: http://127.0.0.1:{port}/debian-12-uefi.qcow2\n  arch: x86_64\n  digest: {digest}\ncpus: 2\nmemory: 2GiB\ndisk: 4GiB\nmountType: 9p\nmounts:\n- location: {}\n  mountPoint: /mnt/9p\n  writable: true\ncontainerd: {{system: false, user: false}}\n",
            share.display()
        ),
    )
    .unwrap();
    let cache = env.dir.path().join("cache");
    let _guest = guest_lock();
    let out = env
        .cmd()
        .env("XDG_CACHE_HOME", &cache)
        .args(["start", "--progress", "--name", "uefi", t.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("{err}");
    assert!(out.status.success(), "start failed: {err}");
    // --progress: the guest's provisioning output was shown while waiting
    // (boot.sh logs each script it runs into cloud-init-output.log).
    assert!(
        err.lines().any(|l| l.contains("[cloud-init] ")),
        "no provisioning output shown: {err}"
    );
    // The image came through the download cache.
    let entries: Vec<_> = std::fs::read_dir(cache.join("lima/download/by-url-sha256"))
        .unwrap()
        .collect();
    assert_eq!(entries.len(), 1);
    let entry = entries[0].as_ref().unwrap().path();
    assert!(entry.join("data").exists());
    assert_eq!(
        std::fs::read_to_string(entry.join("sha256.digest")).unwrap(),
        digest
    );
    // Booted through UEFI firmware (no direct kernel boot, no legacy BIOS).
    assert!(!env.instance_dir("uefi").join("kernel").exists());
    let efi = env.ok(&[
        "shell",
        "uefi",
        "sh",
        "-c",
        "test -d /sys/firmware/efi && echo uefi",
    ]);
    assert_eq!(efi.trim(), "uefi");
    // The 9p share: read and written from the guest.
    let m = env.ok(&["shell", "uefi", "findmnt", "-n", "-o", "FSTYPE", "/mnt/9p"]);
    assert_eq!(m.trim(), "9p");
    assert_eq!(
        env.ok(&["shell", "uefi", "cat", "/mnt/9p/from-host"]),
        "hello over 9p\n"
    );
    env.ok(&[
        "shell",
        "uefi",
        "sh",
        "-c",
        "echo written over 9p >/mnt/9p/from-guest",
    ]);
    assert_eq!(
        std::fs::read_to_string(share.join("from-guest")).unwrap(),
        "written over 9p\n"
    );
    // In a mounted host directory, `shell` starts in it (through the mount
    // point), as `lima make` in a project needs; --workdir still wins.
    std::fs::create_dir_all(share.join("proj")).unwrap();
    let pwd = |args: &[&str]| {
        let out = env
            .cmd()
            .current_dir(share.join("proj"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(pwd(&["shell", "uefi", "pwd"]), "/mnt/9p/proj");
    assert_eq!(pwd(&["shell", "--workdir", "/", "uefi", "pwd"]), "/");
    env.ok(&["delete", "--force", "uefi"]);
    assert!(!env.instance_dir("uefi").exists());
}

#[test]
fn a_guest_that_never_becomes_ready_times_out_with_its_console() {
    if skipped("never ready") {
        return;
    }
    require_qemu();
    let template = test_template(false);
    let env = Env::new();
    let _guest = guest_lock();
    env.ok(&[
        "create",
        "--name",
        "stuck",
        "--set",
        ".images[0].kernel.cmdline = \"root=LABEL=no-such-root ro console=ttyS0 rootdelay=1\"",
        template.to_str().unwrap(),
    ]);
    let t = Instant::now();
    let (code, _, err) = env.run(&["start", "--timeout", "45s", "stuck"]);
    assert_eq!(code, 1);
    assert!(
        t.elapsed() < Duration::from_secs(120),
        "the timeout was not honoured"
    );
    assert!(err.contains("did not become ready within 45s"), "{err}");
    assert!(
        err.contains("serial.log"),
        "the error shows the console: {err}"
    );
    env.ok(&["stop", "-f", "stuck"]);
    assert_eq!(env.status("stuck"), "Stopped");
    env.ok(&["delete", "stuck"]);
}
