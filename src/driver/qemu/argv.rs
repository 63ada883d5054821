//! The QEMU command line, as a pure function of a resolved `lima.yaml` and a few
//! facts measured beforehand (accelerator, CPU type, firmware, which boot files
//! exist). Order and spelling follow Lima's `Cmdline` for an x86_64 guest on a
//! Linux host (reference §2.4), with this project's layout: the root disk is
//! `diffdisk` (a qcow2 overlay on `basedisk`) and the guest agent talks over
//! the virtio port `io.lima-vm.guest_agent.0` backed by `ga.sock`.

use std::path::{Path, PathBuf};

use crate::spec::Spec;
use crate::spec::defaults::mount_tag;
use crate::spec::typed::MountType;
use crate::store::paths::files;

use super::accel::Accel;

/// The virtio-serial port name the guest agent listens on.
pub const GUEST_AGENT_PORT: &str = crate::store::paths::cidata_files::VIRTIO_PORT;

/// Options that a user's `QEMU_SYSTEM_X86_64` prefix overrides: when one of
/// them is already present, the generated one is skipped with a warning
/// (Lima's `appendArgsIfNoConflict`).
const OVERRIDABLE: &[&str] = &[
    "-m", "-cpu", "-machine", "-accel", "-smp", "-boot", "-display", "-vga", "-kernel", "-append",
    "-initrd",
];

/// Everything [`build`] needs.
#[derive(Clone, Debug)]
pub struct QemuArgs<'a> {
    pub spec: &'a Spec,
    pub name: &'a str,
    pub instance_dir: &'a Path,
    pub ssh_local_port: u16,
    pub accel: Accel,
    pub cpu_type: String,
    /// UEFI code volume attached as read-only pflash; `None` = legacy BIOS.
    pub firmware: Option<PathBuf>,
    /// `<inst>/kernel` exists (direct kernel boot).
    pub has_kernel: bool,
    /// `<inst>/initrd` exists.
    pub has_initrd: bool,
    /// Contents of `<inst>/kernel.cmdline`, if that file exists.
    pub kernel_cmdline: Option<String>,
    /// MAC of the slirp NIC (`52:55:55:…`, see [`super::instance_mac`]).
    pub mac: String,
    /// `_disk/<NAME>/datadisk` of each additional disk, in order (already locked).
    pub additional_disks: Vec<PathBuf>,
    /// `basedisk` is an ISO: `diffdisk` is an empty qcow2 and the ISO is
    /// attached as a CD-ROM that boots first (Lima ≤ 2.0 layout).
    pub base_disk_is_iso: bool,
    /// Words after the binary in `QEMU_SYSTEM_X86_64`; they come first and win.
    pub extra_prefix_args: Vec<String>,
}

/// Builds the argument list (without the binary). Conflict warnings are dropped;
/// see [`build_with_warnings`].
pub fn build(args: &QemuArgs) -> Vec<String> {
    build_with_warnings(args).0
}

