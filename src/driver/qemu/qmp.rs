//! A small blocking QMP client over a unix socket (std only).
//!
//! QMP is newline-delimited JSON: a greeting, `qmp_capabilities`, then
//! `{"execute": …, "id": n}` commands answered by `{"return"|"error": …, "id": n}`,
//! with asynchronous `{"event": …}` messages interleaved anywhere — e.g. a
//! `POWERDOWN` event may arrive before the reply to `system_powerdown`. Replies
//! are matched by id; events met on the way are kept for [`Qmp::events`].

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// How many unread events are kept; older ones are dropped.
const MAX_EVENTS: usize = 1024;
/// Default time to wait for a reply.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// The socket could not be connected within the time allowed.
    #[error("cannot connect to QMP socket {path}: {source} (gave up after {waited:?})")]
    Connect {
        path: PathBuf,
        waited: Duration,
        source: std::io::Error,
    },
    /// No reply in time.
    #[error("QMP {command:?} on {path}: no reply within {timeout:?}")]
    Timeout {
        path: PathBuf,
        command: String,
        timeout: Duration,
    },
    /// QEMU closed the connection (it exited, or another client took over).
    #[error("QMP {command:?} on {path}: connection closed by QEMU")]
    Closed { path: PathBuf, command: String },
    #[error("QMP {command:?} on {path}: {source}")]
    Io {
        path: PathBuf,
        command: String,
        source: std::io::Error,
    },
    /// QEMU answered with an error.
    #[error("QMP {command:?} on {path} failed: {class}: {desc}")]
    Command {
        path: PathBuf,
        command: String,
        class: String,
        desc: String,
    },
    /// Something that is not QMP.
    #[error("QMP {command:?} on {path}: protocol error: {message}")]
    Protocol {
        path: PathBuf,
        command: String,
        message: String,
    },
}

/// A connected, negotiated QMP session.
#[derive(Debug)]
pub struct Qmp {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    /// Bytes of a line whose end has not arrived yet (survives timeouts).
    pending: Vec<u8>,
    next_id: u64,
    events: VecDeque<Value>,
    greeting: Value,
    timeout: Duration,
}

