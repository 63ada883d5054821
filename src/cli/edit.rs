//! `limactl edit NAME [flags]`: change an instance's lima.yaml through the
//! reconciler's plan (validated first, shown, then applied). Unlike Lima,
//! a running instance can be edited: restart-required changes restart it with
//! `--restart=auto`, or stay pending (see `limactl status`) with the default
//! `--restart=never`. `edit FILE.yaml` edits a template file in place
//! (validated first); `--start` starts the instance once edited.

use crate::reconcile::ops::edits::EditFlags;
use crate::reconcile::ops::target::{desired_from_node, edited_desired};
use crate::reconcile::ops::{self, Ctx};
use crate::reconcile::{ExecOptions, RestartPolicy};
use crate::spec::load;
use crate::spec::yaml::quote_name;
use crate::store::paths::files;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Instance name (default: `default`), or a FILE.yaml to edit in place.
    pub name: Option<String>,
    /// Start the instance after editing it.
    #[arg(long)]
    pub start: bool,
    #[command(flatten)]
    pub edit: EditFlags,
    /// Whether restart-required changes restart a running VM now.
    #[arg(long, value_enum, default_value_t = RestartPolicy::Never)]
    pub restart: RestartPolicy,
}

pub fn run(a: Args, g: &super::Globals) -> anyhow::Result<i32> {
    let ctx = Ctx::from_env();
    let name = a.name.clone().unwrap_or_else(|| "default".into());
    if name.ends_with(".yaml") || name.ends_with(".yml") {
        if a.start {
            anyhow::bail!("--start is for instances; {} is a file", quote_name(&name));
        }
        return edit_file(&ctx, std::path::Path::new(&name), &a.edit, g);
    }
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
            let Some(text) = run_editor(&inst.dir, &original, "the instance")? else {
                return Ok(0);
            };
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
    super::start::offer(&name, a.start, g)
}

/// Runs `$EDITOR` on a copy of `text` in `dir`; `None` when the result is
/// empty or unchanged (said as Lima says it).
fn run_editor(dir: &std::path::Path, text: &str, what: &str) -> anyhow::Result<Option<String>> {
    let tmp = tempfile_in_instance(dir, text)?;
    let editor = std::env::var("EDITOR").unwrap_or_else(|_| "vi".into());
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(&tmp)
        .status()?;
    let edited = std::fs::read_to_string(&tmp)?;
    let _ = std::fs::remove_file(&tmp);
    if !status.success() {
        anyhow::bail!("the editor exited with {status}; nothing was changed");
    }
    if edited.trim().is_empty() {
        crate::info!("Aborting, as requested by saving the file with empty content");
        return Ok(None);
    }
    if edited == text {
        crate::info!("Aborting, no changes made to {what}");
        return Ok(None);
    }
    Ok(Some(edited))
}

/// `edit FILE.yaml`: edit flags (or `$EDITOR` on a terminal) change the
/// file, which is replaced only once the result validates.
fn edit_file(
    ctx: &Ctx,
    path: &std::path::Path,
    flags: &EditFlags,
    g: &super::Globals,
) -> anyhow::Result<i32> {
    let shown = quote_name(&path.display().to_string());
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read {shown}: {e}"))?;
    let node = load::parse_template(&load::Template::from_text(path, text.clone()))?;
    let exprs = flags.expressions(&node)?;
    let new = if !exprs.is_empty() {
        crate::spec::yaml::emit(&crate::reconcile::ops::edits::apply(&node, &exprs)?)
    } else if g.tty {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        match run_editor(dir.unwrap_or(std::path::Path::new(".")), &text, &shown)? {
            Some(t) => t,
            None => return Ok(0),
        }
    } else {
        crate::info!(
            "Aborting, no changes made to {shown} (give edit flags such as --set, or run in a terminal to open $EDITOR)"
        );
        return Ok(0);
    };
    // Validated as a file next to the original, so relative bases resolve alike.
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let probe = dir.join(format!(
        ".{}.edit.{}.yaml",
        files::LIMA_YAML,
        std::process::id()
    ));
    crate::store::atomic::write(&probe, new.as_bytes(), 0o600)?;
    let mut warnings = Vec::new();
    let checked = crate::spec::resolve::load_locator(
        &probe.display().to_string(),
        None,
        &ctx.env,
        false,
        &mut super::read_stdin,
        &mut warnings,
    );
    let _ = std::fs::remove_file(&probe);
    super::log_warnings(&warnings);
    if let Err(e) = checked {
        anyhow::bail!("the edited {shown} is invalid; nothing was changed: {e}");
    }
    crate::store::atomic::write(path, new.as_bytes(), 0o644)?;
    crate::info!("File {shown} edited");
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
