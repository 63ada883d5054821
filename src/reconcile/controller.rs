//! A work queue in the style of kube-runtime's controller (DESIGN §8):
//! keys are deduplicated, a key is never handed to two workers at once, work
//! can be scheduled for later (debounce, requeue-after, backoff), and keys
//! re-added while in flight run again right after.
//!
//! Time comes from a [`Clock`] and backoff's jitter from a [`Jitter`], both
//! injectable, so that the tests run on virtual time and assert exact
//! instants instead of sleeping.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use crate::sync::{CondvarExt, MutexExt};

/// Called after a clock jumps forward; returns false once whatever it wakes
/// is gone, so that the clock forgets it.
pub type AdvanceHook = Box<dyn Fn() -> bool + Send + Sync>;

/// The queue's source of time.
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;

    /// Releases `guard`, blocks on `cv` until it is notified or this clock
    /// reaches `deadline` (`None`: until notified), and takes the guard
    /// again. May return early; callers re-check their condition.
    fn wait_until<'a, T>(
        &self,
        cv: &Condvar,
        guard: MutexGuard<'a, T>,
        deadline: Option<Instant>,
    ) -> MutexGuard<'a, T>;

    /// Registers `hook`, to be called after the clock jumps forward. Real
    /// time never jumps (waits time out by themselves), hence the no-op.
    fn on_advance(&self, hook: AdvanceHook) {
        drop(hook);
    }
}

/// Real, monotonic time: `Instant` and `Condvar::wait_timeout`.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealClock;

impl Clock for RealClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn wait_until<'a, T>(
        &self,
        cv: &Condvar,
        guard: MutexGuard<'a, T>,
        deadline: Option<Instant>,
    ) -> MutexGuard<'a, T> {
        // Nothing scheduled: an hour is "until notified"; the caller re-checks.
        let timeout = deadline.map_or(Duration::from_secs(3600), |d| {
            d.saturating_duration_since(Instant::now())
        });
        cv.wait_timeout_locked(guard, timeout).0
    }
}

/// A shared clock (a test keeps one handle to advance it, the queue another).
impl<C: Clock> Clock for Arc<C> {
    fn now(&self) -> Instant {
        (**self).now()
    }

    fn wait_until<'a, T>(
        &self,
        cv: &Condvar,
        guard: MutexGuard<'a, T>,
        deadline: Option<Instant>,
    ) -> MutexGuard<'a, T> {
        (**self).wait_until(cv, guard, deadline)
    }

    fn on_advance(&self, hook: AdvanceHook) {
        (**self).on_advance(hook)
    }
}

#[derive(Default)]
struct State {
    /// Key → when it may run.
    pending: HashMap<String, Instant>,
    in_flight: HashSet<String>,
    /// Added while in flight: when to run again after it finishes.
    again: HashMap<String, Instant>,
    shutdown: bool,
}

impl State {
    /// Takes the earliest key due at `now`, or says until when to wait
    /// (`None`: nothing is scheduled).
    fn take_due(&mut self, now: Instant) -> Result<String, Option<Instant>> {
        let due = self
            .pending
            .iter()
            .filter(|(k, _)| !self.in_flight.contains(*k))
            .min_by_key(|(_, t)| **t)
            .map(|(k, t)| (k.clone(), *t));
        match due {
            Some((k, t)) if t <= now => {
                self.pending.remove(&k);
                self.in_flight.insert(k.clone());
                Ok(k)
            }
            Some((_, t)) => Err(Some(t)),
            None => Err(None),
        }
    }
}

/// What the clock's advance hook needs to reach: shared, so the hook can
/// hold it weakly.
#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    cv: Condvar,
}

pub struct Queue<C: Clock = RealClock> {
    shared: Arc<Shared>,
    clock: C,
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

impl Queue<RealClock> {
    pub fn new() -> Queue<RealClock> {
        Queue::with_clock(RealClock)
    }
}

impl Default for Queue<RealClock> {
    fn default() -> Self {
        Queue::new()
    }
}

impl<C: Clock> Queue<C> {
    pub fn with_clock(clock: C) -> Queue<C> {
        let shared = Arc::new(Shared::default());
        let weak: Weak<Shared> = Arc::downgrade(&shared);
        clock.on_advance(Box::new(move || {
            let Some(shared) = weak.upgrade() else {
                return false;
            };
            // Under the lock: a worker between reading the clock and
            // waiting holds it, so it cannot miss this notification.
            let _s = shared.state.locked();
            shared.cv.notify_all();
            true
        }));
        Queue { shared, clock }
    }

