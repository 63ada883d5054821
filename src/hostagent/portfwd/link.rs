//! The host's side of the guest agent link: [`GuestLink`] is the one
//! writer to `ga.sock`: the guest agent connection (hello, time sync) and
//! every UDP forward send through it, one whole line at a time under its
//! lock. It also routes the guest's UDP replies (by flow number) to the
//! client they belong to.

use std::collections::HashMap;
use std::io::{ErrorKind, Write};
use std::net::{Shutdown, SocketAddr, UdpSocket};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::guestagent::protocol::{self, HostMessage, MAX_UDP_FLOWS, UDP_IDLE};
use crate::sync::MutexExt;

/// Where the guest's datagrams of one flow go.
struct Route {
    socket: Arc<UdpSocket>,
    client: SocketAddr,
    last: Instant,
}

/// The connection to the guest agent as the senders see it.
pub struct GuestLink {
    writer: Mutex<Option<UnixStream>>,
    udp: AtomicBool,
    routes: Mutex<HashMap<u64, Route>>,
    next_flow: AtomicU64,
    pub(super) idle: Duration,
    pub(super) max_flows: usize,
}

impl Default for GuestLink {
    fn default() -> Self {
        GuestLink::with_limits(UDP_IDLE, MAX_UDP_FLOWS)
    }
}

impl GuestLink {
    /// A link whose flows expire after `idle`, at most `max_flows` per
    /// forward (tests use small limits).
    pub fn with_limits(idle: Duration, max_flows: usize) -> GuestLink {
        GuestLink {
            writer: Mutex::new(None),
            udp: AtomicBool::new(false),
            routes: Mutex::new(HashMap::new()),
            next_flow: AtomicU64::new(1),
            idle,
            max_flows: max_flows.max(1),
        }
    }

    /// A new connection to the guest agent: messages go to `stream` (a
    /// clone of the one the connection reads).
    pub fn attach(&self, stream: UnixStream) {
        *self.writer.locked() = Some(stream);
    }

    /// The connection ended: messages are dropped until the next one.
    pub fn detach(&self) {
        *self.writer.locked() = None;
        self.udp.store(false, Ordering::Relaxed);
    }

    /// Shuts the connection down, so the reader's blocked read returns,
    /// and drops it: messages are dropped until the next `attach`.
    pub fn hang_up(&self) {
        if let Some(s) = self.writer.locked().take() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Writes one message. A failed write may have left half a line: the
    /// connection is shut down, the reader notices and reconnects.
    pub fn send(&self, msg: &HostMessage) -> std::io::Result<()> {
        let mut w = self.writer.locked();
        let Some(stream) = w.as_mut() else {
            return Err(std::io::Error::new(
                ErrorKind::NotConnected,
                "no connection to the guest agent",
            ));
        };
        let result = stream.write_all(&protocol::encode(msg));
        if result.is_err() {
            let _ = stream.shutdown(Shutdown::Both);
            *w = None;
        }
        result
    }

    /// Whether the guest agent relays UDP (its hello listed the feature).
    pub fn udp(&self) -> bool {
        self.udp.load(Ordering::Relaxed)
    }

    pub fn set_udp(&self, on: bool) {
        self.udp.store(on, Ordering::Relaxed);
    }

    /// A datagram from the guest for flow `flow`: to its client.
    pub fn deliver(&self, flow: u64, data: &[u8]) {
        let mut routes = self.routes.locked();
        let Some(r) = routes.get_mut(&flow) else {
            crate::debug!("dropping a UDP datagram of the closed flow {flow}");
            return;
        };
        r.last = Instant::now();
        if let Err(e) = r.socket.send_to(data, r.client) {
            crate::debug!("cannot send a UDP datagram to {}: {e}", r.client);
        }
    }

    /// The guest closed flow `flow`.
    pub fn closed_by_guest(&self, flow: u64) {
        self.routes.locked().remove(&flow);
    }

    /// Open flows (all forwards).
    pub fn flows(&self) -> usize {
        self.routes.locked().len()
    }

    pub(super) fn open_route(&self, socket: &Arc<UdpSocket>, client: SocketAddr) -> u64 {
        let flow = self.next_flow.fetch_add(1, Ordering::Relaxed);
        self.routes.locked().insert(
            flow,
            Route {
                socket: socket.clone(),
                client,
                last: Instant::now(),
            },
        );
        flow
    }

    /// Marks traffic on `flow`; false if the flow is closed.
    pub(super) fn touch(&self, flow: u64) -> bool {
        match self.routes.locked().get_mut(&flow) {
            Some(r) => {
                r.last = Instant::now();
                true
            }
            None => false,
        }
    }

    pub(super) fn last(&self, flow: u64) -> Option<Instant> {
        self.routes.locked().get(&flow).map(|r| r.last)
    }

    /// Closes `flow` on this side and tells the guest.
    pub(super) fn close(&self, flow: u64) {
        if self.routes.locked().remove(&flow).is_some() {
            let _ = self.send(&HostMessage::UdpClose { flow });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_without_a_connection_fail_and_a_broken_one_is_dropped() {
        let link = GuestLink::default();
        let close = |flow| HostMessage::UdpClose { flow };
        assert_eq!(
            link.send(&close(1)).unwrap_err().kind(),
            ErrorKind::NotConnected
        );
        let (a, b) = UnixStream::pair().unwrap();
        link.attach(a);
        link.send(&close(1)).unwrap();
        drop(b);
        assert!(link.send(&close(2)).is_err());
        assert_eq!(
            link.send(&close(3)).unwrap_err().kind(),
            ErrorKind::NotConnected
        );
    }
}
