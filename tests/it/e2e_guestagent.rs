//! The guest agent and what makes a VM feel local, with one real VM:
//! automatic port forwarding (default rule, `ignore`, `hostPort`, UDP), a
//! writable reverse-sshfs mount, an additional disk, a readiness probe, an
//! ansible playbook (a fake `ansible-playbook` that uses the inventory),
//! time sync, and `limactl cp` both ways. The 9p mount is checked in
//! `e2e_vm`'s UEFI boot.

use crate::common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Env, guest_agent, guest_lock, require_qemu, skipped, test_template};

/// A GET through 127.0.0.1:`port` gets python's `200` answer.
fn http_ok(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    if s.write_all(b"GET / HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.0 200")
}

fn refused(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(1),
    )
    .is_err()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `f` every 50 ms; returns how long it took.
fn within(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    start.elapsed()
}

/// `portForward` events of ha.stdout.log as (type, guestAddr, hostAddr).
fn port_events(dir: &Path) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(dir.join("ha.stdout.log")).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            let pf = v["status"].get("portForward")?.clone();
            Some((
                pf["type"].as_str()?.to_string(),
                pf["guestAddr"].as_str()?.to_string(),
                pf["hostAddr"].as_str().unwrap_or("").to_string(),
            ))
        })
        .collect()
}

fn has_event(dir: &Path, kind: &str, guest: &str, host: &str) -> bool {
    port_events(dir)
        .iter()
        .any(|(k, g, h)| k == kind && g == guest && h == host)
}

/// A `portForward` event with `protocol: "udp"`.
fn has_udp_event(dir: &Path, kind: &str, guest: &str, host: &str) -> bool {
    let text = std::fs::read_to_string(dir.join("ha.stdout.log")).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .any(|v| {
            let pf = &v["status"]["portForward"];
            pf["type"] == kind
                && pf["protocol"] == "udp"
                && pf["guestAddr"] == guest
                && pf["hostAddr"] == host
        })
}

