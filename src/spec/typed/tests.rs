use std::net::{IpAddr, Ipv4Addr};

use serde_json::json;

use super::*;
use crate::spec::SpecError;

fn img() -> serde_json::Value {
    json!([{"location": "/img.qcow2"}])
}

#[test]
fn defaults_become_plain_values() {
    let s = Spec::for_tests(json!({"images": img()}));
    assert_eq!(s.run_strategy, RunStrategy::Always);
    assert_eq!(
        (s.os, s.arch, s.vm_type),
        (Os::Linux, Arch::X86_64, VmType::Qemu)
    );
    assert_eq!(s.cpus, 4);
    assert_eq!(s.memory, ByteSize(4 << 30));
    assert_eq!(s.disk, ByteSize(100 << 30));
    assert_eq!(s.mount_type, MountType::ReverseSshfs);
    assert_eq!(s.images[0].arch, Arch::X86_64);
    assert_eq!(s.user.name, "alice");
    assert_eq!(s.user.home, "/home/alice.guest");
    assert_eq!(s.user.uid, 1001);
    assert!(s.user.passwordless_sudo);
    assert_eq!(s.timezone.as_deref(), Some("Europe/Berlin"));
    assert_eq!(s.ssh.local_port, 0);
    assert!(s.containerd.user && !s.containerd.system);
    let arches: Vec<Arch> = s.containerd.archives.iter().map(|a| a.arch).collect();
    assert_eq!(arches, [Arch::X86_64, Arch::Aarch64]);
    assert_eq!(s.video.display, "none");
    assert_eq!(s.video.vnc_display, "127.0.0.1:0,to=9");
    assert!(s.host_resolver.enabled);
    assert!(s.dns.is_empty() && s.mounts.is_empty() && s.provision.is_empty());
    assert!(!s.firmware.legacy_bios);
}

#[test]
fn mounts_carry_their_type_options() {
    let s = Spec::for_tests(json!({
        "images": img(),
        "mountType": "9p",
        "mounts": [{"location": "~"}, {"location": "/tmp/x", "writable": true,
                    "sshfs": {"sftpDriver": "builtin"}}],
    }));
    assert_eq!(s.mount_type, MountType::NineP);
    let m = &s.mounts[1];
    assert_eq!(m.location, "/tmp/x");
    assert_eq!(m.mount_point, "/tmp/x");
    assert!(m.writable);
    assert_eq!(m.nine_p.msize, ByteSize(128 << 10));
    assert_eq!(m.nine_p.cache, "mmap");
    assert_eq!(m.nine_p.security_model, "none");
    assert_eq!(m.sshfs.sftp_driver.as_deref(), Some("builtin"));
    assert_eq!(s.mounts[0].location, "/home/alice");
    assert_eq!(s.mounts[0].nine_p.cache, "fscache");
    assert_eq!(s.mounts[0].sshfs.sftp_driver, None);
    assert_eq!(s.mounts[0].virtiofs.queue_size, None);
}

#[test]
fn provision_entries_by_mode() {
    let s = Spec::for_tests(json!({"images": img(), "provision": [
        {"script": "#!/bin/sh\ntrue"},
        {"mode": "dependency", "script": "#!/bin/sh\n"},
        {"mode": "data", "path": "/etc/x", "content": "x"},
        {"mode": "yq", "path": "/etc/y.json", "expression": ".a = 1"},
        {"mode": "ansible", "playbook": "p.yml"},
    ]}));
    let modes: Vec<Mode> = s.provision.iter().map(Provision::mode).collect();
    assert_eq!(
        modes,
        [
            Mode::System,
            Mode::Dependency,
            Mode::Data,
            Mode::Yq,
            Mode::Ansible
        ]
    );
    assert_eq!(s.provision[0].script(), Some("#!/bin/sh\ntrue"));
    assert_eq!(
        s.provision[1],
        Provision::Dependency {
            script: "#!/bin/sh\n".into(),
            skip_default_dependency_resolution: false
        }
    );
    assert_eq!(
        s.provision[2],
        Provision::Data(DataFile {
            path: "/etc/x".into(),
            content: "x".into(),
            overwrite: true,
            owner: "root:root".into(),
            permissions: "644".into(),
        })
    );
    let Provision::Yq(yq) = &s.provision[3] else {
        panic!("{:?}", s.provision[3])
    };
    assert_eq!(yq.format, "auto");
    assert_eq!(s.provision[4].script(), None);
}

