//! `plan(desired, observed, options) -> Plan`: pure, no I/O.
//!
//! The desired filled configuration is compared with the applied one (the
//! instance's `lima.yaml`) and, for a running VM, with the one it was started
//! with (`started.json`). Every change is classified (DESIGN §4): immutable
//! changes are refused (or recreate the instance with `--recreate`), the disk
//! only grows (while stopped), restart-required changes restart the VM (or
//! are left pending with `--restart=never`), live ones are just written.

use serde::Serialize;

use crate::spec::LimaYaml;
use crate::spec::defaults::size_bytes;
use crate::spec::mutability::{self, FieldChange, FieldClass};
use crate::spec::units::format_size;
use crate::spec::yaml::quote_name;
use crate::store::{Instance, Status};

/// The power state an instance should be in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum PowerState {
    Running,
    Stopped,
}

impl PowerState {
    /// `runStrategy` → desired power (`Manual`: leave it as it is).
    pub fn from_run_strategy(s: Option<&str>) -> Option<PowerState> {
        match s.unwrap_or("Always") {
            "Halted" => Some(PowerState::Stopped),
            "Manual" => None,
            _ => Some(PowerState::Running),
        }
    }
}

/// What an instance should look like.
#[derive(Clone, Debug)]
pub struct Desired {
    pub name: String,
    /// The `lima.yaml` bytes to store.
    pub lima_yaml: String,
    /// The filled configuration.
    pub config: LimaYaml,
    /// `None`: leave the power state as it is.
    pub power: Option<PowerState>,
    /// The `apply` source managing the instance, recorded in its `owner` file.
    pub owner: Option<String>,
}

/// Whether restart-required changes restart a running VM.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum RestartPolicy {
    #[default]
    Auto,
    Never,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct PlanOptions {
    pub restart: RestartPolicy,
    /// Delete and recreate instances whose immutable fields changed.
    pub recreate: bool,
}

/// One thing to do to an instance.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// Make the instance directory with `lima.yaml` and `lima-version`.
    Create,
    /// Fetch the image (and kernel/initrd) into `basedisk`.
    PrepareImages,
    /// `diffdisk`: a qcow2 overlay on `basedisk` of the configured size.
    #[serde(rename = "create-disk")]
    CreateDiffDisk { size: u64 },
    /// Write the desired `lima.yaml`.
    UpdateConfig,
    /// Record this source as the instance's owner.
    Adopt,
    /// Grow `diffdisk` (only while stopped); the guest grows its filesystem at boot.
    GrowDisk { from: u64, to: u64 },
    /// Launch the host agent and wait until the guest is ready.
    Start,
    /// Graceful (ACPI power button) or forced (SIGKILL) stop.
    Stop { force: bool },
    /// Remove the instance directory.
    Delete,
}

impl Action {
    /// The verb shown in plans.
    pub fn verb(&self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::PrepareImages => "prepare-images",
            Action::CreateDiffDisk { .. } => "create-disk",
            Action::UpdateConfig => "update-config",
            Action::Adopt => "adopt",
            Action::GrowDisk { .. } => "grow-disk",
            Action::Start => "start",
            Action::Stop { force: false } => "stop",
            Action::Stop { force: true } => "force-stop",
            Action::Delete => "delete",
        }
    }
}

/// An action and why it is needed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Step {
    #[serde(flatten)]
    pub action: Action,
    pub reason: String,
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
    pub refused: Vec<String>,
    /// Restart-required changes that stay pending (`--restart=never`).
    pub pending_restart: Vec<String>,
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
        }
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty() && self.refused.is_empty()
    }

    fn push(&mut self, action: Action, reason: impl Into<String>) {
        self.steps.push(Step {
            action,
            reason: reason.into(),
        });
    }

    pub fn has(&self, verb: &str) -> bool {
        self.steps.iter().any(|s| s.action.verb() == verb)
    }
}

