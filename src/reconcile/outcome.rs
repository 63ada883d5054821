//! What a reconcile of the watch daemon returns, kube-runtime style: a typed
//! requeue decision, or a typed error that [`error_policy`] maps to one.
//! Nothing here looks at an error's text.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, FixedOffset};

use super::backoff::{Backoff, Failure};
use super::execute::ExecError;
use super::source::EntryError;

/// When the controller looks at an instance again (besides file events,
/// liveness changes and the periodic resync, which always enqueue it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requeue {
    /// Only when something changes.
    AwaitChange,
    /// Again after this long.
    After(Duration),
}

impl Requeue {
    /// The earlier of two decisions.
    pub fn min(self, other: Requeue) -> Requeue {
        match (self, other) {
            (Requeue::After(a), Requeue::After(b)) => Requeue::After(a.min(b)),
            (Requeue::After(a), _) | (_, Requeue::After(a)) => Requeue::After(a),
            _ => Requeue::AwaitChange,
        }
    }
}

/// Why a reconcile did not converge.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The instance's file cannot be applied (it does not load, or another
    /// source owns the instance): nothing is done until it changes.
    #[error("{}: not applied: {error}", file.display())]
    Entry { file: PathBuf, error: EntryError },
    #[error(transparent)]
    Exec(#[from] ExecError),
}

/// How long to wait before retrying when another actor holds the
/// instance's lock (not a failure: the other actor is making progress).
pub const BUSY_RETRY: Duration = Duration::from_secs(2);

/// The error policy: refusals and bad files wait for a change (retrying
/// cannot help); a busy instance is retried soon; every other failure is
/// counted in the backoff and retried when it allows.
pub fn error_policy(
    err: &ReconcileError,
    backoff: &mut Backoff,
    cap: Duration,
    now: DateTime<FixedOffset>,
) -> Requeue {
    match err {
        ReconcileError::Entry { .. } | ReconcileError::Exec(ExecError::Refused { .. }) => {
            Requeue::AwaitChange
        }
        ReconcileError::Exec(ExecError::Busy(_)) => Requeue::After(BUSY_RETRY),
        ReconcileError::Exec(e) => {
            let (_, wait) = backoff.fail(Failure::Reconcile, e.to_string(), cap, now);
            Requeue::After(wait)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::plan::Refusal;

    #[test]
    fn the_policy_decides_by_variant() {
        let cap = Duration::from_secs(300);
        let now = super::super::backoff::now();
        let mut b = Backoff::default();
        let refused = ReconcileError::Exec(ExecError::Refused {
            instance: "vm".into(),
            refused: vec![Refusal::Shrink { from: 2, to: 1 }],
        });
        assert_eq!(
            error_policy(&refused, &mut b, cap, now),
            Requeue::AwaitChange
        );
        let bad_file = ReconcileError::Entry {
            file: "/src/vm.yaml".into(),
            error: EntryError::Load("garbage".into()),
        };
        assert_eq!(
            error_policy(&bad_file, &mut b, cap, now),
            Requeue::AwaitChange
        );
        let busy = ReconcileError::Exec(ExecError::Busy(std::io::Error::new(
            std::io::ErrorKind::WouldBlock,
            "busy",
        )));
        assert_eq!(
            error_policy(&busy, &mut b, cap, now),
            Requeue::After(BUSY_RETRY)
        );
        assert!(
            !b.is_failing(),
            "refusals, bad files and busy locks are not failures"
        );
        let failed = ReconcileError::Exec(ExecError::Step {
            instance: "vm".into(),
            step: "create-disk",
            message: "qemu-img: no space".into(),
        });
        let Requeue::After(wait) = error_policy(&failed, &mut b, cap, now) else {
            panic!("a failed step is retried");
        };
        assert!(wait >= Duration::from_millis(800));
        assert_eq!(b.failures, 1);
        assert!(b.reason.contains("no space"));
    }

    #[test]
    fn the_earlier_requeue_wins() {
        let s = Duration::from_secs;
        assert_eq!(
            Requeue::After(s(5)).min(Requeue::After(s(2))),
            Requeue::After(s(2))
        );
        assert_eq!(
            Requeue::AwaitChange.min(Requeue::After(s(2))),
            Requeue::After(s(2))
        );
        assert_eq!(
            Requeue::AwaitChange.min(Requeue::AwaitChange),
            Requeue::AwaitChange
        );
    }
}
