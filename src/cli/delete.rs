//! `limactl delete NAME… [-f]`

use crate::reconcile::ExecOptions;
use crate::reconcile::ops::{self, Ctx, Deleted};
use crate::spec::yaml::quote_name;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(required = true, value_name = "INSTANCE")]
    pub names: Vec<String>,
    /// Kill a running instance instead of powering it off first.
    #[arg(short = 'f', long)]
    pub force: bool,
}

pub fn run(a: Args, g: &super::Globals) -> anyhow::Result<i32> {
    let ctx = Ctx::from_env();
    let exec = ExecOptions {
        debug: g.debug,
        ..Default::default()
    };
    let mut errors = Vec::new();
    for name in &a.names {
        match ops::delete(&ctx, name, a.force, &exec) {
            Ok(Deleted::Deleted) => {}
            Ok(Deleted::Absent) => {
                crate::warn!("Ignoring non-existent instance {}", quote_name(name))
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    super::all_succeeded(errors)
}
