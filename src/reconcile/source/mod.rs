//! Sources of desired state, and their ownership and prune rules — one
//! place for `apply`, `diff` and the watch daemon.
//!
//! A source is a `lima.yaml` file or a directory of them (GitOps style). In a
//! directory every `*.yaml`/`*.yml` is one instance named after the file;
//! files starting with `.` or `_` are skipped (`_` for shared parts that
//! instance files use through `base:`). A source is identified by its
//! canonical path, recorded in each instance it creates (`<inst>/owner`).
//!
//! Ownership: a declared instance owned by another source is left alone; an
//! unowned one is adopted. Pruning: only a directory source prunes, only the
//! instances it owns, and only when it no longer declares them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::plan::{Desired, DesiredConfig, PowerState};
use crate::spec::yaml::quote_name;
use crate::spec::{LoadEnv, names, resolve};
use crate::store::{self, Home};

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read {}: {message}", quote_name(path))]
    Unreadable { path: String, message: String },
    #[error("cannot read directory {}: {message}", quote_name(path))]
    Listing { path: String, message: String },
}

/// What keeps a declared instance from being applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// The file does not load or validate.
    #[error("{0}")]
    Load(String),
    /// Two files declare the same instance: neither is applied.
    #[error("{}: more than one file declares instance {}", file.display(), quote_name(name))]
    Duplicate { file: PathBuf, name: String },
    /// Another source manages the instance.
    #[error(
        "instance {} is managed by another source ({owner}); left alone",
        quote_name(name)
    )]
    Foreign { name: String, owner: String },
    /// Another source given on the same command line declares it too.
    #[error("instance {} is also declared by {other}", quote_name(name))]
    AlsoDeclared { name: String, other: String },
}

/// One file of a source: the instance it declares, or why it cannot.
#[derive(Clone, Debug)]
pub struct Entry {
    pub name: String,
    pub file: PathBuf,
    pub desired: Result<Desired, EntryError>,
    pub warnings: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    File,
    Dir,
}

/// A file or directory of desired instances.
#[derive(Clone, Debug)]
pub struct Source {
    /// The canonical path; identifies the source in instances' `owner` files.
    pub id: String,
    pub path: PathBuf,
    pub kind: SourceKind,
}

