//! The watch daemon's restart backoff (`CrashLoopBackOff`-like), one type
//! for both kinds of failure, persisted in `status.json` (so `limactl
//! status` shows it and a new daemon continues it). Time is passed in, so
//! the bookkeeping is tested without sleeping.

use std::time::Duration;

use chrono::{DateTime, FixedOffset, SecondsFormat};
use serde::{Deserialize, Serialize};

use super::controller;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Backoff {
    /// Failed or crashed starts in a row.
    pub failures: u32,
    /// When the next attempt may happen (RFC 3339).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub next_attempt: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// The run whose crash was counted last (a crash is counted once).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_failure_time: String,
}

/// What failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure<'a> {
    /// The VM of a run (named by when it started) failed. The first
    /// relaunch after a first failure is immediate.
    Crash { run: &'a str },
    /// A reconcile failed; it is retried after at least a second.
    Reconcile,
}

impl Backoff {
    pub fn is_failing(&self) -> bool {
        self.failures > 0
    }

    /// Counts a failure (a crash of the same run only once) and schedules
    /// the next attempt. Returns whether it was counted now, and the wait.
    pub fn fail(
        &mut self,
        failure: Failure,
        reason: String,
        cap: Duration,
        now: DateTime<FixedOffset>,
    ) -> (bool, Duration) {
        if let Failure::Crash { run } = failure {
            if self.last_failure_time == run {
                return (false, self.wait_left(now).unwrap_or_default());
            }
            self.last_failure_time = run.to_string();
        }
        self.failures += 1;
        self.reason = reason;
        let wait = match failure {
            Failure::Crash { .. } => controller::backoff(self.failures, cap),
            Failure::Reconcile => controller::backoff(self.failures.max(2), cap),
        };
        self.next_attempt = (now + chrono::Duration::from_std(wait).unwrap_or_default())
            .to_rfc3339_opts(SecondsFormat::Millis, false);
        (true, wait)
    }

    /// Time until the next attempt may happen, if that is in the future.
    pub fn wait_left(&self, now: DateTime<FixedOffset>) -> Option<Duration> {
        let at = DateTime::parse_from_rfc3339(&self.next_attempt).ok()?;
        (at > now).then(|| (at - now).to_std().ok()).flatten()
    }

    /// Forgets past failures.
    pub fn clear(&mut self) {
        *self = Backoff::default();
    }
}

/// The local time now, as the backoff bookkeeping takes it.
pub fn now() -> DateTime<FixedOffset> {
    chrono::Local::now().fixed_offset()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(s).unwrap()
    }

    #[test]
    fn crashes_count_once_per_run_and_the_first_relaunch_is_immediate() {
        let cap = Duration::from_secs(300);
        let t0 = at("2026-12-03T10:00:00+00:00");
        let mut b = Backoff::default();
        let (counted, wait) = b.fail(Failure::Crash { run: "run1" }, "died".into(), cap, t0);
        assert!(counted && wait.is_zero());
        assert_eq!(b.failures, 1);
        let (counted, _) = b.fail(Failure::Crash { run: "run1" }, "died".into(), cap, t0);
        assert!(!counted, "the same run is counted once");
        assert_eq!(b.failures, 1);
        let (counted, wait) = b.fail(Failure::Crash { run: "run2" }, "died".into(), cap, t0);
        assert!(counted);
        assert!(wait >= Duration::from_millis(800) && wait <= Duration::from_millis(1200));
        assert_eq!(b.failures, 2);
        let left = b.wait_left(t0).unwrap();
        assert!(
            left.abs_diff(wait) < Duration::from_millis(2),
            "{left:?} vs {wait:?}"
        );
        assert_eq!(b.wait_left(t0 + chrono::Duration::seconds(2)), None);
        b.clear();
        assert!(!b.is_failing());
    }

    #[test]
    fn failed_reconciles_wait_at_least_a_second_and_are_capped() {
        let cap = Duration::from_secs(300);
        let t0 = at("2026-12-03T10:00:00+00:00");
        let mut b = Backoff::default();
        let (_, wait) = b.fail(Failure::Reconcile, "boom".into(), cap, t0);
        assert!(wait >= Duration::from_millis(800), "{wait:?}");
        assert_eq!(b.reason, "boom");
        for _ in 0..30 {
            b.fail(Failure::Reconcile, "boom".into(), cap, t0);
        }
        let (_, wait) = b.fail(Failure::Reconcile, "boom".into(), cap, t0);
        assert!(wait <= cap && wait >= cap.mul_f64(0.8), "{wait:?}");
    }
}
