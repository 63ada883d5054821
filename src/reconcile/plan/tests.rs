use super::model::{check, config, desired, observed};
use super::*;

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
    assert_eq!(
        p.steps[2].reason.to_string(),
        "new instance needs its 10GiB disk"
    );
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
            .to_string()
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
    assert_eq!(
        p.steps[0].reason.to_string(),
        "restart required: cpus 2 → 4"
    );
    assert_eq!(p.steps[1].reason.to_string(), "cpus 2 → 4");
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
        p.refused[0]
            .to_string()
            .starts_with("field `arch` is immutable (arch x86_64 → aarch64)"),
        "{:?}",
        p.refused
    );
    assert!(p.refused[0].to_string().contains("--recreate"));
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
    assert!(p.refused[0].to_string().contains("protected"));
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
    assert_eq!(p.steps[1].reason.to_string(), "disk 10GiB → 20GiB");
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
    assert_eq!(
        p.steps[0].reason.to_string(),
        "restart required: disk 10GiB → 20GiB"
    );
    let p = plan(
        Some(&desired(None, config(2, "5GiB", "x86_64"))),
        &stopped,
        &PlanOptions::default(),
    );
    assert!(p.steps.is_empty());
    assert!(
        p.refused[0]
            .to_string()
            .contains("cannot shrink (10GiB → 5GiB)"),
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
    assert!(p.steps.is_empty() && p.refused[0].to_string().contains("protected"));
    assert!(plan(None, &observed(Status::Unknown, None, None), &o).is_empty());
    let mut d = desired(STOP, c);
    d.owner = Some("/src".into());
    let p = plan(Some(&d), &stopped, &o);
    assert_eq!(verbs(&p), ["adopt"]);
    let mut owned = stopped.clone();
    owned.owner = Some("/src".into());
    assert!(plan(Some(&d), &owned, &o).is_empty());
}

/// Issue 13 row 9: a directory without lima.yaml may be being cloned into;
/// only what a failed delete put back (it says so) is deleted without one.
#[test]
fn a_directory_without_lima_yaml_is_not_deleted() {
    let mut bare = observed(Status::Broken, None, None);
    bare.dir_exists = true;
    for cause in [Cause::Requested, Cause::Pruned, Cause::Declared] {
        let opts = PlanOptions {
            cause,
            force_stop: true,
            ..Default::default()
        };
        let p = plan(None, &bare, &opts);
        assert!(p.steps.is_empty(), "{p:?}");
        assert_eq!(p.kind, Kind::Refuse);
        assert_eq!(
            p.refused,
            [Refusal::NoLimaYaml {
                instance: "vm".into(),
                dir: "/lh/vm".into()
            }]
        );
        let text = p.refused[0].to_string();
        assert!(
            text.contains("has no lima.yaml")
                && text.contains("cloned into")
                && text.contains("rm -rf /lh/vm"),
            "{text}"
        );
    }
    let mut left = bare.clone();
    left.present.delete_failed = true;
    assert_eq!(
        verbs(&plan(None, &left, &PlanOptions::default())),
        ["delete"]
    );
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
        0u8..5,
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
                3 => observed(Status::Suspended, Some(applied), disk.or(Some(10 << 30))),
                _ => {
                    let mut b = observed(Status::Broken, Some(applied), disk);
                    b.liveness.host_agent = true;
                    b
                }
            };
            if matches!(o.status, Status::Running | Status::Suspended)
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

fn arb_restart() -> impl Strategy<Value = RestartPolicy> {
    prop_oneof![
        Just(RestartPolicy::Auto),
        Just(RestartPolicy::Never),
        Just(RestartPolicy::Always)
    ]
}

fn arb_cause() -> impl Strategy<Value = Cause> {
    prop_oneof![
        Just(Cause::Declared),
        Just(Cause::Requested),
        Just(Cause::Pruned)
    ]
}

proptest! {
    /// Carrying out a plan reaches the desired state, and planning again
    /// then finds nothing left to do. A restart (`RestartPolicy::Always`)
    /// is a one-off request: what it leaves is converged under `auto`.
    #[test]
    fn planning_after_applying_a_plan_is_empty(
        o in arb_observed(),
        cfg in arb_config(),
        power in prop_oneof![Just(RUN), Just(STOP), Just(None), Just(Some(PowerState::Suspended))],
        delete in proptest::bool::weighted(0.15),
        power_only in proptest::bool::weighted(0.2),
        restart in arb_restart(),
        recreate in any::<bool>(),
        force_stop in any::<bool>(),
        cause in arb_cause(),
    ) {
        let opts = PlanOptions { restart, recreate, force_stop, cause };
        let mut d = desired(power, cfg);
        d.owner = Some("/src".into());
        if power_only {
            d.config = None;
        }
        let d = if delete { None } else { Some(&d) };
        if let Err(e) = check(d, &o, &opts) {
            prop_assert!(false, "{e}");
        }
    }
}

