//! `limactl apply -f DIR --watch`: the daemon that keeps `LIMA_HOME` converged
//! with a directory of `lima.yaml` files.
//!
//! Level-triggered: file events (inotify, debounced per file: 50 ms by
//! default, coalescing an editor's write bursts), VM deaths
//! (the liveness locks, probed every 250 ms) and a periodic resync only
//! *enqueue* an instance name; a worker then re-reads the file, re-observes
//! the instance and converges it like `apply`, never two workers on one
//! instance. Reconciles are short: a start returns once QEMU runs, and a
//! booting guest is looked at again later ([`STARTING_RECHECK`]), so one
//! slow boot never holds a worker. A reconcile returns a typed [`Requeue`];
//! its errors go through [`outcome::error_policy`]. A file that does not
//! load never leads to an action: its error goes on the instance's status.
//! With `--prune`, an instance whose file is gone is first marked pending
//! deletion, and deleted only once the file has stayed gone for
//! `--prune-grace` and a fresh listing of its directory confirms it (a
//! `git checkout` or a non-atomic copy removes a file for a moment); its
//! return cancels the deletion. The pending state lives in this daemon's
//! memory (and `status.json`, for `limactl status`): a new daemon starts
//! the grace period again.
//! The daemon holds `_daemon/lock` for its life (one daemon per
//! `LIMA_HOME`) and owns no VM: killing it stops nothing, and a new daemon
//! simply observes the running host agents (adoption).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::backoff::{self, Failure};
use super::controller::{Queue, When};
use super::metrics::{self, Metrics, Retry};
use super::ops::{self, Ctx};
use super::outcome::{self, ReconcileError, Requeue};
use super::plan::{Action, PowerState};
use super::power::{self, LastExit};
use super::source::{Claim, Source, Sources, instance_name, is_shared_part};
use super::status::{self, ConditionType};
use super::{ExecOptions, PlanOptions, journal};
use crate::spec::yaml::quote_name;
use crate::store::paths::files;
use crate::store::{self, Home, Status};
use crate::sync::MutexExt;

mod git;
mod systemd;
pub use systemd::systemd_unit;

/// Where the daemon keeps its lock and pid.
pub const DAEMON_DIR: &str = "_daemon";

/// How often a booting guest is looked at again (its Ready condition).
pub const STARTING_RECHECK: Duration = Duration::from_secs(5);

/// How long a VM must run before its past failures are forgotten.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
pub struct DaemonOptions {
    pub sources: Vec<PathBuf>,
    pub prune: bool,
    pub plan: PlanOptions,
    pub exec: ExecOptions,
    pub parallel: usize,
    /// Re-observe every instance this often, whatever the events say.
    pub resync: Duration,
    /// Quiet time after a file's last change before it is read.
    pub debounce: Duration,
    /// Longest wait between restarts of a crashing VM.
    pub backoff_cap: Duration,
    /// With `prune`: how long an instance's file must stay gone before the
    /// instance is deleted.
    pub prune_grace: Duration,
    /// How often Git sources are fetched (SIGHUP fetches at once).
    pub git_interval: Duration,
    /// Where to serve `/metrics`, `/healthz` and `/readyz` (none: nowhere).
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// How long a host agent may outlive its QEMU before the daemon acts: after
/// a guest powers itself off, its host agent cleans up and exits with an
/// event saying how the run ended, which decides what `runStrategy` wants.
const SETTLE: Duration = Duration::from_secs(15);

struct Daemon {
    ctx: Ctx,
    /// A Git source is replaced by its new commit's snapshot when it moves;
    /// each reconcile works on one copy ([`Daemon::sources`]).
    sources: Mutex<Sources>,
    opts: DaemonOptions,
    queue: Queue,
    /// Since when each instance's host agent has been seen without its QEMU.
    orphaned_agents: Mutex<HashMap<String, Instant>>,
    /// Since when each instance's file has been seen gone (pending prune).
    pending_prunes: Mutex<HashMap<String, Instant>>,
    metrics: Arc<Metrics>,
}

/// What crash-loop protection says about a declared instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Crash {
    /// Its last run did not fail (or it should not run).
    None,
    /// Its last run failed: relaunch it now.
    Relaunch,
    /// Its last run failed: relaunch it after this long.
    Wait(Duration),
}

