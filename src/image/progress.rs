//! Download progress: an indicatif bar on a terminal (bytes, rate, ETA),
//! nothing in a pipe; plain log lines (at most one every few seconds) when
//! asked for.

use std::time::{Duration, Instant};

/// How progress is shown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProgressMode {
    /// A bar when stderr is a terminal, nothing otherwise.
    #[default]
    Auto,
    /// Plain lines on stderr, at most one per [`PLAIN_INTERVAL`].
    Plain,
    /// Nothing.
    Quiet,
}

/// Minimum time between two plain progress lines.
pub const PLAIN_INTERVAL: Duration = Duration::from_secs(5);

const BAR_SIZED: &str =
    "{msg} [{bar:30}] {percent:>3}% {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}";
const BAR_UNSIZED: &str = "{spinner} {msg} {bytes} {bytes_per_sec} ({elapsed})";

pub(crate) struct Progress {
    what: String,
    total: Option<u64>,
    done: u64,
    start_bytes: u64,
    started: Instant,
    last: Instant,
    /// Auto mode on a terminal.
    bar: Option<crate::progress::Bar>,
    /// Plain lines.
    plain: bool,
}

impl Progress {
    /// `start` bytes are already there (a resumed download).
    pub(crate) fn new(mode: ProgressMode, what: &str, total: Option<u64>, start: u64) -> Progress {
        let now = Instant::now();
        let shown = crate::logging::enabled(crate::logging::Level::Info);
        let bar = (mode == ProgressMode::Auto && crate::progress::on_terminal()).then(|| {
            let sized = total.is_some_and(|t| t > 0);
            let b = crate::progress::Bar::new(
                total.filter(|_| sized),
                if sized { BAR_SIZED } else { BAR_UNSIZED },
            );
            b.set_message(what.to_string());
            b.set_position(start);
            b.reset_eta();
            b
        });
        Progress {
            what: what.to_string(),
            total,
            done: start,
            start_bytes: start,
            started: now,
            last: now,
            bar,
            plain: mode == ProgressMode::Plain && shown,
        }
    }

    pub(crate) fn advance(&mut self, n: u64) {
        self.done += n;
        if let Some(b) = &self.bar {
            b.inc(n);
            return;
        }
        if !self.plain {
            return;
        }
        let now = Instant::now();
        if now.duration_since(self.last) < PLAIN_INTERVAL {
            return;
        }
        self.last = now;
        self.show_plain();
    }

    fn rate(&self) -> f64 {
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        (self.done - self.start_bytes) as f64 / secs
    }

    fn show_plain(&self) {
        let rate = self.rate();
        match self.total {
            Some(t) if t > 0 => crate::info!(
                "{}: {} of {} ({:.0}%), {}/s",
                self.what,
                human(self.done),
                human(t),
                self.done as f64 * 100.0 / t as f64,
                human(rate as u64)
            ),
            _ => crate::info!(
                "{}: {}, {}/s",
                self.what,
                human(self.done),
                human(rate as u64)
            ),
        }
    }

    /// Removes the bar (the caller logs the outcome).
    pub(crate) fn finish(&mut self) {
        self.bar = None;
    }
}

/// Bytes in binary units, as `du -h` would say them: `1.5 GiB`.
pub fn human(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(1 << 30), "1.0 GiB");
    }
}
