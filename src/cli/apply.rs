//! `limactl apply -f FILE|DIR …` and `limactl diff -f …`: declare instances,
//! show the plan (terraform style, with reasons), and carry it out.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::reconcile::source::{self, Source};
use crate::reconcile::{
    self, Desired, ExecOptions, Kind, Plan, PlanOptions, PowerState, RestartPolicy,
};
use crate::spec::mutability::FieldClass;
use crate::spec::yaml::quote_name;
use crate::store::{self, Home};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// A lima.yaml file or a directory of them (repeatable).
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "FILE|DIR",
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
    /// With --watch: quiet time after a file's last change before it is read.
    #[arg(long, default_value = "50ms", value_parser = parse_millis)]
    pub debounce: Duration,
    /// With --watch: print a systemd user unit that runs this daemon, and exit.
    #[arg(long, requires = "watch")]
    pub systemd_unit: bool,
    /// How long to wait for an instance to start (or be Ready with --wait).
    #[arg(long, default_value = "10m", value_parser = super::start::parse_duration)]
    pub timeout: Duration,
}

/// What was planned for the sources, and what could not be planned.
pub struct Planned {
    pub items: Vec<(Plan, Option<Desired>)>,
    /// (file or instance, error)
    pub errors: Vec<(String, String)>,
    /// Instances in LIMA_HOME the sources do not manage (reported only).
    pub unmanaged: Vec<String>,
}

/// Plans every instance of the sources (pure but for reading files and observing).
pub fn plan_sources(home: &Home, env: &crate::spec::LoadEnv, a: &Args) -> Planned {
    let opts = PlanOptions {
        restart: a.restart,
        recreate: a.recreate,
    };
    let mut items = Vec::new();
    let mut errors = Vec::new();
    let mut sources: Vec<Source> = Vec::new();
    for f in &a.files {
        match source::load(f, env) {
            Ok(s) => sources.push(s),
            Err(e) => errors.push((f.display().to_string(), e)),
        }
    }
    // One instance, one file.
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for s in &sources {
        for e in &s.entries {
            for w in &e.warnings {
                crate::warn!("{w}");
            }
            if let Some(other) = seen.insert(e.name.clone(), e.file.display().to_string()) {
                errors.push((
                    e.file.display().to_string(),
                    format!(
                        "instance {} is also declared by {other}",
                        quote_name(&e.name)
                    ),
                ));
                continue;
            }
            let desired = match &e.desired {
                Ok(d) => d,
                Err(err) => {
                    errors.push((e.file.display().to_string(), err.clone()));
                    continue;
                }
            };
            let observed = store::inspect(home, env, &e.name);
            let mut desired = desired.clone();
            desired.power = reconcile::power::desired_power(
                desired.config.run_strategy.as_deref(),
                Some(&observed),
            );
            let desired = &desired;
            if let Some(owner) = &observed.owner
                && owner != &s.id
            {
                errors.push((
                    e.file.display().to_string(),
                    format!(
                        "instance {} is managed by another source ({owner}); left alone",
                        quote_name(&e.name)
                    ),
                ));
                continue;
            }
            items.push((
                reconcile::plan(Some(desired), &observed, &opts),
                Some(desired.clone()),
            ));
        }
    }
    let mut unmanaged = Vec::new();
    let declared: Vec<&String> = seen.keys().collect();
    for name in store::instance_names(home).unwrap_or_default() {
        if declared.contains(&&name) {
            continue;
        }
        let dir = home.instance_dir(&name);
        let owner = store::instance::read_owner(&dir);
        let pruned_by = sources
            .iter()
            .find(|s| s.is_dir && a.prune && owner.as_deref() == Some(s.id.as_str()));
        match pruned_by {
            Some(_) => {
                let observed = store::inspect(home, env, &name);
                let mut p = reconcile::plan(None, &observed, &opts);
                for s in &mut p.steps {
                    if s.action == reconcile::Action::Delete {
                        s.reason = "its file is gone from the source (--prune)".into();
                    }
                }
                items.push((p, None));
            }
            None => {
                if owner.is_none()
                    || !sources
                        .iter()
                        .any(|s| Some(s.id.as_str()) == owner.as_deref())
                {
                    unmanaged.push(name);
                } else if !a.prune {
                    unmanaged.push(format!("{name} (its file is gone; --prune deletes it)"));
                }
            }
        }
    }
    items.sort_by(|a, b| a.0.instance.cmp(&b.0.instance));
    Planned {
        items,
        errors,
        unmanaged,
    }
}

fn kind_text(k: Kind) -> &'static str {
    match k {
        Kind::None => "no changes",
        Kind::Create => "create",
        Kind::Update => "update",
        Kind::Restart => "restart",
        Kind::Recreate => "recreate",
        Kind::Delete => "delete",
        Kind::Refuse => "refused",
    }
}

