//! A work queue in the style of kube-runtime's controller (DESIGN §8):
//! keys are deduplicated, a key is never handed to two workers at once, work
//! can be scheduled for later (debounce, requeue-after, backoff), and keys
//! re-added while in flight run again right after.

use std::collections::{HashMap, HashSet};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct State {
    /// Key → when it may run.
    pending: HashMap<String, Instant>,
    in_flight: HashSet<String>,
    /// Added while in flight: when to run again after it finishes.
    again: HashMap<String, Instant>,
    shutdown: bool,
}

#[derive(Default)]
pub struct Queue {
    state: Mutex<State>,
    cv: Condvar,
}

/// How a key is (re)scheduled.
#[derive(Clone, Copy, Debug)]
pub enum When {
    /// As soon as possible, or keep an earlier time already scheduled.
    Now,
    /// Not before `now + d`; an earlier scheduled time wins (requeue-after).
    After(Duration),
    /// Exactly `now + d`, pushing back a time already scheduled (debounce).
    Debounce(Duration),
}

impl Queue {
    pub fn new() -> Queue {
        Queue::default()
    }

    pub fn add(&self, key: &str, when: When) {
        let now = Instant::now();
        let mut s = self.state.lock().unwrap();
        let (at, replace) = match when {
            When::Now => (now, false),
            When::After(d) => (now + d, false),
            When::Debounce(d) => (now + d, true),
        };
        let in_flight = s.in_flight.contains(key);
        let map = if in_flight {
            &mut s.again
        } else {
            &mut s.pending
        };
        match map.get_mut(key) {
            Some(t) if replace => *t = at,
            Some(t) => *t = (*t).min(at),
            None => {
                map.insert(key.to_string(), at);
            }
        }
        drop(s);
        self.cv.notify_all();
    }

    /// Blocks until a key is due and not in flight; `None` after shutdown.
    pub fn next(&self) -> Option<String> {
        let mut s = self.state.lock().unwrap();
        loop {
            if s.shutdown {
                return None;
            }
            let now = Instant::now();
            let due = s
                .pending
                .iter()
                .filter(|(k, _)| !s.in_flight.contains(*k))
                .min_by_key(|(_, t)| **t)
                .map(|(k, t)| (k.clone(), *t));
            match due {
                Some((k, t)) if t <= now => {
                    s.pending.remove(&k);
                    s.in_flight.insert(k.clone());
                    return Some(k);
                }
                Some((_, t)) => {
                    s = self.cv.wait_timeout(s, t - now).unwrap().0;
                }
                None => {
                    s = self
                        .cv
                        .wait_timeout(s, Duration::from_secs(3600))
                        .unwrap()
                        .0;
                }
            }
        }
    }

    /// Marks a key done; if it was added meanwhile it becomes pending again.
    pub fn done(&self, key: &str) {
        let mut s = self.state.lock().unwrap();
        s.in_flight.remove(key);
        if let Some(t) = s.again.remove(key) {
            let e = s.pending.entry(key.to_string()).or_insert(t);
            *e = (*e).min(t);
        }
        drop(s);
        self.cv.notify_all();
    }

    pub fn shutdown(&self) {
        self.state.lock().unwrap().shutdown = true;
        self.cv.notify_all();
    }

    pub fn is_in_flight(&self, key: &str) -> bool {
        self.state.lock().unwrap().in_flight.contains(key)
    }
}

/// Exponential backoff with jitter, capped: 1 s, 2 s, 4 s, … up to `cap`,
/// each ±20 %. `failures` counts consecutive failures (the first relaunch
/// after a first failure is immediate: `failures <= 1` → zero).
pub fn backoff(failures: u32, cap: Duration) -> Duration {
    if failures <= 1 {
        return Duration::ZERO;
    }
    let base = Duration::from_secs(1u64 << (failures - 2).min(20));
    let d = base.min(cap);
    // Cheap jitter from the clock: spreads instances that failed together.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    let frac = (nanos % 400) as f64 / 1000.0 - 0.2;
    d.mul_f64(1.0 + frac).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn keys_are_deduplicated_and_never_concurrent() {
        let q = Queue::new();
        q.add("a", When::Now);
        q.add("a", When::Now);
        q.add("b", When::Now);
        let first = q.next().unwrap();
        let second = q.next().unwrap();
        assert_ne!(first, second);
        // Re-added while in flight: not handed out until done.
        q.add(&first, When::Now);
        let q = Arc::new(q);
        let q2 = q.clone();
        let f2 = first.clone();
        let t = std::thread::spawn(move || q2.next());
        std::thread::sleep(Duration::from_millis(100));
        assert!(!t.is_finished(), "in-flight key was handed out twice");
        q.done(&f2);
        assert_eq!(t.join().unwrap().as_deref(), Some(first.as_str()));
        q.done(&second);
        q.shutdown();
        assert_eq!(q.next(), None);
    }

    #[test]
    fn debounce_pushes_back_and_after_keeps_the_earlier_time() {
        let q = Queue::new();
        let start = Instant::now();
        q.add("f", When::Debounce(Duration::from_millis(150)));
        std::thread::sleep(Duration::from_millis(100));
        q.add("f", When::Debounce(Duration::from_millis(150)));
        assert_eq!(q.next().as_deref(), Some("f"));
        assert!(
            start.elapsed() >= Duration::from_millis(240),
            "debounced from the last event"
        );
        q.done("f");
        let start = Instant::now();
        q.add("g", When::After(Duration::from_millis(50)));
        q.add("g", When::After(Duration::from_secs(60)));
        assert_eq!(q.next().as_deref(), Some("g"));
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let cap = Duration::from_secs(300);
        assert_eq!(backoff(0, cap), Duration::ZERO);
        assert_eq!(
            backoff(1, cap),
            Duration::ZERO,
            "the first relaunch is immediate"
        );
        let b2 = backoff(2, cap);
        assert!(
            b2 >= Duration::from_millis(800) && b2 <= Duration::from_millis(1200),
            "{b2:?}"
        );
        let b5 = backoff(5, cap);
        assert!(
            b5 >= Duration::from_millis(6400) && b5 <= Duration::from_millis(9600),
            "{b5:?}"
        );
        let b = backoff(40, cap);
        assert!(b <= cap && b >= cap.mul_f64(0.8), "{b:?}");
    }
}
