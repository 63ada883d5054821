use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::*;
use crate::spec::LimaYaml;
use crate::spec::defaults::{FillContext, fill};
use crate::spec::host::HostInfo;
use crate::spec::yaml::{Node, Value, parse_single};
use crate::store::paths::guest_files;

const IID: &str = "iid-1700000000";
const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDtest alice@host";

const CONFIG: &str = r##"
images: [{location: /x.qcow2}]
mountType: 9p
mounts:
- location: "~"
- location: /tmp/lima
  mountPoint: /mnt/tmp
  writable: true
additionalDisks:
- data
- name: swapdisk
  format: false
  fsType: swap
  fsArgs: ["-f", "x"]
param:
  FOO: bar baz
  A: "1"
env:
  MYVAR: some value
provision:
- mode: system
  script: |
    #!/bin/sh
    echo hi {{.Param.FOO}}
- mode: user
  script: "#!/bin/sh\ntrue\n"
- mode: boot
  script: "echo boot $PARAM_A"
- mode: data
  path: /etc/foo
  content: hello
- mode: dependency
  script: "#!/bin/sh\n"
  skipDefaultDependencyResolution: true
- mode: yq
  path: /etc/x.json
  expression: ".a = 1"
- mode: ansible
  playbook: x.yml
"##;

fn filled(yaml: &str) -> LimaYaml {
    let node = parse_single("t.yaml", yaml).unwrap().unwrap();
    let mut y = crate::spec::resolve::typed(&node, "t.yaml").unwrap();
    let host = HostInfo::for_tests();
    let ctx = FillContext {
        host: &host,
        instance_name: "test".into(),
        instance_dir: PathBuf::from("/lima/test"),
        lima_home: PathBuf::from("/lima"),
    };
    let w = fill(&mut y, &ctx);
    assert!(w.is_empty(), "{w:?}");
    y
}

struct Fixture {
    spec: Spec,
    keys: Vec<String>,
    host_env: BTreeMap<String, String>,
    /// Stands for the nerdctl-full archive (containerd is on by default).
    archive: tempfile::NamedTempFile,
}

const ARCHIVE_BYTES: &[u8] = b"nerdctl-full archive stand-in";

impl Fixture {
    fn new(yaml: &str) -> Fixture {
        Fixture {
            spec: Spec::from_filled(&filled(yaml)).unwrap(),
            keys: vec![KEY.to_string()],
            host_env: BTreeMap::new(),
            archive: {
                let f = tempfile::NamedTempFile::new().unwrap();
                std::fs::write(f.path(), ARCHIVE_BYTES).unwrap();
                f
            },
        }
    }

    fn input(&self) -> CidataInput<'_> {
        CidataInput {
            spec: &self.spec,
            name: "test",
            instance_dir: Path::new("/lima/test"),
            iid: IID,
            authorized_keys: &self.keys,
            debug: false,
            host_home: Path::new("/home/alice"),
            host_env: &self.host_env,
            guest_agent: None,
            containerd_archive: Some(self.archive.path()),
            udp_dns_port: 40001,
            tcp_dns_port: 40002,
        }
    }

    fn generate(&self) -> Cidata {
        generate(&self.input()).unwrap()
    }
}

fn text<'a>(c: &'a Cidata, path: &str) -> &'a str {
    std::str::from_utf8(&c.file(path).unwrap_or_else(|| panic!("no {path}")).data).unwrap()
}

fn yaml(text: &str) -> Node {
    parse_single("t.yaml", text).unwrap().unwrap()
}

fn s(n: &Node) -> &str {
    n.as_str().unwrap_or_else(|| panic!("not a string: {n:?}"))
}

