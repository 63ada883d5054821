//! Host agent events: Lima's JSON lines in `ha.stdout.log` (reference §4.3),
//! `{"time":"…","status":{…}}`, and a reader that follows the file.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortForwardEvent {
    #[serde(rename = "type")]
    pub kind: String,
    pub protocol: String,
    pub guest_addr: String,
    pub host_addr: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloudInitProgress {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub log_line: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub completed: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub active: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub running: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub degraded: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exiting: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ssh_local_port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_init_progress: Option<CloudInitProgress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_forward: Option<PortForwardEvent>,
}

fn is_zero(p: &u16) -> bool {
    *p == 0
}

/// The events the host agent emits, built in one place so every call site
/// writes the same shape (reference §4.3).
impl Status {
    /// QEMU has started and the guest boots: the first event, which tells
    /// `limactl start` the SSH port.
    pub fn booting(ssh_local_port: u16) -> Status {
        Status {
            ssh_local_port,
            ..Default::default()
        }
    }

    /// Every requirement is satisfied.
    pub fn ready(ssh_local_port: u16) -> Status {
        Status {
            running: true,
            ssh_local_port,
            ..Default::default()
        }
    }

    /// Running, but some requirements failed (`errors` says which).
    pub fn degraded(ssh_local_port: u16, errors: Vec<String>) -> Status {
        Status {
            running: true,
            degraded: true,
            errors,
            ssh_local_port,
            ..Default::default()
        }
    }

    /// The start-up routine's outcome: ready without errors, else degraded.
    pub fn running(ssh_local_port: u16, errors: Vec<String>) -> Status {
        if errors.is_empty() {
            Status::ready(ssh_local_port)
        } else {
            Status::degraded(ssh_local_port, errors)
        }
    }

    /// The host agent's last event; `errors` tells a failure from a clean
    /// stop.
    pub fn exiting(errors: Vec<String>) -> Status {
        Status {
            exiting: true,
            errors,
            ..Default::default()
        }
    }
}

/// The `protocol` of a port-forward event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardProtocol {
    Tcp,
    Udp,
    /// A `guestSocket` forward.
    Unix,
}

impl ForwardProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            ForwardProtocol::Tcp => "tcp",
            ForwardProtocol::Udp => "udp",
            ForwardProtocol::Unix => "unix",
        }
    }
}

/// Lima's port-forward event types.
impl PortForwardEvent {
    fn new(kind: &str, protocol: ForwardProtocol, guest: String, host: String) -> Self {
        PortForwardEvent {
            kind: kind.into(),
            protocol: protocol.as_str().into(),
            guest_addr: guest,
            host_addr: host,
            error: String::new(),
        }
    }

    pub fn forwarding(protocol: ForwardProtocol, guest: String, host: String) -> Self {
        Self::new("forwarding", protocol, guest, host)
    }

    /// No rule forwards the listener (no host address).
    pub fn not_forwarding(protocol: ForwardProtocol, guest: String) -> Self {
        Self::new("not-forwarding", protocol, guest, String::new())
    }

    pub fn stopping(protocol: ForwardProtocol, guest: String, host: String) -> Self {
        Self::new("stopping", protocol, guest, host)
    }

    pub fn failed(protocol: ForwardProtocol, guest: String, host: String, error: String) -> Self {
        PortForwardEvent {
            error,
            ..Self::new("failed", protocol, guest, host)
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// RFC 3339 with nanoseconds, as Go's `time.Time` marshals.
    pub time: String,
    pub status: Status,
}

impl Event {
    pub fn now(status: Status) -> Event {
        Event {
            time: chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, false),
            status,
        }
    }

    pub fn time(&self) -> Option<chrono::DateTime<chrono::FixedOffset>> {
        chrono::DateTime::parse_from_rfc3339(&self.time).ok()
    }
}

/// Appends events to `ha.stdout.log`, each line flushed and fsynced so a
/// reader never sees half a line and a crash loses nothing written.
pub struct EventWriter {
    file: std::fs::File,
    /// The current status: port-forward and progress events carry it along.
    current: Status,
}

impl EventWriter {
    pub fn open(path: &Path) -> std::io::Result<EventWriter> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        Ok(EventWriter {
            file,
            current: Status::default(),
        })
    }

    pub fn emit(&mut self, status: Status) -> std::io::Result<()> {
        self.current = status.clone();
        let line = serde_json::to_string(&Event::now(status)).expect("events serialize");
        self.file.write_all(format!("{line}\n").as_bytes())?;
        self.file.sync_data()
    }

    /// Emits the current status with a sub-object changed (Lima's behaviour).
    pub fn emit_with(&mut self, f: impl FnOnce(&mut Status)) -> std::io::Result<()> {
        let mut s = self.current.clone();
        f(&mut s);
        self.emit(s)
    }

    /// A port-forward event: the current status carrying `ev`.
    pub fn emit_port_forward(&mut self, ev: PortForwardEvent) -> std::io::Result<()> {
        self.emit_with(|s| s.port_forward = Some(ev))
    }

    pub fn current(&self) -> &Status {
        &self.current
    }
}

/// Follows an events file, yielding the events appended since the last
/// call. The file may not exist yet.
pub struct EventReader {
    tail: super::logfollow::LineTail,
}

impl EventReader {
    pub fn from_start(path: &Path) -> EventReader {
        EventReader {
            tail: super::logfollow::LineTail::from_start(path),
        }
    }

