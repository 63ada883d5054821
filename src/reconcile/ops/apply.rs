//! `apply` and `diff`: plan every instance of the sources (ownership and
//! prune rules from [`crate::reconcile::source`]), then converge them, at
//! most `parallel` at a time, each re-planned under its lock.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::Serialize;

use super::wait::{self, WaitOptions};
use super::{Ctx, converge};
use crate::reconcile::execute::{self, ExecError, ExecOptions};
use crate::reconcile::plan::{self, Cause, Desired, Kind, Plan, PlanOptions, PowerState};
use crate::reconcile::power;
use crate::reconcile::source::{Claim, EntryError, Sources, git};
use crate::spec::yaml::quote_name;
use crate::store;
use crate::sync::MutexExt;

#[derive(Clone, Debug)]
pub struct ApplyOptions {
    pub sources: Vec<PathBuf>,
    /// Delete instances a directory source owns whose file is gone.
    pub prune: bool,
    pub plan: PlanOptions,
    pub exec: ExecOptions,
    /// How many instances converge at once.
    pub parallel: usize,
    /// Wait this long for every instance that should run to be Ready.
    pub wait: Option<Duration>,
}

/// One instance's plan, and what it was planned for.
#[derive(Clone, Debug)]
pub struct Item {
    pub plan: Plan,
    /// `None`: deleted (pruned).
    pub desired: Option<Desired>,
}

/// An instance of `LIMA_HOME` the sources do not manage (reported only).
#[derive(Clone, Debug, Serialize)]
pub struct Unmanaged {
    pub name: String,
    /// Owned by a directory source that no longer declares it, without `--prune`.
    pub orphan: bool,
    /// Why it is not pruned although it may be an orphan: its source could
    /// not be listed completely.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_pruned: Option<String>,
}

impl std::fmt::Display for Unmanaged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(why) = &self.not_pruned {
            write!(f, "{} (not pruned: {why})", self.name)
        } else if self.orphan {
            write!(f, "{} (its file is gone; --prune deletes it)", self.name)
        } else {
            f.write_str(&self.name)
        }
    }
}

/// What was planned for the sources, and what could not be planned.
#[derive(Debug, Default)]
pub struct Planned {
    pub items: Vec<Item>,
    /// (file or instance, error)
    pub errors: Vec<(String, String)>,
    pub unmanaged: Vec<Unmanaged>,
    /// The Git sources read: (locator, commit).
    pub revisions: Vec<(String, String)>,
}

/// Counts per plan kind.
#[derive(Debug, Default, Serialize)]
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

