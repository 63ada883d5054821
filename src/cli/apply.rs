//! `limactl apply -f FILE|DIR …` and `limactl diff -f …`: declare instances,
//! show the plan (terraform style, with reasons), and carry it out.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use crate::reconcile::ops::apply::{Planned, Summary};
use crate::reconcile::ops::{self, ApplyOptions, Ctx};
use crate::reconcile::plan::render::colour;
use crate::reconcile::{self, ExecOptions, Kind, Plan, PlanOptions, RestartPolicy};
use crate::spec::yaml::quote_name;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// A lima.yaml file, a directory of them, or a Git source
    /// `git::URL//SUBDIR?ref=REF` (repeatable).
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "FILE|DIR|git::URL",
        required = true
    )]
    pub files: Vec<PathBuf>,
    /// Show the plan, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Delete instances this source created whose file is gone.
    #[arg(long)]
    pub prune: bool,
    /// Wait until every instance that should run is Ready (provisioning included).
    #[arg(long)]
    pub wait: bool,
    /// Whether restart-required changes restart running VMs.
    #[arg(long, value_enum, default_value_t = RestartPolicy::Auto)]
    pub restart: RestartPolicy,
    /// Delete and recreate instances whose immutable fields changed (never protected ones).
    #[arg(long)]
    pub recreate: bool,
    /// Output: text or json.
    #[arg(short = 'o', long, default_value = "text")]
    pub output: String,
    /// How many instances converge at once.
    #[arg(long, default_value_t = 2)]
    pub parallel: usize,
    /// Keep running: watch the files and keep LIMA_HOME converged (the daemon).
    #[arg(long)]
    pub watch: bool,
    /// With --watch: re-observe every instance this often.
    #[arg(long, default_value = "30s", value_parser = super::start::parse_duration)]
    pub resync: Duration,
    /// With --watch --prune: how long a file must stay gone before its
    /// instance is deleted (default: the --resync interval). A file back
    /// within it cancels the deletion.
    #[arg(long, value_name = "DURATION", value_parser = parse_millis, requires = "watch")]
    pub prune_grace: Option<Duration>,
    /// With --watch: quiet time after a file's last change before it is read.
    #[arg(long, default_value = "50ms", value_parser = parse_millis)]
    pub debounce: Duration,
    /// With --watch: fetch git:: sources this often (SIGHUP fetches at once).
    #[arg(long, default_value = "60s", value_parser = parse_millis)]
    pub git_interval: Duration,
    /// With --watch: print a systemd user unit that runs this daemon, and exit.
    #[arg(long, requires = "watch")]
    pub systemd_unit: bool,
    /// With --watch: serve Prometheus metrics on /metrics (and /healthz,
    /// /readyz) at HOST:PORT; a port alone means 127.0.0.1.
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_metrics_addr, requires = "watch")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// How long to wait for an instance to start (or be Ready with --wait).
    #[arg(long, default_value = "10m", value_parser = super::start::parse_duration)]
    pub timeout: Duration,
}

impl Args {
    fn options(&self, g: &super::Globals) -> ApplyOptions {
        ApplyOptions {
            sources: self.files.clone(),
            prune: self.prune,
            plan: PlanOptions {
                restart: self.restart,
                recreate: self.recreate,
                ..Default::default()
            },
            exec: ExecOptions {
                debug: g.debug,
                launch_timeout: self.timeout,
                ..Default::default()
            },
            parallel: self.parallel.max(1),
            wait: self.wait.then_some(self.timeout),
        }
    }
}

/// Renders plans like `terraform plan`.
pub fn render(plans: &[&Plan], tty: bool) -> String {
    plans.iter().map(|p| p.render(tty)).collect()
}

/// Prints a verb's plan to stderr when it changes the configuration (or
/// `all`); power steps speak through log lines.
pub fn show_plan(plan: &Plan, all: bool) {
    if all || plan.changes_config() || plan.touches_saved_state() {
        // A closed stderr is no reason to fail (or panic) the operation.
        let text = plan.render(std::io::stderr().is_terminal());
        let _ = std::io::Write::write_all(&mut std::io::stderr(), text.as_bytes());
    }
}

fn summary_line(prefix: &str, s: &Summary) -> String {
    format!(
        "{prefix}: {} to create, {} to update, {} to restart, {} to recreate, {} to delete, {} refused, {} unchanged, {} errors.",
        s.create, s.update, s.restart, s.recreate, s.delete, s.refused, s.unchanged, s.errors
    )
}

