//! The plan on random (desired, observed, options): carrying out the plan in
//! the executor's model reaches the desired state, and planning again is
//! empty (`reconcile::plan::model::check`, the property test's property).
#![no_main]

use libfuzzer_sys::fuzz_target;
use lima::reconcile::plan::model::{check, config, desired, observed};
use lima::reconcile::{Cause, PlanOptions, PowerState, RestartPolicy};
use lima::store::Status;

fn pick<T: Copy>(b: u8, from: &[T]) -> T {
    from[usize::from(b) % from.len()]
}

fuzz_target!(|data: &[u8]| {
    let mut b = data.iter().copied().chain(std::iter::repeat(0));
    let mut next = || b.next().unwrap_or(0);
    let disk = |x: u8| pick(x, &["10GiB", "20GiB", "5GiB"]);
    let arch = |x: u8| pick(x, &["x86_64", "aarch64"]);
    let cfg = |n: &mut dyn FnMut() -> u8| {
        let mut c = config(1 + i64::from(n() % 3), disk(n()), arch(n()));
        if n() % 2 == 1 {
            c.message = Some("hi".into());
        }
        c
    };
    let status = pick(next(), &[Status::Unknown, Status::Stopped, Status::Running, Status::Broken]);
    let applied = cfg(&mut next);
    let size = pick(next(), &[None, Some(10u64 << 30), Some(20u64 << 30), Some(5u64 << 30)]);
    let mut o = match status {
        Status::Unknown => observed(Status::Unknown, None, None),
        Status::Running => observed(Status::Running, Some(applied), size.or(Some(10 << 30))),
        s => observed(s, Some(applied), size),
    };
    if status == Status::Broken {
        o.liveness.host_agent = next() % 2 == 0;
        o.liveness.qemu = !o.liveness.host_agent;
    }
    if status == Status::Running && next() % 2 == 1 {
        o.started = Some(cfg(&mut next));
    }
    o.present.protected = o.dir_exists && next() % 4 == 0;
    if o.dir_exists && next() % 2 == 0 {
        o.owner = Some(pick(next(), &["/src", "/other"]).into());
    }
    let power = pick(next(), &[Some(PowerState::Running), Some(PowerState::Stopped), None]);
    let mut d = desired(power, cfg(&mut next));
    d.owner = Some("/src".into());
    if next() % 5 == 0 {
        d.config = None;
    }
    let opts = PlanOptions {
        restart: pick(next(), &[RestartPolicy::Auto, RestartPolicy::Never, RestartPolicy::Always]),
        recreate: next() % 2 == 1,
        force_stop: next() % 2 == 1,
        cause: pick(next(), &[Cause::Declared, Cause::Requested, Cause::Pruned]),
    };
    let delete = next() % 7 == 0;
    let d = if delete { None } else { Some(&d) };
    if let Err(e) = check(d, &o, &opts) {
        panic!("{e}");
    }
});