impl Qmp {
    /// Connects to `path`, retrying while the socket does not exist or refuses
    /// (QEMU still starting) until `timeout`, then reads the greeting and
    /// negotiates capabilities. Replies are awaited for [`DEFAULT_TIMEOUT`]
    /// (at least `timeout`); see [`Qmp::set_timeout`].
    pub fn connect(path: &Path, timeout: Duration) -> Result<Qmp, QmpError> {
        let start = Instant::now();
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e)
                    if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused)
                        && start.elapsed() < timeout =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(source) => {
                    return Err(QmpError::Connect {
                        path: path.to_path_buf(),
                        waited: start.elapsed(),
                        source,
                    });
                }
            }
        };
        let io = |source| QmpError::Io {
            path: path.to_path_buf(),
            command: "connect".into(),
            source,
        };
        let writer = stream.try_clone().map_err(io)?;
        let mut q = Qmp {
            path: path.to_path_buf(),
            reader: BufReader::new(stream),
            writer,
            pending: Vec::new(),
            next_id: 1,
            events: VecDeque::new(),
            greeting: Value::Null,
            timeout: timeout.max(DEFAULT_TIMEOUT),
        };
        let deadline = Instant::now() + timeout.max(Duration::from_secs(5));
        loop {
            let msg = q.read_message("greeting", deadline)?;
            if msg.get("QMP").is_some() {
                q.greeting = msg;
                break;
            }
            q.keep_event(msg);
        }
        q.execute("qmp_capabilities", None)?;
        Ok(q)
    }

    /// The greeting (`{"QMP": {"version": …, "capabilities": …}}`).
    pub fn greeting(&self) -> &Value {
        &self.greeting
    }

    /// QEMU's version from the greeting, e.g. `(7, 2, 22)`.
    pub fn qemu_version(&self) -> Option<(u64, u64, u64)> {
        let v = &self.greeting["QMP"]["version"]["qemu"];
        Some((
            v["major"].as_u64()?,
            v["minor"].as_u64()?,
            v["micro"].as_u64()?,
        ))
    }

    /// The socket this session is connected to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How long [`Qmp::execute`] waits for a reply.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Runs `command` with optional `arguments` and returns its `return` value.
    /// Events arriving before the reply are kept (see [`Qmp::events`]).
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, QmpError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({ "execute": command, "id": id });
        if let Some(a) = arguments {
            msg["arguments"] = a;
        }
        let mut line = msg.to_string();
        line.push('\n');
        self.writer.write_all(line.as_bytes()).map_err(|source| {
            if matches!(
                source.kind(),
                ErrorKind::BrokenPipe | ErrorKind::ConnectionReset
            ) {
                QmpError::Closed {
                    path: self.path.clone(),
                    command: command.into(),
                }
            } else {
                QmpError::Io {
                    path: self.path.clone(),
                    command: command.into(),
                    source,
                }
            }
        })?;
        let deadline = Instant::now() + self.timeout;
        loop {
            let msg = self.read_message(command, deadline)?;
            if msg.get("event").is_some() {
                self.keep_event(msg);
                continue;
            }
            // A reply to an earlier command that timed out: not ours.
            match msg.get("id") {
                Some(v) if v.as_u64() != Some(id) => continue,
                _ => {}
            }
            if let Some(r) = msg.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = msg.get("error") {
                return Err(QmpError::Command {
                    path: self.path.clone(),
                    command: command.into(),
                    class: e["class"].as_str().unwrap_or("GenericError").into(),
                    desc: e["desc"].as_str().unwrap_or("").into(),
                });
            }
            return Err(self.protocol(command, format!("unexpected message {msg}")));
        }
    }

    /// Takes the events received so far (oldest first).
    pub fn events(&mut self) -> Vec<Value> {
        self.events.drain(..).collect()
    }

    /// Waits up to `timeout` for an event named `name` (e.g. `SHUTDOWN`),
    /// looking first at the events already received. Other events are kept.
    pub fn wait_event(&mut self, name: &str, timeout: Duration) -> Result<Value, QmpError> {
        if let Some(i) = self.events.iter().position(|e| e["event"] == name) {
            return Ok(self.events.remove(i).expect("index is valid"));
        }
        let deadline = Instant::now() + timeout;
        let what = format!("wait for event {name}");
        loop {
            let msg = self.read_message(&what, deadline)?;
            if msg["event"] == name {
                return Ok(msg);
            }
            if msg.get("event").is_some() {
                self.keep_event(msg);
            }
        }
    }

    /// `query-status`: the run state, e.g. `prelaunch`, `running`, `paused`.
    pub fn query_status(&mut self) -> Result<String, QmpError> {
        let r = self.execute("query-status", None)?;
        r.get("status")
            .and_then(Value::as_str)
            .map(String::from)
            .ok_or_else(|| self.protocol("query-status", format!("no status in {r}")))
    }

    /// `cont`: start (or resume) the vCPUs.
    pub fn cont(&mut self) -> Result<(), QmpError> {
        self.execute("cont", None).map(drop)
    }

    /// `system_powerdown`: press the ACPI power button.
    pub fn system_powerdown(&mut self) -> Result<(), QmpError> {
        self.execute("system_powerdown", None).map(drop)
    }

    /// `quit`: QEMU exits at once. A connection closed before the reply
    /// arrives counts as success (QEMU is gone).
    pub fn quit(&mut self) -> Result<(), QmpError> {
        match self.execute("quit", None) {
            Ok(_) | Err(QmpError::Closed { .. }) => Ok(()),
            Err(QmpError::Io { source, .. }) if source.kind() == ErrorKind::ConnectionReset => {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// `human-monitor-command`: runs an HMP command and returns its output.
    pub fn human_monitor_command(&mut self, command_line: &str) -> Result<String, QmpError> {
        let r = self.execute(
            "human-monitor-command",
            Some(json!({ "command-line": command_line })),
        )?;
        Ok(r.as_str().unwrap_or_default().to_string())
    }

    fn keep_event(&mut self, e: Value) {
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(e);
    }

    fn protocol(&self, command: &str, message: String) -> QmpError {
        QmpError::Protocol {
            path: self.path.clone(),
            command: command.into(),
            message,
        }
    }

    /// Reads one JSON message, waiting until `deadline`.
    fn read_message(&mut self, command: &str, deadline: Instant) -> Result<Value, QmpError> {
        loop {
            let line = self.read_line(command, deadline)?;
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            return serde_json::from_str(line)
                .map_err(|e| self.protocol(command, format!("invalid JSON {line:?}: {e}")));
        }
    }

    fn read_line(&mut self, command: &str, deadline: Instant) -> Result<String, QmpError> {
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(QmpError::Timeout {
                    path: self.path.clone(),
                    command: command.into(),
                    timeout: self.timeout,
                });
            }
            let remaining = (deadline - now).max(Duration::from_millis(1));
            self.reader
                .get_ref()
                .set_read_timeout(Some(remaining))
                .map_err(|source| QmpError::Io {
                    path: self.path.clone(),
                    command: command.into(),
                    source,
                })?;
            match self.reader.read_until(b'\n', &mut self.pending) {
                Ok(0) => {
                    return Err(QmpError::Closed {
                        path: self.path.clone(),
                        command: command.into(),
                    });
                }
                Ok(_) if self.pending.ends_with(b"\n") => {
                    let line = String::from_utf8_lossy(&self.pending).into_owned();
                    self.pending.clear();
                    return Ok(line);
                }
                // EOF in the middle of a line.
                Ok(_) => {
                    return Err(QmpError::Closed {
                        path: self.path.clone(),
                        command: command.into(),
                    });
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                    return Err(QmpError::Closed {
                        path: self.path.clone(),
                        command: command.into(),
                    });
                }
                Err(source) => {
                    return Err(QmpError::Io {
                        path: self.path.clone(),
                        command: command.into(),
                        source,
                    });
                }
            }
        }
    }
}