/// Builds the argument list and the warnings about generated options that were
/// skipped because the `QEMU_SYSTEM_X86_64` prefix already sets them.
pub fn build_with_warnings(a: &QemuArgs) -> (Vec<String>, Vec<String>) {
    let mut b = Builder {
        argv: a.extra_prefix_args.clone(),
        warnings: Vec::new(),
    };
    let y = a.spec;
    // A path inside a `key=value,…` option: QEMU reads a lone `,` as the next
    // option (a LIMA_HOME or mount location with a comma), so it is doubled.
    // `-kernel`, `-initrd` and `-pidfile` take a plain path (`inst_plain`).
    let inst = |f: &str| escape_option(&path_str(&a.instance_dir.join(f)));
    let inst_plain = |f: &str| path_str(&a.instance_dir.join(f));

    // Memory, CPU, machine, SMP.
    b.opt("-m", y.memory.mib().to_string());
    b.opt("-cpu", a.cpu_type.clone());
    match a.accel {
        Accel::Kvm => b.opt("-machine", "q35,accel=kvm"),
        Accel::Tcg => {
            b.opt("-machine", "q35,vmport=off");
            b.opt("-accel", "tcg,thread=multi,tb-size=512");
            b.push(["-global", "ICH9-LPC.disable_s3=1"]);
            b.push(["-global", "ICH9-LPC.disable_s4=1"]);
        }
    }
    let cpus = y.cpus;
    b.opt("-smp", format!("{cpus},sockets=1,cores={cpus},threads=1"));

    // Firmware.
    if let Some(fw) = &a.firmware {
        b.push([
            "-drive".into(),
            format!(
                "if=pflash,format=raw,readonly=on,file={}",
                escape_option(&path_str(fw))
            ),
        ]);
    }
    b.push(["-device", "qemu-xhci,id=usb-bus"]);

    // Root disk and boot order.
    let diff = inst(files::DIFF_DISK);
    if a.base_disk_is_iso {
        b.push(["-drive".into(), format!("file={diff},if=virtio,discard=on")]);
        b.opt("-boot", "order=d,splash-time=0,menu=on");
        b.push([
            "-drive".into(),
            format!(
                "file={},format=raw,media=cdrom,readonly=on",
                inst(files::BASE_DISK)
            ),
        ]);
    } else {
        b.push([
            "-drive".into(),
            format!("file={diff},if=none,discard=on,id=boot-disk"),
        ]);
        b.push(["-device", "virtio-blk-pci,drive=boot-disk,bootindex=1"]);
        b.opt("-boot", "order=c,splash-time=0,menu=on");
    }

    // Additional disks.
    for d in &a.additional_disks {
        b.push([
            "-drive".into(),
            format!("file={},if=virtio,discard=on", escape_option(&path_str(d))),
        ]);
    }

    // cidata on virtio-scsi (the Debian cloud kernel has no AHCI).
    b.push([
        "-drive".into(),
        format!(
            "id=cdrom0,if=none,format=raw,readonly=on,file={}",
            inst(files::CIDATA_ISO)
        ),
    ]);
    b.push(["-device", "virtio-scsi-pci,id=scsi0"]);
    b.push(["-device", "scsi-cd,bus=scsi0.0,drive=cdrom0"]);

    // Direct kernel boot.
    if a.has_kernel {
        b.opt("-kernel", inst_plain(files::KERNEL));
    }
    if let Some(cmdline) = &a.kernel_cmdline {
        b.opt("-append", cmdline.clone());
    }
    if a.has_initrd {
        b.opt("-initrd", inst_plain(files::INITRD));
    }

    // Network 0: slirp with the SSH port forward.
    b.push([
        "-netdev".into(),
        format!(
            "user,id=net0,net={},dhcpstart=192.168.5.15,hostfwd=tcp:127.0.0.1:{}-:22",
            crate::cidata::SLIRP_NETWORK,
            a.ssh_local_port
        ),
    ]);
    b.push([
        "-device".into(),
        format!("virtio-net-pci,netdev=net0,mac={}", a.mac),
    ]);
    b.push(["-device", "virtio-rng-pci"]);

    // Audio.
    let backend = match y.audio.device.as_str() {
        "" => "none",
        "default" => "pa",
        d => d,
    };
    b.push([
        "-audiodev".into(),
        format!("{},id=snd0", escape_option(backend)),
    ]);
    if backend != "none" {
        match y.audio.interface.as_str() {
            "virtio" => b.push(["-device", "virtio-sound-pci,audiodev=snd0"]),
            _ => {
                b.push(["-device", "ich9-intel-hda"]);
                b.push(["-device", "hda-output,audiodev=snd0"]);
            }
        }
    }

    // Display. `video.display`, `video.vnc.display` (and `-cpu`) are option
    // lists the user writes on purpose (`127.0.0.1:0,to=9`): not escaped.
    let display = y.video.display.as_str();
    if display == "vnc" {
        b.opt(
            "-display",
            format!("vnc={},password=on", y.video.vnc_display),
        );
    } else {
        b.opt("-display", display);
    }
    if display == "none" {
        b.opt("-vga", "none");
    } else {
        b.push(["-device", "virtio-vga"]);
        b.push(["-device", "virtio-keyboard-pci"]);
        if display == "vnc" {
            b.push(["-device", "virtio-tablet-pci"]);
        } else {
            b.push(["-device", "virtio-mouse-pci"]);
        }
    }
    b.push(["-parallel", "none"]);

    // Serial console (ttyS0) and virtio console (hvc0), both logged.
    b.push([
        "-chardev".into(),
        format!(
            "socket,id=char-serial,path={},server=on,wait=off,logfile={}",
            inst(files::SERIAL_SOCK),
            inst(files::SERIAL_LOG)
        ),
    ]);
    b.push(["-serial", "chardev:char-serial"]);
    b.push([
        "-chardev".into(),
        format!(
            "socket,id=char-serial-virtio,path={},server=on,wait=off,logfile={}",
            inst(files::SERIALV_SOCK),
            inst(files::SERIALV_LOG)
        ),
    ]);
    b.push(["-device", "virtio-serial-pci,id=virtio-serial0,max_ports=1"]);
    b.push([
        "-device",
        "virtconsole,chardev=char-serial-virtio,id=console0",
    ]);

    // 9p mounts.
    if y.mount_type == MountType::NineP {
        for m in &y.mounts {
            let mut v = format!(
                "local,mount_tag={},path={},security_model={}",
                mount_tag(&m.location, &m.mount_point),
                escape_option(&m.location),
                escape_option(&m.nine_p.security_model)
            );
            if !m.writable {
                v.push_str(",readonly=on");
            }
            b.push(["-virtfs".into(), v]);
        }
    }

    // QMP.
    b.push([
        "-chardev".into(),
        format!(
            "socket,id=char-qmp,path={},server=on,wait=off",
            inst(files::QMP_SOCK)
        ),
    ]);
    b.push(["-qmp", "chardev:char-qmp"]);

    // Guest agent over virtio-serial.
    b.push([
        "-chardev".into(),
        format!(
            "socket,path={},server=on,wait=off,id=qga0",
            inst(files::GA_SOCK)
        ),
    ]);
    b.push(["-device", "virtio-serial-pci,id=virtio-serial-ga"]);
    b.push([
        "-device".into(),
        format!("virtserialport,bus=virtio-serial-ga.0,chardev=qga0,name={GUEST_AGENT_PORT}"),
    ]);

    // `-name` is an option list too (`guest=NAME,process=…`).
    b.push(["-name".into(), format!("lima-{}", escape_option(a.name))]);
    b.push(["-pidfile".into(), inst_plain(files::QEMU_PID)]);
    (b.argv, b.warnings)
}

