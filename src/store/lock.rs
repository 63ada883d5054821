//! Locks held by the kernel (flock), so they vanish with their holder:
//! - the **liveness lock** (`ha.lock`): the host agent holds it exclusively
//!   for its whole life, and passes a second one (`qemu.lock`) to QEMU, so
//!   "running" is a fact the kernel knows, not a pid file that may be stale or
//!   name an unrelated process;
//! - the **mutation lock** (`instance.lock`): every actor that changes an
//!   instance (CLI verb, reconciler, host agent start-up) holds it meanwhile.

use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A held flock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct Held {
    file: File,
    path: PathBuf,
}

impl Held {
    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn file(&self) -> &File {
        &self.file
    }
    /// Gives up the guard but keeps the open file (and so the lock) — used
    /// to hand a lock to a child process through an inherited descriptor.
    pub fn into_file(self) -> File {
        self.file
    }
}

fn open_lock_file(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
}

/// Takes the exclusive lock at `path` without waiting; `Ok(None)` if it is held.
pub fn try_exclusive(path: &Path) -> std::io::Result<Option<Held>> {
    let file = open_lock_file(path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(Held {
            file,
            path: path.to_path_buf(),
        })),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// Like [`try_exclusive`], but a lock seen held is retried for half a
/// second: readers probing liveness ([`is_held`]) hold a shared lock for an
/// instant, which must not look like a live owner to a process starting up.
pub fn try_exclusive_patient(path: &Path) -> std::io::Result<Option<Held>> {
    match exclusive(path, Duration::from_millis(500)) {
        Ok(h) => Ok(Some(h)),
        Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
}

/// Takes the exclusive lock at `path`, waiting up to `timeout`.
pub fn exclusive(path: &Path, timeout: Duration) -> std::io::Result<Held> {
    let deadline = Instant::now() + timeout;
    let mut wait = Duration::from_millis(2);
    loop {
        if let Some(h) = try_exclusive(path)? {
            return Ok(h);
        }
        if Instant::now() >= deadline {
            return Err(std::io::Error::new(
                ErrorKind::WouldBlock,
                format!("{} is locked by another process", path.display()),
            ));
        }
        std::thread::sleep(wait);
        wait = (wait * 2).min(Duration::from_millis(100));
    }
}

/// Whether some process holds the lock at `path`. A missing file means no.
/// The probe takes a shared lock for an instant, so it never blocks a holder
/// for longer than that.
pub fn is_held(path: &Path) -> bool {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(_) => return false,
    };
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            false
        }
        Err(std::fs::TryLockError::WouldBlock) => true,
        Err(std::fs::TryLockError::Error(_)) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_until_dropped() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("l");
        assert!(!is_held(&p));
        let h = try_exclusive(&p).unwrap().unwrap();
        assert!(is_held(&p));
        assert!(try_exclusive(&p).unwrap().is_none());
        assert!(exclusive(&p, Duration::from_millis(50)).is_err());
        drop(h);
        assert!(!is_held(&p));
        assert!(exclusive(&p, Duration::from_millis(50)).is_ok());
    }

    #[test]
    fn lock_dies_with_its_process() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("l");
        // A child shell holds the lock via flock(1)-like inheritance: use python-free
        // approach: hand our locked descriptor to `sleep` and drop our copy.
        let h = try_exclusive(&p).unwrap().unwrap();
        let f = h.into_file();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
        let mut child = unsafe_spawn_with_fd("sleep", &["30"], fd);
        drop(f);
        assert!(is_held(&p), "the child keeps the lock");
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!is_held(&p), "the lock went away with the child");
    }

    fn unsafe_spawn_with_fd(cmd: &str, args: &[&str], fd: i32) -> std::process::Child {
        use std::os::unix::process::CommandExt;
        let mut c = std::process::Command::new(cmd);
        c.args(args);
        // Clear FD_CLOEXEC so the child inherits the locked description.
        // SAFETY: runs between fork and exec and only calls fcntl(2), which
        // is async-signal-safe, on a descriptor the parent keeps open.
        unsafe {
            c.pre_exec(move || {
                let flags = nix::libc::fcntl(fd, nix::libc::F_GETFD);
                nix::libc::fcntl(fd, nix::libc::F_SETFD, flags & !nix::libc::FD_CLOEXEC);
                Ok(())
            });
        }
        c.spawn().unwrap()
    }
}