// ---- Snapshots and VNC (issue 15): HMP commands whose errors come back as
// text, and the VNC password/port. Kept apart from the core client above.

impl Qmp {
    /// An HMP command whose failure QEMU reports as output text (`savevm`,
    /// `loadvm`, `delvm` answer `Error: …` inside a successful reply):
    /// such output becomes [`QmpError::Command`]; other output is returned.
    pub fn hmp_checked(&mut self, command_line: &str) -> Result<String, QmpError> {
        let out = self.human_monitor_command(command_line)?.replace('\r', "");
        if let Some(line) = out.lines().find(|l| l.trim_start().starts_with("Error:")) {
            return Err(QmpError::Command {
                path: self.path.clone(),
                command: format!("human-monitor-command {command_line:?}"),
                class: "GenericError".into(),
                desc: line
                    .trim_start()
                    .trim_start_matches("Error:")
                    .trim()
                    .to_string(),
            });
        }
        Ok(out)
    }

    /// `change-vnc-password` (QEMU ≥ 7.0 prefers it over `set_password`).
    pub fn change_vnc_password(&mut self, password: &str) -> Result<(), QmpError> {
        self.execute("change-vnc-password", Some(json!({ "password": password })))
            .map(drop)
    }

    /// The TCP port the VNC server listens on (`query-vnc`'s `service`), when enabled.
    pub fn vnc_port(&mut self) -> Result<Option<u16>, QmpError> {
        let r = self.execute("query-vnc", None)?;
        if r["enabled"].as_bool() != Some(true) {
            return Ok(None);
        }
        Ok(r["service"].as_str().and_then(|s| s.parse().ok()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::net::UnixListener;

    /// A scripted fake QEMU: for each command received, writes the lines the
    /// script gives (with `ID` replaced by the command's id).
    fn fake_qemu(
        path: &Path,
        script: Vec<(&'static str, Vec<&'static str>)>,
    ) -> std::thread::JoinHandle<()> {
        let listener = UnixListener::bind(path).unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(
                b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, \"major\": 7}, \"package\": \"\"}, \"capabilities\": [\"oob\"]}}\r\n",
            )
            .unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            for (expect, replies) in script {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap() == 0 {
                    return;
                }
                let v: Value = serde_json::from_str(&line).unwrap();
                assert_eq!(v["execute"], expect);
                let id = v["id"].to_string();
                for reply in replies {
                    if reply == "CLOSE" {
                        return;
                    }
                    // Split writes to exercise partial-line handling.
                    let text = format!("{}\n", reply.replace("ID", &id));
                    let (a, b) = text.split_at(text.len() / 2);
                    s.write_all(a.as_bytes()).unwrap();
                    s.flush().unwrap();
                    std::thread::sleep(Duration::from_millis(5));
                    s.write_all(b.as_bytes()).unwrap();
                }
            }
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
        })
    }

    #[test]
    fn events_before_reply_are_skipped_and_kept() {
        let d = tempfile::tempdir().unwrap();
        let sock = d.path().join("qmp.sock");
        let server = fake_qemu(
            &sock,
            vec![
                ("qmp_capabilities", vec![r#"{"return": {}, "id": ID}"#]),
                (
                    "query-status",
                    vec![r#"{"return": {"status": "prelaunch", "running": false}, "id": ID}"#],
                ),
                (
                    "system_powerdown",
                    vec![
                        r#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "POWERDOWN"}"#,
                        r#"{"return": {}, "id": 999}"#,
                        r#"{"return": {}, "id": ID}"#,
                    ],
                ),
                (
                    "human-monitor-command",
                    vec![r#"{"return": "QEMU 7.2.22\r\n", "id": ID}"#],
                ),
                (
                    "cont",
                    vec![r#"{"error": {"class": "GenericError", "desc": "nope"}, "id": ID}"#],
                ),
                ("quit", vec!["CLOSE"]),
            ],
        );
        let mut q = Qmp::connect(&sock, Duration::from_secs(5)).unwrap();
        assert_eq!(q.qemu_version(), Some((7, 2, 22)));
        assert_eq!(q.query_status().unwrap(), "prelaunch");
        q.system_powerdown().unwrap();
        assert_eq!(
            q.human_monitor_command("info version").unwrap(),
            "QEMU 7.2.22\r\n"
        );
        let err = q.cont().unwrap_err().to_string();
        assert!(
            err.contains("\"cont\"") && err.contains("qmp.sock") && err.contains("nope"),
            "{err}"
        );
        let ev = q.events();
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0]["event"], "POWERDOWN");
        q.quit().unwrap();
        server.join().unwrap();
    }

    #[test]
    fn connect_waits_for_the_socket_then_gives_up() {
        let d = tempfile::tempdir().unwrap();
        let sock = d.path().join("qmp.sock");
        let t = Instant::now();
        let err = Qmp::connect(&sock, Duration::from_millis(200)).unwrap_err();
        assert!(t.elapsed() >= Duration::from_millis(200));
        assert!(err.to_string().contains("qmp.sock"), "{err}");

        // The socket appears a little later: connect still succeeds.
        let sock2 = sock.clone();
        let late = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            fake_qemu(
                &sock2,
                vec![("qmp_capabilities", vec![r#"{"return": {}, "id": ID}"#])],
            )
        });
        let q = Qmp::connect(&sock, Duration::from_secs(5)).unwrap();
        drop(q);
        late.join().unwrap().join().unwrap();
    }

    #[test]
    fn timeout_names_socket_and_command() {
        let d = tempfile::tempdir().unwrap();
        let sock = d.path().join("qmp.sock");
        let server = fake_qemu(
            &sock,
            vec![
                ("qmp_capabilities", vec![r#"{"return": {}, "id": ID}"#]),
                ("query-status", vec![]),
            ],
        );
        let mut q = Qmp::connect(&sock, Duration::from_secs(5)).unwrap();
        q.set_timeout(Duration::from_millis(100));
        let err = q.query_status().unwrap_err();
        assert!(matches!(err, QmpError::Timeout { .. }));
        let msg = err.to_string();
        assert!(
            msg.contains("query-status") && msg.contains("qmp.sock"),
            "{msg}"
        );
        drop(q);
        server.join().unwrap();
    }
}