#[test]
fn lima_env_has_every_variable_in_order() {
    let c = Fixture::new(CONFIG).generate();
    let expected = "\
LIMA_CIDATA_DEBUG=false
LIMA_CIDATA_IID=iid-1700000000
LIMA_CIDATA_NAME=test
LIMA_CIDATA_USER=alice
LIMA_CIDATA_UID=1001
LIMA_CIDATA_COMMENT=Alice
LIMA_CIDATA_HOME=/home/alice.guest
LIMA_CIDATA_SHELL=/bin/bash
LIMA_CIDATA_HOSTHOME_MOUNTPOINT=/home/alice
LIMA_CIDATA_MOUNTS=2
LIMA_CIDATA_MOUNTS_0_MOUNTPOINT=/home/alice
LIMA_CIDATA_MOUNTS_1_MOUNTPOINT=/mnt/tmp
LIMA_CIDATA_MOUNTTYPE=9p
LIMA_CIDATA_DISKS=2
LIMA_CIDATA_DISK_0_NAME=data
LIMA_CIDATA_DISK_0_DEVICE=vdb
LIMA_CIDATA_DISK_0_FORMAT=true
LIMA_CIDATA_DISK_0_FSTYPE=ext4
LIMA_CIDATA_DISK_0_FSARGS=
LIMA_CIDATA_DISK_1_NAME=swapdisk
LIMA_CIDATA_DISK_1_DEVICE=vdc
LIMA_CIDATA_DISK_1_FORMAT=false
LIMA_CIDATA_DISK_1_FSTYPE=swap
LIMA_CIDATA_DISK_1_FSARGS=-f x
LIMA_CIDATA_DATAFILE_00000003_OVERWRITE=true
LIMA_CIDATA_DATAFILE_00000003_OWNER=root:root
LIMA_CIDATA_DATAFILE_00000003_PATH=/etc/foo
LIMA_CIDATA_DATAFILE_00000003_PERMISSIONS=644
LIMA_CIDATA_YQ_PROVISION_00000005_FORMAT=auto
LIMA_CIDATA_YQ_PROVISION_00000005_OWNER=root:root
LIMA_CIDATA_YQ_PROVISION_00000005_PATH=/etc/x.json
LIMA_CIDATA_YQ_PROVISION_00000005_PERMISSIONS=644
LIMA_CIDATA_GUEST_INSTALL_PREFIX=/usr/local
LIMA_CIDATA_UPGRADE_PACKAGES=
LIMA_CIDATA_CONTAINERD_USER=1
LIMA_CIDATA_CONTAINERD_SYSTEM=
LIMA_CIDATA_CONTAINERD_ARCHIVE=nerdctl-full.tgz
LIMA_CIDATA_CONTAINERD_ARCHIVE_SHA256=ba1334da7ea03744f12aca3e7c37e84b33851a9dc411183b15b13f5a19f55a43
LIMA_CIDATA_SLIRP_DNS=192.168.5.3
LIMA_CIDATA_SLIRP_GATEWAY=192.168.5.2
LIMA_CIDATA_SLIRP_IP_ADDRESS=192.168.5.15
LIMA_CIDATA_UDP_DNS_LOCAL_PORT=40001
LIMA_CIDATA_TCP_DNS_LOCAL_PORT=40002
LIMA_CIDATA_ROSETTA_ENABLED=false
LIMA_CIDATA_ROSETTA_BINFMT=false
LIMA_CIDATA_SKIP_DEFAULT_DEPENDENCY_RESOLUTION=1
LIMA_CIDATA_VMTYPE=qemu
LIMA_CIDATA_VSOCK_PORT=0
LIMA_CIDATA_VIRTIO_PORT=io.lima-vm.guest_agent.0
LIMA_CIDATA_PLAIN=
LIMA_CIDATA_NO_CLOUD_INIT=
LIMA_CIDATA_PASSWORDLESS_SUDO=1
";
    assert_eq!(text(&c, "lima.env"), expected);
    assert_eq!(text(&c, "param.env"), "PARAM_A=1\nPARAM_FOO=bar baz\n");
}

#[test]
fn dns_ports_only_with_the_host_resolver() {
    let mut f = Fixture::new("images: [{location: /x}]\ndns: [1.1.1.1]\n");
    f.spec.containerd.user = false;
    let c = f.generate();
    let env = text(&c, "lima.env");
    assert!(
        env.contains("\nLIMA_CIDATA_UDP_DNS_LOCAL_PORT=0\n"),
        "{env}"
    );
    assert!(env.contains(
        "\nLIMA_CIDATA_CONTAINERD_USER=\nLIMA_CIDATA_CONTAINERD_SYSTEM=\nLIMA_CIDATA_SLIRP_DNS="
    ));
    assert!(env.contains("\nLIMA_CIDATA_MOUNTTYPE=reverse-sshfs\n"));
    let net = yaml(text(&c, "network-config"));
    let ns = net
        .at(&crate::spec::yaml::parse_path(
            "ethernets.eth0.nameservers.addresses",
        ))
        .unwrap()
        .as_seq()
        .unwrap();
    assert_eq!(s(&ns[0]), "1.1.1.1");
}

