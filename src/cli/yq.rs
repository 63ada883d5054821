//! `limactl yq EXPR [FILE…]`: jq expressions over YAML documents.

use std::io::{Read, Write};

use crate::spec::yaml::{self, Node};

#[derive(clap::Args, Debug)]
#[command(trailing_var_arg = false)]
pub struct Args {
    /// Output format: yaml (default) or json.
    #[arg(short = 'o', long = "output-format", default_value = "yaml")]
    output: String,
    /// Do not read input; evaluate against null.
    #[arg(short = 'n', long = "null-input")]
    null_input: bool,
    /// Indentation of JSON output (0 = compact).
    #[arg(short = 'I', long = "indent", default_value_t = 2)]
    indent: usize,
    /// Edit the file in place (YAML output only).
    #[arg(short = 'i', long = "inplace")]
    inplace: bool,
    /// The expression (`eval` may precede it, as with yq).
    expr: String,
    files: Vec<String>,
}

fn documents(text: &str, file: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    Ok(yaml::parse_documents(file, text)?
        .iter()
        .map(Node::to_json)
        .collect())
}

fn render(v: &serde_json::Value, a: &Args) -> String {
    if a.output == "json" {
        if a.indent == 0 {
            format!("{v}\n")
        } else {
            let ind = " ".repeat(a.indent);
            let mut buf = Vec::new();
            let fmt = serde_json::ser::PrettyFormatter::with_indent(ind.as_bytes());
            let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
            serde::Serialize::serialize(v, &mut ser).expect("JSON values serialize");
            format!("{}\n", String::from_utf8(buf).expect("utf-8"))
        }
    } else {
        yaml::emit_json(v)
    }
}

pub fn run(mut a: Args) -> anyhow::Result<i32> {
    if a.expr == "eval" || a.expr == "e" {
        if a.files.is_empty() {
            anyhow::bail!("missing expression");
        }
        a.expr = a.files.remove(0);
    }
    if !matches!(a.output.as_str(), "yaml" | "y" | "json" | "j") {
        anyhow::bail!(
            "unsupported output format {} (yaml or json)",
            yaml::quote_name(&a.output)
        );
    }
    if a.output == "j" {
        a.output = "json".into();
    }
    let mut inputs: Vec<(String, Vec<serde_json::Value>)> = Vec::new();
    if a.null_input {
        inputs.push(("-".into(), vec![serde_json::Value::Null]));
    } else if a.files.is_empty() {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        inputs.push(("-".into(), documents(&s, "<stdin>")?));
    } else {
        for f in &a.files {
            let text = std::fs::read_to_string(f)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", yaml::quote_name(f)))?;
            inputs.push((f.clone(), documents(&text, f)?));
        }
    }
    let mut out = super::out::stdout();
    for (file, docs) in inputs {
        let mut rendered = Vec::new();
        for d in &docs {
            for r in crate::yq::eval(&a.expr, d)? {
                rendered.push(render(&r, &a));
            }
        }
        let sep = if a.output == "json" { "" } else { "---\n" };
        let text = rendered.join(sep);
        if a.inplace && file != "-" {
            crate::store::atomic::write(std::path::Path::new(&file), text.as_bytes(), 0o644)?;
        } else {
            out.write_all(text.as_bytes())?;
        }
    }
    Ok(0)
}
