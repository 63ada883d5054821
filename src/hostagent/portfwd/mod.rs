//! Port forwarding (reference §4.6): the [`Forwarder`] is fed with the
//! guest agent's reports of guest listeners and keeps one forward per host
//! address.
//!
//! - [`rules`]: the pure part, which guest listener goes to which host
//!   address (Lima's rule list, ignore rules, defaults);
//! - [`tcp`]: TCP and socket forwards, added to and removed from the SSH
//!   ControlMaster with `ssh -O forward|cancel`;
//! - [`udp`]: UDP forwards (an SSH local forward cannot carry UDP), relayed
//!   through the guest agent; this module decides which UDP listener gets
//!   which relay;
//! - [`link`]: the one writer to the guest agent, shared by its connection
//!   and the UDP relays, and the routes of UDP replies.

pub mod link;
pub mod rules;
pub mod tcp;
pub mod udp;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::guestagent::protocol::{Listener, Proto};
use crate::ssh::SshTarget;

use super::events::{EventWriter, ForwardProtocol, PortForwardEvent};
use crate::sync::MutexExt;
pub use link::GuestLink;
pub use rules::{Decision, HostAddr, Rule, decide, guest_target, rules};
use tcp::Active;
pub use udp::UdpForward;

/// One UDP forward and the guest listeners it serves.
struct UdpActive {
    fwd: UdpForward,
    listeners: BTreeSet<Listener>,
}

/// The dynamic forwarder: fed with the guest agent's reports.
pub struct Forwarder {
    rules: Vec<Rule>,
    target: SshTarget,
    events: Arc<Mutex<EventWriter>>,
    /// What the guest listens on, as last reported.
    known: BTreeSet<Listener>,
    /// By host address.
    active: BTreeMap<HostAddr, Active>,
    /// Host sockets created by static socket forwards (removed at the end).
    host_sockets: Vec<PathBuf>,
    tcp_disabled: bool,
    /// UDP forwards by host address.
    udp: BTreeMap<SocketAddr, UdpActive>,
    udp_disabled: bool,
    /// The writer to the guest agent, shared with its connection.
    link: Arc<GuestLink>,
    udp_unsupported_logged: bool,
}

impl Forwarder {
    pub fn new(rules: Vec<Rule>, target: SshTarget, events: Arc<Mutex<EventWriter>>) -> Forwarder {
        // Lima: leading ignore-everything rules switch a protocol off (only
        // the two SSH rules may come before them).
        let tcp_disabled = rules
            .iter()
            .skip(2)
            .take_while(|r| r.ignore)
            .any(|r| r.ignores_everything(Proto::Tcp));
        let udp_disabled = rules
            .iter()
            .skip(2)
            .take_while(|r| r.ignore)
            .any(|r| r.ignores_everything(Proto::Udp));
        if tcp_disabled {
            crate::info!("TCP port forwarding is disabled (except for SSH)");
        }
        if udp_disabled {
            crate::info!("UDP port forwarding is disabled");
        }
        Forwarder {
            rules,
            target,
            events,
            known: BTreeSet::new(),
            active: BTreeMap::new(),
            host_sockets: Vec::new(),
            tcp_disabled,
            udp: BTreeMap::new(),
            udp_disabled,
            link: Arc::new(GuestLink::default()),
            udp_unsupported_logged: false,
        }
    }

    /// The guest agent link the UDP forwards send through.
    pub fn link(&self) -> Arc<GuestLink> {
        self.link.clone()
    }

    fn emit(&self, ev: PortForwardEvent) {
        if let Err(e) = self.events.locked().emit_port_forward(ev) {
            crate::warn!("cannot write a portForward event: {e}");
        }
    }

    /// The guest's listeners as last reported.
    pub fn known(&self) -> &BTreeSet<Listener> {
        &self.known
    }

    /// Replaces the view of the guest with a full report.
    pub fn sync(&mut self, ports: impl IntoIterator<Item = Listener>) {
        let new: BTreeSet<Listener> = ports.into_iter().collect();
        let (added, removed) = crate::guestagent::protocol::diff(&self.known, &new);
        self.update(&added, &removed);
    }

