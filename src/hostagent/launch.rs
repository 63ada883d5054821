//! The CLI side of the host agent: launch it detached, follow its events
//! until the guest is ready, and stop it.

use std::io::{BufRead, Seek};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::events::{Event, EventReader};
use crate::spec::yaml::quote_name;
use crate::store::instance::{Liveness, QEMU_LOCK, read_pid};
use crate::store::lock;
use crate::store::paths::files;

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("cannot launch the host agent of {}: {source}", quote_name(name))]
    Spawn {
        name: String,
        source: std::io::Error,
    },
    #[error("host agent process of {} has exited: {detail}", quote_name(name))]
    Exited { name: String, detail: String },
    #[error("instance {} did not become ready within {}s{detail}", quote_name(name), timeout.as_secs())]
    Timeout {
        name: String,
        timeout: Duration,
        detail: String,
    },
    #[error("instance {} is DEGRADED: {}", quote_name(name), errors.join("; "))]
    Degraded { name: String, errors: Vec<String> },
    #[error("{0}")]
    Events(String),
    #[error("instance {} did not stop within {}s (hint: `limactl stop -f {name}`)", quote_name(name), timeout.as_secs())]
    StopTimeout { name: String, timeout: Duration },
    #[error("instance {} was not suspended: {detail}", quote_name(name))]
    NotSuspended { name: String, detail: String },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The last `n` lines of a text file (for error messages).
pub fn tail(path: &Path, n: usize) -> String {
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(64 * 1024);
    let _ = f.seek(std::io::SeekFrom::Start(start));
    let lines: Vec<String> = std::io::BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .map(|l| {
            l.chars()
                .filter(|c| !c.is_control() || *c == '\t')
                .collect()
        })
        .collect();
    let skip = lines.len().saturating_sub(n);
    lines[skip..].join("\n")
}

fn diagnostics(dir: &Path) -> String {
    let mut s = String::new();
    let err = tail(&dir.join(files::HA_STDERR_LOG), 8);
    if !err.is_empty() {
        s.push_str(&format!(
            "\nlast lines of {}:\n{err}",
            dir.join(files::HA_STDERR_LOG).display()
        ));
    }
    let serial = tail(&dir.join(files::SERIAL_LOG), 12);
    if !serial.is_empty() {
        s.push_str(&format!(
            "\nlast lines of {}:\n{serial}",
            dir.join(files::SERIAL_LOG).display()
        ));
    }
    // A full disk silences the host agent's own logs: say it here.
    if let Ok(st) = nix::sys::statvfs::statvfs(dir)
        && st.blocks_available().saturating_mul(st.fragment_size()) < 1 << 20
    {
        s.push_str(&format!(
            "\nthe filesystem of {} is full (No space left on device): free some space and start again",
            dir.display()
        ));
    }
    s
}

/// Spawns `limactl hostagent NAME` in its own session, with stdout and stderr
/// going to `ha.stdout.log` / `ha.stderr.log` (both truncated first).
pub fn spawn(dir: &Path, name: &str, debug: bool) -> Result<Child, LaunchError> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::process::CommandExt;
    let open = |f: &str| {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(dir.join(f))
    };
    let err = |source| LaunchError::Spawn {
        name: name.into(),
        source,
    };
    let stdout = open(files::HA_STDOUT_LOG).map_err(err)?;
    let stderr = open(files::HA_STDERR_LOG).map_err(err)?;
    let exe = std::env::current_exe().map_err(err)?;
    let mut c = Command::new(exe);
    if debug {
        c.arg("--debug");
    }
    c.arg("hostagent")
        .arg(name)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    // A session of its own: the host agent outlives this CLI process and its
    // terminal (DESIGN principle 4).
    // SAFETY: the closure runs between fork and exec and only makes
    // async-signal-safe system calls (setsid, close_range); it allocates
    // nothing and takes no lock.
    unsafe {
        c.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            close_inherited_fds(3);
            Ok(())
        });
    }
    c.spawn().map_err(err)
}

