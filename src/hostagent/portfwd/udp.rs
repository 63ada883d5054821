//! UDP forwarding through the guest agent (protocol feature `udp`; an SSH
//! local forward carries TCP only), over the [`GuestLink`].
//!
//! A [`UdpForward`] binds the host address of one forwarded guest UDP
//! listener; its thread receives the clients' datagrams, makes each client
//! address a flow, and sends the datagrams to the guest. Flows idle for
//! [`UDP_IDLE`](crate::guestagent::protocol::UDP_IDLE) are closed; at most [`MAX_UDP_FLOWS`](crate::guestagent::protocol::MAX_UDP_FLOWS) per forward (the least
//! recently used one is closed first). Stopping a forward closes its socket
//! and its flows. The thread blocks in poll(2) (see [`relay`]): no timer
//! runs while no flow is open.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::link::GuestLink;
use crate::guestagent::protocol::HostMessage;
use crate::sync::MutexExt;

/// One forwarded guest UDP listener: a host socket and its thread.
pub struct UdpForward {
    host: SocketAddr,
    target: Arc<Mutex<SocketAddr>>,
    /// Dropping it stops the thread (see [`relay`]).
    waker: Option<UnixStream>,
    thread: Option<JoinHandle<()>>,
}

impl UdpForward {
    /// Binds `host` and relays its datagrams to the guest address `target`.
    pub fn start(
        link: Arc<GuestLink>,
        host: SocketAddr,
        target: SocketAddr,
    ) -> std::io::Result<UdpForward> {
        let socket = UdpSocket::bind(host)?;
        // The thread reads only when poll(2) says so, and a readable UDP
        // socket can still have nothing to read (a datagram with a bad
        // checksum is dropped at recv): a blocking recv would hang there.
        // Replies are sent on it too, and dropped when its buffer is full.
        socket.set_nonblocking(true)?;
        let host = socket.local_addr()?;
        let target = Arc::new(Mutex::new(target));
        let (waker, woken) = UnixStream::pair()?;
        let thread = {
            let target = target.clone();
            std::thread::Builder::new()
                .name(format!("udp {host}"))
                .spawn(move || relay(Arc::new(socket), &link, &target, &woken))?
        };
        Ok(UdpForward {
            host,
            target,
            waker: Some(waker),
            thread: Some(thread),
        })
    }

    /// The bound address (with the port, when 0 was asked for).
    pub fn host(&self) -> SocketAddr {
        self.host
    }

    pub fn target(&self) -> SocketAddr {
        *self.target.locked()
    }

    /// Sends later datagrams to another guest address (the listener they
    /// went to is gone, another one with the same host address is not).
    pub fn retarget(&self, target: SocketAddr) {
        *self.target.locked() = target;
    }

    /// Closes the host socket and the flows; returns once it is closed.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        drop(self.waker.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for UdpForward {
    fn drop(&mut self) {
        self.halt();
    }
}

/// `timeout` for poll(2), rounded up to its milliseconds: rounding down
/// would wake just before a deadline and spin until it.
fn poll_timeout(timeout: Duration) -> PollTimeout {
    PollTimeout::try_from(timeout.as_micros().div_ceil(1000)).unwrap_or(PollTimeout::MAX)
}

