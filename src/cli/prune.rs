//! `limactl prune [--keep-referred]`

use crate::image::progress::human;
use crate::spec::yaml::quote_name;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Keep the cached downloads that templates or instances refer to.
    #[arg(long)]
    keep_referred: bool,
}

pub fn run(a: Args, _g: &super::Globals) -> anyhow::Result<i32> {
    let cache = crate::store::paths::cache_dir();
    let report = if a.keep_referred {
        let env = super::load_env();
        let (keep, warnings) = crate::image::referenced_locations(&env)?;
        for w in &warnings {
            crate::debug!("{w}");
        }
        crate::info!(
            "Pruning {} (keeping what templates and instances refer to)",
            quote_name(&cache.display().to_string())
        );
        crate::image::prune_unreferenced(&cache, &keep)?
    } else {
        crate::info!("Pruning {}", quote_name(&cache.display().to_string()));
        crate::image::prune_all(&cache)?
    };
    for (dir, url) in &report.removed {
        crate::debug!(
            "Removed {} ({})",
            quote_name(&dir.display().to_string()),
            url.as_deref().unwrap_or("no url")
        );
    }
    for dir in &report.busy {
        crate::warn!(
            "Kept {}: a download is using it",
            quote_name(&dir.display().to_string())
        );
    }
    let kept = if a.keep_referred {
        format!(", kept {} referred to", report.kept)
    } else {
        String::new()
    };
    let stale = if report.stale_files.is_empty() {
        String::new()
    } else {
        format!(", removed {} partial files", report.stale_files.len())
    };
    crate::info!(
        "Removed {} cached downloads{kept}{stale}; freed {} ({} bytes)",
        report.removed.len(),
        human(report.bytes_freed),
        report.bytes_freed
    );
    Ok(0)
}
