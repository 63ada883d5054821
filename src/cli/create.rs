//! `limactl create [--name N] [TEMPLATE|FILE|-]`

use crate::reconcile::ExecOptions;
use crate::reconcile::ops::edits::{CreateFlags, EditFlags};
use crate::reconcile::ops::target::{Target, resolve_target};
use crate::reconcile::ops::{self, Ctx, OpsError};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Instance name (default: derived from the template, or `default`).
    #[arg(long)]
    pub name: Option<String>,
    /// A template locator (`template:NAME`, a file, `-`) or an instance name.
    pub template: Option<String>,
    #[command(flatten)]
    pub edit: EditFlags,
    #[command(flatten)]
    pub create: CreateFlags,
    /// List the available templates and exit.
    #[arg(long)]
    pub list_templates: bool,
}

pub fn run(a: Args, g: &super::Globals) -> anyhow::Result<i32> {
    let ctx = Ctx::from_env();
    if a.list_templates {
        for (n, _) in ctx.env.store.list() {
            crate::outln!("{n}")?;
        }
        return Ok(0);
    }
    let target = resolve_target(
        &ctx,
        a.template.as_deref(),
        a.name.as_deref(),
        &a.edit,
        &a.create,
        None,
        &mut super::read_stdin,
    )?;
    let desired = match target {
        Target::Existing(name) => return Err(OpsError::Exists { name }.into()),
        Target::New(d) => d,
    };
    let exec = ExecOptions {
        debug: g.debug,
        ..Default::default()
    };
    ops::create(&ctx, &desired, &exec, &mut |_| {})?;
    crate::info!(
        "Run `limactl start {}` to start the instance.",
        desired.name
    );
    Ok(0)
}