#[test]
fn verbs_are_plan_options_not_plan_edits() {
    let c = config(2, "10GiB", "x86_64");
    let running = observed(Status::Running, Some(c.clone()), Some(G10));
    let stopped = observed(Status::Stopped, Some(c.clone()), Some(G10));
    let requested = PlanOptions {
        cause: Cause::Requested,
        ..Default::default()
    };
    let forced = PlanOptions {
        force_stop: true,
        ..requested
    };

    // stop: a power-only patch.
    let stop = Desired::power("vm", STOP);
    let p = plan(Some(&stop), &running, &requested);
    assert_eq!(verbs(&p), ["stop"]);
    assert_eq!(p.steps[0].reason, Reason::StopRequested);
    assert_eq!(verbs(&plan(Some(&stop), &running, &forced)), ["force-stop"]);
    assert!(plan(Some(&stop), &stopped, &forced).is_empty());
    let missing = observed(Status::Unknown, None, None);
    assert!(matches!(
        plan(Some(&stop), &missing, &requested).refused[..],
        [Refusal::NotFound { .. }]
    ));

    // restart: stop and start even with nothing changed; edits in between.
    let restart = PlanOptions {
        restart: RestartPolicy::Always,
        ..requested
    };
    let p = plan(Some(&Desired::power("vm", RUN)), &running, &restart);
    assert_eq!(verbs(&p), ["stop", "start"]);
    assert_eq!(p.kind, Kind::Restart);
    assert!(p.steps.iter().all(|s| s.reason == Reason::RestartRequested));
    let p = plan(
        Some(&desired(RUN, config(4, "20GiB", "x86_64"))),
        &running,
        &PlanOptions {
            force_stop: true,
            ..restart
        },
    );
    assert_eq!(
        verbs(&p),
        ["force-stop", "update-config", "grow-disk", "start"]
    );
    let p = plan(Some(&Desired::power("vm", RUN)), &stopped, &restart);
    assert_eq!(verbs(&p), ["start"], "a stopped instance is just started");

    // delete -f kills; a prune says why it deletes.
    assert_eq!(
        verbs(&plan(None, &running, &forced)),
        ["force-stop", "delete"]
    );
    let pruned = PlanOptions {
        cause: Cause::Pruned,
        ..Default::default()
    };
    let p = plan(None, &stopped, &pruned);
    assert_eq!(
        p.steps[0].reason.to_string(),
        "its file is gone from the source (--prune)"
    );
    assert_eq!(
        plan(None, &stopped, &requested).steps[0].reason.to_string(),
        "instance is not wanted any more"
    );
}

#[test]
fn steps_keep_their_json_text_and_add_a_typed_why() {
    let running = observed(
        Status::Running,
        Some(config(2, "10GiB", "x86_64")),
        Some(G10),
    );
    let p = plan(
        Some(&desired(RUN, config(4, "10GiB", "x86_64"))),
        &running,
        &PlanOptions::default(),
    );
    let j = serde_json::to_value(&p).unwrap();
    assert_eq!(j["kind"], "restart");
    let stop = &j["steps"][0];
    assert_eq!(stop["action"], "stop");
    assert_eq!(stop["force"], false);
    assert_eq!(stop["reason"], "restart required: cpus 2 → 4");
    assert_eq!(stop["why"]["kind"], "restart-required");
    assert_eq!(stop["why"]["changes"][0]["path"], "cpus");
    assert_eq!(stop["why"]["changes"][0]["old"], 2);
    assert_eq!(stop["why"]["changes"][0]["new"], 4);
    assert_eq!(stop["why"]["changes"][0]["class"], "restart-required");
    let update = &j["steps"][1];
    assert_eq!(update["action"], "update-config");
    assert_eq!(
        update.as_object().unwrap().len(),
        3,
        "payloads stay out of the JSON: {update}"
    );
    let refused = plan(
        Some(&desired(RUN, config(2, "10GiB", "aarch64"))),
        &running,
        &PlanOptions::default(),
    );
    let j = serde_json::to_value(&refused).unwrap();
    assert!(
        j["refused"][0]
            .as_str()
            .unwrap()
            .starts_with("field `arch` is immutable"),
        "{j}"
    );
}
