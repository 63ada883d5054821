//! `limactl start [NAME|TEMPLATE]` and `limactl restart NAME`.

use std::time::Duration;

use super::editflags::{CreateFlags, EditFlags};
use super::instance::{Target, desired_of, edited_desired, existing, resolve_target};
use crate::reconcile::{self, Action, ExecOptions, PlanOptions, PowerState, Step};
use crate::spec::yaml::quote_name;
use crate::store::{self, Home, Status};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Instance name (for a new instance from a template).
    #[arg(long)]
    pub name: Option<String>,
    /// An instance name, or a template locator to create one from.
    pub target: Option<String>,
    #[command(flatten)]
    pub edit: EditFlags,
    #[command(flatten)]
    pub create: CreateFlags,
    /// How long to wait for the instance to be ready (e.g. 10m, 90s).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Run the host agent in the foreground (e.g. under a service manager):
    /// the command lasts as long as the instance runs.
    #[arg(long)]
    pub foreground: bool,
}

#[derive(clap::Args, Debug)]
pub struct RestartArgs {
    /// Instance name (default: `default`).
    pub name: Option<String>,
    /// Kill the VM instead of powering it off.
    #[arg(short = 'f', long)]
    pub force: bool,
    #[command(flatten)]
    pub edit: EditFlags,
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// `10m`, `90s`, `1h`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, mul) = match s.char_indices().last() {
        Some((i, 'h')) => (&s[..i], 3600.0),
        Some((i, 'm')) => (&s[..i], 60.0),
        Some((i, 's')) => (&s[..i], 1.0),
        _ => (s, 1.0),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (e.g. 10m, 90s)"))?;
    if v <= 0.0 {
        return Err(format!("duration must be positive, got {s:?}"));
    }
    Ok(Duration::from_secs_f64(v * mul))
}

pub fn run(a: Args, g: &super::Globals) -> anyhow::Result<i32> {
    let home = Home::from_env();
    let env = crate::spec::LoadEnv::new(&home.root);
    let opts = ExecOptions {
        debug: g.debug,
        start_timeout: a.timeout,
        foreground: a.foreground,
        ..Default::default()
    };
    let target = resolve_target(
        &home,
        &env,
        a.target.as_deref(),
        a.name.as_deref(),
        &a.edit,
        &a.create,
        Some(PowerState::Running),
    )?;
    let desired = match target {
        Target::New(d) => *d,
        Target::Existing(name) => {
            let inst = existing(&home, &env, &name)?;
            if !a.create.expressions()?.is_empty() {
                crate::warn!(
                    "--arch, --containerd and --plain are not applicable to an existing instance; ignored"
                );
            }
            match edited_desired(&env, &inst, &a.edit, Some(PowerState::Running))? {
                Some(d) => d,
                None => {
                    if inst.status == Status::Running {
                        let hint = if name == "default" {
                            "lima".to_string()
                        } else {
                            format!("limactl shell {name}")
                        };
                        crate::info!(
                            "The instance {} is already running. Run `{hint}` to open the shell.",
                            quote_name(&name)
                        );
                    }
                    desired_of(&inst, Some(PowerState::Running))?
                }
            }
        }
    };
    let observed = store::inspect(&home, &env, &desired.name);
    let plan = reconcile::plan(Some(&desired), &observed, &PlanOptions::default());
    super::apply::print_plans(std::slice::from_ref(&plan), false);
    reconcile::execute(&home, &plan, Some(&desired), &opts)?;
    Ok(0)
}

pub fn restart(a: RestartArgs, g: &super::Globals) -> anyhow::Result<i32> {
    let home = Home::from_env();
    let env = crate::spec::LoadEnv::new(&home.root);
    let name = a.name.unwrap_or_else(|| "default".into());
    let inst = existing(&home, &env, &name)?;
    let desired = match edited_desired(&env, &inst, &a.edit, Some(PowerState::Running))? {
        Some(d) => d,
        None => desired_of(&inst, Some(PowerState::Running))?,
    };
    let opts = ExecOptions {
        debug: g.debug,
        start_timeout: a.timeout,
        ..Default::default()
    };
    // Planned as if already stopped (update, grow the disk, start), with the
    // stop of a running VM in front: a restart is exactly that.
    let as_stopped = crate::store::Instance {
        status: Status::Stopped,
        ..inst.clone()
    };
    let mut plan = reconcile::plan(Some(&desired), &as_stopped, &PlanOptions::default());
    if inst.status == Status::Running || inst.liveness.host_agent || inst.liveness.qemu {
        plan.steps.insert(
            0,
            Step {
                action: Action::Stop {
                    force: a.force || inst.status != Status::Running,
                },
                reason: "restart requested".into(),
            },
        );
    } else {
        crate::info!("The instance is not running, continuing with the restart");
    }
    if !plan.steps.iter().any(|s| s.action == Action::Start) {
        plan.steps.push(Step {
            action: Action::Start,
            reason: "restart requested".into(),
        });
    }
    plan.kind = reconcile::Kind::Restart;
    super::apply::print_plans(std::slice::from_ref(&plan), false);
    reconcile::execute(&home, &plan, Some(&desired), &opts)?;
    Ok(0)
}
