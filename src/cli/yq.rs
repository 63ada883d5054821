//! `limactl yq [eval|eval-all] EXPR [FILE…]`: yq expressions over YAML
//! documents, with yq's flags, output conventions and `Error: …` messages.

use std::io::{Read, Write};

use crate::spec::yaml::{self, Node};
use crate::yq::{Options, Origin, YqError, front::Access};

#[derive(clap::Args, Debug)]
#[command(trailing_var_arg = false, disable_version_flag = true)]
pub struct Args {
    /// Print yq's version line.
    #[arg(short = 'V', long = "version")]
    version: bool,
    /// Output format: yaml (default) or json.
    #[arg(short = 'o', long = "output-format", default_value = "yaml")]
    output: String,
    /// Input format: auto (by file extension, default), yaml or json.
    #[arg(short = 'p', long = "input-format", default_value = "auto")]
    input: String,
    /// Do not read input; evaluate against null.
    #[arg(short = 'n', long = "null-input")]
    null_input: bool,
    /// Indentation of JSON output (0 = compact).
    #[arg(short = 'I', long = "indent", default_value_t = 2)]
    indent: usize,
    /// Edit the file in place (YAML output only).
    #[arg(short = 'i', long = "inplace")]
    inplace: bool,
    /// Print scalars without quotes (default: true for YAML, false for JSON).
    #[arg(short = 'r', long = "unwrapScalar", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    unwrap: Option<bool>,
    /// Pretty print (block style; output is always block style here).
    #[arg(short = 'P', long = "prettyPrint")]
    pretty: bool,
    /// Exit 1 when the last result is null or false, or there is none.
    #[arg(short = 'e', long = "exit-status")]
    exit_status: bool,
    /// Force colours.
    #[arg(short = 'C', long = "colors")]
    colors: bool,
    /// Disable colours.
    #[arg(short = 'M', long = "no-colors")]
    no_colors: bool,
    /// Do not print document separators (`---`).
    #[arg(short = 'N', long = "no-doc")]
    no_doc: bool,
    /// Refuse env()/strenv().
    #[arg(long = "security-disable-env-ops")]
    disable_env: bool,
    /// Refuse load() and friends (they are never available here).
    #[arg(long = "security-disable-file-ops")]
    disable_file: bool,
    /// Read the expression from this file (then every word is a file).
    #[arg(long = "from-file", value_name = "FILE")]
    from_file: Option<String>,
    /// `eval`/`e` (default) or `eval-all`/`ea`, then the expression and files.
    words: Vec<String>,
}

fn documents(text: &str, file: &str) -> anyhow::Result<Vec<Node>> {
    Ok(yaml::parse_documents(file, text)?)
}

/// The version line Lima's tests match (`^yq .*mikefarah.* version v`).
fn version_line() -> String {
    format!(
        "yq (https://github.com/mikefarah/yq/ compatible, limactl {}) version v4",
        crate::version_string()
    )
}

struct Render {
    json: bool,
    indent: usize,
    unwrap: bool,
    colour: bool,
}

impl Render {
    fn one(&self, v: &serde_json::Value) -> String {
        if let (true, serde_json::Value::String(s)) = (self.unwrap, v) {
            return format!("{s}\n");
        }
        if self.json {
            let text = if self.indent == 0 {
                v.to_string()
            } else {
                let ind = " ".repeat(self.indent);
                let mut buf = Vec::new();
                let fmt = serde_json::ser::PrettyFormatter::with_indent(ind.as_bytes());
                let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
                serde::Serialize::serialize(v, &mut ser).expect("JSON values serialize");
                String::from_utf8(buf).expect("utf-8")
            };
            if self.colour {
                format!("{}\n", super::colour::json(&text))
            } else {
                format!("{text}\n")
            }
        } else if self.colour {
            super::colour::yaml(&yaml::emit_json(v))
        } else {
            yaml::emit_json(v)
        }
    }
}

/// Results to text: `---` between documents (not between the results of
/// one), as yq's printer does.
struct Emitter<'a> {
    render: &'a Render,
    separators: bool,
    printed_doc: Option<(usize, usize)>,
    /// yq's -e: did any result other than null or false come out?
    matched: bool,
}

impl Emitter<'_> {
    fn emit(&mut self, text: &mut String, doc: (usize, usize), results: Vec<serde_json::Value>) {
        for r in results {
            if self.separators && self.printed_doc.is_some_and(|p| p != doc) {
                text.push_str("---\n");
            }
            self.printed_doc = Some(doc);
            text.push_str(&self.render.one(&r));
            self.matched |= !matches!(r, serde_json::Value::Null | serde_json::Value::Bool(false));
        }
    }
}