    pub fn add(&self, key: &str, when: When) {
        let now = self.clock.now();
        let mut s = self.shared.state.locked();
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
        self.shared.cv.notify_all();
    }

    /// Blocks until a key is due and not in flight; `None` after shutdown.
    pub fn next(&self) -> Option<String> {
        let mut s = self.shared.state.locked();
        loop {
            if s.shutdown {
                return None;
            }
            match s.take_due(self.clock.now()) {
                Ok(k) => return Some(k),
                Err(deadline) => s = self.clock.wait_until(&self.shared.cv, s, deadline),
            }
        }
    }

    /// Marks a key done; if it was added meanwhile it becomes pending again.
    pub fn done(&self, key: &str) {
        let mut s = self.shared.state.locked();
        s.in_flight.remove(key);
        if let Some(t) = s.again.remove(key) {
            let e = s.pending.entry(key.to_string()).or_insert(t);
            *e = (*e).min(t);
        }
        drop(s);
        self.shared.cv.notify_all();
    }

    pub fn shutdown(&self) {
        self.shared.state.locked().shutdown = true;
        self.shared.cv.notify_all();
    }

    pub fn is_in_flight(&self, key: &str) -> bool {
        self.shared.state.locked().in_flight.contains(key)
    }

    /// Keys waiting (due now or scheduled), and keys being worked on.
    pub fn depth(&self) -> (usize, usize) {
        let s = self.shared.state.locked();
        let waiting = s.pending.len() + s.again.len();
        (waiting, s.in_flight.len())
    }
}

/// Where backoff's jitter comes from: each call, a fraction in `[0, 1)`.
pub trait Jitter {
    fn fraction(&mut self) -> f64;
}

impl<F: FnMut() -> f64> Jitter for F {
    fn fraction(&mut self) -> f64 {
        self()
    }
}

/// Cheap jitter from the wall clock's sub-second nanoseconds: enough to
/// spread instances that failed together.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClockJitter;

impl Jitter for ClockJitter {
    fn fraction(&mut self) -> f64 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|t| t.subsec_nanos())
            .unwrap_or(0);
        f64::from(nanos % 400) / 400.0
    }
}

/// Exponential backoff with jitter, capped: 1 s, 2 s, 4 s, … up to `cap`,
/// each ±20 %. `failures` counts consecutive failures (the first relaunch
/// after a first failure is immediate: `failures <= 1` → zero).
pub fn backoff(failures: u32, cap: Duration) -> Duration {
    backoff_with(failures, cap, ClockJitter)
}

/// [`backoff`] with the jitter from `jitter`: a fraction `f` scales the
/// delay by `0.8 + 0.4 f` (in whole per mille), so `f = 0.5` gives the bare
/// exponential.
pub fn backoff_with(failures: u32, cap: Duration, mut jitter: impl Jitter) -> Duration {
    if failures <= 1 {
        return Duration::ZERO;
    }
    let base = Duration::from_secs(1u64 << (failures - 2).min(20));
    let d = base.min(cap);
    // A fraction outside [0, 1) (or NaN) from a custom source stays within ±20 %.
    let spread = (jitter.fraction().clamp(0.0, 0.999) * 400.0) as u32;
    d.checked_mul(800 + spread)
        .map_or(cap, |scaled| scaled / 1000)
        .min(cap)
}

/// Virtual time for tests: stands still until [`ManualClock::advance`],
/// which wakes the queues waiting on it.
#[cfg(test)]
pub struct ManualClock {
    state: Mutex<ManualState>,
    /// Signalled when a thread starts waiting.
    waiting_changed: Condvar,
}

#[cfg(test)]
struct ManualState {
    now: Instant,
    /// Threads blocked in `wait_until` right now.
    waiting: usize,
    hooks: Vec<AdvanceHook>,
}