struct Builder {
    argv: Vec<String>,
    warnings: Vec<String>,
}

impl Builder {
    fn push<S: Into<String>>(&mut self, words: [S; 2]) {
        self.argv.extend(words.map(Into::into));
    }

    /// Appends `key value` unless `key` (or an alias) is already present.
    fn opt(&mut self, key: &str, value: impl Into<String>) {
        let value = value.into();
        debug_assert!(OVERRIDABLE.contains(&key), "{key} is not overridable");
        if let Some(i) = self.argv.iter().position(|w| same_option(w, key)) {
            let existing = self.argv[i..(i + 2).min(self.argv.len())].join(" ");
            self.warnings.push(format!(
                "Not adding QEMU argument `{key}` `{value}`, as it conflicts with `{existing}`"
            ));
            return;
        }
        self.argv.push(key.into());
        self.argv.push(value);
    }
}

/// `word` sets option `key` (`-machine`, `--machine`, `-M`, `-machine=…`).
fn same_option(word: &str, key: &str) -> bool {
    let Some(bare) = word.strip_prefix('-') else {
        return false;
    };
    let bare = bare.strip_prefix('-').unwrap_or(bare);
    let bare = bare.split_once('=').map_or(bare, |(k, _)| k);
    let key = &key[1..];
    bare == key || (key == "machine" && bare == "M") || (key == "accel" && bare == "enable-kvm")
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// A value inside a QEMU `key=value,…` option: QEMU reads `,,` as a comma.
pub fn escape_option(value: &str) -> String {
    value.replace(',', ",,")
}

/// Splits `QEMU_SYSTEM_X86_64` like a POSIX shell would split words (quotes and
/// backslashes; no expansion). The first word is the binary.
pub fn shell_words(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err(format!("unterminated single quote in {s:?}")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => cur.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err(format!("unterminated double quote in {s:?}")),
                        },
                        Some(c) => cur.push(c),
                        None => return Err(format!("unterminated double quote in {s:?}")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') => {}
                    Some(c) => cur.push(c),
                    None => return Err(format!("trailing backslash in {s:?}")),
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::typed::ByteSize;
    use serde_json::json;

    /// 4 CPUs, 4GiB, reverse-sshfs without mounts, no audio or display.
    fn config() -> Spec {
        Spec::for_tests(json!({}))
    }

    fn args<'a>(y: &'a Spec, dir: &'a Path) -> QemuArgs<'a> {
        QemuArgs {
            spec: y,
            name: "default",
            instance_dir: dir,
            ssh_local_port: 60022,
            accel: Accel::Kvm,
            cpu_type: "host".into(),
            firmware: Some(PathBuf::from("/usr/share/OVMF/OVMF_CODE_4M.fd")),
            has_kernel: false,
            has_initrd: false,
            kernel_cmdline: None,
            mac: "52:55:55:12:34:56".into(),
            additional_disks: vec![],
            base_disk_is_iso: false,
            extra_prefix_args: vec![],
        }
    }

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    /// Reference §2.4's example, adapted to this project (diffdisk,
    /// virtio-scsi-pci, guest-agent port, reverse-sshfs so no -virtfs).
    #[test]
    fn kvm_uefi_order_matches_reference() {
        let y = config();
        let dir = Path::new("/I");
        let got = build(&args(&y, dir));
        let want = words(
            "-m 4096 -cpu host -machine q35,accel=kvm -smp 4,sockets=1,cores=4,threads=1
             -drive if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd
             -device qemu-xhci,id=usb-bus -drive file=/I/diffdisk,if=none,discard=on,id=boot-disk
             -device virtio-blk-pci,drive=boot-disk,bootindex=1 -boot order=c,splash-time=0,menu=on
             -drive id=cdrom0,if=none,format=raw,readonly=on,file=/I/cidata.iso
             -device virtio-scsi-pci,id=scsi0 -device scsi-cd,bus=scsi0.0,drive=cdrom0
             -netdev user,id=net0,net=192.168.5.0/24,dhcpstart=192.168.5.15,hostfwd=tcp:127.0.0.1:60022-:22
             -device virtio-net-pci,netdev=net0,mac=52:55:55:12:34:56 -device virtio-rng-pci
             -audiodev none,id=snd0 -display none -vga none -parallel none
             -chardev socket,id=char-serial,path=/I/serial.sock,server=on,wait=off,logfile=/I/serial.log
             -serial chardev:char-serial
             -chardev socket,id=char-serial-virtio,path=/I/serialv.sock,server=on,wait=off,logfile=/I/serialv.log
             -device virtio-serial-pci,id=virtio-serial0,max_ports=1
             -device virtconsole,chardev=char-serial-virtio,id=console0
             -chardev socket,id=char-qmp,path=/I/qmp.sock,server=on,wait=off -qmp chardev:char-qmp
             -chardev socket,path=/I/ga.sock,server=on,wait=off,id=qga0
             -device virtio-serial-pci,id=virtio-serial-ga
             -device virtserialport,bus=virtio-serial-ga.0,chardev=qga0,name=io.lima-vm.guest_agent.0
             -name lima-default -pidfile /I/qemu.pid",
        );
        assert_eq!(got, want);
    }

    #[test]
    fn tcg_machine_flags() {
        let y = config();
        let mut a = args(&y, Path::new("/I"));
        a.accel = Accel::Tcg;
        a.cpu_type = "max".into();
        let got = build(&a).join(" ");
        assert!(
            got.starts_with(
                "-m 4096 -cpu max -machine q35,vmport=off -accel tcg,thread=multi,tb-size=512 \
                 -global ICH9-LPC.disable_s3=1 -global ICH9-LPC.disable_s4=1 \
                 -smp 4,sockets=1,cores=4,threads=1 -drive if=pflash"
            ),
            "{got}"
        );
        assert!(!got.contains("accel=kvm"));
    }

    #[test]
    fn legacy_bios_has_no_pflash() {
        let y = config();
        let mut a = args(&y, Path::new("/I"));
        a.firmware = None;
        let got = build(&a);
        assert!(!got.iter().any(|w| w.contains("pflash")));
        let i = got.iter().position(|w| w.starts_with("4,sockets")).unwrap();
        assert_eq!(got[i + 1..i + 3], ["-device", "qemu-xhci,id=usb-bus"]);
    }

    #[test]
    fn direct_kernel_boot_after_cidata() {
        let y = config();
        let mut a = args(&y, Path::new("/I"));
        a.has_kernel = true;
        a.has_initrd = true;
        a.kernel_cmdline = Some("root=LABEL=lima-root ro console=ttyS0".into());
        let got = build(&a);
        let k = got.iter().position(|w| w == "-kernel").unwrap();
        assert_eq!(
            got[k - 2..k + 6],
            [
                "-device",
                "scsi-cd,bus=scsi0.0,drive=cdrom0",
                "-kernel",
                "/I/kernel",
                "-append",
                "root=LABEL=lima-root ro console=ttyS0",
                "-initrd",
                "/I/initrd"
            ]
        );
        assert_eq!(got[k + 6], "-netdev");
        // Without the files nothing is added.
        let plain = build(&args(&y, Path::new("/I")));
        assert!(
            !plain
                .iter()
                .any(|w| w == "-kernel" || w == "-append" || w == "-initrd")
        );
    }

    #[test]
    fn ninep_mounts_with_tags() {
        let mut y = Spec::for_tests(json!({
            "mountType": "9p",
            "mounts": [
                {"location": "/home/alice", "mountPoint": "/home/alice", "writable": false,
                 "9p": {"securityModel": "none"}},
                {"location": "/tmp/lima", "mountPoint": "/tmp/lima", "writable": true,
                 "9p": {"securityModel": "mapped-xattr"}},
            ],
        }));
        let got = build(&args(&y, Path::new("/I")));
        let virtfs: Vec<&String> = got
            .windows(2)
            .filter(|w| w[0] == "-virtfs")
            .map(|w| &w[1])
            .collect();
        assert_eq!(
            virtfs,
            [
                &format!(
                    "local,mount_tag={},path=/home/alice,security_model=none,readonly=on",
                    mount_tag("/home/alice", "/home/alice")
                ),
                &format!(
                    "local,mount_tag={},path=/tmp/lima,security_model=mapped-xattr",
                    mount_tag("/tmp/lima", "/tmp/lima")
                ),
            ]
        );
        // 9p comes after the virtio console and before QMP.
        let v = got.iter().position(|w| w == "-virtfs").unwrap();
        let console = got
            .iter()
            .position(|w| w.starts_with("virtconsole"))
            .unwrap();
        let qmp = got.iter().position(|w| w == "-qmp").unwrap();
        assert!(console < v && v < qmp);
        // Other mount types get no -virtfs.
        y.mount_type = MountType::ReverseSshfs;
        assert!(!build(&args(&y, Path::new("/I"))).contains(&"-virtfs".to_string()));
    }

    #[test]
    fn prefix_args_win_over_generated_options() {
        let y = config();
        let mut a = args(&y, Path::new("/I"));
        a.extra_prefix_args = words("-cpu Haswell -M pc -accel tcg -display gtk -trace enable=x");
        let (got, warnings) = build_with_warnings(&a);
        assert_eq!(
            got[..10],
            words("-cpu Haswell -M pc -accel tcg -display gtk -trace enable=x")[..]
        );
        assert_eq!(got.iter().filter(|w| *w == "-cpu").count(), 1);
        assert!(!got.iter().any(|w| w == "-machine" || w == "host"));
        assert_eq!(got.iter().filter(|w| *w == "-display").count(), 1);
        assert!(got.contains(&"-m".to_string()));
        assert_eq!(
            warnings,
            [
                "Not adding QEMU argument `-cpu` `host`, as it conflicts with `-cpu Haswell`",
                "Not adding QEMU argument `-machine` `q35,accel=kvm`, as it conflicts with `-M pc`",
                "Not adding QEMU argument `-display` `none`, as it conflicts with `-display gtk`",
            ]
        );
        // -device and friends are never treated as conflicts.
        let mut a = args(&y, Path::new("/I"));
        a.extra_prefix_args = words("-device virtio-rng-pci");
        let (got, warnings) = build_with_warnings(&a);
        assert!(warnings.is_empty());
        assert_eq!(got.iter().filter(|w| *w == "virtio-rng-pci").count(), 2);
    }

    #[test]
    fn additional_disks_and_iso_base() {
        let y = config();
        let mut a = args(&y, Path::new("/I"));
        a.additional_disks = vec![PathBuf::from("/H/_disk/data/datadisk")];
        a.base_disk_is_iso = true;
        let got = build(&a).join(" ");
        assert!(
            got.contains(
                "-device qemu-xhci,id=usb-bus -drive file=/I/diffdisk,if=virtio,discard=on \
                 -boot order=d,splash-time=0,menu=on \
                 -drive file=/I/basedisk,format=raw,media=cdrom,readonly=on \
                 -drive file=/H/_disk/data/datadisk,if=virtio,discard=on -drive id=cdrom0"
            ),
            "{got}"
        );
        assert!(!got.contains("boot-disk"));
    }

    #[test]
    fn vnc_display_and_audio() {
        let mut y = config();
        y.video.display = "vnc".into();
        y.audio.device = "default".into();
        let got = build(&args(&y, Path::new("/I"))).join(" ");
        assert!(got.contains(
            "-audiodev pa,id=snd0 -device ich9-intel-hda -device hda-output,audiodev=snd0 \
             -display vnc=127.0.0.1:0,to=9,password=on -device virtio-vga \
             -device virtio-keyboard-pci -device virtio-tablet-pci -parallel none"
        ));
        assert!(!got.contains("-vga none"));
    }

    #[test]
    fn memory_in_mib_and_smp() {
        let mut y = config();
        y.memory = ByteSize::parse("1.5GiB").unwrap();
        y.cpus = 2;
        let got = build(&args(&y, Path::new("/I")));
        assert_eq!(got[..2], ["-m", "1536"]);
        assert!(got.contains(&"2,sockets=1,cores=2,threads=1".to_string()));
    }

    /// Issue 13 row 12: a comma in LIMA_HOME, a mount location, a firmware
    /// or disk path is doubled wherever QEMU reads it inside `key=value,…`,
    /// and left alone in plain path arguments.
    #[test]
    fn commas_in_option_values_are_doubled() {
        let mut y = Spec::for_tests(json!({
            "mountType": "9p",
            "mounts": [{"location": "/dir/a,b", "mountPoint": "/mnt/a,b", "writable": true,
                        "9p": {"securityModel": "mapped-xattr"}}],
        }));
        y.audio.device = "pa,x".into();
        let dir = Path::new("/h,ome/lima/default");
        let mut a = args(&y, dir);
        a.firmware = Some(PathBuf::from("/fw,1/OVMF_CODE.fd"));
        a.additional_disks = vec![PathBuf::from("/h,ome/lima/_disk/data/datadisk")];
        a.has_kernel = true;
        a.has_initrd = true;
        let got = build(&a);
        let after = |flag: &str, prefix: &str| -> Vec<String> {
            got.windows(2)
                .filter(|w| w[0] == flag && w[1].starts_with(prefix))
                .map(|w| w[1].clone())
                .collect()
        };
        assert_eq!(
            after("-drive", ""),
            [
                "if=pflash,format=raw,readonly=on,file=/fw,,1/OVMF_CODE.fd",
                "file=/h,,ome/lima/default/diffdisk,if=none,discard=on,id=boot-disk",
                "file=/h,,ome/lima/_disk/data/datadisk,if=virtio,discard=on",
                "id=cdrom0,if=none,format=raw,readonly=on,file=/h,,ome/lima/default/cidata.iso",
            ]
        );
        assert_eq!(
            after("-chardev", ""),
            [
                "socket,id=char-serial,path=/h,,ome/lima/default/serial.sock,server=on,wait=off,logfile=/h,,ome/lima/default/serial.log",
                "socket,id=char-serial-virtio,path=/h,,ome/lima/default/serialv.sock,server=on,wait=off,logfile=/h,,ome/lima/default/serialv.log",
                "socket,id=char-qmp,path=/h,,ome/lima/default/qmp.sock,server=on,wait=off",
                "socket,path=/h,,ome/lima/default/ga.sock,server=on,wait=off,id=qga0",
            ]
        );
        assert_eq!(
            after("-virtfs", ""),
            [format!(
                "local,mount_tag={},path=/dir/a,,b,security_model=mapped-xattr",
                mount_tag("/dir/a,b", "/mnt/a,b")
            )]
        );
        assert_eq!(after("-audiodev", ""), ["pa,,x,id=snd0"]);
        // Plain path arguments are not option lists.
        assert_eq!(after("-kernel", ""), ["/h,ome/lima/default/kernel"]);
        assert_eq!(after("-initrd", ""), ["/h,ome/lima/default/initrd"]);
        assert_eq!(after("-pidfile", ""), ["/h,ome/lima/default/qemu.pid"]);
        // Without a comma nothing changes (the reference argv above).
        assert_eq!(escape_option("/a/b"), "/a/b");
        assert_eq!(escape_option("a,,b,"), "a,,,,b,,");
    }

    #[test]
    fn shell_word_splitting() {
        assert_eq!(
            shell_words(r#"/opt/q/qemu -cpu 'Haswell,-avx' -append "a b\"c" x\ y"#).unwrap(),
            [
                "/opt/q/qemu",
                "-cpu",
                "Haswell,-avx",
                "-append",
                "a b\"c",
                "x y"
            ]
        );
        assert_eq!(shell_words("  ").unwrap(), Vec::<String>::new());
        assert_eq!(shell_words("''").unwrap(), [""]);
        assert!(shell_words("'open").is_err());
    }
}
