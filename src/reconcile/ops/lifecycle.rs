//! The imperative verbs as desired-state patches of one instance: create,
//! start, restart, stop, delete, edit. Each converges under the instance
//! lock; start and restart then wait for readiness outside it.

use std::time::Duration;

use super::wait::{self, WaitOptions};
use super::{Ctx, OpsError, converge, existing};
use crate::hostagent::launch::{self, Ready};
use crate::reconcile::execute::{ExecError, ExecOptions};
use crate::reconcile::plan::{
    Action, Cause, Desired, Plan, PlanOptions, PowerState, RestartPolicy,
};
use crate::store::Status;

/// `limactl create`: a new instance, not started.
pub fn create(
    ctx: &Ctx,
    desired: &Desired,
    exec: &ExecOptions,
    show: &mut dyn FnMut(&Plan),
) -> Result<Plan, OpsError> {
    let plan = converge(
        ctx,
        &desired.name,
        Some(desired),
        &PlanOptions::default(),
        exec,
        show,
    )?;
    Ok(plan)
}

#[derive(Clone, Debug)]
pub struct StartOptions {
    pub exec: ExecOptions,
    /// How long to wait for the guest to be Ready.
    pub timeout: Duration,
}

/// What a start found or did.
#[derive(Debug)]
pub enum Started {
    /// It was running already; nothing was done.
    AlreadyRunning,
    /// Started (or restarted), and the guest is Ready.
    Ready(Ready),
}

/// The plan ran; if it started the VM, waits until the guest is Ready.
fn wait_if_started(ctx: &Ctx, plan: &Plan, timeout: Duration) -> Result<Started, OpsError> {
    if !plan
        .steps
        .iter()
        .any(|s| matches!(s.action, Action::Start | Action::Resume))
    {
        return Ok(Started::AlreadyRunning);
    }
    let dir = ctx.home.instance_dir(&plan.instance);
    let opts = WaitOptions {
        timeout,
        progress: true,
    };
    let ready = wait::ready(&dir, &plan.instance, opts)
        .map_err(|e| ExecError::launch(&plan.instance, "wait until ready", e))?;
    Ok(Started::Ready(ready))
}

/// `limactl start`: `desired` is a new instance, an edited existing one, or
/// a power-only patch; restart-required edits restart a running VM.
pub fn start(
    ctx: &Ctx,
    desired: &Desired,
    opts: &StartOptions,
    show: &mut dyn FnMut(&Plan),
) -> Result<Started, OpsError> {
    let plan = converge(
        ctx,
        &desired.name,
        Some(desired),
        &PlanOptions::default(),
        &opts.exec,
        show,
    )?;
    wait_if_started(ctx, &plan, opts.timeout)
}

/// `limactl restart [-f]`: stop (if anything runs) and start, with any
/// edits applied in between; waits until the guest is Ready.
pub fn restart(
    ctx: &Ctx,
    desired: &Desired,
    force: bool,
    opts: &StartOptions,
    show: &mut dyn FnMut(&Plan),
) -> Result<Ready, OpsError> {
    let inst = existing(&ctx.home, &ctx.env, &desired.name)?;
    if !(inst.liveness.host_agent || inst.liveness.qemu) {
        crate::info!("The instance is not running, continuing with the restart");
    }
    let popts = PlanOptions {
        restart: RestartPolicy::Always,
        force_stop: force,
        cause: Cause::Requested,
        ..Default::default()
    };
    let plan = converge(ctx, &desired.name, Some(desired), &popts, &opts.exec, show)?;
    match wait_if_started(ctx, &plan, opts.timeout)? {
        Started::Ready(r) => Ok(r),
        // A restart always ends in a start (the plan says so).
        Started::AlreadyRunning => Ok(Ready::default()),
    }
}

/// What a stop found or did.
#[derive(Debug)]
pub enum Stopped {
    Stopped,
    /// Nothing was running.
    NotRunning(Status),
}

/// `limactl stop [-f] NAME`; with `force`, also removes a dead instance's
/// run-time files.
pub fn stop(ctx: &Ctx, name: &str, force: bool, exec: &ExecOptions) -> Result<Stopped, OpsError> {
    let inst = existing(&ctx.home, &ctx.env, name)?;
    let popts = PlanOptions {
        force_stop: force,
        cause: Cause::Requested,
        ..Default::default()
    };
    let desired = Desired::power(name, Some(PowerState::Stopped));
    let plan = converge(ctx, name, Some(&desired), &popts, exec, &mut |_| {})?;
    if !plan.steps.is_empty() {
        return Ok(Stopped::Stopped);
    }
    if force {
        let _lock = crate::reconcile::execute::lock(&inst.dir, exec.lock_timeout)?;
        launch::remove_runtime_files(&inst.dir);
    }
    Ok(Stopped::NotRunning(inst.status))
}

/// What a suspend found or did.
#[derive(Debug, PartialEq, Eq)]
pub enum Suspended {
    Suspended,
    /// It was suspended already.
    AlreadySuspended,
}

#[derive(Clone, Debug, Default)]
pub struct SuspendOptions {
    pub exec: ExecOptions,
}

/// `limactl suspend NAME`: the running VM's state is saved in the instance
/// directory and QEMU and the host agent stop; `start` resumes it.
pub fn suspend(
    ctx: &Ctx,
    name: &str,
    opts: &SuspendOptions,
    show: &mut dyn FnMut(&Plan),
) -> Result<Suspended, OpsError> {
    existing(&ctx.home, &ctx.env, name)?;
    let popts = PlanOptions {
        cause: Cause::Requested,
        ..Default::default()
    };
    let desired = Desired::power(name, Some(PowerState::Suspended));
    let plan = converge(ctx, name, Some(&desired), &popts, &opts.exec, show)?;
    Ok(if plan.steps.is_empty() {
        Suspended::AlreadySuspended
    } else {
        Suspended::Suspended
    })
}

/// What a delete found or did.
#[derive(Debug, PartialEq, Eq)]
pub enum Deleted {
    Deleted,
    /// There was no such instance.
    Absent,
}

/// `limactl delete [-f] NAME`: stops it first (killing it with `force`);
/// a protected instance is refused.
pub fn delete(ctx: &Ctx, name: &str, force: bool, exec: &ExecOptions) -> Result<Deleted, OpsError> {
    crate::spec::names::validate_instance_name(name).map_err(OpsError::Name)?;
    if !ctx.home.instance_dir(name).is_dir() {
        return Ok(Deleted::Absent);
    }
    let popts = PlanOptions {
        force_stop: force,
        cause: Cause::Requested,
        ..Default::default()
    };
    match converge(ctx, name, None, &popts, exec, &mut |_| {}) {
        Ok(_) => Ok(Deleted::Deleted),
        Err(ExecError::Refused { refused, .. }) => Err(OpsError::DeleteRefused {
            name: name.into(),
            refused,
        }),
        Err(e) => Err(e.into()),
    }
}

/// `limactl edit NAME`: writes an edited configuration through the plan;
/// restart-required changes restart a running VM per `restart`.
pub fn edit(
    ctx: &Ctx,
    desired: &Desired,
    restart: RestartPolicy,
    exec: &ExecOptions,
    show: &mut dyn FnMut(&Plan),
) -> Result<Plan, OpsError> {
    let popts = PlanOptions {
        restart,
        ..Default::default()
    };
    Ok(converge(
        ctx,
        &desired.name,
        Some(desired),
        &popts,
        exec,
        show,
    )?)
}