#[test]
fn user_data_is_cloud_config_with_user_keys_and_hook() {
    let c = Fixture::new(CONFIG).generate();
    let ud = text(&c, "user-data");
    assert!(ud.starts_with("#cloud-config\n"));
    let n = yaml(ud);
    assert_eq!(s(n.get("hostname").unwrap()), "lima-test");
    assert_eq!(n.get("manage_etc_hosts").unwrap().value, Value::Bool(true));
    assert_eq!(s(n.get("timezone").unwrap()), "Europe/Berlin");
    let users = n.get("users").unwrap().as_seq().unwrap();
    assert_eq!(users.len(), 1);
    let u = &users[0];
    assert_eq!(s(u.get("name").unwrap()), "alice");
    assert_eq!(u.get("uid").unwrap().value, Value::Int(1001)); // an integer: cloud-init deprecates the string form
    assert_eq!(s(u.get("gecos").unwrap()), "Alice");
    assert_eq!(s(u.get("homedir").unwrap()), "/home/alice.guest");
    assert_eq!(s(u.get("shell").unwrap()), "/bin/bash");
    assert_eq!(s(u.get("sudo").unwrap()), "ALL=(ALL) NOPASSWD:ALL");
    assert_eq!(u.get("lock_passwd").unwrap().value, Value::Bool(true));
    let keys = u.get("ssh_authorized_keys").unwrap().as_seq().unwrap();
    assert_eq!(s(&keys[0]), KEY);

    let wf = &n.get("write_files").unwrap().as_seq().unwrap()[0];
    assert_eq!(
        s(wf.get("path").unwrap()),
        "/var/lib/cloud/scripts/per-boot/00-lima.boot.sh"
    );
    assert_eq!(s(wf.get("permissions").unwrap()), "0755");
    assert_eq!(s(wf.get("owner").unwrap()), "root:root");
    let hook = s(wf.get("content").unwrap());
    assert!(hook.starts_with("#!/bin/sh\n"));
    assert!(hook.contains(
        "mount -o ro,mode=0700,dmode=0700,overriderockperm,exec,uid=0 \"$LIMA_CIDATA_DEV\" \"$LIMA_CIDATA_MNT\""
    ));
    assert!(hook.contains("LIMA_CIDATA_DEV=/dev/disk/by-label/cidata"));
    assert!(hook.contains("exec \"$LIMA_CIDATA_MNT\"/boot.sh"));

    // 9p mounts with Lima's options and the hashed tags.
    let mounts = n.get("mounts").unwrap().as_seq().unwrap();
    let m1: Vec<&str> = mounts[1].as_seq().unwrap().iter().map(s).collect();
    assert_eq!(
        m1,
        [
            mount_tag("/tmp/lima", "/mnt/tmp").as_str(),
            "/mnt/tmp",
            "9p",
            "rw,trans=virtio,version=9p2000.L,msize=131072,cache=mmap,nofail",
            "0",
            "0"
        ]
    );
    // host resolver: slirp DNS in resolv_conf.
    let ns = n.get("resolv_conf").unwrap().get("nameservers").unwrap();
    assert_eq!(s(&ns.as_seq().unwrap()[0]), "192.168.5.3");
    assert!(n.get("ca_certs").is_none());
    assert!(n.get("package_update").is_none());

    // bootcmd: NIC heal first, then the boot script with its params, then
    // the early start of boot.sh.
    let bootcmd = n.get("bootcmd").unwrap().as_seq().unwrap();
    assert_eq!(bootcmd.len(), 3);
    assert!(s(&bootcmd[2]).contains("systemd-run"), "{}", s(&bootcmd[2]));
    assert!(s(&bootcmd[2]).contains("LIMA_BOOT_EARLY=1"));
    // Before it, the environment and the user managers' delegation (before sshd).
    let early = s(&bootcmd[2]);
    let env_at = early.find("01-etc-environment.sh").unwrap();
    let delegate_at = early
        .find("/mnt/lima-cidata/boot.Linux/20-rootless-base.sh delegate")
        .unwrap();
    assert!(
        env_at < delegate_at
            && delegate_at
                < early
                    .find("systemd-run --quiet --no-block --collect --unit=lima-boot-early")
                    .unwrap()
    );
    // First of all, the kernel modules, in a unit that need not wait for cloud-init.
    let modprobe_at = early
        .find("systemd-run --quiet --no-block --collect --unit=lima-modprobe-early --property=DefaultDependencies=no /mnt/lima-cidata/boot.Linux/00-modprobe.sh")
        .unwrap();
    assert!(modprobe_at < env_at);
    assert!(s(&bootcmd[0]).contains(&slirp_mac(Path::new("/lima/test"))));
    let b = s(&bootcmd[1]);
    assert!(
        b.contains("PARAM_A=1\nPARAM_FOO=bar baz\nLIMA_PARAM_EOF\n"),
        "{b}"
    );
    assert!(
        b.contains("\necho boot $PARAM_A\nLIMA_BOOT_SCRIPT_2\n"),
        "{b}"
    );

    // cloud-config.yaml: no hook (nor its early start), mounts or resolv.conf;
    // the rest is the same.
    let cc = yaml(&c.cloud_config);
    for k in ["write_files", "mounts", "resolv_conf", "manage_resolv_conf"] {
        assert!(cc.get(k).is_none(), "{k} in cloud-config.yaml");
    }
    assert_eq!(
        cc.get("bootcmd").unwrap().to_json(),
        serde_json::Value::Array(
            n.get("bootcmd").unwrap().to_json().as_array().unwrap()[..2].to_vec()
        )
    );
    for k in ["users", "hostname", "timezone", "growpart"] {
        assert_eq!(
            cc.get(k).unwrap().to_json(),
            n.get(k).unwrap().to_json(),
            "{k}"
        );
    }
}

