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

    #[test]
    fn reader_follows_appends_and_partial_lines() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("ha.stdout.log");
        let mut r = EventReader::from_start(&p);
        assert!(r.poll().unwrap().is_empty());
        let mut w = EventWriter::open(&p).unwrap();
        w.emit(Status {
            ssh_local_port: 1234,
            ..Default::default()
        })
        .unwrap();
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
