//! `plan(desired, observed, options) -> Plan`: pure, no I/O.
//!
//! The desired filled configuration is compared with the applied one (the
//! instance's `lima.yaml`) and, for a running VM, with the one it was started
//! with (`started.json`). Every change is classified (DESIGN §4): immutable
//! changes are refused (or recreate the instance with `--recreate`), the disk
//! only grows (while stopped), restart-required changes restart the VM (or
//! are left pending with `--restart=never`), live ones are just written.
//!
//! Every verb is a desired-state patch planned here: `stop` is "power
//! stopped, configuration as applied", `restart` is [`RestartPolicy::Always`],
//! `delete -f` is [`PlanOptions::force_stop`]; nobody edits a plan.

#[cfg(any(test, fuzzing))]
pub mod model;
mod reason;
pub mod render;
#[cfg(test)]
mod suspend_tests;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use serde::Serialize;

pub use reason::{Grow, Reason, Refusal};

use crate::spec::mutability::{self, FieldChange, FieldClass};
use crate::spec::typed::RunStrategy;
use crate::spec::{LimaYaml, Resolved, Spec};
use crate::store::{Instance, Status};

/// The power state an instance should be in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum PowerState {
    Running,
    Stopped,
    /// Not running, its memory saved to disk (`limactl suspend`): never
    /// declared by a file, only asked for by the verb.
    Suspended,
}

impl PowerState {
    /// `runStrategy` → desired power for a new instance (`Manual`: leave it
    /// as it is); [`super::power::desired_power`] also knows how the last run ended.
    pub fn from_run_strategy(s: RunStrategy) -> Option<PowerState> {
        match s {
            RunStrategy::Halted => Some(PowerState::Stopped),
            RunStrategy::Manual => None,
            RunStrategy::Always | RunStrategy::RerunOnFailure => Some(PowerState::Running),
        }
    }
}

/// A desired configuration: the bytes to store and what they mean.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredConfig {
    /// The `lima.yaml` bytes to store.
    pub lima_yaml: String,
    /// The filled, validated configuration in its wire form: what field
    /// changes are computed on (their paths and values are the user's).
    pub filled: LimaYaml,
    /// The same, resolved into plain values and enums: what steps act on.
    pub spec: Spec,
}

impl DesiredConfig {
    /// From a resolved `lima.yaml` and the bytes to store for it.
    pub fn new(lima_yaml: String, resolved: Resolved) -> DesiredConfig {
        DesiredConfig {
            lima_yaml,
            filled: resolved.config,
            spec: resolved.spec,
        }
    }
}

/// What an instance should look like.
#[derive(Clone, Debug)]
pub struct Desired {
    pub name: String,
    /// `None`: keep the applied configuration (a power-only patch such as
    /// `limactl stop`, or `start` of an existing instance without edit flags).
    pub config: Option<Arc<DesiredConfig>>,
    /// `None`: leave the power state as it is.
    pub power: Option<PowerState>,
    /// The `apply` source managing the instance, recorded in its `owner` file.
    pub owner: Option<String>,
    /// The commit of a Git source the configuration comes from.
    pub revision: Option<String>,
}

impl Desired {
    /// A power-only patch of an existing instance.
    pub fn power(name: &str, power: Option<PowerState>) -> Desired {
        Desired {
            name: name.to_string(),
            config: None,
            power,
            owner: None,
            revision: None,
        }
    }
}

/// Whether restart-required changes restart a running VM.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum RestartPolicy {
    /// Restart when a change requires it.
    #[default]
    Auto,
    /// Leave the change pending (`limactl status` shows it).
    Never,
    /// Restart even when nothing changed (`limactl restart`).
    #[value(skip)]
    Always,
}

/// On whose behalf a plan is made: it only changes what the reasons say.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Cause {
    /// A declared desired state (`apply`, the daemon).
    #[default]
    Declared,
    /// An imperative verb (`stop`, `delete`, …).
    Requested,
    /// A source that prunes no longer declares the instance.
    Pruned,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct PlanOptions {
    pub restart: RestartPolicy,
    /// Delete and recreate instances whose immutable fields changed.
    pub recreate: bool,
    /// Every stop kills QEMU instead of powering the guest off (`-f`).
    pub force_stop: bool,
    pub cause: Cause,
}

