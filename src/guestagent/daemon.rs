//! The in-guest daemon (`lima-guestagent daemon`): one loop over the
//! virtio-serial port.
//!
//! The guest kernel tells whether the host side is connected: `poll` reports
//! `POLLHUP` and `read` returns 0 while nobody holds `ga.sock`, and writes
//! would block. So the agent writes only while the host is connected, keeps
//! no backlog across disconnections, and sends the full state in a `hello`
//! whenever the host (re)connects or asks. Listening sockets are polled
//! every `tick` (0.25 s by default: Lima's 3 s tick is what makes its
//! forwards slow to appear); only changes are sent.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::procnet;
use super::protocol::{self, GuestMessage, HostMessage, LineBuffer, Listener};

/// The device node of the guest agent's virtio-serial port.
pub fn virtio_port_path(name: &str) -> PathBuf {
    Path::new("/dev/virtio-ports").join(name)
}

/// Clock differences at or below this are left alone (reference §4.8).
pub const TIME_SYNC_THRESHOLD: Duration = Duration::from_millis(100);

/// Bytes queued for a host that does not read; beyond this the queue is
/// replaced by a fresh `hello`.
const MAX_BACKLOG: usize = 1 << 20;

#[derive(Clone, Debug)]
pub struct Options {
    pub port: PathBuf,
    pub tick: Duration,
}

fn log(msg: &str) {
    // stderr goes to the journal under systemd.
    eprintln!("lima-guestagent: {msg}");
}

