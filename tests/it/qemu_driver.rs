//! The QEMU driver against the real `qemu-system-x86_64` (installed by
//! `hack/install-deps.sh`; these tests fail when it is missing). No guest is
//! ever booted here: QEMU is started with `-S` (vCPUs stopped) and quit.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lima::driver::qemu::accel::{self, Accel, AccelSource};
use lima::driver::qemu::qmp::Qmp;
use lima::driver::qemu::{self, QemuArgs, firmware};
use lima::spec::typed::Arch;
use lima::spec::types::{Audio, Firmware, Mount, NineP, Video, Vnc};
use lima::spec::{LimaYaml, Spec};
use lima::store::paths::files;

fn qemu_binary() -> PathBuf {
    qemu::find_binary()
        .expect("qemu-system-x86_64 is required for these tests: run hack/install-deps.sh")
        .path
}

/// Kills QEMU if a test fails half-way.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Guard {
    fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(st) = self.0.try_wait().unwrap() {
                return st;
            }
            assert!(
                start.elapsed() < timeout,
                "QEMU did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The probe run by hand, independently of the library's code: the probe
/// guest (the checked-in boot sector) under TCG, then under KVM; KVM counts
/// as working when it runs the guest to its end faster than TCG.
fn kvm_works_independently(qemu: &Path) -> bool {
    let image = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/driver/qemu/kvm_probe.bin");
    let run = |accel: &str, cpu: &str, timeout: Duration| -> Option<Duration> {
        let t = Instant::now();
        let c = Command::new(qemu)
            .args(["-accel", accel, "-cpu", cpu, "-M", "pc", "-m", "128"])
            .args(["-display", "none", "-nodefaults", "-no-reboot"])
            .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
            .arg("-drive")
            .arg(format!(
                "format=raw,file={},if=floppy,readonly=on",
                image.display()
            ))
            .args(["-boot", "a"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut g = Guard(c);
        loop {
            if let Some(st) = g.0.try_wait().unwrap() {
                return (st.code() == Some(85)).then(|| t.elapsed());
            }
            if t.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    let tcg = run("tcg", "max", Duration::from_secs(60)).expect("TCG runs the probe guest");
    run("kvm", "host", tcg * 2).is_some_and(|kvm| kvm < tcg)
}

fn kvm_device_usable() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

#[test]
fn binary_is_found_and_recent_enough() {
    let q = qemu_binary();
    let v = qemu::version(&q).unwrap().expect("version is detectable");
    assert!(v >= qemu::HARD_MINIMUM_VERSION, "{v}");
    assert!(qemu::check_version(&q, Some(v), None).is_ok());
}

#[test]
fn accelerator_probe_matches_an_independent_run() {
    let q = qemu_binary();
    let home = tempfile::tempdir().unwrap();
    let cache = accel::cache_file(home.path());
    let choice = accel::choose(&q, "x86_64", Some(&cache), None);
    let expected = if kvm_device_usable() && kvm_works_independently(&q) {
        Accel::Kvm
    } else {
        Accel::Tcg
    };
    assert_eq!(choice.accel, expected, "{choice:?}");
    if choice.accel == Accel::Tcg {
        assert!(
            choice.reason.contains("KVM") || choice.reason.contains("kvm"),
            "{choice:?}"
        );
        assert!(
            choice.message().contains("using TCG"),
            "{}",
            choice.message()
        );
    }
    if kvm_device_usable() {
        assert_eq!(choice.source, AccelSource::Probed);
        assert!(cache.is_file());
    }
    // The CPU type follows the accelerator.
    let cpu = accel::cpu_type(&Default::default(), Arch::X86_64, choice.accel);
    assert_eq!(
        cpu,
        if expected == Accel::Kvm {
            "host"
        } else {
            "max"
        }
    );
    accel::validate_cpu_type(&q, &cpu).unwrap();
    assert!(accel::validate_cpu_type(&q, "no-such-cpu").is_err());
    accel::validate_cpu_type(&q, "Haswell-v4,-avx").unwrap();
}

#[test]
fn accelerator_probe_is_cached() {
    let q = qemu_binary();
    let d = tempfile::tempdir().unwrap();
    // A wrapper that counts how often QEMU is run.
    let count = d.path().join("runs");
    let wrapper = d.path().join("qemu-system-x86_64");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho run >> '{}'\nexec '{}' \"$@\"\n",
            count.display(),
            q.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let runs = || {
        std::fs::read_to_string(&count)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };

    let cache = accel::cache_file(&d.path().join("home"));
    let first = accel::choose(&wrapper, "x86_64", Some(&cache), None);
    if !kvm_device_usable() {
        // No usable /dev/kvm: TCG without ever running QEMU.
        assert_eq!(first.source, AccelSource::NoKvmDevice);
        assert_eq!(runs(), 0);
        return;
    }
    assert_eq!(first.source, AccelSource::Probed);
    let per_probe = runs();
    assert_eq!(per_probe, 2, "the probe runs the guest under TCG and KVM");
    let mtime = std::fs::metadata(&cache).unwrap().modified().unwrap();

    let t = Instant::now();
    let second = accel::choose(&wrapper, "x86_64", Some(&cache), None);
    let took = t.elapsed();
    assert_eq!(second.source, AccelSource::Cached);
    assert_eq!((second.accel, &second.reason), (first.accel, &first.reason));
    assert_eq!(runs(), per_probe, "the cached answer must not run QEMU");
    assert_eq!(
        std::fs::metadata(&cache).unwrap().modified().unwrap(),
        mtime
    );
    assert!(took < Duration::from_secs(2), "{took:?}");

    // A different binary (new mtime) is probed again.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::OpenOptions::new()
        .append(true)
        .open(&wrapper)
        .unwrap()
        .write_all(b"\n")
        .unwrap();
    let third = accel::choose(&wrapper, "x86_64", Some(&cache), None);
    assert_eq!(third.source, AccelSource::Probed);
    assert_eq!(runs(), 2 * per_probe);

    // Forcing skips probe and cache.
    let forced = accel::choose(&wrapper, "x86_64", Some(&cache), Some(Accel::Tcg));
    assert_eq!(
        (forced.accel, forced.source),
        (Accel::Tcg, AccelSource::Forced)
    );
    assert_eq!(runs(), 2 * per_probe);
}

#[test]
fn qmp_status_cont_powerdown_quit() {
    let q = qemu_binary();
    let d = tempfile::tempdir().unwrap();
    let sock = d.path().join("qmp.sock");
    let child = Command::new(&q)
        .args([
            "-machine",
            "q35",
            "-accel",
            "tcg",
            "-S",
            "-display",
            "none",
            "-nodefaults",
        ])
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", sock.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut g = Guard(child);
    let mut qmp = Qmp::connect(&sock, Duration::from_secs(20)).unwrap();
    assert!(qmp.qemu_version().is_some());
    assert_eq!(qmp.query_status().unwrap(), "prelaunch");
    qmp.cont().unwrap();
    assert_eq!(qmp.query_status().unwrap(), "running");
    let info = qmp.human_monitor_command("info version").unwrap();
    assert!(
        info.chars().next().is_some_and(|c| c.is_ascii_digit()),
        "{info:?}"
    );
    qmp.system_powerdown().unwrap();
    let ev = qmp
        .wait_event("POWERDOWN", Duration::from_secs(10))
        .unwrap();
    assert_eq!(ev["event"], "POWERDOWN");
    let err = qmp
        .execute("no-such-command", None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no-such-command") && err.contains("qmp.sock"),
        "{err}"
    );
    qmp.quit().unwrap();
    let st = g.wait_exit(Duration::from_secs(10));
    assert!(st.success(), "{st}");
}

fn qemu_img(args: &[&str]) {
    let out = Command::new("qemu-img")
        .args(args)
        .output()
        .expect("qemu-img (qemu-utils)");
    assert!(
        out.status.success(),
        "qemu-img {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An instance directory with a qcow2 base + overlay and an empty cidata.iso.
fn fake_instance(root: &Path) -> PathBuf {
    fake_instance_named(root, "inst")
}

fn fake_instance_named(root: &Path, name: &str) -> PathBuf {
    let inst = root.join(name);
    std::fs::create_dir_all(&inst).unwrap();
    let base = inst.join(files::BASE_DISK);
    let diff = inst.join(files::DIFF_DISK);
    qemu_img(&["create", "-q", "-f", "qcow2", base.to_str().unwrap(), "16M"]);
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-F",
        "qcow2",
        "-b",
        base.to_str().unwrap(),
        diff.to_str().unwrap(),
        "32M",
    ]);
    std::fs::write(inst.join(files::CIDATA_ISO), b"").unwrap();
    inst
}

fn config(mount: &Path) -> Spec {
    let mut y = LimaYaml {
        arch: Some("x86_64".into()),
        cpus: Some(2),
        memory: Some("256MiB".into()),
        mount_type: Some("9p".into()),
        mounts: Some(vec![Mount {
            location: mount.display().to_string(),
            mount_point: Some("/mnt/x".into()),
            writable: Some(true),
            nine_p: Some(NineP {
                security_model: Some("none".into()),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        firmware: Some(Firmware {
            legacy_bios: Some(false),
            images: Some(vec![]),
        }),
        audio: Some(Audio {
            device: Some(String::new()),
            interface: Some(String::new()),
        }),
        video: Some(Video {
            display: Some("none".into()),
            vnc: Some(Vnc {
                display: Some("127.0.0.1:0,to=9".into()),
            }),
        }),
        ..Default::default()
    };
    let host = lima::spec::host::HostInfo::for_tests();
    lima::spec::defaults::fill(
        &mut y,
        &lima::spec::defaults::FillContext {
            host: &host,
            instance_name: "drvtest".into(),
            instance_dir: "/lima/drvtest".into(),
            lima_home: "/lima".into(),
        },
    );
    Spec::from_filled(&y).unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `qemu argv -S`-style (the argv must already hold `-S`), checks QMP,
/// the pid file and the chardevs, then quits.
fn start_paused_and_check(q: &Path, argv: &[String], inst: &Path) {
    let child = Command::new(q)
        .args(argv)
        .current_dir(inst)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut g = Guard(child);
    let mut qmp = match Qmp::connect(&inst.join(files::QMP_SOCK), Duration::from_secs(20)) {
        Ok(qmp) => qmp,
        Err(e) => {
            let _ = g.0.kill();
            let out = g.0.wait_with_output_ref();
            panic!("QEMU rejected the argv {argv:?}: {e}\n{out}");
        }
    };
    assert_eq!(qmp.query_status().unwrap(), "prelaunch");
    let pid: u32 = std::fs::read_to_string(inst.join(files::QEMU_PID))
        .expect("qemu.pid is written")
        .trim()
        .parse()
        .unwrap();
    assert_eq!(pid, g.0.id());
    let chardevs = qmp.execute("query-chardev", None).unwrap().to_string();
    for id in ["char-serial", "char-serial-virtio", "char-qmp", "qga0"] {
        assert!(
            chardevs.contains(&format!("\"{id}\"")),
            "{id} missing: {chardevs}"
        );
    }
    let qtree = qmp.human_monitor_command("info qtree").unwrap();
    for dev in [
        "virtio-blk-pci",
        "scsi-cd",
        "virtio-net-pci",
        "virtio-rng-pci",
        "virtconsole",
        "virtserialport",
        "virtio-9p-pci",
        "qemu-xhci",
    ] {
        assert!(qtree.contains(dev), "{dev} missing from info qtree");
    }
    assert!(qtree.contains("io.lima-vm.guest_agent.0"));
    assert!(inst.join(files::SERIAL_LOG).exists());
    assert!(inst.join(files::SERIALV_LOG).exists());
    qmp.quit().unwrap();
    let st = g.wait_exit(Duration::from_secs(10));
    assert!(st.success(), "{st}");
}

trait WaitOutputRef {
    fn wait_with_output_ref(&mut self) -> String;
}

impl WaitOutputRef for Child {
    fn wait_with_output_ref(&mut self) -> String {
        use std::io::Read;
        let _ = self.wait();
        let mut s = String::new();
        if let Some(mut e) = self.stderr.take() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }
}

#[test]
fn built_argv_is_accepted_by_qemu() {
    let q = qemu_binary();
    let d = tempfile::tempdir().unwrap();
    let inst = fake_instance(d.path());
    let share = d.path().join("share");
    std::fs::create_dir(&share).unwrap();
    let data = d.path().join("datadisk");
    qemu_img(&["create", "-q", "-f", "qcow2", data.to_str().unwrap(), "8M"]);

    for legacy in [false, true] {
        let mut y = config(&share);
        y.firmware.legacy_bios = legacy;
        let fw = firmware::find(&y.firmware, &inst, &q).unwrap();
        assert_eq!(fw.is_none(), legacy);
        let args = QemuArgs {
            spec: &y,
            name: "drvtest",
            instance_dir: &inst,
            ssh_local_port: free_port(),
            accel: Accel::Tcg,
            cpu_type: "max".into(),
            firmware: fw,
            has_kernel: false,
            has_initrd: false,
            kernel_cmdline: None,
            mac: qemu::instance_mac(&inst),
            additional_disks: vec![data.clone()],
            base_disk_is_iso: false,
            // Exercises the QEMU_SYSTEM_X86_64 prefix path too.
            extra_prefix_args: vec!["-S".into()],
        };
        let argv = qemu::build(&args);
        assert_eq!(argv[0], "-S");
        start_paused_and_check(&q, &argv, &inst);
    }
}

/// Issue 13 row 12: a LIMA_HOME (so every instance file) and a 9p mount
/// location with commas; QEMU would read `file=/a,b/diffdisk` as the option
/// `b/diffdisk` and refuse to start. The generated argv starts (QMP answers,
/// every chardev and the 9p device exist) and the files land at the real paths.
#[test]
fn commas_in_lima_home_and_mount_paths_are_accepted_by_qemu() {
    let q = qemu_binary();
    let d = tempfile::tempdir().unwrap();
    let home = d.path().join("li,ma");
    std::fs::create_dir(&home).unwrap();
    let inst = fake_instance_named(&home, "v,m");
    let share = d.path().join("sh,are=x");
    std::fs::create_dir(&share).unwrap();
    let data = home.join("data,disk");
    qemu_img(&["create", "-q", "-f", "qcow2", data.to_str().unwrap(), "8M"]);
    let y = config(&share);
    let fw = firmware::find(&y.firmware, &inst, &q).unwrap();
    let args = QemuArgs {
        spec: &y,
        name: "drvtest",
        instance_dir: &inst,
        ssh_local_port: free_port(),
        accel: Accel::Tcg,
        cpu_type: "max".into(),
        firmware: fw,
        has_kernel: false,
        has_initrd: false,
        kernel_cmdline: None,
        mac: qemu::instance_mac(&inst),
        additional_disks: vec![data.clone()],
        base_disk_is_iso: false,
        extra_prefix_args: vec!["-S".into()],
    };
    let argv = qemu::build(&args);
    assert!(
        argv.iter().any(|w| w.contains("/li,,ma/v,,m/diffdisk")),
        "{argv:?}"
    );
    start_paused_and_check(&q, &argv, &inst);
}

#[test]
fn prepare_end_to_end_with_probe_and_firmware() {
    qemu_binary();
    let d = tempfile::tempdir().unwrap();
    let inst = fake_instance(d.path());
    let share = d.path().join("share-not-yet-created");
    let y = config(&share);
    let home = d.path().join("home");
    let launch = qemu::Launch {
        spec: &y,
        name: "drvtest",
        instance_dir: &inst,
        ssh_local_port: free_port(),
        additional_disks: vec![],
        lima_home: &home,
    };
    let p = qemu::prepare(&launch).unwrap();
    assert!(share.is_dir(), "9p mount sources are created");
    assert!(p.version.is_some());
    let cpu = if p.accel.accel == Accel::Kvm {
        "host"
    } else {
        "max"
    };
    let i = p.argv.iter().position(|w| w == "-cpu").unwrap();
    assert_eq!(p.argv[i + 1], cpu);
    assert!(p.argv.iter().any(|w| w.starts_with("if=pflash")));
    let (bin, argv) = qemu::command_line(&launch).unwrap();
    assert_eq!(bin, p.binary);
    assert_eq!(argv, p.argv);
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
    {
        assert!(accel::cache_file(&home).is_file());
    }
    let mut argv = p.argv.clone();
    argv.push("-S".into());
    start_paused_and_check(&p.binary, &argv, &inst);

    // A missing disk is a clear error.
    std::fs::remove_file(inst.join(files::DIFF_DISK)).unwrap();
    let e = qemu::prepare(&launch).unwrap_err().to_string();
    assert!(e.contains("diffdisk"), "{e}");
}