/// Takes the one-per-`LIMA_HOME` daemon lock.
pub fn lock_daemon(home: &Home) -> anyhow::Result<store::lock::Held> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = home.root.join(DAEMON_DIR);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    let held = store::lock::try_exclusive_patient(&dir.join("lock"))?;
    let Some(held) = held else {
        let pid = store::instance::read_pid(&dir.join("pid"))
            .map(|p| format!(" (pid {p})"))
            .unwrap_or_default();
        bail!(
            "another `limactl apply --watch`{pid} is already running for LIMA_HOME {}; stop it first (one daemon per LIMA_HOME)",
            quote_name(&home.root.display().to_string())
        );
    };
    store::atomic::write(
        &dir.join("pid"),
        format!("{}\n", std::process::id()).as_bytes(),
        0o600,
    )?;
    Ok(held)
}

/// Runs the daemon until SIGINT/SIGTERM.
pub fn run(home: &Home, opts: DaemonOptions) -> anyhow::Result<()> {
    let _lock = lock_daemon(home)?;
    let mut sources = Vec::new();
    for s in &opts.sources {
        let source = Source::open(home, s)
            .with_context(|| format!("cannot watch {}", quote_name(&s.display().to_string())))?;
        sources.push(source);
    }
    let mut sigs = nix::sys::signal::SigSet::empty();
    for s in [
        nix::sys::signal::Signal::SIGINT,
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGHUP,
    ] {
        sigs.add(s);
    }
    sigs.thread_block()?;

    let d = Arc::new(Daemon {
        ctx: Ctx::new(home.clone()),
        sources: Mutex::new(Sources(sources)),
        opts,
        queue: Queue::new(),
        orphaned_agents: Mutex::new(HashMap::new()),
        pending_prunes: Mutex::new(HashMap::new()),
        metrics: Arc::new(Metrics::new()?),
    });
    if let Some(addr) = d.opts.metrics_addr {
        let bound = metrics::serve(addr, d.metrics.clone(), d.clone())?;
        crate::info!("Serving metrics on http://{bound}/metrics (and /healthz, /readyz)");
    }
    crate::info!(
        "Watching {} (resync every {}s, {} workers{})",
        d.sources()
            .iter()
            .map(|s| quote_name(&s.describe()))
            .collect::<Vec<_>>()
            .join(", "),
        d.opts.resync.as_secs(),
        d.opts.parallel,
        if d.opts.prune {
            format!(", prune after {:?} gone", d.opts.prune_grace)
        } else {
            String::new()
        }
    );

    let _watcher = d.watch_files()?;
    d.enqueue_all(When::Now);
    {
        let d = d.clone();
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(d.opts.resync);
                d.enqueue_all(When::Now);
            }
        });
    }
    {
        let d = d.clone();
        std::thread::spawn(move || d.watch_liveness());
    }
    let (fetch_now, fetch_requests) = std::sync::mpsc::channel::<()>();
    if d.sources().iter().any(|s| s.git.is_some()) {
        d.record_sources(&d.sources(), &BTreeMap::new());
        let d = d.clone();
        std::thread::spawn(move || {
            // Every interval, or at once on SIGHUP.
            while !matches!(
                fetch_requests.recv_timeout(d.opts.git_interval),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected)
            ) {
                d.refresh_git();
            }
        });
    }
    for _ in 0..d.opts.parallel.max(1) {
        let d = d.clone();
        let alive = d.metrics.worker();
        std::thread::spawn(move || {
            let _alive = alive;
            while let Some(name) = d.queue.next() {
                let requeue = d.reconcile(&name);
                d.queue.done(&name);
                if let Requeue::After(after) = requeue {
                    d.queue.add(&name, When::After(after));
                }
            }
        });
    }
    d.metrics.set_ready();
    let sig = loop {
        let sig = sigs.wait()?;
        if sig != nix::sys::signal::Signal::SIGHUP {
            break sig;
        }
        crate::info!("Received SIGHUP: fetching the Git sources and observing every instance");
        let _ = fetch_now.send(());
        d.enqueue_all(When::Now);
    };
    // Every step is safe to interrupt: nothing needs to finish. Host agents
    // run in their own sessions and keep their VMs.
    crate::info!("Received {sig}, stopping the daemon (the VMs keep running)");
    d.queue.shutdown();
    Ok(())
}

