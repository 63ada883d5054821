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
//! host  → guest  {"type":"udp","flow":3,"target":"127.0.0.1:8090","data":"cGluZw=="}
//! guest → host   {"type":"udp","flow":3,"data":"cGluZw=="}
//! host  → guest  {"type":"udp-close","flow":3}
//! guest → host   {"type":"udp-close","flow":3}
//! ```
//!
//! A guest `hello` always carries the *full* list of listening sockets; the
//! host replaces its view with it. `ports` messages carry only changes. The
//! guest answers every host `hello` and also sends one unprompted when it
//! starts, so either side may restart and the host resynchronises. Unknown
//! message types are ignored (a newer peer may add some); a different
//! `version` is incompatible.
//!
//! # Optional features
//!
//! Additions that an older peer can ignore keep `version` 1: the guest lists
//! what it supports in its hello's `features` (absent = none), and the host
//! uses a feature only when the guest listed it. An older host ignores the
//! field; an older guest ignores the messages of a feature it lacks.
//!
//! `udp` ([`FEATURE_UDP`]): UDP forwarding through this channel (an SSH
//! local forward carries TCP only). The host binds a UDP socket per
//! forwarded guest listener; each client address there is a *flow*, named
//! by a host-chosen `flow` number. Each host `udp` message carries one
//! datagram (`data`, base64) and the guest address to deliver it to
//! (`target`; a wildcard listener is reached on the loopback address of its
//! family). The guest opens one UDP socket per flow, connected to `target`,
//! on the first datagram (again if `target` changes), sends the datagram
//! from it, and returns every datagram that socket receives as a guest
//! `udp` message with the same `flow`. A flow ends with `udp-close` from
//! either side: the host's client went idle or the forward stopped; the
//! guest closed the flow after [`UDP_IDLE`] without traffic or to stay
//! within [`MAX_UDP_FLOWS`] (oldest first). A `udp` for an unknown flow
//! (re)opens it, so a lost `udp-close` costs nothing. A host `hello`
//! starts a new session: the guest closes every flow. Datagrams may be
//! dropped when the channel is congested (UDP promises no delivery); port
//! reports always go first.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Protocol version; both sides must speak the same one.
pub const VERSION: u32 = 1;

/// Longest line either side accepts; longer lines are dropped whole.
pub const MAX_LINE: usize = 4 << 20;

/// The guest relays UDP datagrams (`udp`, `udp-close`).
pub const FEATURE_UDP: &str = "udp";

/// What this build supports, as its hello lists it.
pub const FEATURES: &[&str] = &[FEATURE_UDP];

/// A UDP flow without a datagram either way for this long is closed.
pub const UDP_IDLE: Duration = Duration::from_secs(60);

/// Flows per side (the guest: in all; the host: per forwarded port); a new
/// flow beyond this closes the least recently used one.
pub const MAX_UDP_FLOWS: usize = 1024;

/// The largest UDP payload (IPv4: 65535 − 8 − 20).
pub const MAX_DATAGRAM: usize = 65507;

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
    /// A datagram of flow `flow`, to deliver to the guest address `target`
    /// (feature `udp`).
    Udp {
        flow: u64,
        target: SocketAddr,
        #[serde(with = "base64")]
        data: Vec<u8>,
    },
    /// The host closed flow `flow` (feature `udp`).
    UdpClose { flow: u64 },
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
        /// Optional features this agent supports (e.g. [`FEATURE_UDP`]).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        features: Vec<String>,
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
    /// A datagram the guest socket of flow `flow` received.
    Udp {
        flow: u64,
        #[serde(with = "base64")]
        data: Vec<u8>,
    },
    /// The guest closed flow `flow` (idle, or too many flows).
    UdpClose { flow: u64 },
    #[serde(other)]
    Unknown,
}

/// Payloads as base64 strings (RFC 4648, standard alphabet, padded).
pub mod base64 {
    use serde::{Deserialize, Deserializer, Serializer};

    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(data: &[u8]) -> String {
        let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
        for chunk in data.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }

    /// Strict: a multiple of 4 characters, padding only at the end.
    pub fn decode(s: &str) -> Result<Vec<u8>, String> {
        let s = s.as_bytes();
        if !s.len().is_multiple_of(4) {
            return Err(format!("base64 length {} is not a multiple of 4", s.len()));
        }
        let mut out = Vec::with_capacity(s.len() / 4 * 3);
        let quads = s.len() / 4;
        for (q, chunk) in s.chunks(4).enumerate() {
            let pad = chunk.iter().rev().take_while(|c| **c == b'=').count();
            if pad > 2 || (pad > 0 && q + 1 != quads) {
                return Err("misplaced base64 padding".into());
            }
            let mut n = 0u32;
            for (i, c) in chunk.iter().enumerate() {
                let v = if i >= 4 - pad {
                    0
                } else {
                    value(*c).ok_or_else(|| format!("invalid base64 character {:?}", *c as char))?
                };
                n = n << 6 | v;
            }
            let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            out.extend_from_slice(&bytes[..3 - pad]);
        }
        Ok(out)
    }

