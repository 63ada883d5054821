//! containerd in a real guest, both modes in one VM (`containerd.system` and
//! `containerd.user`), from the offline archive of hack/build-test-containerd.sh
//! (Debian's containerd, runc, CNI plugins, RootlessKit; no nerdctl, so `ctr`):
//! the archive reaches the guest through cidata and is installed; a rootful and a
//! rootless container print markers; a port each publishes is reached from the
//! host on 127.0.0.1 through the guest agent's forwarding, and so is one
//! published through CNI's portmap (DNAT rules, no socket); `lima` runs a command
//! in the instance; after a guest reboot both containerds run again without a
//! reinstall.

use crate::common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Env, guest_agent, guest_lock, require_qemu, skipped, test_template};

/// (archive, "sha256:HEX"): LIMA_TEST_CONTAINERD_ARCHIVE ("PATH sha256:HEX", as
/// hack/test.sh exports it), else the last line of hack/build-test-containerd.sh.
fn test_archive() -> (PathBuf, String) {
    let line = match std::env::var("LIMA_TEST_CONTAINERD_ARCHIVE") {
        Ok(v) if !v.is_empty() => v,
        _ => {
            let script =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("hack/build-test-containerd.sh");
            let out = std::process::Command::new(&script)
                .stderr(std::process::Stdio::inherit())
                .output()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
            assert!(
                out.status.success(),
                "{} failed (run hack/install-deps.sh first)",
                script.display()
            );
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .last()
                .unwrap_or("")
                .to_string()
        }
    };
    let (path, digest) = line
        .split_once(' ')
        .unwrap_or_else(|| panic!("expected `PATH sha256:HEX`, got {line:?}"));
    let path = PathBuf::from(path);
    assert!(
        path.is_file(),
        "containerd test archive {} is missing",
        path.display()
    );
    assert!(digest.starts_with("sha256:"), "{digest}");
    (path, digest.to_string())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET /passwd from busybox httpd serving the image's /etc through 127.0.0.1:`port`.
fn served_passwd(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    if s.write_all(b"GET /passwd HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut got = String::new();
    let _ = s.read_to_string(&mut got);
    got.starts_with("HTTP/1.") && got.contains("root:x:0:0:root:/:/bin/sh")
}

const IMAGE: &str = "docker.io/library/lima-test:latest";

/// `sh -s -- ADD|DEL PORT` as root in the guest: a bridge network (bridge +
/// host-local IPAM) in the namespace `lima-cni` and, chained after it, portmap
/// publishing PORT → 80/tcp, the configuration and `prevResult` piped to each
/// plugin as libcni does. DEL runs them in reverse and removes the namespace.
const CNI_PORTMAP: &str = r#"set -eu
cmd=$1 port=$2 cni=/usr/local/libexec/cni ns=lima-cni
export CNI_PATH=$cni CNI_CONTAINERID=lima-cni-test CNI_NETNS=/var/run/netns/$ns CNI_IFNAME=eth0 CNI_COMMAND=$cmd
net='"cniVersion":"1.0.0","name":"lima-test"'
bridge=$(printf '{%s,"type":"bridge","bridge":"lima-test0","isGateway":true,"ipMasq":true,"ipam":{"type":"host-local","ranges":[[{"subnet":"10.4.7.0/24"}]]}}' "$net")
portmap() {
	printf '{%s,"type":"portmap","capabilities":{"portMappings":true},"runtimeConfig":{"portMappings":[{"hostPort":%s,"containerPort":80,"protocol":"tcp"}]}%s}' "$net" "$port" "$1"
}
if [ "$cmd" = ADD ]; then
	ip netns add "$ns"
	result=$(printf %s "$bridge" | "$cni/bridge")
	portmap ",\"prevResult\":$result" | "$cni/portmap" >/dev/null
else
	portmap '' | "$cni/portmap"
	printf %s "$bridge" | "$cni/bridge"
	ip netns del "$ns"
fi
"#;

#[test]
fn system_and_rootless_containerd_run_publish_and_survive_a_reboot() {
    if skipped("containerd e2e") {
        return;
    }
    require_qemu();
    let template = test_template(false);
    let ga = guest_agent();
    let (archive, digest) = test_archive();
    let oci_image = archive.with_file_name("test-oci-image.tar");
    assert!(oci_image.is_file(), "{} is missing", oci_image.display());
    let env = Env::new();
    let root = env.dir.path();
    let yaml = root.join("ctr.yaml");
    // The offline guest cannot install packages (uidmap comes with the test archive).
    std::fs::write(
        &yaml,
        format!(
            r#"base: {template}
containerd:
  system: true
  user: true
  archives:
  - location: {archive}
    arch: x86_64
    digest: {digest}
provision:
- mode: dependency
  skipDefaultDependencyResolution: true
  script: |
    #!/bin/sh
    true
"#,
            template = template.display(),
            archive = archive.display(),
        ),
    )
    .unwrap();
    let run = |args: &[&str], stdin: Option<&Path>| {
        env.run_with(args, |c| {
            c.env("LIMA_GUESTAGENT", &ga);
            if let Some(p) = stdin {
                c.pipe_stdin(p).unwrap();
            }
        })
    };
    let sh = |script: &str| -> String {
        let (code, out, err) = run(&["shell", "ctr", "sh", "-c", script], None);
        assert_eq!(code, 0, "{script} failed:\n{err}");
        out
    };

    let _guest = guest_lock();
    let t = Instant::now();
    let (code, _, err) = run(&["start", "--name", "ctr", yaml.to_str().unwrap()], None);
    assert_eq!(code, 0, "start failed:\n{err}");
    eprintln!("ready after {:.1}s", t.elapsed().as_secs_f64());
    // Lima's optional requirements of a containerd guest were waited for and met.
    // (The start's stderr is logfmt: the quotes around a description are escaped.)
    for (i, req) in [
        "systemd must be available",
        "containerd binaries to be installed",
    ]
    .iter()
    .enumerate()
    {
        let n = i + 1;
        assert!(
            err.contains(&format!("optional requirement {n} of 2: \\\"{req}\\\""))
                && err.contains(&format!("The optional requirement {n} of 2 is satisfied")),
            "requirement {req:?} not waited for and met:\n{err}"
        );
    }
    assert!(!err.contains("failed to satisfy"), "{err}");

    // The archive came through cidata and was installed under guestInstallPrefix.
    let hex = digest.trim_start_matches("sha256:");
    assert_eq!(
        sh("cat /usr/local/share/lima/nerdctl-full.sha256").trim(),
        hex
    );
    assert_eq!(
        sh("sudo sha256sum /mnt/lima-cidata/nerdctl-full.tgz | cut -d' ' -f1").trim(),
        hex
    );
    assert!(
        sh("sudo cat /var/log/cloud-init-output.log").contains(&format!(
            "installing the nerdctl-full archive {hex} in /usr/local"
        ))
    );
    assert_eq!(sh("systemctl is-active containerd").trim(), "active");
    assert_eq!(sh("systemctl --user is-active containerd").trim(), "active");
    // Boot modules all succeeded (40-install-containerd.sh included).
    assert!(
        sh("sudo grep 'boot.sh finished' /var/log/cloud-init-output.log")
            .contains("boot.sh finished with exit status 0")
    );

    // The OCI image, into both containerds.
    let (code, _, err) = run(
        &["shell", "ctr", "sh", "-c", "cat >/tmp/lima-test.tar"],
        Some(&oci_image),
    );
    assert_eq!(code, 0, "{err}");
    sh("sudo ctr images import /tmp/lima-test.tar");
    sh("containerd-rootless-setuptool.sh nsenter ctr images import /tmp/lima-test.tar");

    // Rootful: a marker, as root.
    let out = sh(&format!(
        "sudo ctr run --rm {IMAGE} sys-marker sh -c 'echo SYSTEM-MARKER $(id -u)'"
    ));
    assert_eq!(out.trim(), "SYSTEM-MARKER 0");
    // Rootless: root in the container is the guest user outside (uid_map), and
    // containerd's processes run as that user.
    let uid = sh("id -u").trim().to_string();
    let out = sh(&format!(
        "containerd-rootless-setuptool.sh nsenter ctr run --rm --cgroup '' {IMAGE} user-marker sh -c 'echo USER-MARKER; head -n1 /proc/self/uid_map'"
    ));
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("USER-MARKER"), "{out}");
    let map: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    assert_eq!(map, ["0", uid.as_str(), "1"], "{out}");
    assert_eq!(
        sh("ps -o user= -C containerd | sort -u")
            .split_whitespace()
            .collect::<Vec<_>>()
            .len(),
        2,
        "one containerd as root, one as the user"
    );

    // Published ports: rootful on the guest's 0.0.0.0 (host network), rootless
    // through RootlessKit's port driver (its parent listens in the guest).
    let (p_sys, p_user) = (free_port(), free_port());
    sh(&format!(
        "sudo ctr run -d --net-host {IMAGE} web-sys httpd -f -p 0.0.0.0:{p_sys} -h /etc"
    ));
    sh(&format!(
        "containerd-rootless-setuptool.sh nsenter ctr run -d --cgroup '' --net-host {IMAGE} web-user httpd -f -p 0.0.0.0:{p_user} -h /etc && \
         rootlessctl --socket \"$XDG_RUNTIME_DIR/containerd-rootless/api.sock\" add-ports 0.0.0.0:{p_user}:{p_user}/tcp"
    ));
    for (what, port) in [("rootful", p_sys), ("rootless", p_user)] {
        let start = Instant::now();
        while !served_passwd(port) {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the {what} container's port {port} never reached the host"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    // A port published through CNI's portmap, as a rootful `nerdctl run -p` does:
    // the bridge and portmap plugins of the archive, run as libcni runs them, and a
    // container in that network namespace. No guest socket listens on the port
    // (only DNAT rules do), so the forward comes from the guest agent's reading of
    // the nat table; after the plugins' DEL the forward goes away.
    let p_cni = free_port();
    let cni_script = root.join("cni.sh");
    std::fs::write(&cni_script, CNI_PORTMAP).unwrap();
    let cni = |command: &str| {
        let port = p_cni.to_string();
        let args = ["shell", "ctr", "sudo", "sh", "-s", "--", command, &port];
        let (code, _, err) = run(&args, Some(&cni_script));
        assert_eq!(code, 0, "CNI {command} failed:\n{err}");
    };
    cni("ADD");
    sh(&format!(
        "sudo ctr run -d --with-ns network:/var/run/netns/lima-cni {IMAGE} web-cni httpd -f -p 80 -h /etc"
    ));
    assert_eq!(
        sh(&format!("ss -Htln 'sport = :{p_cni}'")).trim(),
        "",
        "something listens on {p_cni} in the guest: the test would not exercise DNAT"
    );
    assert!(sh("sudo iptables -t nat -S").contains(&format!("--dport {p_cni} -j DNAT")));
    let start = Instant::now();
    while !served_passwd(p_cni) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the CNI-published port {p_cni} never reached the host"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    sh("sudo ctr task rm -f web-cni && sudo ctr container rm web-cni");
    cni("DEL");
    let start = Instant::now();
    while TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], p_cni)),
        Duration::from_secs(1),
    )
    .is_ok()
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the host still forwards {p_cni} after the CNI DEL"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // `lima` (what the *.lima wrappers exec) runs its command in $LIMA_INSTANCE.
    let lima = assert_cmd::cargo::cargo_bin("lima");
    let out = std::process::Command::new(&lima)
        .args(["sudo", "ctr", "images", "ls", "-q"])
        .env("LIMA_INSTANCE", "ctr")
        .env("LIMACTL", assert_cmd::cargo::cargo_bin("limactl"))
        .env("LIMA_HOME", env.lima_home())
        .env("HOME", root.join("home"))
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(listed.lines().any(|l| l == IMAGE), "{listed}");

    // The detached httpds go before the reboot: each is PID 1 of its PID
    // namespace, which ignores the SIGTERM of the shutdown, and containerd's
    // KillMode=process leaves its shims running, so the guest would wait out
    // systemd's 90 s stop timeout (measured: the reboot took 134 s, against 35 s
    // for a guest without containers).
    sh("sudo ctr task rm -f web-sys && sudo ctr container rm web-sys");
    sh(
        "containerd-rootless-setuptool.sh nsenter sh -c 'ctr task rm -f web-user && ctr container rm web-user'",
    );

    // A guest reboot: both come back (enabled units, lingering), nothing is
    // unpacked again (the install stamp is the same file, unchanged).
    let stamp = "stat -c %i:%Y /usr/local/share/lima/nerdctl-full.sha256";
    let before = sh(stamp);
    let boot_id = sh("cat /proc/sys/kernel/random/boot_id");
    let _ = run(&["shell", "ctr", "sudo", "systemctl", "reboot"], None);
    let start = Instant::now();
    loop {
        // Each attempt is bounded: an SSH connection made while the guest is
        // down waits on slirp's retransmissions to it for a minute or more.
        let (code, out, _) = env.run_with(
            &[
                "shell",
                "ctr",
                "sh",
                "-c",
                "cat /proc/sys/kernel/random/boot_id; cat /run/lima-boot-done",
            ],
            |c| {
                c.env("LIMA_GUESTAGENT", &ga)
                    .timeout(Duration::from_secs(15));
            },
        );
        if code == 0 && out.lines().next() != Some(boot_id.trim()) && out.lines().count() == 2 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "the guest did not finish booting again"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    assert_eq!(sh(stamp), before, "the archive was unpacked again");
    let log = sh("sudo cat /var/log/cloud-init-output.log");
    assert!(
        log.contains(&format!("nerdctl-full archive {hex} already installed")),
        "{log}"
    );
    // The reboot's boot.sh (the last one logged) succeeded too.
    let last = log.lines().rfind(|l| l.contains("boot.sh finished"));
    assert_eq!(
        last.map(|l| l.ends_with("boot.sh finished with exit status 0")),
        Some(true),
        "{last:?}"
    );
    assert_eq!(sh("systemctl is-active containerd").trim(), "active");
    assert_eq!(sh("systemctl --user is-active containerd").trim(), "active");
    let out = sh(&format!(
        "sudo ctr run --rm {IMAGE} after-reboot echo AFTER-REBOOT"
    ));
    assert_eq!(out.trim(), "AFTER-REBOOT");

    let (code, _, err) = run(&["stop", "ctr"], None);
    assert_eq!(code, 0, "{err}");
}
