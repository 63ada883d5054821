//! Standard output of every command. Everything a command prints goes
//! through [`stdout`] (or the [`crate::outln!`]/[`crate::out!`] macros), whose writes
//! report errors instead of panicking as `println!` does: Rust ignores
//! SIGPIPE, so a reader that went away (`limactl list | head -1`) shows up
//! as an `EPIPE` write error, and this module is the one place that knows
//! what that means — the reader is done, so is the command.
//!
//! How the command ends then: as Lima's, which is a Go program and dies of
//! SIGPIPE when a write to its closed stdout fails (the shell reports 141),
//! like `cat`, `yes` or any C tool that keeps SIGPIPE's default. Scripts
//! that use `set -o pipefail` see the same status they see with Lima, and
//! nothing is logged: a closed pipe is not a failure worth a message.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once a write to stdout failed because nobody reads it any more.
static READER_GONE: AtomicBool = AtomicBool::new(false);

/// Set when a command ended because stdout's reader went away.
static ENDED_QUIETLY: AtomicBool = AtomicBool::new(false);

/// The exit status a shell reports for a process killed by SIGPIPE, which
/// [`main_with_args`](super::main_with_args) returns when stdout's reader left.
pub const EXIT_READER_GONE: i32 = 128 + nix::libc::SIGPIPE;

/// Standard output, with write errors reported (and a broken pipe noted).
pub struct Stdout;

pub fn stdout() -> Stdout {
    Stdout
}

fn note(e: std::io::Error) -> std::io::Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        READER_GONE.store(true, Ordering::Relaxed);
    }
    e
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::stdout().lock().write(buf).map_err(note)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        std::io::stdout().lock().write_all(buf).map_err(note)
    }

    fn write_fmt(&mut self, args: std::fmt::Arguments<'_>) -> std::io::Result<()> {
        // One lock for the whole line: lines of other threads never interleave.
        std::io::stdout().lock().write_fmt(args).map_err(note)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().lock().flush().map_err(note)
    }
}

/// `println!` that returns the write's error (`outln!("x {y}")?`).
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        ::std::io::Write::write_fmt(
            &mut $crate::cli::out::stdout(),
            format_args!("{}\n", format_args!($($arg)*)),
        )
    };
}

/// `print!` that returns the write's error.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        ::std::io::Write::write_fmt(&mut $crate::cli::out::stdout(), format_args!($($arg)*))
    };
}

/// Flushes what is still buffered (a last line without a newline), so
/// that its error is seen before the process exits.
pub fn flush() -> std::io::Result<()> {
    stdout().flush()
}

/// Whether `err` is how a command ended because stdout's reader went away:
/// a broken-pipe error while a write to stdout failed that way. A broken
/// pipe elsewhere (a socket, a child's stdin) is an ordinary error.
pub fn reader_gone(err: &anyhow::Error) -> bool {
    READER_GONE.load(Ordering::Relaxed)
        && err.chain().any(|e| {
            e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
        })
}

/// Records that the command ends because stdout's reader is gone; returns
/// the exit code for in-process callers (`main` dies of SIGPIPE instead).
pub fn end_quietly() -> i32 {
    ENDED_QUIETLY.store(true, Ordering::Relaxed);
    EXIT_READER_GONE
}

/// Whether [`end_quietly`] was called.
pub fn ended_quietly() -> bool {
    ENDED_QUIETLY.load(Ordering::Relaxed)
}

/// Ends the process as a Go program (Lima) does when its stdout's reader
/// is gone: killed by SIGPIPE. Called by `main` only, never in tests that
/// run commands in-process.
pub fn die_of_sigpipe() -> i32 {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: restoring the default disposition installs no handler code.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
    let _ = nix::sys::signal::raise(Signal::SIGPIPE);
    // Only reached if the signal is blocked: the same status, as an exit code.
    EXIT_READER_GONE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_broken_pipe_after_stdout_broke_is_the_reader_leaving() {
        let pipe = || {
            anyhow::Error::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
                .context("writing the table")
        };
        let other = anyhow::anyhow!("No such file or directory");
        // Before any write to stdout failed, a broken pipe is someone else's.
        if !READER_GONE.load(Ordering::Relaxed) {
            assert!(!reader_gone(&pipe()));
        }
        let _ = note(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert!(reader_gone(&pipe()), "found through the context chain");
        assert!(!reader_gone(&other));
    }
}
