//! A model of the executor, for the property test and the plan fuzz target
//! (`fuzz/`): what each step does to the observed state, and the property
//! every plan must have — carrying it out reaches the desired state, and
//! planning again finds nothing left to do.

use std::sync::Arc;

use super::*;
use crate::store::instance::{Liveness, Present};

/// A configuration with just what the plan compares.
pub fn config(cpus: i64, disk: &str, arch: &str) -> LimaYaml {
    LimaYaml {
        cpus: Some(cpus),
        disk: Some(disk.into()),
        arch: Some(arch.into()),
        ..Default::default()
    }
}

pub fn observed(status: Status, config: Option<LimaYaml>, disk: Option<u64>) -> Instance {
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
        started: if status == Status::Running || status == Status::Suspended {
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

pub fn desired(power: Option<PowerState>, config: LimaYaml) -> Desired {
    let spec = Spec::for_tests(serde_json::to_value(&config).unwrap());
    Desired {
        name: "vm".into(),
        config: Some(Arc::new(DesiredConfig {
            lima_yaml: String::new(),
            filled: config,
            spec,
        })),
        power,
        owner: None,
        revision: None,
    }
}

/// What executing a step does to the observed state (a model of the executor).
/// It reads only the plan: steps carry what they need.
pub fn simulate(p: &Plan, mut o: Instance) -> Instance {
    for s in &p.steps {
        match &s.action {
            Action::Create { config, owner } => {
                o.dir_exists = true;
                o.present.lima_yaml = true;
                o.config = Some(config.filled.clone());
                o.owner = owner.clone();
                o.status = Status::Stopped;
            }
            Action::PrepareImages { .. } => o.present.basedisk = true,
            Action::CreateDiffDisk { size } => {
                o.present.diffdisk = true;
                o.disk_size = Some(*size);
            }
            Action::UpdateConfig { config } => o.config = Some(config.filled.clone()),
            Action::Adopt { owner } => o.owner = Some(owner.clone()),
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
            Action::Suspend => {
                o.status = Status::Suspended;
                o.liveness = Liveness::default();
            }
            // It runs again as it was started.
            Action::Resume => {
                o.status = Status::Running;
                o.liveness = Liveness {
                    host_agent: true,
                    qemu: true,
                };
            }
            Action::DiscardState => o.status = Status::Stopped,
        }
    }
    o
}

/// The property: a refused plan does nothing (and stays refused); `-f`
/// makes every stop a kill; after the plan, configuration, disk, power and
/// owner are what was asked for; planning again is empty. A restart
/// (`RestartPolicy::Always`) is a one-off request: what it leaves is
/// converged under `auto`.
pub fn check(d: Option<&Desired>, o: &Instance, opts: &PlanOptions) -> Result<(), String> {
    let fail = |what: String| Err(what);
    let p1 = plan(d, o, opts);
    if !p1.refused.is_empty() {
        if !p1.steps.is_empty() {
            return fail(format!("a refused plan does nothing: {p1:?}"));
        }
        if plan(d, o, opts).refused != p1.refused {
            return fail("a refusal is stable".into());
        }
        return Ok(());
    }
    if opts.force_stop
        && p1
            .steps
            .iter()
            .any(|s| s.action == Action::Stop { force: false })
    {
        return fail(format!("-f makes every stop a kill: {:?}", p1.steps));
    }
    let o2 = simulate(&p1, o.clone());
    match d {
        None if o2.dir_exists => return fail(format!("not deleted: {:?}", p1.steps)),
        None => {}
        Some(d) => {
            // A suspend is a power-only patch whatever it carries.
            match d
                .config
                .as_ref()
                .filter(|_| d.power != Some(PowerState::Suspended))
            {
                Some(c) => {
                    if o2.config.as_ref() != Some(&c.filled) {
                        return fail(format!("configuration not applied: {:?}", p1.steps));
                    }
                    let want = c.spec.disk.bytes();
                    let pending_grow = p1.pending_restart.iter().any(|s| s.starts_with("disk "));
                    if !pending_grow && o2.disk_size != Some(want) {
                        return fail(format!("disk {:?} != {want}: {:?}", o2.disk_size, p1.steps));
                    }
                    if o2.status == Status::Running
                        && opts.restart != RestartPolicy::Never
                        && o2.started.as_ref().map(|s| s.cpus) != Some(c.filled.cpus)
                    {
                        return fail(format!("runs with stale cpus: {:?}", p1.steps));
                    }
                }
                None => {
                    if o2.config != o.config || o2.disk_size != o.disk_size {
                        return fail("a power-only patch keeps the configuration".into());
                    }
                }
            }
            if o2.owner.as_ref() != d.owner.as_ref() {
                return fail(format!("owner {:?} != {:?}", o2.owner, d.owner));
            }
            let power_ok = match d.power {
                Some(PowerState::Running) => o2.status == Status::Running,
                Some(PowerState::Stopped) => o2.status == Status::Stopped,
                Some(PowerState::Suspended) => o2.status == Status::Suspended,
                None => true,
            };
            if !power_ok {
                return fail(format!("power {:?} after {:?}", o2.status, p1.steps));
            }
        }
    }
    let declared = PlanOptions {
        restart: match opts.restart {
            RestartPolicy::Always => RestartPolicy::Auto,
            r => r,
        },
        ..*opts
    };
    let p2 = plan(d, &o2, &declared);
    if !p2.steps.is_empty() || !p2.refused.is_empty() {
        return fail(format!(
            "first plan {:?}\nthen {:?}\nfrom {:?}",
            p1.steps, p2.steps, o
        ));
    }
    Ok(())
}
