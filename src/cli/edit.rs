//! `limactl edit NAME [flags]`: change an instance's lima.yaml through the
//! reconciler's plan (validated first, shown, then applied). Unlike Lima,
//! a running instance can be edited: restart-required changes restart it with
//! `--restart=auto`, or stay pending (see `limactl status`) with the default
//! `--restart=never`.

use crate::reconcile::ops::edits::EditFlags;
use crate::reconcile::ops::target::{desired_from_node, edited_desired};
use crate::reconcile::ops::{self, Ctx};
use crate::reconcile::{ExecOptions, RestartPolicy};
use crate::spec::load;
use crate::spec::yaml::quote_name;
use crate::store::paths::files;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Instance name (default: `default`).
    pub name: Option<String>,
    #[command(flatten)]
    pub edit: EditFlags,
    /// Whether restart-required changes restart a running VM now.
    #[arg(long, value_enum, default_value_t = RestartPolicy::Never)]
    pub restart: RestartPolicy,
}

pub fn run(a: Args, g: &super::Globals) -> anyhow::Result<i32> {
    let ctx = Ctx::from_env();
    let name = a.name.clone().unwrap_or_else(|| "default".into());
    let inst = ops::existing(&ctx.home, &ctx.env, &name)?;
    let desired = match edited_desired(&ctx, &inst, &a.edit, None)? {
        Some(d) => d,
        None if !g.tty => {
            crate::info!(
                "Aborting, no changes made to the instance (give edit flags such as --set, or run in a terminal to open $EDITOR)"
            );
            return Ok(0);
        }
        None => {
            let path = inst.dir.join(files::LIMA_YAML);
            let original = inst.lima_yaml.clone().unwrap_or_default();
            let tmp = tempfile_in_instance(&inst.dir, &original)?;
            let editor = std::env::var("EDITOR").unwrap_or_else(|_| "vi".into());
            let status = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("{editor} \"$1\""))
                .arg("sh")
                .arg(&tmp)
                .status()?;
            let text = std::fs::read_to_string(&tmp)?;
            let _ = std::fs::remove_file(&tmp);
            if !status.success() {
                anyhow::bail!("the editor exited with {status}; nothing was changed");
            }
            if text.trim().is_empty() {
                crate::info!("Aborting, as requested by saving the file with empty content");
                return Ok(0);
            }
            if text == original {
                crate::info!("Aborting, no changes made to the instance");
                return Ok(0);
            }
            let node = load::parse_template(&load::Template::from_text(&path, text.clone()))?;
            // The user's bytes are stored as they wrote them.
            desired_from_node(&ctx, &inst, &node, Some(text), None)?
        }
    };
    let exec = ExecOptions {
        debug: g.debug,
        ..Default::default()
    };
    let plan = ops::edit(&ctx, &desired, a.restart, &exec, &mut |p| {
        super::apply::show_plan(p, true)
    })?;
    crate::info!("Instance {} configuration edited", quote_name(&name));
    if !plan.pending_restart.is_empty() {
        crate::info!(
            "The running VM needs a restart for: {} (run `limactl restart {name}`)",
            plan.pending_restart.join(", ")
        );
    }
    Ok(0)
}

fn tempfile_in_instance(dir: &std::path::Path, text: &str) -> std::io::Result<std::path::PathBuf> {
    let p = dir.join(format!(".lima.yaml.edit.{}.yaml", std::process::id()));
    let header = "# Edit the instance configuration; saving an empty file aborts.\n";
    let body = if text.starts_with(header) {
        text.to_string()
    } else {
        format!("{header}{text}")
    };
    crate::store::atomic::write(&p, body.as_bytes(), 0o600)?;
    Ok(p)
}