/// One thing to do to an instance. Steps carry what they need, so the
/// executor needs nothing but the plan.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// Make the instance directory with `lima.yaml` and `lima-version`.
    Create {
        #[serde(skip)]
        config: Arc<DesiredConfig>,
        #[serde(skip)]
        owner: Option<String>,
    },
    /// Fetch the image (and kernel/initrd) into `basedisk`.
    PrepareImages {
        #[serde(skip)]
        config: Arc<DesiredConfig>,
    },
    /// `diffdisk`: a qcow2 overlay on `basedisk` of the configured size.
    #[serde(rename = "create-disk")]
    CreateDiffDisk { size: u64 },
    /// Write the desired `lima.yaml`.
    UpdateConfig {
        #[serde(skip)]
        config: Arc<DesiredConfig>,
    },
    /// Record this source as the instance's owner.
    Adopt {
        #[serde(skip)]
        owner: String,
    },
    /// Grow `diffdisk` (only while stopped); the guest grows its filesystem at boot.
    GrowDisk { from: u64, to: u64 },
    /// Launch the host agent; returns once QEMU runs (readiness is observed
    /// afterwards, from events).
    Start,
    /// Graceful (ACPI power button) or forced (SIGKILL) stop.
    Stop { force: bool },
    /// Save the running VM's state into the instance directory, then stop
    /// QEMU and the host agent.
    Suspend,
    /// Launch the host agent, which loads the saved state instead of
    /// booting; returns once QEMU runs (readiness from events, as a start).
    Resume,
    /// Remove the saved state of a suspended instance (its memory is lost).
    DiscardState,
    /// Remove the instance directory.
    Delete,
}

impl Action {
    /// The verb shown in plans.
    pub fn verb(&self) -> &'static str {
        match self {
            Action::Create { .. } => "create",
            Action::PrepareImages { .. } => "prepare-images",
            Action::CreateDiffDisk { .. } => "create-disk",
            Action::UpdateConfig { .. } => "update-config",
            Action::Adopt { .. } => "adopt",
            Action::GrowDisk { .. } => "grow-disk",
            Action::Start => "start",
            Action::Stop { force: false } => "stop",
            Action::Stop { force: true } => "force-stop",
            Action::Suspend => "suspend",
            Action::Resume => "resume",
            Action::DiscardState => "discard-state",
            Action::Delete => "delete",
        }
    }
}

/// An action and why it is needed.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub action: Action,
    pub reason: Reason,
}

/// `{"action": "stop", "force": false, "reason": "<text>", "why": {"kind": …}}`:
/// `reason` keeps the text of earlier versions, `why` is its typed form.
impl Serialize for Step {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Json<'a> {
            #[serde(flatten)]
            action: &'a Action,
            reason: String,
            why: &'a Reason,
        }
        Json {
            action: &self.action,
            reason: self.reason.to_string(),
            why: &self.reason,
        }
        .serialize(s)
    }
}

/// How an instance's plan is summarised (terraform style).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    None,
    Create,
    Update,
    Restart,
    Recreate,
    Delete,
    Refuse,
}

impl Kind {
    pub fn symbol(self) -> &'static str {
        match self {
            Kind::None => " ",
            Kind::Create => "+",
            Kind::Update | Kind::Restart => "~",
            Kind::Recreate => "-/+",
            Kind::Delete => "-",
            Kind::Refuse => "!",
        }
    }

    pub fn text(self) -> &'static str {
        match self {
            Kind::None => "no changes",
            Kind::Create => "create",
            Kind::Update => "update",
            Kind::Restart => "restart",
            Kind::Recreate => "recreate",
            Kind::Delete => "delete",
            Kind::Refuse => "refused",
        }
    }
}

fn display_all<S: serde::Serializer>(v: &[Refusal], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(ToString::to_string))
}

/// The steps for one instance, and what was refused.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub instance: String,
    pub kind: Kind,
    pub steps: Vec<Step>,
    /// Field changes between the applied and the desired configuration.
    pub changes: Vec<FieldChange>,
    /// Changes that cannot be made, each with what to do instead.
    #[serde(serialize_with = "display_all")]
    pub refused: Vec<Refusal>,
    /// Restart-required changes that stay pending (`--restart=never`).
    pub pending_restart: Vec<String>,
    /// The Git commit the desired state comes from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
}

