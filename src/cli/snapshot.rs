//! `limactl snapshot create|apply|delete|list INSTANCE` (reference §8.8).

use crate::reconcile::ops::Ctx;
use crate::reconcile::ops::snapshot::{self, SnapshotAction, SnapshotOptions};
use crate::spec::yaml::quote_name;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Args, Debug)]
pub struct TagArgs {
    #[arg(value_name = "INSTANCE")]
    name: String,
    /// Name of the snapshot.
    #[arg(long, default_value = "")]
    tag: String,
}

#[derive(clap::Subcommand, Debug)]
enum Sub {
    /// Create (save) a snapshot.
    #[command(alias = "save")]
    Create(TagArgs),
    /// Apply (load) a snapshot.
    #[command(alias = "load")]
    Apply(TagArgs),
    /// Delete (del) a snapshot.
    #[command(alias = "del")]
    Delete(TagArgs),
    /// List existing snapshots.
    #[command(alias = "ls")]
    List {
        #[arg(value_name = "INSTANCE")]
        name: String,
        /// Only show tags.
        #[arg(short = 'q', long)]
        quiet: bool,
    },
}

fn options(name: &str) -> SnapshotOptions {
    SnapshotOptions {
        name: name.to_string(),
        lock_timeout: crate::store::MUTATION_LOCK_TIMEOUT,
    }
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    crate::warn!("`limactl snapshot` is experimental");
    let ctx = Ctx::from_env();
    let (action, t) = match a.command {
        Sub::List { name, quiet } => {
            let table = snapshot::list(&ctx, &options(&name))?;
            if quiet {
                for tag in snapshot::tags(&table)? {
                    crate::outln!("{tag}")?;
                }
            } else {
                crate::out!("{table}")?;
            }
            return Ok(0);
        }
        Sub::Create(t) => (SnapshotAction::Create, t),
        Sub::Apply(t) => (SnapshotAction::Apply, t),
        Sub::Delete(t) => (SnapshotAction::Delete, t),
    };
    let said = snapshot::snapshot(&ctx, action, &t.tag, &options(&t.name))?;
    if !said.is_empty() {
        crate::warn!("{said}");
    }
    crate::debug!(
        "snapshot {} of {}: {action:?} done",
        quote_name(&t.tag),
        quote_name(&t.name)
    );
    Ok(0)
}
