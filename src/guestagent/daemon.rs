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
//!
//! Forwarded UDP (protocol feature `udp`) is relayed by the same loop: the
//! flows' sockets ([`udp::Flows`]) are polled with the port. One thread
//! owns the port, so its writes never interleave; what it writes is queued
//! in an [`Outbox`] that puts port reports before datagrams and drops
//! datagrams (never reports) when the host reads too slowly. Nothing in the
//! loop blocks: the port and the flow sockets are non-blocking.

use std::collections::{BTreeSet, VecDeque};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::protocol::{self, GuestMessage, HostMessage, LineBuffer, Listener};
use super::udp;
use super::{cniports, procnet};

/// The device node of the guest agent's virtio-serial port.
pub fn virtio_port_path(name: &str) -> PathBuf {
    Path::new("/dev/virtio-ports").join(name)
}

/// Clock differences at or below this are left alone (reference §4.8).
pub const TIME_SYNC_THRESHOLD: Duration = Duration::from_millis(100);

/// Bytes of reports queued for a host that does not read; beyond this the
/// queue is replaced by a fresh `hello`.
const MAX_BACKLOG: usize = 1 << 20;

/// Bytes of UDP datagrams queued for the host; beyond this they are dropped.
const MAX_UDP_BACKLOG: usize = 1 << 20;

