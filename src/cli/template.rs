//! `limactl template copy|validate|list|yq`

use std::io::Write;

use anyhow::Context;

use crate::spec::load::{self, Template};
use crate::spec::yaml::{emit, emit_json, quote_name};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand, Debug)]
enum Sub {
    /// Copy a template (to a file or `-` for stdout).
    Copy(CopyArgs),
    /// Validate templates (same as `limactl validate`).
    Validate(super::validate::Args),
    /// List the available templates.
    #[command(alias = "ls")]
    List(ListArgs),
    /// Query a template with a yq expression, e.g. `template yq template:default '.images[0].location'`.
    Yq(YqArgs),
}

#[derive(clap::Args, Debug)]
struct YqArgs {
    /// Template locator.
    template: String,
    /// The yq expression.
    expr: String,
}

#[derive(clap::Args, Debug)]
struct CopyArgs {
    /// Embed base templates and `file:` scripts.
    #[arg(long, conflicts_with_all = ["fill", "verbatim"])]
    embed: bool,
    /// Same as --embed (all bases are embedded, `template:` ones included).
    #[arg(long = "embed-all", conflicts_with_all = ["fill", "verbatim"])]
    embed_all: bool,
    /// Embed everything, then print the configuration with every default filled.
    #[arg(long, conflicts_with = "verbatim")]
    fill: bool,
    /// Copy the bytes unchanged.
    #[arg(long)]
    verbatim: bool,
    /// Template locator.
    template: String,
    /// Destination file, or `-` (default) for stdout.
    dest: Option<String>,
}

#[derive(clap::Args, Debug)]
struct ListArgs {
    /// Print JSON lines `{name, location}`.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args, g: &super::Globals) -> anyhow::Result<i32> {
    match a.command {
        Sub::Copy(c) => copy(c),
        Sub::Validate(v) => super::validate::run(v, g),
        Sub::List(l) => list(l),
        Sub::Yq(y) => yq(y),
    }
}

/// Lima's `template yq`: the expression over the template with its bases
/// embedded, scalars printed plain, other results as YAML.
fn yq(y: YqArgs) -> anyhow::Result<i32> {
    let env = super::load_env();
    let mut warnings = Vec::new();
    let tmpl = load::read_locator(
        &y.template,
        &env.store,
        &mut super::read_stdin,
        &mut warnings,
    )?;
    super::log_warnings(&warnings);
    let mut warnings = Vec::new();
    let embedded = load::embed(&tmpl, &env.embed_context(false), &mut warnings);
    super::log_warnings(&warnings);
    let (node, _) = embedded?;
    let mut out = super::out::stdout();
    for (i, d) in [node].iter().enumerate() {
        let opts = crate::yq::Options {
            origin: crate::yq::Origin::of(&tmpl.locator, 0, i, d),
            ..Default::default()
        };
        for r in crate::yq::eval_opts(&y.expr, &d.to_json(), &opts)? {
            match r {
                serde_json::Value::String(s) => writeln!(out, "{s}")?,
                other => write!(out, "{}", emit_json(&other))?,
            }
        }
    }
    Ok(0)
}

fn copy(c: CopyArgs) -> anyhow::Result<i32> {
    let env = super::load_env();
    let mut warnings = Vec::new();
    let tmpl: Template = load::read_locator(
        &c.template,
        &env.store,
        &mut super::read_stdin,
        &mut warnings,
    )?;
    super::log_warnings(&warnings);
    let text = if c.verbatim {
        tmpl.text.clone()
    } else if c.fill {
        let mut warnings = Vec::new();
        let loaded = crate::spec::resolve::load_template(tmpl, None, &env, true, &mut warnings);
        super::log_warnings(&warnings);
        let loaded = loaded?;
        emit_json(&loaded.resolved.config.to_json())
    } else if c.embed || c.embed_all {
        let mut warnings = Vec::new();
        let embedded = load::embed(&tmpl, &env.embed_context(false), &mut warnings);
        super::log_warnings(&warnings);
        let (node, changed) = embedded?;
        if changed {
            emit(&node)
        } else {
            tmpl.text.clone()
        }
    } else {
        load::absolutize_locators(&tmpl)?
    };
    match c.dest.as_deref() {
        None | Some("-") => {
            super::out::stdout().write_all(text.as_bytes())?;
        }
        Some(dest) => {
            std::fs::write(dest, &text)
                .with_context(|| format!("cannot write {}", quote_name(dest)))?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o644))?;
        }
    }
    Ok(0)
}

fn list(l: ListArgs) -> anyhow::Result<i32> {
    let env = super::load_env();
    let mut out = super::out::stdout();
    for (name, location) in env.store.list() {
        if l.json {
            writeln!(
                out,
                "{}",
                serde_json::json!({"name": name, "location": location})
            )?;
        } else {
            writeln!(out, "{name}")?;
        }
    }
    Ok(0)
}
