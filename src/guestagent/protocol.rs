//! The wire protocol between the host agent and the guest agent.
//!
//! One JSON object per line (UTF-8, `\n`-terminated), tagged by `type`:
//!
//! ```text
//! host  → guest  {"type":"hello","version":1,"id":1}
//! guest → host   {"type":"hello","version":1,"id":1,"agent":"0.1.0","ports":[{"proto":"tcp","ip":"0.0.0.0","port":22}]}
//! guest → host   {"type":"ports","added":[{"proto":"tcp","ip":"127.0.0.1","port":8080}],"removed":[]}
//! host  → guest  {"type":"sync-time","id":2,"hostTimeNs":1767225600123456789}
//! guest → host   {"type":"time-synced","id":2,"adjusted":true,"driftMs":-420}
//! ```
//!
//! A guest `hello` always carries the *full* list of listening sockets; the
//! host replaces its view with it. `ports` messages carry only changes. The
//! guest answers every host `hello` and also sends one unprompted when it
//! starts, so either side may restart and the host resynchronises. Unknown
//! message types are ignored (a newer peer may add some); a different
//! `version` is incompatible.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

/// Protocol version; both sides must speak the same one.
pub const VERSION: u32 = 1;

/// Longest line either side accepts; longer lines are dropped whole.
pub const MAX_LINE: usize = 4 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// A listening socket in the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Listener {
    pub proto: Proto,
    pub ip: IpAddr,
    pub port: u16,
}

impl Listener {
    pub fn new(proto: Proto, ip: IpAddr, port: u16) -> Listener {
        Listener { proto, ip, port }
    }

    /// `ip:port` (`[ip]:port` for IPv6), as Lima's events show guest addresses.
    pub fn addr(&self) -> String {
        SocketAddr::new(self.ip, self.port).to_string()
    }
}

/// What the host agent sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
pub enum HostMessage {
    /// Starts (or restarts) a session; answered by a guest `hello`.
    Hello { version: u32, id: u64 },
    /// Set the guest clock to `host_time_ns` (Unix time) if it is more than
    /// 100 ms off; answered by `time-synced`.
    SyncTime { id: u64, host_time_ns: i64 },
    #[serde(other)]
    Unknown,
}

/// What the guest agent sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
pub enum GuestMessage {
    /// The full state: every listening socket. `id` echoes the host's hello
    /// (absent when the agent announces itself after a start).
    Hello {
        version: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        /// The agent's build version.
        #[serde(default)]
        agent: String,
        ports: Vec<Listener>,
    },
    /// Changes since the last `hello` or `ports`.
    Ports {
        #[serde(default)]
        added: Vec<Listener>,
        #[serde(default)]
        removed: Vec<Listener>,
    },
    TimeSynced {
        id: u64,
        adjusted: bool,
        /// Guest time minus host time when the request arrived.
        drift_ms: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    #[serde(other)]
    Unknown,
}

/// One line on the wire, newline included.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    let mut v = serde_json::to_vec(msg).expect("protocol messages serialize");
    v.push(b'\n');
    v
}

pub fn decode_host(line: &str) -> Result<HostMessage, serde_json::Error> {
    serde_json::from_str(line)
}

pub fn decode_guest(line: &str) -> Result<GuestMessage, serde_json::Error> {
    serde_json::from_str(line)
}

/// What changed between two sets of listeners: (added, removed).
pub fn diff(old: &BTreeSet<Listener>, new: &BTreeSet<Listener>) -> (Vec<Listener>, Vec<Listener>) {
    (
        new.difference(old).copied().collect(),
        old.difference(new).copied().collect(),
    )
}

/// Splits a byte stream into lines. Bytes of a line longer than
/// [`MAX_LINE`] are discarded up to its newline; invalid UTF-8 is replaced.
#[derive(Debug, Default)]
pub struct LineBuffer {
    buf: Vec<u8>,
    overlong: bool,
}

impl LineBuffer {
    pub fn new() -> LineBuffer {
        LineBuffer::default()
    }