fn describe_all(changes: &[&FieldChange]) -> String {
    changes
        .iter()
        .map(|c| c.describe())
        .collect::<Vec<_>>()
        .join(", ")
}

fn create_steps(p: &mut Plan, desired: &Desired, reason: &str) {
    let want_disk = size_bytes(&desired.config.disk);
    p.push(Action::Create, reason);
    p.push(Action::PrepareImages, "new instance needs its base disk");
    p.push(
        Action::CreateDiffDisk { size: want_disk },
        format!("new instance needs its {} disk", format_size(want_disk)),
    );
    if desired.power == Some(PowerState::Running) {
        p.push(Action::Start, "desired power state is running");
    }
}

/// Plans how to get from `observed` to `desired` (`None`: deleted).
pub fn plan(desired: Option<&Desired>, observed: &Instance, opts: &PlanOptions) -> Plan {
    let mut p = Plan::new(&observed.name);
    let exists = observed.present.lima_yaml || observed.dir_exists;
    let alive = observed.liveness.host_agent || observed.liveness.qemu;

    let Some(desired) = desired else {
        if !exists {
            return p;
        }
        if observed.present.protected {
            p.kind = Kind::Refuse;
            p.refused.push(format!(
                "instance {} is protected to prohibit accidental removal (hint: use `limactl unprotect`)",
                quote_name(&observed.name)
            ));
            return p;
        }
        p.kind = Kind::Delete;
        match observed.status {
            Status::Running => p.push(
                Action::Stop { force: false },
                "instance is running; stop it before deleting",
            ),
            _ if alive => p.push(
                Action::Stop { force: true },
                format!(
                    "instance is Broken ({}); kill what is left",
                    observed.errors.join("; ")
                ),
            ),
            _ => {}
        }
        p.push(Action::Delete, "instance is not wanted any more");
        return p;
    };

    if !exists {
        p.kind = Kind::Create;
        create_steps(&mut p, desired, "instance does not exist");
        return p;
    }

    let running = observed.status == Status::Running;
    let Some(applied) = &observed.config else {
        // The stored lima.yaml does not load: the desired one replaces it.
        p.kind = Kind::Update;
        p.push(
            Action::UpdateConfig,
            format!(
                "the applied lima.yaml does not load ({})",
                observed.errors.join("; ")
            ),
        );
        return p;
    };

    p.changes = mutability::diff(applied, &desired.config);
    let immutable: Vec<&FieldChange> = p
        .changes
        .iter()
        .filter(|c| c.class == FieldClass::Immutable)
        .collect();
    if !immutable.is_empty() {
        if opts.recreate && !observed.present.protected {
            p.kind = Kind::Recreate;
            let why = format!("immutable fields changed: {}", describe_all(&immutable));
            if running || alive {
                p.push(Action::Stop { force: !running }, why.clone());
            }
            p.push(Action::Delete, why.clone());
            create_steps(&mut p, desired, &format!("recreate ({why})"));
            return p;
        }
        p.kind = Kind::Refuse;
        for c in &immutable {
            let hint = if observed.present.protected {
                "the instance is protected, so it cannot be recreated; `limactl unprotect` it first or restore the old value".to_string()
            } else {
                format!(
                    "restore the old value, or apply with `--recreate` to delete and recreate {} (its disk is lost)",
                    quote_name(&observed.name)
                )
            };
            p.refused.push(format!(
                "field `{}` is immutable ({}): {hint}",
                c.path,
                c.describe()
            ));
        }
        return p;
    }

    // The disk only grows.
    let want_disk = size_bytes(&desired.config.disk);
    let mut grow = None;
    match observed.disk_size {
        None => p.push(
            Action::CreateDiffDisk { size: want_disk },
            format!(
                "diffdisk is missing; create it with {}",
                format_size(want_disk)
            ),
        ),
        Some(have) if want_disk > have => grow = Some((have, want_disk)),
        Some(have) if want_disk < have => {
            p.kind = Kind::Refuse;
            p.refused.push(format!(
                "field `disk` cannot shrink ({} → {}): disks only grow; keep `disk: {}` or recreate the instance",
                format_size(have),
                format_size(want_disk),
                format_size(have)
            ));
            p.steps.clear();
            return p;
        }
        _ => {}
    }
    if !observed.present.basedisk && !observed.present.diffdisk {
        p.steps.insert(
            0,
            Step {
                action: Action::PrepareImages,
                reason: "basedisk is missing".into(),
            },
        );
    }

    // What the running VM would have to restart for: its start-time
    // configuration against the desired one (applied may have changed since).
    let restart_changes: Vec<FieldChange> = if running {
        let base = observed.started.as_ref().unwrap_or(applied);
        mutability::diff(base, &desired.config)
            .into_iter()
            .filter(|c| c.class == FieldClass::RestartRequired)
            .collect()
    } else {
        Vec::new()
    };
    let restart_reason = {
        let mut parts: Vec<String> = restart_changes.iter().map(|c| c.describe()).collect();
        if let Some((from, to)) = grow {
            parts.push(format!("disk {} → {}", format_size(from), format_size(to)));
        }
        parts.join(", ")
    };

    let config_changed = !p.changes.is_empty();
    let adopt = desired.owner.is_some() && observed.owner != desired.owner;
    let stop_first = match (desired.power, observed.status) {
        (Some(PowerState::Stopped), Status::Running) => true,
        (_, Status::Running) => {
            (!restart_changes.is_empty() || grow.is_some()) && opts.restart == RestartPolicy::Auto
        }
        _ => false,
    };
    let broken_alive = observed.status == Status::Broken && alive;

    if adopt {
        p.push(
            Action::Adopt,
            match &observed.owner {
                None => {
                    "instance exists but no source manages it; this source takes it over".into()
                }
                Some(o) => format!("managed by {o} until now"),
            },
        );
    }
    if stop_first {
        let reason = if desired.power == Some(PowerState::Stopped) {
            "desired power state is stopped".to_string()
        } else {
            format!("restart required: {restart_reason}")
        };
        p.push(Action::Stop { force: false }, reason);
    } else if broken_alive && desired.power.is_some() {
        p.push(
            Action::Stop { force: true },
            format!(
                "instance is Broken ({}); clean up first",
                observed.errors.join("; ")
            ),
        );
    }
    if config_changed {
        let shown: Vec<&FieldChange> = p.changes.iter().collect();
        p.push(Action::UpdateConfig, describe_all(&shown));
    }
    let stopped_now = !running || stop_first;
    if let Some((from, to)) = grow
        && stopped_now
    {
        p.push(
            Action::GrowDisk { from, to },
            format!("disk {} → {}", format_size(from), format_size(to)),
        );
    }
    if running && !stop_first && (!restart_changes.is_empty() || grow.is_some()) {
        p.pending_restart = restart_changes.iter().map(|c| c.describe()).collect();
        if let Some((from, to)) = grow {
            p.pending_restart
                .push(format!("disk {} → {}", format_size(from), format_size(to)));
        }
    }
    let start = match desired.power {
        Some(PowerState::Running) => !running || stop_first,
        // Manual: a restart keeps a running VM running.
        None => running && stop_first,
        Some(PowerState::Stopped) => false,
    };
    if start {
        let reason = if running {
            format!("restart required: {restart_reason}")
        } else if broken_alive {
            "desired power state is running".into()
        } else {
            "instance is stopped; desired power state is running".into()
        };
        p.push(Action::Start, reason);
    }

    p.kind = if p.steps.is_empty() {
        Kind::None
    } else if running && stop_first && start {
        Kind::Restart
    } else {
        Kind::Update
    };
    p
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::instance::{Liveness, Present};

    pub(crate) fn config(cpus: i64, disk: &str, arch: &str) -> LimaYaml {
        LimaYaml {
            cpus: Some(cpus),
            disk: Some(disk.into()),
            arch: Some(arch.into()),
            ..Default::default()
        }
    }

    pub(crate) fn observed(
        status: Status,
        config: Option<LimaYaml>,
        disk: Option<u64>,
    ) -> Instance {
        let exists = config.is_some();
        Instance {
            name: "vm".into(),
            dir: "/lh/vm".into(),
            dir_exists: exists,
            present: Present {
                lima_yaml: exists,
                basedisk: exists,
                diffdisk: disk.is_some(),
                ..Default::default()
            },
            lima_yaml: None,
            started: if status == Status::Running {
                config.clone()
            } else {
                None
            },
            config,
            status,
            errors: vec![],
            liveness: Liveness {
                host_agent: status == Status::Running,
                qemu: status == Status::Running,
            },
            host_agent_pid: None,
            driver_pid: None,
            ssh_local_port: 0,
            lima_version: None,
            disk_size: disk,
            owner: None,
        }
    }

    fn desired(power: Option<PowerState>, config: LimaYaml) -> Desired {
        Desired {
            name: "vm".into(),
            lima_yaml: String::new(),
            config,
            power,
            owner: None,
        }
    }

    fn verbs(p: &Plan) -> Vec<&'static str> {
        p.steps.iter().map(|s| s.action.verb()).collect()
    }

    const G10: u64 = 10 << 30;
    const RUN: Option<PowerState> = Some(PowerState::Running);
    const STOP: Option<PowerState> = Some(PowerState::Stopped);

    #[test]
    fn create_and_start_a_missing_instance() {
        let o = observed(Status::Unknown, None, None);
        let p = plan(
            Some(&desired(RUN, config(2, "10GiB", "x86_64"))),
            &o,
            &PlanOptions::default(),
        );
        assert_eq!(
            verbs(&p),
            ["create", "prepare-images", "create-disk", "start"]
        );
        assert_eq!(p.kind, Kind::Create);
        assert_eq!(p.steps[2].reason, "new instance needs its 10GiB disk");
        let p = plan(
            Some(&desired(None, config(2, "10GiB", "x86_64"))),
            &o,
            &PlanOptions::default(),
        );
        assert_eq!(verbs(&p), ["create", "prepare-images", "create-disk"]);
    }

    #[test]
    fn power_transitions_are_idempotent() {
        let c = config(2, "10GiB", "x86_64");
        let stopped = observed(Status::Stopped, Some(c.clone()), Some(G10));
        let running = observed(Status::Running, Some(c.clone()), Some(G10));
        let o = PlanOptions::default();
        assert_eq!(
            verbs(&plan(Some(&desired(RUN, c.clone())), &stopped, &o)),
            ["start"]
        );
        assert!(plan(Some(&desired(RUN, c.clone())), &running, &o).is_empty());
        assert_eq!(
            verbs(&plan(Some(&desired(STOP, c.clone())), &running, &o)),
            ["stop"]
        );
        assert!(plan(Some(&desired(STOP, c.clone())), &stopped, &o).is_empty());
        assert!(plan(Some(&desired(None, c.clone())), &running, &o).is_empty());
        assert!(plan(Some(&desired(None, c.clone())), &stopped, &o).is_empty());
        let mut broken = observed(Status::Broken, Some(c.clone()), Some(G10));
        broken.liveness.host_agent = true;
        broken.errors = vec!["host agent is running but driver is not".into()];
        let p = plan(Some(&desired(RUN, c)), &broken, &o);
        assert_eq!(verbs(&p), ["force-stop", "start"]);
        assert!(
            p.steps[0]
                .reason
                .contains("host agent is running but driver is not")
        );
    }

    #[test]
    fn restart_required_changes_restart_with_reasons() {
        let running = observed(
            Status::Running,
            Some(config(2, "10GiB", "x86_64")),
            Some(G10),
        );
        let want = config(4, "10GiB", "x86_64");
        let p = plan(
            Some(&desired(RUN, want.clone())),
            &running,
            &PlanOptions::default(),
        );
        assert_eq!(verbs(&p), ["stop", "update-config", "start"]);
        assert_eq!(p.kind, Kind::Restart);
        assert_eq!(p.steps[0].reason, "restart required: cpus 2 → 4");
        assert_eq!(p.steps[1].reason, "cpus 2 → 4");
        assert_eq!(p.changes[0].class, FieldClass::RestartRequired);

        let never = PlanOptions {
            restart: RestartPolicy::Never,
            ..Default::default()
        };
        let p = plan(Some(&desired(RUN, want.clone())), &running, &never);
        assert_eq!(verbs(&p), ["update-config"]);
        assert_eq!(p.pending_restart, vec!["cpus 2 → 4"]);

        // After that apply the file holds cpus 4 but the VM still runs with 2:
        // the restart stays pending, and `auto` carries it out.
        let mut updated = running.clone();
        updated.config = Some(want.clone());
        let p = plan(Some(&desired(RUN, want.clone())), &updated, &never);
        assert!(p.steps.is_empty());
        assert_eq!(p.pending_restart, vec!["cpus 2 → 4"]);
        let p = plan(Some(&desired(RUN, want)), &updated, &PlanOptions::default());
        assert_eq!(verbs(&p), ["stop", "start"]);

        // Stopped: the file is updated, nothing else.
        let stopped = observed(
            Status::Stopped,
            Some(config(2, "10GiB", "x86_64")),
            Some(G10),
        );
        let p = plan(
            Some(&desired(None, config(4, "10GiB", "x86_64"))),
            &stopped,
            &PlanOptions::default(),
        );
        assert_eq!(verbs(&p), ["update-config"]);
    }

    #[test]
    fn live_changes_only_rewrite_the_file() {
        let running = observed(
            Status::Running,
            Some(config(2, "10GiB", "x86_64")),
            Some(G10),
        );
        let mut want = config(2, "10GiB", "x86_64");
        want.message = Some("hello".into());
        let p = plan(Some(&desired(RUN, want)), &running, &PlanOptions::default());
        assert_eq!(verbs(&p), ["update-config"]);
        assert_eq!(p.changes[0].class, FieldClass::Live);
        assert!(p.pending_restart.is_empty());
    }

    #[test]
    fn immutable_changes_are_refused_or_recreate() {
        let running = observed(
            Status::Running,
            Some(config(2, "10GiB", "x86_64")),
            Some(G10),
        );
        let want = config(4, "10GiB", "aarch64");
        let p = plan(
            Some(&desired(RUN, want.clone())),
            &running,
            &PlanOptions::default(),
        );
        assert!(
            p.steps.is_empty(),
            "nothing happens, not even the cpus change"
        );
        assert_eq!(p.kind, Kind::Refuse);
        assert!(
            p.refused[0].starts_with("field `arch` is immutable (arch x86_64 → aarch64)"),
            "{:?}",
            p.refused
        );
        assert!(p.refused[0].contains("--recreate"));
        let rec = PlanOptions {
            recreate: true,
            ..Default::default()
        };
        let p = plan(Some(&desired(RUN, want.clone())), &running, &rec);
        assert_eq!(
            verbs(&p),
            [
                "stop",
                "delete",
                "create",
                "prepare-images",
                "create-disk",
                "start"
            ]
        );
        assert_eq!(p.kind, Kind::Recreate);
        let mut protected = running.clone();
        protected.present.protected = true;
        let p = plan(Some(&desired(RUN, want)), &protected, &rec);
        assert!(p.steps.is_empty());
        assert!(p.refused[0].contains("protected"));
    }

    #[test]
    fn disks_grow_while_stopped_and_never_shrink() {
        let stopped = observed(
            Status::Stopped,
            Some(config(2, "10GiB", "x86_64")),
            Some(G10),
        );
        let p = plan(
            Some(&desired(None, config(2, "20GiB", "x86_64"))),
            &stopped,
            &PlanOptions::default(),
        );
        assert_eq!(verbs(&p), ["update-config", "grow-disk"]);
        assert_eq!(p.steps[1].reason, "disk 10GiB → 20GiB");
        assert_eq!(p.changes[0].class, FieldClass::GrowOnly);
        let running = observed(
            Status::Running,
            Some(config(2, "10GiB", "x86_64")),
            Some(G10),
        );
        let p = plan(
            Some(&desired(RUN, config(2, "20GiB", "x86_64"))),
            &running,
            &PlanOptions::default(),
        );
        assert_eq!(verbs(&p), ["stop", "update-config", "grow-disk", "start"]);
        assert_eq!(p.steps[0].reason, "restart required: disk 10GiB → 20GiB");
        let p = plan(
            Some(&desired(None, config(2, "5GiB", "x86_64"))),
            &stopped,
            &PlanOptions::default(),
        );
        assert!(p.steps.is_empty());
        assert!(
            p.refused[0].contains("cannot shrink (10GiB → 5GiB)"),
            "{:?}",
            p.refused
        );
        let missing = observed(Status::Stopped, Some(config(2, "5GiB", "x86_64")), None);
        assert_eq!(
            verbs(&plan(
                Some(&desired(None, config(2, "5GiB", "x86_64"))),
                &missing,
                &PlanOptions::default()
            )),
            ["create-disk"]
        );
    }

    #[test]
    fn delete_and_adopt() {
        let c = config(2, "10GiB", "x86_64");
        let o = PlanOptions::default();
        let running = observed(Status::Running, Some(c.clone()), Some(1));
        assert_eq!(verbs(&plan(None, &running, &o)), ["stop", "delete"]);
        let stopped = observed(Status::Stopped, Some(c.clone()), Some(G10));
        assert_eq!(verbs(&plan(None, &stopped, &o)), ["delete"]);
        let mut protected = stopped.clone();
        protected.present.protected = true;
        let p = plan(None, &protected, &o);
        assert!(p.steps.is_empty() && p.refused[0].contains("protected"));
        assert!(plan(None, &observed(Status::Unknown, None, None), &o).is_empty());
        let mut d = desired(STOP, c);
        d.owner = Some("/src".into());
        let p = plan(Some(&d), &stopped, &o);
        assert_eq!(verbs(&p), ["adopt"]);
        let mut owned = stopped.clone();
        owned.owner = Some("/src".into());
        assert!(plan(Some(&d), &owned, &o).is_empty());
    }

    /// What executing a step does to the observed state (a model of the executor).
    fn simulate(p: &Plan, d: Option<&Desired>, mut o: Instance) -> Instance {
        for s in &p.steps {
            match &s.action {
                Action::Create => {
                    let d = d.unwrap();
                    o.dir_exists = true;
                    o.present.lima_yaml = true;
                    o.config = Some(d.config.clone());
                    o.owner = d.owner.clone();
                    o.status = Status::Stopped;
                }
                Action::PrepareImages => o.present.basedisk = true,
                Action::CreateDiffDisk { size } => {
                    o.present.diffdisk = true;
                    o.disk_size = Some(*size);
                }
                Action::UpdateConfig => o.config = Some(d.unwrap().config.clone()),
                Action::Adopt => o.owner = d.unwrap().owner.clone(),
                Action::GrowDisk { to, .. } => o.disk_size = Some(*to),
                Action::Start => {
                    o.status = Status::Running;
                    o.liveness = Liveness {
                        host_agent: true,
                        qemu: true,
                    };
                    o.started = o.config.clone();
                    o.errors.clear();
                }
                Action::Stop { .. } => {
                    o.status = Status::Stopped;
                    o.liveness = Liveness::default();
                    o.errors.clear();
                }
                Action::Delete => {
                    o = observed(Status::Unknown, None, None);
                }
            }
        }
        o
    }

    use proptest::prelude::*;

    fn arb_config() -> impl Strategy<Value = LimaYaml> {
        (
            1i64..3,
            prop_oneof![Just("10GiB"), Just("20GiB")],
            prop_oneof![Just("x86_64"), Just("aarch64")],
            any::<bool>(),
        )
            .prop_map(|(cpus, disk, arch, msg)| {
                let mut c = config(cpus, disk, arch);
                if msg {
                    c.message = Some("hi".into());
                }
                c
            })
    }

    fn arb_observed() -> impl Strategy<Value = Instance> {
        (
            0u8..4,
            arb_config(),
            proptest::option::of(arb_config()),
            prop_oneof![Just(None), Just(Some(10u64 << 30)), Just(Some(20u64 << 30))],
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(state, applied, started, disk, protected, owned)| {
                let mut o = match state {
                    0 => observed(Status::Unknown, None, None),
                    1 => observed(Status::Stopped, Some(applied), disk),
                    2 => observed(Status::Running, Some(applied), disk.or(Some(10 << 30))),
                    _ => {
                        let mut b = observed(Status::Broken, Some(applied), disk);
                        b.liveness.host_agent = true;
                        b
                    }
                };
                if o.status == Status::Running
                    && let Some(s) = started
                {
                    o.started = Some(s);
                }
                o.present.protected = protected && o.dir_exists;
                if owned && o.dir_exists {
                    o.owner = Some("/src".into());
                }
                o
            })
    }

    proptest! {
        /// Carrying out a plan reaches the desired state, and planning again
        /// then finds nothing left to do.
        #[test]
        fn planning_after_applying_a_plan_is_empty(
            o in arb_observed(),
            cfg in arb_config(),
            power in prop_oneof![Just(RUN), Just(STOP), Just(None)],
            delete in proptest::bool::weighted(0.15),
            never in any::<bool>(),
            recreate in any::<bool>(),
        ) {
            let opts = PlanOptions {
                restart: if never { RestartPolicy::Never } else { RestartPolicy::Auto },
                recreate,
            };
            let mut d = desired(power, cfg);
            d.owner = Some("/src".into());
            let d = if delete { None } else { Some(&d) };
            let p1 = plan(d, &o, &opts);
            if !p1.refused.is_empty() {
                prop_assert!(p1.steps.is_empty(), "a refused plan does nothing: {p1:?}");
                let again = plan(d, &o, &opts);
                prop_assert_eq!(again.refused, p1.refused);
                return Ok(());
            }
            let o2 = simulate(&p1, d, o.clone());
            // Converged: configuration, disk, power and owner are what was asked for.
            match d {
                None => prop_assert!(!o2.dir_exists),
                Some(d) => {
                    prop_assert_eq!(o2.config.as_ref(), Some(&d.config));
                    prop_assert_eq!(o2.owner.as_ref(), d.owner.as_ref());
                    let want = size_bytes(&d.config.disk);
                    let pending_grow = p1.pending_restart.iter().any(|s| s.starts_with("disk "));
                    prop_assert!(pending_grow || o2.disk_size == Some(want),
                        "disk {:?} != {want}: {:?}", o2.disk_size, p1.steps);
                    match d.power {
                        Some(PowerState::Running) => prop_assert_eq!(o2.status, Status::Running),
                        Some(PowerState::Stopped) => prop_assert_eq!(o2.status, Status::Stopped),
                        None => {}
                    }
                    if o2.status == Status::Running && opts.restart == RestartPolicy::Auto {
                        prop_assert_eq!(o2.started.as_ref().map(|s| s.cpus), Some(d.config.cpus));
                    }
                }
            }
            let p2 = plan(d, &o2, &opts);
            prop_assert!(p2.steps.is_empty() && p2.refused.is_empty(),
                "first plan {:?}\nthen {:?}\nfrom {:?}", p1.steps, p2.steps, o);
        }
    }
}
