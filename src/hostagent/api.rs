//! The host agent's REST API on `ha.sock` (reference §4.2): plain HTTP/1.1
//! over a unix socket; `GET /v1/info` → `{"sshLocalPort":N}`.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::sync::MutexExt;

/// What `/v1/info` reports.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Info {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub auto_started_identifier: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ssh_local_port: u16,
}

fn is_zero(p: &u16) -> bool {
    *p == 0
}

/// Serves the API on `path` (0600) in a background thread.
pub fn serve(path: &Path, info: Arc<Mutex<Info>>) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    crate::logging::spawn_in_span(move || {
        for conn in listener.incoming().flatten() {
            let info = info.clone();
            crate::logging::spawn_in_span(move || {
                let _ = handle(conn, &info);
            });
        }
    });
    Ok(())
}

fn respond(
    mut s: &UnixStream,
    code: u16,
    reason: &str,
    ctype: &str,
    body: &str,
    extra: &str,
) -> std::io::Result<()> {
    write!(
        s,
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
        body.len()
    )
}

fn handle(conn: UnixStream, info: &Mutex<Info>) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(&conn);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Drain headers.
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("");
    let target = parts.next().unwrap_or("");
    let path = target.split('?').next().unwrap_or("");
    match path {
        "/v1/info" => {
            if method != "GET" {
                return respond(
                    &conn,
                    405,
                    "Method Not Allowed",
                    "text/plain",
                    "",
                    "Allow: GET\r\n",
                );
            }
            let body = serde_json::to_string(&*info.locked()).expect("info serializes");
            respond(&conn, 200, "OK", "application/json", &body, "")
        }
        "/v1/screenshot" => respond(
            &conn,
            501,
            "Not Implemented",
            "application/json",
            r#"{"message":"the QEMU driver cannot take screenshots"}"#,
            "",
        ),
        _ => respond(
            &conn,
            404,
            "Not Found",
            "text/plain; charset=utf-8",
            "404 page not found\n",
            "",
        ),
    }
}

/// `GET /v1/info` over `ha.sock`, with a timeout.
pub fn get_info(path: &Path, timeout: Duration) -> Result<Info, String> {
    let mut s = UnixStream::connect(path)
        .map_err(|e| format!("failed to get Info from {}: {e}", path.display()))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET /v1/info HTTP/1.1\r\nHost: lima-hostagent\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).map_err(|e| e.to_string())?;
    let (head, body) = resp
        .split_once("\r\n\r\n")
        .ok_or("malformed HTTP response")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!(
            "unexpected response: {}",
            head.lines().next().unwrap_or("")
        ));
    }
    serde_json::from_str(body).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_info_and_404() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("ha.sock");
        let info = Arc::new(Mutex::new(Info {
            ssh_local_port: 60022,
            ..Default::default()
        }));
        serve(&p, info.clone()).unwrap();
        assert_eq!(
            get_info(&p, Duration::from_secs(5)).unwrap().ssh_local_port,
            60022
        );
        info.locked().ssh_local_port = 1;
        assert_eq!(
            get_info(&p, Duration::from_secs(5)).unwrap().ssh_local_port,
            1
        );
        let mut s = UnixStream::connect(&p).unwrap();
        s.write_all(b"GET /nope HTTP/1.1\r\n\r\n").unwrap();
        let mut r = String::new();
        s.read_to_string(&mut r).unwrap();
        assert!(r.starts_with("HTTP/1.1 404"), "{r}");
        let mut s = UnixStream::connect(&p).unwrap();
        s.write_all(b"POST /v1/info HTTP/1.1\r\n\r\n").unwrap();
        let mut r = String::new();
        s.read_to_string(&mut r).unwrap();
        assert!(r.starts_with("HTTP/1.1 405"), "{r}");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
