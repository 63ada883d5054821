//! The KubeVirt export boots, without a cluster: an exported VirtualMachine's
//! cloud-init user-data and network-data (from the Secret its
//! `cloudInitNoCloud` volume names; nothing else of limactl's) go into
//! a NoCloud ISO with the meta-data KubeVirt itself would write; bare QEMU
//! boots the local test image under a fresh overlay with the NIC MAC the VM
//! declares; SSH logs in with the exported key, and the markers of the
//! provision scripts (system and user, run by Lima's boot steps folded into
//! cloud-config) exist.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{self, Env};

struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn ssh(key: &Path, user: &str, port: u16, cmd: &str) -> std::process::Output {
    Command::new("ssh")
        .args(["-q", "-i"])
        .arg(key)
        .args(["-p", &port.to_string()])
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=5",
        ])
        .arg(format!("{user}@127.0.0.1"))
        .arg(cmd)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn console(serial: &Path) -> String {
    let text = std::fs::read_to_string(serial).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

#[test]
fn an_exported_vm_boots_from_its_cloud_init_alone() {
    if common::skipped("e2e_export") {
        return;
    }
    common::require_qemu();
    let template = common::test_template(false);
    let image_dir: PathBuf = template.parent().unwrap().to_path_buf();
    let env = Env::new();
    let src = env.dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(
        src.join("kv.yaml"),
        format!(
            r#"base: "{}"
env:
  GREETING: hello-from-export
param:
  COLOUR: blue
provision:
- mode: system
  script: |
    #!/bin/sh
    echo "system $PARAM_COLOUR" > /var/lib/export-marker
- mode: user
  script: |
    #!/bin/sh
    echo "user $PARAM_COLOUR" > "$HOME/export-marker"
"#,
            template.display()
        ),
    )
    .unwrap();
    let out = env.dir.path().join("out");
    let (code, stdout, stderr) = env.run(&[
        "export",
        "kubevirt",
        "-f",
        src.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    // The test image is a local file booted by its own kernel: both said.
    let warned: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("level=warning"))
        .collect();
    assert_eq!(warned.len(), 2, "{stderr}");
    assert!(warned[0].contains("field `images[0].kernel`"), "{stderr}");
    assert!(warned[1].contains("field `images[0].location`"), "{stderr}");

    let text = std::fs::read_to_string(out.join("kv.yaml")).unwrap();
    let docs: Vec<serde_json::Value> = lima::spec::yaml::parse_documents("kv.yaml", &text)
        .unwrap()
        .iter()
        .map(|n| n.to_json())
        .collect();
    let vm = &docs[0];
    let spec = &vm["spec"]["template"]["spec"];
    let volume = spec["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v.get("cloudInitNoCloud").is_some())
        .expect("a cloudInitNoCloud volume");
    // The Secret the volume names, as KubeVirt reads it.
    let secret_of = |key: &str| {
        let name = volume["cloudInitNoCloud"][key]["name"].as_str().unwrap();
        docs.iter()
            .find(|d| d["kind"] == "Secret" && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no Secret {name}"))
    };
    let user_data = secret_of("secretRef")["stringData"]["userdata"]
        .as_str()
        .unwrap();
    let network_data = secret_of("networkDataSecretRef")["stringData"]["networkdata"]
        .as_str()
        .unwrap();
    let mac = spec["domain"]["devices"]["interfaces"][0]["macAddress"]
        .as_str()
        .unwrap();
    let cc = lima::spec::yaml::parse_single("user-data", user_data)
        .unwrap()
        .unwrap()
        .to_json();
    let user = cc["users"][0]["name"].as_str().unwrap().to_string();

    // The NoCloud volume KubeVirt makes: these two, and its own meta-data.
    let iso = env.dir.path().join("nocloud.iso");
    let file = |path: &str, data: &str| lima::cidata::CidataFile {
        path: path.into(),
        data: data.as_bytes().to_vec(),
        mode: 0o644,
    };
    lima::cidata::write_iso(
        &iso,
        &[
            file("user-data", user_data),
            file("network-config", network_data),
            file("meta-data", "instance-id: kv.default\nlocal-hostname: kv\n"),
        ],
    )
    .unwrap();

    let overlay = env.dir.path().join("overlay.qcow2");
    let st = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(image_dir.join("debian-12-direct.qcow2"))
        .arg(&overlay)
        .arg("4G")
        .status()
        .unwrap();
    assert!(st.success());
    let cmdline = std::fs::read_to_string(image_dir.join("cmdline")).unwrap();
    let serial = env.dir.path().join("serial.log");
    let key = env.lima_home().join("_config/user");
    assert!(key.is_file(), "the export made the identity it authorized");

    let _lock = common::guest_lock();
    let port = free_port();
    let qemu = Command::new("qemu-system-x86_64")
        .args(["-machine", "q35,vmport=off"])
        .args(["-accel", "tcg,thread=multi,tb-size=512"])
        .args(["-cpu", "max", "-smp", "2", "-m", "2G"])
        .arg("-drive")
        .arg(format!("file={},if=none,id=d0", overlay.display()))
        .args(["-device", "virtio-blk-pci,drive=d0"])
        .arg("-drive")
        .arg(format!(
            "id=cdrom0,if=none,format=raw,readonly=on,file={}",
            iso.display()
        ))
        .args(["-device", "virtio-scsi-pci,id=scsi0"])
        .args(["-device", "scsi-cd,bus=scsi0.0,drive=cdrom0"])
        .arg("-netdev")
        .arg(format!("user,id=net0,hostfwd=tcp:127.0.0.1:{port}-:22"))
        .arg("-device")
        .arg(format!("virtio-net-pci,netdev=net0,mac={mac}"))
        .arg("-kernel")
        .arg(image_dir.join("vmlinuz"))
        .arg("-initrd")
        .arg(image_dir.join("initrd"))
        .args(["-append", cmdline.trim()])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .args(["-display", "none", "-nodefaults"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut qemu = Qemu(qemu);
    let started = Instant::now();

    // Generous deadlines: TCG on a shared 2-core machine.
    let deadline = Instant::now() + Duration::from_secs(420);
    loop {
        if let Some(st) = qemu.0.try_wait().unwrap() {
            panic!("QEMU exited ({st}):\n{}", console(&serial));
        }
        if ssh(&key, &user, port, "true").status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no SSH login as {user} with the exported key:\n{}",
            console(&serial)
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    eprintln!(
        "e2e_export: SSH login after {:.1}s",
        started.elapsed().as_secs_f64()
    );
    // boot.sh runs from cloud-init's final stage (runcmd): wait for it.
    let check = "sudo cat /run/lima-boot-done && sudo cat /var/lib/export-marker && cat ~/export-marker && grep GREETING /etc/environment";
    let out = loop {
        let o = ssh(&key, &user, port, check);
        if o.status.success() {
            break String::from_utf8_lossy(&o.stdout).into_owned();
        }
        assert!(
            Instant::now() < deadline + Duration::from_secs(180),
            "the provision markers did not appear:\n{}\n{}",
            String::from_utf8_lossy(&o.stderr),
            String::from_utf8_lossy(
                &ssh(
                    &key,
                    &user,
                    port,
                    "sudo tail -n 40 /var/log/cloud-init-output.log"
                )
                .stdout
            )
        );
        std::thread::sleep(Duration::from_secs(2));
    };
    eprintln!(
        "e2e_export: provision markers after {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "kv.default",
            "system blue",
            "user blue",
            "GREETING=hello-from-export"
        ],
        "{out}"
    );
    // The folded volume is root's only, as the mounted ISO would be.
    let o = ssh(
        &key,
        &user,
        port,
        "stat -c %a /var/lib/lima-cidata/lima.env",
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "600");
    drop(qemu);
}
