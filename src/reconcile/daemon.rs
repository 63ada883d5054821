//! `limactl apply -f DIR --watch`: the daemon that keeps `LIMA_HOME` converged
//! with a directory of `lima.yaml` files.
//!
//! Level-triggered: file events (inotify, debounced per file: 50 ms by
//! default, coalescing an editor's write bursts), VM deaths
//! (the liveness locks, probed every 250 ms) and a periodic resync only
//! *enqueue* an instance name; a worker then re-reads the file, re-observes
//! the instance and converges it like `apply`, never two workers on one
//! instance. A file that does not load never leads to an action: its error
//! goes on the instance's status. The daemon holds `_daemon/lock` for its life
//! (one daemon per `LIMA_HOME`) and owns no VM: killing it stops nothing, and
//! a new daemon simply observes the running host agents (adoption).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};

use super::controller::{Queue, When, backoff};
use super::plan::PowerState;
use super::power::{self, LastExit};
use super::status::{self, Backoff};
use super::{ExecOptions, PlanOptions, journal};
use crate::spec::yaml::quote_name;
use crate::store::{self, Home, Status};

/// Where the daemon keeps its lock and pid.
pub const DAEMON_DIR: &str = "_daemon";

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
}

/// A watched source: a directory, or a single file (its directory is watched).
#[derive(Clone, Debug)]
struct WatchedSource {
    /// The owner id recorded in instances (canonical path).
    id: String,
    dir: PathBuf,
    /// `Some` for a single-file source.
    file: Option<PathBuf>,
}

impl WatchedSource {
    /// The file declaring `name` in this source, if it exists now.
    fn file_for(&self, name: &str) -> Option<PathBuf> {
        if let Some(f) = &self.file {
            return (instance_name(f).as_deref() == Some(name) && f.exists()).then(|| f.clone());
        }
        ["yaml", "yml"]
            .iter()
            .map(|ext| self.dir.join(format!("{name}.{ext}")))
            .find(|p| p.is_file())
    }

    /// Every instance name declared now.
    fn names(&self) -> Vec<String> {
        if let Some(f) = &self.file {
            return instance_name(f).into_iter().collect();
        }
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        rd.flatten()
            .filter_map(|e| instance_name(&e.path()))
            .collect()
    }
}

/// The instance a path declares: `DIR/NAME.yaml` (not `.`- or `_`-prefixed).
fn instance_name(p: &Path) -> Option<String> {
    let f = p.file_name()?.to_str()?;
    if f.starts_with('.') || f.starts_with('_') {
        return None;
    }
    f.strip_suffix(".yaml")
        .or_else(|| f.strip_suffix(".yml"))
        .map(str::to_string)
}

struct Daemon {
    home: Home,
    env: crate::spec::LoadEnv,
    sources: Vec<WatchedSource>,
    opts: DaemonOptions,
    queue: Queue,
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
        let abs = std::fs::canonicalize(s)
            .with_context(|| format!("cannot watch {}", quote_name(&s.display().to_string())))?;
        let (dir, file) = if abs.is_dir() {
            (abs.clone(), None)
        } else {
            (abs.parent().unwrap().to_path_buf(), Some(abs.clone()))
        };
        sources.push(WatchedSource {
            id: abs.display().to_string(),
            dir,
            file,
        });
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
        env: crate::spec::LoadEnv::new(&home.root),
        home: home.clone(),
        sources,
        opts,
        queue: Queue::new(),
    });
    crate::info!(
        "Watching {} (resync every {}s, {} workers{})",
        d.sources
            .iter()
            .map(|s| quote_name(&s.id))
            .collect::<Vec<_>>()
            .join(", "),
        d.opts.resync.as_secs(),
        d.opts.parallel,
        if d.opts.prune { ", prune" } else { "" }
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
    for _ in 0..d.opts.parallel.max(1) {
        let d = d.clone();
        std::thread::spawn(move || {
            while let Some(name) = d.queue.next() {
                let again = d.reconcile(&name);
                d.queue.done(&name);
                if let Some(after) = again {
                    d.queue.add(&name, When::After(after));
                }
            }
        });
    }
    let sig = sigs.wait()?;
    // Every step is safe to interrupt: nothing needs to finish. Host agents
    // run in their own sessions and keep their VMs.
    crate::info!("Received {sig}, stopping the daemon (the VMs keep running)");
    d.queue.shutdown();
    Ok(())
}

