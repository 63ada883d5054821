//! Saving and loading a VM through `driver::qemu::migrate`, against real
//! QEMU without a guest (firmware only, no boot lock needed): the loaded VM
//! is paused in the very state the saved one was in, and a stream QEMU
//! cannot load is an error, never a hang or a running VM.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use lima::driver::qemu::{self, migrate, qmp::Qmp};

struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn qemu(sock: &Path, incoming: bool) -> Guard {
    let q = qemu::find_binary()
        .expect("qemu-system-x86_64 is required: run hack/install-deps.sh")
        .path;
    let mut c = Command::new(q);
    c.args([
        "-machine",
        "q35",
        "-accel",
        "tcg",
        "-m",
        "64",
        "-display",
        "none",
        "-nodefaults",
    ])
    .arg("-qmp")
    .arg(format!("unix:{},server=on,wait=off", sock.display()))
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    if incoming {
        c.args(migrate::INCOMING_ARGS);
    } else {
        c.arg("-S");
    }
    Guard(c.spawn().unwrap())
}

fn registers(qmp: &mut Qmp) -> String {
    qmp.human_monitor_command("info registers").unwrap()
}

#[test]
fn a_saved_vm_loads_paused_in_the_same_state() {
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("vm state");
    let (a, b) = (d.path().join("a.sock"), d.path().join("b.sock"));

    let _src = qemu(&a, false);
    let mut qa = Qmp::connect(&a, Duration::from_secs(20)).unwrap();
    qa.cont().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    qa.execute("stop", None).unwrap();
    let before = registers(&mut qa);
    migrate::save(&mut qa, &state, Duration::from_secs(120)).unwrap();
    assert_eq!(qa.query_status().unwrap(), "postmigrate");
    let meta = std::fs::metadata(&state).unwrap();
    assert!(meta.len() > 0);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "guest memory");
    qa.quit().unwrap();

    let _dst = qemu(&b, true);
    let mut qb = Qmp::connect(&b, Duration::from_secs(20)).unwrap();
    assert_eq!(qb.query_status().unwrap(), "inmigrate");
    migrate::load(&mut qb, &state, Duration::from_secs(120)).unwrap();
    // Paused (`-S`) until told: the saved state can go before the guest runs.
    assert_eq!(qb.query_status().unwrap(), "paused");
    assert_eq!(registers(&mut qb), before);
    qb.cont().unwrap();
    assert_eq!(qb.query_status().unwrap(), "running");
    qb.quit().unwrap();
}

#[test]
fn a_stream_qemu_cannot_load_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("garbage");
    std::fs::write(&state, vec![7u8; 4096]).unwrap();
    let sock = d.path().join("q.sock");
    let _q = qemu(&sock, true);
    let mut qmp = Qmp::connect(&sock, Duration::from_secs(20)).unwrap();
    let e = migrate::load(&mut qmp, &state, Duration::from_secs(60));
    assert!(e.is_err(), "garbage loaded: {e:?}");
}