impl Plan {
    pub fn new(instance: &str) -> Plan {
        Plan {
            instance: instance.to_string(),
            kind: Kind::None,
            steps: Vec::new(),
            changes: Vec::new(),
            refused: Vec::new(),
            pending_restart: Vec::new(),
            revision: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty() && self.refused.is_empty()
    }

    fn push(&mut self, action: Action, reason: Reason) {
        self.steps.push(Step { action, reason });
    }

    pub fn has(&self, verb: &str) -> bool {
        self.steps.iter().any(|s| s.action.verb() == verb)
    }

    fn refuse(mut self, refused: Vec<Refusal>) -> Plan {
        self.kind = Kind::Refuse;
        self.steps.clear();
        self.refused = refused;
        self
    }
}

fn create_steps(p: &mut Plan, config: &Arc<DesiredConfig>, desired: &Desired, reason: Reason) {
    let want_disk = config.spec.disk.bytes();
    p.push(
        Action::Create {
            config: config.clone(),
            owner: desired.owner.clone(),
        },
        reason,
    );
    p.push(
        Action::PrepareImages {
            config: config.clone(),
        },
        Reason::NewBaseDisk,
    );
    p.push(
        Action::CreateDiffDisk { size: want_disk },
        Reason::NewDiffDisk { size: want_disk },
    );
    if desired.power == Some(PowerState::Running) {
        p.push(Action::Start, Reason::DesiredRunning);
    }
}

/// The stop step for `reason`, forced when asked to or when the VM is not
/// in a state a power button can reach.
fn stop(p: &mut Plan, opts: &PlanOptions, graceful: bool, reason: Reason) {
    p.push(
        Action::Stop {
            force: opts.force_stop || !graceful,
        },
        reason,
    );
}

/// Plans the deletion of an existing instance.
fn plan_delete(mut p: Plan, observed: &Instance, opts: &PlanOptions) -> Plan {
    // Only what limactl made is deleted: an instance (it has lima.yaml), or
    // what a failed delete of one left (it says so).
    if observed.dir_exists && !observed.present.lima_yaml && !observed.present.delete_failed {
        return p.refuse(vec![Refusal::NoLimaYaml {
            instance: observed.name.clone(),
            dir: observed.dir.display().to_string(),
        }]);
    }
    if observed.present.protected {
        return p.refuse(vec![Refusal::Protected {
            instance: observed.name.clone(),
        }]);
    }
    p.kind = Kind::Delete;
    let alive = observed.liveness.host_agent || observed.liveness.qemu;
    match observed.status {
        Status::Running => stop(&mut p, opts, true, Reason::RunningBeforeDelete),
        _ if alive => stop(
            &mut p,
            opts,
            false,
            Reason::BrokenBeforeDelete {
                errors: observed.errors.clone(),
            },
        ),
        _ => {}
    }
    let why = match opts.cause {
        Cause::Pruned => Reason::Pruned,
        _ => Reason::NotWanted,
    };
    p.push(Action::Delete, why);
    p
}

/// Plans how to get from `observed` to `desired` (`None`: deleted).
pub fn plan(desired: Option<&Desired>, observed: &Instance, opts: &PlanOptions) -> Plan {
    let mut p = Plan::new(&observed.name);
    p.revision = desired.and_then(|d| d.revision.clone());
    let exists = observed.present.lima_yaml || observed.dir_exists;

    let Some(desired) = desired else {
        return if exists {
            plan_delete(p, observed, opts)
        } else {
            p
        };
    };
    if desired.power == Some(PowerState::Suspended) {
        // A power-only patch (`limactl suspend`): a configuration in it is not looked at.
        return if exists {
            plan_suspend(p, desired, observed)
        } else {
            p.refuse(vec![Refusal::NotFound {
                instance: observed.name.clone(),
            }])
        };
    }

    if !exists {
        let Some(config) = &desired.config else {
            return p.refuse(vec![Refusal::NotFound {
                instance: observed.name.clone(),
            }]);
        };
        let mut p = p;
        p.kind = Kind::Create;
        create_steps(&mut p, config, desired, Reason::Missing);
        return p;
    }
    plan_existing(p, desired, observed, opts)
}

/// What the configuration part of a desired state asks of an existing instance.
struct ConfigDelta {
    /// Restart-required changes the running VM does not have.
    restart: Vec<FieldChange>,
    grow: Option<Grow>,
}

fn plan_existing(mut p: Plan, desired: &Desired, observed: &Instance, opts: &PlanOptions) -> Plan {
    let running = observed.status == Status::Running;
    let alive = observed.liveness.host_agent || observed.liveness.qemu;
    let mut delta = ConfigDelta {
        restart: Vec::new(),
        grow: None,
    };

    if let Some(config) = &desired.config {
        let Some(applied) = &observed.config else {
            // The stored lima.yaml does not load: the desired one replaces it.
            p.kind = Kind::Update;
            p.push(
                Action::UpdateConfig {
                    config: config.clone(),
                },
                Reason::AppliedInvalid {
                    errors: observed.errors.clone(),
                },
            );
            return p;
        };
        p.changes = mutability::diff(applied, &config.filled);
        let immutable: Vec<FieldChange> = p
            .changes
            .iter()
            .filter(|c| c.class == FieldClass::Immutable)
            .cloned()
            .collect();
        if !immutable.is_empty() {
            if opts.recreate && !observed.present.protected {
                p.kind = Kind::Recreate;
                let why = Reason::ImmutableChanged {
                    changes: immutable.clone(),
                };
                if running || alive {
                    stop(&mut p, opts, running, why.clone());
                }
                p.push(Action::Delete, why);
                create_steps(
                    &mut p,
                    config,
                    desired,
                    Reason::Recreate { changes: immutable },
                );
                return p;
            }
            let refused = immutable
                .into_iter()
                .map(|change| Refusal::Immutable {
                    instance: observed.name.clone(),
                    change,
                    protected: observed.present.protected,
                })
                .collect();
            return p.refuse(refused);
        }

        // The disk only grows.
        let want_disk = config.spec.disk.bytes();
        match observed.disk_size {
            None => p.push(
                Action::CreateDiffDisk { size: want_disk },
                Reason::DiffDiskMissing { size: want_disk },
            ),
            Some(have) if want_disk > have => {
                delta.grow = Some(Grow {
                    from: have,
                    to: want_disk,
                })
            }
            Some(have) if want_disk < have => {
                return p.refuse(vec![Refusal::Shrink {
                    from: have,
                    to: want_disk,
                }]);
            }
            _ => {}
        }
        if !observed.present.basedisk && !observed.present.diffdisk {
            p.steps.insert(
                0,
                Step {
                    action: Action::PrepareImages {
                        config: config.clone(),
                    },
                    reason: Reason::BaseDiskMissing,
                },
            );
        }
        // What the running VM would have to restart for: its start-time
        // configuration against the desired one (applied may have changed since).
        // A suspended VM resumes with its start-time configuration too.
        if running || observed.status == Status::Suspended {
            let base = observed.started.as_ref().unwrap_or(applied);
            delta.restart = mutability::diff(base, &config.filled)
                .into_iter()
                .filter(|c| c.class == FieldClass::RestartRequired)
                .collect();
        }
    }
    plan_power(p, desired, observed, opts, delta)
}

/// Owner, stop, configuration, disk and start steps of an existing instance
/// whose configuration change (if any) is allowed.
fn plan_power(
    mut p: Plan,
    desired: &Desired,
    observed: &Instance,
    opts: &PlanOptions,
    delta: ConfigDelta,
) -> Plan {
    let running = observed.status == Status::Running;
    let suspended = observed.status == Status::Suspended;
    let alive = observed.liveness.host_agent || observed.liveness.qemu;
    let needs_restart = !delta.restart.is_empty() || delta.grow.is_some();
    let restart_reason = || Reason::RestartRequired {
        changes: delta.restart.clone(),
        grow: delta.grow,
    };
    let adopt = desired
        .owner
        .as_ref()
        .filter(|o| observed.owner.as_ref() != Some(*o));
    let stop_first = running
        && match (desired.power, opts.restart) {
            (Some(PowerState::Stopped), _) => true,
            (_, RestartPolicy::Always) => true,
            (_, RestartPolicy::Auto) => needs_restart,
            (_, RestartPolicy::Never) => false,
        };
    let broken_alive = observed.status == Status::Broken && alive;

    if let Some(owner) = adopt {
        p.push(
            Action::Adopt {
                owner: owner.clone(),
            },
            match &observed.owner {
                None => Reason::Unmanaged,
                Some(o) => Reason::ManagedBy { owner: o.clone() },
            },
        );
    }
    if stop_first {
        let reason = match (desired.power, opts.restart, opts.cause) {
            (Some(PowerState::Stopped), _, Cause::Requested) => Reason::StopRequested,
            (Some(PowerState::Stopped), _, _) => Reason::DesiredStopped,
            (_, RestartPolicy::Always, _) => Reason::RestartRequested,
            _ => restart_reason(),
        };
        stop(&mut p, opts, true, reason);
    } else if suspended {
        // The saved state holds the VM as it was started: it is kept only
        // for a resume to the very configuration it was saved with.
        let discard = match (desired.power, opts.restart, opts.cause) {
            (Some(PowerState::Stopped), _, Cause::Requested) => {
                Some(Reason::SuspendedStopRequested)
            }
            (Some(PowerState::Stopped), _, _) => Some(Reason::SuspendedButDesiredStopped),
            (_, RestartPolicy::Always, _) => Some(Reason::RestartRequested),
            _ if needs_restart => Some(Reason::SavedStateStale {
                changes: delta.restart.clone(),
                grow: delta.grow,
            }),
            _ => None,
        };
        if let Some(why) = discard {
            p.push(Action::DiscardState, why);
        }
    } else if broken_alive && desired.power.is_some() {
        stop(
            &mut p,
            opts,
            false,
            Reason::Broken {
                errors: observed.errors.clone(),
            },
        );
    }
    if let Some(config) = desired.config.as_ref().filter(|_| !p.changes.is_empty()) {
        p.push(
            Action::UpdateConfig {
                config: config.clone(),
            },
            Reason::ConfigChanged {
                changes: p.changes.clone(),
            },
        );
    }
    let stopped_now = !running || stop_first;
    if let Some(g) = delta.grow.filter(|_| stopped_now) {
        p.push(
            Action::GrowDisk {
                from: g.from,
                to: g.to,
            },
            Reason::GrowDisk(g),
        );
    }
    if running && !stop_first && needs_restart {
        p.pending_restart = delta.restart.iter().map(FieldChange::describe).collect();
        if let Some(g) = delta.grow {
            p.pending_restart.push(g.to_string());
        }
    }
    let start = match desired.power {
        Some(PowerState::Running) => !running || stop_first,
        // Manual: a restart keeps a running VM running.
        None => running && stop_first,
        Some(PowerState::Stopped | PowerState::Suspended) => false,
    };
    let resume = suspended && !p.has(Action::DiscardState.verb());
    if start && resume {
        p.push(Action::Resume, Reason::SuspendedButDesiredRunning);
    } else if start {
        let reason = if running && opts.restart == RestartPolicy::Always {
            Reason::RestartRequested
        } else if running {
            restart_reason()
        } else if broken_alive {
            Reason::DesiredRunning
        } else {
            Reason::StoppedButDesiredRunning
        };
        p.push(Action::Start, reason);
    }

    p.kind = if p.steps.is_empty() {
        Kind::None
    } else if ((running && stop_first) || (suspended && !resume)) && start {
        Kind::Restart
    } else {
        Kind::Update
    };
    p
}

/// `limactl suspend`: a running VM saves its state and stops; a suspended
/// one is left as it is; anything else has nothing to suspend.
fn plan_suspend(mut p: Plan, desired: &Desired, observed: &Instance) -> Plan {
    match observed.status {
        Status::Running | Status::Suspended => {}
        status => {
            return p.refuse(vec![Refusal::NotRunning {
                instance: observed.name.clone(),
                status: status.as_str().to_string(),
            }]);
        }
    }
    if let Some(c) = &observed.config
        && c.mounts.as_ref().is_some_and(|m| !m.is_empty())
        && let Some(t) = c
            .mount_type
            .as_deref()
            .filter(|t| *t == "9p" || *t == "virtiofs")
    {
        return p.refuse(vec![Refusal::Unsuspendable {
            instance: observed.name.clone(),
            why: format!("QEMU cannot save a VM while a `mountType: {t}` mount is in use"),
        }]);
    }
    if let Some(owner) = desired
        .owner
        .as_ref()
        .filter(|o| observed.owner.as_ref() != Some(*o))
    {
        p.push(
            Action::Adopt {
                owner: owner.clone(),
            },
            match &observed.owner {
                None => Reason::Unmanaged,
                Some(o) => Reason::ManagedBy { owner: o.clone() },
            },
        );
    }
    if observed.status == Status::Running {
        p.push(Action::Suspend, Reason::SuspendRequested);
    }
    if !p.steps.is_empty() {
        p.kind = Kind::Update;
    }
    p
}