#[test]
fn port_forwards_networks_and_deprecated_fields() {
    let s = Spec::for_tests(json!({
        "images": img(),
        "portForwards": [{"guestPort": 8080}, {"guestSocket": "/run/x.sock", "hostSocket": "x.sock"}],
        "networks": [{"socket": "/var/run/vmnet.sock"}],
        "dns": ["1.1.1.1"],
        "timezone": "",
        "rosetta": {"enabled": true},
        "cpuType": {"x86_64": "Haswell"},
    }));
    let pf = &s.port_forwards[0];
    assert_eq!(pf.guest_ip, IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(pf.guest_port_range, [8080, 8080]);
    assert_eq!(pf.host_port_range, [8080, 8080]);
    assert_eq!(pf.proto, Proto::Any);
    assert_eq!(pf.guest_socket, None);
    assert_eq!(
        s.port_forwards[1].host_socket.as_deref(),
        Some("/lima/test/sock/x.sock")
    );
    assert_eq!(s.port_forwards[1].guest_port_range, [1, 65535]);
    assert_eq!(
        s.networks[0].attachment,
        NetworkAttachment::Socket("/var/run/vmnet.sock".into())
    );
    assert_eq!(s.networks[0].interface, "lima0");
    assert_eq!(s.networks[0].metric, 100);
    assert_eq!(s.dns, [IpAddr::V4(Ipv4Addr::new(1, 1, 1, 1))]);
    assert_eq!(s.timezone, None, "\"\" leaves the guest's zone");
    assert!(s.vm_opts.vz.rosetta.enabled);
    assert_eq!(s.vm_opts.qemu.cpu_type["x86_64"], "Haswell");
}

#[test]
fn unfilled_configurations_are_refused_by_field() {
    let e = Spec::from_filled(&crate::spec::LimaYaml::default()).unwrap_err();
    assert!(matches!(e, SpecError::NotResolved { .. }), "{e}");

    let mut y: crate::spec::LimaYaml = serde_json::from_value(json!({"images": img()})).unwrap();
    let host = crate::spec::host::HostInfo::for_tests();
    crate::spec::defaults::fill(
        &mut y,
        &crate::spec::defaults::FillContext {
            host: &host,
            instance_name: "t".into(),
            instance_dir: "/lh/t".into(),
            lima_home: "/lh".into(),
        },
    );
    assert!(Spec::from_filled(&y).is_ok());
    let mut no_user = y.clone();
    no_user.user = None;
    match Spec::from_filled(&no_user).unwrap_err() {
        SpecError::NotResolved { field, message } => {
            assert_eq!((field.as_str(), message.as_str()), ("user", "is not set"))
        }
        e => panic!("{e}"),
    }
    let mut bad_arch = y.clone();
    bad_arch.arch = Some("sparc".into());
    let e = Spec::from_filled(&bad_arch).unwrap_err().to_string();
    assert!(
        e.starts_with("field `arch` is invalid: arch \"sparc\" is not one of"),
        "{e}"
    );
    assert!(e.contains("filled with defaults and validated"), "{e}");
}

#[test]
fn resolve_returns_the_spec_of_its_config() {
    let home = tempfile::tempdir().unwrap();
    let env = crate::spec::LoadEnv::new(home.path());
    let node = crate::spec::yaml::parse_single(
        "t.yaml",
        "images: [{location: /x.qcow2, arch: x86_64}]\ncpus: 2\nmemory: 1GiB\n",
    )
    .unwrap()
    .unwrap();
    let mut w = Vec::new();
    let r = crate::spec::resolve::resolve(&node, "t.yaml", "t", &env, &mut w).unwrap();
    assert_eq!(r.spec, Spec::from_filled(&r.config).unwrap());
    assert_eq!((r.spec.cpus, r.spec.memory.mib()), (2, 1024));
    let json = serde_json::to_value(&r.spec).unwrap();
    assert_eq!(json["memory"], 1 << 30);
    assert_eq!(json["mountType"], "reverse-sshfs");
}
