//! Suspended instances without a VM: what `list`, `suspend`, `stop` and
//! `delete` do with a saved state (made here as QEMU's would be left; the
//! VM side is e2e_suspend's).

use crate::common;

use common::Env;

/// A saved state as a suspend leaves it (the stream's content is not read
/// by anything but QEMU).
fn save_state(env: &Env, name: &str) {
    let dir = env.instance_dir(name);
    std::fs::write(dir.join("vmstate"), b"QEVM stream").unwrap();
    let meta = serde_json::json!({
        "configFingerprint": "x", "qemuBinary": "/usr/bin/qemu-system-x86_64",
        "qemuArgv": [], "qemuVersion": "7.2.22", "sshLocalPort": 60022,
        "iid": "iid-1", "savedAt": "2026-01-01T00:00:00Z", "size": 11
    });
    std::fs::write(dir.join("vmstate.json"), meta.to_string()).unwrap();
}

#[test]
fn a_saved_state_is_listed_stopped_away_and_deleted() {
    let env = Env::new();
    env.create_tiny("s");
    let dir = env.instance_dir("s");
    // Nothing to suspend in a stopped instance.
    let (code, _, err) = env.run(&["suspend", "s"]);
    assert_eq!(code, 1);
    assert!(err.contains("is not running (status `Stopped`)"), "{err}");

    save_state(&env, "s");
    assert_eq!(env.status("s"), "Suspended");
    assert!(env.ok(&["list", "s"]).contains("Suspended"));
    let (code, _, err) = env.run(&["suspend", "s"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("suspended already"), "{err}");
    // A truncated stream is no saved state.
    std::fs::write(dir.join("vmstate"), b"QEVM").unwrap();
    assert_eq!(env.status("s"), "Stopped");
    save_state(&env, "s");

    // stop says what it throws away, then does.
    let (code, _, err) = env.run(&["stop", "s"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("Discarding the saved state of the suspended instance `s`: stop requested"),
        "{err}"
    );
    assert_eq!(env.status("s"), "Stopped");
    for f in ["vmstate", "vmstate.json"] {
        assert!(!dir.join(f).exists(), "{f}");
    }
    // The plan shows it too.
    save_state(&env, "s");
    let j = env.list_json("s");
    assert_eq!(j["status"], "Suspended");

    env.ok(&["delete", "s"]);
    assert!(!dir.exists());
}