#[test]
fn user_data_options_follow_the_config() {
    let d = tempfile::tempdir().unwrap();
    let cert = d.path().join("ca.pem");
    std::fs::write(
        &cert,
        "-----BEGIN CERTIFICATE-----\n  AAAA  \n\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let cfg = format!(
        "images: [{{location: /x}}]\nupgradePackages: true\ntimezone: ''\nuser: {{passwordlessSudo: false, comment: \"\"}}\ncaCerts: {{files: [{}], certs: [\"X\\nY\"]}}\n",
        cert.display()
    );
    let c = Fixture::new(&cfg).generate();
    let n = yaml(text(&c, "user-data"));
    assert_eq!(n.get("package_upgrade").unwrap().value, Value::Bool(true));
    assert!(n.get("timezone").is_none());
    let u = &n.get("users").unwrap().as_seq().unwrap()[0];
    assert_eq!(s(u.get("sudo").unwrap()), "ALL=(ALL) ALL");
    assert_eq!(u.get("lock_passwd").unwrap().value, Value::Bool(false));
    assert!(u.get("gecos").is_none());
    let ca = n.get("ca_certs").unwrap();
    assert_eq!(ca.get("remove_defaults").unwrap().value, Value::Bool(false));
    let trusted: Vec<&str> = ca
        .get("trusted")
        .unwrap()
        .as_seq()
        .unwrap()
        .iter()
        .map(s)
        .collect();
    assert_eq!(
        trusted,
        [
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "X\nY\n"
        ]
    );
    assert!(text(&c, "lima.env").contains("\nLIMA_CIDATA_PASSWORDLESS_SUDO=\n"));

    let missing = format!(
        "images: [{{location: /x}}]\ncaCerts: {{files: [{}]}}\n",
        d.path().join("nope.pem").display()
    );
    let f = Fixture::new(&missing);
    assert!(matches!(
        generate(&f.input()),
        Err(CidataError::CaCert { .. })
    ));
}

#[test]
fn network_config_matches_the_mac_of_the_instance() {
    let c = Fixture::new(CONFIG).generate();
    let nc = text(&c, "network-config");
    let n = yaml(nc);
    assert_eq!(n.get("version").unwrap().value, Value::Int(2));
    let eth0 = n.get("ethernets").unwrap().get("eth0").unwrap();
    let mac =
        crate::spec::defaults::mac_address(&crate::spec::host::host().machine_id, "/lima/test");
    assert_eq!(
        s(eth0.get("match").unwrap().get("macaddress").unwrap()),
        mac
    );
    // Quoted: PyYAML would read an unquoted MAC as a sexagesimal number.
    assert!(nc.contains(&format!("macaddress: \"{mac}\"")));
    assert_eq!(eth0.get("dhcp4").unwrap().value, Value::Bool(true));
    assert_eq!(s(eth0.get("set-name").unwrap()), "eth0");
    assert_eq!(s(eth0.get("dhcp-identifier").unwrap()), "mac");
    assert_eq!(
        eth0.get("dhcp4-overrides")
            .unwrap()
            .get("route-metric")
            .unwrap()
            .value,
        Value::Int(200)
    );
    assert!(eth0.get("optional").is_none());
    assert_eq!(slirp_mac(Path::new("/lima/test")), mac);

    let meta = yaml(text(&c, "meta-data"));
    assert_eq!(s(meta.get("instance-id").unwrap()), IID);
    assert_eq!(s(meta.get("local-hostname").unwrap()), "lima-test");
}

