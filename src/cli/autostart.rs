//! `limactl autostart enable|disable INSTANCE`: a systemd user unit (Linux).

use crate::reconcile::ops::Ctx;
use crate::reconcile::ops::autostart::{self, AutostartOptions};
use crate::spec::yaml::quote_name;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand, Debug)]
enum Sub {
    /// Register an instance to start automatically (at login).
    Enable {
        #[arg(value_name = "INSTANCE")]
        name: String,
    },
    /// Unregister an instance from automatic startup.
    Disable {
        #[arg(value_name = "INSTANCE")]
        name: String,
    },
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    let ctx = Ctx::from_env();
    match a.command {
        Sub::Enable { name } => {
            let opts = AutostartOptions::from_env(&name)?;
            let path = autostart::enable(&ctx, &opts)?;
            crate::info!(
                "Instance {} will start automatically at login ({})",
                quote_name(&name),
                path.display()
            );
        }
        Sub::Disable { name } => {
            let opts = AutostartOptions::from_env(&name)?;
            if autostart::disable(&ctx, &opts)? {
                crate::info!(
                    "Instance {} will no longer start automatically",
                    quote_name(&name)
                );
            } else {
                crate::info!(
                    "Instance {} is not registered to start automatically",
                    quote_name(&name)
                );
            }
        }
    }
    Ok(0)
}