#[cfg(test)]
impl ManualClock {
    pub fn new() -> Arc<ManualClock> {
        Arc::new(ManualClock {
            state: Mutex::new(ManualState {
                now: Instant::now(),
                waiting: 0,
                hooks: Vec::new(),
            }),
            waiting_changed: Condvar::new(),
        })
    }

    /// Moves time forward by `d` and wakes every waiter to re-check.
    pub fn advance(&self, d: Duration) {
        let hooks = {
            let mut s = self.state.locked();
            s.now += d;
            std::mem::take(&mut s.hooks)
        };
        // Outside the clock's lock: a hook takes a queue's lock, and a queue
        // reads the clock under its own lock.
        let alive: Vec<AdvanceHook> = hooks.into_iter().filter(|hook| hook()).collect();
        self.state.locked().hooks.extend(alive);
    }

    /// Blocks until at least `n` threads wait on this clock. The real-time
    /// limit only turns a bug (a thread that never blocks) into a failure
    /// instead of a hang.
    pub fn wait_for_waiters(&self, n: usize) {
        let limit = Instant::now() + Duration::from_secs(10);
        let mut s = self.state.locked();
        while s.waiting < n {
            let left = limit.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{n} thread(s) should be waiting on the clock; {} are",
                s.waiting
            );
            s = self.waiting_changed.wait_timeout_locked(s, left).0;
        }
    }
}