fn show(planned: &Planned, a: &Args, prefix: &str) -> anyhow::Result<()> {
    let s = planned.summary();
    if a.output == "json" {
        let report = serde_json::json!({
            "instances": planned.items.iter().map(|i| &i.plan).collect::<Vec<_>>(),
            "errors": planned.errors.iter().map(|(f, e)| serde_json::json!({"source": f, "error": e})).collect::<Vec<_>>(),
            "unmanaged": planned.unmanaged.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "sources": planned.revisions.iter().map(|(s, r)| serde_json::json!({"source": s, "revision": r})).collect::<Vec<_>>(),
            "summary": s,
        });
        crate::outln!("{report}")?;
        return Ok(());
    }
    if a.output != "text" {
        anyhow::bail!("unknown --output {} (text or json)", quote_name(&a.output));
    }
    let tty = std::io::stdout().is_terminal();
    for (src, rev) in &planned.revisions {
        crate::outln!("Source {src}: commit {rev}")?;
    }
    let plans: Vec<&Plan> = planned.items.iter().map(|i| &i.plan).collect();
    crate::out!("{}", render(&plans, tty))?;
    for (f, e) in &planned.errors {
        crate::outln!("{}", colour(Kind::Refuse, &format!("✗ {f}: {e}"), tty))?;
    }
    for u in &planned.unmanaged {
        match &u.not_pruned {
            Some(why) => crate::outln!("  {}: not pruned: {why}", u.name)?,
            None => crate::outln!("  {u}: not managed by this source; left alone")?,
        }
    }
    crate::outln!("{}", summary_line(prefix, &s))?;
    Ok(())
}

/// `50ms`, `1s`, or a `parse_duration` value.
fn parse_millis(s: &str) -> Result<Duration, String> {
    match s.strip_suffix("ms") {
        Some(n) => n
            .parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|_| format!("invalid duration {s:?}")),
        None => super::start::parse_duration(s),
    }
}

fn parse_metrics_addr(s: &str) -> Result<std::net::SocketAddr, String> {
    reconcile::metrics::parse_addr(s).map_err(|e| e.to_string())
}

/// `limactl diff`: exit 0 without changes, 1 with changes, 2 on errors.
pub fn diff(a: Args, g: &super::Globals) -> anyhow::Result<i32> {
    let planned = ops::diff(&Ctx::from_env(), &a.options(g));
    show(&planned, &a, "Plan")?;
    Ok(match (planned.errors.is_empty(), planned.is_converged()) {
        (false, _) => 2,
        (true, true) => 0,
        (true, false) => 1,
    })
}

/// `limactl apply`.
pub fn run(a: Args, g: &super::Globals) -> anyhow::Result<i32> {
    let ctx = Ctx::from_env();
    let opts = a.options(g);
    if a.watch {
        if a.systemd_unit {
            let exe = std::env::current_exe()?;
            let ms = |d: Duration| format!("{}ms", d.as_millis());
            let mut tuning = vec![
                "--resync".to_string(),
                format!("{}s", a.resync.as_secs_f64()),
                "--debounce".into(),
                ms(a.debounce),
                "--parallel".into(),
                a.parallel.to_string(),
                "--git-interval".into(),
                ms(a.git_interval),
            ];
            if let Some(g) = a.prune_grace {
                tuning.extend(["--prune-grace".into(), ms(g)]);
            }
            if let Some(addr) = a.metrics_addr {
                tuning.extend(["--metrics-addr".into(), addr.to_string()]);
            }
            let unit = reconcile::daemon::systemd_unit(&exe, &ctx.home, &a.files, a.prune, &tuning);
            crate::out!("{unit}")?;
            return Ok(0);
        }
        if a.dry_run || a.wait {
            anyhow::bail!("--watch cannot be combined with --dry-run or --wait");
        }
        let daemon = reconcile::daemon::DaemonOptions {
            sources: opts.sources,
            prune: opts.prune,
            plan: opts.plan,
            exec: ExecOptions {
                // A busy instance is retried, never waited for: workers stay free.
                lock_timeout: reconcile::outcome::BUSY_RETRY,
                ..opts.exec
            },
            parallel: opts.parallel,
            resync: a.resync,
            debounce: a.debounce,
            backoff_cap: Duration::from_secs(300),
            prune_grace: a.prune_grace.unwrap_or(a.resync),
            git_interval: a.git_interval,
            metrics_addr: a.metrics_addr,
        };
        reconcile::daemon::run(&ctx.home, daemon)?;
        return Ok(0);
    }
    let planned = ops::plan_sources(&ctx, &opts);
    show(&planned, &a, "Plan")?;
    if a.dry_run {
        return Ok(if planned.errors.is_empty() { 0 } else { 1 });
    }
    let mut failed = ops::apply(&ctx, &planned, &opts);
    failed.extend(planned.errors.iter().map(|(f, e)| format!("{f}: {e}")));
    if failed.is_empty() {
        crate::info!("{}", summary_line("Apply complete", &planned.summary()));
        Ok(0)
    } else {
        anyhow::bail!("apply failed:\n  {}", failed.join("\n  "))
    }
}
