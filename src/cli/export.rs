//! `limactl export kubevirt -f FILE|DIR [-f …] [-o DIR|-] [--namespace NS]
//! [--arch ARCH] [--strict]`: the instances of a desired-state directory as
//! KubeVirt manifests (`reconcile::ops::export`).

use std::path::PathBuf;

use crate::reconcile::ops::Ctx;
use crate::reconcile::ops::export::{self, ExportOptions};
use crate::spec::typed::Arch;
use crate::spec::yaml::quote_name;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    target: Target,
}

#[derive(clap::Subcommand, Debug)]
enum Target {
    /// KubeVirt VirtualMachines (CDI DataVolumes, cloud-init) and Services.
    Kubevirt(KubevirtArgs),
}

#[derive(clap::Args, Debug)]
struct KubevirtArgs {
    /// A lima.yaml file or a directory of them, as for `apply` (repeatable).
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "FILE|DIR",
        required = true
    )]
    files: Vec<PathBuf>,
    /// A directory (one file per instance and a kustomization.yaml), or `-`
    /// for one YAML stream on stdout.
    #[arg(short = 'o', long, value_name = "DIR|-", default_value = "-")]
    output: String,
    /// Put every object in this namespace (and the kustomization).
    #[arg(long, value_name = "NS")]
    namespace: Option<String>,
    /// The cluster's architecture: resolve as on a host of this arch
    /// (default: this host's).
    #[arg(long, value_name = "ARCH", value_parser = parse_arch)]
    arch: Option<Arch>,
    /// Fail (exit 1, nothing written) when anything cannot be exported.
    #[arg(long)]
    strict: bool,
}

fn parse_arch(s: &str) -> Result<Arch, String> {
    s.parse()
}

pub fn run(a: Args, _g: &super::Globals) -> anyhow::Result<i32> {
    let Target::Kubevirt(a) = a.target;
    let ctx = Ctx::from_env();
    let opts = ExportOptions {
        sources: a.files,
        namespace: a.namespace,
        arch: a.arch,
    };
    let exported = export::export_kubevirt(&ctx, &opts)?;
    let mut warned = 0;
    for w in exported.warnings() {
        crate::warn!("{w}");
        warned += 1;
    }
    if a.strict && warned > 0 {
        anyhow::bail!(
            "--strict: {warned} field(s) cannot be exported (warned above); nothing written"
        );
    }
    if a.output == "-" {
        crate::out!("{}", export::render_stream(&exported))?;
        return Ok(0);
    }
    let dir = PathBuf::from(&a.output);
    let files = export::render_files(&exported, opts.namespace.as_deref());
    let removed = export::write_dir(&dir, &files)?;
    for r in &removed {
        crate::info!(
            "Removed {} (its instance is no longer declared)",
            quote_name(&dir.join(r).display().to_string())
        );
    }
    crate::info!(
        "Exported {} instance(s) to {}",
        exported.instances.len(),
        quote_name(&dir.display().to_string())
    );
    Ok(0)
}
