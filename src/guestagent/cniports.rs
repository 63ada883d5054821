//! Ports published through CNI's `portmap` plugin, read from the `nat` table.
//!
//! A rootful `nerdctl run -p 8080:80` opens no socket in the guest: the
//! portmap plugin only adds DNAT rules, in one chain per container named
//! `CNI-DN-<hash>`, so `/proc/net` ([`super::procnet`]) never sees the port.
//! `iptables -t nat -S` prints them as
//!
//! ```text
//! -A CNI-DN-6b4c2c3a0e8f1b2d9c7e1 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.4.0.7:80
//! -A CNI-DN-6b4c2c3a0e8f1b2d9c7e1 -d 127.0.0.1/32 -p udp -m udp --dport 5353 -j DNAT --to-destination 10.4.0.7:53
//! ```
//!
//! and each such rule is reported as a listener on its `-d` address (a host
//! address, `/32`), else on 0.0.0.0, like a socket bound there: the host agent
//! then forwards it by connecting to the guest's loopback, which the portmap
//! rules DNAT to the container as well (portmap's hairpin SNAT). Only IPv4
//! (`iptables`), as in Lima. Rootless containers need none of this: their
//! ports are RootlessKit sockets in the guest.
//!
//! `iptables` runs on a thread of its own every [`EVERY`]: listing can wait
//! for the xtables lock, and the agent's loop relays UDP and must not stall.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::protocol::{Listener, Proto};

/// How often the `nat` table is listed.
pub const EVERY: Duration = Duration::from_secs(3);

/// The chain prefix portmap gives each container's DNAT rules.
const CHAIN_PREFIX: &str = "CNI-DN-";

/// Where `iptables` is looked for when it is not on `PATH` (a systemd unit's
/// `PATH` has the sbin directories; a shell's may not).
const SBIN_DIRS: [&str; 4] = ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/local/bin"];

/// The published ports in `iptables -S` output (other rules are ignored).
pub fn parse(rules: &str) -> Vec<Listener> {
    rules.lines().filter_map(parse_rule).collect()
}

fn parse_rule(line: &str) -> Option<Listener> {
    let words: Vec<&str> = line.split_whitespace().collect();
    if words.first() != Some(&"-A") || !words.get(1)?.starts_with(CHAIN_PREFIX) {
        return None;
    }
    let value = |flag: &str| {
        words
            .iter()
            .position(|w| *w == flag)
            .and_then(|i| words.get(i + 1).copied())
    };
    if value("-j") != Some("DNAT") {
        return None;
    }
    let proto = match value("-p")? {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        _ => return None,
    };
    // One port per rule: portmap writes a rule per mapping, never a range.
    let port: u16 = value("--dport")?.parse().ok()?;
    // A host IP is written as a /32; a wider match is not an address to
    // connect to, so it counts as every address.
    let ip = match value("-d") {
        None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        Some(d) => {
            let (addr, prefix) = d.split_once('/').unwrap_or((d, "32"));
            let addr: Ipv4Addr = addr.parse().ok()?;
            IpAddr::V4(if prefix == "32" {
                addr
            } else {
                Ipv4Addr::UNSPECIFIED
            })
        }
    };
    Some(Listener::new(proto, ip, port))
}