/// How a source relates to an instance of `LIMA_HOME`.
#[derive(Debug)]
pub enum Claim<'a> {
    /// A source declares it in `file`.
    Declared { source: &'a Source, file: PathBuf },
    /// A directory source owns it but no longer declares it: `--prune`
    /// deletes it.
    Orphan { source: &'a Source },
    /// No source given manages it.
    Unmanaged,
}

/// The instance a path declares: `NAME.yaml`/`NAME.yml` (not `.`- or `_`-prefixed).
pub fn instance_name(p: &Path) -> Option<String> {
    let f = p.file_name()?.to_str()?;
    if f.starts_with('.') || f.starts_with('_') {
        return None;
    }
    f.strip_suffix(".yaml")
        .or_else(|| f.strip_suffix(".yml"))
        .map(str::to_string)
}

/// Whether a path is a shared part (`_*.yaml`) that instance files may use.
pub fn is_shared_part(p: &Path) -> bool {
    p.file_name()
        .and_then(|f| f.to_str())
        .is_some_and(|f| f.starts_with('_') && (f.ends_with(".yaml") || f.ends_with(".yml")))
}

impl Source {
    pub fn open(path: &Path) -> Result<Source, SourceError> {
        let abs = std::fs::canonicalize(path).map_err(|e| SourceError::Unreadable {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let kind = if abs.is_dir() {
            SourceKind::Dir
        } else {
            SourceKind::File
        };
        Ok(Source {
            id: abs.display().to_string(),
            path: abs,
            kind,
        })
    }

    /// Only a directory prunes: a single file cannot tell "gone" from "elsewhere".
    pub fn prunes(&self) -> bool {
        self.kind == SourceKind::Dir
    }

    /// The directory whose entries concern this source.
    pub fn dir(&self) -> &Path {
        match self.kind {
            SourceKind::Dir => &self.path,
            SourceKind::File => self.path.parent().unwrap_or(Path::new("/")),
        }
    }

    /// Whether a changed path concerns this source (a file of it, or a
    /// shared part it may use).
    pub fn concerns(&self, p: &Path) -> bool {
        p.parent() == Some(self.dir())
            && match self.kind {
                SourceKind::Dir => true,
                SourceKind::File => p == self.path || is_shared_part(p),
            }
    }

    /// Every instance file declared now, sorted by path.
    pub fn files(&self) -> Result<Vec<PathBuf>, SourceError> {
        if self.kind == SourceKind::File {
            return Ok(vec![self.path.clone()]);
        }
        let listing = |e: std::io::Error| SourceError::Listing {
            path: self.id.clone(),
            message: e.to_string(),
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.path)
            .map_err(listing)?
            .flatten()
            .map(|e| e.path())
            .filter(|p| instance_name(p).is_some() && p.is_file())
            .collect();
        files.sort();
        Ok(files)
    }

    /// The file declaring `name` now, if any.
    pub fn file_for(&self, name: &str) -> Option<PathBuf> {
        match self.kind {
            SourceKind::File => (instance_name(&self.path).as_deref() == Some(name)
                && self.path.exists())
            .then(|| self.path.clone()),
            SourceKind::Dir => ["yaml", "yml"]
                .iter()
                .map(|ext| self.path.join(format!("{name}.{ext}")))
                .find(|p| p.is_file()),
        }
    }

    /// Instance names declared now (best effort: for enqueueing).
    pub fn names(&self) -> Vec<String> {
        self.files()
            .unwrap_or_default()
            .iter()
            .filter_map(|f| instance_name(f))
            .collect()
    }

    /// Reads one instance file of this source.
    pub fn load(&self, file: &Path, name: &str, env: &LoadEnv) -> Entry {
        let (desired, warnings) = load_file(file, name, env, &self.id);
        Entry {
            name: name.to_string(),
            file: file.to_path_buf(),
            desired,
            warnings,
        }
    }

    /// Reads every file. Errors of single files are kept on their entries;
    /// only an unreadable directory is an error of the whole source.
    pub fn entries(&self, env: &LoadEnv) -> Result<Vec<Entry>, SourceError> {
        let mut entries: Vec<Entry> = self
            .files()?
            .iter()
            .map(|f| {
                let stem = instance_name(f)
                    .unwrap_or_else(|| f.file_name().unwrap_or_default().to_string_lossy().into());
                self.load(f, &stem, env)
            })
            .collect();
        // `a.yaml` and `a.yml` both declaring `a`: neither is applied.
        let dupes: Vec<String> = entries
            .iter()
            .filter(|e| entries.iter().filter(|o| o.name == e.name).count() > 1)
            .map(|e| e.name.clone())
            .collect();
        for e in &mut entries {
            if dupes.contains(&e.name) {
                e.desired = Err(EntryError::Duplicate {
                    file: e.file.clone(),
                    name: e.name.clone(),
                });
            }
        }
        Ok(entries)
    }

    /// Ownership: a declared instance owned by another source is left alone.
    pub fn check_owner(&self, name: &str, owner: Option<&str>) -> Result<(), EntryError> {
        match owner {
            Some(o) if o != self.id => Err(EntryError::Foreign {
                name: name.to_string(),
                owner: o.to_string(),
            }),
            _ => Ok(()),
        }
    }
}

/// Reads a desired-state file as instance `name`, owned by `owner`.
pub fn load_file(
    file: &Path,
    name: &str,
    env: &LoadEnv,
    owner: &str,
) -> (Result<Desired, EntryError>, Vec<String>) {
    let mut warnings = Vec::new();
    if let Err(e) = names::validate_instance_name(name) {
        return (
            Err(EntryError::Load(format!("{}: {e}", file.display()))),
            warnings,
        );
    }
    let loaded = resolve::load_locator(
        &file.display().to_string(),
        Some(name),
        env,
        true,
        &mut || Ok(String::new()),
        &mut warnings,
    );
    let result = loaded
        .map_err(|e| EntryError::Load(e.to_string()))
        .map(|l| {
            let power = PowerState::from_run_strategy(l.resolved.spec.run_strategy);
            Desired {
                name: name.to_string(),
                config: Some(Arc::new(DesiredConfig::new(l.lima_yaml_text(), l.resolved))),
                power,
                owner: Some(owner.to_string()),
            }
        });
    (result, warnings)
}

/// The sources of one `apply`/`diff`/daemon.
#[derive(Clone, Debug, Default)]
pub struct Sources(pub Vec<Source>);

impl Sources {
    /// Opens every path; the ones that cannot be read are returned as errors.
    pub fn open(paths: &[PathBuf]) -> (Sources, Vec<(String, SourceError)>) {
        let mut sources = Vec::new();
        let mut errors = Vec::new();
        for p in paths {
            match Source::open(p) {
                Ok(s) => sources.push(s),
                Err(e) => errors.push((p.display().to_string(), e)),
            }
        }
        (Sources(sources), errors)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Source> {
        self.0.iter()
    }

    /// How the sources relate to instance `name`, whose `owner` file says `owner`.
    pub fn claim(&self, name: &str, owner: Option<&str>) -> Claim<'_> {
        if let Some((source, file)) = self.0.iter().find_map(|s| s.file_for(name).map(|f| (s, f))) {
            return Claim::Declared { source, file };
        }
        match self
            .0
            .iter()
            .find(|s| s.prunes() && owner == Some(s.id.as_str()))
        {
            Some(source) => Claim::Orphan { source },
            None => Claim::Unmanaged,
        }
    }

    /// Whether any of the sources owns an instance with this `owner` file.
    pub fn owns(&self, owner: Option<&str>) -> bool {
        self.0.iter().any(|s| owner == Some(s.id.as_str()))
    }

    /// Instances of `LIMA_HOME` owned by one of the sources.
    pub fn owned_instances(&self, home: &Home) -> Vec<String> {
        store::instance_names(home)
            .unwrap_or_default()
            .into_iter()
            .filter(|n| self.owns(store::instance::read_owner(&home.instance_dir(n)).as_deref()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, "cpus: 1\n").unwrap();
        p
    }

    #[test]
    fn names_parts_and_claims() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "a.yaml");
        write(d.path(), "b.yml");
        write(d.path(), "_common.yaml");
        write(d.path(), ".hidden.yaml");
        write(d.path(), "notes.txt");
        let src = Source::open(d.path()).unwrap();
        assert!(src.prunes());
        assert_eq!(src.names(), ["a", "b"]);
        assert!(src.concerns(&src.path.join("_common.yaml")));
        assert!(is_shared_part(&src.path.join("_common.yaml")));
        assert_eq!(instance_name(&src.path.join("_common.yaml")), None);

        let sources = Sources(vec![src.clone()]);
        assert!(matches!(
            sources.claim("a", None),
            Claim::Declared { file, .. } if file.ends_with("a.yaml")
        ));
        assert!(matches!(
            sources.claim("gone", Some(src.id.as_str())),
            Claim::Orphan { .. }
        ));
        assert!(matches!(sources.claim("gone", None), Claim::Unmanaged));
        assert!(matches!(
            sources.claim("gone", Some("/elsewhere")),
            Claim::Unmanaged
        ));

        assert_eq!(src.check_owner("a", None), Ok(()));
        assert_eq!(src.check_owner("a", Some(src.id.as_str())), Ok(()));
        assert!(matches!(
            src.check_owner("a", Some("/elsewhere")),
            Err(EntryError::Foreign { .. })
        ));
    }

    #[test]
    fn a_file_source_never_prunes() {
        let d = tempfile::tempdir().unwrap();
        let f = write(d.path(), "one.yaml");
        let src = Source::open(&f).unwrap();
        assert!(!src.prunes());
        assert_eq!(src.names(), ["one"]);
        assert!(src.concerns(&f));
        assert!(!src.concerns(&d.path().canonicalize().unwrap().join("other.yaml")));
        let sources = Sources(vec![src.clone()]);
        assert!(matches!(
            sources.claim("other", Some(src.id.as_str())),
            Claim::Unmanaged
        ));
        assert!(matches!(
            Source::open(&d.path().join("missing.yaml")),
            Err(SourceError::Unreadable { .. })
        ));
    }
}
