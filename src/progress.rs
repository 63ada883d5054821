//! Progress of long work on a terminal (indicatif): download bars, the
//! requirement a booting guest waits for, apply's done/total. Drawn on
//! stderr only when stderr is a terminal and info lines are shown; in a pipe
//! nothing is drawn (log lines stay the record). Every bar lives in one
//! [`MultiProgress`], and log lines are written through [`suspend`], so a
//! line never lands in the middle of a bar.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

static MULTI: LazyLock<MultiProgress> =
    LazyLock::new(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));

/// Bars alive: log lines go around them only while there are some.
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// Whether progress is drawn: stderr is a terminal and info lines are shown.
pub fn on_terminal() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stderr())
        && crate::logging::enabled(crate::logging::Level::Info)
}

/// Runs `f` (which writes to stderr) with the bars cleared, redrawing them
/// after.
pub fn suspend<R>(f: impl FnOnce() -> R) -> R {
    if LIVE.load(Ordering::Relaxed) == 0 {
        return f();
    }
    MULTI.suspend(f)
}

/// A bar or spinner; removed from the terminal when dropped.
pub struct Bar {
    pb: ProgressBar,
    /// Counted in [`LIVE`] (drawn).
    live: bool,
}

impl Bar {
    /// `template` is indicatif's (`{bar}`, `{bytes}`, `{eta}`, `{msg}`, …);
    /// `len` none makes a spinner. Hidden when not [`on_terminal`].
    pub fn new(len: Option<u64>, template: &str) -> Bar {
        if !on_terminal() {
            return Bar {
                pb: ProgressBar::hidden(),
                live: false,
            };
        }
        let pb = match len {
            Some(n) => ProgressBar::new(n),
            None => ProgressBar::new_spinner(),
        };
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        pb.set_style(style);
        let pb = MULTI.add(pb);
        // Ticks keep the spinner and the elapsed time moving while nothing
        // else changes (a guest booting).
        pb.enable_steady_tick(Duration::from_millis(200));
        LIVE.fetch_add(1, Ordering::Relaxed);
        Bar { pb, live: true }
    }

    pub fn set_message(&self, msg: impl Into<std::borrow::Cow<'static, str>>) {
        self.pb.set_message(msg);
    }

    pub fn set_prefix(&self, p: impl Into<std::borrow::Cow<'static, str>>) {
        self.pb.set_prefix(p);
    }

    pub fn set_position(&self, n: u64) {
        self.pb.set_position(n);
    }

    pub fn inc(&self, n: u64) {
        self.pb.inc(n);
    }

    pub fn set_length(&self, n: u64) {
        self.pb.set_length(n);
    }

    /// Measures the rate (and ETA) from now: bytes already there (a
    /// resumed download) are not counted as speed.
    pub fn reset_eta(&self) {
        self.pb.reset_eta();
        self.pb.reset_elapsed();
    }

    /// Whether it is drawn.
    pub fn is_drawn(&self) -> bool {
        self.live
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        if self.live {
            self.pb.finish_and_clear();
            MULTI.remove(&self.pb);
            LIVE.fetch_sub(1, Ordering::Relaxed);
        }
    }
}
