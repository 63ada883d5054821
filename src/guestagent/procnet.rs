//! Listening sockets from `/proc/net/{tcp,tcp6,udp,udp6}`.
//!
//! Each line holds `local_address` as hex words in the kernel's byte order
//! and the port in big-endian hex, then the socket state: TCP `0A`
//! (LISTEN) is a listener; UDP `07` (CLOSE, i.e. not connected) is a bound
//! socket that receives from anyone, as Lima treats it.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::protocol::{Listener, Proto};

const TCP_LISTEN: &str = "0A";
const UDP_UNCONNECTED: &str = "07";

/// The proc files and what they hold.
pub const FILES: [(&str, Proto); 4] = [
    ("/proc/net/tcp", Proto::Tcp),
    ("/proc/net/tcp6", Proto::Tcp),
    ("/proc/net/udp", Proto::Udp),
    ("/proc/net/udp6", Proto::Udp),
];

/// Parses one `/proc/net/{tcp,udp}[6]` file's text.
pub fn parse(text: &str, proto: Proto) -> Vec<Listener> {
    let want = match proto {
        Proto::Tcp => TCP_LISTEN,
        Proto::Udp => UDP_UNCONNECTED,
    };
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let mut f = line.split_whitespace();
        let (Some(_sl), Some(local), Some(_remote), Some(state)) =
            (f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        if !state.eq_ignore_ascii_case(want) {
            continue;
        }
        if let Some((ip, port)) = parse_addr(local) {
            out.push(Listener::new(proto, ip, port));
        }
    }
    out
}

/// `0100007F:1F90` → 127.0.0.1:8080; 32 hex digits for IPv6. IPv4-mapped
/// IPv6 addresses come back as IPv4.
fn parse_addr(s: &str) -> Option<(IpAddr, u16)> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |h: &str| u32::from_str_radix(h, 16).ok().map(u32::to_ne_bytes);
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(ip)?)),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(&ip[i * 8..i * 8 + 8])?);
            }
            let v6 = Ipv6Addr::from(b);
            match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            }
        }
        _ => return None,
    };
    Some((ip, port))
}

/// Every listening socket of the guest (files that cannot be read, e.g.
/// without IPv6, are skipped).
pub fn scan() -> BTreeSet<Listener> {
    let mut set = BTreeSet::new();
    for (path, proto) in FILES {
        if let Ok(text) = std::fs::read_to_string(path) {
            set.extend(parse(&text, proto));
        }
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from a Debian 12 guest (x86_64, little-endian).
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 13321 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 24811 1 0000000000000000 100 0 0 10 0
   2: 0F05A8C0:0016 0205A8C0:C7A4 01 00000000:00000000 02:0009CE0A 00000000     0        0 20121 4 0000000000000000 20 4 29 10 -1
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 13323 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:0277 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 13324 1 0000000000000000 100 0 0 10 0
   2: 0000000000000000FFFF00000100007F:1F91 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 13325 1 0000000000000000 100 0 0 10 0
";
    const UDP: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  120: 3500007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000   991        0 14187 2 0000000000000000 0
  583: 0F05A8C0:0044 0205A8C0:0043 01 00000000:00000000 00:00000000 00000000     0        0 15410 2 0000000000000000 0
";

    fn l(proto: Proto, ip: &str, port: u16) -> Listener {
        Listener::new(proto, ip.parse().unwrap(), port)
    }

    #[test]
    fn tcp_listeners_only() {
        assert_eq!(
            parse(TCP, Proto::Tcp),
            vec![
                l(Proto::Tcp, "0.0.0.0", 22),
                l(Proto::Tcp, "127.0.0.1", 8080)
            ]
        );
    }

    #[test]
    fn ipv6_words_and_mapped_addresses() {
        assert_eq!(
            parse(TCP6, Proto::Tcp),
            vec![
                l(Proto::Tcp, "::", 22),
                l(Proto::Tcp, "::1", 631),
                l(Proto::Tcp, "127.0.0.1", 8081),
            ]
        );
    }

    #[test]
    fn udp_unconnected_sockets_only() {
        assert_eq!(
            parse(UDP, Proto::Udp),
            vec![l(Proto::Udp, "127.0.0.53", 53)]
        );
    }

    #[test]
    fn malformed_lines_are_skipped() {
        assert!(parse("header\n 0: zz:1 0:0 0A\n 1: 0100007F 0:0 0A\n", Proto::Tcp).is_empty());
        assert!(parse("", Proto::Udp).is_empty());
    }

    #[test]
    fn this_hosts_tables_parse() {
        // Whatever this machine listens on, scanning never panics and finds
        // a listener we open.
        let sock = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = sock.local_addr().unwrap().port();
        assert!(scan().contains(&l(Proto::Tcp, "127.0.0.1", port)));
    }
}
