//! The download cache on disk (seed: "Download cache"; reference §7.1):
//! `<root>/download/by-url-sha256/<sha256 of the URL>/{url,data,time,type,<algo>.digest}`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::digest::{Algorithm, sha256_hex};
use crate::store::paths::cache_files as names;

/// A cache root (`paths::cache_dir()` normally).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cache {
    pub root: PathBuf,
}

impl Cache {
    pub fn new(root: impl Into<PathBuf>) -> Cache {
        Cache { root: root.into() }
    }

    /// `<root>/download/by-url-sha256`.
    pub fn entries_dir(&self) -> PathBuf {
        self.root
            .join(names::DOWNLOAD_DIR)
            .join(names::BY_URL_SHA256)
    }

    /// The entry for `url` (which may not exist yet).
    pub fn entry(&self, url: &str) -> Entry {
        Entry {
            dir: self.entries_dir().join(sha256_hex(url)),
        }
    }

    /// Every entry directory, sorted.
    pub fn entries(&self) -> io::Result<Vec<Entry>> {
        let mut out = Vec::new();
        match fs::read_dir(self.entries_dir()) {
            Ok(rd) => {
                for e in rd {
                    let e = e?;
                    if e.file_type()?.is_dir() {
                        out.push(Entry { dir: e.path() });
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        out.sort_by(|a, b| a.dir.cmp(&b.dir));
        Ok(out)
    }
}

/// One cache entry directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub dir: PathBuf,
}

/// Holds the entry's exclusive `flock` (on the directory itself, as Lima's
/// lockutil does, so this interoperates with Lima) until dropped.
pub struct EntryLock {
    _file: File,
}

impl Entry {
    pub fn key(&self) -> String {
        self.dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
    pub fn url_file(&self) -> PathBuf {
        self.dir.join(names::URL)
    }
    pub fn data(&self) -> PathBuf {
        self.dir.join(names::DATA)
    }
    pub fn time_file(&self) -> PathBuf {
        self.dir.join(names::TIME)
    }
    pub fn type_file(&self) -> PathBuf {
        self.dir.join(names::TYPE)
    }
    pub fn etag_file(&self) -> PathBuf {
        self.dir.join(names::ETAG)
    }
    pub fn part(&self) -> PathBuf {
        self.dir.join(names::DATA_PART)
    }
    pub fn part_info(&self) -> PathBuf {
        self.dir.join(names::DATA_PART_INFO)
    }
    pub fn digest_file(&self, algo: Algorithm) -> PathBuf {
        self.dir.join(algo.digest_file_name())
    }

    /// Creates the directory (0700, parents too).
    pub fn create(&self) -> io::Result<()> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
    }

    /// Blocks until this process holds the entry exclusively. Says so when
    /// another process holds it (a concurrent download of the same URL).
    pub fn lock(&self, what: &str) -> io::Result<EntryLock> {
        self.create()?;
        let f = File::open(&self.dir)?;
        match f.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                crate::info!("Waiting for another download of {what} to finish");
                f.lock()?;
            }
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
        Ok(EntryLock { _file: f })
    }

    /// The lock if nobody holds it, else `None`.
    pub fn try_lock(&self) -> io::Result<Option<EntryLock>> {
        let f = File::open(&self.dir)?;
        match f.try_lock() {
            Ok(()) => Ok(Some(EntryLock { _file: f })),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(e),
        }
    }

    /// The recorded URL, if any.
    pub fn url(&self) -> Option<String> {
        fs::read_to_string(self.url_file()).ok()
    }

    /// A small metadata file's content; `None` when missing.
    pub fn read_meta(&self, path: &Path) -> Option<String> {
        fs::read_to_string(path).ok()
    }

    /// Total size of the files in the entry.
    pub fn size(&self) -> u64 {
        dir_size(&self.dir)
    }

    /// Every `<algo>.digest` file.
    pub fn digest_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        if let Ok(rd) = fs::read_dir(&self.dir) {
            for e in rd.flatten() {
                if e.file_name()
                    .to_string_lossy()
                    .ends_with(names::DIGEST_SUFFIX)
                {
                    out.push(e.path());
                }
            }
        }
        out
    }

    /// Partial and temporary download files (ours and Lima's).
    pub fn stale_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        if let Ok(rd) = fs::read_dir(&self.dir) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n == names::DATA_PART
                    || n == names::DATA_PART_INFO
                    || n.starts_with(names::DATA_TMP_PREFIX)
                    || n.contains(TMP_INFIX)
                {
                    out.push(e.path());
                }
            }
        }
        out
    }
}

/// Size of a file, or of everything under a directory (not following links).
pub fn dir_size(p: &Path) -> u64 {
    let Ok(m) = fs::symlink_metadata(p) else {
        return 0;
    };
    if !m.is_dir() {
        return m.len();
    }
    fs::read_dir(p)
        .map(|rd| rd.flatten().map(|e| dir_size(&e.path())).sum())
        .unwrap_or(0)
}

const TMP_INFIX: &str = ".tmp.";
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A unique temporary name beside `path`: `<name>.tmp.<pid>.<n>` (hidden when `hidden`).
pub fn temp_name(path: &Path, hidden: bool) -> PathBuf {
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dot = if hidden { "." } else { "" };
    path.with_file_name(format!("{dot}{name}{TMP_INFIX}{}.{n}", std::process::id()))
}

/// Writes a small file atomically (temp + rename), mode 0644.
pub fn write_small(path: &Path, contents: &[u8]) -> io::Result<()> {
    let tmp = temp_name(path, false);
    let r = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if r.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    r
}

/// Removes a file; a missing file is fine.
pub fn remove_if_exists(p: &Path) -> io::Result<()> {
    match fs::remove_file(p) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// fsyncs a directory (after a rename into it).
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_seed() {
        let c = Cache::new("/c/lima");
        let url = "https://example.com/a.img";
        let e = c.entry(url);
        assert_eq!(
            e.dir,
            PathBuf::from(format!(
                "/c/lima/download/by-url-sha256/{}",
                sha256_hex(url)
            ))
        );
        assert_eq!(e.data(), e.dir.join("data"));
        assert_eq!(
            e.digest_file(Algorithm::Sha512),
            e.dir.join("sha512.digest")
        );
    }

    #[test]
    fn lock_is_exclusive_and_dir_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let c = Cache::new(d.path());
        let e = c.entry("http://x/y");
        let l = e.lock("y").unwrap();
        assert_eq!(
            fs::metadata(&e.dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert!(e.try_lock().unwrap().is_none());
        drop(l);
        assert!(e.try_lock().unwrap().is_some());
        assert_eq!(c.entries().unwrap(), vec![e]);
    }

    #[test]
    fn small_files_are_written_atomically() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("url");
        write_small(&p, b"http://x").unwrap();
        write_small(&p, b"http://y").unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "http://y");
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }
}
