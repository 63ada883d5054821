//! `limactl stop [NAME…] [-f]`

use std::time::Duration;

use crate::reconcile::ExecOptions;
use crate::reconcile::ops::{self, Ctx, Stopped};
use crate::spec::yaml::quote_name;
use crate::store::Status;

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
    let ctx = Ctx::from_env();
    let names = super::names_or_default(&a.names);
    let exec = ExecOptions {
        debug: g.debug,
        stop_timeout: a.timeout,
        ..Default::default()
    };
    let mut errors = Vec::new();
    for name in &names {
        match ops::stop(&ctx, name, a.force, &exec) {
            Ok(Stopped::Stopped) => {}
            // Lima refuses a graceful stop of what is not running.
            Ok(Stopped::NotRunning(status)) if !a.force => errors.push(format!(
                "expected status `Running`, got {} (maybe use `limactl stop -f`?)",
                quote_name(status.as_str())
            )),
            Ok(Stopped::NotRunning(status)) => crate::info!(
                "The instance {} is not running (status: {})",
                quote_name(name),
                match status {
                    Status::Unknown => "unknown",
                    other => other.as_str(),
                }
            ),
            Err(e) => errors.push(e.to_string()),
        }
    }
    super::all_succeeded(errors)
}
