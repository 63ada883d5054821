//! The watch daemon's `/metrics`, `/healthz` and `/readyz`
//! (`apply --watch --metrics-addr`), over a directory of `runStrategy:
//! Halted` instances (no guest). The exposition is checked by Prometheus'
//! own `promtool check metrics`.

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Env, http_get, logged_metrics_addr, metric_sample};

fn yaml(image: &Path, cpus: u32) -> String {
    format!(
        "images:\n- location: {}\n  arch: x86_64\nrunStrategy: Halted\ncpus: {cpus}\nmemory: 1GiB\ndisk: 1GiB\nmounts: []\ncontainerd: {{user: false, system: false}}\n",
        image.display()
    )
}

/// A daemon with its stderr collected; killed when dropped.
struct Daemon {
    child: Child,
    stderr: Arc<Mutex<String>>,
}

impl Daemon {
    fn start(env: &Env, src: &Path, metrics_addr: &str) -> Daemon {
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("limactl"))
            .env("LIMA_HOME", env.lima_home())
            .env("HOME", env.dir.path().join("home"))
            .args([
                "apply",
                "--watch",
                "--resync",
                "2s",
                "--metrics-addr",
                metrics_addr,
                "-f",
            ])
            .arg(src)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Daemon { child, stderr }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The address from `Serving metrics on http://ADDR/metrics`.
    fn metrics_addr(&self) -> SocketAddr {
        let mut addr = None;
        wait_for("the metrics address to be logged", || {
            addr = logged_metrics_addr(&self.stderr(), 1);
            addr.is_some()
        });
        addr.unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn promtool_check(text: &str) {
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) is installed: run hack/install-deps.sh");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- exposition:\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn metrics_of_a_daemon_move_with_its_work_and_pass_promtool() {
    let env = Env::new();
    let img = common::tiny_image(env.dir.path());
    let src = env.dir.path().join("watched");
    std::fs::create_dir_all(&src).unwrap();
    for n in ["a", "b"] {
        std::fs::write(src.join(format!("{n}.yaml")), yaml(&img, 1)).unwrap();
    }
    let d = Daemon::start(&env, &src, "127.0.0.1:0");
    let addr = d.metrics_addr();
    assert!(addr.ip().is_loopback());

    wait_for("/readyz", || http_get(addr, "/readyz").0 == 200);
    assert_eq!(http_get(addr, "/healthz"), (200, "ok\n".to_string()));
    assert_eq!(http_get(addr, "/nothing").0, 404);

    let success = r#"lima_reconcile_total{instance="a",result="success"}"#;
    let mut text = String::new();
    wait_for("both instances created and counted", || {
        text = http_get(addr, "/metrics").1;
        metric_sample(&text, r#"lima_instances{status="Stopped"}"#) == Some(2.0)
            && metric_sample(&text, success).is_some()
    });
    promtool_check(&text);
    for family in [
        "lima_reconcile_duration_seconds_bucket",
        "lima_workqueue_depth",
        "lima_workqueue_in_flight",
        "lima_instance_condition{",
        "lima_instance_backoff_failures{instance=\"a\"}",
        "lima_instance_backoff_seconds{instance=\"a\"}",
        "lima_source_last_sync_timestamp_seconds{",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
    ] {
        assert!(text.contains(family), "{family} missing:\n{text}");
    }
    assert_eq!(
        metric_sample(
            &text,
            r#"lima_instance_condition{condition="Created",instance="a",status="True"}"#
        ),
        Some(1.0),
        "{text}"
    );
    let before = metric_sample(&text, success).unwrap();
    let durations = metric_sample(&text, "lima_reconcile_duration_seconds_count").unwrap();

    // A change: a's reconcile count moves, the histogram with it.
    std::fs::write(src.join("a.yaml"), yaml(&img, 2)).unwrap();
    wait_for("a's change to be counted", || {
        text = http_get(addr, "/metrics").1;
        metric_sample(&text, success).is_some_and(|v| v > before)
    });
    assert!(metric_sample(&text, "lima_reconcile_duration_seconds_count").unwrap() > durations);

    // A file that does not load: counted as invalid, not as a success.
    std::fs::write(src.join("b.yaml"), "cpus: [\n").unwrap();
    let invalid = r#"lima_reconcile_total{instance="b",result="invalid"}"#;
    wait_for("b's bad file to be counted", || {
        text = http_get(addr, "/metrics").1;
        metric_sample(&text, invalid).is_some_and(|v| v >= 1.0)
    });
    // A deleted instance (no --prune: gone by hand) leaves no per-instance gauges.
    env.ok(&["delete", "-f", "b"]);
    std::fs::remove_file(src.join("b.yaml")).unwrap();
    wait_for("b's gauges to go", || {
        text = http_get(addr, "/metrics").1;
        !text.contains(r#"lima_instance_condition{condition="Created",instance="b""#)
            && metric_sample(&text, r#"lima_instances{status="Stopped"}"#) == Some(1.0)
    });
    promtool_check(&text);
    assert!(!d.stderr().contains("panicked"), "{}", d.stderr());
}

#[test]
fn the_metrics_address_is_checked_and_passed_to_the_systemd_unit() {
    let env = Env::new();
    let src = env.dir.path().join("watched");
    std::fs::create_dir_all(&src).unwrap();
    let src = src.to_str().unwrap();

    let out = env.ok(&[
        "apply",
        "--watch",
        "--systemd-unit",
        "--metrics-addr",
        "9101",
        "-f",
        src,
    ]);
    let exec = out.lines().find(|l| l.starts_with("ExecStart=")).unwrap();
    assert!(exec.contains(" --metrics-addr 127.0.0.1:9101"), "{exec}");
    let out = env.ok(&["apply", "--watch", "--systemd-unit", "-f", src]);
    assert!(!out.contains("--metrics-addr"), "{out}");

    let (code, _, err) = env.run(&["apply", "--watch", "--metrics-addr", "nowhere", "-f", src]);
    assert_eq!(code, 1);
    assert!(
        err.contains("invalid --metrics-addr") && err.contains("HOST:PORT"),
        "{err}"
    );

    // A port in use fails the start, naming the address.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, _, err) = env.run(&["apply", "--watch", "--metrics-addr", &addr, "-f", src]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("cannot serve metrics on {addr}"))
            && err.contains("choose another port"),
        "{err}"
    );
}
