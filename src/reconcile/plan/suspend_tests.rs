//! Plans of suspended instances and of `limactl suspend`.

use super::model::{check, config, desired, observed};
use super::*;

fn verbs(p: &Plan) -> Vec<&'static str> {
    p.steps.iter().map(|s| s.action.verb()).collect()
}

const G10: u64 = 10 << 30;
const RUN: Option<PowerState> = Some(PowerState::Running);
const STOP: Option<PowerState> = Some(PowerState::Stopped);
const SUSPEND: Option<PowerState> = Some(PowerState::Suspended);

fn requested() -> PlanOptions {
    PlanOptions {
        cause: Cause::Requested,
        ..Default::default()
    }
}

#[test]
fn suspend_saves_a_running_vm_once_and_refuses_anything_else() {
    let c = config(2, "10GiB", "x86_64");
    let d = Desired::power("vm", SUSPEND);
    let running = observed(Status::Running, Some(c.clone()), Some(G10));
    let p = plan(Some(&d), &running, &requested());
    assert_eq!(verbs(&p), ["suspend"]);
    assert_eq!(p.steps[0].reason.to_string(), "suspend requested");
    check(Some(&d), &running, &requested()).unwrap();
    let suspended = observed(Status::Suspended, Some(c.clone()), Some(G10));
    assert!(plan(Some(&d), &suspended, &requested()).is_empty());
    let stopped = observed(Status::Stopped, Some(c), Some(G10));
    let p = plan(Some(&d), &stopped, &requested());
    assert_eq!(p.kind, Kind::Refuse);
    assert!(
        p.refused[0]
            .to_string()
            .contains("is not running (status `Stopped`): there is nothing to suspend"),
        "{}",
        p.refused[0]
    );
    let missing = observed(Status::Unknown, None, None);
    assert_eq!(plan(Some(&d), &missing, &requested()).kind, Kind::Refuse);
}

#[test]
fn a_vm_with_a_9p_mount_is_not_suspended() {
    let mut c = config(2, "10GiB", "x86_64");
    c.mount_type = Some("9p".into());
    c.mounts = Some(vec![Default::default()]);
    let running = observed(Status::Running, Some(c), Some(G10));
    let p = plan(Some(&Desired::power("vm", SUSPEND)), &running, &requested());
    assert!(p.steps.is_empty());
    let why = p.refused[0].to_string();
    assert!(
        why.contains("`mountType: 9p`") && why.contains("reverse-sshfs"),
        "{why}"
    );
}

#[test]
fn a_suspended_vm_resumes_when_its_state_still_matches() {
    let c = config(2, "10GiB", "x86_64");
    let suspended = observed(Status::Suspended, Some(c.clone()), Some(G10));
    let o = PlanOptions::default();
    // `limactl start` (power only) and a declared running state alike.
    for d in [Desired::power("vm", RUN), desired(RUN, c.clone())] {
        let p = plan(Some(&d), &suspended, &o);
        assert_eq!(verbs(&p), ["resume"]);
        assert_eq!(p.steps[0].reason, Reason::SuspendedButDesiredRunning);
        assert!(
            p.steps[0]
                .reason
                .to_string()
                .contains("resume from the saved state")
        );
        // Shown by `start` though no configuration changes, with its reason.
        assert!(!p.changes_config() && p.touches_saved_state());
        let text = p.render(false);
        assert!(
            text.contains("resume") && text.contains("resume from the saved state"),
            "{text}"
        );
        check(Some(&d), &suspended, &o).unwrap();
    }
    // Manual: left suspended.
    assert!(plan(Some(&desired(None, c)), &suspended, &o).is_empty());
}

#[test]
fn a_change_while_suspended_discards_the_state_and_boots_afresh() {
    let started = config(2, "10GiB", "x86_64");
    let suspended = observed(Status::Suspended, Some(started.clone()), Some(G10));
    let d = desired(RUN, config(1, "10GiB", "x86_64"));
    let o = PlanOptions::default();
    let p = plan(Some(&d), &suspended, &o);
    assert_eq!(verbs(&p), ["discard-state", "update-config", "start"]);
    assert_eq!(
        p.steps[0].reason.to_string(),
        "the saved state does not match the configuration (cpus 2 → 1): it is discarded and the instance boots afresh"
    );
    assert_eq!(p.kind, Kind::Restart);
    check(Some(&d), &suspended, &o).unwrap();
    // The disk cannot grow under a saved guest either.
    let d = desired(RUN, config(2, "20GiB", "x86_64"));
    let p = plan(Some(&d), &suspended, &o);
    assert_eq!(
        verbs(&p),
        ["discard-state", "update-config", "grow-disk", "start"]
    );
    // `restart` of a suspended instance is a cold boot.
    let restart = PlanOptions {
        restart: RestartPolicy::Always,
        ..requested()
    };
    let p = plan(Some(&Desired::power("vm", RUN)), &suspended, &restart);
    assert_eq!(verbs(&p), ["discard-state", "start"]);
    assert_eq!(p.steps[0].reason, Reason::RestartRequested);
}

#[test]
fn stop_and_delete_of_a_suspended_instance() {
    let c = config(2, "10GiB", "x86_64");
    let suspended = observed(Status::Suspended, Some(c.clone()), Some(G10));
    let p = plan(Some(&Desired::power("vm", STOP)), &suspended, &requested());
    assert_eq!(verbs(&p), ["discard-state"]);
    assert!(
        p.steps[0]
            .reason
            .to_string()
            .contains("saved state is discarded")
    );
    let p = plan(Some(&desired(STOP, c)), &suspended, &PlanOptions::default());
    assert_eq!(p.steps[0].reason, Reason::SuspendedButDesiredStopped);
    // Nothing runs: only the directory (and the state in it) goes.
    let p = plan(None, &suspended, &requested());
    assert_eq!(verbs(&p), ["delete"]);
}