/// `start --foreground`: replaces this process with `limactl hostagent NAME`
/// (same PID, same session, so a service manager or Ctrl-C stops it and with
/// it the VM). Its events and logs go to `ha.stdout.log` / `ha.stderr.log`,
/// or, on a terminal, to the terminal (the log files then only say so).
/// Returns only when the exec failed.
pub fn exec_foreground(dir: &Path, name: &str, debug: bool) -> LaunchError {
    use std::io::IsTerminal;
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::process::CommandExt;
    let err = |source| LaunchError::Spawn {
        name: name.into(),
        source,
    };
    let on_terminal = std::io::stdin().is_terminal();
    let open = |f: &str| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(dir.join(f))?;
        if on_terminal {
            use std::io::Write;
            writeln!(
                file,
                "(the host agent of `{name}` runs in the foreground of a terminal: its output went there)"
            )?;
        }
        Ok::<_, std::io::Error>(file)
    };
    let (stdout, stderr) = match (open(files::HA_STDOUT_LOG), open(files::HA_STDERR_LOG)) {
        (Ok(o), Ok(e)) => (o, e),
        (Err(e), _) | (_, Err(e)) => return err(e),
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return err(e),
    };
    let mut c = Command::new(exe);
    if debug {
        c.arg("--debug");
    }
    c.arg("hostagent").arg(name);
    if !on_terminal {
        c.stdin(Stdio::null()).stdout(stdout).stderr(stderr);
    }
    // SAFETY: runs between fork and exec; close_range is async-signal-safe.
    unsafe {
        c.pre_exec(|| {
            close_inherited_fds(3);
            Ok(())
        });
    }
    err(c.exec())
}

/// Marks every descriptor from `first` up close-on-exec, in a child before
/// exec: the host agent and QEMU live long, and must not keep open whatever
/// the caller had (a lock held by a wrapper script, a pipe a test waits on).
///
/// Marked, not closed: std's `spawn` reports a failed exec (the binary
/// missing, or being relinked) through a close-on-exec pipe among these
/// descriptors; closed, the child could not write the errno and aborted
/// ("fatal runtime error: assertion failed: output.write(&bytes).is_ok()")
/// while the parent saw a spawn that succeeded.
pub fn close_inherited_fds(first: u32) {
    // CLOSE_RANGE_CLOEXEC from <linux/close_range.h> (Linux 5.11); an error
    // (older kernels) leaves the descriptors open, as without this call.
    const CLOSE_RANGE_CLOEXEC: nix::libc::c_uint = 1 << 2;
    // SAFETY: a plain system call on descriptor numbers; it touches no memory.
    unsafe {
        nix::libc::syscall(
            nix::libc::SYS_close_range,
            first,
            u32::MAX,
            CLOSE_RANGE_CLOEXEC,
        );
    }
}

/// What `wait_ready` saw.
#[derive(Debug, Default)]
pub struct Ready {
    pub ssh_local_port: u16,
}