    /// Applies reported changes.
    pub fn update(&mut self, added: &[Listener], removed: &[Listener]) {
        for l in removed {
            if self.known.remove(l) {
                self.removed(l);
            }
        }
        for l in added {
            if self.known.insert(*l) {
                self.added(l);
            }
        }
    }

    fn added(&mut self, l: &Listener) {
        match l.proto {
            Proto::Tcp => self.added_tcp(l),
            Proto::Udp => self.added_udp(l),
        }
    }

    fn added_udp(&mut self, l: &Listener) {
        if self.udp_disabled {
            return;
        }
        let host = match decide(&self.rules, l) {
            Decision::NotForwarded => {
                crate::debug!("Not forwarding UDP {}", l.addr());
                self.emit(PortForwardEvent::not_forwarding(
                    ForwardProtocol::Udp,
                    l.addr(),
                ));
                return;
            }
            // Static forwards are TCP (`ssh -L`).
            Decision::Forward { rule, .. } if self.rules[rule].static_ => return,
            Decision::Forward {
                host: HostAddr::Unix(p),
                ..
            } => {
                crate::debug!(
                    "Not forwarding UDP {} to the socket {p} (UDP goes to host ports only)",
                    l.addr()
                );
                return;
            }
            Decision::Forward {
                host: HostAddr::Tcp(a),
                ..
            } => a,
        };
        if !self.link.udp() {
            if !self.udp_unsupported_logged {
                crate::warn!(
                    "Not forwarding UDP {}: the guest agent does not relay UDP (rebuild it: hack/build-guestagent.sh)",
                    l.addr()
                );
                self.udp_unsupported_logged = true;
            }
            return;
        }
        if let Some(a) = self.udp.get_mut(&host) {
            a.listeners.insert(*l);
            return;
        }
        match UdpForward::start(self.link.clone(), host, guest_target(l)) {
            Ok(fwd) => {
                crate::info!("Forwarding UDP from {} to {host}", l.addr());
                self.emit(PortForwardEvent::forwarding(
                    ForwardProtocol::Udp,
                    l.addr(),
                    host.to_string(),
                ));
                self.udp.insert(
                    host,
                    UdpActive {
                        fwd,
                        listeners: [*l].into_iter().collect(),
                    },
                );
            }
            Err(e) => {
                log_failure(
                    Some(host.port()),
                    &format!("UDP {} to {host}: {e}", l.addr()),
                );
                let e = format!("cannot listen on UDP {host}: {e}");
                self.emit(PortForwardEvent::failed(
                    ForwardProtocol::Udp,
                    l.addr(),
                    host.to_string(),
                    e,
                ));
            }
        }
    }

    fn removed_udp(&mut self, l: &Listener) {
        let Some(host) = self
            .udp
            .iter()
            .find(|(_, a)| a.listeners.contains(l))
            .map(|(h, _)| *h)
        else {
            return;
        };
        let a = self.udp.get_mut(&host).unwrap();
        a.listeners.remove(l);
        if let Some(other) = a.listeners.iter().next() {
            // Another guest listener has the same host address (0.0.0.0:P
            // and [::]:P): it gets the datagrams now.
            a.fwd.retarget(guest_target(other));
            return;
        }
        let a = self.udp.remove(&host).unwrap();
        crate::info!("Stopping forwarding UDP from {} to {host}", l.addr());
        a.fwd.stop();
        self.emit(PortForwardEvent::stopping(
            ForwardProtocol::Udp,
            l.addr(),
            host.to_string(),
        ));
    }

    fn removed(&mut self, l: &Listener) {
        match l.proto {
            Proto::Tcp => self.removed_tcp(l),
            Proto::Udp => self.removed_udp(l),
        }
    }

