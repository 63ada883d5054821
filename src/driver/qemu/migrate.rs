//! Saving a running VM to a file and loading it back, over QMP (kept apart
//! from the QMP client in `qmp.rs`): `migrate` to `exec:cat > FILE` on the
//! way out, `-incoming defer` + `migrate-incoming` from `exec:cat FILE` on
//! the way in. QEMU 7.2 (Debian 12) has no `file:` URI yet; `exec:` runs
//! `/bin/sh -c`, so the path is shell-quoted.

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
}

/// `path` as one word of `/bin/sh` (always single-quoted).
fn sh_word(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', "'\\''"))
}

/// `exec:` URIs for writing and reading `path`.
pub fn save_uri(path: &Path) -> String {
    format!("exec:cat > {}", sh_word(path))
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

/// Saves the VM's state into `path`; on success the VM is paused
/// (`postmigrate`) with its disks flushed, and only `quit` is left to do.
pub fn save(qmp: &mut Qmp, path: &Path, timeout: Duration) -> Result<(), MigrateError> {
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

    #[test]
    fn uris_quote_the_path_for_the_shell() {
        let p = Path::new("/h o'me/vm/vmstate");
        assert_eq!(save_uri(p), "exec:cat > '/h o'\\''me/vm/vmstate'");
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