impl Daemon {
    /// Names the daemon is responsible for: declared, or owned by a source.
    fn all_names(&self) -> BTreeSet<String> {
        let mut names: BTreeSet<String> = self.sources.iter().flat_map(|s| s.names()).collect();
        for n in store::instance_names(&self.home).unwrap_or_default() {
            let owner = store::instance::read_owner(&self.home.instance_dir(&n));
            if self
                .sources
                .iter()
                .any(|s| owner.as_deref() == Some(s.id.as_str()))
            {
                names.insert(n);
            }
        }
        names
    }

    fn enqueue_all(&self, when: When) {
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
            for p in &ev.paths {
                let Some(src) = d
                    .sources
                    .iter()
                    .find(|s| p.parent() == Some(s.dir.as_path()))
                else {
                    continue;
                };
                if let Some(f) = &src.file
                    && p != f
                {
                    continue;
                }
                let fname = p.file_name().and_then(|f| f.to_str()).unwrap_or("");
                if fname.starts_with('_') && (fname.ends_with(".yaml") || fname.ends_with(".yml")) {
                    // A shared part changed: every instance of the source may depend on it.
                    for n in src.names() {
                        d.queue.add(&n, When::Debounce(d.opts.debounce));
                    }
                } else if let Some(n) = instance_name(p) {
                    d.queue.add(&n, When::Debounce(d.opts.debounce));
                }
            }
        })?;
        for s in &self.sources {
            w.watch(&s.dir, notify::RecursiveMode::NonRecursive)
                .with_context(|| format!("cannot watch {}", s.dir.display()))?;
        }
        Ok(w)
    }

    /// Enqueues an instance as soon as its host agent or QEMU appears or dies.
    fn watch_liveness(&self) {
        let mut last: BTreeMap<String, store::instance::Liveness> = BTreeMap::new();
        loop {
            for n in self.all_names() {
                let live = store::instance::Liveness::probe(&self.home.instance_dir(&n));
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
        let dir = self.home.instance_dir(name);
        crate::error!("{}: {message}", quote_name(name));
        if dir.is_dir() {
            journal::record_error(&dir, name, message);
            let mut s = status::read(&dir);
            if s.last_error.as_deref() != Some(message) {
                s.last_error = Some(message.to_string());
                let _ = status::write(&dir, &s);
            }
        }
    }

    /// One level-triggered reconcile; returns when to look again, if needed.
    fn reconcile(&self, name: &str) -> Option<Duration> {
        let dir = self.home.instance_dir(name);
        let declared = self
            .sources
            .iter()
            .find_map(|s| s.file_for(name).map(|f| (s, f)));
        let observed = store::inspect(&self.home, &self.env, name);
        let Some((src, file)) = declared else {
            let owned_by_dir_source = self
                .sources
                .iter()
                .any(|s| s.file.is_none() && observed.owner.as_deref() == Some(s.id.as_str()));
            if self.opts.prune && observed.dir_exists && owned_by_dir_source {
                crate::info!(
                    "{}: its file is gone from the source; deleting it (--prune)",
                    quote_name(name)
                );
                if let Err(e) = super::converge(
                    &self.home,
                    &self.env,
                    name,
                    None,
                    &self.opts.plan,
                    &self.opts.exec,
                ) {
                    self.record_error(name, &e.to_string());
                    return Some(Duration::from_secs(30));
                }
            }
            return None;
        };
        let (loaded, warnings) = super::source::load_file(&file, name, &self.env, &src.id);
        for w in warnings {
            crate::warn!("{w}");
        }
        let mut desired = match loaded {
            Ok(d) => d,
            Err(e) => {
                // A partial or broken file never leads to an action.
                self.record_error(name, &format!("{}: not applied: {e}", file.display()));
                return None;
            }
        };
        if let Some(owner) = &observed.owner
            && owner != &src.id
        {
            self.record_error(
                name,
                &format!("managed by another source ({owner}); left alone"),
            );
            return None;
        }
        desired.power =
            power::desired_power(desired.config.run_strategy.as_deref(), Some(&observed));

        // Crash loop protection: the first relaunch after a failure is
        // immediate, then the wait doubles (with jitter) up to the cap.
        let mut st = if observed.dir_exists {
            status::read(&dir)
        } else {
            Default::default()
        };
        if observed.dir_exists
            && desired.power == Some(PowerState::Running)
            && observed.status != Status::Running
        {
            // A failed run: QEMU gone under a live host agent (Broken), or the
            // host agent gone without a clean exit. Each run (keyed by the
            // time it started) is counted once.
            let failure = match power::last_exit(&dir, observed.liveness.host_agent) {
                LastExit::Failed(why) => Some(why),
                _ if observed.status == Status::Broken => Some(observed.errors.join("; ")),
                _ => None,
            };
            if let Some(why) = failure {
                let run = std::fs::metadata(dir.join(crate::store::paths::files::STARTED_SPEC))
                    .and_then(|m| m.modified())
                    .map(|t| format!("{t:?}"))
                    .unwrap_or_default();
                let mut b = st.backoff.clone().unwrap_or_default();
                if b.last_failure_time != run {
                    b.failures += 1;
                    b.last_failure_time = run;
                    b.reason = why;
                    let wait = backoff(b.failures, self.opts.backoff_cap);
                    b.next_attempt = (chrono::Local::now()
                        + chrono::Duration::from_std(wait).unwrap_or_default())
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, false);
                    st.backoff = Some(b.clone());
                    let _ = status::write(&dir, &st);
                    crate::warn!(
                        "{}: the VM failed ({}); relaunching {}",
                        quote_name(name),
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
                }
                if let Some(left) = time_left(&b.next_attempt) {
                    return Some(left);
                }
            }
        }

        match super::converge(
            &self.home,
            &self.env,
            name,
            Some(&desired),
            &self.opts.plan,
            &self.opts.exec,
        ) {
            Ok(plan) => {
                // The file loads and converged: an old error is history.
                let mut now_st = status::read(&dir);
                if dir.is_dir() && now_st.last_error.is_some() {
                    now_st.last_error = None;
                    let _ = status::write(&dir, &now_st);
                }
                if !plan.steps.is_empty() {
                    crate::info!(
                        "{}: converged ({})",
                        quote_name(name),
                        plan.steps
                            .iter()
                            .map(|s| s.action.verb())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
                // Running for a while again: forget past failures.
                if observed.status == Status::Running {
                    self.maybe_reset_backoff(&dir, &mut st);
                }
                // While running, look again soon enough to reset the backoff.
                st.backoff
                    .as_ref()
                    .filter(|b| b.failures > 0)
                    .map(|_| Duration::from_secs(30))
            }
            Err(e) => {
                let msg = e.to_string();
                self.record_error(name, &msg);
                if msg.contains("refused")
                    || msg.contains("is immutable")
                    || msg.contains("cannot shrink")
                {
                    // Nothing changes by retrying a refusal; the next file change will.
                    return None;
                }
                let mut st = status::read(&dir);
                let mut b = st.backoff.clone().unwrap_or_default();
                b.failures += 1;
                b.reason = msg;
                let wait = backoff(b.failures.max(2), self.opts.backoff_cap);
                b.next_attempt = (chrono::Local::now()
                    + chrono::Duration::from_std(wait).unwrap_or_default())
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, false);
                st.backoff = Some(b);
                if dir.is_dir() {
                    let _ = status::write(&dir, &st);
                }
                Some(wait)
            }
        }
    }

    fn maybe_reset_backoff(&self, dir: &Path, st: &mut status::InstanceStatus) {
        let Some(b) = &st.backoff else { return };
        if b.failures == 0 {
            return;
        }
        let since = std::fs::metadata(dir.join(crate::store::paths::files::STARTED_SPEC))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok());
        if since.is_some_and(|s| s >= Duration::from_secs(60)) {
            st.backoff = Some(Backoff::default());
            let _ = status::write(dir, st);
        }
    }
}

/// Time until an RFC 3339 instant, if it is in the future.
fn time_left(at: &str) -> Option<Duration> {
    let t = chrono::DateTime::parse_from_rfc3339(at).ok()?;
    let now = chrono::Local::now().fixed_offset();
    (t > now).then(|| (t - now).to_std().ok()).flatten()
}

/// A systemd user unit running the daemon (`KillMode=process`: stopping
/// or restarting the service must not kill the host agents and VMs, which
/// live in its cgroup).
pub fn systemd_unit(exe: &Path, home: &Home, sources: &[PathBuf], prune: bool) -> String {
    let srcs: Vec<String> = sources
        .iter()
        .map(|s| {
            let abs = std::fs::canonicalize(s).unwrap_or_else(|_| s.clone());
            format!("-f {}", abs.display())
        })
        .collect();
    format!(
        "[Unit]\n\
         Description=limactl apply --watch: keep {home} converged with {srcs}\n\
         Documentation=https://lima-vm.io/\n\
         After=network-online.target\n\
         \n\
         [Service]\n\
         Type=simple\n\
         Environment=LIMA_HOME={home}\n\
         ExecStart={exe} apply --watch{prune} {srcs}\n\
         Restart=on-failure\n\
         RestartSec=2\n\
         KillMode=process\n\
         KillSignal=SIGTERM\n\
         \n\
         [Install]\n\
         WantedBy=default.target\n",
        home = home.root.display(),
        exe = exe.display(),
        prune = if prune { " --prune" } else { "" },
        srcs = srcs.join(" "),
    )
}
