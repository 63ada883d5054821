//! The guest side of UDP forwarding (protocol feature `udp`): one UDP
//! socket per flow, connected to the guest listener the host named, so the
//! listener's replies come back on it and only on it.
//!
//! The daemon polls the sockets ([`Flows::fds`]), drains the ready ones
//! ([`Flows::recv`]) into `udp` messages and closes idle flows
//! ([`Flows::expire`]). Sockets are non-blocking: nothing here waits.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

/// Datagrams taken from one socket per call, so one busy flow cannot
/// starve the others (or the port reports).
const RECV_BATCH: usize = 64;

struct Flow {
    sock: UdpSocket,
    target: SocketAddr,
    last: Instant,
}

/// The open flows, by the host's flow number.
pub struct Flows {
    map: HashMap<u64, Flow>,
    max: usize,
    idle: Duration,
    buf: Vec<u8>,
}

impl Flows {
    pub fn new(max: usize, idle: Duration) -> Flows {
        Flows {
            map: HashMap::new(),
            max: max.max(1),
            idle,
            buf: vec![0u8; 64 * 1024],
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Makes sure flow `id` exists and is connected to `target` (a flow
    /// whose target changed is reopened). Returns the flow closed to make
    /// room, if any: the host must be told.
    pub fn open(
        &mut self,
        id: u64,
        target: SocketAddr,
        now: Instant,
    ) -> std::io::Result<Option<u64>> {
        if let Some(f) = self.map.get(&id) {
            if f.target == target {
                return Ok(None);
            }
            self.map.remove(&id);
        }
        let mut evicted = None;
        if self.map.len() >= self.max
            && let Some(oldest) = self.map.iter().min_by_key(|(_, f)| f.last).map(|(k, _)| *k)
        {
            self.map.remove(&oldest);
            evicted = Some(oldest);
        }
        let local: SocketAddr = match target {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let sock = UdpSocket::bind(local)?;
        sock.connect(target)?;
        sock.set_nonblocking(true)?;
        self.map.insert(
            id,
            Flow {
                sock,
                target,
                last: now,
            },
        );
        Ok(evicted)
    }

    /// Sends one datagram on an open flow. A datagram that cannot be sent
    /// at once (full socket buffer) is dropped, as UDP may.
    pub fn send(&mut self, id: u64, data: &[u8], now: Instant) -> std::io::Result<()> {
        let f = self
            .map
            .get_mut(&id)
            .ok_or_else(|| std::io::Error::new(ErrorKind::NotFound, "no such flow"))?;
        f.last = now;
        match f.sock.send(data) {
            // An earlier datagram found no listener (ICMP port unreachable);
            // the error is reported once and this datagram was not sent.
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => f.sock.send(data).map(|_| ()),
            r => r.map(|_| ()),
        }
    }

    /// The datagrams waiting on flow `id` (none for an unknown flow).
    pub fn recv(&mut self, id: u64, now: Instant) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let Some(f) = self.map.get_mut(&id) else {
            return out;
        };
        for _ in 0..RECV_BATCH {
            match f.sock.recv(&mut self.buf) {
                Ok(n) => {
                    f.last = now;
                    out.push(self.buf[..n].to_vec());
                }
                // No listener on the target (yet, or any more): the flow
                // stays; it expires if nothing comes.
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        out
    }

    /// Closes flow `id`; false if it was not open.
    pub fn close(&mut self, id: u64) -> bool {
        self.map.remove(&id).is_some()
    }

    /// Closes every flow.
    pub fn clear(&mut self) {
        self.map.clear();
    }

    /// Closes the flows idle for the idle time; returns their numbers.
    pub fn expire(&mut self, now: Instant) -> Vec<u64> {
        let idle = self.idle;
        let gone: Vec<u64> = self
            .map
            .iter()
            .filter(|(_, f)| now.saturating_duration_since(f.last) >= idle)
            .map(|(k, _)| *k)
            .collect();
        for k in &gone {
            self.map.remove(k);
        }
        gone
    }

    /// The sockets to poll, with their flow numbers.
    pub fn fds(&self) -> Vec<(u64, RawFd)> {
        self.map
            .iter()
            .map(|(k, f)| (*k, f.sock.as_raw_fd()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A UDP echo server on 127.0.0.1 that prefixes replies with "echo:".
    fn echo_server() -> SocketAddr {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = s.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = s.recv_from(&mut buf) {
                let mut reply = b"echo:".to_vec();
                reply.extend_from_slice(&buf[..n]);
                let _ = s.send_to(&reply, from);
            }
        });
        addr
    }

    fn wait_recv(f: &mut Flows, id: u64) -> Vec<Vec<u8>> {
        let start = Instant::now();
        loop {
            let got = f.recv(id, Instant::now());
            if !got.is_empty() {
                return got;
            }
            assert!(start.elapsed() < Duration::from_secs(5), "no reply");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn each_flow_has_its_own_socket_and_replies() {
        let server = echo_server();
        let mut f = Flows::new(8, Duration::from_secs(60));
        let now = Instant::now();
        assert_eq!(f.open(1, server, now).unwrap(), None);
        assert_eq!(f.open(2, server, now).unwrap(), None);
        // Opening an open flow again changes nothing.
        assert_eq!(f.open(1, server, now).unwrap(), None);
        assert_eq!(f.len(), 2);
        f.send(1, b"one", now).unwrap();
        f.send(2, b"two", now).unwrap();
        assert_eq!(wait_recv(&mut f, 1), vec![b"echo:one".to_vec()]);
        assert_eq!(wait_recv(&mut f, 2), vec![b"echo:two".to_vec()]);
        assert!(f.recv(1, now).is_empty());
        assert!(f.recv(99, now).is_empty());
        assert!(f.send(99, b"x", now).is_err());
        // Empty datagrams are datagrams too.
        f.send(1, b"", now).unwrap();
        assert_eq!(wait_recv(&mut f, 1), vec![b"echo:".to_vec()]);
        assert!(f.close(2));
        assert!(!f.close(2));
        assert_eq!(f.fds().len(), 1);
    }

    #[test]
    fn a_new_target_reopens_the_flow() {
        let (a, b) = (echo_server(), echo_server());
        let mut f = Flows::new(8, Duration::from_secs(60));
        let now = Instant::now();
        f.open(1, a, now).unwrap();
        f.open(1, b, now).unwrap();
        assert_eq!(f.len(), 1);
        f.send(1, b"x", now).unwrap();
        assert_eq!(wait_recv(&mut f, 1), vec![b"echo:x".to_vec()]);
        assert_eq!(f.map[&1].target, b);
    }

    #[test]
    fn the_least_recently_used_flow_makes_room() {
        let server = echo_server();
        let mut f = Flows::new(2, Duration::from_secs(60));
        let t0 = Instant::now();
        f.open(1, server, t0).unwrap();
        f.open(2, server, t0 + Duration::from_secs(1)).unwrap();
        // Flow 1 is used again: flow 2 is now the oldest.
        f.send(1, b"x", t0 + Duration::from_secs(2)).unwrap();
        assert_eq!(
            f.open(3, server, t0 + Duration::from_secs(3)).unwrap(),
            Some(2)
        );
        let mut ids: Vec<u64> = f.fds().into_iter().map(|(k, _)| k).collect();
        ids.sort();
        assert_eq!(ids, [1, 3]);
    }

    #[test]
    fn idle_flows_expire() {
        let server = echo_server();
        let mut f = Flows::new(8, Duration::from_secs(60));
        let t0 = Instant::now();
        f.open(1, server, t0).unwrap();
        f.open(2, server, t0).unwrap();
        f.send(2, b"x", t0 + Duration::from_secs(30)).unwrap();
        assert!(f.expire(t0 + Duration::from_secs(59)).is_empty());
        assert_eq!(f.expire(t0 + Duration::from_secs(60)), vec![1]);
        // A reply counts as traffic.
        let later = t0 + Duration::from_secs(80);
        let start = Instant::now();
        while f.recv(2, later).is_empty() {
            assert!(start.elapsed() < Duration::from_secs(5));
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(f.expire(t0 + Duration::from_secs(139)).is_empty());
        assert_eq!(f.expire(t0 + Duration::from_secs(140)), vec![2]);
        assert!(f.is_empty());
    }

    #[test]
    fn a_missing_listener_does_not_break_the_flow() {
        // A port nobody listens on: the kernel answers ICMP unreachable.
        let gone = {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.local_addr().unwrap()
        };
        let mut f = Flows::new(8, Duration::from_secs(60));
        let now = Instant::now();
        f.open(1, gone, now).unwrap();
        f.send(1, b"x", now).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert!(f.recv(1, now).is_empty());
        // The pending error does not eat the next datagram.
        f.send(1, b"y", now).unwrap();
        f.send(1, b"z", now).unwrap();
        assert_eq!(f.len(), 1);
    }
}
