//! The pure part of port forwarding (reference §4.6): Lima's rule list
//! (SSH ports ignored, the instance's `portForwards` in order, then the
//! catch-all 127.0.0.1 → 127.0.0.1) and which host address a guest
//! listener is forwarded to. No processes, no sockets.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::guestagent::protocol::{Listener, Proto};
use crate::spec::types::PortForward;

/// `proto` of a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleProto {
    Any,
    Tcp,
    Udp,
}

impl RuleProto {
    fn matches(self, p: Proto) -> bool {
        matches!(
            (self, p),
            (RuleProto::Any, _) | (RuleProto::Tcp, Proto::Tcp) | (RuleProto::Udp, Proto::Udp)
        )
    }
}

/// One entry of the effective rule list (a filled `portForwards[]` entry).
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub guest_ip: IpAddr,
    pub guest_ip_must_be_zero: bool,
    pub guest_port_range: (u16, u16),
    pub guest_socket: Option<String>,
    pub host_ip: IpAddr,
    pub host_port_range: (u16, u16),
    pub host_socket: Option<String>,
    pub proto: RuleProto,
    pub ignore: bool,
    pub reverse: bool,
    pub static_: bool,
}

impl Rule {
    fn ignore_port(port: u16) -> Rule {
        Rule {
            guest_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            guest_ip_must_be_zero: false,
            guest_port_range: (port, port),
            guest_socket: None,
            host_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            host_port_range: (port, port),
            host_socket: None,
            proto: RuleProto::Any,
            ignore: true,
            reverse: false,
            static_: false,
        }
    }

    /// The default catch-all: guest 127.0.0.1 → host 127.0.0.1, any port.
    pub fn catch_all() -> Rule {
        Rule {
            guest_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            guest_ip_must_be_zero: false,
            guest_port_range: (1, 65535),
            guest_socket: None,
            host_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            host_port_range: (1, 65535),
            host_socket: None,
            proto: RuleProto::Any,
            ignore: false,
            reverse: false,
            static_: false,
        }
    }

    /// From a filled, validated entry; `None` (with the reason) if it is not.
    pub fn from_spec(pf: &PortForward) -> Result<Rule, String> {
        let ip = |s: &Option<String>, what: &str| -> Result<IpAddr, String> {
            s.as_deref()
                .unwrap_or("127.0.0.1")
                .parse()
                .map_err(|_| format!("{what} {s:?} is not an IP address"))
        };
        let range = |r: Option<[i64; 2]>, what: &str| -> Result<(u16, u16), String> {
            let [a, b] = r.unwrap_or([1, 65535]);
            match (u16::try_from(a), u16::try_from(b)) {
                (Ok(a), Ok(b)) if a <= b => Ok((a, b)),
                _ => Err(format!("{what} [{a}, {b}] is not a port range")),
            }
        };
        let nonempty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
        Ok(Rule {
            guest_ip: ip(&pf.guest_ip, "guestIP")?,
            guest_ip_must_be_zero: pf.guest_ip_must_be_zero == Some(true),
            guest_port_range: range(pf.guest_port_range, "guestPortRange")?,
            guest_socket: nonempty(&pf.guest_socket),
            host_ip: ip(&pf.host_ip, "hostIP")?,
            host_port_range: range(pf.host_port_range, "hostPortRange")?,
            host_socket: nonempty(&pf.host_socket),
            proto: match pf.proto.as_deref().unwrap_or("any") {
                "tcp" => RuleProto::Tcp,
                "udp" => RuleProto::Udp,
                _ => RuleProto::Any,
            },
            ignore: pf.ignore == Some(true),
            reverse: pf.reverse == Some(true),
            static_: pf.static_ == Some(true),
        })
    }

    /// Covers every guest port with an `ignore` rule (disables a protocol).
    pub(super) fn ignores_everything(&self, p: Proto) -> bool {
        self.ignore
            && self.guest_socket.is_none()
            && self.guest_port_range == (1, 65535)
            && self.guest_ip.is_unspecified()
            && self.proto.matches(p)
    }
}