    /// New complete events since the last call. Malformed lines are errors.
    pub fn poll(&mut self) -> Result<Vec<Event>, String> {
        let lines = self.tail.lines().map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        for line in lines {
            let full = line.trim_end();
            if full.trim().is_empty() {
                continue;
            }
            let ev: Event = serde_json::from_str(full).map_err(|e| {
                format!(
                    "malformed event line in {}: {e}: {full}",
                    self.tail.path().display()
                )
            })?;
            out.push(ev);
        }
        Ok(out)
    }
}

/// Every event in a file (for `limactl watch --history`).
pub fn read_all(path: &Path) -> Result<Vec<Event>, String> {
    EventReader::from_start(path).poll()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialize_like_lima() {
        let e = Event {
            time: "2025-01-01T12:00:00.123456789+01:00".into(),
            status: Status {
                running: true,
                ssh_local_port: 60022,
                ..Default::default()
            },
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"time":"2025-01-01T12:00:00.123456789+01:00","status":{"running":true,"sshLocalPort":60022}}"#
        );
        let empty = Event {
            time: "t".into(),
            status: Status::default(),
        };
        assert_eq!(
            serde_json::to_string(&empty).unwrap(),
            r#"{"time":"t","status":{}}"#
        );
    }

    /// The bytes each constructor writes are Lima's (reference §4.3):
    /// what `limactl start` and the reconciler read must not drift.
    #[test]
    fn constructors_serialize_like_lima() {
        let json = |s: Status| {
            serde_json::to_string(&Event {
                time: "t".into(),
                status: s,
            })
            .unwrap()
        };
        let errs = || vec!["e1".to_string(), "e\"2".to_string()];
        assert_eq!(
            json(Status::booting(60022)),
            r#"{"time":"t","status":{"sshLocalPort":60022}}"#
        );
        assert_eq!(
            json(Status::ready(60022)),
            r#"{"time":"t","status":{"running":true,"sshLocalPort":60022}}"#
        );
        assert_eq!(
            json(Status::degraded(60022, errs())),
            r#"{"time":"t","status":{"running":true,"degraded":true,"errors":["e1","e\"2"],"sshLocalPort":60022}}"#
        );
        assert_eq!(
            json(Status::running(60022, vec![])),
            json(Status::ready(60022))
        );
        assert_eq!(
            json(Status::running(60022, errs())),
            json(Status::degraded(60022, errs()))
        );
        assert_eq!(
            json(Status::exiting(vec![])),
            r#"{"time":"t","status":{"exiting":true}}"#
        );
        assert_eq!(
            json(Status::exiting(errs())),
            r#"{"time":"t","status":{"exiting":true,"errors":["e1","e\"2"]}}"#
        );

        use ForwardProtocol::{Tcp, Udp, Unix};
        let pf = |ev: PortForwardEvent| {
            json(Status {
                port_forward: Some(ev),
                ..Status::ready(60022)
            })
        };
        let guest = || "127.0.0.1:8080".to_string();
        assert_eq!(
            pf(PortForwardEvent::forwarding(
                Tcp,
                guest(),
                "127.0.0.1:18080".into()
            )),
            r#"{"time":"t","status":{"running":true,"sshLocalPort":60022,"portForward":{"type":"forwarding","protocol":"tcp","guestAddr":"127.0.0.1:8080","hostAddr":"127.0.0.1:18080"}}}"#
        );
        assert_eq!(
            pf(PortForwardEvent::not_forwarding(Udp, guest())),
            r#"{"time":"t","status":{"running":true,"sshLocalPort":60022,"portForward":{"type":"not-forwarding","protocol":"udp","guestAddr":"127.0.0.1:8080","hostAddr":""}}}"#
        );
        assert_eq!(
            pf(PortForwardEvent::stopping(
                Unix,
                "/run/docker.sock".into(),
                "/lh/vm/sock/docker.sock".into()
            )),
            r#"{"time":"t","status":{"running":true,"sshLocalPort":60022,"portForward":{"type":"stopping","protocol":"unix","guestAddr":"/run/docker.sock","hostAddr":"/lh/vm/sock/docker.sock"}}}"#
        );
        assert_eq!(
            pf(PortForwardEvent::failed(
                Tcp,
                guest(),
                "127.0.0.1:80".into(),
                "bind: denied".into()
            )),
            r#"{"time":"t","status":{"running":true,"sshLocalPort":60022,"portForward":{"type":"failed","protocol":"tcp","guestAddr":"127.0.0.1:8080","hostAddr":"127.0.0.1:80","error":"bind: denied"}}}"#
        );
    }

    #[test]
    fn port_forward_events_carry_the_current_status() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("ha.stdout.log");
        let mut w = EventWriter::open(&p).unwrap();
        w.emit(Status::ready(60022)).unwrap();
        let ev = PortForwardEvent::forwarding(
            ForwardProtocol::Tcp,
            "127.0.0.1:8080".into(),
            "127.0.0.1:8080".into(),
        );
        w.emit_port_forward(ev.clone()).unwrap();
        let evs = read_all(&p).unwrap();
        assert_eq!(
            evs[1].status,
            Status {
                port_forward: Some(ev),
                ..Status::ready(60022)
            }
        );
    }

    #[test]
    fn reader_follows_appends_and_partial_lines() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("ha.stdout.log");
        let mut r = EventReader::from_start(&p);
        assert!(r.poll().unwrap().is_empty());
        let mut w = EventWriter::open(&p).unwrap();
        w.emit(Status::booting(1234)).unwrap();
        let evs = r.poll().unwrap();
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].status.ssh_local_port, 1234);
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(br#"{"time":"t","status":{"runn"#).unwrap();
        assert!(r.poll().unwrap().is_empty());
        f.write_all(b"ing\":true}}\n").unwrap();
        let evs = r.poll().unwrap();
        assert!(evs[0].status.running);
        assert!(evs[0].time().is_none());
    }
}
