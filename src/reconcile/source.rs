//! Desired state from files: a `lima.yaml` file, or a directory of them
//! (GitOps style). In a directory every `*.yaml`/`*.yml` is one instance
//! named after the file; files starting with `.` or `_` are skipped (`_` for
//! shared parts that instance files use through `base:`).

use std::path::{Path, PathBuf};

use super::plan::{Desired, PowerState};
use crate::spec::yaml::quote_name;
use crate::spec::{LoadEnv, names, resolve};

/// One file of a source: the instance it declares, or why it cannot.
#[derive(Clone, Debug)]
pub struct Entry {
    pub name: String,
    pub file: PathBuf,
    pub desired: Result<Desired, String>,
    pub warnings: Vec<String>,
}

/// A file or directory of desired instances.
#[derive(Clone, Debug)]
pub struct Source {
    /// The absolute path that identifies the source in instances' `owner` files.
    pub id: String,
    pub is_dir: bool,
    pub entries: Vec<Entry>,
}

impl Source {
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.name.as_str())
    }
}

fn instance_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            !n.starts_with('.')
                && !n.starts_with('_')
                && (n.ends_with(".yaml") || n.ends_with(".yml"))
                && p.is_file()
        })
        .collect();
    files.sort();
    Ok(files)
}

pub fn load_file(
    file: &Path,
    name: &str,
    env: &LoadEnv,
    owner: &str,
) -> (Result<Desired, String>, Vec<String>) {
    let mut warnings = Vec::new();
    if let Err(e) = names::validate_instance_name(name) {
        return (Err(format!("{}: {e}", file.display())), warnings);
    }
    let loaded = resolve::load_locator(
        &file.display().to_string(),
        Some(name),
        env,
        true,
        &mut || Ok(String::new()),
        &mut warnings,
    );
    let result = loaded.map_err(|e| e.to_string()).map(|l| {
        let power = PowerState::from_run_strategy(l.resolved.config.run_strategy.as_deref());
        Desired {
            name: name.to_string(),
            lima_yaml: l.lima_yaml_text(),
            config: l.resolved.config,
            power,
            owner: Some(owner.to_string()),
        }
    });
    (result, warnings)
}

/// Reads a source. Errors of single files are kept on their entries; only an
/// unreadable path is an error of the whole source.
pub fn load(path: &Path, env: &LoadEnv) -> Result<Source, String> {
    let abs = std::fs::canonicalize(path).map_err(|e| {
        format!(
            "cannot read {}: {e}",
            quote_name(&path.display().to_string())
        )
    })?;
    let id = abs.display().to_string();
    let (is_dir, files) = if abs.is_dir() {
        let files = instance_files(&abs)
            .map_err(|e| format!("cannot read directory {}: {e}", quote_name(&id)))?;
        (true, files)
    } else {
        (false, vec![abs.clone()])
    };
    let mut entries: Vec<Entry> = Vec::new();
    for f in files {
        let fname = f.file_name().unwrap().to_string_lossy().into_owned();
        let stem = fname
            .strip_suffix(".yaml")
            .or_else(|| fname.strip_suffix(".yml"))
            .unwrap_or(&fname)
            .to_string();
        let (desired, warnings) = load_file(&f, &stem, env, &id);
        entries.push(Entry {
            name: stem,
            file: f,
            desired,
            warnings,
        });
    }
    // `a.yaml` and `a.yml` both declaring `a`: neither is applied.
    let dupes: Vec<String> = entries
        .iter()
        .filter(|e| entries.iter().filter(|o| o.name == e.name).count() > 1)
        .map(|e| e.name.clone())
        .collect();
    for e in &mut entries {
        if dupes.contains(&e.name) {
            e.desired = Err(format!(
                "{}: more than one file declares instance {}",
                e.file.display(),
                quote_name(&e.name)
            ));
        }
    }
    Ok(Source {
        id,
        is_dir,
        entries,
    })
}
