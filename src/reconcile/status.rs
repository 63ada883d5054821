//! Kubernetes-style status of an instance (DESIGN §5), persisted atomically
//! in `<inst>/status.json`: conditions `Created`, `Running`, `Ready`,
//! `RestartRequired`, `Degraded` (each with reason, message and transition
//! time), the desired generation and the last one reconciled, the last error,
//! and the watch daemon's bookkeeping: the restart backoff, the count of
//! relaunches, a pending deletion (prune).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::hostagent::events;
use crate::spec::mutability::{self, FieldClass};
use crate::store::paths::files;
use crate::store::{self, Home, Instance, Status};

/// The condition types, in the order they are reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConditionType {
    Created,
    Running,
    Ready,
    RestartRequired,
    Degraded,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConditionStatus {
    True,
    False,
    #[default]
    Unknown,
}

impl ConditionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }
}

impl From<bool> for ConditionStatus {
    fn from(b: bool) -> Self {
        if b {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        }
    }
}

/// Why a condition has its status (one CamelCase word, as Kubernetes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConditionReason {
    DisksPrepared,
    NotCreated,
    Running,
    Stopped,
    Suspended,
    Broken,
    ConfigError,
    NotRunning,
    Ready,
    Degraded,
    Starting,
    UpToDate,
    ConfigChanged,
    RequirementsFailed,
    AsExpected,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: ConditionType,
    pub status: ConditionStatus,
    pub reason: ConditionReason,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    pub last_transition_time: String,
}

pub use super::backoff::Backoff;

/// The watch daemon found the instance's file gone and deletes it once
/// the grace period is over, unless the file returns first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingDeletion {
    /// When the file was found gone (RFC 3339).
    pub since: String,
    /// When it is deleted if the file is still gone then (RFC 3339).
    pub delete_after: String,
    pub reason: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceStatus {
    /// Bumped whenever the desired configuration is written.
    pub generation: u64,
    /// The generation the last successful reconcile brought about.
    pub observed_generation: u64,
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Restart-required changes the running VM does not have yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_restart: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Backoff>,
    /// Failed runs the watch daemon relaunched, in total: unlike the
    /// backoff, never reset by a healthy run (Kubernetes' `restartCount`).
    #[serde(default)]
    pub restarts: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_deletion: Option<PendingDeletion>,
    /// The Git commit the instance was last converged from (Flux's
    /// `lastAppliedRevision`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_revision: Option<String>,
}

impl InstanceStatus {
    pub fn condition(&self, kind: ConditionType) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.kind == kind)
    }

    pub fn is_true(&self, kind: ConditionType) -> bool {
        self.condition(kind)
            .is_some_and(|c| c.status == ConditionStatus::True)
    }

    /// The status of a condition (`Unknown` when it was never computed).
    pub fn status_of(&self, kind: ConditionType) -> ConditionStatus {
        self.condition(kind).map(|c| c.status).unwrap_or_default()
    }
}

/// The watch daemon's view of one Git source (`_daemon/sources.json`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceStatus {
    /// `git::URL//SUBDIR?ref=REF`.
    pub source: String,
    /// The commit the daemon reads (the last one fetched successfully).
    pub revision: Option<String>,
    /// When it was last fetched (RFC 3339).
    pub last_fetch: String,
    /// Why the last fetch failed (nothing was changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

fn sources_file(home: &Home) -> std::path::PathBuf {
    home.root
        .join(super::daemon::DAEMON_DIR)
        .join(crate::layout::git_files::SOURCES_STATUS)
}

