//! `limactl suspend [NAME…]`

use std::time::Duration;

use crate::reconcile::ExecOptions;
use crate::reconcile::ops::{self, Ctx, SuspendOptions, Suspended};
use crate::spec::yaml::quote_name;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Instances to suspend (default: `default`).
    pub names: Vec<String>,
    /// How long saving the state may take.
    #[arg(long, default_value = "600s", value_parser = super::start::parse_duration)]
    pub timeout: Duration,
}

pub fn run(a: Args, g: &super::Globals) -> anyhow::Result<i32> {
    let ctx = Ctx::from_env();
    let names = super::names_or_default(&a.names);
    let opts = SuspendOptions {
        exec: ExecOptions {
            debug: g.debug,
            stop_timeout: a.timeout,
            ..Default::default()
        },
    };
    let mut errors = Vec::new();
    for name in &names {
        match ops::suspend(&ctx, name, &opts, &mut |_| {}) {
            Ok(Suspended::Suspended) => {}
            Ok(Suspended::AlreadySuspended) => {
                crate::info!("The instance {} is suspended already", quote_name(name))
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    super::all_succeeded(errors)
}
