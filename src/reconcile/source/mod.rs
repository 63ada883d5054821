//! Sources of desired state, and their ownership and prune rules — one
//! place for `apply`, `diff` and the watch daemon.
//!
//! A source is a `lima.yaml` file, a directory of them (GitOps style), or
//! a directory in one commit of a Git repository ([`git`]: fetched, then
//! read like a directory from an immutable snapshot). In a
//! directory every `*.yaml`/`*.yml` is one instance named after the file;
//! files starting with `.` or `_` are skipped (`_` for shared parts that
//! instance files use through `base:`). A source is identified by its
//! canonical path (a Git source by `git::URL//SUBDIR`), recorded in each
//! instance it creates (`<inst>/owner`). Whatever the kind, a consumer gets
//! one consistent set of files ([`Source::path`]) and, for Git, the commit
//! they come from ([`Source::revision`]).
//!
//! Ownership: a declared instance owned by another source is left alone; an
//! unowned one is adopted. Pruning: only a directory source prunes, only the
//! instances it owns, and only when it no longer declares them. A file that
//! exists but cannot be read still declares its instance (with an error),
//! and a directory that cannot be listed completely prunes nothing.

pub mod git;
mod listing;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use listing::{Listing, examine};

use super::plan::{Desired, DesiredConfig, PowerState};
use crate::spec::yaml::quote_name;
use crate::spec::{LoadEnv, resolve};
use crate::store::{self, Home};

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read {}: {message}", quote_name(path))]
    Unreadable { path: String, message: String },
    #[error("cannot read directory {}: {message}", quote_name(path))]
    Listing { path: String, message: String },
    /// Some entries could not be listed: nothing is pruned from it this time.
    #[error(
        "cannot list directory {} completely ({}); nothing is pruned from it until it can be",
        quote_name(path),
        errors.join("; ")
    )]
    Incomplete { path: String, errors: Vec<String> },
    /// A Git source that cannot be fetched, or whose ref or subdirectory is missing.
    #[error(transparent)]
    Git(#[from] git::GitError),
}

/// What keeps a declared instance from being applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// The file does not load or validate.
    #[error("{0}")]
    Load(String),
    /// The file exists but cannot be read: its instance is kept as it is.
    #[error(
        "cannot read {}: {problem}; instance {} is left alone (never pruned) until the file is fixed or removed",
        quote_name(&file.display().to_string()),
        quote_name(name)
    )]
    Unreadable {
        file: PathBuf,
        name: String,
        problem: String,
    },
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
    /// A directory of one commit (read like `Dir`, never watched: immutable).
    Git,
}

/// A file or directory of desired instances.
#[derive(Clone, Debug)]
pub struct Source {
    /// The canonical path, or `git::URL//SUBDIR`; identifies the source in
    /// instances' `owner` files.
    pub id: String,
    /// The file or directory read (for Git, in the commit's snapshot).
    pub path: PathBuf,
    pub kind: SourceKind,
    /// For Git: the commit `path` holds.
    pub revision: Option<String>,
    /// For Git: where it comes from.
    pub git: Option<git::Locator>,
}