/// Runs forever: (re)opens the port and serves it.
pub fn run(opts: &Options) -> ! {
    let mut last_err = String::new();
    loop {
        match serve(opts) {
            Ok(()) => {}
            Err(e) => {
                let msg = format!("{}: {e}", opts.port.display());
                if msg != last_err {
                    log(&msg);
                    last_err = msg;
                }
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The state of one open port.
struct Session {
    file: std::fs::File,
    out: Vec<u8>,
    host_connected: bool,
    /// What the host was last told (None: nothing since it connected).
    reported: Option<BTreeSet<Listener>>,
    current: BTreeSet<Listener>,
}

impl Session {
    fn queue<T: serde::Serialize>(&mut self, msg: &T) {
        if self.out.len() > MAX_BACKLOG {
            self.out.clear();
            self.reported = None;
        }
        self.out.extend_from_slice(&protocol::encode(msg));
    }

    fn hello(&mut self, id: Option<u64>) {
        let msg = GuestMessage::Hello {
            version: protocol::VERSION,
            id,
            agent: crate::VERSION.to_string(),
            ports: self.current.iter().copied().collect(),
        };
        self.queue(&msg);
        self.reported = Some(self.current.clone());
    }

    fn handle(&mut self, line: &str) {
        match protocol::decode_host(line) {
            Ok(HostMessage::Hello { version, id }) => {
                if version != protocol::VERSION {
                    log(&format!(
                        "host speaks protocol version {version}, this agent {}",
                        protocol::VERSION
                    ));
                }
                self.current = procnet::scan();
                self.hello(Some(id));
            }
            Ok(HostMessage::SyncTime { id, host_time_ns }) => {
                let reply = sync_time(id, host_time_ns);
                if let GuestMessage::TimeSynced {
                    adjusted: true,
                    drift_ms,
                    ..
                } = &reply
                {
                    log(&format!("clock adjusted by {}ms to the host's", -drift_ms));
                }
                self.queue(&reply);
            }
            Ok(HostMessage::Unknown) => {}
            Err(e) => log(&format!("ignoring a malformed message: {e}")),
        }
    }

    fn disconnected(&mut self) {
        if self.host_connected {
            log("host disconnected");
        }
        self.host_connected = false;
        self.reported = None;
        self.out.clear();
    }
}

fn serve(opts: &Options) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(&opts.port)?;
    log(&format!(
        "serving {} (protocol {}, tick {}ms)",
        opts.port.display(),
        protocol::VERSION,
        opts.tick.as_millis()
    ));
    let mut s = Session {
        file,
        out: Vec::new(),
        host_connected: false,
        reported: None,
        current: procnet::scan(),
    };
    let mut lines = LineBuffer::new();
    let mut next_tick = Instant::now() + opts.tick;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let wait = next_tick.saturating_duration_since(Instant::now());
        let mut events = nix::libc::POLLIN;
        if !s.out.is_empty() {
            events |= nix::libc::POLLOUT;
        }
        let mut pfd = nix::libc::pollfd {
            fd: s.file.as_raw_fd(),
            events,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        let n = unsafe { nix::libc::poll(&mut pfd, 1, wait.as_millis() as i32) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
            continue;
        }
        let rev = pfd.revents;
        if rev & nix::libc::POLLNVAL != 0 {
            return Err(std::io::Error::other("port closed (POLLNVAL)"));
        }
        if rev & nix::libc::POLLHUP != 0 {
            // No host: poll would return at once again, so pace the loop.
            s.disconnected();
            std::thread::sleep(Duration::from_millis(100).min(opts.tick));
        } else if !s.host_connected {
            s.host_connected = true;
            log("host connected");
            s.current = procnet::scan();
            s.hello(None);
        }
        if s.host_connected && rev & nix::libc::POLLIN != 0 {
            match s.file.read(&mut buf) {
                Ok(0) => s.disconnected(),
                Ok(n) => {
                    for line in lines.push(&buf[..n]) {
                        s.handle(&line);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if s.host_connected && !s.out.is_empty() {
            match s.file.write(&s.out) {
                Ok(n) => {
                    s.out.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if Instant::now() >= next_tick {
            next_tick = Instant::now() + opts.tick;
            s.current = procnet::scan();
            if let Some(reported) = &s.reported
                && *reported != s.current
            {
                let (added, removed) = protocol::diff(reported, &s.current);
                s.queue(&GuestMessage::Ports { added, removed });
                s.reported = Some(s.current.clone());
            }
        }
    }
}

/// Nanoseconds since the Unix epoch (negative before it).
pub fn unix_nanos(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i64,
        Err(e) => -(e.duration().as_nanos() as i64),
    }
}

/// What to do about a clock `drift_ns` ahead of the host (pure).
pub fn needs_adjustment(drift_ns: i64) -> bool {
    drift_ns.unsigned_abs() > TIME_SYNC_THRESHOLD.as_nanos() as u64
}

/// Answers a `sync-time` request: sets CLOCK_REALTIME to the host's time
/// when the guest is more than 100 ms off.
fn sync_time(id: u64, host_time_ns: i64) -> GuestMessage {
    let drift_ns = unix_nanos(SystemTime::now()) - host_time_ns;
    let drift_ms = drift_ns / 1_000_000;
    if !needs_adjustment(drift_ns) {
        return GuestMessage::TimeSynced {
            id,
            adjusted: false,
            drift_ms,
            error: None,
        };
    }
    let ts = nix::libc::timespec {
        tv_sec: host_time_ns.div_euclid(1_000_000_000),
        tv_nsec: host_time_ns.rem_euclid(1_000_000_000),
    };
    // SAFETY: a valid timespec; needs CAP_SYS_TIME (the service runs as root).
    let rc = unsafe { nix::libc::clock_settime(nix::libc::CLOCK_REALTIME, &ts) };
    let error = (rc != 0).then(|| {
        format!(
            "clock_settime: {} (the guest agent must run as root)",
            std::io::Error::last_os_error()
        )
    });
    GuestMessage::TimeSynced {
        id,
        adjusted: error.is_none(),
        drift_ms,
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_drifts_are_left_alone() {
        assert!(!needs_adjustment(0));
        assert!(!needs_adjustment(100_000_000));
        assert!(!needs_adjustment(-100_000_000));
        assert!(needs_adjustment(100_000_001));
        assert!(needs_adjustment(-2_000_000_000));
    }

    #[test]
    fn in_sync_clocks_are_reported_not_set() {
        let now = unix_nanos(SystemTime::now());
        match sync_time(5, now) {
            GuestMessage::TimeSynced {
                id,
                adjusted,
                drift_ms,
                error,
            } => {
                assert_eq!(id, 5);
                assert!(!adjusted);
                assert!(drift_ms.abs() < 100);
                assert!(error.is_none());
            }
            m => panic!("{m:?}"),
        }
    }

    #[test]
    fn unix_nanos_before_and_after_the_epoch() {
        assert_eq!(unix_nanos(UNIX_EPOCH + Duration::from_nanos(5)), 5);
        assert_eq!(
            unix_nanos(UNIX_EPOCH - Duration::from_secs(1)),
            -1_000_000_000
        );
    }
}
