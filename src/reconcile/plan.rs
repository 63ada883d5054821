//! `plan(desired, observed) -> Plan`: pure, no I/O.

use serde::Serialize;

use crate::spec::LimaYaml;
use crate::spec::defaults::size_bytes;
use crate::spec::units::format_size;
use crate::spec::yaml::quote_name;
use crate::store::{Instance, Status};

/// The power state an instance should be in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum PowerState {
    Running,
    Stopped,
}

/// What an instance should look like.
#[derive(Clone, Debug)]
pub struct Desired {
    pub name: String,
    /// The `lima.yaml` bytes to store when the instance is created.
    pub lima_yaml: String,
    /// The filled configuration.
    pub config: LimaYaml,
    /// `None`: leave the power state as it is (e.g. `create`).
    pub power: Option<PowerState>,
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
    CreateDiffDisk { size: u64 },
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

/// The steps for one instance, and what was refused.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Plan {
    pub instance: String,
    pub steps: Vec<Step>,
    /// Changes that cannot be made, each with what to do instead.
    pub refused: Vec<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty() && self.refused.is_empty()
    }

    fn push(&mut self, action: Action, reason: impl Into<String>) {
        self.steps.push(Step {
            action,
            reason: reason.into(),
        });
    }
}

/// Plans how to get from `observed` to `desired` (`None`: deleted).
pub fn plan(desired: Option<&Desired>, observed: &Instance) -> Plan {
    let mut p = Plan {
        instance: observed.name.clone(),
        ..Default::default()
    };
    let exists = observed.present.lima_yaml || observed.dir_exists;
    let Some(desired) = desired else {
        if !exists {
            return p;
        }
        if observed.present.protected {
            p.refused.push(format!(
                "instance {} is protected to prohibit accidental removal (hint: use `limactl unprotect`)",
                quote_name(&observed.name)
            ));
            return p;
        }
        match observed.status {
            Status::Running => p.push(
                Action::Stop { force: false },
                "instance is running; stop it before deleting",
            ),
            Status::Broken if observed.liveness.host_agent || observed.liveness.qemu => p.push(
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

    let want_disk = size_bytes(&desired.config.disk);
    if !exists {
        p.push(Action::Create, "instance does not exist");
        p.push(Action::PrepareImages, "new instance needs its base disk");
        p.push(
            Action::CreateDiffDisk { size: want_disk },
            format!("new instance needs its {} disk", format_size(want_disk)),
        );
        if desired.power == Some(PowerState::Running) {
            p.push(Action::Start, "desired power state is running");
        }
        return p;
    }

    let running = observed.status == Status::Running;
    if !observed.present.basedisk && !observed.present.diffdisk {
        p.push(Action::PrepareImages, "basedisk is missing");
    }
    match observed.disk_size {
        None => p.push(
            Action::CreateDiffDisk { size: want_disk },
            format!("diffdisk is missing; create it with {}", format_size(want_disk)),
        ),
        Some(have) if want_disk > have => {
            if running && desired.power != Some(PowerState::Stopped) {
                // Growing needs the VM stopped; the restart is explicit.
                p.push(
                    Action::Stop { force: false },
                    format!("disk {} → {}: the disk can only grow while stopped", format_size(have), format_size(want_disk)),
                );
            }
            p.push(
                Action::GrowDisk { from: have, to: want_disk },
                format!("disk {} → {}", format_size(have), format_size(want_disk)),
            );
            if running && desired.power != Some(PowerState::Stopped) {
                p.push(Action::Start, "restart after growing the disk");
                return p;
            }
        }
        Some(have) if want_disk < have => p.refused.push(format!(
            "field `disk`: shrinking {} → {} is not supported (disks only grow); keep `disk: {}` or recreate the instance",
            format_size(have),
            format_size(want_disk),
            format_size(have)
        )),
        _ => {}
    }

    match (desired.power, observed.status) {
        (Some(PowerState::Running), Status::Running) => {}
        (Some(PowerState::Running), Status::Broken) => {
            p.push(
                Action::Stop { force: true },
                format!(
                    "instance is Broken ({}); clean up before starting",
                    observed.errors.join("; ")
                ),
            );
            p.push(Action::Start, "desired power state is running");
        }
        (Some(PowerState::Running), _) => p.push(
            Action::Start,
            "instance is stopped; desired power state is running",
        ),
        (Some(PowerState::Stopped), Status::Running) => p.push(
            Action::Stop { force: false },
            "desired power state is stopped",
        ),
        (Some(PowerState::Stopped), Status::Broken)
            if observed.liveness.host_agent || observed.liveness.qemu =>
        {
            p.push(
                Action::Stop { force: true },
                format!(
                    "instance is Broken ({}); desired power state is stopped",
                    observed.errors.join("; ")
                ),
            )
        }
        _ => {}
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::instance::{Liveness, Present};

    fn observed(status: Status, present: Present, disk: Option<u64>) -> Instance {
        Instance {
            name: "vm".into(),
            dir: "/lh/vm".into(),
            dir_exists: present.lima_yaml,
            present,
            lima_yaml: None,
            config: None,
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
        }
    }

    fn full() -> Present {
        Present {
            lima_yaml: true,
            basedisk: true,
            diffdisk: true,
            ..Default::default()
        }
    }

    fn desired(power: Option<PowerState>, disk: &str) -> Desired {
        Desired {
            name: "vm".into(),
            lima_yaml: String::new(),
            config: LimaYaml {
                disk: Some(disk.into()),
                ..Default::default()
            },
            power,
        }
    }

    fn verbs(p: &Plan) -> Vec<&'static str> {
        p.steps.iter().map(|s| s.action.verb()).collect()
    }

    #[test]
    fn create_and_start_a_missing_instance() {
        let o = observed(Status::Unknown, Present::default(), None);
        let p = plan(Some(&desired(Some(PowerState::Running), "10GiB")), &o);
        assert_eq!(
            verbs(&p),
            ["create", "prepare-images", "create-disk", "start"]
        );
        assert_eq!(p.steps[2].reason, "new instance needs its 10GiB disk");
        let p = plan(Some(&desired(None, "10GiB")), &o);
        assert_eq!(verbs(&p), ["create", "prepare-images", "create-disk"]);
    }

    #[test]
    fn power_transitions() {
        let stopped = observed(Status::Stopped, full(), Some(10 << 30));
        let running = observed(Status::Running, full(), Some(10 << 30));
        let d_run = desired(Some(PowerState::Running), "10GiB");
        let d_stop = desired(Some(PowerState::Stopped), "10GiB");
        assert_eq!(verbs(&plan(Some(&d_run), &stopped)), ["start"]);
        assert!(plan(Some(&d_run), &running).is_empty(), "idempotent");
        assert_eq!(verbs(&plan(Some(&d_stop), &running)), ["stop"]);
        assert!(plan(Some(&d_stop), &stopped).is_empty(), "idempotent");
        let mut broken = observed(Status::Broken, full(), Some(10 << 30));
        broken.liveness.host_agent = true;
        broken.errors = vec!["host agent is running but driver is not".into()];
        assert_eq!(verbs(&plan(Some(&d_run), &broken)), ["force-stop", "start"]);
        assert!(
            plan(Some(&d_run), &broken).steps[0]
                .reason
                .contains("host agent is running but driver is not")
        );
    }

    #[test]
    fn disks_grow_while_stopped_and_never_shrink() {
        let stopped = observed(Status::Stopped, full(), Some(10 << 30));
        let p = plan(Some(&desired(None, "20GiB")), &stopped);
        assert_eq!(verbs(&p), ["grow-disk"]);
        assert_eq!(p.steps[0].reason, "disk 10GiB → 20GiB");
        let running = observed(Status::Running, full(), Some(10 << 30));
        let p = plan(Some(&desired(Some(PowerState::Running), "20GiB")), &running);
        assert_eq!(verbs(&p), ["stop", "grow-disk", "start"]);
        let p = plan(Some(&desired(None, "5GiB")), &stopped);
        assert!(p.steps.is_empty());
        assert!(
            p.refused[0].contains("shrinking 10GiB → 5GiB is not supported"),
            "{:?}",
            p.refused
        );
        let missing = observed(
            Status::Stopped,
            Present {
                lima_yaml: true,
                basedisk: true,
                ..Default::default()
            },
            None,
        );
        assert_eq!(
            verbs(&plan(Some(&desired(None, "5GiB")), &missing)),
            ["create-disk"]
        );
    }

    #[test]
    fn delete() {
        let running = observed(Status::Running, full(), Some(1));
        assert_eq!(verbs(&plan(None, &running)), ["stop", "delete"]);
        let stopped = observed(Status::Stopped, full(), Some(1));
        assert_eq!(verbs(&plan(None, &stopped)), ["delete"]);
        let mut protected = stopped.clone();
        protected.present.protected = true;
        let p = plan(None, &protected);
        assert!(p.steps.is_empty());
        assert!(p.refused[0].contains("protected"));
        let gone = observed(Status::Unknown, Present::default(), None);
        assert!(plan(None, &gone).is_empty());
    }
}