    /// Adds bytes; returns the complete, non-empty lines (without `\n`).
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        for chunk in bytes.split_inclusive(|b| *b == b'\n') {
            let complete = chunk.last() == Some(&b'\n');
            let body = if complete {
                &chunk[..chunk.len() - 1]
            } else {
                chunk
            };
            if !self.overlong {
                self.buf.extend_from_slice(body);
                if self.buf.len() > MAX_LINE {
                    self.buf.clear();
                    self.overlong = true;
                }
            }
            if complete {
                if !self.overlong {
                    let line = String::from_utf8_lossy(&self.buf).trim().to_string();
                    if !line.is_empty() {
                        lines.push(line);
                    }
                }
                self.buf.clear();
                self.overlong = false;
            }
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn l(proto: Proto, ip: &str, port: u16) -> Listener {
        Listener::new(proto, ip.parse().unwrap(), port)
    }

    #[test]
    fn messages_have_a_stable_wire_form() {
        let hello = HostMessage::Hello {
            version: VERSION,
            id: 7,
        };
        assert_eq!(
            String::from_utf8(encode(&hello)).unwrap(),
            "{\"type\":\"hello\",\"version\":1,\"id\":7}\n"
        );
        let sync = HostMessage::SyncTime {
            id: 8,
            host_time_ns: 1_700_000_000_000_000_001,
        };
        assert_eq!(
            String::from_utf8(encode(&sync)).unwrap(),
            "{\"type\":\"sync-time\",\"id\":8,\"hostTimeNs\":1700000000000000001}\n"
        );
        let ports = GuestMessage::Ports {
            added: vec![l(Proto::Tcp, "127.0.0.1", 8080)],
            removed: vec![l(Proto::Udp, "::", 53)],
        };
        assert_eq!(
            String::from_utf8(encode(&ports)).unwrap(),
            "{\"type\":\"ports\",\"added\":[{\"proto\":\"tcp\",\"ip\":\"127.0.0.1\",\"port\":8080}],\"removed\":[{\"proto\":\"udp\",\"ip\":\"::\",\"port\":53}]}\n"
        );
        let synced = GuestMessage::TimeSynced {
            id: 8,
            adjusted: false,
            drift_ms: -3,
            error: None,
        };
        assert_eq!(
            String::from_utf8(encode(&synced)).unwrap(),
            "{\"type\":\"time-synced\",\"id\":8,\"adjusted\":false,\"driftMs\":-3}\n"
        );
    }

    #[test]
    fn messages_round_trip() {
        let msgs = vec![
            GuestMessage::Hello {
                version: VERSION,
                id: Some(1),
                agent: "0.1.0".into(),
                ports: vec![
                    l(Proto::Tcp, "0.0.0.0", 22),
                    l(Proto::Tcp, "::1", 631),
                    Listener::new(Proto::Udp, IpAddr::V6(Ipv6Addr::UNSPECIFIED), 5353),
                ],
            },
            GuestMessage::Hello {
                version: VERSION,
                id: None,
                agent: String::new(),
                ports: vec![],
            },
            GuestMessage::TimeSynced {
                id: 3,
                adjusted: true,
                drift_ms: 1234,
                error: Some("EPERM".into()),
            },
        ];
        for m in msgs {
            let line = String::from_utf8(encode(&m)).unwrap();
            assert_eq!(decode_guest(line.trim_end()).unwrap(), m);
        }
        let h = HostMessage::SyncTime {
            id: 1,
            host_time_ns: -5,
        };
        let line = String::from_utf8(encode(&h)).unwrap();
        assert_eq!(decode_host(line.trim_end()).unwrap(), h);
    }

    #[test]
    fn unknown_types_are_tolerated_and_garbage_is_an_error() {
        assert_eq!(
            decode_guest(r#"{"type":"inotify","path":"/x"}"#).unwrap(),
            GuestMessage::Unknown
        );
        assert_eq!(
            decode_host(r#"{"type":"tunnel","id":"x"}"#).unwrap(),
            HostMessage::Unknown
        );
        assert!(decode_guest("not json").is_err());
        assert!(decode_guest(r#"{"added":[]}"#).is_err());
        // Missing optional fields take defaults.
        assert_eq!(
            decode_guest(r#"{"type":"ports","added":[{"proto":"udp","ip":"10.0.0.1","port":1}]}"#)
                .unwrap(),
            GuestMessage::Ports {
                added: vec![Listener::new(
                    Proto::Udp,
                    IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
                    1
                )],
                removed: vec![]
            }
        );
    }

    #[test]
    fn diffs_report_only_changes() {
        let a: BTreeSet<_> = [l(Proto::Tcp, "0.0.0.0", 22), l(Proto::Tcp, "127.0.0.1", 80)]
            .into_iter()
            .collect();
        let b: BTreeSet<_> = [l(Proto::Tcp, "0.0.0.0", 22), l(Proto::Udp, "127.0.0.1", 80)]
            .into_iter()
            .collect();
        let (added, removed) = diff(&a, &b);
        assert_eq!(added, vec![l(Proto::Udp, "127.0.0.1", 80)]);
        assert_eq!(removed, vec![l(Proto::Tcp, "127.0.0.1", 80)]);
        assert_eq!(diff(&a, &a), (vec![], vec![]));
    }

    #[test]
    fn line_buffer_splits_joins_and_bounds() {
        let mut b = LineBuffer::new();
        assert!(b.push(b"{\"a\"").is_empty());
        assert_eq!(
            b.push(b":1}\n\n{\"b\":2}\n{"),
            vec!["{\"a\":1}", "{\"b\":2}"]
        );
        assert_eq!(b.push(b"}\n"), vec!["{}"]);
        // An overlong line is dropped, the next one survives.
        let big = vec![b'x'; MAX_LINE + 10];
        assert!(b.push(&big).is_empty());
        assert!(b.push(b"yyy").is_empty());
        assert_eq!(b.push(b"\nok\n"), vec!["ok"]);
    }

    #[test]
    fn addresses_print_like_lima() {
        assert_eq!(l(Proto::Tcp, "127.0.0.1", 8080).addr(), "127.0.0.1:8080");
        assert_eq!(l(Proto::Tcp, "::1", 8080).addr(), "[::1]:8080");
    }
}
