//! The watch daemon's metrics (`apply --watch --metrics-addr ADDR`):
//! Prometheus text on `/metrics`, and `/healthz`, `/readyz` for systemd and
//! supervisors. The exposition is the `prometheus` crate's (registry, text
//! encoder, process collector); the HTTP side is a few lines of std, since
//! three GET paths need no web framework (and the daemon has no async
//! runtime).
//!
//! Counters and the duration histogram are updated by the daemon as it
//! works ([`Metrics::reconciled`], [`Metrics::retried`],
//! [`Metrics::source_synced`]); gauges that describe the state of
//! `LIMA_HOME` (instances by status and condition, backoff) are read from
//! the instances' files at scrape time through [`Snapshot`], so they are
//! never stale.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use super::execute::ExecError;
use super::outcome::ReconcileError;
use super::status::{ConditionStatus, ConditionType, InstanceStatus};
use crate::store::Status;

/// Why the metrics endpoint could not be served.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// `--metrics-addr` does not name an address.
    #[error(
        "invalid --metrics-addr {0:?}: give HOST:PORT (e.g. 127.0.0.1:9101) or a port alone (loopback)"
    )]
    Addr(String),
    /// The address cannot be listened on.
    #[error(
        "cannot serve metrics on {addr} (--metrics-addr): {source}; choose another port, or stop what listens there"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot register metric: {0}")]
    Register(#[from] prometheus::Error),
}

/// `--metrics-addr`: `HOST:PORT`, `:PORT` or `PORT` (the last two on
/// 127.0.0.1: metrics are for the machine unless an address says otherwise).
pub fn parse_addr(s: &str) -> Result<SocketAddr, MetricsError> {
    let bad = || MetricsError::Addr(s.to_string());
    let port = s.strip_prefix(':').unwrap_or(s);
    if let Ok(p) = port.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], p)));
    }
    s.to_socket_addrs()
        .map_err(|_| bad())?
        .next()
        .ok_or_else(bad)
}

/// What a scrape reads from `LIMA_HOME`: each managed instance's Lima
/// status and reconciler status.
pub struct InstanceView {
    pub name: String,
    pub status: Status,
    pub reconciler: InstanceStatus,
}

/// Gives the scrape-time view of the instances and the queue.
pub trait Snapshot: Send + Sync {
    fn instances(&self) -> Vec<InstanceView>;
    /// Keys waiting to be reconciled, and keys being reconciled.
    fn queue(&self) -> (usize, usize);
}

/// How a reconcile ended, as the `result` label says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The file does not load or another source owns the instance.
    Invalid,
    /// The plan was refused (immutable field, shrink, protected).
    Refused,
    /// Another actor held the instance's lock.
    Busy,
    Error,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Invalid => "invalid",
            Outcome::Refused => "refused",
            Outcome::Busy => "busy",
            Outcome::Error => "error",
        }
    }
}

/// The `result` label of a reconcile's result.
pub fn outcome<T>(r: &Result<T, ReconcileError>) -> Outcome {
    match r {
        Ok(_) => Outcome::Success,
        Err(ReconcileError::Entry { .. }) => Outcome::Invalid,
        Err(ReconcileError::Exec(ExecError::Refused { .. })) => Outcome::Refused,
        Err(ReconcileError::Exec(ExecError::Busy(_))) => Outcome::Busy,
        Err(ReconcileError::Exec(_)) => Outcome::Error,
    }
}

/// Whether the error policy schedules the instance again, and why (the
/// same variants [`super::outcome::error_policy`] decides by).
pub fn retry(e: &ReconcileError) -> Option<Retry> {
    match e {
        ReconcileError::Entry { .. } | ReconcileError::Exec(ExecError::Refused { .. }) => None,
        ReconcileError::Exec(ExecError::Busy(_)) => Some(Retry::Busy),
        ReconcileError::Exec(_) => Some(Retry::Error),
    }
}

/// Why an instance is tried again.
#[derive(Clone, Copy, Debug)]
pub enum Retry {
    /// A reconcile failed; retried after its backoff.
    Error,
    /// Another actor held the lock.
    Busy,
    /// The VM failed; relaunched after its backoff.
    Crash,
}

