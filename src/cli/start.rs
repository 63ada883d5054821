//! `limactl start [NAME|TEMPLATE]` and `limactl restart NAME`.

use std::time::Duration;

use crate::reconcile::ops::edits::{CreateFlags, EditFlags};
use crate::reconcile::ops::target::{Target, existing_desired, resolve_target};
use crate::reconcile::ops::{self, Ctx, StartOptions, Started};
use crate::reconcile::{ExecOptions, PowerState};
use crate::spec::yaml::quote_name;

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
    /// List the available templates and exit.
    #[arg(long)]
    pub list_templates: bool,
    /// List the available VM drivers and exit.
    #[arg(long)]
    pub list_drivers: bool,
    /// Show the guest's provisioning output (cloud-init) while waiting.
    #[arg(long)]
    pub progress: bool,
}

impl Args {
    /// `limactl start NAME` as other commands start an instance (`shell --start`).
    pub fn instance(name: &str) -> Args {
        Args {
            name: None,
            target: Some(name.to_string()),
            edit: Default::default(),
            create: Default::default(),
            timeout: Duration::from_secs(600),
            foreground: false,
            list_templates: false,
            list_drivers: false,
            progress: false,
        }
    }
}

/// After `edit`, `clone`, `rename`: starts the stopped instance `name` when
/// `--start` was given or, on a terminal, the user says yes (as Lima asks).
pub fn offer(name: &str, explicit: bool, g: &super::Globals) -> anyhow::Result<i32> {
    let ctx = crate::reconcile::ops::Ctx::from_env();
    let stopped = crate::reconcile::ops::existing(&ctx.home, &ctx.env, name)?.status
        == crate::store::Status::Stopped;
    let start = stopped
        && (explicit
            || (g.tty
                && std::io::IsTerminal::is_terminal(&std::io::stdin())
                && super::shell::ask("Do you want to start the instance now?", false)));
    if start {
        return run(Args::instance(name), g);
    }
    Ok(0)
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
    let ctx = Ctx::from_env();
    if a.list_templates {
        for (n, _) in ctx.env.store.list() {
            crate::outln!("{n}")?;
        }
        return Ok(0);
    }
    if a.list_drivers {
        for d in crate::driver::DRIVERS {
            crate::outln!("{}", d.name)?;
        }
        return Ok(0);
    }
    let opts = StartOptions {
        exec: ExecOptions {
            debug: g.debug,
            launch_timeout: a.timeout,
            foreground: a.foreground,
            ..Default::default()
        },
        timeout: a.timeout,
    };
    let target = resolve_target(
        &ctx,
        a.target.as_deref(),
        a.name.as_deref(),
        &a.edit,
        &a.create,
        Some(PowerState::Running),
        &mut super::read_stdin,
    )?;
    let desired = match target {
        Target::New(d) => *d,
        Target::Existing(name) => {
            let inst = ops::existing(&ctx.home, &ctx.env, &name)?;
            if !a.create.expressions()?.is_empty() {
                crate::warn!(
                    "--arch, --image-variant, --arch-variant, --containerd and --plain are not applicable to an existing instance; ignored"
                );
            }
            existing_desired(&ctx, &inst, &a.edit, Some(PowerState::Running))?.0
        }
    };
    let follower = a
        .progress
        .then(|| super::start_progress::follow(ctx.home.clone(), desired.name.clone()));
    let started = ops::start(&ctx, &desired, &opts, &mut |p| {
        super::apply::show_plan(p, false)
    });
    drop(follower);
    let started = started?;
    if let Started::AlreadyRunning = started {
        let name = &desired.name;
        let hint = if name == "default" {
            "lima".to_string()
        } else {
            format!("limactl shell {name}")
        };
        crate::info!(
            "The instance {} is already running. Run `{hint}` to open the shell.",
            quote_name(name)
        );
    }
    Ok(0)
}

pub fn restart(a: RestartArgs, g: &super::Globals) -> anyhow::Result<i32> {
    let ctx = Ctx::from_env();
    let name = a.name.unwrap_or_else(|| "default".into());
    let inst = ops::existing(&ctx.home, &ctx.env, &name)?;
    let (desired, _) = existing_desired(&ctx, &inst, &a.edit, Some(PowerState::Running))?;
    let opts = StartOptions {
        exec: ExecOptions {
            debug: g.debug,
            launch_timeout: a.timeout,
            ..Default::default()
        },
        timeout: a.timeout,
    };
    ops::restart(&ctx, &desired, a.force, &opts, &mut |p| {
        super::apply::show_plan(p, false)
    })?;
    Ok(0)
}