/// How often idle UDP flows are looked for.
const EXPIRE_EVERY: Duration = Duration::from_secs(1);

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
    raise_fd_limit();
    let cni = cniports::Watch::spawn(cniports::EVERY);
    let mut last_err = String::new();
    loop {
        match serve(opts, &cni) {
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

/// Up to [`protocol::MAX_UDP_FLOWS`] flow sockets must fit under the soft
/// open-file limit (systemd's default is 1024).
fn raise_fd_limit() {
    let want = (protocol::MAX_UDP_FLOWS as u64 + 256) as nix::libc::rlim_t;
    let mut rl = nix::libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid rlimit out-pointer.
    if unsafe { nix::libc::getrlimit(nix::libc::RLIMIT_NOFILE, &mut rl) } != 0
        || rl.rlim_cur >= want
    {
        return;
    }
    rl.rlim_cur = want.min(rl.rlim_max);
    // SAFETY: a valid rlimit; failure leaves the limit as it was.
    unsafe { nix::libc::setrlimit(nix::libc::RLIMIT_NOFILE, &rl) };
}

/// What the agent has to write to the port, as whole lines: reports
/// (`hello`, `ports`, `time-synced`, `udp-close`) before datagrams.
#[derive(Debug, Default)]
pub struct Outbox {
    /// Being written: whole lines, the first one possibly partly written
    /// already (so it must be finished before anything else).
    out: Vec<u8>,
    ctrl: VecDeque<Vec<u8>>,
    ctrl_bytes: usize,
    data: VecDeque<Vec<u8>>,
    data_bytes: usize,
}

/// Lines are moved into the write buffer up to about this many bytes.
const WRITE_CHUNK: usize = 64 * 1024;

impl Outbox {
    /// Queues a report line; false when the reports queued exceed
    /// [`MAX_BACKLOG`] (the caller replaces them with a fresh state).
    pub fn push_ctrl(&mut self, line: Vec<u8>) -> bool {
        self.ctrl_bytes += line.len();
        self.ctrl.push_back(line);
        self.ctrl_bytes <= MAX_BACKLOG
    }

    /// Drops the queued reports (not the line being written).
    pub fn clear_ctrl(&mut self) {
        self.ctrl.clear();
        self.ctrl_bytes = 0;
    }

    /// Queues a datagram line; false (dropped) when the datagrams queued
    /// would exceed [`MAX_UDP_BACKLOG`].
    pub fn push_data(&mut self, line: Vec<u8>) -> bool {
        if self.data_bytes + line.len() > MAX_UDP_BACKLOG {
            return false;
        }
        self.data_bytes += line.len();
        self.data.push_back(line);
        true
    }

    pub fn is_empty(&self) -> bool {
        self.out.is_empty() && self.ctrl.is_empty() && self.data.is_empty()
    }

    /// Everything, for a host that went away.
    pub fn clear(&mut self) {
        *self = Outbox::default();
    }

    /// The bytes to write next: reports first, then datagrams.
    pub fn pending(&mut self) -> &[u8] {
        while self.out.len() < WRITE_CHUNK {
            if let Some(l) = self.ctrl.pop_front() {
                self.ctrl_bytes -= l.len();
                self.out.extend_from_slice(&l);
            } else if let Some(l) = self.data.pop_front() {
                self.data_bytes -= l.len();
                self.out.extend_from_slice(&l);
            } else {
                break;
            }
        }
        &self.out
    }

    /// `n` bytes of [`Outbox::pending`] were written.
    pub fn written(&mut self, n: usize) {
        self.out.drain(..n);
    }
}

/// The state of one open port.
struct Session {
    file: std::fs::File,
    outbox: Outbox,
    host_connected: bool,
    /// What the host was last told (None: nothing since it connected).
    reported: Option<BTreeSet<Listener>>,
    current: BTreeSet<Listener>,
    /// Ports published by CNI's portmap (DNAT rules, no socket).
    cni: cniports::Watch,
    flows: udp::Flows,
    /// The last UDP error logged (each distinct one is logged once).
    udp_err: String,
    dropped: u64,
}

impl Session {
    /// Every port the guest offers: its listening sockets and the ports
    /// containers publish through DNAT.
    fn scan(&self) -> BTreeSet<Listener> {
        let mut ports = procnet::scan();
        ports.extend(self.cni.current());
        ports
    }

    fn queue<T: serde::Serialize>(&mut self, msg: &T) {
        if !self.outbox.push_ctrl(protocol::encode(msg)) {
            // The host has not read for a long while: what is queued is
            // replaced by the state it describes.
            self.outbox.clear_ctrl();
            self.hello(None);
        }
    }

    fn queue_datagram(&mut self, msg: &GuestMessage) {
        if !self.outbox.push_data(protocol::encode(msg)) {
            self.dropped += 1;
            if self.dropped.is_power_of_two() {
                log(&format!(
                    "the host reads slowly: {} forwarded UDP datagrams dropped so far",
                    self.dropped
                ));
            }
        }
    }

    fn udp_error(&mut self, msg: String) {
        if msg != self.udp_err {
            log(&msg);
            self.udp_err = msg;
        }
    }

    fn hello(&mut self, id: Option<u64>) {
        let msg = GuestMessage::Hello {
            version: protocol::VERSION,
            id,
            agent: crate::VERSION.to_string(),
            ports: self.current.iter().copied().collect(),
            features: protocol::FEATURES.iter().map(|f| f.to_string()).collect(),
        };
        self.outbox.push_ctrl(protocol::encode(&msg));
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
                // A new host session: its flow numbers start afresh.
                self.flows.clear();
                self.current = self.scan();
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
            Ok(HostMessage::Udp { flow, target, data }) => {
                let now = Instant::now();
                match self.flows.open(flow, target, now) {
                    Ok(evicted) => {
                        if let Some(old) = evicted {
                            self.queue(&GuestMessage::UdpClose { flow: old });
                        }
                        if let Err(e) = self.flows.send(flow, &data, now) {
                            self.udp_error(format!("cannot send a UDP datagram to {target}: {e}"));
                        }
                    }
                    Err(e) => {
                        self.udp_error(format!("cannot open a UDP socket to {target}: {e}"));
                        self.queue(&GuestMessage::UdpClose { flow });
                    }
                }
            }
            Ok(HostMessage::UdpClose { flow }) => {
                self.flows.close(flow);
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
        self.outbox.clear();
        self.flows.clear();
    }
}

fn serve(opts: &Options, cni: &cniports::Watch) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(&opts.port)?;
    log(&format!(
        "serving {} (protocol {}, features {}, tick {}ms)",
        opts.port.display(),
        protocol::VERSION,
        protocol::FEATURES.join(","),
        opts.tick.as_millis()
    ));
    let mut s = Session {
        file,
        outbox: Outbox::default(),
        host_connected: false,
        reported: None,
        current: BTreeSet::new(),
        cni: cni.clone(),
        flows: udp::Flows::new(protocol::MAX_UDP_FLOWS, protocol::UDP_IDLE),
        udp_err: String::new(),
        dropped: 0,
    };
    s.current = s.scan();
    let mut lines = LineBuffer::new();
    let mut next_tick = Instant::now() + opts.tick;
    let mut next_expire = Instant::now() + EXPIRE_EVERY;
    let mut buf = vec![0u8; 64 * 1024];
    let mut pfds = Vec::new();
    loop {
        let wait = next_tick
            .min(next_expire)
            .saturating_duration_since(Instant::now());
        let mut events = nix::libc::POLLIN;
        if !s.outbox.is_empty() {
            events |= nix::libc::POLLOUT;
        }
        pfds.clear();
        pfds.push(nix::libc::pollfd {
            fd: s.file.as_raw_fd(),
            events,
            revents: 0,
        });
        let flows = s.flows.fds();
        for (_, fd) in &flows {
            pfds.push(nix::libc::pollfd {
                fd: *fd,
                events: nix::libc::POLLIN,
                revents: 0,
            });
        }
        // SAFETY: `pfds` holds valid pollfds for the duration of the call.
        let n = unsafe {
            nix::libc::poll(
                pfds.as_mut_ptr(),
                pfds.len() as nix::libc::nfds_t,
                wait.as_millis() as i32,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
            continue;
        }
        // Replies of the guest's UDP listeners, before the port's input
        // can close or reopen flows.
        let now = Instant::now();
        for (i, (flow, _)) in flows.iter().enumerate() {
            if pfds[i + 1].revents != 0 {
                for data in s.flows.recv(*flow, now) {
                    s.queue_datagram(&GuestMessage::Udp { flow: *flow, data });
                }
            }
        }
        let rev = pfds[0].revents;
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
            s.current = s.scan();
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
        if s.host_connected && !s.outbox.is_empty() {
            let pending = s.outbox.pending();
            match s.file.write(pending) {
                Ok(n) => s.outbox.written(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if Instant::now() >= next_tick {
            next_tick = Instant::now() + opts.tick;
            s.current = s.scan();
            if let Some(reported) = &s.reported
                && *reported != s.current
            {
                let (added, removed) = protocol::diff(reported, &s.current);
                s.queue(&GuestMessage::Ports { added, removed });
                s.reported = Some(s.current.clone());
            }
        }
        if Instant::now() >= next_expire {
            next_expire = Instant::now() + EXPIRE_EVERY;
            for flow in s.flows.expire(Instant::now()) {
                s.queue(&GuestMessage::UdpClose { flow });
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

    fn line(tag: u8, len: usize) -> Vec<u8> {
        let mut l = vec![tag; len - 1];
        l.push(b'\n');
        l
    }

    #[test]
    fn reports_go_before_datagrams_and_lines_stay_whole() {
        let mut o = Outbox::default();
        assert!(o.is_empty());
        assert!(o.push_data(line(b'd', 10)));
        assert!(o.push_ctrl(line(b'c', 5)));
        assert_eq!(o.pending(), [line(b'c', 5), line(b'd', 10)].concat());
        // A partial write: the rest of that line comes before anything
        // queued later, even a report.
        o.written(7);
        assert!(o.push_ctrl(line(b'C', 3)));
        assert!(o.push_data(line(b'D', 3)));
        assert_eq!(
            o.pending(),
            [&line(b'd', 10)[2..], &line(b'C', 3), &line(b'D', 3)].concat()
        );
        let n = o.pending().len();
        o.written(n);
        assert!(o.is_empty());
        // Big queues are written in chunks of whole lines.
        for _ in 0..100 {
            assert!(o.push_data(line(b'x', 1000)));
        }
        let n = o.pending().len();
        assert!((WRITE_CHUNK..WRITE_CHUNK + 1000).contains(&n) && n % 1000 == 0);
        o.clear();
        assert!(o.is_empty());
    }

    #[test]
    fn datagrams_are_dropped_and_reports_replaced_when_the_host_is_slow() {
        let mut o = Outbox::default();
        let big = line(b'd', 64 * 1024);
        let fit = MAX_UDP_BACKLOG / big.len();
        for _ in 0..fit {
            assert!(o.push_data(big.clone()));
        }
        assert!(!o.push_data(big.clone()));
        // Reports are still taken, and go first.
        assert!(o.push_ctrl(line(b'c', 10)));
        assert_eq!(&o.pending()[..10], &line(b'c', 10)[..]);
        let mut o = Outbox::default();
        let mut ok = true;
        for _ in 0..=(MAX_BACKLOG / big.len()) {
            ok = o.push_ctrl(big.clone());
        }
        assert!(!ok, "an overlong report backlog is signalled");
        o.clear_ctrl();
        assert!(o.is_empty());
    }

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
