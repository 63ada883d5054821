//! The desired power state from `runStrategy` (KubeVirt's model) and how the
//! last run of an instance ended.

use std::path::Path;

use super::plan::PowerState;
use super::status;
use crate::spec::typed::RunStrategy;
use crate::store::Instance;

/// How the instance's last run ended, from its host agent's last event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LastExit {
    /// Never started (no events).
    NeverRan,
    /// Still running, or at least its host agent has not said it exited.
    Running,
    /// Stopped on purpose: `limactl stop`, or the guest powered itself off.
    Clean,
    /// QEMU or the host agent failed, or the host agent was killed.
    Failed(String),
}

impl LastExit {
    pub fn is_failure(&self) -> bool {
        matches!(self, LastExit::Failed(_))
    }
}

pub fn last_exit(dir: &Path, host_agent_alive: bool) -> LastExit {
    match status::last_event(dir) {
        None => LastExit::NeverRan,
        Some(e) if e.status.exiting && e.status.errors.is_empty() => LastExit::Clean,
        Some(e) if e.status.exiting => LastExit::Failed(e.status.errors.join("; ")),
        Some(_) if host_agent_alive => LastExit::Running,
        Some(_) => LastExit::Failed("the host agent died without a word".into()),
    }
}

/// What `runStrategy` asks of an existing (or new, `observed = None`) instance:
/// `Always` → running; `Halted` → stopped; `Manual` → leave it; `RerunOnFailure`
/// → running when new, never started, or after a failure, else leave it (a
/// clean poweroff or `limactl stop` is respected).
pub fn desired_power(run_strategy: RunStrategy, observed: Option<&Instance>) -> Option<PowerState> {
    match run_strategy {
        RunStrategy::RerunOnFailure => {
            let Some(o) = observed.filter(|o| o.dir_exists) else {
                return Some(PowerState::Running);
            };
            match last_exit(&o.dir, o.liveness.host_agent) {
                LastExit::NeverRan | LastExit::Failed(_) | LastExit::Running => {
                    Some(PowerState::Running)
                }
                LastExit::Clean => None,
            }
        }
        other => PowerState::from_run_strategy(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hostagent::events::{EventWriter, Status};

    #[test]
    fn exits_are_told_apart() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(last_exit(d.path(), false), LastExit::NeverRan);
        let mut w = EventWriter::open(&d.path().join("ha.stdout.log")).unwrap();
        w.emit(Status {
            running: true,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(last_exit(d.path(), true), LastExit::Running);
        assert!(
            last_exit(d.path(), false).is_failure(),
            "died without an exiting event"
        );
        w.emit(Status {
            exiting: true,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(last_exit(d.path(), false), LastExit::Clean);
        w.emit(Status {
            exiting: true,
            errors: vec!["QEMU failed".into()],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            last_exit(d.path(), false),
            LastExit::Failed("QEMU failed".into())
        );
    }

    #[test]
    fn run_strategies() {
        assert_eq!(
            desired_power(RunStrategy::Always, None),
            Some(PowerState::Running)
        );
        assert_eq!(
            desired_power(RunStrategy::Halted, None),
            Some(PowerState::Stopped)
        );
        assert_eq!(desired_power(RunStrategy::Manual, None), None);
        assert_eq!(
            desired_power(RunStrategy::RerunOnFailure, None),
            Some(PowerState::Running)
        );
        let d = tempfile::tempdir().unwrap();
        let mut o = crate::reconcile::plan::model::observed(
            crate::store::Status::Stopped,
            Some(Default::default()),
            Some(1),
        );
        o.dir = d.path().to_path_buf();
        o.dir_exists = true;
        let mut w = EventWriter::open(&d.path().join("ha.stdout.log")).unwrap();
        w.emit(Status {
            exiting: true,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            desired_power(RunStrategy::RerunOnFailure, Some(&o)),
            None,
            "a clean stop is respected"
        );
        assert_eq!(
            desired_power(RunStrategy::Always, Some(&o)),
            Some(PowerState::Running)
        );
        w.emit(Status {
            exiting: true,
            errors: vec!["x".into()],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            desired_power(RunStrategy::RerunOnFailure, Some(&o)),
            Some(PowerState::Running)
        );
    }
}
