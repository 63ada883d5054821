//! `limactl validate FILE… [--fill]`

use std::io::Write;

use crate::spec::yaml::{emit_json, quote_name};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Template locators (files, `template:NAME`, `-`).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<String>,
    /// Print the filled YAML (defaults applied).
    #[arg(long)]
    fill: bool,
}

pub fn run(a: Args, _g: &super::Globals) -> anyhow::Result<i32> {
    let env = super::load_env();
    let mut failures = Vec::new();
    let mut out = super::out::stdout();
    let many = a.files.len() > 1;
    for f in &a.files {
        let mut warnings = Vec::new();
        let result = crate::spec::resolve::load_locator(
            f,
            None,
            &env,
            a.fill,
            &mut super::read_stdin,
            &mut warnings,
        );
        super::log_warnings(&warnings);
        match result {
            Ok(loaded) => {
                if a.fill {
                    if many {
                        writeln!(out, "---")?;
                    }
                    write!(out, "{}", emit_json(&loaded.resolved.config.to_json()))?;
                } else {
                    crate::info!("{}: OK", quote_name(f));
                }
            }
            Err(e) => failures.push(format!(
                "failed to validate YAML file {}: {e}",
                quote_name(f)
            )),
        }
    }
    if a.fill && many {
        writeln!(out, "...")?;
    }
    if failures.is_empty() {
        Ok(0)
    } else {
        anyhow::bail!("{}", failures.join("\n"))
    }
}