pub struct Metrics {
    registry: Registry,
    reconciles: IntCounterVec,
    duration: Histogram,
    retries: IntCounterVec,
    queue_depth: IntGauge,
    in_flight: IntGauge,
    instances: IntGaugeVec,
    conditions: IntGaugeVec,
    failures: IntGaugeVec,
    backoff: prometheus::GaugeVec,
    last_sync: prometheus::GaugeVec,
    /// Workers alive, and how many were started (`/healthz`).
    workers: AtomicUsize,
    workers_started: AtomicUsize,
    /// Set once every source was listed and the workers run (`/readyz`).
    ready: AtomicBool,
}

impl Metrics {
    pub fn new() -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        let reconciles = IntCounterVec::new(
            Opts::new(
                "lima_reconcile_total",
                "Reconciles by instance and result (success, invalid, refused, busy, error).",
            ),
            &["instance", "result"],
        )?;
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                "lima_reconcile_duration_seconds",
                "How long one reconcile took.",
            )
            .buckets(prometheus::exponential_buckets(0.005, 4.0, 9)?),
        )?;
        let retries = IntCounterVec::new(
            Opts::new(
                "lima_reconcile_retries_total",
                "Instances scheduled again after a failure (error, crash) or a busy lock (busy).",
            ),
            &["instance", "reason"],
        )?;
        let queue_depth = IntGauge::new(
            "lima_workqueue_depth",
            "Instances waiting in the work queue (due now or later).",
        )?;
        let in_flight = IntGauge::new(
            "lima_workqueue_in_flight",
            "Instances being reconciled right now.",
        )?;
        let instances = IntGaugeVec::new(
            Opts::new(
                "lima_instances",
                "Managed instances by Lima status (Running, Stopped, Broken, Unknown).",
            ),
            &["status"],
        )?;
        let conditions = IntGaugeVec::new(
            Opts::new(
                "lima_instance_condition",
                "1 for each instance's condition at its current status (True, False, Unknown).",
            ),
            &["instance", "condition", "status"],
        )?;
        let failures = IntGaugeVec::new(
            Opts::new(
                "lima_instance_backoff_failures",
                "Failures in a row counted by an instance's backoff.",
            ),
            &["instance"],
        )?;
        let backoff = prometheus::GaugeVec::new(
            Opts::new(
                "lima_instance_backoff_seconds",
                "Seconds until an instance in backoff is tried again (0: not waiting).",
            ),
            &["instance"],
        )?;
        let last_sync = prometheus::GaugeVec::new(
            Opts::new(
                "lima_source_last_sync_timestamp_seconds",
                "Unix time of the last complete listing of each source.",
            ),
            &["source"],
        )?;
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(retries.clone()))?;
        registry.register(Box::new(queue_depth.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(instances.clone()))?;
        registry.register(Box::new(conditions.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(backoff.clone()))?;
        registry.register(Box::new(last_sync.clone()))?;
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(Metrics {
            registry,
            reconciles,
            duration,
            retries,
            queue_depth,
            in_flight,
            instances,
            conditions,
            failures,
            backoff,
            last_sync,
            workers: AtomicUsize::new(0),
            workers_started: AtomicUsize::new(0),
            ready: AtomicBool::new(false),
        })
    }

    pub fn reconciled(&self, instance: &str, outcome: Outcome, took: Duration) {
        self.reconciles
            .with_label_values(&[instance, outcome.label()])
            .inc();
        self.duration.observe(took.as_secs_f64());
    }

    pub fn retried(&self, instance: &str, why: Retry) {
        let reason = match why {
            Retry::Error => "error",
            Retry::Busy => "busy",
            Retry::Crash => "crash",
        };
        self.retries.with_label_values(&[instance, reason]).inc();
    }

    /// A source was listed completely just now.
    pub fn source_synced(&self, source: &str) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        self.last_sync
            .with_label_values(&[source])
            .set(now.as_secs_f64());
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    /// A worker thread starts; the guard marks it gone when dropped (a
    /// panic included), which `/healthz` reports.
    pub fn worker(self: &Arc<Self>) -> WorkerGuard {
        self.workers.fetch_add(1, Ordering::Relaxed);
        self.workers_started.fetch_add(1, Ordering::Relaxed);
        WorkerGuard(self.clone())
    }

    /// The exposition, gauges refreshed from `snap` first.
    pub fn render(&self, snap: &dyn Snapshot) -> Vec<u8> {
        let (depth, in_flight) = snap.queue();
        self.queue_depth.set(depth as i64);
        self.in_flight.set(in_flight as i64);
        // Instances deleted since the last scrape must not linger.
        self.conditions.reset();
        self.failures.reset();
        self.backoff.reset();
        let mut by_status = [0i64; 5];
        let now = super::backoff::now();
        for v in snap.instances() {
            by_status[status_index(v.status)] += 1;
            for c in &v.reconciler.conditions {
                self.conditions
                    .with_label_values(&[
                        v.name.as_str(),
                        condition_label(c.kind),
                        status_label(c.status),
                    ])
                    .set(1);
            }
            let b = v.reconciler.backoff.clone().unwrap_or_default();
            self.failures
                .with_label_values(&[&v.name])
                .set(i64::from(b.failures));
            let wait = b.wait_left(now).unwrap_or_default();
            self.backoff
                .with_label_values(&[&v.name])
                .set(wait.as_secs_f64());
        }
        for (i, s) in ["Unknown", "Broken", "Stopped", "Running", "Suspended"]
            .iter()
            .enumerate()
        {
            self.instances.with_label_values(&[s]).set(by_status[i]);
        }
        let mut out = Vec::new();
        // Encoding into memory only fails on metric families that cannot be
        // (none of ours): an empty body then, rather than a dead endpoint.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }

    fn health(&self) -> Result<(), String> {
        let started = self.workers_started.load(Ordering::Relaxed);
        let alive = self.workers.load(Ordering::Relaxed);
        if alive < started {
            return Err(format!("{} of {started} workers died", started - alive));
        }
        Ok(())
    }
}

pub struct WorkerGuard(Arc<Metrics>);

impl Drop for WorkerGuard {
    fn drop(&mut self) {
        self.0.workers.fetch_sub(1, Ordering::Relaxed);
    }
}

fn status_index(s: Status) -> usize {
    match s {
        Status::Unknown => 0,
        Status::Broken => 1,
        Status::Stopped => 2,
        Status::Running => 3,
        Status::Suspended => 4,
    }
}

fn condition_label(c: ConditionType) -> &'static str {
    match c {
        ConditionType::Created => "Created",
        ConditionType::Running => "Running",
        ConditionType::Ready => "Ready",
        ConditionType::RestartRequired => "RestartRequired",
        ConditionType::Degraded => "Degraded",
    }
}

