//! `limactl protect` / `unprotect` (reference §8.3).

use crate::spec::yaml::quote_name;
use crate::store::{self, Home};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(required = true, value_name = "INSTANCE")]
    names: Vec<String>,
}

fn existing_dir(home: &Home, name: &str) -> Result<std::path::PathBuf, String> {
    crate::spec::names::validate_instance_name(name)
        .map_err(|e| format!("failed to inspect instance {}: {e}", quote_name(name)))?;
    let dir = home.instance_dir(name);
    if !dir.join(store::paths::files::LIMA_YAML).exists() {
        return Err(format!(
            "failed to inspect instance {}: instance does not exist (see `limactl list`)",
            quote_name(name)
        ));
    }
    Ok(dir)
}

pub fn run(a: Args, protect: bool) -> anyhow::Result<i32> {
    let home = Home::from_env();
    let mut errors = Vec::new();
    for n in &a.names {
        let dir = match existing_dir(&home, n) {
            Ok(d) => d,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let changed = if protect {
            store::protect(&dir)
        } else {
            store::unprotect(&dir)
        };
        match (changed, protect) {
            (Ok(true), true) => crate::info!("Protected {}", quote_name(n)),
            (Ok(false), true) => {
                crate::warn!("Instance {} is already protected. Skipping.", quote_name(n))
            }
            (Ok(true), false) => crate::info!("Unprotected {}", quote_name(n)),
            (Ok(false), false) => {
                crate::warn!("Instance {} isn't protected. Skipping.", quote_name(n))
            }
            (Err(e), _) => errors.push(format!("instance {}: {e}", quote_name(n))),
        }
    }
    super::all_succeeded(errors)
}