/// After [`spawn`]: waits until the host agent reports its first event (it
/// emits one as soon as QEMU runs) or exits, and hands the child to a thread
/// that reaps it. Short: the guest's boot is not waited for (see [`wait_ready`]).
pub fn wait_launched(
    dir: &Path,
    name: &str,
    mut child: Child,
    timeout: Duration,
) -> Result<(), LaunchError> {
    let mut reader = EventReader::from_start(&dir.join(files::HA_STDOUT_LOG));
    let start = Instant::now();
    let result = loop {
        match reader.poll().map_err(LaunchError::Events) {
            Err(e) => break Err(e),
            Ok(events) => {
                if let Some(ev) = events.first() {
                    break if ev.status.exiting {
                        Err(LaunchError::Exited {
                            name: name.into(),
                            detail: format!("it reported `exiting`{}", diagnostics(dir)),
                        })
                    } else {
                        Ok(())
                    };
                }
            }
        }
        match child.try_wait() {
            Err(e) => break Err(e.into()),
            Ok(Some(status)) => {
                // What it wrote before dying decides.
                let launched = reader
                    .poll()
                    .is_ok_and(|evs| evs.first().is_some_and(|e| !e.status.exiting));
                break if launched {
                    Ok(())
                } else {
                    Err(LaunchError::Exited {
                        name: name.into(),
                        detail: format!("{status}{}", diagnostics(dir)),
                    })
                };
            }
            Ok(None) => {}
        }
        if start.elapsed() >= timeout {
            break Err(LaunchError::Timeout {
                name: name.into(),
                timeout,
                detail: diagnostics(dir),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // The host agent lives on in its own session; whoever launched it reaps
    // it so that no zombie is left behind a long-lived daemon.
    std::thread::spawn(move || child.wait());
    result
}

/// Follows `ha.stdout.log` until the `running` event (Ok), an `exiting`
/// event or the host agent's death (its liveness lock released: Err), or
/// the timeout. `on_event` gets every event, and `None` at every poll (to
/// show progress as it happens). Level-triggered: the events are read from
/// the start of the current run, so it may be called at any time.
pub fn wait_ready(
    dir: &Path,
    name: &str,
    timeout: Duration,
    mut on_event: impl FnMut(Option<&Event>),
) -> Result<Ready, LaunchError> {
    let mut reader = EventReader::from_start(&dir.join(files::HA_STDOUT_LOG));
    let start = Instant::now();
    let mut ready = Ready::default();
    loop {
        on_event(None);
        // Liveness before the events: a running event written just before
        // the host agent exited still counts.
        let alive = lock::is_held(&dir.join(files::HA_LOCK));
        let events = reader.poll().map_err(LaunchError::Events)?;
        for ev in events {
            on_event(Some(&ev));
            if ev.status.ssh_local_port != 0 {
                ready.ssh_local_port = ev.status.ssh_local_port;
            }
            if ev.status.exiting {
                return Err(LaunchError::Exited {
                    name: name.into(),
                    detail: format!("it reported `exiting`{}", diagnostics(dir)),
                });
            }
            if ev.status.running {
                if ev.status.degraded {
                    return Err(LaunchError::Degraded {
                        name: name.into(),
                        errors: ev.status.errors.clone(),
                    });
                }
                return Ok(ready);
            }
        }
        if !alive {
            return Err(LaunchError::Exited {
                name: name.into(),
                detail: format!("it is not running{}", diagnostics(dir)),
            });
        }
        if start.elapsed() >= timeout {
            return Err(LaunchError::Timeout {
                name: name.into(),
                timeout,
                detail: diagnostics(dir),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A pid from a pid file, trusted only if that process holds `lock_file`
/// open (checked in `/proc/<pid>/fd`): a stale or reused pid never gets an
/// unrelated process signalled.
pub fn verified_pid(pid_file: &Path, lock_file: &Path) -> Option<i32> {
    let pid = read_pid(pid_file)?;
    let want = std::fs::canonicalize(lock_file).ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    fds.flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .any(|t| t == want)
        .then_some(pid)
}

fn signal(pid: i32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
}

/// Stops an instance. Graceful: SIGINT to the host agent, which powers the
/// guest off (ACPI) and exits; waits until its liveness lock is released.
/// Forced: SIGKILL to QEMU and the host agent (verified pids only), then the
/// run-time files (`*.pid`, `*.sock`, `*.tmp`) are removed.
pub fn stop(dir: &Path, name: &str, force: bool, timeout: Duration) -> Result<(), LaunchError> {
    let ha_lock = dir.join(files::HA_LOCK);
    let qemu_lock = dir.join(QEMU_LOCK);
    if !force {
        if let Some(pid) = verified_pid(&dir.join(files::HA_PID), &ha_lock) {
            crate::info!("Sending SIGINT to hostagent process {pid}");
            signal(pid, nix::sys::signal::Signal::SIGINT);
        } else if Liveness::probe(dir).host_agent {
            crate::warn!(
                "cannot find the host agent's pid of {}; forcing the stop",
                quote_name(name)
            );
            return stop(dir, name, true, timeout);
        }
        let start = Instant::now();
        while lock::is_held(&ha_lock) || lock::is_held(&qemu_lock) {
            if start.elapsed() >= timeout {
                return Err(LaunchError::StopTimeout {
                    name: name.into(),
                    timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        return Ok(());
    }
    let kill_qemu = || {
        let pid = verified_pid(&dir.join(files::QEMU_PID), &qemu_lock);
        if let Some(pid) = pid {
            crate::info!("Sending SIGKILL to the QEMU process {pid}");
            signal(pid, nix::sys::signal::Signal::SIGKILL);
        }
        pid.is_some()
    };
    let mut qemu_killed = kill_qemu();
    if let Some(pid) = verified_pid(&dir.join(files::HA_PID), &ha_lock) {
        crate::info!("Sending SIGKILL to the host agent process {pid}");
        signal(pid, nix::sys::signal::Signal::SIGKILL);
    }
    let start = Instant::now();
    while lock::is_held(&ha_lock) || lock::is_held(&qemu_lock) {
        // A QEMU just spawned has no pid file yet, and would outlive its
        // killed host agent: kill it once it has written one.
        if !qemu_killed {
            qemu_killed = kill_qemu();
        }
        if start.elapsed() >= Duration::from_secs(10) {
            crate::warn!(
                "processes of {} still hold their locks; find them with `fuser {}`",
                quote_name(name),
                ha_lock.display()
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    remove_runtime_files(dir);
    Ok(())
}

/// The signal that asks a host agent to suspend its VM (SIGINT/SIGTERM stop it).
pub const SUSPEND_SIGNAL: nix::sys::signal::Signal = nix::sys::signal::Signal::SIGUSR1;

/// Suspends an instance: [`SUSPEND_SIGNAL`] to its host agent, which saves
/// the VM's state and exits; waits until both locks are released, then
/// checks that a complete state was saved (a host agent that could not save
/// it powers the guest off instead, and says why in its log).
pub fn suspend(dir: &Path, name: &str, timeout: Duration) -> Result<(), LaunchError> {
    let ha_lock = dir.join(files::HA_LOCK);
    let Some(pid) = verified_pid(&dir.join(files::HA_PID), &ha_lock) else {
        return Err(LaunchError::NotSuspended {
            name: name.into(),
            detail: "its host agent is not running".into(),
        });
    };
    crate::info!("Sending {SUSPEND_SIGNAL} to hostagent process {pid}");
    signal(pid, SUSPEND_SIGNAL);
    let start = Instant::now();
    while lock::is_held(&ha_lock) || lock::is_held(&dir.join(QEMU_LOCK)) {
        if start.elapsed() >= timeout {
            return Err(LaunchError::StopTimeout {
                name: name.into(),
                timeout,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if crate::store::suspended::read(dir).is_none() {
        return Err(LaunchError::NotSuspended {
            name: name.into(),
            detail: format!("no saved state was written{}", diagnostics(dir)),
        });
    }
    Ok(())
}

/// Removes `*.pid`, `*.sock` and `*.tmp` entries of the instance directory.
pub fn remove_runtime_files(dir: &Path) {
    // A killed host agent never removed the VNC password of the QEMU it ran.
    super::vnc::remove(dir);
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if files::RUNTIME_SUFFIXES.iter().any(|s| n.ends_with(s)) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::close_inherited_fds;
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    fn with_fds_closed(c: &mut Command) -> &mut Command {
        // SAFETY: as in `spawn`: one async-signal-safe system call.
        unsafe {
            c.pre_exec(|| {
                close_inherited_fds(3);
                Ok(())
            })
        }
    }

    #[test]
    fn a_failed_exec_is_reported_not_aborted() {
        // The binary the host agent is launched from can vanish (an
        // upgrade, a relink): spawn must return the exec's errno.
        let err = with_fds_closed(&mut Command::new("/nonexistent/limactl"))
            .spawn()
            .expect_err("exec of a missing file");
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound, "{err}");
    }

    #[test]
    fn an_inherited_descriptor_does_not_reach_the_child() {
        let file = tempfile::tempfile().unwrap();
        let fd = file.as_raw_fd();
        // Inheritable, as a wrapper script's lock would be.
        nix::fcntl::fcntl(
            &file,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
        )
        .unwrap();
        let probe = format!("test -e /proc/self/fd/{fd}");
        let open_without = Command::new("sh").args(["-c", &probe]).status().unwrap();
        assert!(open_without.success(), "the probe sees an inherited fd");
        let open_with = with_fds_closed(Command::new("sh").args(["-c", &probe]))
            .status()
            .unwrap();
        assert!(!open_with.success(), "fd {fd} was inherited");
    }
}
