//! `limactl generate-doc DIR` (hidden, as Lima's): man pages generated from
//! the clap definition, `limactl.1` and one `limactl-VERB.1` per visible
//! command (`hack/install.sh` installs them under `share/man/man1`).

use std::path::PathBuf;

use anyhow::Context;
use clap::CommandFactory;

use crate::spec::yaml::quote_name;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The directory to write the pages to (created if missing).
    dir: PathBuf,
    /// The kind of documentation; only `man` is generated.
    #[arg(long = "type", default_value = "man")]
    kind: String,
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    if a.kind != "man" {
        anyhow::bail!(
            "unsupported --type {} (only `man` is generated)",
            quote_name(&a.kind)
        );
    }
    std::fs::create_dir_all(&a.dir)
        .with_context(|| format!("cannot create {}", a.dir.display()))?;
    let mut root = super::Cli::command();
    root.build();
    let mut pages = vec![("limactl.1".to_string(), root.clone())];
    // clap's own `help` subcommand needs no page.
    let documented = |s: &&clap::Command| !s.is_hide_set() && s.get_name() != "help";
    for sub in root.get_subcommands().filter(documented) {
        // The page's title and NAME are those of `limactl VERB`.
        let name = format!("limactl-{}", sub.get_name());
        let page = sub.clone().display_name(name.clone());
        pages.push((format!("{name}.1"), page));
    }
    for (file, cmd) in pages {
        let mut text = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut text)?;
        let path = a.dir.join(&file);
        // Man pages are for every user of the machine: 0644, not the umask's 0600.
        crate::store::atomic::write(&path, &text, 0o644)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(0)
}
