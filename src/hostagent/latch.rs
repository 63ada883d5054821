//! A one-way flag that threads can block on: set once, waited for with a
//! deadline. The host agent's "the guest agent answered", "stop" and "QEMU
//! has exited" are latches, so a waiting thread wakes the moment it is set
//! instead of looking at a flag every so often.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::sync::{CondvarExt, MutexExt};

#[derive(Default)]
pub struct Latch {
    set: Mutex<bool>,
    cv: Condvar,
}

impl Latch {
    /// Sets the latch and wakes every waiter; it stays set.
    pub fn set(&self) {
        *self.set.locked() = true;
        self.cv.notify_all();
    }

    pub fn is_set(&self) -> bool {
        *self.set.locked()
    }

    /// Waits up to `timeout` for the latch; true when it is set.
    pub fn wait(&self, timeout: Duration) -> bool {
        // A timeout too far away to add is a wait without end.
        let deadline = Instant::now().checked_add(timeout);
        let mut set = self.set.locked();
        while !*set {
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if left.is_zero() {
                break;
            }
            set = self.cv.wait_timeout_locked(set, left).0;
        }
        *set
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_waiter_wakes_when_set_and_times_out_otherwise() {
        let l = Arc::new(Latch::default());
        assert!(!l.is_set());
        let start = Instant::now();
        assert!(!l.wait(Duration::from_millis(50)));
        assert!(start.elapsed() >= Duration::from_millis(50));
        let t = {
            let l = l.clone();
            std::thread::spawn(move || l.wait(Duration::MAX))
        };
        std::thread::sleep(Duration::from_millis(20));
        let start = Instant::now();
        l.set();
        assert!(t.join().unwrap());
        assert!(start.elapsed() < Duration::from_secs(5));
        // It stays set.
        assert!(l.is_set() && l.wait(Duration::ZERO));
    }
}
