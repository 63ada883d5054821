//! Port forwarding (reference §4.6): which guest listeners are forwarded to
//! which host addresses (pure rule matching), and the forwards themselves:
//! TCP forwards are added to and removed from the SSH ControlMaster with
//! `ssh -O forward|cancel -L host:guest`; UDP forwards (an SSH local forward
//! cannot carry UDP) are relayed through the guest agent ([`super::udpfwd`]).
//!
//! The rule list is Lima's: SSH ports ignored, the instance's
//! `portForwards` in order, then the catch-all 127.0.0.1 → 127.0.0.1.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::guestagent::protocol::{Listener, Proto};
use crate::spec::types::PortForward;
use crate::ssh::SshTarget;

use super::events::{EventWriter, PortForwardEvent};
use super::udpfwd::{GuestLink, UdpForward};

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
    fn ignores_everything(&self, p: Proto) -> bool {
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
    fn ssh_spec(&self) -> String {
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

/// `ssh -O <verb> -L|-R <spec>` over the instance's ControlMaster.
fn ssh_control(target: &SshTarget, verb: &str, flag: &str, spec: &str) -> Result<(), String> {
    let mut c = target.command(true);
    c.args(["-O", verb, flag, spec])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    match crate::ssh::run_with_input(c, b"", Duration::from_secs(20)) {
        Ok((Some(0), _, _)) => Ok(()),
        Ok((code, _, err)) => Err(format!(
            "`ssh -O {verb} {flag} {spec}` failed (exit {}): {}",
            code.map_or("killed".into(), |c| c.to_string()),
            err.trim()
        )),
        Err(e) => Err(format!("cannot run ssh: {e}")),
    }
}

/// One forward held by the ControlMaster, and the guest listeners it serves
/// (a dual-stack server shows up as 0.0.0.0:P and [::]:P; one forward).
#[derive(Debug)]
struct Active {
    spec: String,
    guest: String,
    listeners: BTreeSet<Listener>,
}

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

    fn emit(&self, kind: &str, protocol: &str, guest: String, host: String, error: String) {
        let ev = PortForwardEvent {
            kind: kind.into(),
            protocol: protocol.into(),
            guest_addr: guest,
            host_addr: host,
            error,
        };
        if let Ok(mut w) = self.events.lock()
            && let Err(e) = w.emit_with(|s| s.port_forward = Some(ev))
        {
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
        if l.proto == Proto::Udp {
            self.added_udp(l);
            return;
        }
        if self.tcp_disabled {
            return;
        }
        match decide(&self.rules, l) {
            Decision::NotForwarded => {
                crate::debug!("Not forwarding TCP {}", l.addr());
                self.emit(
                    "not-forwarding",
                    "tcp",
                    l.addr(),
                    String::new(),
                    String::new(),
                );
            }
            Decision::Forward { rule, .. } if self.rules[rule].static_ => {
                // Forwarded once at start-up, whether or not anything listens.
            }
            Decision::Forward { host, .. } => {
                if let Some(a) = self.active.get_mut(&host) {
                    a.listeners.insert(*l);
                    return;
                }
                let guest = guest_target(l).to_string();
                let spec = format!("{}:{guest}", host.ssh_spec());
                if let HostAddr::Unix(p) = &host {
                    prepare_host_socket(p);
                }
                match ssh_control(&self.target, "forward", "-L", &spec) {
                    Ok(()) => {
                        crate::info!("Forwarding TCP from {} to {host}", l.addr());
                        self.emit(
                            "forwarding",
                            "tcp",
                            l.addr(),
                            host.to_string(),
                            String::new(),
                        );
                        self.active.insert(
                            host,
                            Active {
                                spec,
                                guest,
                                listeners: [*l].into_iter().collect(),
                            },
                        );
                    }
                    Err(e) => {
                        let port = match &host {
                            HostAddr::Tcp(a) => Some(a.port()),
                            HostAddr::Unix(_) => None,
                        };
                        log_failure(port, &format!("TCP {} to {host}: {e}", l.addr()));
                        self.emit("failed", "tcp", l.addr(), host.to_string(), e);
                    }
                }
            }
        }
    }

    fn added_udp(&mut self, l: &Listener) {
        if self.udp_disabled {
            return;
        }
        let host = match decide(&self.rules, l) {
            Decision::NotForwarded => {
                crate::debug!("Not forwarding UDP {}", l.addr());
                self.emit(
                    "not-forwarding",
                    "udp",
                    l.addr(),
                    String::new(),
                    String::new(),
                );
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
                self.emit(
                    "forwarding",
                    "udp",
                    l.addr(),
                    host.to_string(),
                    String::new(),
                );
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
                self.emit("failed", "udp", l.addr(), host.to_string(), e);
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
        self.emit("stopping", "udp", l.addr(), host.to_string(), String::new());
    }

    fn removed(&mut self, l: &Listener) {
        if l.proto == Proto::Udp {
            self.removed_udp(l);
            return;
        }
        let Some(host) = self
            .active
            .iter()
            .find(|(_, a)| a.listeners.contains(l))
            .map(|(h, _)| h.clone())
        else {
            return;
        };
        let a = self.active.get_mut(&host).unwrap();
        a.listeners.remove(l);
        if !a.listeners.is_empty() {
            return;
        }
        let a = self.active.remove(&host).unwrap();
        crate::info!("Stopping forwarding TCP from {} to {host}", l.addr());
        if let Err(e) = ssh_control(&self.target, "cancel", "-L", &a.spec) {
            crate::warn!("failed to stop forwarding {}: {e}", a.guest);
        }
        if let HostAddr::Unix(p) = &host {
            let _ = std::fs::remove_file(p);
        }
        self.emit("stopping", "tcp", l.addr(), host.to_string(), String::new());
    }

    /// Forwards that need no guest agent: `guestSocket` rules and
    /// `static: true` rules. Returns the errors.
    pub fn start_static(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        for r in self.rules.clone() {
            if r.ignore {
                continue;
            }
            if let Some(gs) = &r.guest_socket {
                let host = match &r.host_socket {
                    Some(p) => HostAddr::Unix(p.clone()),
                    None => HostAddr::Tcp(SocketAddr::new(r.host_ip, r.host_port_range.0)),
                };
                let result = if r.reverse {
                    // The guest socket is recreated by sshd.
                    let _ = self.target.run_script(
                        true,
                        &format!("rm -f {}\n", crate::ssh::shell_quote(gs)),
                        Duration::from_secs(30),
                    );
                    ssh_control(&self.target, "forward", "-R", &format!("{gs}:{host}"))
                } else {
                    if let HostAddr::Unix(p) = &host {
                        prepare_host_socket(p);
                        self.host_sockets.push(PathBuf::from(p));
                    }
                    ssh_control(&self.target, "forward", "-L", &format!("{host}:{gs}"))
                };
                let (guest, hosts) = (gs.clone(), host.to_string());
                match result {
                    Ok(()) => {
                        if r.reverse {
                            crate::info!("Forwarding {hosts:?} (host) to {guest:?} (guest)");
                        } else {
                            crate::info!("Forwarding {guest:?} (guest) to {hosts:?} (host)");
                        }
                        self.emit("forwarding", "unix", guest, hosts, String::new());
                    }
                    Err(e) => {
                        self.emit("failed", "unix", guest, hosts, e.clone());
                        errors.push(format!("failed to forward {gs:?}: {e}"));
                    }
                }
            } else if r.static_ {
                let count = (r.guest_port_range.1 - r.guest_port_range.0) as u32 + 1;
                for k in 0..count.min(1024) {
                    let gp = r.guest_port_range.0 + k as u16;
                    let l = Listener::new(Proto::Tcp, r.guest_ip, gp);
                    let host = match &r.host_socket {
                        Some(p) => HostAddr::Unix(p.clone()),
                        None => HostAddr::Tcp(SocketAddr::new(
                            r.host_ip,
                            r.host_port_range.0 + k as u16,
                        )),
                    };
                    let spec = format!("{host}:{}", guest_target(&l));
                    if let HostAddr::Unix(p) = &host {
                        prepare_host_socket(p);
                        self.host_sockets.push(PathBuf::from(p));
                    }
                    match ssh_control(&self.target, "forward", "-L", &spec) {
                        Ok(()) => {
                            crate::info!("Forwarding TCP from {} to {host} (static)", l.addr());
                            self.emit(
                                "forwarding",
                                "tcp",
                                l.addr(),
                                host.to_string(),
                                String::new(),
                            );
                        }
                        Err(e) => {
                            self.emit("failed", "tcp", l.addr(), host.to_string(), e.clone());
                            errors.push(format!("failed to forward {} statically: {e}", l.addr()));
                        }
                    }
                }
            }
        }
        errors
    }

    /// At shutdown: the UDP forwards' sockets are closed; the TCP forwards
    /// die with the ControlMaster, so only their events and host sockets
    /// are left to handle.
    pub fn stop_all(&mut self) {
        for (host, a) in std::mem::take(&mut self.udp) {
            a.fwd.stop();
            if let Some(l) = a.listeners.iter().next() {
                self.emit("stopping", "udp", l.addr(), host.to_string(), String::new());
            }
        }
        for (host, a) in std::mem::take(&mut self.active) {
            if let Some(l) = a.listeners.iter().next() {
                self.emit("stopping", "tcp", l.addr(), host.to_string(), String::new());
            }
            if let HostAddr::Unix(p) = &host {
                let _ = std::fs::remove_file(p);
            }
        }
        for p in std::mem::take(&mut self.host_sockets) {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A stale socket file makes the master's bind fail; its directory may not
/// exist yet (`<inst>/sock/`).
fn prepare_host_socket(path: &str) {
    use std::os::unix::fs::DirBuilderExt;
    let p = std::path::Path::new(path);
    let _ = std::fs::remove_file(p);
    if let Some(dir) = p.parent() {
        let _ = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(dir);
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

    fn l(proto: Proto, ip: &str, port: u16) -> Listener {
        Listener::new(proto, ip.parse().unwrap(), port)
    }

    fn filled(pf: PortForward) -> PortForward {
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
    fn expected_bind_failures_are_quiet() {
        for port in [22, 53, 323, 1023, 5353, 5355] {
            assert!(quiet_failure(port), "{port}");
        }
        for port in [1024, 5354, 8080, 53530] {
            assert!(!quiet_failure(port), "{port}");
        }
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
    fn disabling_tcp_with_a_leading_ignore_everything_rule() {
        let r = rules(
            &[filled(PortForward {
                guest_ip: Some("0.0.0.0".into()),
                proto: Some("tcp".into()),
                ignore: Some(true),
                ..Default::default()
            })],
            60022,
        );
        assert!(r[2].ignores_everything(Proto::Tcp));
        assert!(!r[2].ignores_everything(Proto::Udp));
        // The forwarder then forwards no TCP port at all, whatever the
        // rules would say, and reports nothing.
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("ha.stdout.log");
        let events = Arc::new(Mutex::new(EventWriter::open(&log).unwrap()));
        let target = crate::ssh::SshTarget::for_tests(d.path());
        let mut fw = Forwarder::new(r, target, events);
        assert!(fw.tcp_disabled);
        fw.sync([
            l(Proto::Tcp, "127.0.0.1", 8080),
            l(Proto::Udp, "127.0.0.1", 53),
        ]);
        assert_eq!(fw.known().len(), 2);
        assert!(fw.active.is_empty());
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "");
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
