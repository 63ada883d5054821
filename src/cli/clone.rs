//! `limactl clone SRC DST` and `limactl rename OLD NEW` (reference §8.7).

use crate::reconcile::ExecOptions;
use crate::reconcile::ops::Ctx;
use crate::reconcile::ops::clone::{self, CloneOptions};
use crate::reconcile::ops::edits::EditFlags;
use crate::spec::yaml::quote_name;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(value_name = "OLDINST")]
    pub src: String,
    #[arg(value_name = "NEWINST")]
    pub dst: String,
    #[command(flatten)]
    pub edit: EditFlags,
    /// Start the instance once it is cloned or renamed.
    #[arg(long)]
    pub start: bool,
}

fn options(a: &Args, g: &super::Globals) -> CloneOptions {
    CloneOptions {
        src: a.src.clone(),
        dst: a.dst.clone(),
        edit: a.edit.clone(),
        exec: ExecOptions {
            debug: g.debug,
            ..Default::default()
        },
    }
}

pub fn run_clone(a: Args, g: &super::Globals) -> anyhow::Result<i32> {
    let ctx = Ctx::from_env();
    let opts = options(&a, g);
    clone::clone(&ctx, &opts)?;
    crate::info!(
        "Cloned {} to {}",
        quote_name(&opts.src),
        quote_name(&opts.dst)
    );
    super::start::offer(&opts.dst, a.start, g)
}

pub fn run_rename(a: Args, g: &super::Globals) -> anyhow::Result<i32> {
    let ctx = Ctx::from_env();
    let opts = options(&a, g);
    let r = clone::rename(&ctx, &opts)?;
    crate::info!(
        "Renamed {} to {}",
        quote_name(&opts.src),
        quote_name(&opts.dst)
    );
    if let Some(owner) = r.released_from {
        crate::warn!(
            "{} was managed by {owner}; {} is not (that source still declares {})",
            quote_name(&opts.src),
            quote_name(&opts.dst),
            quote_name(&opts.src)
        );
    }
    super::start::offer(&opts.dst, a.start, g)
}