    /// At shutdown: the UDP forwards' sockets are closed, then the TCP
    /// forwards are reported stopping.
    pub fn stop_all(&mut self) {
        for (host, a) in std::mem::take(&mut self.udp) {
            a.fwd.stop();
            if let Some(l) = a.listeners.iter().next() {
                self.emit(PortForwardEvent::stopping(
                    ForwardProtocol::Udp,
                    l.addr(),
                    host.to_string(),
                ));
            }
        }
        self.stop_all_tcp();
    }
}

/// Host ports whose forwarding failures are expected and only logged at
/// debug level, as Lima does: privileged ports, and ports the host's own
/// services usually hold (DNS 53, chrony 323, mDNS 5353, LLMNR 5355 — the
/// guest's systemd-resolved listens on 5355).
fn quiet_failure(host_port: u16) -> bool {
    host_port < 1024 || matches!(host_port, 5353 | 5355)
}

/// Logs a forward that could not be set up (`what`: protocol, addresses,
/// error) — at debug level for an expected failure on `host_port`.
fn log_failure(host_port: Option<u16>, what: &str) {
    if host_port.is_some_and(quiet_failure) {
        crate::debug!("failed to set up forwarding of {what}");
    } else {
        crate::warn!("failed to set up forwarding of {what}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::types::PortForward;
    use test_util::{filled, l};

    #[test]
    fn expected_bind_failures_are_quiet() {
        for port in [22, 53, 323, 1023, 5353, 5355] {
            assert!(quiet_failure(port), "{port}");
        }
        for port in [1024, 5354, 8080, 53530] {
            assert!(!quiet_failure(port), "{port}");
        }
    }

    fn test_forwarder(rules: Vec<Rule>, dir: &std::path::Path) -> Forwarder {
        let events = Arc::new(Mutex::new(
            EventWriter::open(&dir.join("ha.stdout.log")).unwrap(),
        ));
        let target = SshTarget::for_tests(dir);
        Forwarder::new(rules, target, events)
    }

    /// (type, protocol, guestAddr, hostAddr, error) of each event.
    fn pf_events(dir: &std::path::Path) -> Vec<(String, String, String, String, String)> {
        std::fs::read_to_string(dir.join("ha.stdout.log"))
            .unwrap()
            .lines()
            .map(|l| {
                let e: super::super::events::Event = serde_json::from_str(l).unwrap();
                let p = e.status.port_forward.unwrap();
                (p.kind, p.protocol, p.guest_addr, p.host_addr, p.error)
            })
            .collect()
    }

    fn free_udp_port() -> u16 {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[test]
    fn udp_listeners_get_a_host_socket_events_and_failures() {
        let d = tempfile::tempdir().unwrap();
        let (hp, taken) = (
            free_udp_port(),
            std::net::UdpSocket::bind("127.0.0.1:0").unwrap(),
        );
        let taken_port = taken.local_addr().unwrap().port();
        let r = rules(
            &[
                filled(PortForward {
                    guest_port: Some(7001),
                    host_port: Some(hp as i64),
                    proto: Some("udp".into()),
                    ..Default::default()
                }),
                filled(PortForward {
                    guest_port: Some(7002),
                    host_port: Some(taken_port as i64),
                    proto: Some("udp".into()),
                    ..Default::default()
                }),
                filled(PortForward {
                    guest_ip: Some("0.0.0.0".into()),
                    guest_ip_must_be_zero: Some(false),
                    guest_port_range: Some([2, 65535]),
                    host_port_range: Some([2, 65535]),
                    ignore: Some(true),
                    ..Default::default()
                }),
            ],
            60022,
        );
        let mut fw = test_forwarder(r, d.path());
        // Without the guest agent's `udp` feature nothing is forwarded.
        fw.sync([l(Proto::Udp, "0.0.0.0", 7001)]);
        assert!(fw.udp.is_empty());
        fw.sync([]);
        fw.link().set_udp(true);
        let host = format!("127.0.0.1:{hp}");
        // A dual-stack server: two listeners, one host socket.
        fw.sync([l(Proto::Udp, "0.0.0.0", 7001), l(Proto::Udp, "::", 7001)]);
        assert_eq!(fw.udp.len(), 1);
        assert!(std::net::UdpSocket::bind(&host).is_err());
        assert_eq!(
            fw.udp[&host.parse().unwrap()].fwd.target(),
            "127.0.0.1:7001".parse().unwrap()
        );
        // One of them goes: the other one gets the datagrams.
        fw.update(&[], &[l(Proto::Udp, "0.0.0.0", 7001)]);
        assert_eq!(
            fw.udp[&host.parse().unwrap()].fwd.target(),
            "[::1]:7001".parse().unwrap()
        );
        // A host port in use: reported, and the rest carries on.
        fw.update(
            &[
                l(Proto::Udp, "127.0.0.1", 7002),
                l(Proto::Udp, "127.0.0.1", 7003),
            ],
            &[],
        );
        fw.update(&[], &[l(Proto::Udp, "::", 7001)]);
        assert!(fw.udp.is_empty());
        std::net::UdpSocket::bind(&host).expect("the host socket is closed");
        fw.update(&[l(Proto::Udp, "::1", 7001)], &[]);
        fw.stop_all();
        assert!(fw.udp.is_empty());
        std::net::UdpSocket::bind(&host).expect("the host socket is closed");
        let s = |v: &str| v.to_string();
        assert_eq!(
            pf_events(d.path()),
            vec![
                (
                    s("forwarding"),
                    s("udp"),
                    s("0.0.0.0:7001"),
                    host.clone(),
                    s("")
                ),
                (
                    s("failed"),
                    s("udp"),
                    s("127.0.0.1:7002"),
                    format!("127.0.0.1:{taken_port}"),
                    format!(
                        "cannot listen on UDP 127.0.0.1:{taken_port}: Address already in use (os error 98)"
                    )
                ),
                (
                    s("not-forwarding"),
                    s("udp"),
                    s("127.0.0.1:7003"),
                    s(""),
                    s("")
                ),
                (s("stopping"), s("udp"), s("[::]:7001"), host.clone(), s("")),
                (
                    s("forwarding"),
                    s("udp"),
                    s("[::1]:7001"),
                    host.clone(),
                    s("")
                ),
                (
                    s("stopping"),
                    s("udp"),
                    s("[::1]:7001"),
                    host.clone(),
                    s("")
                ),
            ]
        );
    }

    #[test]
    fn disabling_udp_with_a_leading_ignore_everything_rule() {
        let d = tempfile::tempdir().unwrap();
        let r = rules(
            &[filled(PortForward {
                guest_ip: Some("0.0.0.0".into()),
                proto: Some("udp".into()),
                ignore: Some(true),
                ..Default::default()
            })],
            60022,
        );
        let mut fw = test_forwarder(r, d.path());
        fw.link().set_udp(true);
        assert!(fw.udp_disabled && !fw.tcp_disabled);
        fw.sync([l(Proto::Udp, "127.0.0.1", free_udp_port())]);
        assert!(fw.udp.is_empty());
        assert_eq!(
            std::fs::read_to_string(d.path().join("ha.stdout.log")).unwrap(),
            ""
        );
    }
}

/// What the tests of every part use: a listener, a filled rule.
#[cfg(test)]
mod test_util {
    use crate::guestagent::protocol::{Listener, Proto};
    use crate::spec::types::PortForward;

    pub fn l(proto: Proto, ip: &str, port: u16) -> Listener {
        Listener::new(proto, ip.parse().unwrap(), port)
    }

    pub fn filled(pf: PortForward) -> PortForward {
        let host = crate::spec::host::HostInfo::for_tests();
        let ctx = crate::spec::defaults::FillContext {
            host: &host,
            instance_name: "vm".into(),
            instance_dir: "/lh/vm".into(),
            lima_home: "/lh".into(),
        };
        let mut pf = pf;
        crate::spec::defaults::fill_port_forward(&mut pf, &ctx);
        pf
    }
}
