//! Saving a running VM to a file and loading it back, over QMP (kept apart
//! from the QMP client in `qmp.rs`): `migrate` to `exec:dd of=FILE
//! conv=nocreat` on the way out, `-incoming defer` + `migrate-incoming` from
//! `exec:cat FILE` on the way in. QEMU 7.2 (Debian 12) has no `file:` URI
//! yet; `exec:` runs `/bin/sh -c`, so the path is shell-quoted.
//!
//! The writer never creates FILE ([`save`] does, 0600): QEMU's shell
//! outlives a QEMU killed mid-save, and a `cat > FILE` starting late would
//! put back the file the caller had just discarded.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::qmp::{Qmp, QmpError};

/// The arguments a QEMU that is to load a saved state gets: it waits for
/// `migrate-incoming`, and stays paused afterwards (`-S`) so the saved
/// state can be removed before the guest changes the disks under it.
pub const INCOMING_ARGS: [&str; 3] = ["-S", "-incoming", "defer"];

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(transparent)]
    Qmp(#[from] QmpError),
    #[error("QEMU's migration {status}: {desc}")]
    Failed { status: String, desc: String },
    #[error("QEMU's migration did not finish within {}s (last status {status})", timeout.as_secs())]
    Timeout { timeout: Duration, status: String },
    #[error("cannot create {}: {err}", path.display())]
    Create {
        path: std::path::PathBuf,
        err: std::io::Error,
    },
}

/// `path` as one word of `/bin/sh` (always single-quoted).
fn sh_word(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', "'\\''"))
}

/// `exec:` URIs for writing and reading `path`.
pub fn save_uri(path: &Path) -> String {
    format!(
        "exec:dd of={} conv=nocreat bs=1M status=none",
        sh_word(path)
    )
}

pub fn load_uri(path: &Path) -> String {
    format!("exec:cat {}", sh_word(path))
}

/// What a `query-migrate` answer says: `Ok(true)` done, `Ok(false)` still
/// going, `Err` failed (pure).
pub fn migration_done(r: &Value) -> Result<bool, MigrateError> {
    let status = r["status"].as_str().unwrap_or("none");
    match status {
        "completed" => Ok(true),
        "failed" | "cancelled" => Err(MigrateError::Failed {
            status: status.into(),
            desc: r["error-desc"]
                .as_str()
                .unwrap_or("no detail from QEMU")
                .into(),
        }),
        _ => Ok(false),
    }
}

/// Saves the VM's state into `path`, made afresh (mode 0600: it holds the
/// guest's memory, keys and passwords included); on success the VM is
/// paused (`postmigrate`) with its disks flushed, and only `quit` is left.
pub fn save(qmp: &mut Qmp, path: &Path, timeout: Duration) -> Result<(), MigrateError> {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|err| MigrateError::Create {
            path: path.to_path_buf(),
            err,
        })?;
    // The default bandwidth cap (tens of MiB/s) is meant for a live
    // migration over a network; a file on local disk takes all it can.
    if let Err(e) = qmp.execute(
        "migrate-set-parameters",
        Some(json!({ "max-bandwidth": 1u64 << 40 })),
    ) {
        crate::debug!("migrate-set-parameters: {e}");
    }
    qmp.execute("migrate", Some(json!({ "uri": save_uri(path) })))?;
    let start = Instant::now();
    loop {
        let r = qmp.execute("query-migrate", None)?;
        if migration_done(&r)? {
            return Ok(());
        }
        if start.elapsed() >= timeout {
            let _ = qmp.execute("migrate_cancel", None);
            return Err(MigrateError::Timeout {
                timeout,
                status: r["status"].as_str().unwrap_or("none").into(),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Loads the state in `path` into a QEMU started with [`INCOMING_ARGS`];
/// returns once it is loaded (the VM is paused: `cont` runs it). A stream
/// QEMU cannot load makes QEMU exit, which shows here as a closed socket.
pub fn load(qmp: &mut Qmp, path: &Path, timeout: Duration) -> Result<(), MigrateError> {
    qmp.execute("migrate-incoming", Some(json!({ "uri": load_uri(path) })))?;
    let start = Instant::now();
    loop {
        let status = qmp.query_status()?;
        match status.as_str() {
            "inmigrate" => {}
            "paused" | "prelaunch" | "running" => return Ok(()),
            other => {
                return Err(MigrateError::Failed {
                    status: other.into(),
                    desc: "the saved state was not loaded".into(),
                });
            }
        }
        if start.elapsed() >= timeout {
            return Err(MigrateError::Timeout { timeout, status });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The writer's command, as QEMU's `/bin/sh -c` runs it: it fills the
    /// file the caller made, and never makes one that is gone.
    #[test]
    fn the_save_writer_never_creates_the_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("it's the state");
        let write = |data: &str| {
            let cmd = save_uri(&p);
            let mut child = std::process::Command::new("/bin/sh")
                .args(["-c", cmd.strip_prefix("exec:").unwrap()])
                .stdin(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            use std::io::Write;
            let _ = child.stdin.take().unwrap().write_all(data.as_bytes());
            child.wait().unwrap().success()
        };
        assert!(!write("stream"), "no file: the writer fails");
        assert!(!p.exists(), "and creates none");
        std::fs::write(&p, "").unwrap();
        assert!(write("stream"));
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "stream");
    }

    #[test]
    fn uris_quote_the_path_for_the_shell() {
        let p = Path::new("/h o'me/vm/vmstate");
        assert_eq!(
            save_uri(p),
            "exec:dd of='/h o'\\''me/vm/vmstate' conv=nocreat bs=1M status=none"
        );
        assert_eq!(load_uri(p), "exec:cat '/h o'\\''me/vm/vmstate'");
    }

    #[test]
    fn migration_status_is_read() {
        assert!(!migration_done(&json!({"status": "active"})).unwrap());
        assert!(!migration_done(&json!({})).unwrap());
        assert!(migration_done(&json!({"status": "completed"})).unwrap());
        let e = migration_done(&json!({"status": "failed", "error-desc": "no space"}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("failed: no space"), "{e}");
    }
}