fn colour(k: Kind, s: &str, tty: bool) -> String {
    if !tty {
        return s.to_string();
    }
    let code = match k {
        Kind::Create => "32",
        Kind::Update | Kind::Restart => "33",
        Kind::Delete | Kind::Recreate => "31",
        Kind::Refuse => "35",
        Kind::None => "0",
    };
    format!("\x1b[{code}m{s}\x1b[0m")
}

fn class_text(c: FieldClass) -> &'static str {
    c.as_str()
}

/// Renders plans like `terraform plan`.
pub fn render(plans: &[&Plan], tty: bool) -> String {
    let mut out = String::new();
    for p in plans {
        if p.is_empty() && p.pending_restart.is_empty() {
            continue;
        }
        let head = format!("{} {}: {}", p.kind.symbol(), p.instance, kind_text(p.kind));
        out.push_str(&colour(p.kind, &head, tty));
        out.push('\n');
        for c in &p.changes {
            out.push_str(&format!(
                "      {}  ({})\n",
                c.describe(),
                class_text(c.class)
            ));
        }
        for s in &p.steps {
            out.push_str(&format!("    → {}: {}\n", s.action.verb(), s.reason));
        }
        for r in &p.refused {
            out.push_str(&format!("    ! {r}\n"));
        }
        if !p.pending_restart.is_empty() {
            out.push_str(&format!(
                "    … restart pending (--restart=never): {}\n",
                p.pending_restart.join(", ")
            ));
        }
    }
    out
}

/// Prints plans to stderr (verbs print only plans that change configuration).
pub fn print_plans(plans: &[Plan], all: bool) {
    let shown: Vec<&Plan> = plans
        .iter()
        .filter(|p| all || !p.changes.is_empty() || !p.refused.is_empty())
        .collect();
    let text = render(&shown, std::io::stderr().is_terminal());
    if !text.is_empty() {
        eprint!("{text}");
    }
}

#[derive(Default, Serialize)]
pub struct Summary {
    pub create: usize,
    pub update: usize,
    pub restart: usize,
    pub recreate: usize,
    pub delete: usize,
    pub refused: usize,
    pub unchanged: usize,
    pub errors: usize,
}

pub fn summarize(planned: &Planned) -> Summary {
    let mut s = Summary {
        errors: planned.errors.len(),
        ..Default::default()
    };
    for (p, _) in &planned.items {
        match p.kind {
            Kind::None => s.unchanged += 1,
            Kind::Create => s.create += 1,
            Kind::Update => s.update += 1,
            Kind::Restart => s.restart += 1,
            Kind::Recreate => s.recreate += 1,
            Kind::Delete => s.delete += 1,
            Kind::Refuse => s.refused += 1,
        }
    }
    s
}

fn summary_line(prefix: &str, s: &Summary) -> String {
    format!(
        "{prefix}: {} to create, {} to update, {} to restart, {} to recreate, {} to delete, {} refused, {} unchanged, {} errors.",
        s.create, s.update, s.restart, s.recreate, s.delete, s.refused, s.unchanged, s.errors
    )
}

fn json_report(planned: &Planned, s: &Summary) -> serde_json::Value {
    serde_json::json!({
        "instances": planned.items.iter().map(|(p, _)| p).collect::<Vec<_>>(),
        "errors": planned.errors.iter().map(|(f, e)| serde_json::json!({"source": f, "error": e})).collect::<Vec<_>>(),
        "unmanaged": planned.unmanaged,
        "summary": s,
    })
}

