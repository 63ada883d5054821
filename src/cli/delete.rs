//! `limactl delete NAME… [-f]`

use crate::reconcile::{self, Action, ExecOptions};
use crate::spec::yaml::quote_name;
use crate::store::{self, Home};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(required = true, value_name = "INSTANCE")]
    pub names: Vec<String>,
    /// Kill a running instance instead of powering it off first.
    #[arg(short = 'f', long)]
    pub force: bool,
}

pub fn run(a: Args, g: &super::Globals) -> anyhow::Result<i32> {
    let home = Home::from_env();
    let env = crate::spec::LoadEnv::new(&home.root);
    let opts = ExecOptions {
        debug: g.debug,
        ..Default::default()
    };
    let mut errors = Vec::new();
    for name in &a.names {
        if let Err(e) = crate::spec::names::validate_instance_name(name) {
            errors.push(e);
            continue;
        }
        let inst = store::inspect(&home, &env, name);
        if !inst.dir_exists {
            crate::warn!("Ignoring non-existent instance {}", quote_name(name));
            continue;
        }
        let mut plan = reconcile::plan(None, &inst, &reconcile::PlanOptions::default());
        if a.force {
            for s in &mut plan.steps {
                if let Action::Stop { force } = &mut s.action {
                    *force = true;
                }
            }
        }
        if !plan.refused.is_empty() {
            errors.push(format!(
                "failed to delete instance {}: {}",
                quote_name(name),
                plan.refused.join("; ")
            ));
            continue;
        }
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