    pub fn serialize<S: Serializer>(data: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode(data))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        decode(&s).map_err(serde::de::Error::custom)
    }
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
                features: vec![FEATURE_UDP.into()],
            },
            GuestMessage::Hello {
                version: VERSION,
                id: None,
                agent: String::new(),
                ports: vec![],
                features: vec![],
            },
            GuestMessage::Udp {
                flow: u64::MAX,
                data: (0..=255).collect(),
            },
            GuestMessage::Udp {
                flow: 0,
                data: vec![],
            },
            GuestMessage::UdpClose { flow: 9 },
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
        for h in [
            HostMessage::Udp {
                flow: 1,
                target: "[::1]:53".parse().unwrap(),
                data: vec![0, 1, 2, 0xff],
            },
            HostMessage::Udp {
                flow: 2,
                target: "127.0.0.1:8090".parse().unwrap(),
                data: vec![b'x'; MAX_DATAGRAM],
            },
            HostMessage::UdpClose { flow: 3 },
        ] {
            let line = String::from_utf8(encode(&h)).unwrap();
            assert!(line.len() < MAX_LINE);
            assert_eq!(decode_host(line.trim_end()).unwrap(), h);
        }
    }

    #[test]
    fn udp_messages_have_a_stable_wire_form() {
        let h = HostMessage::Udp {
            flow: 3,
            target: "127.0.0.1:8090".parse().unwrap(),
            data: b"ping".to_vec(),
        };
        assert_eq!(
            String::from_utf8(encode(&h)).unwrap(),
            "{\"type\":\"udp\",\"flow\":3,\"target\":\"127.0.0.1:8090\",\"data\":\"cGluZw==\"}\n"
        );
        let h = HostMessage::Udp {
            flow: 4,
            target: "[::1]:53".parse().unwrap(),
            data: vec![],
        };
        assert_eq!(
            String::from_utf8(encode(&h)).unwrap(),
            "{\"type\":\"udp\",\"flow\":4,\"target\":\"[::1]:53\",\"data\":\"\"}\n"
        );
        let g = GuestMessage::Udp {
            flow: 3,
            data: b"pong!".to_vec(),
        };
        assert_eq!(
            String::from_utf8(encode(&g)).unwrap(),
            "{\"type\":\"udp\",\"flow\":3,\"data\":\"cG9uZyE=\"}\n"
        );
        assert_eq!(
            String::from_utf8(encode(&GuestMessage::UdpClose { flow: 3 })).unwrap(),
            "{\"type\":\"udp-close\",\"flow\":3}\n"
        );
        assert_eq!(
            String::from_utf8(encode(&HostMessage::UdpClose { flow: 3 })).unwrap(),
            "{\"type\":\"udp-close\",\"flow\":3}\n"
        );
        // A hello lists the features; without any, the field is left out.
        let hello = GuestMessage::Hello {
            version: VERSION,
            id: Some(1),
            agent: "a".into(),
            ports: vec![],
            features: vec![FEATURE_UDP.into()],
        };
        assert_eq!(
            String::from_utf8(encode(&hello)).unwrap(),
            "{\"type\":\"hello\",\"version\":1,\"id\":1,\"agent\":\"a\",\"ports\":[],\"features\":[\"udp\"]}\n"
        );
    }

    #[test]
    fn older_and_newer_peers_understand_each_other() {
        // An older guest's hello has no features: UDP stays off.
        match decode_guest(r#"{"type":"hello","version":1,"id":2,"agent":"old","ports":[]}"#)
            .unwrap()
        {
            GuestMessage::Hello { features, .. } => assert!(features.is_empty()),
            m => panic!("{m:?}"),
        }
        // Unknown features and fields are ignored.
        match decode_guest(
            r#"{"type":"hello","version":1,"ports":[],"features":["udp","quic"],"extra":1}"#,
        )
        .unwrap()
        {
            GuestMessage::Hello { features, .. } => assert_eq!(features, ["udp", "quic"]),
            m => panic!("{m:?}"),
        }
        // Bad payloads and targets are errors, not garbage datagrams.
        assert!(
            decode_host(r#"{"type":"udp","flow":1,"target":"127.0.0.1:1","data":"@@@@"}"#).is_err()
        );
        assert!(
            decode_host(r#"{"type":"udp","flow":1,"target":"localhost:1","data":""}"#).is_err()
        );
        assert!(decode_guest(r#"{"type":"udp","flow":1}"#).is_err());
    }

    #[test]
    fn base64_matches_rfc_4648() {
        // RFC 4648 §10 test vectors.
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64::encode(plain.as_bytes()), enc);
            assert_eq!(base64::decode(enc).unwrap(), plain.as_bytes());
        }
        let all: Vec<u8> = (0..=255).chain((0..=255).rev()).collect();
        for n in 0..all.len() {
            assert_eq!(
                base64::decode(&base64::encode(&all[..n])).unwrap(),
                &all[..n]
            );
        }
        assert_eq!(base64::encode(&[0xfb, 0xff]), "+/8=");
        for bad in ["Zg=", "Z===", "Zg==Zm8=", "Zm9v!A==", "Zm-v"] {
            assert!(base64::decode(bad).is_err(), "{bad}");
        }
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