fn status_label(s: ConditionStatus) -> &'static str {
    match s {
        ConditionStatus::True => "True",
        ConditionStatus::False => "False",
        ConditionStatus::Unknown => "Unknown",
    }
}

/// Listens on `addr` (before the daemon starts its work, so a taken port
/// fails the start) and serves in a background thread. Returns the bound
/// address (port 0 picks one).
pub fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    snap: Arc<dyn Snapshot>,
) -> Result<SocketAddr, MetricsError> {
    let listener = TcpListener::bind(addr).map_err(|source| MetricsError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| MetricsError::Bind { addr, source })?;
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let (metrics, snap) = (metrics.clone(), snap.clone());
            // One thread per connection: a slow client never blocks a scrape.
            std::thread::spawn(move || {
                let _ = answer(conn, &metrics, snap.as_ref());
            });
        }
    });
    Ok(bound)
}

/// Longest a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

fn answer(conn: TcpStream, metrics: &Metrics, snap: &dyn Snapshot) -> std::io::Result<()> {
    conn.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    // Headers are read and ignored (a bounded number of bounded lines).
    for _ in 0..100 {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim_end().is_empty() || h.len() > 8192 {
            break;
        }
    }
    let mut words = line.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (code, ctype, body): (&str, &str, Vec<u8>) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.render(snap),
        ),
        ("GET" | "HEAD", "/healthz") => match metrics.health() {
            Ok(()) => ("200 OK", "text/plain", b"ok\n".to_vec()),
            Err(e) => (
                "503 Service Unavailable",
                "text/plain",
                format!("{e}\n").into_bytes(),
            ),
        },
        ("GET" | "HEAD", "/readyz") => {
            if metrics.ready.load(Ordering::Relaxed) && metrics.health().is_ok() {
                ("200 OK", "text/plain", b"ok\n".to_vec())
            } else {
                (
                    "503 Service Unavailable",
                    "text/plain",
                    b"not ready: the sources are not listed yet\n".to_vec(),
                )
            }
        }
        ("GET" | "HEAD", _) => (
            "404 Not Found",
            "text/plain",
            b"not found: try /metrics, /healthz or /readyz\n".to_vec(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            b"only GET and HEAD\n".to_vec(),
        ),
    };
    let mut conn = conn;
    write!(
        conn,
        "HTTP/1.1 {code}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    if method != "HEAD" {
        conn.write_all(&body)?;
    }
    conn.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_default_to_loopback() {
        assert_eq!(
            parse_addr("9101").unwrap(),
            "127.0.0.1:9101".parse().unwrap()
        );
        assert_eq!(
            parse_addr(":9101").unwrap(),
            "127.0.0.1:9101".parse().unwrap()
        );
        assert_eq!(
            parse_addr("0.0.0.0:80").unwrap(),
            "0.0.0.0:80".parse().unwrap()
        );
        let e = parse_addr("localhost:http-ish").unwrap_err().to_string();
        assert!(
            e.contains("invalid --metrics-addr") && e.contains("HOST:PORT"),
            "{e}"
        );
    }

    struct Fixed(Vec<InstanceView>);
    impl Snapshot for Fixed {
        fn instances(&self) -> Vec<InstanceView> {
            self.0
                .iter()
                .map(|v| InstanceView {
                    name: v.name.clone(),
                    status: v.status,
                    reconciler: v.reconciler.clone(),
                })
                .collect()
        }
        fn queue(&self) -> (usize, usize) {
            (3, 1)
        }
    }

    #[test]
    fn the_exposition_has_every_family_and_forgets_deleted_instances() {
        let m = Metrics::new().unwrap();
        m.reconciled("a", Outcome::Success, Duration::from_millis(20));
        m.reconciled("a", Outcome::Error, Duration::from_millis(20));
        m.retried("a", Retry::Error);
        m.source_synced("/src");
        let mut st = InstanceStatus::default();
        st.conditions.push(super::super::status::Condition {
            kind: ConditionType::Ready,
            status: ConditionStatus::False,
            reason: super::super::status::ConditionReason::NotRunning,
            message: String::new(),
            last_transition_time: String::new(),
        });
        let snap = Fixed(vec![InstanceView {
            name: "a".into(),
            status: Status::Stopped,
            reconciler: st,
        }]);
        let text = String::from_utf8(m.render(&snap)).unwrap();
        for want in [
            "lima_reconcile_total{instance=\"a\",result=\"success\"} 1",
            "lima_reconcile_total{instance=\"a\",result=\"error\"} 1",
            "lima_reconcile_duration_seconds_count 2",
            "lima_reconcile_retries_total{instance=\"a\",reason=\"error\"} 1",
            "lima_workqueue_depth 3",
            "lima_workqueue_in_flight 1",
            "lima_instances{status=\"Stopped\"} 1",
            "lima_instances{status=\"Running\"} 0",
            "lima_instance_condition{condition=\"Ready\",instance=\"a\",status=\"False\"} 1",
            "lima_instance_backoff_failures{instance=\"a\"} 0",
            "lima_source_last_sync_timestamp_seconds{source=\"/src\"}",
            "process_resident_memory_bytes",
        ] {
            assert!(text.contains(want), "{want} missing from:\n{text}");
        }
        let text = String::from_utf8(m.render(&Fixed(vec![]))).unwrap();
        assert!(!text.contains("lima_instance_condition{"), "{text}");
        assert!(
            text.contains("lima_instances{status=\"Stopped\"} 0"),
            "{text}"
        );
    }
}