/// The thread of one forward. It blocks in poll(2) on the host socket and
/// on `stop`, one end of a socket pair whose other end [`UdpForward`]
/// drops to stop it: closing an end always wakes the other (POLLHUP), with
/// nothing to send that could be lost or taken for a client's datagram,
/// and the same poll's timeout is the next flow expiry. (Shutting the UDP
/// socket down would wake a blocked recv on Linux only, as a side effect.)
fn relay(socket: Arc<UdpSocket>, link: &GuestLink, target: &Mutex<SocketAddr>, stop: &UnixStream) {
    let mut clients: HashMap<SocketAddr, u64> = HashMap::new();
    let mut buf = vec![0u8; 64 * 1024];
    // When the stalest flow may be idle: a lower bound, since traffic only
    // moves a flow's expiry later. None without flows.
    let mut next_expire: Option<Instant> = None;
    let mut unsupported_logged = false;
    let name = socket.local_addr().map_or(String::new(), |a| a.to_string());
    loop {
        let timeout = next_expire.map_or(PollTimeout::NONE, |t| {
            poll_timeout(t.saturating_duration_since(Instant::now()))
        });
        let mut fds = [
            PollFd::new(socket.as_fd(), PollFlags::POLLIN),
            PollFd::new(stop.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => {
                crate::warn!("UDP forward {name} stops: poll failed: {e}");
                break;
            }
        }
        let woken = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
        if woken(&fds[1]) {
            break;
        }
        // Readable, or an error to collect (ECONNREFUSED left by a reply to
        // a client that is gone): recv takes either.
        if woken(&fds[0]) {
            match socket.recv_from(&mut buf) {
                Ok((n, client)) => {
                    let flow = match clients.get(&client) {
                        Some(f) if link.touch(*f) => *f,
                        _ => {
                            if clients.len() >= link.max_flows {
                                // Flows the guest closed make room first.
                                clients.retain(|_, f| link.last(*f).is_some());
                            }
                            if clients.len() >= link.max_flows
                                && let Some((&c, &f)) = clients
                                    .iter()
                                    .min_by_key(|(_, f)| link.last(**f).unwrap_or(Instant::now()))
                            {
                                clients.remove(&c);
                                link.close(f);
                            }
                            let f = link.open_route(&socket, client);
                            clients.insert(client, f);
                            next_expire.get_or_insert(Instant::now() + link.idle);
                            f
                        }
                    };
                    if !link.udp() && !unsupported_logged {
                        crate::debug!(
                            "the guest agent does not relay UDP (yet); dropping datagrams"
                        );
                        unsupported_logged = true;
                    }
                    let msg = HostMessage::Udp {
                        flow,
                        target: *target.locked(),
                        data: buf[..n].to_vec(),
                    };
                    if let Err(e) = link.send(&msg) {
                        crate::debug!("dropping a UDP datagram from {client}: {e}");
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
                Err(e) => crate::debug!("UDP {name}: {e}"),
            }
        }
        let now = Instant::now();
        if next_expire.is_some_and(|t| now >= t) {
            next_expire = None;
            clients.retain(|_, f| match link.last(*f) {
                // Closed by the guest.
                None => false,
                Some(last) if now.saturating_duration_since(last) >= link.idle => {
                    link.close(*f);
                    false
                }
                Some(last) => {
                    let t = last + link.idle;
                    next_expire = Some(next_expire.map_or(t, |n| n.min(t)));
                    true
                }
            });
        }
    }
    for (_, f) in clients {
        link.close(f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guestagent::protocol::{self, LineBuffer};
    use std::collections::VecDeque;
    use std::io::Read;

    /// The guest's end of the link: reads what the host sends.
    struct Guest {
        s: UnixStream,
        lines: LineBuffer,
        queue: VecDeque<String>,
    }

    impl Guest {
        fn next(&mut self) -> HostMessage {
            let mut buf = [0u8; 4096];
            let start = Instant::now();
            while self.queue.is_empty() {
                assert!(start.elapsed() < Duration::from_secs(5), "no message");
                match self.s.read(&mut buf) {
                    Ok(0) => panic!("closed"),
                    Ok(n) => self.queue.extend(self.lines.push(&buf[..n])),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => panic!("{e}"),
                }
            }
            protocol::decode_host(&self.queue.pop_front().unwrap()).unwrap()
        }

        /// The next message, which must be a datagram: (flow, target, data).
        fn datagram(&mut self) -> (u64, SocketAddr, Vec<u8>) {
            match self.next() {
                HostMessage::Udp { flow, target, data } => (flow, target, data),
                m => panic!("{m:?}"),
            }
        }
    }
    #[test]
    fn a_forward_makes_each_client_a_flow_and_expires_them() {
        let link = Arc::new(GuestLink::with_limits(Duration::from_millis(300), 8));
        let (a, s) = UnixStream::pair().unwrap();
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let mut guest = Guest {
            s,
            lines: LineBuffer::new(),
            queue: VecDeque::new(),
        };
        link.attach(a);
        link.set_udp(true);
        let target: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let fwd = UdpForward::start(link.clone(), "127.0.0.1:0".parse().unwrap(), target).unwrap();
        let host = fwd.host();
        let c1 = UdpSocket::bind("127.0.0.1:0").unwrap();
        let c2 = UdpSocket::bind("127.0.0.1:0").unwrap();
        for c in [&c1, &c2] {
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        }
        c1.send_to(b"a", host).unwrap();
        let (f1, t, data) = guest.datagram();
        assert_eq!((t, data.as_slice()), (target, &b"a"[..]));
        c2.send_to(b"b", host).unwrap();
        let (f2, _, data) = guest.datagram();
        assert_eq!(data, b"b");
        c1.send_to(b"c", host).unwrap();
        assert_eq!(guest.datagram(), (f1, target, b"c".to_vec()));
        assert_ne!(f1, f2);
        assert_eq!(link.flows(), 2);
        // Replies reach the right client, from the forwarded address.
        link.deliver(f2, b"to-2");
        link.deliver(f1, b"to-1");
        link.deliver(999, b"nobody");
        let mut buf = [0u8; 16];
        let (n, from) = c1.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&b"to-1"[..], host));
        let (n, _) = c2.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"to-2");
        // A new target applies to the next datagram.
        let other: SocketAddr = "[::1]:9".parse().unwrap();
        fwd.retarget(other);
        assert_eq!(fwd.target(), other);
        c1.send_to(b"d", host).unwrap();
        assert_eq!(guest.datagram(), (f1, other, b"d".to_vec()));
        // The guest closed flow 2: the client's next datagram opens another.
        link.closed_by_guest(f2);
        c2.send_to(b"e", host).unwrap();
        let (f3, _, _) = guest.datagram();
        assert!(f3 != f1 && f3 != f2);
        // Idle flows are closed, and the guest is told.
        let mut closed = Vec::new();
        while closed.len() < 2 {
            match guest.next() {
                HostMessage::UdpClose { flow } => closed.push(flow),
                m => panic!("{m:?}"),
            }
        }
        closed.sort();
        assert_eq!(closed, [f1, f3]);
        assert_eq!(link.flows(), 0);
        // Stopping closes the flows and the host socket (its port is free).
        c1.send_to(b"f", host).unwrap();
        let (f4, _, _) = guest.datagram();
        fwd.stop();
        assert_eq!(guest.next(), HostMessage::UdpClose { flow: f4 });
        assert_eq!(link.flows(), 0);
        UdpSocket::bind(host).unwrap();
    }

    #[test]
    fn the_least_recently_used_flow_makes_room() {
        let link = Arc::new(GuestLink::with_limits(Duration::from_secs(60), 2));
        let (a, s) = UnixStream::pair().unwrap();
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let mut guest = Guest {
            s,
            lines: LineBuffer::new(),
            queue: VecDeque::new(),
        };
        link.attach(a);
        let fwd = UdpForward::start(
            link.clone(),
            "127.0.0.1:0".parse().unwrap(),
            "127.0.0.1:9".parse().unwrap(),
        )
        .unwrap();
        let clients: Vec<UdpSocket> = (0..3)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let mut flows = Vec::new();
        for c in &clients[..2] {
            c.send_to(b"x", fwd.host()).unwrap();
            flows.push(guest.datagram().0);
            std::thread::sleep(Duration::from_millis(5));
        }
        // The first client is used again: the second is the oldest now.
        clients[0].send_to(b"y", fwd.host()).unwrap();
        assert_eq!(guest.datagram().0, flows[0]);
        clients[2].send_to(b"z", fwd.host()).unwrap();
        assert_eq!(guest.next(), HostMessage::UdpClose { flow: flows[1] });
        let (f3, _, data) = guest.datagram();
        assert_eq!(data, b"z");
        assert_eq!(link.flows(), 2);
        drop(fwd);
        let mut closed = vec![];
        for _ in 0..2 {
            match guest.next() {
                HostMessage::UdpClose { flow } => closed.push(flow),
                m => panic!("{m:?}"),
            }
        }
        closed.sort();
        assert_eq!(closed, [flows[0], f3]);
    }

    #[test]
    fn a_flow_the_guest_closed_makes_room_before_a_live_one() {
        let link = Arc::new(GuestLink::with_limits(Duration::from_secs(60), 2));
        let (a, s) = UnixStream::pair().unwrap();
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let mut guest = Guest {
            s,
            lines: LineBuffer::new(),
            queue: VecDeque::new(),
        };
        link.attach(a);
        let fwd = UdpForward::start(
            link.clone(),
            "127.0.0.1:0".parse().unwrap(),
            "127.0.0.1:9".parse().unwrap(),
        )
        .unwrap();
        let clients: Vec<UdpSocket> = (0..3)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let mut flows = Vec::new();
        for c in &clients[..2] {
            c.send_to(b"x", fwd.host()).unwrap();
            flows.push(guest.datagram().0);
        }
        // The newer flow is closed by the guest: the third client takes
        // its place, the older live flow stays.
        link.closed_by_guest(flows[1]);
        clients[2].send_to(b"z", fwd.host()).unwrap();
        let (f3, _, data) = guest.datagram();
        assert_eq!(data, b"z");
        clients[0].send_to(b"y", fwd.host()).unwrap();
        assert_eq!(
            guest.datagram(),
            (flows[0], "127.0.0.1:9".parse().unwrap(), b"y".to_vec())
        );
        assert_eq!(link.flows(), 2);
        assert_ne!(f3, flows[1]);
    }

    #[test]
    fn an_idle_forward_stops_at_once() {
        let link = Arc::new(GuestLink::default());
        let fwd = UdpForward::start(
            link,
            "127.0.0.1:0".parse().unwrap(),
            "127.0.0.1:9".parse().unwrap(),
        )
        .unwrap();
        let host = fwd.host();
        // No flow, so no timer: only the waker ends its poll.
        std::thread::sleep(Duration::from_millis(20));
        let start = Instant::now();
        fwd.stop();
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
        UdpSocket::bind(host).expect("the host socket is closed");
    }

    #[test]
    fn poll_timeouts_round_up() {
        assert_eq!(poll_timeout(Duration::ZERO), PollTimeout::ZERO);
        assert_eq!(
            poll_timeout(Duration::from_micros(1)),
            PollTimeout::from(1u8)
        );
        assert_eq!(
            poll_timeout(Duration::from_micros(1500)),
            PollTimeout::from(2u8)
        );
        assert_eq!(poll_timeout(Duration::MAX), PollTimeout::MAX);
    }

    #[test]
    fn a_host_address_in_use_is_an_error() {
        let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
        let link = Arc::new(GuestLink::default());
        let e = UdpForward::start(
            link,
            taken.local_addr().unwrap(),
            "127.0.0.1:9".parse().unwrap(),
        )
        .err()
        .unwrap();
        assert_eq!(e.kind(), ErrorKind::AddrInUse);
    }
}