#[cfg(test)]
impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.state.locked().now
    }

    fn wait_until<'a, T>(
        &self,
        cv: &Condvar,
        guard: MutexGuard<'a, T>,
        deadline: Option<Instant>,
    ) -> MutexGuard<'a, T> {
        {
            let mut s = self.state.locked();
            if deadline.is_some_and(|d| d <= s.now) {
                return guard;
            }
            s.waiting += 1;
        }
        self.waiting_changed.notify_all();
        // Only a notification (add, done, shutdown, advance) ends this wait;
        // the hour is a backstop, not a timer.
        let guard = cv.wait_timeout_locked(guard, Duration::from_secs(3600)).0;
        self.state.locked().waiting -= 1;
        guard
    }

    fn on_advance(&self, hook: AdvanceHook) {
        self.state.locked().hooks.push(hook);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// One `next()` step without blocking: the key handed out, or until when
    /// the queue would wait.
    fn poll<C: Clock>(q: &Queue<C>) -> Result<String, Option<Instant>> {
        let now = q.clock.now();
        q.shared.state.locked().take_due(now)
    }

    #[test]
    fn keys_are_deduplicated_and_never_concurrent() {
        let clock = ManualClock::new();
        let q = Queue::with_clock(clock.clone());
        q.add("a", When::Now);
        q.add("a", When::Now);
        q.add("b", When::Now);
        let first = q.next().unwrap();
        let second = q.next().unwrap();
        assert_ne!(first, second);
        assert_eq!(poll(&q), Err(None), "\"a\" was deduplicated");
        // Re-added while in flight: not handed out until done.
        q.add(&first, When::Now);
        assert!(q.is_in_flight(&first));
        assert_eq!(poll(&q), Err(None), "in-flight key was handed out twice");
        let q = Arc::new(q);
        let t = {
            let q = q.clone();
            std::thread::spawn(move || q.next())
        };
        clock.wait_for_waiters(1);
        assert!(!t.is_finished(), "in-flight key was handed out twice");
        q.done(&first);
        assert_eq!(t.join().unwrap().as_deref(), Some(first.as_str()));
        q.done(&second);
        q.shutdown();
        assert_eq!(q.next(), None);
    }

    #[test]
    fn debounce_pushes_back_and_after_keeps_the_earlier_time() {
        let clock = ManualClock::new();
        let q = Queue::with_clock(clock.clone());
        let start = clock.now();
        q.add("f", When::Debounce(150 * MS));
        clock.advance(100 * MS);
        q.add("f", When::Debounce(150 * MS));
        // Debounced from the last event: 100 + 150 ms, not 150 ms.
        assert_eq!(poll(&q), Err(Some(start + 250 * MS)));
        clock.advance(149 * MS);
        assert_eq!(poll(&q), Err(Some(start + 250 * MS)));
        clock.advance(MS);
        assert_eq!(q.next().as_deref(), Some("f"));
        q.done("f");

        let start = clock.now();
        q.add("g", When::After(50 * MS));
        q.add("g", When::After(Duration::from_secs(60)));
        assert_eq!(
            poll(&q),
            Err(Some(start + 50 * MS)),
            "the earlier time wins"
        );
        q.add("g", When::Now);
        assert_eq!(poll(&q).as_deref(), Ok("g"), "Now is earlier still");
        q.done("g");

        // Re-added while in flight: the earlier time is kept there too, and
        // it is pending again exactly then once done.
        let start = clock.now();
        q.add("h", When::Now);
        assert_eq!(q.next().as_deref(), Some("h"));
        q.add("h", When::After(30 * MS));
        q.add("h", When::After(90 * MS));
        q.done("h");
        assert_eq!(poll(&q), Err(Some(start + 30 * MS)));
        // A debounce while in flight pushes back that time too.
        clock.advance(30 * MS);
        assert_eq!(q.next().as_deref(), Some("h"));
        q.add("h", When::Debounce(10 * MS));
        q.add("h", When::Debounce(40 * MS));
        q.done("h");
        assert_eq!(poll(&q), Err(Some(start + 70 * MS)));
    }

    #[test]
    fn a_waiting_worker_wakes_when_the_clock_reaches_the_key() {
        let clock = ManualClock::new();
        let q = Arc::new(Queue::with_clock(clock.clone()));
        let start = clock.now();
        q.add("k", When::After(Duration::from_secs(5)));
        let t = {
            let (q, clock) = (q.clone(), clock.clone());
            std::thread::spawn(move || (q.next(), clock.now()))
        };
        clock.wait_for_waiters(1);
        clock.advance(Duration::from_secs(5));
        let (key, at) = t.join().unwrap();
        assert_eq!(key.as_deref(), Some("k"));
        assert_eq!(at, start + Duration::from_secs(5));
        q.done("k");
        // Shutdown wakes a worker with nothing scheduled.
        let t = {
            let q = q.clone();
            std::thread::spawn(move || q.next())
        };
        clock.wait_for_waiters(1);
        q.shutdown();
        assert_eq!(t.join().unwrap(), None);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let cap = Duration::from_secs(300);
        let middle = || 0.5;
        assert_eq!(backoff_with(0, cap, middle), Duration::ZERO);
        assert_eq!(
            backoff_with(1, cap, middle),
            Duration::ZERO,
            "the first relaunch is immediate"
        );
        let secs: Vec<u64> = (2..=12)
            .map(|f| backoff_with(f, cap, middle).as_secs())
            .collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(backoff_with(40, cap, middle), cap);
        assert_eq!(backoff_with(u32::MAX, cap, middle), cap);
    }

    #[test]
    fn backoff_jitter_stays_within_twenty_percent_and_under_the_cap() {
        let cap = Duration::from_secs(300);
        let s = Duration::from_secs;
        assert_eq!(backoff_with(2, cap, || 0.0), 800 * MS);
        assert_eq!(backoff_with(2, cap, || 0.999_999), 1199 * MS);
        assert_eq!(backoff_with(5, cap, || 0.0), 6400 * MS);
        assert_eq!(backoff_with(5, cap, || 0.999_999), 9592 * MS);
        // At the cap jitter only shortens: never beyond it.
        assert_eq!(backoff_with(40, cap, || 0.0), s(240));
        assert_eq!(backoff_with(40, cap, || 0.999_999), cap);
        // A source out of range is clamped, not trusted.
        assert_eq!(backoff_with(2, cap, || -3.0), 800 * MS);
        assert_eq!(backoff_with(2, cap, || 7.0), 1199 * MS);
        assert_eq!(backoff_with(2, cap, || f64::NAN), 800 * MS);
        // A tiny cap wins over the first step.
        assert_eq!(backoff_with(2, 300 * MS, || 0.5), 300 * MS);
        // The real source: within the same bounds.
        for f in [2, 5, 40] {
            let b = backoff(f, cap);
            let bare = backoff_with(f, cap, || 0.5);
            assert!(b >= bare * 4 / 5 && b < bare * 6 / 5 && b <= cap, "{b:?}");
        }
        let mut j = ClockJitter;
        for _ in 0..100 {
            let f = j.fraction();
            assert!((0.0..1.0).contains(&f), "{f}");
        }
    }
}