#[test]
fn etc_environment_propagates_proxies() {
    let mut f = Fixture::new(CONFIG);
    f.host_env = [
        ("http_proxy", "http://127.0.0.1:3128"),
        ("NO_PROXY", "localhost"),
        ("HOME", "/home/alice"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let c = f.generate();
    assert_eq!(
        text(&c, "etc_environment"),
        "#LIMA-START\nHTTP_PROXY=http://192.168.5.2:3128\nMYVAR=some value\nNO_PROXY=localhost\nhttp_proxy=http://192.168.5.2:3128\nno_proxy=localhost\n#LIMA-END\n"
    );
    f.spec.propagate_proxy_env = false;
    let c = f.generate();
    assert_eq!(
        text(&c, "etc_environment"),
        "#LIMA-START\nMYVAR=some value\n#LIMA-END\n"
    );
}

#[test]
fn provision_files_and_modes() {
    let c = Fixture::new(CONFIG).generate();
    let get = |p: &str| c.file(p).unwrap_or_else(|| panic!("no {p}"));
    assert_eq!(get("provision.system/00000000").mode, 0o755);
    assert_eq!(
        get("provision.system/00000000").data,
        b"#!/bin/sh\necho hi bar baz\n"
    );
    assert_eq!(get("provision.user/00000001").mode, 0o755);
    assert_eq!(get("provision.data/00000003").data, b"hello");
    assert_eq!(get("provision.data/00000003").mode, 0o644);
    assert_eq!(get("provision.dependency/00000004").mode, 0o755);
    assert_eq!(get("provision.yq/00000005").data, b".a = 1");
    assert!(
        c.files.iter().all(|f| !f.path.contains("00000002")),
        "boot scripts are in bootcmd"
    );
    assert!(
        c.files.iter().all(|f| !f.path.contains("00000006")),
        "ansible is not shipped"
    );
    for p in [
        "boot.sh",
        "boot.Linux/01-etc-environment.sh",
        "util/lima-provision.sh",
    ] {
        assert_eq!(get(p).mode, 0o755);
    }
    assert!(c.file("lima-guestagent").is_none());
    assert_eq!(get("user-data").mode, 0o644);
}

#[test]
fn file_names_fit_the_iso_limit() {
    let c = Fixture::new(CONFIG).generate();
    for f in &c.files {
        for part in f.path.split('/') {
            assert!(part.len() <= 30, "{}", f.path);
        }
    }
    let long = CidataFile {
        path: format!("boot.Linux/{}.sh", "x".repeat(28)),
        data: vec![],
        mode: 0o755,
    };
    let err = check_names(&[long]).unwrap_err();
    assert!(matches!(err, CidataError::NameTooLong { len: 31, .. }));
    assert!(err.to_string().contains("at most 30"), "{err}");
}

#[test]
fn guest_agent_is_shipped_and_gunzipped() {
    use std::io::Write;
    let d = tempfile::tempdir().unwrap();
    let plain = d.path().join("lima-guestagent");
    std::fs::write(&plain, b"\x7fELF agent").unwrap();
    let gz = d.path().join("lima-guestagent.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(b"\x7fELF agent").unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();
    let f = Fixture::new(CONFIG);
    for p in [&plain, &gz] {
        let mut input = f.input();
        input.guest_agent = Some(p);
        let c = generate(&input).unwrap();
        let ga = c.file("lima-guestagent").unwrap();
        assert_eq!(ga.data, b"\x7fELF agent");
        assert_eq!(ga.mode, 0o755);
    }
    let mut input = f.input();
    let missing = d.path().join("missing");
    input.guest_agent = Some(&missing);
    assert!(matches!(
        generate(&input),
        Err(CidataError::GuestAgent { .. })
    ));
}

#[test]
fn bad_input_is_refused() {
    let f = Fixture::new(CONFIG);
    let mut input = f.input();
    input.authorized_keys = &[];
    assert!(matches!(generate(&input), Err(CidataError::NoSshKeys)));

    let mut f = Fixture::new(CONFIG);
    f.spec.os = crate::spec::typed::Os::FreeBSD;
    assert!(matches!(
        generate(&f.input()),
        Err(CidataError::UnsupportedOs(_))
    ));

    let mut f = Fixture::new(CONFIG);
    f.spec.env.insert("BAD".into(), "a\nb".into());
    assert!(matches!(
        generate(&f.input()),
        Err(CidataError::InvalidValue { .. })
    ));
}

#[test]
fn plain_mode_is_flagged() {
    let c = Fixture::new("images: [{location: /x}]\nplain: true\n").generate();
    let env = text(&c, "lima.env");
    assert!(env.contains("\nLIMA_CIDATA_PLAIN=1\n"));
    assert!(env.contains("\nLIMA_CIDATA_MOUNTS=0\n"));
}

/// Every file under `guest/` is shipped (and nothing else is listed).
#[test]
fn every_guest_script_is_shipped() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/cidata/guest");
    let mut on_disk = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                on_disk.push(
                    p.strip_prefix(&root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    on_disk.sort();
    let mut listed: Vec<String> = scripts::GUEST_SCRIPTS
        .iter()
        .map(|(p, _)| p.to_string())
        .collect();
    listed.sort();
    assert_eq!(on_disk, listed);
}

/// The scripts parse: `bash -n` for the shipped ones, `sh -n` for what cloud-init runs.
#[test]
fn scripts_parse() {
    let d = tempfile::tempdir().unwrap();
    for (path, text) in scripts::GUEST_SCRIPTS {
        let p = d.path().join(path.replace('/', "_"));
        std::fs::write(&p, text).unwrap();
        // bash, except boot.sh and Alpine's essentials, which run before /bin/bash
        // exists there (and are checked with dash, the POSIX sh here; busybox ash
        // checks every script in tests/shells.rs).
        let shell = if text.starts_with("#!/bin/sh\n") {
            assert!(
                *path == crate::store::paths::cidata_files::BOOT_SH
                    || text.contains("[ -f /etc/alpine-release ] || exit 0"),
                "{path}"
            );
            "sh"
        } else {
            assert!(text.starts_with("#!/bin/bash\n"), "{path}");
            "bash"
        };
        let out = std::process::Command::new(shell)
            .arg("-n")
            .arg(&p)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let c = Fixture::new(CONFIG).generate();
    let n = yaml(text(&c, "user-data"));
    let mut sh: Vec<String> = n
        .get("bootcmd")
        .unwrap()
        .as_seq()
        .unwrap()
        .iter()
        .map(|b| s(b).to_string())
        .collect();
    sh.push(
        s(n.get("write_files").unwrap().as_seq().unwrap()[0]
            .get("content")
            .unwrap())
        .into(),
    );
    for (i, script) in sh.iter().enumerate() {
        let p = d.path().join(format!("sh{i}"));
        std::fs::write(&p, script).unwrap();
        let out = std::process::Command::new("sh")
            .arg("-n")
            .arg(&p)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The provision runner's status and log files, on the host's bash.
#[test]
fn provision_runner_records_exit_status_and_output() {
    let d = tempfile::tempdir().unwrap();
    let runner = d.path().join("lima-provision.sh");
    let (_, text) = scripts::GUEST_SCRIPTS
        .iter()
        .find(|(p, _)| *p == "util/lima-provision.sh")
        .unwrap();
    std::fs::write(&runner, text).unwrap();
    let status_dir = d.path().join("status");
    let run = |idx: &str, script: &str| {
        std::process::Command::new("bash")
            .arg(&runner)
            .args(["system", idx, "sh", "-c", script])
            .env("LIMA_PROVISION_DIR", &status_dir)
            .env("LIMA_CIDATA_IID", IID)
            .env_remove("LIMA_CIDATA_USER")
            .output()
            .unwrap()
    };
    let out = run("00000007", "echo out; echo err >&2; exit 3");
    assert_eq!(out.status.code(), Some(3));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("[system 00000007] out"), "{stdout}");
    assert!(stdout.contains("failed with exit status 3"), "{stdout}");
    let status = std::fs::read_to_string(status_dir.join("00000007.status")).unwrap();
    let lines: Vec<&str> = status.lines().collect();
    assert_eq!(&lines[..3], ["mode=system", "exit=3", "iid=iid-1700000000"]);
    assert!(lines[3].starts_with("started=") && lines[4].starts_with("finished="));
    assert_eq!(
        std::fs::read_to_string(status_dir.join("00000007.log")).unwrap(),
        "out\nerr\n"
    );
    let out = run("00000008", "true");
    assert!(out.status.success());
    let status = std::fs::read_to_string(status_dir.join("00000008.status")).unwrap();
    assert!(status.contains("\nexit=0\n"));
}

#[test]
fn written_iso_round_trips_through_hadris() {
    // The real readers (isoinfo, xorriso) are exercised in tests/it/cidata_iso.rs.
    let c = Fixture::new(CONFIG).generate();
    let bytes = iso::iso_bytes(&c.files).unwrap();
    assert_eq!(bytes.len() % 2048, 0);
    assert_eq!(&bytes[0x8001..0x8006], b"CD001");
    assert_eq!(&bytes[0x8028..0x802e], b"cidata");
    let dup = vec![c.files[0].clone(), c.files[0].clone()];
    assert!(iso::iso_bytes(&dup).is_err());
}

/// `mode: boot` entries run in order under `sh`, each by its own interpreter,
/// with PARAM_* set; a failing one does not stop the next.
#[test]
fn boot_commands_run_in_sequence() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out");
    let cfg = format!(
        "images: [{{location: /x}}]\nparam: {{OUT: '{}'}}\nprovision:\n- mode: boot\n  script: |\n    #!/bin/bash\n    echo \"bash:${{BASH_VERSION:+yes}}:$PARAM_OUT\" >> \"$PARAM_OUT\"\n- mode: boot\n  script: |\n    echo no-shebang >> \"$PARAM_OUT\"\n    exit 3\n- mode: boot\n  script: |\n    #!/bin/sh\n    echo third >> \"$PARAM_OUT\"\n",
        out.display()
    );
    let c = Fixture::new(&cfg).generate();
    let n = yaml(text(&c, "user-data"));
    let mut script = String::new();
    for b in &n.get("bootcmd").unwrap().as_seq().unwrap()[1..] {
        script.push_str(s(b));
    }
    let script = script.replace(
        "/run/lima-boot-script",
        &d.path().join("bs").to_string_lossy(),
    );
    let r = std::process::Command::new("sh")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(
        stderr.contains("provision[1] (mode: boot) failed with exit status 3"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        format!("bash:yes:{}\nno-shebang\nthird\n", out.display())
    );
}

/// Issue 13 row 5, defence in depth: a value with a control character that
/// reaches the writers without validation is refused with an error naming
/// the variable (or fstab/user-data field); nothing is generated.
#[test]
fn unvalidated_control_characters_are_refused_by_the_writers() {
    use crate::spec::typed::{Network, NetworkAttachment, Provision};
    const EVIL: &str = "\nPATH=/tmp/evil";
    type Set = fn(&mut Spec);
    let cases: &[(&str, &str, Set)] = &[
        ("lima.env", "LIMA_CIDATA_MOUNTS_1_MOUNTPOINT", |s| {
            s.mounts[1].mount_point.push_str(EVIL)
        }),
        ("lima.env", "LIMA_CIDATA_HOSTHOME_MOUNTPOINT", |s| {
            s.mounts[0].mount_point.push_str(EVIL)
        }),
        ("lima.env", "LIMA_CIDATA_HOME", |s| {
            s.user.home.push_str(EVIL)
        }),
        ("lima.env", "LIMA_CIDATA_SHELL", |s| s.user.shell.push('\0')),
        ("lima.env", "LIMA_CIDATA_COMMENT", |s| {
            s.user.comment.push('\r')
        }),
        ("lima.env", "LIMA_CIDATA_USER", |s| {
            s.user.name.push_str(EVIL)
        }),
        ("lima.env", "LIMA_CIDATA_DISK_1_FSTYPE", |s| {
            s.additional_disks[1].fs_type.push_str(EVIL)
        }),
        ("lima.env", "LIMA_CIDATA_DISK_1_FSARGS", |s| {
            s.additional_disks[1].fs_args.push(EVIL.into())
        }),
        ("lima.env", "LIMA_CIDATA_DATAFILE_00000003_PATH", |s| {
            if let Provision::Data(d) = &mut s.provision[3] {
                d.path.push_str(EVIL)
            }
        }),
        ("lima.env", "LIMA_CIDATA_DATAFILE_00000003_OWNER", |s| {
            if let Provision::Data(d) = &mut s.provision[3] {
                d.owner.push('\x1b')
            }
        }),
        (
            "lima.env",
            "LIMA_CIDATA_YQ_PROVISION_00000005_FORMAT",
            |s| {
                if let Provision::Yq(y) = &mut s.provision[5] {
                    y.format.push_str(EVIL)
                }
            },
        ),
        ("lima.env", "LIMA_CIDATA_GUEST_INSTALL_PREFIX", |s| {
            s.guest_install_prefix.push_str(EVIL)
        }),
        ("fstab", "mounts[1] options", |s| {
            s.mounts[1].nine_p.cache.push_str(EVIL)
        }),
        ("fstab", "mounts[1] options", |s| {
            s.mounts[1].nine_p.protocol_version.push_str(" x")
        }),
        ("user-data", "timezone", |s| {
            s.timezone = Some(format!("Europe/Berlin{EVIL}"))
        }),
        ("network", "NIC 1 interface", |s| {
            s.networks.push(Network {
                attachment: NetworkAttachment::Socket("/x.sock".into()),
                mac_address: "52:55:55:00:00:01".into(),
                interface: format!("lima0{EVIL}"),
                metric: 100,
            })
        }),
        ("param", "FOO", |s| {
            s.param.insert("FOO".into(), format!("bar{EVIL}"));
        }),
        ("env", "MYVAR", |s| {
            s.env.insert("MYVAR".into(), format!("v\x01{EVIL}"));
        }),
    ];
    for (what, key, set) in cases {
        let mut f = Fixture::new(CONFIG);
        set(&mut f.spec);
        match generate(&f.input()) {
            Err(e @ CidataError::InvalidValue { .. }) => {
                let CidataError::InvalidValue {
                    what: w, key: k, ..
                } = &e
                else {
                    unreachable!()
                };
                assert_eq!((*w, k.as_str()), (*what, *key), "{e}");
                assert!(e.to_string().contains(key), "{e}");
            }
            other => panic!(
                "{what} {key}: expected a refusal, got {:?}",
                other.map(|_| "the files")
            ),
        }
    }
    // A tab stays legitimate in param and env values (Lima's rule).
    let mut f = Fixture::new(CONFIG);
    f.spec.param.insert("FOO".into(), "a\tb".into());
    f.spec.env.insert("MYVAR".into(), "a\tb".into());
    let c = f.generate();
    assert!(text(&c, "param.env").contains("PARAM_FOO=a\tb\n"));
    assert!(text(&c, "etc_environment").contains("\nMYVAR=a\tb\n"));

    // The limactl process's proxy variables are not validated: refused here.
    let mut f = Fixture::new(CONFIG);
    f.host_env
        .insert("http_proxy".into(), format!("http://proxy:3128{EVIL}"));
    let e = generate(&f.input()).unwrap_err().to_string();
    assert!(e.contains("env") && e.contains("_PROXY"), "{e}");
}

/// A Linux interface name may hold `$`, `;`, `'` and `` ` ``, and validation
/// allows them (`x$(reboot)` is a valid `networks[].interface`): the
/// NIC-renaming boot command quotes each `MAC=name` word.
#[test]
fn interface_names_are_quoted_in_the_nic_boot_command() {
    use crate::spec::typed::{Network, NetworkAttachment};
    let d = tempfile::tempdir().unwrap();
    let mut f = Fixture::new(CONFIG);
    let evil = "x$(touch${IFS}p)'`touch${IFS}q`;touch${IFS}r";
    f.spec.networks.push(Network {
        attachment: NetworkAttachment::Socket("/x.sock".into()),
        mac_address: "52:55:55:00:00:01".into(),
        interface: evil.into(),
        metric: 100,
    });
    let c = f.generate();
    let n = yaml(text(&c, "user-data"));
    let heal = s(&n.get("bootcmd").unwrap().as_seq().unwrap()[0]).to_string();
    let line = heal
        .lines()
        .find(|l| l.starts_with("for lima_nic in "))
        .unwrap();
    // The loop header with a body that only prints each word.
    let script = format!("{line}\n  printf '%s\\n' \"$lima_nic\"\ndone\n");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(&script)
        .current_dir(d.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{script}: {out:?}");
    let words = String::from_utf8(out.stdout).unwrap();
    let words: Vec<&str> = words.lines().collect();
    assert_eq!(words[1], format!("52:55:55:00:00:01={evil}"), "{script}");
    assert_eq!(words.len(), 2);
    assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0, "{script}");
}

/// The folded user-data of a volume-less NoCloud source (a KubeVirt export)
/// carries every file of the ISO except the three cloud-init reads itself,
/// byte for byte, root's only; `runcmd` starts boot.sh from there and links
/// the per-boot hook; nothing mounts a cidata volume.
#[test]
fn nocloud_folds_the_volume_into_write_files() {
    let fx = Fixture::new(CONFIG);
    let iso = fx.generate();
    let mac = "52:55:55:aa:bb:cc";
    let nc = generate_nocloud(&fx.input(), mac).unwrap();
    let ud = yaml(&nc.user_data);
    let written: BTreeMap<String, (String, String)> = ud
        .get("write_files")
        .unwrap()
        .as_seq()
        .unwrap()
        .iter()
        .map(|w| {
            (
                s(w.get("path").unwrap()).to_string(),
                (
                    s(w.get("content").unwrap()).to_string(),
                    s(w.get("permissions").unwrap()).to_string(),
                ),
            )
        })
        .collect();
    let dir = guest_files::FOLDED_CIDATA_DIR;
    let mut expected = 0;
    for f in &iso.files {
        // The archive is ISO-only (too big for user-data; the export turns containerd off).
        if [
            names::USER_DATA,
            names::META_DATA,
            names::NETWORK_CONFIG,
            names::NERDCTL_ARCHIVE,
        ]
        .contains(&f.path.as_str())
        {
            continue;
        }
        expected += 1;
        let (content, perm) = written
            .get(&format!("{dir}/{}", f.path))
            .unwrap_or_else(|| panic!("{} is not folded in", f.path));
        // The archive's digest goes with the archive, which stays on the ISO.
        let data: Vec<u8> = if f.path == "lima.env" {
            String::from_utf8_lossy(&f.data)
                .lines()
                .filter(|l| !l.starts_with("LIMA_CIDATA_CONTAINERD_ARCHIVE_SHA256="))
                .flat_map(|l| format!("{l}\n").into_bytes())
                .collect()
        } else {
            f.data.clone()
        };
        assert_eq!(content.as_bytes(), &data[..], "{}", f.path);
        let want = if f.mode & 0o111 != 0 { "0700" } else { "0600" };
        assert_eq!(perm, want, "{}", f.path);
    }
    // The files, and the per-boot hook.
    assert_eq!(written.len(), expected + 1);
    let hook = &written[&format!("{dir}/{}", guest_files::FOLDED_BOOT_HOOK)].0;
    assert!(hook.contains(&format!("LIMA_CIDATA_MNT={dir}\n")), "{hook}");
    let runcmd = s(&ud.get("runcmd").unwrap().as_seq().unwrap()[0]).to_string();
    assert!(
        runcmd.contains(&format!(
            "ln -sf {dir}/{} {}",
            guest_files::FOLDED_BOOT_HOOK,
            guest_files::BOOT_HOOK
        )),
        "{runcmd}"
    );
    assert!(!nc.user_data.contains("/dev/disk/by-label/cidata"));
    // The early start waits for write_files' files (later boots).
    let bootcmd = ud.get("bootcmd").unwrap().as_seq().unwrap();
    let early = s(bootcmd.last().unwrap());
    assert!(early.contains(&format!("[ -x {dir}/boot.sh ]")), "{early}");
    // The rest of the user-data is the ISO's.
    let iso_ud = yaml(text(&iso, names::USER_DATA));
    for key in ["users", "hostname", "ca_certs", "timezone", "growpart"] {
        assert_eq!(
            ud.get(key).map(Node::to_json),
            iso_ud.get(key).map(Node::to_json),
            "{key}"
        );
    }
    // Network-data matches the NIC the other engine creates.
    assert!(nc.network_data.contains(mac), "{}", nc.network_data);
    assert_eq!(
        nc.network_data.replace(mac, "X"),
        text(&iso, names::NETWORK_CONFIG).replace(&slirp_mac(Path::new("/lima/test")), "X")
    );
}
mod containerd;
mod shells;
