//! TCP forwards (and `guestSocket` forwards) through the instance's SSH
//! ControlMaster: `ssh -O forward|cancel -L host:guest` (`-R` for reverse
//! socket forwards). The TCP half of [`Forwarder`].

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use crate::guestagent::protocol::{Listener, Proto};
use crate::ssh::SshTarget;

use super::super::events::{ForwardProtocol, PortForwardEvent};
use super::rules::{Decision, HostAddr, decide, guest_target};
use super::{Forwarder, log_failure};

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
pub(super) struct Active {
    spec: String,
    guest: String,
    listeners: BTreeSet<Listener>,
}

impl Forwarder {
    pub(super) fn added_tcp(&mut self, l: &Listener) {
        if self.tcp_disabled {
            return;
        }
        match decide(&self.rules, l) {
            Decision::NotForwarded => {
                crate::debug!("Not forwarding TCP {}", l.addr());
                self.emit(PortForwardEvent::not_forwarding(
                    ForwardProtocol::Tcp,
                    l.addr(),
                ));
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
                        self.emit(PortForwardEvent::forwarding(
                            ForwardProtocol::Tcp,
                            l.addr(),
                            host.to_string(),
                        ));
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
                        self.emit(PortForwardEvent::failed(
                            ForwardProtocol::Tcp,
                            l.addr(),
                            host.to_string(),
                            e,
                        ));
                    }
                }
            }
        }
    }

    pub(super) fn removed_tcp(&mut self, l: &Listener) {
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
        self.emit(PortForwardEvent::stopping(
            ForwardProtocol::Tcp,
            l.addr(),
            host.to_string(),
        ));
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
                        self.emit(PortForwardEvent::forwarding(
                            ForwardProtocol::Unix,
                            guest,
                            hosts,
                        ));
                    }
                    Err(e) => {
                        self.emit(PortForwardEvent::failed(
                            ForwardProtocol::Unix,
                            guest,
                            hosts,
                            e.clone(),
                        ));
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
                            self.emit(PortForwardEvent::forwarding(
                                ForwardProtocol::Tcp,
                                l.addr(),
                                host.to_string(),
                            ));
                        }
                        Err(e) => {
                            self.emit(PortForwardEvent::failed(
                                ForwardProtocol::Tcp,
                                l.addr(),
                                host.to_string(),
                                e.clone(),
                            ));
                            errors.push(format!("failed to forward {} statically: {e}", l.addr()));
                        }
                    }
                }
            }
        }
        errors
    }

    /// At shutdown: the TCP forwards die with the ControlMaster, so only
    /// their events and host sockets are left to handle.
    pub(super) fn stop_all_tcp(&mut self) {
        for (host, a) in std::mem::take(&mut self.active) {
            if let Some(l) = a.listeners.iter().next() {
                self.emit(PortForwardEvent::stopping(
                    ForwardProtocol::Tcp,
                    l.addr(),
                    host.to_string(),
                ));
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::hostagent::events::EventWriter;
    use crate::hostagent::portfwd::rules::rules;
    use crate::hostagent::portfwd::test_util::{filled, l};
    use crate::spec::types::PortForward;

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
}