/// The effective rule list: SSH ports ignored, the instance's rules, the
/// catch-all. Invalid entries are skipped with a warning.
pub fn rules(port_forwards: &[PortForward], ssh_local_port: u16) -> Vec<Rule> {
    let mut v = vec![Rule::ignore_port(22), Rule::ignore_port(ssh_local_port)];
    for (i, pf) in port_forwards.iter().enumerate() {
        match Rule::from_spec(pf) {
            Ok(r) => v.push(r),
            Err(e) => crate::warn!("ignoring portForwards[{i}]: {e}"),
        }
    }
    v.push(Rule::catch_all());
    v
}

/// Where a host side listens.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum HostAddr {
    Tcp(SocketAddr),
    Unix(String),
}

impl HostAddr {
    /// The `-L` listen part: `ip:port`, `[ip6]:port` or a socket path.
    pub(super) fn ssh_spec(&self) -> String {
        match self {
            HostAddr::Tcp(a) => a.to_string(),
            HostAddr::Unix(p) => p.clone(),
        }
    }
}

impl std::fmt::Display for HostAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.ssh_spec())
    }
}

/// What the rules say about a guest listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Forward to this host address (by rule `rule` of the list).
    Forward { host: HostAddr, rule: usize },
    /// Not forwarded (an `ignore` rule, or no rule matched).
    NotForwarded,
}

/// Lima's `forwardingAddresses`: the first rule that matches the listener's
/// protocol, port and address decides.
pub fn decide(rules: &[Rule], l: &Listener) -> Decision {
    for (i, r) in rules.iter().enumerate() {
        if r.guest_socket.is_some() || !r.proto.matches(l.proto) {
            continue;
        }
        if l.port < r.guest_port_range.0 || l.port > r.guest_port_range.1 {
            continue;
        }
        let ip_matches = l.ip.is_unspecified()
            || l.ip == r.guest_ip
            || (l.ip == IpAddr::V6(Ipv6Addr::LOCALHOST)
                && r.guest_ip == IpAddr::V4(Ipv4Addr::LOCALHOST))
            || (r.guest_ip.is_unspecified() && !r.guest_ip_must_be_zero);
        if !ip_matches {
            continue;
        }
        if r.ignore {
            // A wildcard listener is reachable on other addresses too: an
            // ignore rule for one specific address does not hide it.
            if l.ip.is_unspecified() && !r.guest_ip.is_unspecified() {
                continue;
            }
            return Decision::NotForwarded;
        }
        let host = match &r.host_socket {
            Some(s) => HostAddr::Unix(s.clone()),
            None => {
                let port = (l.port as i64 + r.host_port_range.0 as i64
                    - r.guest_port_range.0 as i64)
                    .clamp(1, 65535) as u16;
                HostAddr::Tcp(SocketAddr::new(r.host_ip, port))
            }
        };
        return Decision::Forward { host, rule: i };
    }
    Decision::NotForwarded
}

