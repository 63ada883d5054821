//! `limactl disk create|list|delete|resize|import|unlock` (reference §8.2).

use std::io::Write;

use crate::spec::units::{format_size, parse_size};
use crate::spec::yaml::quote_name;
use crate::store::Home;
use crate::store::disk::{self, Lock};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand, Debug)]
enum Sub {
    /// Create a disk (`$LIMA_HOME/_disk/NAME/datadisk`).
    Create {
        name: String,
        /// Size, e.g. 10GiB.
        #[arg(long, required = true)]
        size: String,
        /// qcow2 (default) or raw.
        #[arg(long, default_value = "qcow2")]
        format: String,
    },
    /// List disks.
    #[command(alias = "ls")]
    List {
        names: Vec<String>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Delete disks.
    #[command(aliases = ["remove", "rm"])]
    Delete {
        #[arg(required = true)]
        names: Vec<String>,
        /// Delete even if a stopped instance still holds the lock.
        #[arg(short = 'f', long)]
        force: bool,
    },
    /// Grow a disk.
    Resize {
        name: String,
        #[arg(long, required = true)]
        size: String,
    },
    /// Import an existing qcow2 or raw image as a disk.
    Import {
        name: String,
        #[arg(value_name = "FILE")]
        file: std::path::PathBuf,
    },
    /// Remove a stale in_use_by lock.
    Unlock {
        #[arg(required = true)]
        names: Vec<String>,
    },
}

fn size_arg(s: &str) -> anyhow::Result<u64> {
    let n = parse_size(s).map_err(|e| anyhow::anyhow!("--size: {e}"))?;
    if n == 0 {
        anyhow::bail!("--size must be larger than zero");
    }
    Ok(n)
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    let home = Home::from_env();
    match a.command {
        Sub::Create { name, size, format } => {
            let bytes = size_arg(&size)?;
            crate::info!(
                "Creating {format} disk {} with size {}",
                quote_name(&name),
                format_size(bytes)
            );
            disk::create(&home, &name, bytes, &format)?;
        }
        Sub::List { names, json } => {
            let all = disk::list(&home);
            if all.is_empty() && names.is_empty() {
                // Lima prints the table's header before the warning.
                if !json {
                    crate::out!(
                        "{}",
                        super::list::tabwrite(&[DISK_HEADER.map(String::from).to_vec()])
                    )?;
                }
                crate::warn!(
                    "No disk found. Run `limactl disk create DISK --size SIZE` to create a disk."
                );
                return Ok(0);
            }
            let shown: Vec<_> = all
                .into_iter()
                .filter(|d| names.is_empty() || names.contains(&d.name))
                .collect();
            let mut out = super::out::stdout();
            if json {
                let env = crate::spec::LoadEnv::new(&home.root);
                for d in &shown {
                    let mut j = d.to_json();
                    if let Some(fs) = fs_type(&home, &env, d) {
                        j["fsType"] = fs.into();
                    }
                    writeln!(out, "{j}")?;
                }
            } else {
                let mut rows = vec![DISK_HEADER.map(String::from).to_vec()];
                for d in &shown {
                    let in_use = match &d.lock {
                        Lock::Free => String::new(),
                        Lock::Held { instance } => instance.clone(),
                        Lock::Stale { instance } => format!("{instance} (stale)"),
                    };
                    rows.push(vec![
                        d.name.clone(),
                        format_size(d.size),
                        d.format.clone(),
                        crate::store::paths::tilde(&d.dir),
                        in_use,
                    ]);
                }
                write!(out, "{}", super::list::tabwrite(&rows))?;
            }
            for n in &names {
                if !shown.iter().any(|d| &d.name == n) {
                    crate::warn!("No disk matching {n} found.");
                }
            }
        }
        Sub::Delete { names, force } => {
            let mut errors = Vec::new();
            for n in &names {
                match disk::delete(&home, n, force) {
                    Ok(dir) => crate::info!(
                        "Deleted {} ({})",
                        quote_name(n),
                        quote_name(&dir.display().to_string())
                    ),
                    Err(disk::DiskError::NotFound(_)) => {
                        crate::warn!("Ignoring non-existent disk {}", quote_name(n))
                    }
                    Err(e) => errors.push(e.to_string()),
                }
            }
            if !errors.is_empty() {
                anyhow::bail!("{}", errors.join("\n"));
            }
        }
        Sub::Resize { name, size } => {
            let bytes = size_arg(&size)?;
            let d = disk::resize(&home, &name, bytes)?;
            crate::info!(
                "Resized disk {} to {}",
                quote_name(&name),
                format_size(d.size)
            );
        }
        Sub::Import { name, file } => {
            let d = disk::import(&home, &name, &file)?;
            crate::info!(
                "Imported {} as {} disk {} with size {}",
                file.display(),
                d.format,
                quote_name(&name),
                format_size(d.size)
            );
        }
        Sub::Unlock { names } => {
            let mut errors = Vec::new();
            for n in &names {
                match disk::unlock(&home, n) {
                    Ok(Lock::Stale { instance }) => crate::info!(
                        "Unlocked disk {} (was held by instance {}, which is not running)",
                        quote_name(n),
                        quote_name(&instance)
                    ),
                    Ok(_) => crate::warn!("Disk {} is not locked. Skipping.", quote_name(n)),
                    Err(e) => errors.push(e.to_string()),
                }
            }
            if !errors.is_empty() {
                anyhow::bail!("{}", errors.join("\n"));
            }
        }
    }
    Ok(0)
}

const DISK_HEADER: [&str; 5] = ["NAME", "SIZE", "FORMAT", "DIR", "IN-USE-BY"];

/// `fsType` of Lima's disk JSON (omitted when empty): what the instance
/// using the disk declares for it in `additionalDisks`.
fn fs_type(
    home: &crate::store::Home,
    env: &crate::spec::LoadEnv,
    d: &disk::Disk,
) -> Option<String> {
    let inst = crate::store::inspect_listed(home, env, d.instance()?)?;
    inst.config
        .as_ref()?
        .additional_disks
        .as_ref()?
        .iter()
        .find(|a| a.name == d.name)?
        .fs_type
        .clone()
        .filter(|f| !f.is_empty())
}