/// The `iptables` binary, if the guest has one.
fn find_iptables() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(SBIN_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join("iptables"))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Lists the `nat` table once; `None` when there is no `iptables` or it
/// fails (no nat support in the kernel, not root).
pub fn scan() -> Option<BTreeSet<Listener>> {
    let bin = find_iptables()?;
    let out = std::process::Command::new(bin)
        .args(["-t", "nat", "-S"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status.success().then(|| {
        parse(&String::from_utf8_lossy(&out.stdout))
            .into_iter()
            .collect()
    })
}

/// The published ports as last listed, kept fresh by a background thread.
#[derive(Clone, Default)]
pub struct Watch(Arc<Mutex<BTreeSet<Listener>>>);

impl Watch {
    /// Starts the thread that lists the table every `every`.
    pub fn spawn(every: Duration) -> Watch {
        let watch = Watch::default();
        let shared = watch.clone();
        std::thread::Builder::new()
            .name("cni-ports".into())
            .spawn(move || {
                loop {
                    // No iptables (yet: a boot script may install it) or a
                    // failed listing: no published ports.
                    let now = scan().unwrap_or_default();
                    *shared.0.lock().unwrap_or_else(|e| e.into_inner()) = now;
                    std::thread::sleep(every);
                }
            })
            .expect("cannot start the cni-ports thread");
        watch
    }

    pub fn current(&self) -> BTreeSet<Listener> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // `iptables -t nat -S` in a Debian 12 guest after two portmap ADDs (one
    // with hostIP 127.0.0.1, one UDP), plus Docker's and Lima's own rules.
    const RULES: &str = "-P PREROUTING ACCEPT
-P INPUT ACCEPT
-P OUTPUT ACCEPT
-P POSTROUTING ACCEPT
-N CNI-DN-6b4c2c3a0e8f1b2d9c7e1
-N CNI-HOSTPORT-DNAT
-N CNI-HOSTPORT-MASQ
-N CNI-HOSTPORT-SETMARK
-N LIMADNS
-A PREROUTING -j LIMADNS
-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
-A POSTROUTING -m comment --comment \"CNI portfwd requiring masquerade\" -j CNI-HOSTPORT-MASQ
-A CNI-DN-6b4c2c3a0e8f1b2d9c7e1 -s 10.4.0.0/24 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK
-A CNI-DN-6b4c2c3a0e8f1b2d9c7e1 -s 127.0.0.1/32 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK
-A CNI-DN-6b4c2c3a0e8f1b2d9c7e1 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.4.0.7:80
-A CNI-DN-6b4c2c3a0e8f1b2d9c7e1 -d 127.0.0.1/32 -p tcp -m tcp --dport 8081 -j DNAT --to-destination 10.4.0.7:80
-A CNI-DN-6b4c2c3a0e8f1b2d9c7e1 -p udp -m udp --dport 5353 -j DNAT --to-destination 10.4.0.7:53
-A CNI-DN-6b4c2c3a0e8f1b2d9c7e1 -d 192.168.5.0/24 -p tcp -m tcp --dport 9090 -j DNAT --to-destination 10.4.0.7:90
-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment \"dnat name: \\\"bridge\\\" id: \\\"default-x\\\"\" -m multiport --dports 8080,8081 -j CNI-DN-6b4c2c3a0e8f1b2d9c7e1
-A LIMADNS -d 192.168.5.3/32 -p udp -m udp --dport 53 -j DNAT --to-destination 127.0.0.53:53
-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8443 -j DNAT --to-destination 172.17.0.2:443
-A CNI-DN-6b4c2c3a0e8f1b2d9c7e1 -p sctp -m sctp --dport 7000 -j DNAT --to-destination 10.4.0.7:70
";

    fn l(proto: Proto, ip: &str, port: u16) -> Listener {
        Listener::new(proto, ip.parse().unwrap(), port)
    }

    #[test]
    fn dnat_rules_of_container_chains_only() {
        assert_eq!(
            parse(RULES),
            vec![
                l(Proto::Tcp, "0.0.0.0", 8080),
                l(Proto::Tcp, "127.0.0.1", 8081),
                l(Proto::Udp, "0.0.0.0", 5353),
                l(Proto::Tcp, "0.0.0.0", 9090),
            ]
        );
    }

    #[test]
    fn malformed_rules_are_skipped() {
        for bad in [
            "",
            "-A CNI-DN-x -p tcp -j DNAT",
            "-A CNI-DN-x -p tcp --dport 99999 -j DNAT --to-destination 10.0.0.1:1",
            "-A CNI-DN-x -p tcp --dport 80 -j",
            "-A CNI-DN-x -d nonsense/32 -p tcp --dport 80 -j DNAT",
            "-I CNI-DN-x -p tcp --dport 80 -j DNAT",
        ] {
            assert!(parse(bad).is_empty(), "{bad:?}");
        }
    }
}
