//! The host side of the guest agent: finding the binary to ship in cidata,
//! and the connection over `<inst>/ga.sock` (QEMU's end of the virtio-serial
//! port) that feeds the port forwarder, carries forwarded UDP datagrams and
//! keeps the guest clock in sync.
//!
//! This thread reads; every write (its own and the UDP forwards') goes
//! through the forwarder's [`GuestLink`], one line at a time.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::guestagent::daemon::unix_nanos;
use crate::guestagent::protocol::{self, GuestMessage, HostMessage, LineBuffer};
use crate::sync::MutexExt;

use super::latch::Latch;
use super::portfwd::Forwarder;
use super::portfwd::GuestLink;

/// Environment variable naming the guest agent binary to ship.
pub const GUESTAGENT_ENV: &str = "LIMA_GUESTAGENT";

/// After the agent is first seen alive, the first time sync (reference §4.8).
const FIRST_TIME_SYNC: Duration = Duration::from_secs(5);
const TIME_SYNC_INTERVAL: Duration = Duration::from_secs(10);
/// A hello unanswered this long is sent again (the agent may have restarted).
const HELLO_RETRY: Duration = Duration::from_secs(5);
/// Pause between connection attempts to ga.sock.
const RECONNECT: Duration = Duration::from_secs(1);

/// The guest agent binary: `$LIMA_GUESTAGENT`, else next to this
/// executable (`lima-guestagent`, `../share/lima/lima-guestagent.Linux-x86_64[.gz]`).
pub fn find_binary() -> Option<PathBuf> {
    find_binary_in(
        std::env::var_os(GUESTAGENT_ENV).map(PathBuf::from),
        std::env::current_exe().ok().as_deref(),
    )
}