impl Planned {
    pub fn summary(&self) -> Summary {
        let mut s = Summary {
            errors: self.errors.len(),
            ..Default::default()
        };
        for i in &self.items {
            match i.plan.kind {
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

    pub fn is_converged(&self) -> bool {
        self.items.iter().all(|i| i.plan.is_empty())
    }
}

/// The desired power of a declared instance, given what it is now
/// (`RerunOnFailure` depends on how its last run ended).
pub fn with_power(mut desired: Desired, observed: &store::Instance) -> Desired {
    if let Some(c) = &desired.config {
        desired.power = power::desired_power(c.spec.run_strategy, Some(observed));
    }
    desired
}

/// Plans every instance of the sources (reads files and observes; changes nothing).
pub fn plan_sources(ctx: &Ctx, opts: &ApplyOptions) -> Planned {
    let (sources, open_errors) = Sources::open(&ctx.home, &opts.sources);
    // Git sources that could not be fetched: what they own is left alone.
    let unfetched: BTreeMap<String, String> = open_errors
        .iter()
        .filter_map(|(p, e)| {
            let loc = git::Locator::parse(p).ok()?;
            Some((loc.id(), e.to_string()))
        })
        .collect();
    let mut planned = Planned {
        errors: open_errors
            .into_iter()
            .map(|(p, e)| (p, e.to_string()))
            .collect(),
        revisions: sources
            .iter()
            .filter_map(|s| Some((s.git.as_ref()?.display(), s.revision.clone()?)))
            .collect(),
        ..Default::default()
    };
    // One instance, one file.
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    // Sources that could not be listed completely: they prune nothing.
    let mut unlisted: BTreeSet<String> = BTreeSet::new();
    for source in sources.iter() {
        let read = match source.entries(&ctx.home, &ctx.env) {
            Ok(r) => r,
            Err(e) => {
                planned.errors.push((source.id.clone(), e.to_string()));
                unlisted.insert(source.id.clone());
                continue;
            }
        };
        if let Some(e) = read.incomplete {
            planned.errors.push((source.id.clone(), e.to_string()));
            unlisted.insert(source.id.clone());
        }
        for e in read.entries {
            for w in &e.warnings {
                crate::warn!("{w}");
            }
            let file = e.file.display().to_string();
            if let Some(other) = seen.insert(e.name.clone(), file.clone()) {
                let err = EntryError::AlsoDeclared {
                    name: e.name.clone(),
                    other,
                };
                planned.errors.push((file, err.to_string()));
                continue;
            }
            let observed = store::inspect(&ctx.home, &ctx.env, &e.name);
            let desired = e.desired.and_then(|d| {
                source.check_owner(&e.name, observed.owner.as_deref())?;
                Ok(with_power(d, &observed))
            });
            match desired {
                Ok(d) => planned.items.push(Item {
                    plan: plan::plan(Some(&d), &observed, &opts.plan),
                    desired: Some(d),
                }),
                Err(err) => planned.errors.push((file, err.to_string())),
            }
        }
    }
    for name in store::instance_names(&ctx.home).unwrap_or_default() {
        if seen.contains_key(&name) {
            continue;
        }
        let owner = store::instance::read_owner(&ctx.home.instance_dir(&name));
        if let Some(e) = owner.as_ref().and_then(|o| unfetched.get(o)) {
            planned.unmanaged.push(Unmanaged {
                name,
                orphan: false,
                not_pruned: Some(format!("its source could not be read: {e}")),
            });
            continue;
        }
        match sources.claim(&name, owner.as_deref()) {
            Claim::Orphan { source } if unlisted.contains(&source.id) => {
                planned.unmanaged.push(Unmanaged {
                    name,
                    orphan: true,
                    not_pruned: Some(format!(
                        "its source {} could not be listed completely",
                        quote_name(&source.id)
                    )),
                });
            }
            Claim::Unlisted { error, .. } => planned.unmanaged.push(Unmanaged {
                name,
                orphan: false,
                not_pruned: Some(error.to_string()),
            }),
            Claim::Orphan { .. } if opts.prune => {
                let observed = store::inspect(&ctx.home, &ctx.env, &name);
                planned.items.push(Item {
                    plan: plan::plan(None, &observed, &pruning(&opts.plan)),
                    desired: None,
                });
            }
            Claim::Orphan { .. } => planned.unmanaged.push(Unmanaged {
                name,
                orphan: true,
                not_pruned: None,
            }),
            // Declared by a source meanwhile (a file appeared): not ours to report.
            Claim::Declared { .. } => {}
            Claim::Unmanaged => planned.unmanaged.push(Unmanaged {
                name,
                orphan: false,
                not_pruned: None,
            }),
        }
    }
    planned
        .items
        .sort_by(|a, b| a.plan.instance.cmp(&b.plan.instance));
    planned
}

/// The plan options of a prune: the deletion says why.
pub fn pruning(opts: &PlanOptions) -> PlanOptions {
    PlanOptions {
        cause: Cause::Pruned,
        ..*opts
    }
}

/// `limactl diff`: the plan, nothing changed.
pub fn diff(ctx: &Ctx, opts: &ApplyOptions) -> Planned {
    plan_sources(ctx, opts)
}

/// `limactl apply`: converges what `planned` planned (each instance
/// re-planned under its lock), then waits if asked. Returns the failures.
pub fn apply(ctx: &Ctx, planned: &Planned, opts: &ApplyOptions) -> Vec<String> {
    let work: Vec<&Item> = planned
        .items
        .iter()
        .filter(|i| !i.plan.is_empty())
        .collect();
    // Already converged: converged with this commit too.
    for i in planned.items.iter().filter(|i| i.plan.is_empty()) {
        if let Some(rev) = &i.plan.revision {
            let name = &i.plan.instance;
            crate::reconcile::status::record_revision(&ctx.home.instance_dir(name), name, rev);
        }
    }
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    // On a terminal, over several instances: done/total.
    let bar = (work.len() > 1).then(|| {
        let b = crate::progress::Bar::new(
            Some(work.len() as u64),
            "Applying [{bar:30}] {pos}/{len} ({elapsed}) {msg}",
        );
        b.set_message(String::new());
        b
    });
    std::thread::scope(|scope| {
        for _ in 0..opts.parallel.max(1).min(work.len().max(1)) {
            scope.spawn(|| {
                while let Some(item) = work.get(next.fetch_add(1, Ordering::SeqCst)) {
                    if let Err(e) = converge_item(ctx, item, opts) {
                        failures.locked().push(e.to_string());
                    }
                    if let Some(b) = &bar {
                        b.set_message(format!("{} done", item.plan.instance));
                        b.inc(1);
                    }
                }
            });
        }
    });
    drop(bar);
    let mut failed = failures.into_inner().unwrap_or_else(|p| p.into_inner());
    if let Some(timeout) = opts.wait {
        failed.extend(wait_ready(ctx, planned, timeout));
    }
    failed
}

fn converge_item(ctx: &Ctx, item: &Item, opts: &ApplyOptions) -> Result<(), ExecError> {
    let name = &item.plan.instance;
    if !item.plan.refused.is_empty() {
        // Recorded as the instance's error; nothing is done.
        return execute::execute(&ctx.home, &item.plan, &opts.exec, None);
    }
    let popts = match item.desired {
        Some(_) => opts.plan,
        None => pruning(&opts.plan),
    };
    converge(
        ctx,
        name,
        item.desired.as_ref(),
        &popts,
        &opts.exec,
        &mut |_| {},
    )
    .map(drop)
}

/// `--wait`: every instance that should run must be Ready; a degraded guest
/// (failed requirement or provisioning script) fails with its errors.
fn wait_ready(ctx: &Ctx, planned: &Planned, timeout: Duration) -> Vec<String> {
    let mut failed = Vec::new();
    for item in &planned.items {
        let Some(d) = &item.desired else { continue };
        if d.power != Some(PowerState::Running) || !item.plan.refused.is_empty() {
            continue;
        }
        let name = &item.plan.instance;
        let dir = ctx.home.instance_dir(name);
        let opts = WaitOptions {
            timeout,
            progress: false,
        };
        if let Err(e) = wait::ready(&dir, name, opts) {
            failed.push(wait::describe_failure(name, &e));
        }
    }
    failed
}
