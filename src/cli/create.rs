//! `limactl create [--name N] [TEMPLATE|FILE|-]`

use super::editflags::{CreateFlags, EditFlags};
use super::instance::{Target, resolve_target};
use crate::reconcile::{self, ExecOptions};
use crate::spec::yaml::quote_name;
use crate::store::{self, Home};

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
    let home = Home::from_env();
    let env = crate::spec::LoadEnv::new(&home.root);
    if a.list_templates {
        for (n, _) in env.store.list() {
            println!("{n}");
        }
        return Ok(0);
    }
    let target = resolve_target(
        &home,
        &env,
        a.template.as_deref(),
        a.name.as_deref(),
        &a.edit,
        &a.create,
        None,
    )?;
    let desired = match target {
        Target::Existing(name) => anyhow::bail!("instance {} already exists", quote_name(&name)),
        Target::New(d) => d,
    };
    let observed = store::inspect(&home, &env, &desired.name);
    let plan = reconcile::plan(
        Some(&desired),
        &observed,
        &reconcile::PlanOptions::default(),
    );
    let opts = ExecOptions {
        debug: g.debug,
        ..Default::default()
    };
    reconcile::execute(&home, &plan, Some(&desired), &opts)?;
    crate::info!(
        "Run `limactl start {}` to start the instance.",
        desired.name
    );
    Ok(0)
}
