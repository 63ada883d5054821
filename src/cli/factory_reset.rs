//! `limactl factory-reset [INSTANCE]` (reference §8.9).

use crate::reconcile::ExecOptions;
use crate::reconcile::ops::Ctx;
use crate::reconcile::ops::clone::{self, Reset};
use crate::spec::yaml::quote_name;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Instance name (default: `default`).
    #[arg(value_name = "INSTANCE")]
    pub name: Option<String>,
}

pub fn run(a: Args, g: &super::Globals) -> anyhow::Result<i32> {
    let ctx = Ctx::from_env();
    let name = a.name.unwrap_or_else(|| "default".into());
    let exec = ExecOptions {
        debug: g.debug,
        ..Default::default()
    };
    match clone::factory_reset(&ctx, &name, &exec)? {
        Reset::Absent => crate::info!("Instance {} not found", quote_name(&name)),
        Reset::Reset => crate::info!(
            "Instance {} has been reset to its initial state; the next start is a first boot",
            quote_name(&name)
        ),
    }
    Ok(0)
}
