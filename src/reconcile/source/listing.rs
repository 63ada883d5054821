//! Reading a source directory so that "cannot read" is never taken for
//! "gone" (which `--prune` would answer by deleting an instance and its
//! disks): every entry named like an instance file is listed whatever it is,
//! [`examine`] says why one cannot be read, and any error while listing
//! marks the listing incomplete, from which nothing is pruned.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::instance_name;

/// The instance files of a source, as far as they could be listed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    /// Every entry whose name declares an instance, readable or not, sorted.
    pub files: Vec<PathBuf>,
    /// What went wrong while listing: entries may be missing from `files`.
    pub errors: Vec<String>,
}

impl Listing {
    /// Keeps the entries named like instance files; an error of the
    /// directory iteration is kept, never skipped.
    pub fn collect(entries: impl IntoIterator<Item = std::io::Result<PathBuf>>) -> Listing {
        let mut l = Listing::default();
        for e in entries {
            match e {
                Ok(p) if instance_name(&p).is_some() => l.files.push(p),
                Ok(_) => {}
                Err(e) => l.errors.push(describe(&e)),
            }
        }
        l.files.sort();
        l
    }

    /// Whether every entry was listed (only then may absence mean "gone").
    pub fn is_complete(&self) -> bool {
        self.errors.is_empty()
    }

    /// Whether an entry declares instance `name`.
    pub fn declares(&self, name: &str) -> bool {
        self.files
            .iter()
            .any(|f| instance_name(f).as_deref() == Some(name))
    }
}

/// An I/O error in words, the common ones spelled as a user would.
pub fn describe(e: &std::io::Error) -> String {
    match e.kind() {
        ErrorKind::PermissionDenied => "permission denied".into(),
        _ if e.raw_os_error() == Some(nix::errno::Errno::ELOOP as i32) => {
            "too many levels of symbolic links (a symlink loop)".into()
        }
        _ => e.to_string(),
    }
}

/// Whether an instance file that exists can be read, and if not, why: a
/// dangling symlink, a symlink loop, not a regular file, permission denied.
/// Never opens anything but a regular file (opening a FIFO blocks).
pub fn examine(file: &Path) -> Result<(), String> {
    let link = std::fs::symlink_metadata(file).map_err(|e| describe(&e))?;
    let meta = match std::fs::metadata(file) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound && link.file_type().is_symlink() => {
            let to = std::fs::read_link(file)
                .map(|t| format!(" (to {})", t.display()))
                .unwrap_or_default();
            return Err(format!("dangling symlink{to}"));
        }
        Err(e) => return Err(describe(&e)),
    };
    if let Some(kind) = crate::spec::load::irregular_kind(meta.file_type()) {
        return Err(format!("it is {kind}, not a regular file"));
    }
    std::fs::File::open(file).map_err(|e| describe(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_iteration_error_makes_the_listing_incomplete() {
        let l = Listing::collect([
            Ok(PathBuf::from("/src/b.yaml")),
            Ok(PathBuf::from("/src/a.yml")),
            Ok(PathBuf::from("/src/_part.yaml")),
            Ok(PathBuf::from("/src/notes.txt")),
        ]);
        assert_eq!(l.files, [Path::new("/src/a.yml"), Path::new("/src/b.yaml")]);
        assert!(l.is_complete() && l.declares("a") && !l.declares("part"));

        let l = Listing::collect([
            Ok(PathBuf::from("/src/a.yaml")),
            Err(std::io::Error::from(ErrorKind::PermissionDenied)),
        ]);
        assert!(!l.is_complete(), "an error while listing is never skipped");
        assert_eq!(l.errors, ["permission denied"]);
    }

    #[test]
    fn examine_says_what_is_wrong() {
        let d = tempfile::tempdir().unwrap();
        let p = |n: &str| d.path().join(n);
        std::fs::write(p("ok.yaml"), "cpus: 1\n").unwrap();
        assert_eq!(examine(&p("ok.yaml")), Ok(()));
        std::os::unix::fs::symlink(p("ok.yaml"), p("link.yaml")).unwrap();
        assert_eq!(examine(&p("link.yaml")), Ok(()), "a good symlink is fine");

        std::os::unix::fs::symlink("/nonexistent", p("dangling.yaml")).unwrap();
        assert_eq!(
            examine(&p("dangling.yaml")),
            Err("dangling symlink (to /nonexistent)".into())
        );
        std::os::unix::fs::symlink(p("loop.yaml"), p("loop.yaml")).unwrap();
        let err = examine(&p("loop.yaml")).unwrap_err();
        assert!(err.contains("symlink loop"), "{err}");
        std::fs::create_dir(p("dir.yaml")).unwrap();
        assert_eq!(
            examine(&p("dir.yaml")),
            Err("it is a directory, not a regular file".into())
        );
        nix::unistd::mkfifo(&p("fifo.yaml"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert_eq!(
            examine(&p("fifo.yaml")),
            Err("it is a FIFO (named pipe), not a regular file".into()),
            "refused without opening (which would block)"
        );
        assert_eq!(
            describe(&std::io::Error::from(ErrorKind::PermissionDenied)),
            "permission denied"
        );
    }
}