/// The address sshd in the guest connects to: a wildcard listener is
/// reached on the loopback address of its family.
pub fn guest_target(l: &Listener) -> SocketAddr {
    let ip = match l.ip {
        IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, l.port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hostagent::portfwd::test_util::{filled, l};

    fn tcp(host: &str) -> Decision {
        Decision::Forward {
            host: HostAddr::Tcp(host.parse().unwrap()),
            rule: usize::MAX,
        }
    }

    /// Decision with the rule index erased (tests compare addresses).
    fn d(rules: &[Rule], l: &Listener) -> Decision {
        match decide(rules, l) {
            Decision::Forward { host, .. } => Decision::Forward {
                host,
                rule: usize::MAX,
            },
            n => n,
        }
    }

    #[test]
    fn defaults_forward_loopback_listeners_to_the_same_port() {
        let r = rules(&[], 60022);
        assert_eq!(
            d(&r, &l(Proto::Tcp, "127.0.0.1", 8080)),
            tcp("127.0.0.1:8080")
        );
        // Wildcards match any rule address; ::1 matches a 127.0.0.1 rule.
        assert_eq!(
            d(&r, &l(Proto::Tcp, "0.0.0.0", 3000)),
            tcp("127.0.0.1:3000")
        );
        assert_eq!(d(&r, &l(Proto::Tcp, "::", 3001)), tcp("127.0.0.1:3001"));
        assert_eq!(d(&r, &l(Proto::Tcp, "::1", 3002)), tcp("127.0.0.1:3002"));
        assert_eq!(d(&r, &l(Proto::Udp, "127.0.0.1", 53)), tcp("127.0.0.1:53"));
        // Other specific addresses are not forwarded by default.
        assert_eq!(
            d(&r, &l(Proto::Tcp, "192.168.5.15", 8080)),
            Decision::NotForwarded
        );
    }

    #[test]
    fn ssh_ports_are_never_forwarded() {
        let r = rules(&[], 60022);
        assert_eq!(d(&r, &l(Proto::Tcp, "0.0.0.0", 22)), Decision::NotForwarded);
        assert_eq!(
            d(&r, &l(Proto::Tcp, "127.0.0.1", 22)),
            Decision::NotForwarded
        );
        assert_eq!(d(&r, &l(Proto::Tcp, "::", 60022)), Decision::NotForwarded);
        // Even when a user rule would take port 22 (validation refuses it).
        let r = rules(
            &[filled(PortForward {
                guest_port: Some(22),
                host_port: Some(2222),
                ..Default::default()
            })],
            60022,
        );
        assert_eq!(
            d(&r, &l(Proto::Tcp, "127.0.0.1", 22)),
            Decision::NotForwarded
        );
    }

    #[test]
    fn instance_rules_come_first_in_order() {
        let r = rules(
            &[
                filled(PortForward {
                    guest_port: Some(8081),
                    ignore: Some(true),
                    ..Default::default()
                }),
                filled(PortForward {
                    guest_port: Some(8082),
                    host_port: Some(18082),
                    ..Default::default()
                }),
                filled(PortForward {
                    guest_port_range: Some([9000, 9009]),
                    host_port_range: Some([19000, 19009]),
                    host_ip: Some("0.0.0.0".into()),
                    ..Default::default()
                }),
                // Shadowed by the rule before it.
                filled(PortForward {
                    guest_port: Some(9005),
                    host_port: Some(5),
                    ..Default::default()
                }),
            ],
            60022,
        );
        assert_eq!(
            d(&r, &l(Proto::Tcp, "127.0.0.1", 8081)),
            Decision::NotForwarded
        );
        assert_eq!(
            d(&r, &l(Proto::Tcp, "127.0.0.1", 8082)),
            tcp("127.0.0.1:18082")
        );
        assert_eq!(
            d(&r, &l(Proto::Tcp, "127.0.0.1", 9005)),
            tcp("0.0.0.0:19005")
        );
        assert_eq!(
            d(&r, &l(Proto::Tcp, "127.0.0.1", 9010)),
            tcp("127.0.0.1:9010")
        );
        // The rule index points at the matching entry (2 SSH rules first).
        assert!(matches!(
            decide(&r, &l(Proto::Tcp, "127.0.0.1", 8082)),
            Decision::Forward { rule: 3, .. }
        ));
    }

    #[test]
    fn an_ignore_rule_for_one_address_does_not_hide_a_wildcard_listener() {
        let r = rules(
            &[filled(PortForward {
                guest_port: Some(8081),
                ignore: Some(true),
                ..Default::default()
            })],
            60022,
        );
        // guestIP 127.0.0.1 ignore: a listener on 0.0.0.0 falls through to
        // the catch-all.
        assert_eq!(
            d(&r, &l(Proto::Tcp, "0.0.0.0", 8081)),
            tcp("127.0.0.1:8081")
        );
        let r = rules(
            &[filled(PortForward {
                guest_ip: Some("0.0.0.0".into()),
                guest_port: Some(8081),
                ignore: Some(true),
                ..Default::default()
            })],
            60022,
        );
        assert_eq!(
            d(&r, &l(Proto::Tcp, "0.0.0.0", 8081)),
            Decision::NotForwarded
        );
        // guestIP 0.0.0.0 defaults guestIPMustBeZero to true: the rule only
        // matches wildcard listeners, a loopback one reaches the catch-all.
        assert_eq!(
            d(&r, &l(Proto::Tcp, "127.0.0.1", 8081)),
            tcp("127.0.0.1:8081")
        );
        let r = rules(
            &[filled(PortForward {
                guest_ip: Some("0.0.0.0".into()),
                guest_ip_must_be_zero: Some(false),
                guest_port: Some(8081),
                ignore: Some(true),
                ..Default::default()
            })],
            60022,
        );
        assert_eq!(
            d(&r, &l(Proto::Tcp, "127.0.0.1", 8081)),
            Decision::NotForwarded
        );
    }

    #[test]
    fn guest_ip_must_be_zero_needs_a_wildcard_listener() {
        let zero = filled(PortForward {
            guest_ip: Some("0.0.0.0".into()),
            guest_port: Some(8080),
            host_port: Some(18080),
            ..Default::default()
        });
        assert_eq!(zero.guest_ip_must_be_zero, Some(true));
        let r = rules(std::slice::from_ref(&zero), 60022);
        assert_eq!(
            d(&r, &l(Proto::Tcp, "0.0.0.0", 8080)),
            tcp("127.0.0.1:18080")
        );
        // A loopback listener falls through to the catch-all instead.
        assert_eq!(
            d(&r, &l(Proto::Tcp, "127.0.0.1", 8080)),
            tcp("127.0.0.1:8080")
        );
        let any = filled(PortForward {
            guest_ip: Some("0.0.0.0".into()),
            guest_ip_must_be_zero: Some(false),
            guest_port: Some(8080),
            host_port: Some(18080),
            ..Default::default()
        });
        let r = rules(&[any], 60022);
        assert_eq!(
            d(&r, &l(Proto::Tcp, "127.0.0.1", 8080)),
            tcp("127.0.0.1:18080")
        );
        assert_eq!(
            d(&r, &l(Proto::Tcp, "192.168.5.15", 8080)),
            tcp("127.0.0.1:18080")
        );
    }

    #[test]
    fn proto_selects_tcp_or_udp() {
        let r = rules(
            &[
                filled(PortForward {
                    guest_port: Some(53),
                    proto: Some("udp".into()),
                    ignore: Some(true),
                    ..Default::default()
                }),
                filled(PortForward {
                    guest_port: Some(53),
                    host_port: Some(5353),
                    proto: Some("tcp".into()),
                    ..Default::default()
                }),
            ],
            60022,
        );
        assert_eq!(
            d(&r, &l(Proto::Udp, "127.0.0.1", 53)),
            Decision::NotForwarded
        );
        assert_eq!(
            d(&r, &l(Proto::Tcp, "127.0.0.1", 53)),
            tcp("127.0.0.1:5353")
        );
    }

    #[test]
    fn host_sockets_and_socket_rules() {
        let r = rules(
            &[
                filled(PortForward {
                    guest_socket: Some("/run/docker.sock".into()),
                    host_socket: Some("/lh/vm/sock/docker.sock".into()),
                    ..Default::default()
                }),
                filled(PortForward {
                    guest_port: Some(5432),
                    host_socket: Some("/tmp/pg.sock".into()),
                    ..Default::default()
                }),
            ],
            60022,
        );
        // Socket rules never match a TCP listener.
        assert_eq!(
            decide(&r, &l(Proto::Tcp, "127.0.0.1", 5432)),
            Decision::Forward {
                host: HostAddr::Unix("/tmp/pg.sock".into()),
                rule: 3
            }
        );
    }

    #[test]
    fn wildcard_listeners_are_reached_on_loopback() {
        assert_eq!(
            guest_target(&l(Proto::Tcp, "0.0.0.0", 80)).to_string(),
            "127.0.0.1:80"
        );
        assert_eq!(
            guest_target(&l(Proto::Tcp, "::", 80)).to_string(),
            "[::1]:80"
        );
        assert_eq!(
            guest_target(&l(Proto::Tcp, "192.168.5.15", 80)).to_string(),
            "192.168.5.15:80"
        );
    }

    #[test]
    fn invalid_entries_are_skipped() {
        let r = rules(
            &[PortForward {
                guest_ip: Some("nope".into()),
                ..Default::default()
            }],
            60022,
        );
        assert_eq!(r.len(), 3);
    }
}
