//! Download progress: a bar redrawn in place on a terminal, plain log lines
//! (at most one every few seconds) otherwise.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How progress is shown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProgressMode {
    /// A bar when stderr is a terminal, plain lines otherwise.
    #[default]
    Auto,
    /// Plain lines on stderr, at most one per [`PLAIN_INTERVAL`].
    Plain,
    /// Nothing.
    Quiet,
}

/// Minimum time between two plain progress lines.
pub const PLAIN_INTERVAL: Duration = Duration::from_secs(5);
const BAR_INTERVAL: Duration = Duration::from_millis(200);

pub(crate) struct Progress {
    what: String,
    total: Option<u64>,
    done: u64,
    start_bytes: u64,
    started: Instant,
    last: Instant,
    bar: bool,
    quiet: bool,
    drawn: bool,
}

impl Progress {
    /// `start` bytes are already there (a resumed download).
    pub(crate) fn new(mode: ProgressMode, what: &str, total: Option<u64>, start: u64) -> Progress {
        let bar = match mode {
            ProgressMode::Auto => std::io::stderr().is_terminal(),
            _ => false,
        };
        let now = Instant::now();
        Progress {
            what: what.to_string(),
            total,
            done: start,
            start_bytes: start,
            started: now,
            last: now,
            bar,
            quiet: mode == ProgressMode::Quiet
                || !crate::logging::enabled(crate::logging::Level::Info),
            drawn: false,
        }
    }

    pub(crate) fn advance(&mut self, n: u64) {
        self.done += n;
        if self.quiet {
            return;
        }
        let interval = if self.bar {
            BAR_INTERVAL
        } else {
            PLAIN_INTERVAL
        };
        let now = Instant::now();
        if now.duration_since(self.last) < interval {
            return;
        }
        self.last = now;
        self.show();
    }

    fn rate(&self) -> f64 {
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        (self.done - self.start_bytes) as f64 / secs
    }

    fn show(&mut self) {
        let rate = self.rate();
        if self.bar {
            let line = match self.total {
                Some(t) if t > 0 => {
                    let frac = (self.done as f64 / t as f64).min(1.0);
                    let width = 30;
                    let fill = (frac * width as f64) as usize;
                    format!(
                        "\r{} [{}{}] {:3.0}% {} / {} {}/s ",
                        self.what,
                        "=".repeat(fill),
                        " ".repeat(width - fill),
                        frac * 100.0,
                        human(self.done),
                        human(t),
                        human(rate as u64)
                    )
                }
                _ => format!(
                    "\r{} {} {}/s ",
                    self.what,
                    human(self.done),
                    human(rate as u64)
                ),
            };
            let mut e = std::io::stderr().lock();
            let _ = e.write_all(line.as_bytes());
            let _ = e.flush();
            self.drawn = true;
        } else {
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
    }

    /// Ends the bar line (if one was drawn).
    pub(crate) fn finish(&mut self) {
        if self.quiet {
            return;
        }
        if self.bar {
            self.show();
            let _ = std::io::stderr().write_all(b"\n");
            self.drawn = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if self.drawn {
            let _ = std::io::stderr().write_all(b"\n");
        }
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
