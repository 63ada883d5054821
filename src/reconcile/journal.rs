//! The reconciler's own events, beside the host agent's: one JSON line per
//! step begun or done, in `<inst>/reconcile.log` (read by `limactl watch`).

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::plan::Step;
use crate::store::paths::files;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReconcileEvent {
    pub time: String,
    pub instance: String,
    /// `begin`, `done` or `error`; for a prune of the watch daemon,
    /// `pending` (the file is gone) and `cancelled` (it returned).
    pub phase: String,
    pub step: String,
    pub reason: String,
    /// The Git commit the desired state came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
}

/// Appends an event; failures to log never fail a reconcile.
pub fn record(dir: &Path, name: &str, step: &Step, phase: &str, revision: Option<&str>) {
    append(
        dir,
        &ReconcileEvent {
            time: chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, false),
            instance: name.to_string(),
            phase: phase.to_string(),
            step: step.action.verb().to_string(),
            reason: step.reason.to_string(),
            revision: revision.map(str::to_string),
        },
    );
}

pub fn record_error(dir: &Path, name: &str, message: &str) {
    record_note(dir, name, "error", "", message);
}

/// Appends an event that is not a step begun or done: `phase` says what
/// happened to `step` (e.g. a deletion `pending`, then `cancelled`).
pub fn record_note(dir: &Path, name: &str, phase: &str, step: &str, reason: &str) {
    record_revision_note(dir, name, phase, step, reason, None);
}

/// [`record_note`] about a Git commit.
pub fn record_revision_note(
    dir: &Path,
    name: &str,
    phase: &str,
    step: &str,
    reason: &str,
    revision: Option<&str>,
) {
    append(
        dir,
        &ReconcileEvent {
            time: chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, false),
            instance: name.to_string(),
            phase: phase.to_string(),
            step: step.to_string(),
            reason: reason.to_string(),
            revision: revision.map(str::to_string),
        },
    );
}

fn append(dir: &Path, ev: &ReconcileEvent) {
    use std::os::unix::fs::OpenOptionsExt;
    if !dir.is_dir() {
        return;
    }
    let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(dir.join(files::RECONCILE_LOG))
    else {
        return;
    };
    let _ = writeln!(
        f,
        "{}",
        serde_json::to_string(ev).expect("events serialize")
    );
}

/// Every event of an instance so far.
pub fn read_all(dir: &Path) -> Vec<ReconcileEvent> {
    std::fs::read_to_string(dir.join(files::RECONCILE_LOG))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}
