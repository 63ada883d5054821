//! `limactl stop [NAME…] [-f]`

use std::time::Duration;

use super::instance::existing;
use crate::reconcile::{self, Action, ExecOptions, Plan, Step};
use crate::spec::yaml::quote_name;
use crate::store::{Home, Status};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Instances to stop (default: `default`).
    pub names: Vec<String>,
    /// Kill QEMU and the host agent instead of powering the guest off.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// How long a graceful stop may take.
    #[arg(long, default_value = "190s", value_parser = super::start::parse_duration)]
    pub timeout: Duration,
}

pub fn run(a: Args, g: &super::Globals) -> anyhow::Result<i32> {
    let home = Home::from_env();
    let env = crate::spec::LoadEnv::new(&home.root);
    let names = if a.names.is_empty() {
        vec!["default".to_string()]
    } else {
        a.names.clone()
    };
    let opts = ExecOptions {
        debug: g.debug,
        stop_timeout: a.timeout,
        ..Default::default()
    };
    let mut errors = Vec::new();
    for name in &names {
        let inst = match existing(&home, &env, name) {
            Ok(i) => i,
            Err(e) => {
                errors.push(e.to_string());
                continue;
            }
        };
        let alive = inst.liveness.host_agent || inst.liveness.qemu;
        let step = match (inst.status, a.force) {
            (_, true) if alive || inst.status == Status::Running => {
                Some(Action::Stop { force: true })
            }
            (Status::Running, false) => Some(Action::Stop { force: false }),
            (Status::Broken, false) if alive => Some(Action::Stop { force: true }),
            _ => None,
        };
        let Some(action) = step else {
            crate::info!(
                "The instance {} is not running (status: {})",
                quote_name(name),
                display_status(inst.status)
            );
            if a.force {
                crate::hostagent::launch::remove_runtime_files(&inst.dir);
            }
            continue;
        };
        let mut plan = Plan::new(name);
        plan.steps.push(Step {
            action,
            reason: "stop requested".into(),
        });
        if let Err(e) = reconcile::execute(&home, &plan, None, &opts) {
            errors.push(e.to_string());
        }
    }
    if errors.is_empty() {
        Ok(0)
    } else {
        anyhow::bail!("{}", errors.join("\n"))
    }
}

fn display_status(s: Status) -> &'static str {
    match s {
        Status::Unknown => "unknown",
        other => other.as_str(),
    }
}