impl Daemon {
    /// The sources now (each Git source at one commit).
    fn sources(&self) -> Sources {
        self.sources.locked().clone()
    }

    /// Names the daemon is responsible for: declared, or owned by a source.
    fn all_names(&self) -> Vec<String> {
        let sources = self.sources();
        let mut names: Vec<String> = sources.iter().flat_map(Source::names).collect();
        names.extend(sources.owned_instances(&self.ctx.home));
        names.sort();
        names.dedup();
        names
    }

    fn enqueue_all(&self, when: When) {
        for s in self.sources().iter() {
            if s.files().is_ok_and(|l| l.is_complete()) {
                self.metrics.source_synced(&s.id);
            }
        }
        for n in self.all_names() {
            self.queue.add(&n, when);
        }
    }

    fn watch_files(self: &Arc<Self>) -> anyhow::Result<notify::RecommendedWatcher> {
        use notify::Watcher;
        let d = self.clone();
        let mut w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let Ok(ev) = res else {
                // Queue overflow or a watch error: fall back to a full resync.
                d.enqueue_all(When::Now);
                return;
            };
            if ev.need_rescan() {
                d.enqueue_all(When::Now);
                return;
            }
            if matches!(ev.kind, notify::EventKind::Access(_)) {
                return;
            }
            let sources = d.sources();
            for p in &ev.paths {
                let Some(src) = sources.iter().find(|s| s.concerns(p)) else {
                    continue;
                };
                if is_shared_part(p) {
                    // A shared part changed: every instance of the source may depend on it.
                    for n in src.names() {
                        d.queue.add(&n, When::Debounce(d.opts.debounce));
                    }
                } else if let Some(n) = instance_name(p) {
                    // The file was there again, however briefly: a pending
                    // prune's grace period starts over if it is gone again.
                    d.pending_prunes.locked().remove(&n);
                    d.queue.add(&n, When::Debounce(d.opts.debounce));
                }
            }
        })?;
        // A Git snapshot never changes: it is fetched, not watched.
        let sources = self.sources();
        let mut dirs: Vec<&Path> = sources
            .iter()
            .filter(|s| s.git.is_none())
            .map(Source::dir)
            .collect();
        dirs.dedup();
        for dir in dirs {
            w.watch(dir, notify::RecursiveMode::NonRecursive)
                .with_context(|| format!("cannot watch {}", dir.display()))?;
        }
        Ok(w)
    }

    /// Enqueues an instance as soon as its host agent or QEMU appears or dies.
    fn watch_liveness(&self) {
        let mut last: BTreeMap<String, store::instance::Liveness> = BTreeMap::new();
        loop {
            for n in self.all_names() {
                let live = store::instance::Liveness::probe(&self.ctx.home.instance_dir(&n));
                if last.get(&n) != Some(&live) {
                    if last.contains_key(&n) {
                        self.queue.add(&n, When::Now);
                    }
                    last.insert(n, live);
                }
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn record_error(&self, name: &str, message: &str) {
        let dir = self.ctx.home.instance_dir(name);
        crate::error!("{message}");
        if dir.is_dir() {
            journal::record_error(&dir, name, message);
            let mut s = status::read(&dir);
            if s.last_error.as_deref() != Some(message) {
                s.last_error = Some(message.to_string());
                let _ = status::write(&dir, &s);
            }
        }
    }

    /// One level-triggered reconcile; failures go through the error policy.
    fn reconcile(&self, name: &str) -> Requeue {
        let _span = crate::logging::instance_span(name).entered();
        let started = Instant::now();
        let result = self.try_reconcile(name);
        self.metrics
            .reconciled(name, metrics::outcome(&result), started.elapsed());
        let err = match result {
            Ok(requeue) => return requeue,
            Err(e) => e,
        };
        self.record_error(name, &err.to_string());
        let dir = self.ctx.home.instance_dir(name);
        let mut st = status::read(&dir);
        let mut b = st.backoff.clone().unwrap_or_default();
        let requeue = outcome::error_policy(&err, &mut b, self.opts.backoff_cap, backoff::now());
        if let Some(why) = metrics::retry(&err) {
            self.metrics.retried(name, why);
        }
        if dir.is_dir() && st.backoff.as_ref() != Some(&b) {
            st.backoff = Some(b);
            let _ = status::write(&dir, &st);
        }
        requeue
    }

    fn try_reconcile(&self, name: &str) -> Result<Requeue, ReconcileError> {
        let ctx = &self.ctx;
        let observed = store::inspect(&ctx.home, &ctx.env, name);
        // One copy for the whole reconcile: one commit of each Git source.
        let sources = self.sources();
        match sources.claim(name, observed.owner.as_deref()) {
            Claim::Declared { source, file } => {
                self.cancel_prune(name, "a file declares it again");
                self.reconcile_declared(name, source, file)
            }
            Claim::Orphan { source } if self.opts.prune && observed.dir_exists => {
                self.prune(name, source)
            }
            Claim::Unlisted { error, .. } if self.opts.prune && observed.dir_exists => {
                // Unknown is not gone: a pending prune waits for a listing.
                self.record_error(name, &format!("not pruned: {error}"));
                Ok(Requeue::AwaitChange)
            }
            Claim::Unlisted { .. } => Ok(Requeue::AwaitChange),
            Claim::Orphan { .. } | Claim::Unmanaged => {
                self.cancel_prune(name, "no source prunes it any more");
                Ok(Requeue::AwaitChange)
            }
        }
    }

    /// An owned instance whose file is gone: pending deletion first; deleted
    /// once the file has stayed gone for the grace period and a fresh
    /// listing of the directory confirms it.
    fn prune(&self, name: &str, source: &Source) -> Result<Requeue, ReconcileError> {
        let grace = self.opts.prune_grace;
        let since = self.mark_prune_pending(name, source);
        let left = grace.saturating_sub(since.elapsed());
        if !left.is_zero() {
            return Ok(Requeue::After(left));
        }
        match source.files() {
            // Back since the claim: the next reconcile cancels the deletion.
            Ok(l) if l.declares(name) => return Ok(Requeue::After(Duration::ZERO)),
            Ok(l) if l.is_complete() => {}
            Ok(l) => {
                let e = super::source::SourceError::Incomplete {
                    path: source.id.clone(),
                    errors: l.errors,
                };
                self.record_error(name, &format!("not pruned: {e}"));
                return Ok(Requeue::AwaitChange);
            }
            Err(e) => {
                self.record_error(name, &format!("not pruned: {e}"));
                return Ok(Requeue::AwaitChange);
            }
        }
        crate::info!(
            "its file has been gone from {} for {grace:?}; deleting it (--prune)",
            quote_name(&source.id)
        );
        let popts = ops::apply::pruning(&self.opts.plan);
        ops::converge(&self.ctx, name, None, &popts, &self.opts.exec, &mut |_| {})?;
        self.pending_prunes.locked().remove(name);
        Ok(Requeue::AwaitChange)
    }

    /// Since when the instance's file has been gone; the first time, says
    /// so in the log, the journal and the status.
    fn mark_prune_pending(&self, name: &str, source: &Source) -> Instant {
        let since = {
            let mut pending = self.pending_prunes.locked();
            if let Some(since) = pending.get(name) {
                return *since;
            }
            let now = Instant::now();
            pending.insert(name.to_string(), now);
            now
        };
        let grace = self.opts.prune_grace;
        let wall = chrono::Local::now();
        let at = wall + chrono::Duration::from_std(grace).unwrap_or_default();
        let reason = format!(
            "its file is gone from {}; deleting it at {} unless the file returns (--prune-grace {grace:?})",
            quote_name(&source.id),
            at.format("%H:%M:%S")
        );
        crate::info!("{reason}");
        let dir = self.ctx.home.instance_dir(name);
        journal::record_note(&dir, name, "pending", "delete", &reason);
        let rfc = |t: chrono::DateTime<chrono::Local>| {
            t.to_rfc3339_opts(chrono::SecondsFormat::Millis, false)
        };
        let mut st = status::read(&dir);
        st.pending_deletion = Some(status::PendingDeletion {
            since: rfc(wall),
            delete_after: rfc(at),
            reason,
        });
        let _ = status::write(&dir, &st);
        since
    }

    /// Cancels a pending deletion (this daemon's, or a previous one's still
    /// in the status), saying why.
    fn cancel_prune(&self, name: &str, why: &str) {
        let pending = self.pending_prunes.locked().remove(name).is_some();
        let dir = self.ctx.home.instance_dir(name);
        let mut st = status::read(&dir);
        if !pending && st.pending_deletion.is_none() {
            return;
        }
        crate::info!("pending deletion cancelled: {why}");
        journal::record_note(&dir, name, "cancelled", "delete", why);
        if st.pending_deletion.take().is_some() {
            let _ = status::write(&dir, &st);
        }
    }

    fn reconcile_declared(
        &self,
        name: &str,
        source: &Source,
        file: PathBuf,
    ) -> Result<Requeue, ReconcileError> {
        let ctx = &self.ctx;
        let entry = source.load(&ctx.home, &file, name, &ctx.env);
        for w in &entry.warnings {
            crate::warn!("{w}");
        }
        let not_applied = |error| ReconcileError::Entry {
            file: file.clone(),
            error,
        };
        // A partial or broken file never leads to an action.
        let desired = entry.desired.map_err(not_applied)?;
        let observed = store::inspect(&ctx.home, &ctx.env, name);
        source
            .check_owner(name, observed.owner.as_deref())
            .map_err(not_applied)?;
        if let Some(wait) = self.settling(name, &observed) {
            return Ok(Requeue::After(wait));
        }
        let desired = ops::apply::with_power(desired, &observed);
        let crash = self.crash_backoff(&observed, desired.power);
        if let Crash::Wait(wait) = crash {
            return Ok(Requeue::After(wait));
        }

        let plan = ops::converge(
            ctx,
            name,
            Some(&desired),
            &self.opts.plan,
            &self.opts.exec,
            &mut |_| {},
        )?;
        if plan.is_empty() {
            // Nothing ran, so nothing recorded the status: keep it current
            // (a guest that became Ready, an old error that is history).
            status::record(&ctx.home, name, None);
        } else {
            crate::info!(
                "converged ({})",
                plan.steps
                    .iter()
                    .map(|s| s.action.verb())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let dir = ctx.home.instance_dir(name);
        let mut st = status::read(&dir);
        if crash == Crash::Relaunch && plan.steps.iter().any(|s| s.action == Action::Start) {
            // A recorded fact, unlike the backoff which a healthy run resets.
            st.restarts += 1;
            let _ = status::write(&dir, &st);
        }
        if observed.status == Status::Running {
            self.maybe_reset_backoff(&dir, &mut st);
        }
        // Look again while booting (readiness) and while failures are
        // remembered (to forget them once the VM has run for a while).
        let mut requeue = Requeue::AwaitChange;
        let running = store::instance::Liveness::probe(&dir).host_agent;
        if running && !st.is_true(ConditionType::Ready) {
            requeue = requeue.min(Requeue::After(STARTING_RECHECK));
        }
        if st.backoff.as_ref().is_some_and(|b| b.is_failing()) {
            requeue = requeue.min(Requeue::After(HEALTHY_AFTER / 2));
        }
        Ok(requeue)
    }

    /// A host agent alive without its QEMU is, for a while, one finishing
    /// its run: acting now would take a clean guest poweroff for a crash.
    /// Returns how soon to look again while it settles.
    fn settling(&self, name: &str, observed: &store::Instance) -> Option<Duration> {
        let mut orphaned = self.orphaned_agents.locked();
        if !observed.liveness.host_agent || observed.liveness.qemu {
            orphaned.remove(name);
            return None;
        }
        let since = *orphaned
            .entry(name.to_string())
            .or_insert_with(Instant::now);
        (since.elapsed() < SETTLE).then_some(Duration::from_secs(1))
    }

    /// Crash-loop protection: a failed run (QEMU gone under a live host
    /// agent, or the host agent gone without a clean exit) is counted once;
    /// the first relaunch is immediate, then the wait doubles (with jitter)
    /// up to the cap. Says whether a failed run is to be relaunched, and when.
    fn crash_backoff(&self, observed: &store::Instance, power: Option<PowerState>) -> Crash {
        if !observed.dir_exists
            || power != Some(PowerState::Running)
            || observed.status == Status::Running
        {
            return Crash::None;
        }
        let dir = &observed.dir;
        let why = match power::last_exit(dir, observed.liveness.host_agent) {
            LastExit::Failed(why) => why,
            _ if observed.status == Status::Broken => observed.errors.join("; "),
            _ => return Crash::None,
        };
        // Each run is keyed by the time it started.
        let run = std::fs::metadata(dir.join(files::STARTED_SPEC))
            .and_then(|m| m.modified())
            .map(|t| format!("{t:?}"))
            .unwrap_or_default();
        let mut st = status::read(dir);
        let mut b = st.backoff.clone().unwrap_or_default();
        let now = backoff::now();
        let (counted, wait) = b.fail(
            Failure::Crash { run: &run },
            why,
            self.opts.backoff_cap,
            now,
        );
        if counted {
            self.metrics.retried(&observed.name, Retry::Crash);
            crate::warn!(
                "the VM failed ({}); relaunching {}",
                b.reason,
                if wait.is_zero() {
                    "now".to_string()
                } else {
                    format!(
                        "in {:.1}s (failure {} in a row)",
                        wait.as_secs_f64(),
                        b.failures
                    )
                }
            );
            st.backoff = Some(b.clone());
            let _ = status::write(dir, &st);
        }
        match b.wait_left(now) {
            Some(wait) => Crash::Wait(wait),
            None => Crash::Relaunch,
        }
    }

    /// Running for a while again: forget past failures.
    fn maybe_reset_backoff(&self, dir: &Path, st: &mut status::InstanceStatus) {
        if !st.backoff.as_ref().is_some_and(|b| b.is_failing()) {
            return;
        }
        let since = std::fs::metadata(dir.join(files::STARTED_SPEC))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok());
        if since.is_some_and(|s| s >= HEALTHY_AFTER) {
            st.backoff = Some(Default::default());
            let _ = status::write(dir, st);
        }
    }
}

/// What a scrape of `/metrics` reads: the instances this daemon manages.
impl metrics::Snapshot for Daemon {
    fn instances(&self) -> Vec<metrics::InstanceView> {
        self.all_names()
            .into_iter()
            .filter_map(|name| {
                let observed = store::inspect(&self.ctx.home, &self.ctx.env, &name);
                observed.dir_exists.then(|| metrics::InstanceView {
                    status: observed.status,
                    reconciler: status::read(&observed.dir),
                    name,
                })
            })
            .collect()
    }

    fn queue(&self) -> (usize, usize) {
        self.queue.depth()
    }
}
