//! Progress output: drawn under a pseudo-terminal (`script` from
//! util-linux gives the command a pty and copies what it draws), absent in a
//! pipe. No guest: an image download from a local HTTP server that sends
//! slowly, and `apply` over several `runStrategy: Halted` instances.

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::Env;

fn yaml(location: &str) -> String {
    format!(
        "images:\n- location: {location}\n  arch: x86_64\nrunStrategy: Halted\ncpus: 1\nmemory: 1GiB\ndisk: 1GiB\nmounts: []\ncontainerd: {{user: false, system: false}}\n"
    )
}

/// Serves `body` at any path, in 16 pieces a quarter of a second apart, to
/// every client: a download that lasts long enough to be drawn.
fn slow_server(body: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let body = body.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                let mut head = false;
                let mut first = true;
                loop {
                    line.clear();
                    if r.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    if first {
                        head = line.starts_with("HEAD");
                        first = false;
                    }
                }
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                if head {
                    return;
                }
                for piece in body.chunks(body.len().div_ceil(16)) {
                    if conn.write_all(piece).is_err() {
                        return;
                    }
                    let _ = conn.flush();
                    std::thread::sleep(Duration::from_millis(250));
                }
            });
        }
    });
    format!("http://{addr}/tiny.qcow2")
}

/// Runs limactl under a pseudo-terminal; returns what it drew and its
/// exit status.
fn under_pty(env: &Env, args: &[&str]) -> (bool, String) {
    let limactl = assert_cmd::cargo::cargo_bin("limactl");
    let mut line = shell_quote(limactl.to_str().unwrap());
    for a in args {
        line.push(' ');
        line.push_str(&shell_quote(a));
    }
    let out = std::process::Command::new("script")
        .args(["-qefc", &line, "/dev/null"])
        .env("LIMA_HOME", env.lima_home())
        .env("HOME", env.dir.path().join("home"))
        .env("TERM", "xterm")
        .current_dir(env.dir.path())
        .output()
        .expect("`script` (util-linux) runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn tiny(env: &Env) -> PathBuf {
    common::tiny_image(env.dir.path())
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join(format!("{name}.yaml"));
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn a_download_draws_bytes_rate_and_eta_on_a_terminal_only() {
    let env = Env::new();
    let body = std::fs::read(tiny(&env)).unwrap();
    let url = slow_server(body.clone());
    let file = write(&env.dir.path().join("src"), "dl", &yaml(&url));

    let (ok, drawn) = under_pty(&env, &["create", "--name", "dl", file.to_str().unwrap()]);
    assert!(ok, "{drawn}");
    assert!(drawn.contains("Downloading"), "{drawn}");
    assert!(drawn.contains("ETA"), "no ETA drawn: {drawn}");
    assert!(drawn.contains("/s"), "no rate drawn: {drawn}");
    assert!(drawn.contains(" KiB/"), "no byte counts drawn: {drawn}");

    // In a pipe (a fresh cache, so it downloads again): no bar.
    let env2 = Env::new();
    let file = write(&env2.dir.path().join("src"), "dl", &yaml(&url));
    let (code, _, err) = env2.run(&["create", "--name", "dl", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("ETA") && !err.contains('\r'), "{err}");
    assert!(env2.instance_dir("dl").join("basedisk").exists());
}

#[test]
fn apply_over_several_instances_draws_done_over_total_on_a_terminal_only() {
    let env = Env::new();
    let img = tiny(&env);
    let src = env.dir.path().join("fleet");
    for n in ["a", "b", "c"] {
        write(&src, n, &yaml(img.to_str().unwrap()));
    }
    let (ok, drawn) = under_pty(&env, &["apply", "-f", src.to_str().unwrap()]);
    assert!(ok, "{drawn}");
    assert!(drawn.contains("Applying ["), "{drawn}");
    assert!(drawn.contains("/3"), "{drawn}");
    for n in ["a", "b", "c"] {
        assert!(env.instance_dir(n).join("diffdisk").exists(), "{n}");
    }

    let env2 = Env::new();
    let img = tiny(&env2);
    let src = env2.dir.path().join("fleet");
    for n in ["a", "b", "c"] {
        write(&src, n, &yaml(img.to_str().unwrap()));
    }
    let (code, out, err) = env2.run(&["apply", "-f", src.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        !err.contains("Applying [") && !out.contains("Applying ["),
        "{err}"
    );
    assert!(out.contains("3 to create"), "{out}");
}