/// The Git sources' status the watch daemon last wrote (empty without one).
pub fn read_sources(home: &Home) -> Vec<SourceStatus> {
    std::fs::read(sources_file(home))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

pub fn write_sources(home: &Home, list: &[SourceStatus]) -> std::io::Result<()> {
    let text = serde_json::to_vec_pretty(list).expect("status serializes");
    store::atomic::write(&sources_file(home), &text, 0o600)
}

pub fn read(dir: &Path) -> InstanceStatus {
    std::fs::read(dir.join(files::STATUS))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

pub fn write(dir: &Path, s: &InstanceStatus) -> std::io::Result<()> {
    let text = serde_json::to_vec_pretty(s).expect("status serializes");
    store::atomic::write(&dir.join(files::STATUS), &text, 0o600)
}

/// Marks that a new desired configuration was written.
pub fn bump_generation(dir: &Path) -> std::io::Result<()> {
    let mut s = read(dir);
    s.generation += 1;
    write(dir, &s)
}

/// The last host agent event, if any.
pub fn last_event(dir: &Path) -> Option<events::Event> {
    events::read_all(&dir.join(files::HA_STDOUT_LOG))
        .ok()
        .and_then(|mut v| v.pop())
}

fn set(
    out: &mut Vec<Condition>,
    prev: &InstanceStatus,
    kind: ConditionType,
    status: ConditionStatus,
    reason: ConditionReason,
    message: String,
    now: &str,
) {
    let time = match prev.condition(kind) {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => now.to_string(),
    };
    out.push(Condition {
        kind,
        status,
        reason,
        message,
        last_transition_time: time,
    });
}

/// Computes the conditions of an inspected instance (pure but for `now`).
pub fn compute(
    inst: &Instance,
    last: Option<&events::Event>,
    prev: &InstanceStatus,
    error: Option<String>,
    now: &str,
) -> InstanceStatus {
    use ConditionReason as R;
    use ConditionType as T;
    let mut c = Vec::new();
    let created = inst.present.lima_yaml && inst.present.diffdisk;
    let why = if created {
        R::DisksPrepared
    } else {
        R::NotCreated
    };
    set(
        &mut c,
        prev,
        T::Created,
        created.into(),
        why,
        String::new(),
        now,
    );
    let (running, reason) = match inst.status {
        Status::Running => (true, R::Running),
        Status::Stopped => (false, R::Stopped),
        Status::Suspended => (false, R::Suspended),
        Status::Broken => (false, R::Broken),
        Status::Unknown => (false, R::ConfigError),
    };
    let errors = inst.errors.join("; ");
    set(
        &mut c,
        prev,
        T::Running,
        running.into(),
        reason,
        errors,
        now,
    );
    let (ready, ready_reason, ready_msg) = match (running, last) {
        (false, _) => (false, R::NotRunning, String::new()),
        (true, Some(e)) if e.status.running && !e.status.degraded => {
            (true, R::Ready, String::new())
        }
        (true, Some(e)) if e.status.degraded => (false, R::Degraded, e.status.errors.join("; ")),
        (true, _) => (
            false,
            R::Starting,
            "waiting for the guest's readiness requirements".into(),
        ),
    };
    set(
        &mut c,
        prev,
        T::Ready,
        ready.into(),
        ready_reason,
        ready_msg,
        now,
    );
    let pending: Vec<String> = match (running, &inst.started, &inst.config) {
        (true, Some(started), Some(applied)) => mutability::diff(started, applied)
            .into_iter()
            .filter(|ch| {
                ch.class == FieldClass::RestartRequired || ch.class == FieldClass::GrowOnly
            })
            .map(|ch| ch.describe())
            .collect(),
        _ => Vec::new(),
    };
    let why = if pending.is_empty() {
        R::UpToDate
    } else {
        R::ConfigChanged
    };
    let text = pending.join(", ");
    set(
        &mut c,
        prev,
        T::RestartRequired,
        (!pending.is_empty()).into(),
        why,
        text,
        now,
    );
    let degraded = last.is_some_and(|e| e.status.degraded) && running;
    let (why, text) = match last.filter(|_| degraded) {
        Some(e) => (R::RequirementsFailed, e.status.errors.join("; ")),
        None => (R::AsExpected, String::new()),
    };
    set(&mut c, prev, T::Degraded, degraded.into(), why, text, now);
    InstanceStatus {
        generation: prev.generation,
        observed_generation: if error.is_none() {
            prev.generation
        } else {
            prev.observed_generation
        },
        conditions: c,
        last_error: error,
        pending_restart: pending,
        backoff: prev.backoff.clone(),
        restarts: prev.restarts,
        pending_deletion: prev.pending_deletion.clone(),
        observed_revision: prev.observed_revision.clone(),
    }
}

/// Records that the instance is converged with Git commit `revision`: in
/// its status, and as an event (`limactl watch`) when it changed.
pub fn record_revision(dir: &Path, name: &str, revision: &str) {
    if !dir.is_dir() {
        return;
    }
    let mut s = read(dir);
    if s.observed_revision.as_deref() == Some(revision) {
        return;
    }
    s.observed_revision = Some(revision.to_string());
    let _ = write(dir, &s);
    super::journal::record_revision_note(
        dir,
        name,
        "converged",
        "revision",
        &format!("converged from commit {revision}"),
        Some(revision),
    );
}

/// Re-observes an instance after a reconcile and persists its status.
pub fn record(home: &Home, name: &str, error: Option<String>) {
    let env = crate::spec::LoadEnv::new(&home.root);
    let inst = store::inspect(home, &env, name);
    if !inst.dir_exists {
        return;
    }
    let prev = read(&inst.dir);
    let now = crate::logging::now_rfc3339();
    let s = compute(&inst, last_event(&inst.dir).as_ref(), &prev, error, &now);
    if s != prev {
        let _ = write(&inst.dir, &s);
    }
}

/// The current status of an instance, recomputed from what is observed now.
pub fn current(
    home: &Home,
    env: &crate::spec::LoadEnv,
    name: &str,
) -> Option<(Instance, InstanceStatus)> {
    let inst = store::inspect(home, env, name);
    if !inst.dir_exists {
        return None;
    }
    let prev = read(&inst.dir);
    let now = crate::logging::now_rfc3339();
    let s = compute(
        &inst,
        last_event(&inst.dir).as_ref(),
        &prev,
        prev.last_error.clone(),
        &now,
    );
    Some((inst, s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::plan::model::{config, observed};

    fn ev(running: bool, degraded: bool) -> events::Event {
        events::Event {
            time: "t".into(),
            status: events::Status {
                running,
                degraded,
                errors: if degraded {
                    vec!["provision[0] failed".into()]
                } else {
                    vec![]
                },
                ..Default::default()
            },
        }
    }

    #[test]
    fn conditions_follow_observation() {
        let running = observed(
            Status::Running,
            Some(config(2, "10GiB", "x86_64")),
            Some(10 << 30),
        );
        let s = compute(
            &running,
            Some(&ev(true, false)),
            &InstanceStatus::default(),
            None,
            "t0",
        );
        assert!(
            s.is_true(ConditionType::Created)
                && s.is_true(ConditionType::Running)
                && s.is_true(ConditionType::Ready)
        );
        assert!(!s.is_true(ConditionType::RestartRequired) && !s.is_true(ConditionType::Degraded));

        let s2 = compute(&running, Some(&ev(true, true)), &s, None, "t1");
        assert!(!s2.is_true(ConditionType::Ready) && s2.is_true(ConditionType::Degraded));
        assert_eq!(
            s2.condition(ConditionType::Degraded).unwrap().message,
            "provision[0] failed"
        );
        assert_eq!(
            s2.condition(ConditionType::Running)
                .unwrap()
                .last_transition_time,
            "t0",
            "unchanged → kept"
        );
        assert_eq!(
            s2.condition(ConditionType::Ready)
                .unwrap()
                .last_transition_time,
            "t1"
        );

        let mut pending = running.clone();
        pending.config = Some(config(4, "10GiB", "x86_64"));
        let s3 = compute(&pending, Some(&ev(true, false)), &s, None, "t2");
        assert!(s3.is_true(ConditionType::RestartRequired));
        assert_eq!(s3.pending_restart, vec!["cpus 2 → 4"]);

        let stopped = observed(
            Status::Stopped,
            Some(config(2, "10GiB", "x86_64")),
            Some(10 << 30),
        );
        let s4 = compute(&stopped, None, &s3, Some("boom".into()), "t3");
        assert!(!s4.is_true(ConditionType::Running) && !s4.is_true(ConditionType::Ready));
        assert_eq!(s4.last_error.as_deref(), Some("boom"));
    }

    #[test]
    fn the_daemons_bookkeeping_survives_recomputing() {
        let stopped = observed(
            Status::Stopped,
            Some(config(2, "10GiB", "x86_64")),
            Some(10 << 30),
        );
        let prev = InstanceStatus {
            restarts: 3,
            pending_deletion: Some(PendingDeletion {
                since: "t0".into(),
                delete_after: "t1".into(),
                reason: "its file is gone".into(),
            }),
            ..Default::default()
        };
        let s = compute(&stopped, None, &prev, None, "t2");
        assert_eq!(s.restarts, 3);
        assert_eq!(s.pending_deletion, prev.pending_deletion);
        let j = serde_json::to_string(&s).unwrap();
        assert!(
            j.contains("\"restarts\":3") && j.contains("\"pendingDeletion\":{\"since\":\"t0\""),
            "{j}"
        );
        let old: InstanceStatus =
            serde_json::from_str(r#"{"generation":1,"observedGeneration":1,"conditions":[]}"#)
                .unwrap();
        assert_eq!(
            old.restarts, 0,
            "a status written before the count reads as 0"
        );
    }
}