/// Sends `msg` from `client` to 127.0.0.1:`port` and waits briefly for
/// the echo; true when it came back unchanged.
fn udp_echoed(client: &UdpSocket, port: u16, msg: &[u8]) -> bool {
    let _ = client.set_read_timeout(Some(Duration::from_millis(300)));
    if client.send_to(msg, ("127.0.0.1", port)).is_err() {
        return false;
    }
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + Duration::from_millis(300);
    while Instant::now() < deadline {
        match client.recv_from(&mut buf) {
            // Stale echoes of earlier tries are skipped.
            Ok((n, _)) if &buf[..n] == msg => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    false
}

/// A UDP echo server in the guest on 0.0.0.0:8090.
const UDP_ECHO: &str = "import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('0.0.0.0', 8090))
while True:
    d, a = s.recvfrom(65535)
    s.sendto(d, a)
";

/// A fake `ansible-playbook`: proves the inventory reaches the guest by
/// running ssh with its `ansible_ssh_common_args` and `ansible_host`.
const FAKE_ANSIBLE: &str = r#"#!/bin/sh
set -eu
[ "$1" = -i ] || { echo "usage: $0 -i INVENTORY PLAYBOOK" >&2; exit 2; }
inv=$2 book=$3
args=$(sed -n 's/.*ansible_ssh_common_args: "\(.*\)"/\1/p' "$inv")
host=$(sed -n 's/.*ansible_host: "\(.*\)"/\1/p' "$inv")
# shellcheck disable=SC2086
exec ssh $args "$host" "echo $PARAM_PROBE $(basename "$book") >/tmp/ansible-ran"
"#;

#[test]
fn forwards_mounts_disks_probes_ansible_time_and_copy() {
    if skipped("guest agent e2e") {
        return;
    }
    require_qemu();
    let template = test_template(false);
    let ga = guest_agent();
    let env = Env::new();
    let root = env.dir.path();
    let share = root.join("share");
    std::fs::create_dir_all(&share).unwrap();
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let fake = bin.join("ansible-playbook");
    std::fs::write(&fake, FAKE_ANSIBLE).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    for p in [8080, 8081] {
        assert!(
            refused(p),
            "host port {p} is in use; this test needs it free"
        );
    }
    assert!(
        UdpSocket::bind("127.0.0.1:8090").is_ok(),
        "host UDP port 8090 is in use; this test needs it free"
    );
    let remap = free_port();
    let static_port = free_port();
    std::fs::write(root.join("site.yml"), "- hosts: all\n").unwrap();
    let yaml = root.join("vm.yaml");
    std::fs::write(
        &yaml,
        format!(
            r#"base: {template}
mounts:
- location: {share}
  mountPoint: /mnt/share
  writable: true
additionalDisks: [data]
portForwards:
- guestPort: 8081
  ignore: true
- guestPort: 8082
  hostPort: {remap}
- guestPort: 8083
  hostPort: {static_port}
  static: true
- guestSocket: /tmp/lima-test.sock
  hostSocket: test.sock
param:
  PROBE: probed
probes:
- description: the probe ran
  script: |
    #!/bin/bash
    echo "$PARAM_PROBE" >/tmp/probe-ran
provision:
- mode: ansible
  playbook: {root}/site.yml
"#,
            template = template.display(),
            share = share.display(),
            root = root.display(),
        ),
    )
    .unwrap();
    let with_env = |c: &mut assert_cmd::Command| {
        c.env("LIMA_GUESTAGENT", &ga).env("PATH", &path);
    };
    let run = |args: &[&str]| env.run_with(args, with_env);
    let ok = |args: &[&str]| env.ok_with(args, with_env);
    let sh = |script: &str| -> String { ok(&["shell", "vm", "sh", "-c", script]) };

    ok(&["disk", "create", "data", "--size", "1GiB"]);
    let _guest = guest_lock();
    let t = Instant::now();
    ok(&["start", "--name", "vm", yaml.to_str().unwrap()]);
    eprintln!("ready after {:.1}s", t.elapsed().as_secs_f64());
    let dir = env.instance_dir("vm");
    let stderr_log = || std::fs::read_to_string(dir.join("ha.stderr.log")).unwrap();
    assert!(stderr_log().contains("Guest agent is running"));
    assert_eq!(env.status("vm"), "Running");

    // Time sync: put the guest clock 30 s behind; the agent resets it
    // within 10 s (checked at the end).
    sh("sudo date -s @$(($(date +%s) - 30)) >/dev/null");
    let clock_set = Instant::now();

    // Port forwarding: 8080 (default rule), 8081 (ignored), 8082 (remapped).
    // The static forward exists before anything listens.
    assert!(has_event(
        &dir,
        "forwarding",
        "127.0.0.1:8083",
        &format!("127.0.0.1:{static_port}")
    ));
    sh("cd /tmp && for p in 8080 8081 8082 8083; do \
        nohup python3 -m http.server $p --bind 127.0.0.1 >/dev/null 2>&1 </dev/null & \
        echo $! >/tmp/http-$p.pid; done");
    sh(
        "nohup python3 -c 'import socket\ns = socket.socket(socket.AF_UNIX)\ns.bind(\"/tmp/lima-test.sock\")\ns.listen()\nwhile True:\n    c, _ = s.accept()\n    c.sendall(b\"unix\\n\")\n    c.close()' >/dev/null 2>&1 </dev/null &",
    );
    let took = within("127.0.0.1:8080 forwarded", Duration::from_secs(20), || {
        http_ok(8080)
    });
    eprintln!(
        "guest :8080 usable on the host {:.2}s after the server was started",
        took.as_secs_f64()
    );
    assert!(has_event(
        &dir,
        "forwarding",
        "127.0.0.1:8080",
        "127.0.0.1:8080"
    ));
    within(
        "127.0.0.1:8082 on host port",
        Duration::from_secs(20),
        || http_ok(remap),
    );
    assert!(has_event(
        &dir,
        "forwarding",
        "127.0.0.1:8082",
        &format!("127.0.0.1:{remap}")
    ));
    within("the ignored port reported", Duration::from_secs(10), || {
        has_event(&dir, "not-forwarding", "127.0.0.1:8081", "")
    });
    within("the static forward", Duration::from_secs(20), || {
        http_ok(static_port)
    });
    // guestSocket → hostSocket (relative: <inst>/sock/).
    let host_sock = dir.join("sock/test.sock");
    within("the socket forward", Duration::from_secs(20), || {
        let Ok(mut c) = std::os::unix::net::UnixStream::connect(&host_sock) else {
            return false;
        };
        let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
        let mut got = String::new();
        let _ = c.read_to_string(&mut got);
        got == "unix\n"
    });

    // UDP: a guest echo server on 0.0.0.0:8090/udp, reached on the host's
    // 127.0.0.1:8090/udp through the guest agent; one flow per client.
    sh(&format!(
        "nohup python3 -c {} >/dev/null 2>&1 </dev/null & echo $! >/tmp/udp-8090.pid",
        lima::ssh::shell_quote(UDP_ECHO)
    ));
    let c1 = UdpSocket::bind("127.0.0.1:0").unwrap();
    let c2 = UdpSocket::bind("127.0.0.1:0").unwrap();
    let took = within("8090/udp forwarded", Duration::from_secs(10), || {
        udp_echoed(&c1, 8090, b"ping 1")
    });
    eprintln!(
        "guest 8090/udp usable on the host {:.2}s after the server was started",
        took.as_secs_f64()
    );
    assert!(udp_echoed(&c2, 8090, b"ping 2"));
    assert!(udp_echoed(&c1, 8090, &[0xab; 1400]));
    assert!(has_udp_event(
        &dir,
        "forwarding",
        "0.0.0.0:8090",
        "127.0.0.1:8090"
    ));
    assert!(stderr_log().contains("Forwarding UDP from 0.0.0.0:8090 to 127.0.0.1:8090"));
    sh("kill $(cat /tmp/udp-8090.pid)");
    within("the UDP stopping event", Duration::from_secs(10), || {
        has_udp_event(&dir, "stopping", "0.0.0.0:8090", "127.0.0.1:8090")
    });
    assert!(stderr_log().contains("Stopping forwarding UDP from 0.0.0.0:8090 to 127.0.0.1:8090"));
    assert!(
        UdpSocket::bind("127.0.0.1:8090").is_ok(),
        "the host UDP socket is still open"
    );

    assert!(refused(8081), "an ignored guest port must not be forwarded");
    assert!(
        refused(8082),
        "a remapped port is not also forwarded as itself"
    );
    // The server exits: the forward goes away.
    sh("kill $(cat /tmp/http-8080.pid)");
    within(
        "127.0.0.1:8080 no longer forwarded",
        Duration::from_secs(10),
        || refused(8080),
    );
    // The event follows `ssh -O cancel`, a few milliseconds later.
    within("the stopping event", Duration::from_secs(5), || {
        has_event(&dir, "stopping", "127.0.0.1:8080", "127.0.0.1:8080")
    });

    // reverse-sshfs: a writable host directory, both ways.
    std::fs::write(share.join("from-host"), "hello from the host\n").unwrap();
    assert_eq!(sh("cat /mnt/share/from-host"), "hello from the host\n");
    sh("echo hello from the guest >/mnt/share/from-guest");
    assert_eq!(
        std::fs::read_to_string(share.join("from-guest")).unwrap(),
        "hello from the guest\n"
    );
    assert!(sh("grep ' /mnt/share ' /proc/mounts").contains("fuse.sshfs"));

    // The additional disk is formatted and mounted.
    let m = sh("findmnt -n -o FSTYPE,SOURCE /mnt/lima-data");
    let m: Vec<&str> = m.split_whitespace().collect();
    assert!(m[0] == "ext4" && m[1].starts_with("/dev/vd"), "{m:?}");

    // The probe and the playbook ran, with the param.
    assert_eq!(sh("cat /tmp/probe-ran").trim(), "probed");
    assert_eq!(sh("cat /tmp/ansible-ran").trim(), "probed site.yml");
    let inv = std::fs::read_to_string(dir.join("ansible-inventory.yaml")).unwrap();
    assert!(inv.contains("ansible_host: \"lima-vm\""), "{inv}");

    // cp: host → guest (auto: rsync) and guest → host (scp), files and -r.
    let src = root.join("tree");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a"), "A").unwrap();
    std::fs::write(src.join("sub/b"), "B").unwrap();
    ok(&["cp", src.join("a").to_str().unwrap(), "vm:/tmp/a-copy"]);
    assert_eq!(sh("cat /tmp/a-copy"), "A");
    ok(&["copy", "-r", src.to_str().unwrap(), "vm:/tmp/tree-copy"]);
    assert_eq!(sh("cat /tmp/tree-copy/sub/b"), "B");
    let back = root.join("back");
    ok(&[
        "cp",
        "--backend=scp",
        "vm:/tmp/a-copy",
        back.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "A");
    let back_dir = root.join("back-tree");
    ok(&[
        "cp",
        "-r",
        "--backend=scp",
        "vm:/tmp/tree-copy",
        back_dir.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read_to_string(back_dir.join("sub/b")).unwrap(),
        "B"
    );
    let (code, _, err) = run(&["cp", "a:b:c", "x"]);
    assert_eq!(code, 1);
    assert!(err.contains("multiple colons"), "{err}");

    // The clock is back in sync (one sync every 10 s).
    if let Some(rest) = Duration::from_secs(12).checked_sub(clock_set.elapsed()) {
        std::thread::sleep(rest);
    }
    let before = std::time::SystemTime::now();
    let guest: f64 = sh("date +%s.%N").trim().parse().unwrap();
    let after = std::time::SystemTime::now();
    let secs = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    assert!(
        guest > secs(before) - 1.0 && guest < secs(after) + 1.0,
        "guest clock {guest} vs host {}..{}",
        secs(before),
        secs(after)
    );
    assert!(stderr_log().contains("Time sync: the guest clock was"));

    // Stop: forwards reported stopping, mounts' processes gone.
    ok(&["stop", "vm"]);
    assert!(has_event(
        &dir,
        "stopping",
        "127.0.0.1:8082",
        &format!("127.0.0.1:{remap}")
    ));
    assert!(
        !host_sock.exists(),
        "the forwarded host socket is left behind"
    );
    let sftp = std::process::Command::new("pgrep")
        .args(["-f", &format!("sftp-server -e -d {}", share.display())])
        .output()
        .unwrap();
    assert!(
        sftp.stdout.is_empty(),
        "sftp-server left running: {}",
        String::from_utf8_lossy(&sftp.stdout)
    );
    ok(&["delete", "vm"]);
}

#[test]
fn ansible_without_ansible_playbook_fails_before_booting() {
    if skipped("ansible without ansible-playbook") {
        return;
    }
    require_qemu();
    let template = test_template(false);
    let env = Env::new();
    let yaml = env.dir.path().join("vm.yaml");
    // Relative to limactl's working directory (the test's temp dir).
    std::fs::write(env.dir.path().join("site.yml"), "- hosts: all\n").unwrap();
    std::fs::write(
        &yaml,
        format!(
            "base: {}\nprovision:\n- mode: ansible\n  playbook: site.yml\n",
            template.display()
        ),
    )
    .unwrap();
    // Held anyway: the start must not boot, but if it did it must not
    // share the CPUs with another guest.
    let _guest = guest_lock();
    let t = Instant::now();
    let out = env
        .cmd()
        .env("PATH", "/usr/bin:/bin")
        .args(["start", "--name", "ans", yaml.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("{err}");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains("provision[0] (mode: ansible) need `ansible-playbook` on the host"),
        "{err}"
    );
    assert!(t.elapsed() < Duration::from_secs(60));
    assert!(
        !env.instance_dir("ans").join("serial.log").exists(),
        "QEMU was started"
    );
    assert_eq!(env.status("ans"), "Stopped");
}