pub fn find_binary_in(env: Option<PathBuf>, exe: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = env.filter(|p| !p.as_os_str().is_empty()) {
        if p.is_file() {
            return Some(p);
        }
        crate::warn!("{GUESTAGENT_ENV}={} does not exist", p.display());
        return None;
    }
    let dir = exe?.parent()?;
    let arch = std::env::consts::ARCH;
    [
        dir.join("lima-guestagent"),
        dir.join(format!("../share/lima/lima-guestagent.Linux-{arch}")),
        dir.join(format!("../share/lima/lima-guestagent.Linux-{arch}.gz")),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

/// Whether an ELF executable asks for a dynamic loader (PT_INTERP): such a
/// build depends on the host's libc and may not run in the guest.
pub fn is_dynamically_linked(path: &Path) -> bool {
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let mut head = vec![0u8; 4096];
    let n = f.read(&mut head).unwrap_or(0);
    head.truncate(n);
    // ELF64 little-endian only (the guests this project boots).
    if head.len() < 64 || &head[..4] != b"\x7fELF" || head[4] != 2 || head[5] != 1 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([head[o], head[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(head[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).any(|i| {
        let o = phoff + i * phentsize;
        head.get(o..o + 4)
            .is_some_and(|t| u32::from_le_bytes(t.try_into().unwrap()) == 3)
    })
}

/// A read of ga.sock that ended at its timeout (or a signal): nothing
/// arrived, the connection is fine.
fn read_timed_out(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock
            | std::io::ErrorKind::TimedOut
            | std::io::ErrorKind::Interrupted
    )
}

/// Set once the agent answered; waited on by the start-up routine.
pub type Alive = Latch;

/// One `sync-time` exchange on a connection of its own: a resumed guest's
/// clock stood still while it was suspended, and its agent (root, already
/// running in the restored guest) can set it at once, while SSH still logs
/// in. The request's id is the host time it carries, so a reply the agent
/// queued for an earlier host session is not taken for this one. Returns
/// the drift the agent found (guest minus host, ms).
pub fn sync_clock_once(ga_sock: &Path, timeout: Duration) -> Result<i64, String> {
    use std::io::Write;
    let deadline = Instant::now() + timeout;
    let mut stream = loop {
        match UnixStream::connect(ga_sock) {
            Ok(s) => break s,
            Err(e) if Instant::now() >= deadline => {
                return Err(format!("cannot connect to {}: {e}", ga_sock.display()));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let host_time_ns = unix_nanos(SystemTime::now());
    let id = host_time_ns as u64;
    let io = |e: std::io::Error| format!("guest agent port {}: {e}", ga_sock.display());
    stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .map_err(io)?;
    stream
        .write_all(&protocol::encode(&HostMessage::SyncTime {
            id,
            host_time_ns,
        }))
        .map_err(io)?;
    let mut lines = LineBuffer::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "the guest agent did not answer within {}s",
                timeout.as_secs()
            ));
        }
        stream.set_read_timeout(Some(left)).map_err(io)?;
        let n = match stream.read(&mut buf) {
            Ok(0) => return Err(io(std::io::Error::other("closed by QEMU"))),
            Ok(n) => n,
            Err(e) if read_timed_out(&e) => continue,
            Err(e) => return Err(io(e)),
        };
        for line in lines.push(&buf[..n]) {
            if let Ok(GuestMessage::TimeSynced {
                id: got,
                drift_ms,
                error,
                ..
            }) = protocol::decode_guest(&line)
                && got == id
            {
                return match error {
                    None => Ok(drift_ms),
                    Some(e) => Err(e),
                };
            }
        }
    }
}

/// The thread that talks to the guest agent.
pub struct Connection {
    thread: JoinHandle<()>,
    link: Arc<GuestLink>,
    stop: Arc<Latch>,
}

impl Connection {
    /// Sets `stop` and waits for the thread, waking it where it blocks: its
    /// reconnect pause waits on the latch, and its read of ga.sock ends when
    /// the link hangs the socket up. The thread checks `stop` after each
    /// attach, so a stop that found nothing attached yet is seen too.
    pub fn stop(self) -> std::thread::Result<()> {
        self.stop.set();
        self.link.hang_up();
        self.thread.join()
    }
}

/// Talks to the guest agent in a thread until [`Connection::stop`] (or
/// `stop` set and the link hung up), reconnecting as needed.
pub fn spawn(
    ga_sock: PathBuf,
    forwarder: Arc<Mutex<Forwarder>>,
    alive: Arc<Alive>,
    stop: Arc<Latch>,
) -> Connection {
    let link = forwarder.locked().link();
    let thread = {
        let (link, stop) = (link.clone(), stop.clone());
        crate::logging::spawn_in_span(move || run(&ga_sock, &forwarder, &alive, &link, &stop))
    };
    Connection { thread, link, stop }
}

fn run(
    ga_sock: &Path,
    forwarder: &Arc<Mutex<Forwarder>>,
    alive: &Arc<Alive>,
    link: &GuestLink,
    stop: &Latch,
) {
    let mut next_id = 1u64;
    let mut logged_alive = false;
    let mut version_warned = false;
    let mut last_err = String::new();
    while !stop.is_set() {
        let stream = match UnixStream::connect(ga_sock) {
            Ok(s) => s,
            Err(e) => {
                let msg = format!("cannot connect to {}: {e}", ga_sock.display());
                if msg != last_err {
                    crate::debug!("{msg}");
                    last_err = msg;
                }
                // No blocking wait for QEMU's socket to accept: retry.
                stop.wait(RECONNECT);
                continue;
            }
        };
        last_err.clear();
        crate::debug!("connected to the guest agent port {}", ga_sock.display());
        let mut conn = Conn {
            stream,
            link,
            next_id: &mut next_id,
            forwarder,
            alive,
            logged_alive: &mut logged_alive,
            version_warned: &mut version_warned,
        };
        let result = conn.serve(stop);
        link.detach();
        if let Err(e) = result
            && !stop.is_set()
        {
            crate::debug!("guest agent connection ended: {e}");
        }
        stop.wait(RECONNECT);
    }
}

struct Conn<'a> {
    stream: UnixStream,
    link: &'a GuestLink,
    next_id: &'a mut u64,
    forwarder: &'a Arc<Mutex<Forwarder>>,
    alive: &'a Arc<Alive>,
    logged_alive: &'a mut bool,
    version_warned: &'a mut bool,
}

impl Conn<'_> {
    fn send(&mut self, msg: &HostMessage) -> std::io::Result<()> {
        self.link.send(msg)
    }

    fn id(&mut self) -> u64 {
        *self.next_id += 1;
        *self.next_id
    }

    fn serve(&mut self, stop: &Latch) -> std::io::Result<()> {
        // QEMU stops reading while the guest has not opened its port: a
        // full socket must not block this thread (shutdown joins it).
        self.stream
            .set_write_timeout(Some(Duration::from_secs(2)))?;
        self.link.attach(self.stream.try_clone()?);
        // A stop before the attach had nothing to hang up.
        if stop.is_set() {
            return Ok(());
        }
        let id = self.id();
        self.send(&HostMessage::Hello {
            version: protocol::VERSION,
            id,
        })?;
        let mut hello_at = Instant::now();
        let mut synced = false;
        let mut next_sync: Option<Instant> =
            (*self.logged_alive).then(|| Instant::now() + FIRST_TIME_SYNC);
        let mut lines = LineBuffer::new();
        let mut buf = vec![0u8; 64 * 1024];
        while !stop.is_set() {
            // The read blocks until the guest writes, the next timer is due
            // (hello retry, time sync) or Connection::stop hangs up.
            let due = if synced {
                next_sync
            } else {
                Some(hello_at + HELLO_RETRY)
            };
            let timeout = due.map(|t| {
                t.saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1))
            });
            self.stream.set_read_timeout(timeout)?;
            match self.stream.read(&mut buf) {
                Ok(0) => return Err(std::io::Error::other("closed by QEMU")),
                Ok(n) => {
                    for line in lines.push(&buf[..n]) {
                        match protocol::decode_guest(&line) {
                            Ok(msg) => {
                                if self.handle(msg, &mut synced) && next_sync.is_none() {
                                    next_sync = Some(Instant::now() + FIRST_TIME_SYNC);
                                }
                            }
                            Err(e) => {
                                crate::debug!("ignoring a malformed guest agent line: {e}: {line}")
                            }
                        }
                    }
                }
                Err(e) if read_timed_out(&e) => {}
                Err(e) => return Err(e),
            }
            if !synced && hello_at.elapsed() >= HELLO_RETRY {
                let id = self.id();
                self.send(&HostMessage::Hello {
                    version: protocol::VERSION,
                    id,
                })?;
                hello_at = Instant::now();
            }
            if let Some(t) = next_sync
                && synced
                && Instant::now() >= t
            {
                let id = self.id();
                self.send(&HostMessage::SyncTime {
                    id,
                    host_time_ns: unix_nanos(SystemTime::now()),
                })?;
                next_sync = Some(Instant::now() + TIME_SYNC_INTERVAL);
            }
        }
        Ok(())
    }

    /// Handles one message; true when it was a (compatible) hello.
    fn handle(&mut self, msg: GuestMessage, synced: &mut bool) -> bool {
        match msg {
            GuestMessage::Hello {
                version,
                agent,
                ports,
                features,
                ..
            } => {
                if version != protocol::VERSION {
                    if !*self.version_warned {
                        crate::error!(
                            "the guest agent ({agent}) speaks protocol version {version}, this host agent {}; rebuild it (hack/build-guestagent.sh)",
                            protocol::VERSION
                        );
                        *self.version_warned = true;
                    }
                    return false;
                }
                if !*self.logged_alive {
                    crate::info!("Guest agent is running");
                    *self.logged_alive = true;
                    self.alive.set();
                }
                *synced = true;
                // Before the ports: UDP listeners need the feature.
                self.link
                    .set_udp(features.iter().any(|f| f == protocol::FEATURE_UDP));
                self.forwarder.locked().sync(ports);
                true
            }
            GuestMessage::Ports { added, removed } => {
                if *synced {
                    self.forwarder.locked().update(&added, &removed);
                }
                false
            }
            GuestMessage::TimeSynced {
                adjusted,
                drift_ms,
                error,
                ..
            } => {
                if let Some(e) = error {
                    crate::warn!(
                        "time sync: the guest could not set its clock (drift {drift_ms}ms): {e}"
                    );
                } else if adjusted {
                    crate::info!(
                        "Time sync: the guest clock was {drift_ms}ms off; set to the host's"
                    );
                } else {
                    crate::debug!("time sync: drift {drift_ms}ms");
                }
                false
            }
            GuestMessage::Udp { flow, data } => {
                self.link.deliver(flow, &data);
                false
            }
            GuestMessage::UdpClose { flow } => {
                self.link.closed_by_guest(flow);
                false
            }
            GuestMessage::Unknown => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// The guest agent's end of `sync_clock_once`: reads the request, then
    /// writes `before` (what it had queued) and the reply `answer` gives.
    fn agent_answering(
        sock: &Path,
        before: Vec<GuestMessage>,
        answer: impl FnOnce(u64) -> Option<GuestMessage> + Send + 'static,
    ) -> std::thread::JoinHandle<HostMessage> {
        let listener = std::os::unix::net::UnixListener::bind(sock).unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut line = String::new();
            std::io::BufRead::read_line(
                &mut std::io::BufReader::new(s.try_clone().unwrap()),
                &mut line,
            )
            .unwrap();
            let req = protocol::decode_host(&line).unwrap();
            let HostMessage::SyncTime { id, .. } = req else {
                panic!("{req:?}")
            };
            for m in before {
                s.write_all(&protocol::encode(&m)).unwrap();
            }
            if let Some(m) = answer(id) {
                s.write_all(&protocol::encode(&m)).unwrap();
            }
            // Held open until the host side is done.
            let _ = s.read(&mut [0u8; 1]);
            req
        })
    }

    fn synced(id: u64, drift_ms: i64, error: Option<&str>) -> GuestMessage {
        GuestMessage::TimeSynced {
            id,
            adjusted: error.is_none(),
            drift_ms,
            error: error.map(str::to_string),
        }
    }

    #[test]
    fn a_resumed_guest_clock_is_set_in_one_exchange() {
        let d = tempfile::tempdir().unwrap();
        let sock = d.path().join("ga.sock");
        // A stale reply for an earlier host session and a port report
        // come first: only the reply to this request counts.
        let agent = agent_answering(
            &sock,
            vec![
                synced(7, -1, None),
                GuestMessage::Ports {
                    added: vec![],
                    removed: vec![],
                },
            ],
            |id| Some(synced(id, -42_000, None)),
        );
        let before = unix_nanos(SystemTime::now());
        assert_eq!(sync_clock_once(&sock, Duration::from_secs(10)), Ok(-42_000));
        let HostMessage::SyncTime { id, host_time_ns } = agent.join().unwrap() else {
            unreachable!()
        };
        assert_eq!(id, host_time_ns as u64);
        assert!(host_time_ns >= before, "the host's time when sent");
    }

    #[test]
    fn the_agent_s_error_or_silence_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let sock = d.path().join("ga.sock");
        let agent = agent_answering(&sock, vec![], |id| {
            Some(synced(id, -5_000, Some("clock_settime: EPERM")))
        });
        assert_eq!(
            sync_clock_once(&sock, Duration::from_secs(10)),
            Err("clock_settime: EPERM".to_string())
        );
        agent.join().unwrap();
        let sock = d.path().join("ga2.sock");
        let agent = agent_answering(&sock, vec![], |_| None);
        let err = sync_clock_once(&sock, Duration::from_millis(300)).unwrap_err();
        assert!(err.contains("did not answer"), "{err}");
        agent.join().unwrap();
        let err =
            sync_clock_once(&d.path().join("none.sock"), Duration::from_millis(100)).unwrap_err();
        assert!(err.contains("cannot connect"), "{err}");
    }

    #[test]
    fn binary_lookup_order() {
        let d = tempfile::tempdir().unwrap();
        let bin = d.path().join("bin");
        let share = d.path().join("share/lima");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(&share).unwrap();
        let exe = bin.join("limactl");
        assert_eq!(find_binary_in(None, Some(&exe)), None);
        let shared = share.join(format!("lima-guestagent.Linux-{}", std::env::consts::ARCH));
        std::fs::write(&shared, "x").unwrap();
        assert_eq!(
            find_binary_in(None, Some(&exe))
                .unwrap()
                .canonicalize()
                .unwrap(),
            shared.canonicalize().unwrap()
        );
        std::fs::write(bin.join("lima-guestagent"), "x").unwrap();
        assert_eq!(
            find_binary_in(None, Some(&exe)),
            Some(bin.join("lima-guestagent"))
        );
        // The environment wins, and a wrong path means none.
        assert_eq!(
            find_binary_in(Some(shared.clone()), Some(&exe)),
            Some(shared)
        );
        assert_eq!(
            find_binary_in(Some(d.path().join("nope")), Some(&exe)),
            None
        );
        // Empty is unset.
        assert_eq!(
            find_binary_in(Some(PathBuf::new()), Some(&exe)),
            Some(bin.join("lima-guestagent"))
        );
    }

    #[test]
    fn dynamic_executables_are_recognised() {
        // The test binary itself is dynamically linked; a script is not ELF.
        assert!(is_dynamically_linked(&std::env::current_exe().unwrap()));
        let d = tempfile::tempdir().unwrap();
        let s = d.path().join("s");
        std::fs::write(&s, "#!/bin/sh\n").unwrap();
        assert!(!is_dynamically_linked(&s));
    }

    /// Without ga.sock the thread pauses between attempts; a stop ends
    /// the pause at once.
    #[test]
    fn a_stop_ends_the_reconnect_pause() {
        let d = tempfile::tempdir().unwrap();
        let events = Arc::new(Mutex::new(
            super::super::events::EventWriter::open(&d.path().join("ha.stdout.log")).unwrap(),
        ));
        let fw = Arc::new(Mutex::new(Forwarder::new(
            super::super::portfwd::rules(&[], 60022),
            crate::ssh::SshTarget::for_tests(d.path()),
            events,
        )));
        let stop = Arc::new(Latch::default());
        let conn = spawn(
            d.path().join("ga.sock"),
            fw,
            Arc::new(Alive::default()),
            stop.clone(),
        );
        std::thread::sleep(Duration::from_millis(50));
        let start = Instant::now();
        conn.stop().unwrap();
        assert!(start.elapsed() < RECONNECT / 2, "{:?}", start.elapsed());
        assert!(stop.is_set());
    }

    /// A fake guest on the other end of a socket pair: the host's hello is
    /// answered with the full state, changes reach the forwarder.
    #[test]
    fn hello_then_changes_over_a_socket() {
        use crate::guestagent::protocol::{Listener, Proto};
        let d = tempfile::tempdir().unwrap();
        let sock = d.path().join("ga.sock");
        let l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let events = Arc::new(Mutex::new(
            super::super::events::EventWriter::open(&d.path().join("ha.stdout.log")).unwrap(),
        ));
        let target = crate::ssh::SshTarget::for_tests(d.path());
        // Every port the test uses is ignored, so the forwarder never runs
        // ssh (all of 1–65535 would switch TCP forwarding off, events too).
        let ignore_all = crate::spec::types::PortForward {
            guest_ip: Some("0.0.0.0".into()),
            guest_ip_must_be_zero: Some(false),
            guest_port_range: Some([2, 65535]),
            host_port_range: Some([2, 65535]),
            proto: Some("any".into()),
            ignore: Some(true),
            ..Default::default()
        };
        let fw = Arc::new(Mutex::new(Forwarder::new(
            super::super::portfwd::rules(&[ignore_all], 60022),
            target,
            events,
        )));
        let alive = Arc::new(Alive::default());
        let conn = spawn(sock, fw.clone(), alive.clone(), Arc::new(Latch::default()));
        let (mut guest, _) = l.accept().unwrap();
        let mut lines = LineBuffer::new();
        let mut buf = [0u8; 1024];
        let first = loop {
            let n = guest.read(&mut buf).unwrap();
            if let Some(line) = lines.push(&buf[..n]).into_iter().next() {
                break line;
            }
        };
        let HostMessage::Hello { version, id } = protocol::decode_host(&first).unwrap() else {
            panic!("{first}");
        };
        assert_eq!(version, protocol::VERSION);
        assert!(!alive.wait(Duration::from_millis(10)));
        let p = Listener::new(Proto::Tcp, "127.0.0.1".parse().unwrap(), 8080);
        guest
            .write_all(&protocol::encode(&GuestMessage::Hello {
                version: protocol::VERSION,
                id: Some(id),
                agent: "test".into(),
                ports: vec![p],
                features: vec![],
            }))
            .unwrap();
        assert!(alive.wait(Duration::from_secs(5)));
        let q = Listener::new(Proto::Udp, "::".parse().unwrap(), 53);
        guest
            .write_all(&protocol::encode(&GuestMessage::Ports {
                added: vec![q],
                removed: vec![p],
            }))
            .unwrap();
        let start = Instant::now();
        while *fw.locked().known() != std::collections::BTreeSet::from([q]) {
            assert!(start.elapsed() < Duration::from_secs(5));
            std::thread::sleep(Duration::from_millis(10));
        }
        // The guest keeps its end open and the next timer is seconds away:
        // only the hang-up ends the blocked read this fast.
        let start = Instant::now();
        conn.stop().unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
        // The ignored TCP port produced a not-forwarding event.
        let log = std::fs::read_to_string(d.path().join("ha.stdout.log")).unwrap();
        assert!(log.contains("\"type\":\"not-forwarding\""), "{log}");
        assert!(log.contains("\"guestAddr\":\"127.0.0.1:8080\""), "{log}");
    }

    /// UDP end to end on the host side: the real connection and forwarder,
    /// a fake guest on the other end of ga.sock that relays with the
    /// guest's flow table, and a UDP server on 127.0.0.1 playing the guest
    /// listener. It answers with the source port it saw, so each client
    /// must have its own flow (its own socket in the "guest").
    #[test]
    fn udp_datagrams_go_both_ways_one_flow_per_client() {
        use crate::guestagent::protocol::{Listener, Proto};
        use crate::guestagent::udp::Flows;
        use std::net::{SocketAddr, UdpSocket};
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let guest_port = server.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, from)) = server.recv_from(&mut buf) {
                let mut reply = buf[..n].to_vec();
                reply.extend_from_slice(format!("@{}", from.port()).as_bytes());
                let _ = server.send_to(&reply, from);
            }
        });
        let host_port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let host: SocketAddr = ([127, 0, 0, 1], host_port).into();

        let d = tempfile::tempdir().unwrap();
        let sock = d.path().join("ga.sock");
        let l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let log = d.path().join("ha.stdout.log");
        let events = Arc::new(Mutex::new(
            super::super::events::EventWriter::open(&log).unwrap(),
        ));
        let target = crate::ssh::SshTarget::for_tests(d.path());
        let udp_rule = crate::spec::types::PortForward {
            guest_ip: Some("127.0.0.1".into()),
            guest_port_range: Some([guest_port as i64; 2]),
            host_ip: Some("127.0.0.1".into()),
            host_port_range: Some([host_port as i64; 2]),
            proto: Some("udp".into()),
            ..Default::default()
        };
        // Anything else (no ssh in this test).
        let ignore_all = crate::spec::types::PortForward {
            guest_ip: Some("0.0.0.0".into()),
            guest_ip_must_be_zero: Some(false),
            guest_port_range: Some([2, 65535]),
            host_port_range: Some([2, 65535]),
            proto: Some("any".into()),
            ignore: Some(true),
            ..Default::default()
        };
        let fw = Arc::new(Mutex::new(Forwarder::new(
            super::super::portfwd::rules(&[udp_rule, ignore_all], 60022),
            target,
            events,
        )));
        let alive = Arc::new(Alive::default());
        let conn = spawn(sock, fw.clone(), alive.clone(), Arc::new(Latch::default()));

        // The fake guest: answers hellos, relays datagrams, and sends what
        // the test hands it.
        let listener = Listener::new(Proto::Udp, "127.0.0.1".parse().unwrap(), guest_port);
        let (to_guest, from_test) = std::sync::mpsc::channel::<GuestMessage>();
        let (guest, _) = l.accept().unwrap();
        let g = std::thread::spawn(move || {
            let mut guest = guest;
            guest
                .set_read_timeout(Some(Duration::from_millis(5)))
                .unwrap();
            let mut flows = Flows::new(16, Duration::from_secs(60));
            let mut lines = LineBuffer::new();
            let mut buf = vec![0u8; 256 * 1024];
            let mut relayed = 0usize;
            loop {
                let mut out = Vec::new();
                match guest.read(&mut buf) {
                    Ok(0) => return relayed,
                    Ok(n) => {
                        for line in lines.push(&buf[..n]) {
                            match protocol::decode_host(&line).unwrap() {
                                HostMessage::Hello { id, .. } => out.push(GuestMessage::Hello {
                                    version: protocol::VERSION,
                                    id: Some(id),
                                    agent: "fake".into(),
                                    ports: vec![listener],
                                    features: vec![protocol::FEATURE_UDP.into()],
                                }),
                                HostMessage::Udp { flow, target, data } => {
                                    let now = Instant::now();
                                    flows.open(flow, target, now).unwrap();
                                    flows.send(flow, &data, now).unwrap();
                                    relayed += 1;
                                }
                                HostMessage::UdpClose { flow } => {
                                    flows.close(flow);
                                }
                                _ => {}
                            }
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => return relayed,
                }
                for (flow, _) in flows.fds() {
                    for data in flows.recv(flow, Instant::now()) {
                        out.push(GuestMessage::Udp { flow, data });
                    }
                }
                out.extend(from_test.try_iter());
                for m in out {
                    if guest.write_all(&protocol::encode(&m)).is_err() {
                        return relayed;
                    }
                }
            }
        });

        let events_of = |kind: &str| {
            let text = std::fs::read_to_string(&log).unwrap();
            text.lines()
                .filter(|l| {
                    l.contains(&format!("\"type\":\"{kind}\""))
                        && l.contains("\"protocol\":\"udp\"")
                        && l.contains(&format!("\"guestAddr\":\"127.0.0.1:{guest_port}\""))
                        && l.contains(&format!("\"hostAddr\":\"{host}\""))
                })
                .count()
        };
        let start = Instant::now();
        while events_of("forwarding") == 0 {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "no forwarding event"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let c1 = UdpSocket::bind("127.0.0.1:0").unwrap();
        let c2 = UdpSocket::bind("127.0.0.1:0").unwrap();
        let ask = |c: &UdpSocket, msg: &str| -> String {
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            c.send_to(msg.as_bytes(), host).unwrap();
            let mut buf = vec![0u8; 65536];
            let (n, from) = c.recv_from(&mut buf).unwrap();
            assert_eq!(from, host);
            String::from_utf8(buf[..n].to_vec()).unwrap()
        };
        let r1 = ask(&c1, "one");
        let r2 = ask(&c2, "two");
        let (p1, p2) = (
            r1.strip_prefix("one@").unwrap(),
            r2.strip_prefix("two@").unwrap(),
        );
        assert_ne!(p1, p2, "two clients shared a flow");
        // The same client stays on its flow; big datagrams pass whole.
        assert_eq!(ask(&c1, "again"), format!("again@{p1}"));
        let big = "x".repeat(60_000);
        let reply = ask(&c2, &big);
        assert!(reply == format!("{big}@{p2}"), "{} bytes", reply.len());
        assert_eq!(fw.locked().link().flows(), 2);

        // The listener goes away: the host socket is closed, with an event.
        to_guest
            .send(GuestMessage::Ports {
                added: vec![],
                removed: vec![listener],
            })
            .unwrap();
        let start = Instant::now();
        while events_of("stopping") == 0 {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "no stopping event"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        UdpSocket::bind(host).expect("the host port is still bound");
        assert_eq!(fw.locked().link().flows(), 0);
        conn.stop().unwrap();
        drop(l);
        assert_eq!(g.join().unwrap(), 4);
    }
}