fn show(planned: &Planned, a: &Args, prefix: &str) -> anyhow::Result<()> {
    let s = summarize(planned);
    if a.output == "json" {
        println!("{}", json_report(planned, &s));
        return Ok(());
    }
    if a.output != "text" {
        anyhow::bail!("unknown --output {} (text or json)", quote_name(&a.output));
    }
    let tty = std::io::stdout().is_terminal();
    let plans: Vec<&Plan> = planned.items.iter().map(|(p, _)| p).collect();
    print!("{}", render(&plans, tty));
    for (f, e) in &planned.errors {
        println!("{}", colour(Kind::Refuse, &format!("✗ {f}: {e}"), tty));
    }
    for u in &planned.unmanaged {
        println!("  {u}: not managed by this source; left alone");
    }
    println!("{}", summary_line(prefix, &s));
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

/// `limactl diff`: exit 0 without changes, 1 with changes, 2 on errors.
pub fn diff(a: Args) -> anyhow::Result<i32> {
    let home = Home::from_env();
    let env = crate::spec::LoadEnv::new(&home.root);
    let planned = plan_sources(&home, &env, &a);
    show(&planned, &a, "Plan")?;
    if !planned.errors.is_empty() {
        return Ok(2);
    }
    Ok(if planned.items.iter().all(|(p, _)| p.is_empty()) {
        0
    } else {
        1
    })
}

/// `limactl apply`.
pub fn run(a: Args, g: &super::Globals) -> anyhow::Result<i32> {
    let home = Home::from_env();
    if a.watch {
        if a.systemd_unit {
            let exe = std::env::current_exe()?;
            print!(
                "{}",
                reconcile::daemon::systemd_unit(&exe, &home, &a.files, a.prune)
            );
            return Ok(0);
        }
        if a.dry_run || a.wait {
            anyhow::bail!("--watch cannot be combined with --dry-run or --wait");
        }
        reconcile::daemon::run(
            &home,
            reconcile::daemon::DaemonOptions {
                sources: a.files.clone(),
                prune: a.prune,
                plan: PlanOptions {
                    restart: a.restart,
                    recreate: a.recreate,
                },
                exec: ExecOptions {
                    debug: g.debug,
                    start_timeout: a.timeout,
                    verbose: true,
                    ..Default::default()
                },
                parallel: a.parallel.max(1),
                resync: a.resync,
                debounce: a.debounce,
                backoff_cap: Duration::from_secs(300),
            },
        )?;
        return Ok(0);
    }
    let env = crate::spec::LoadEnv::new(&home.root);
    let planned = plan_sources(&home, &env, &a);
    show(&planned, &a, "Plan")?;
    if a.dry_run {
        return Ok(if planned.errors.is_empty() { 0 } else { 1 });
    }
    let opts = ExecOptions {
        debug: g.debug,
        start_timeout: a.timeout,
        verbose: true,
        ..Default::default()
    };
    let popts = PlanOptions {
        restart: a.restart,
        recreate: a.recreate,
    };
    let failures = execute_all(&home, &env, &planned, &popts, &opts, a.parallel.max(1));
    let mut failed: Vec<String> = failures;
    for (f, e) in &planned.errors {
        failed.push(format!("{f}: {e}"));
    }
    if a.wait {
        failed.extend(wait_ready(&home, &env, &planned, a.timeout));
    }
    if failed.is_empty() {
        crate::info!("{}", summary_line("Apply complete", &summarize(&planned)));
        Ok(0)
    } else {
        anyhow::bail!("apply failed:\n  {}", failed.join("\n  "))
    }
}

/// Executes the non-empty plans, at most `parallel` at a time; returns failures.
pub fn execute_all(
    home: &Home,
    env: &crate::spec::LoadEnv,
    planned: &Planned,
    popts: &PlanOptions,
    opts: &ExecOptions,
    parallel: usize,
) -> Vec<String> {
    let work: Vec<&(Plan, Option<Desired>)> = planned
        .items
        .iter()
        .filter(|(p, _)| !p.steps.is_empty() || !p.refused.is_empty())
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..parallel.min(work.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some((plan, desired)) = work.get(i) else {
                        break;
                    };
                    let result = if plan.refused.is_empty() {
                        reconcile::converge(
                            home,
                            env,
                            &plan.instance,
                            desired.as_ref(),
                            popts,
                            opts,
                        )
                        .map(|_| ())
                    } else {
                        reconcile::execute(home, plan, desired.as_ref(), opts)
                    };
                    if let Err(e) = result {
                        failures.lock().unwrap().push(e.to_string());
                    }
                }
            });
        }
    });
    failures.into_inner().unwrap()
}

/// `--wait`: every instance that should run must be Ready; a degraded guest
/// (failed requirement or provisioning script) fails with its errors.
fn wait_ready(
    home: &Home,
    env: &crate::spec::LoadEnv,
    planned: &Planned,
    timeout: Duration,
) -> Vec<String> {
    let mut failed = Vec::new();
    for (p, d) in &planned.items {
        let Some(d) = d else { continue };
        if d.power != Some(PowerState::Running) || !p.refused.is_empty() {
            continue;
        }
        let start = std::time::Instant::now();
        loop {
            match reconcile::status::current(home, env, &p.instance) {
                Some((_, s)) if s.is_true("Ready") => break,
                Some((_, s)) if s.is_true("Degraded") => {
                    let msg = s
                        .condition("Degraded")
                        .map(|c| c.message.clone())
                        .unwrap_or_default();
                    failed.push(format!(
                        "instance {} is degraded: {msg}",
                        quote_name(&p.instance)
                    ));
                    break;
                }
                Some((inst, _))
                    if inst.status != store::Status::Running
                        && start.elapsed() > Duration::from_secs(5) =>
                {
                    failed.push(format!(
                        "instance {} is not running ({})",
                        quote_name(&p.instance),
                        inst.status.as_str()
                    ));
                    break;
                }
                None => {
                    failed.push(format!(
                        "instance {} does not exist",
                        quote_name(&p.instance)
                    ));
                    break;
                }
                _ => {}
            }
            if start.elapsed() > timeout {
                failed.push(format!(
                    "instance {} did not become Ready within {}s",
                    quote_name(&p.instance),
                    timeout.as_secs()
                ));
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    failed
}