/// How a source relates to an instance of `LIMA_HOME`.
#[derive(Debug)]
pub enum Claim<'a> {
    /// A source declares it in `file`.
    Declared { source: &'a Source, file: PathBuf },
    /// A directory source owns it but no longer declares it: `--prune`
    /// deletes it.
    Orphan { source: &'a Source },
    /// The directory source that owns it cannot be read now: whether it
    /// still declares it is unknown, so it is not pruned.
    Unlisted {
        source: &'a Source,
        error: SourceError,
    },
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
    /// Opens a file, a directory or (`git::…`) a Git source, which is
    /// fetched into `home`'s cache.
    pub fn open(home: &Home, path: &Path) -> Result<Source, SourceError> {
        if let Some(arg) = path.to_str().filter(|a| git::is_git(a)) {
            let loc = git::Locator::parse(arg)?;
            return Source::fetch(home, loc);
        }
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
            revision: None,
            git: None,
        })
    }

    fn fetch(home: &Home, loc: git::Locator) -> Result<Source, SourceError> {
        let snap = git::fetch(home, &loc, git::GIT_TIMEOUT)?;
        Ok(Source {
            id: loc.id(),
            path: snap.dir,
            kind: SourceKind::Git,
            revision: Some(snap.commit),
            git: Some(loc),
        })
    }

    /// A Git source fetched again: `Some` with the new commit's snapshot
    /// when it moved (or its snapshot is gone), `None` when it did not or
    /// the source is no Git source. An error leaves this source as it is.
    pub fn refresh(&self, home: &Home) -> Result<Option<Source>, SourceError> {
        let Some(loc) = &self.git else {
            return Ok(None);
        };
        let new = Source::fetch(home, loc.clone())?;
        let moved = new.revision != self.revision || !self.path.is_dir();
        Ok(moved.then_some(new))
    }

    /// The source as shown to users: for Git, with its ref and commit.
    pub fn describe(&self) -> String {
        match (&self.git, &self.revision) {
            (Some(loc), Some(rev)) => format!("{} at commit {rev}", loc.display()),
            _ => self.id.clone(),
        }
    }

    /// Only a directory prunes: a single file cannot tell "gone" from "elsewhere".
    pub fn prunes(&self) -> bool {
        self.kind != SourceKind::File
    }

    /// The directory whose entries concern this source.
    pub fn dir(&self) -> &Path {
        match self.kind {
            SourceKind::Dir | SourceKind::Git => &self.path,
            SourceKind::File => self.path.parent().unwrap_or(Path::new("/")),
        }
    }

    /// Whether a changed path concerns this source (a file of it, or a
    /// shared part it may use). A Git snapshot never changes.
    pub fn concerns(&self, p: &Path) -> bool {
        p.parent() == Some(self.dir())
            && match self.kind {
                SourceKind::Dir => true,
                SourceKind::File => p == self.path || is_shared_part(p),
                SourceKind::Git => false,
            }
    }

    fn listing_error(&self, e: &std::io::Error) -> SourceError {
        SourceError::Listing {
            path: self.id.clone(),
            message: listing::describe(e),
        }
    }

    /// Every entry declaring an instance now (readable or not), sorted by
    /// path, and whether the listing is complete.
    pub fn files(&self) -> Result<Listing, SourceError> {
        if self.kind == SourceKind::File {
            return Ok(Listing {
                files: vec![self.path.clone()],
                errors: Vec::new(),
            });
        }
        let dir = std::fs::read_dir(&self.path).map_err(|e| self.listing_error(&e))?;
        Ok(Listing::collect(dir.map(|e| e.map(|e| e.path()))))
    }

    /// The entry declaring `name` now: `Ok(None)` only when there surely is
    /// none (the directory is there and has no such entry). An entry that
    /// exists is returned even when it cannot be read.
    pub fn file_for(&self, name: &str) -> Result<Option<PathBuf>, SourceError> {
        let present = |p: &Path| match std::fs::symlink_metadata(p) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.listing_error(&e)),
        };
        match self.kind {
            SourceKind::File => {
                if instance_name(&self.path).as_deref() != Some(name) {
                    return Ok(None);
                }
                Ok(present(&self.path)?.then(|| self.path.clone()))
            }
            SourceKind::Dir | SourceKind::Git => {
                // A directory that vanished (unmounted, renamed, a checkout
                // in progress) says nothing about its files.
                match std::fs::metadata(&self.path) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        return Err(SourceError::Listing {
                            path: self.id.clone(),
                            message: "not a directory any more".into(),
                        });
                    }
                    Err(e) => return Err(self.listing_error(&e)),
                }
                for ext in ["yaml", "yml"] {
                    let p = self.path.join(format!("{name}.{ext}"));
                    if present(&p)? {
                        return Ok(Some(p));
                    }
                }
                Ok(None)
            }
        }
    }

    /// Instance names declared now (best effort: for enqueueing).
    pub fn names(&self) -> Vec<String> {
        self.files()
            .unwrap_or_default()
            .files
            .iter()
            .filter_map(|f| instance_name(f))
            .collect()
    }

    /// Reads one instance file of this source, as instance `name` of `home`.
    pub fn load(&self, home: &Home, file: &Path, name: &str, env: &LoadEnv) -> Entry {
        let (desired, warnings) = match examine(file) {
            Ok(()) => {
                let (d, w) = load_file(home, file, name, env, &self.id);
                let revision = self.revision.clone();
                (d.map(|d| Desired { revision, ..d }), w)
            }
            Err(problem) => (
                Err(EntryError::Unreadable {
                    file: file.to_path_buf(),
                    name: name.to_string(),
                    problem,
                }),
                Vec::new(),
            ),
        };
        Entry {
            name: name.to_string(),
            file: file.to_path_buf(),
            desired,
            warnings,
        }
    }

    /// Reads every file. Errors of single files are kept on their entries;
    /// only an unreadable directory is an error of the whole source.
    pub fn entries(&self, home: &Home, env: &LoadEnv) -> Result<Entries, SourceError> {
        let listing = self.files()?;
        let mut entries: Vec<Entry> = listing
            .files
            .iter()
            .map(|f| {
                let stem = instance_name(f)
                    .unwrap_or_else(|| f.file_name().unwrap_or_default().to_string_lossy().into());
                self.load(home, f, &stem, env)
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
        let incomplete = (!listing.is_complete()).then(|| SourceError::Incomplete {
            path: self.id.clone(),
            errors: listing.errors,
        });
        Ok(Entries {
            entries,
            incomplete,
        })
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

/// Every file of a source, read.
#[derive(Debug)]
pub struct Entries {
    pub entries: Vec<Entry>,
    /// Set when some entries could not be listed: the source prunes nothing.
    pub incomplete: Option<SourceError>,
}

/// Reads a desired-state file as instance `name` of `home`, owned by
/// `owner`. The name gets exactly the checks of `create`.
pub fn load_file(
    home: &Home,
    file: &Path,
    name: &str,
    env: &LoadEnv,
    owner: &str,
) -> (Result<Desired, EntryError>, Vec<String>) {
    let mut warnings = Vec::new();
    if let Err(e) = store::check_instance_name(home, name) {
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
                revision: None,
            }
        });
    (result, warnings)
}

/// The sources of one `apply`/`diff`/daemon.
#[derive(Clone, Debug, Default)]
pub struct Sources(pub Vec<Source>);

impl Sources {
    /// Opens every path (fetching Git sources into `home`'s cache); the
    /// ones that cannot be read are returned as errors.
    pub fn open(home: &Home, paths: &[PathBuf]) -> (Sources, Vec<(String, SourceError)>) {
        let mut sources = Vec::new();
        let mut errors = Vec::new();
        for p in paths {
            match Source::open(home, p) {
                Ok(s) => sources.push(s),
                Err(e) => errors.push((p.display().to_string(), e)),
            }
        }
        (Sources(sources), errors)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Source> {
        self.0.iter()
    }

    /// How the sources relate to instance `name`, whose `owner` file says
    /// `owner`. An entry that exists declares it even when it cannot be
    /// read; an owning source that cannot be read never makes it an orphan.
    pub fn claim(&self, name: &str, owner: Option<&str>) -> Claim<'_> {
        let owning = |s: &Source| s.prunes() && owner == Some(s.id.as_str());
        let mut unlisted = None;
        for source in &self.0 {
            match source.file_for(name) {
                Ok(Some(file)) => return Claim::Declared { source, file },
                Ok(None) => {}
                Err(error) if owning(source) => unlisted = Some(Claim::Unlisted { source, error }),
                Err(_) => {}
            }
        }
        if let Some(u) = unlisted {
            return u;
        }
        match self.0.iter().find(|s| owning(s)) {
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
        let src = Source::open(&Home::new("/nonexistent"), d.path()).unwrap();
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
        let src = Source::open(&Home::new("/nonexistent"), &f).unwrap();
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
            Source::open(&Home::new("/nonexistent"), &d.path().join("missing.yaml")),
            Err(SourceError::Unreadable { .. })
        ));
    }

    #[test]
    fn an_entry_that_cannot_be_read_declares_its_instance_with_an_error() {
        let d = tempfile::tempdir().unwrap();
        let home = Home::new(d.path().join("home"));
        let env = LoadEnv::new(&home.root);
        let dir = d.path().join("src");
        std::fs::create_dir(&dir).unwrap();
        std::os::unix::fs::symlink("/nonexistent", dir.join("c.yaml")).unwrap();
        std::fs::create_dir(dir.join("d.yaml")).unwrap();
        let src = Source::open(&Home::new("/nonexistent"), &dir).unwrap();
        assert_eq!(src.names(), ["c", "d"]);
        assert_eq!(src.file_for("c"), Ok(Some(src.path.join("c.yaml"))));
        assert_eq!(src.file_for("gone"), Ok(None));

        let sources = Sources(vec![src.clone()]);
        for n in ["c", "d"] {
            assert!(
                matches!(
                    sources.claim(n, Some(src.id.as_str())),
                    Claim::Declared { .. }
                ),
                "{n} is declared, not an orphan"
            );
        }
        let read = src.entries(&home, &env).unwrap();
        assert!(read.incomplete.is_none());
        let errors: Vec<String> = read
            .entries
            .iter()
            .map(|e| e.desired.as_ref().unwrap_err().to_string())
            .collect();
        assert!(
            errors[0].contains("c.yaml`: dangling symlink (to /nonexistent)")
                && errors[0].contains("instance `c` is left alone"),
            "{errors:?}"
        );
        assert!(
            errors[1].contains("d.yaml`: it is a directory, not a regular file"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_directory_that_cannot_be_read_makes_no_orphans() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("src");
        std::fs::create_dir(&dir).unwrap();
        let src = Source::open(&Home::new("/nonexistent"), &dir).unwrap();
        let sources = Sources(vec![src.clone()]);
        assert!(matches!(
            sources.claim("a", Some(src.id.as_str())),
            Claim::Orphan { .. }
        ));
        // Gone (unmounted, renamed), or replaced by a file.
        std::fs::remove_dir(&dir).unwrap();
        assert!(matches!(
            src.file_for("a"),
            Err(SourceError::Listing { .. })
        ));
        assert!(src.files().is_err());
        assert!(matches!(
            sources.claim("a", Some(src.id.as_str())),
            Claim::Unlisted { .. }
        ));
        std::fs::write(&dir, "").unwrap();
        assert!(matches!(
            sources.claim("a", Some(src.id.as_str())),
            Claim::Unlisted { .. }
        ));
        // Another source's trouble is not this instance's.
        assert!(matches!(
            sources.claim("a", Some("/elsewhere")),
            Claim::Unmanaged
        ));
    }

    #[test]
    fn a_file_name_gets_the_name_checks_of_create() {
        let d = tempfile::tempdir().unwrap();
        let home = Home::new(d.path().join("home"));
        let env = LoadEnv::new(&home.root);
        // Valid as a name (Lima allows 76 characters), too long for sockets here.
        let long = "a".repeat(70);
        let f = write(d.path(), &format!("{long}.yaml"));
        let (desired, _) = load_file(&home, &f, &long, &env, "/src");
        let err = desired.unwrap_err().to_string();
        assert!(
            err.contains(&format!("{long}.yaml"))
                && err.contains("108-byte unix socket path limit"),
            "{err}"
        );
    }
}
