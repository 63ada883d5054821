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
    /// Print the URL a locator stands for (`github:…`, plugin schemes).
    Url(UrlArgs),
}

#[derive(clap::Args, Debug)]
struct UrlArgs {
    /// The locator, e.g. `github:ORG/REPO/PATH@BRANCH`.
    locator: String,
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
        Sub::Url(u) => {
            let url = load::remote::transform_url(&u.locator)?;
            writeln!(super::out::stdout(), "{url}")?;
            Ok(0)
        }
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
            splice(&tmpl.text, &node).unwrap_or_else(|| emit(&node))
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

/// The embedded template as Lima writes it: the top-level keys whose value
/// did not change keep their bytes (comments, quoting, flow lists), changed
/// ones are re-emitted in place, new ones appended, dropped ones (`base`)
/// removed. `None` when the text is not a single block mapping with one key
/// per line at column 1 (then the whole document is re-emitted).
fn splice(text: &str, merged: &crate::spec::yaml::Node) -> Option<String> {
    use crate::spec::yaml::{Node, Value};
    let original = crate::spec::yaml::parse_single("template", text).ok()??;
    let (Value::Map(orig), Value::Map(new)) = (&original.value, &merged.value) else {
        return None;
    };
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut starts = Vec::new();
    for e in orig {
        let loc = e.key_loc.as_ref()?;
        if loc.col != 1 || starts.last().is_some_and(|&l| l >= loc.line) {
            return None;
        }
        starts.push(loc.line);
    }
    // Everything before the first key (the header comment) stays.
    let first = *starts.first()?;
    let mut out: String = lines[..first - 1].concat();
    let block = |i: usize| -> String {
        let end = starts.get(i + 1).map_or(lines.len(), |&l| l - 1);
        let mut b = lines[starts[i] - 1..end].concat();
        if !b.ends_with('\n') {
            b.push('\n');
        }
        b
    };
    let one = |k: &str, v: &Node| emit(&Node::map(vec![(k.to_string(), v.clone())]));
    for (i, e) in orig.iter().enumerate() {
        match new.iter().find(|n| n.key == e.key) {
            Some(n) if n.value.to_json() == e.value.to_json() => out.push_str(&block(i)),
            Some(n) => out.push_str(&one(&n.key, &n.value)),
            None => {}
        }
    }
    for n in new {
        if !orig.iter().any(|e| e.key == n.key) {
            out.push_str(&one(&n.key, &n.value));
        }
    }
    Some(out)
}