/// yq's way of reporting: `Error: …` on stderr, exit 1.
fn yq_error(msg: &str) -> anyhow::Result<i32> {
    let _ = writeln!(std::io::stderr(), "Error: {msg}");
    Ok(1)
}

fn message(e: &YqError) -> String {
    match e {
        YqError::Compile { message, .. } | YqError::Run { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    if a.version {
        crate::outln!("{}", version_line())?;
        return Ok(0);
    }
    let mut words = a.words.clone();
    let all = match words.first().map(String::as_str) {
        Some("eval" | "e") => {
            words.remove(0);
            false
        }
        Some("eval-all" | "ea") => {
            words.remove(0);
            true
        }
        _ => false,
    };
    let expr = if let Some(f) = &a.from_file {
        match std::fs::read_to_string(f) {
            Ok(e) => e,
            Err(e) => return yq_error(&format!("open {f}: {e}")),
        }
    } else if words.is_empty() {
        return yq_error("an expression is required, e.g. limactl yq '.a' file.yaml");
    } else {
        words.remove(0)
    };
    let files = words;
    let json = match a.output.as_str() {
        "yaml" | "y" => false,
        "json" | "j" => true,
        other => {
            return yq_error(&format!(
                "unknown output format {other}: limactl's yq writes yaml and json"
            ));
        }
    };
    if !matches!(a.input.as_str(), "auto" | "a" | "yaml" | "y" | "json" | "j") {
        return yq_error(&format!(
            "unknown input format {}: limactl's yq reads yaml and json",
            a.input
        ));
    }
    let colour = !a.no_colors
        && (a.colors || (!a.inplace && std::io::IsTerminal::is_terminal(&std::io::stdout())));
    let render = Render {
        json,
        indent: a.indent,
        unwrap: a.unwrap.unwrap_or(!json),
        colour,
    };
    let access = Access {
        env: !a.disable_env,
    };
    // (file, its documents)
    let mut inputs: Vec<(String, Vec<Node>)> = Vec::new();
    if a.null_input {
        inputs.push(("".into(), vec![Node::from_json(&serde_json::Value::Null)]));
    } else if files.is_empty() {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        inputs.push(("-".into(), documents(&s, "<stdin>")?));
    } else {
        for f in &files {
            let text = match std::fs::read_to_string(f) {
                Ok(t) => t,
                Err(e) => return yq_error(&format!("open {f}: {e}")),
            };
            match documents(&text, f) {
                Ok(d) => inputs.push((f.clone(), d)),
                Err(e) => return yq_error(&format!("{e:#}")),
            }
        }
    }
    if a.inplace && (all || files.is_empty()) {
        return yq_error("write in place needs files and works with eval only");
    }
    let mut out = super::out::stdout();
    let mut em = Emitter {
        render: &render,
        separators: !json && !a.no_doc,
        printed_doc: None,
        matched: false,
    };
    if all && expr.contains("ireduce") {
        let docs: Vec<serde_json::Value> = inputs
            .iter()
            .flat_map(|(_, d)| d.iter().map(Node::to_json))
            .collect();
        let opts = Options {
            access,
            origin: Origin {
                all_docs: Some(docs),
                ..Origin::default()
            },
            ..Options::default()
        };
        match crate::yq::eval_opts(&expr, &serde_json::Value::Null, &opts) {
            Ok(results) => {
                let mut text = String::new();
                em.emit(&mut text, (0, 0), results);
                out.write_all(text.as_bytes())?;
            }
            Err(e) => return yq_error(&message(&e)),
        }
    } else {
        for (fi, (file, docs)) in inputs.iter().enumerate() {
            let mut text = String::new();
            for (di, d) in docs.iter().enumerate() {
                let opts = Options {
                    access,
                    origin: Origin::of(file, fi, di, d),
                    ..Options::default()
                };
                match crate::yq::eval_opts(&expr, &d.to_json(), &opts) {
                    Ok(results) => em.emit(&mut text, (fi, di), results),
                    Err(e) => return yq_error(&message(&e)),
                }
            }
            if a.inplace {
                crate::store::atomic::write(std::path::Path::new(file), text.as_bytes(), 0o644)?;
                em.printed_doc = None;
            } else {
                out.write_all(text.as_bytes())?;
            }
        }
    }
    if a.exit_status && !em.matched {
        out.flush()?;
        return yq_error("no matches found");
    }
    Ok(0)
}
