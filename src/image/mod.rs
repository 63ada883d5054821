//! Images over HTTP: the seed's download cache, digests, decompression and
//! arch selection (reference §7).
//!
//! * [`download`] puts one location (`http(s)://`, `file:///abs`, `/abs`,
//!   `~/…`) at a destination path, through the cache for remote ones;
//! * [`cache_only`] makes sure a remote location is cached and returns the
//!   cached file ([`containerd_archive`] for `containerd.archives`);
//! * [`prepare`] picks the image for the instance's arch, falling back
//!   across `images`, and fetches its kernel and initrd ([`prepare_images`]
//!   does the same for the wire form of `images`);
//! * [`prune`] empties the cache, or keeps what templates and instances use.
//!
//! Remote data is cached exactly as downloaded (still compressed) under
//! `<cache>/download/by-url-sha256/<sha256 of URL>/`; every destination is
//! written under a temporary name and renamed, so an interruption never leaves
//! a half file under a final name. Concurrent callers asking for one URL wait
//! on the entry's lock and cause one transfer. Cached data of a location with
//! a digest is verified as it is copied out (the entry's digest file records
//! what was downloaded, not what the file holds now): a corrupted entry is
//! downloaded again, with a warning, and never becomes a base disk.

pub mod cache;
pub mod containerd;
pub mod decompress;
pub mod digest;
pub mod fetch;
pub mod progress;
pub mod prune;
pub mod select;

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use cache::Cache;
pub use containerd::{ArchiveError, containerd_archive, containerd_enabled};
pub use decompress::Compression;
pub use digest::{Algorithm, Digest};
pub use fetch::CacheResult;
pub use progress::ProgressMode;
pub use prune::{PruneReport, prune_all, prune_unreferenced, referenced_locations};
pub use select::{PreparedImage, prepare, prepare_images};

use crate::spec::yaml::quote_name;

/// Errors of the image layer. Each names the URL or path and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Neither `http(s)://` nor a local absolute path.
    #[error(
        "unsupported location {}: use an http:// or https:// URL, file:///absolute/path, an absolute path or ~/path",
        quote_name(location)
    )]
    UnsupportedLocation { location: String },
    /// The `digest:` field is not an OCI digest Lima knows.
    #[error(
        "invalid digest {} for {}: expected `sha256:<64 hex digits>` (or sha384/sha512), lower case",
        quote_name(digest),
        quote_name(location)
    )]
    InvalidDigest { location: String, digest: String },
    /// The data's digest differs from the expected one; nothing was cached.
    #[error(
        "digest mismatch for {}: expected digest `{expected}`, got `{actual}` (the file changed upstream or the transfer was corrupted; update `digest:` or use another image)",
        quote_name(location)
    )]
    DigestMismatch {
        location: String,
        expected: String,
        actual: String,
    },
    /// The server answered with an error status.
    #[error(
        "failed to download {}: HTTP status {status} (check that the URL still exists; distributions remove old images)",
        quote_name(url)
    )]
    HttpStatus { url: String, status: u16 },
    /// Connection or transfer failure.
    #[error(
        "failed to download {}: {message} (check the network, the URL and HTTP_PROXY/HTTPS_PROXY/NO_PROXY)",
        quote_name(url)
    )]
    Transfer { url: String, message: String },
    /// A local file operation failed.
    #[error("{op} {}: {err}", quote_name(&path.display().to_string()))]
    Io {
        op: &'static str,
        path: PathBuf,
        err: std::io::Error,
    },
    /// The data is not valid in the compression format it was taken for.
    #[error(
        "failed to decompress {} as {format}: {err} (the file is corrupt or not {format}; check the location and its digest)",
        quote_name(location)
    )]
    Decompress {
        location: String,
        format: &'static str,
        err: std::io::Error,
    },
    /// `images` is empty.
    #[error(
        "no images are configured (did you set --image-variant or --arch-variant to a value not present in the template?)"
    )]
    NoImages,
    /// No entry of `images` is for the instance's arch.
    #[error(
        "no image for arch `{arch}` in `images` (the template has: {available}); set `arch:` to one of those or add an image for `{arch}`"
    )]
    NoImageForArch { arch: String, available: String },
    /// Every candidate failed; each failure is listed.
    #[error("failed to download the image for arch `{arch}`; tried:{}", failures.iter().map(|f| format!("\n  - {}: {}", f.location, f.error)).collect::<String>())]
    AllFailed {
        arch: String,
        failures: Vec<ImageFailure>,
    },
    /// An instance directory has no lima.yaml (prune refuses to guess).
    #[error(
        "cannot safely prune while instance `{name}` is being used: {} has no lima.yaml (finish or delete that instance first)",
        quote_name(&dir.display().to_string())
    )]
    InstanceInUse { name: String, dir: PathBuf },
}

/// One failed candidate of [`prepare_images`].
#[derive(Debug)]
pub struct ImageFailure {
    pub index: usize,
    pub location: String,
    pub error: ImageError,
}

pub(crate) fn io_err(op: &'static str, path: &Path, err: std::io::Error) -> ImageError {
    ImageError::Io {
        op,
        path: path.to_path_buf(),
        err,
    }
}

/// How to fetch.
#[derive(Clone, Debug)]
pub struct FetchOptions {
    /// The cache root; `None` downloads remote files directly (no cache).
    pub cache_dir: Option<PathBuf>,
    pub progress: ProgressMode,
    /// How many times an interrupted transfer is resumed within one call.
    pub retries: u32,
    pub retry_delay: Duration,
    pub connect_timeout: Duration,
    /// Longest wait for the response or for any read of its body.
    pub read_timeout: Duration,
}

impl Default for FetchOptions {
    /// The user's cache (`paths::cache_dir()`), progress on stderr, 3 resumes.
    fn default() -> Self {
        FetchOptions {
            cache_dir: Some(crate::store::paths::cache_dir()),
            progress: ProgressMode::Auto,
            retries: 3,
            retry_delay: Duration::from_secs(1),
            connect_timeout: fetch::CONNECT_TIMEOUT,
            read_timeout: fetch::READ_TIMEOUT,
        }
    }
}

/// One thing to fetch.
#[derive(Clone, Debug, Default)]
pub struct Request<'a> {
    pub location: &'a str,
    /// OCI digest (`sha256:…`), verified when given.
    pub digest: Option<&'a str>,
    /// Decompress `.gz`/`.bz2`/`.xz`/`.zst` (images, kernels; not initrds).
    pub decompress: bool,
    /// For messages: "the image", "the kernel", …
    pub description: &'a str,
}

/// What [`download`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// The destination existed; nothing was done (no digest check).
    Skipped,
    /// Fetched over the network (or copied from a local file).
    Downloaded,
    /// Served from the cache.
    UsedCache,
}

/// Where a location points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    Remote(String),
    Local(PathBuf),
}

impl Location {
    /// `http(s)://` → remote; `file:///abs`, `/abs`, `~/…` → local.
    pub fn parse(location: &str) -> Result<Location, ImageError> {
        let unsupported = || ImageError::UnsupportedLocation {
            location: location.to_string(),
        };
        let lower = location.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            return Ok(Location::Remote(location.to_string()));
        }
        let path = if let Some(p) = location.strip_prefix("file://") {
            PathBuf::from(p)
        } else if location.contains("://") {
            return Err(unsupported());
        } else if location == "~" || location.starts_with("~/") {
            let home = std::env::var_os("HOME").ok_or_else(unsupported)?;
            PathBuf::from(home).join(location.trim_start_matches('~').trim_start_matches('/'))
        } else {
            PathBuf::from(location)
        };
        if path.is_absolute() {
            Ok(Location::Local(path))
        } else {
            Err(unsupported())
        }
    }
}

fn parse_digest(location: &str, digest: Option<&str>) -> Result<Option<Digest>, ImageError> {
    match digest.filter(|d| !d.is_empty()) {
        None => Ok(None),
        Some(d) => Digest::parse(d).map(Some).ok_or(ImageError::InvalidDigest {
            location: location.to_string(),
            digest: d.to_string(),
        }),
    }
}

/// A file written under a temporary name beside its destination; removed
/// when dropped unless [`Staged::persist`]ed.
pub(crate) struct Staged {
    path: PathBuf,
    done: bool,
}

impl Staged {
    fn new(dest: &Path) -> Staged {
        Staged {
            path: cache::temp_name(dest, true),
            done: false,
        }
    }

    /// Renames into place and syncs the directory.
    pub(crate) fn persist(mut self, dest: &Path) -> Result<(), ImageError> {
        fs::rename(&self.path, dest).map_err(|e| io_err("cannot rename into", dest, e))?;
        self.done = true;
        if let Some(parent) = dest.parent() {
            cache::sync_dir(parent);
        }
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Copies (decompressing if asked) `src` to `staged`, verifying `verify`
/// against the bytes of `src` when given.
fn install(
    src: &Path,
    location: &str,
    staged: &Staged,
    decompress: bool,
    verify: Option<&Digest>,
    what: &str,
) -> Result<(), ImageError> {
    use decompress::{CopyError, SparseWriter};
    let mut f = File::open(src).map_err(|e| io_err("cannot open", src, e))?;
    let head = decompress::peek_head(&mut f).map_err(|e| io_err("cannot read", src, e))?;
    let comp = if decompress {
        Compression::detect(location, &head)
    } else {
        None
    };
    if comp.is_none() && verify.is_none() {
        drop(f);
        fs::copy(src, &staged.path).map_err(|e| io_err("cannot copy to", &staged.path, e))?;
        let _ = fs::set_permissions(&staged.path, fs::Permissions::from_mode(0o600));
        File::open(&staged.path)
            .and_then(|f| f.sync_all())
            .map_err(|e| io_err("cannot sync", &staged.path, e))?;
        return Ok(());
    }
    let out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&staged.path)
        .map_err(|e| io_err("cannot create", &staged.path, e))?;
    let mut w = SparseWriter::new(out);
    let mut hr = digest::HashingReader::new(f, verify.map(|d| d.algo.hasher()));
    let result = match comp {
        Some(c) => {
            crate::debug!("Decompressing {what} ({})", c.name());
            let dec_err = |err| ImageError::Decompress {
                location: location.to_string(),
                format: c.name(),
                err,
            };
            // A decoder that fails is reported after the digest check: for
            // data that is not what its digest says, the mismatch is the news.
            match c.decoder(&mut hr) {
                Ok(mut dec) => decompress::copy(&mut dec, &mut w).map_err(|e| match e {
                    // Reading the (local) source rarely fails; the decoder does.
                    CopyError::Read(err) => dec_err(err),
                    CopyError::Write(err) => io_err("cannot write", &staged.path, err),
                }),
                Err(err) => Err(dec_err(err)),
            }
        }
        None => decompress::copy(&mut hr, &mut w).map_err(|e| match e {
            CopyError::Read(err) => io_err("cannot read", src, err),
            CopyError::Write(err) => io_err("cannot write", &staged.path, err),
        }),
    };
    let actual = hr.finish().map_err(|e| io_err("cannot read", src, e))?;
    if let (Some(want), Some(got)) = (verify, &actual)
        && want != got
    {
        return Err(ImageError::DigestMismatch {
            location: location.to_string(),
            expected: want.to_string(),
            actual: got.to_string(),
        });
    }
    result?;
    let out = w
        .finish()
        .map_err(|e| io_err("cannot write", &staged.path, e))?;
    out.sync_all()
        .map_err(|e| io_err("cannot sync", &staged.path, e))?;
    Ok(())
}

/// Fetches `req` into a staged file beside `dest` (not yet renamed).
pub(crate) fn stage(
    dest: &Path,
    req: &Request,
    opts: &FetchOptions,
) -> Result<(Staged, Status), ImageError> {
    let digest = parse_digest(req.location, req.digest)?;
    let what = if req.description.is_empty() {
        req.location
    } else {
        req.description
    };
    match Location::parse(req.location)? {
        Location::Local(p) => {
            let staged = Staged::new(dest);
            install(
                &p,
                req.location,
                &staged,
                req.decompress,
                digest.as_ref(),
                what,
            )?;
            Ok((staged, Status::Downloaded))
        }
        Location::Remote(url) => {
            let (cache_root, _direct) = match &opts.cache_dir {
                Some(c) => (c.clone(), None),
                None => {
                    // No cache: a private, throw-away entry beside the destination.
                    let parent = dest.parent().unwrap_or(Path::new("."));
                    let tmp = tempdir_in(parent)?;
                    (tmp.0.clone(), Some(tmp))
                }
            };
            let cache = Cache::new(&cache_root);
            let (mut entry, mut result) =
                fetch::ensure_cached(&cache, &url, digest.as_ref(), opts, what)?;
            let mut refetched = false;
            loop {
                let data = entry.data();
                let shown = quote_name(&data.display().to_string());
                // Cached data is verified as it is copied out (its digest
                // file says what it was, not what it is now): a corrupted
                // entry never becomes a base disk. A fresh download was
                // verified while it streamed in.
                let verify = match result {
                    CacheResult::UsedCache => {
                        crate::info!("Using cache {shown}");
                        digest.as_ref()
                    }
                    CacheResult::Downloaded => {
                        crate::info!("Downloaded {what} from {}", quote_name(&url));
                        None
                    }
                };
                let before = fs::metadata(&data).ok();
                let staged = Staged::new(dest);
                match install(&data, &url, &staged, req.decompress, verify, what) {
                    Err(ImageError::DigestMismatch {
                        expected, actual, ..
                    }) if verify.is_some() && !refetched => {
                        crate::warn!(
                            "The cache entry {shown} of {what} is corrupt: its data has digest `{actual}`, expected `{expected}`; downloading it again"
                        );
                        let d = verify.expect("verified against a digest");
                        (entry, result) =
                            fetch::refetch(&cache, &url, d, opts, what, before.as_ref())?;
                        refetched = true;
                    }
                    Err(e) => return Err(e),
                    Ok(()) => {
                        let status = match result {
                            CacheResult::UsedCache => Status::UsedCache,
                            CacheResult::Downloaded => Status::Downloaded,
                        };
                        return Ok((staged, status));
                    }
                }
            }
        }
    }
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn tempdir_in(parent: &Path) -> Result<TempDir, ImageError> {
    let p = cache::temp_name(
        &parent.join(crate::store::paths::files::DOWNLOAD_TEMP_DIR),
        true,
    );
    fs::create_dir_all(&p).map_err(|e| io_err("cannot create", &p, e))?;
    Ok(TempDir(p))
}

/// Puts `req` at `dest` (Lima's `downloader.Download`): nothing when `dest`
/// exists; local files are verified and copied; remote ones go through the
/// cache. `dest` appears only complete (temp name + rename).
pub fn download(dest: &Path, req: &Request, opts: &FetchOptions) -> Result<Status, ImageError> {
    if fs::symlink_metadata(dest).is_ok() {
        return Ok(Status::Skipped);
    }
    let (staged, status) = stage(dest, req, opts)?;
    staged.persist(dest)?;
    Ok(status)
}

/// Checks a local file against `d`, unless it was verified before and is
/// still the same file, unchanged (its memo in the cache: see
/// [`local_memo`]; no cache, no memo). Used for what is not copied into
/// the instance: a local containerd archive is checked on every start
/// (65 MiB in the tests) and a template locator on every load.
fn verify_local(
    p: &Path,
    d: &Digest,
    location: &str,
    cache_root: Option<&Path>,
) -> Result<(), ImageError> {
    verify_local_at(p, d, location, cache_root, std::time::SystemTime::now())
}

/// A file changed less than this before it was verified gets no memo: the
/// kernel stamps writes with a coarse clock (a tick, milliseconds), so a
/// write in the same tick as the last one would leave the identity as it
/// was (Git's "racy" index entries).
const RACY: Duration = Duration::from_secs(2);

/// [`verify_local`] at time `now`.
fn verify_local_at(
    p: &Path,
    d: &Digest,
    location: &str,
    cache_root: Option<&Path>,
    now: std::time::SystemTime,
) -> Result<(), ImageError> {
    let memo = cache_root.map(|root| local_memo_path(root, p));
    let stamp = |f: &File| f.metadata().ok().map(|m| local_memo(&m, d));
    let mut f = File::open(p).map_err(|e| io_err("cannot open", p, e))?;
    let before = stamp(&f);
    if let Some(memo) = &memo
        && before.is_some()
        && fs::read_to_string(memo).ok() == before
    {
        return Ok(());
    }
    let hr = digest::HashingReader::new(&mut f, Some(d.algo.hasher()));
    let got = hr.finish().map_err(|e| io_err("cannot read", p, e))?;
    if got.as_ref() != Some(d) {
        if let Some(memo) = &memo {
            let _ = fs::remove_file(memo);
        }
        return Err(ImageError::DigestMismatch {
            location: location.to_string(),
            expected: d.to_string(),
            actual: got.map(|g| g.to_string()).unwrap_or_default(),
        });
    }
    // Only a file that did not change while it was read, nor just before,
    // is remembered.
    let after = f.metadata().ok();
    let settled = after.as_ref().is_some_and(|m| {
        use std::os::unix::fs::MetadataExt;
        let changed = std::time::UNIX_EPOCH
            + Duration::new(m.ctime().max(m.mtime()).max(0) as u64, 0)
            + Duration::from_secs(1);
        now.duration_since(changed).is_ok_and(|age| age >= RACY)
    });
    if let Some(memo) = &memo
        && settled
        && let Some(line) = before.filter(|b| after.map(|m| local_memo(&m, d)).as_ref() == Some(b))
        && let Some(dir) = memo.parent()
        && fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .is_ok()
    {
        // A memo that cannot be written only costs the next start a hash.
        let _ = crate::store::atomic::write(memo, line.as_bytes(), 0o600);
    }
    Ok(())
}

/// Where the memo of local file `p` lives under cache root `root`.
fn local_memo_path(root: &Path, p: &Path) -> PathBuf {
    root.join(crate::store::paths::cache_files::VERIFIED_LOCAL_DIR)
        .join(digest::sha256_hex(&p.to_string_lossy()))
}

/// What a local file's memo holds: the digest and the file's identity
/// (device, inode, size, modification and change times to the
/// nanosecond). Any write changes the change time, which no user tool can
/// set back (only a clock step can), so an unchanged line means the same,
/// unchanged bytes.
fn local_memo(m: &fs::Metadata, d: &Digest) -> String {
    use std::os::unix::fs::MetadataExt;
    format!(
        "{d} dev={} ino={} size={} mtime={}.{:09} ctime={}.{:09}\n",
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec()
    )
}

/// Makes sure `req` is available locally without copying it anywhere and
/// returns its path: the cache entry's `data` for a remote location (still
/// compressed), the file itself for a local one (verified when a digest is given).
pub fn cache_only(req: &Request, opts: &FetchOptions) -> Result<PathBuf, ImageError> {
    let digest = parse_digest(req.location, req.digest)?;
    match Location::parse(req.location)? {
        Location::Local(p) => {
            if let Some(d) = &digest {
                verify_local(&p, d, req.location, opts.cache_dir.as_deref())?;
            }
            Ok(p)
        }
        Location::Remote(url) => {
            let root = opts
                .cache_dir
                .clone()
                .unwrap_or_else(crate::store::paths::cache_dir);
            let what = if req.description.is_empty() {
                req.location
            } else {
                req.description
            };
            let (entry, _) =
                fetch::ensure_cached(&Cache::new(root), &url, digest.as_ref(), opts, what)?;
            Ok(entry.data())
        }
    }
}

/// The cached `data` for a remote location, without any network access:
/// present and (for a digest-pinned location) recorded with that digest.
pub fn cached_path(location: &str, digest: Option<&str>, cache_root: &Path) -> Option<PathBuf> {
    let Ok(Location::Remote(url)) = Location::parse(location) else {
        return None;
    };
    let entry = Cache::new(cache_root).entry(&url);
    if !entry.data().is_file() {
        return None;
    }
    match parse_digest(location, digest).ok()? {
        Some(d) => {
            let rec = entry.read_meta(&entry.digest_file(d.algo))?;
            (rec.trim() == d.to_string()).then(|| entry.data())
        }
        None => Some(entry.data()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(
            Location::parse("https://a/b.img").unwrap(),
            Location::Remote("https://a/b.img".into())
        );
        assert_eq!(
            Location::parse("file:///x/y.img").unwrap(),
            Location::Local("/x/y.img".into())
        );
        assert_eq!(
            Location::parse("/x/y.img").unwrap(),
            Location::Local("/x/y.img".into())
        );
        if let Some(home) = std::env::var_os("HOME") {
            assert_eq!(
                Location::parse("~/y.img").unwrap(),
                Location::Local(PathBuf::from(home).join("y.img"))
            );
        }
        for bad in ["relative.img", "file://rel/x", "ftp://a/b", "docker://x"] {
            let e = Location::parse(bad).unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
    }

    fn sha256(data: &[u8]) -> String {
        use sha2::Digest as _;
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
    }

    /// A local image verified once is trusted while it is the same file,
    /// unchanged: a memo matching its identity is all the next check reads
    /// (shown with a memo forged for bytes that do not match), and any
    /// write to it (even of the same size) brings the hash back, which
    /// catches the change and drops the memo. Without a cache, no memo.
    #[test]
    fn a_local_image_is_hashed_again_only_when_it_changed() {
        let d = tempfile::tempdir().unwrap();
        let img = d.path().join("base.qcow2");
        fs::write(&img, b"the base image").unwrap();
        let good = sha256(b"the base image");
        let req = Request {
            location: img.to_str().unwrap(),
            digest: Some(&good),
            ..Default::default()
        };
        let cache = d.path().join("cache");
        let opts = FetchOptions {
            cache_dir: Some(cache.clone()),
            ..Default::default()
        };
        // Just written: verified, but not remembered yet (racy).
        assert_eq!(cache_only(&req, &opts).unwrap(), img);
        let memo = local_memo_path(&cache, &img);
        assert!(!memo.exists());
        // Verified a while after the last write: remembered.
        let d_good = Digest::parse(&good).unwrap();
        let later = std::time::SystemTime::now() + Duration::from_secs(10);
        verify_local_at(&img, &d_good, req.location, Some(&cache), later).unwrap();
        let line = fs::read_to_string(&memo).unwrap();
        assert!(line.starts_with(&format!("{good} dev=")), "{line}");
        assert!(line.contains(" size=14 "), "{line}");
        assert_eq!(
            fs::metadata(&memo).unwrap().permissions().mode() & 0o777,
            0o600
        );

        // The memo is what is trusted: one for other bytes under this
        // file's identity passes without a read.
        let other = sha256(b"other bytes");
        let forged = line.replacen(&good, &other, 1);
        fs::write(&memo, &forged).unwrap();
        let trusting = Request {
            digest: Some(&other),
            ..req.clone()
        };
        assert_eq!(cache_only(&trusting, &opts).unwrap(), img);

        // A write of the same size changes the identity (in a later tick of
        // the kernel's coarse clock, which the racy rule guarantees in use):
        // hashed, caught.
        std::thread::sleep(Duration::from_millis(50));
        fs::write(&img, b"THE BASE IMAGE").unwrap();
        let e = cache_only(&trusting, &opts).unwrap_err();
        assert!(matches!(e, ImageError::DigestMismatch { .. }), "{e}");
        assert!(!memo.exists(), "a mismatch drops the memo");
        let e = cache_only(&req, &opts).unwrap_err();
        assert!(matches!(e, ImageError::DigestMismatch { .. }), "{e}");

        // No cache directory: verified every time, nothing written.
        fs::write(&img, b"the base image").unwrap();
        let bare = FetchOptions {
            cache_dir: None,
            ..Default::default()
        };
        fs::remove_dir_all(&cache).unwrap();
        assert_eq!(cache_only(&req, &bare).unwrap(), img);
        assert!(!cache.exists());
    }

    #[test]
    fn local_files_are_verified_decompressed_and_atomic() {
        use std::io::Write;
        let d = tempfile::tempdir().unwrap();
        let raw = b"disk image bytes".repeat(1000);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&raw).unwrap();
        let gz = gz.finish().unwrap();
        let src = d.path().join("img.gz");
        fs::write(&src, &gz).unwrap();
        let opts = FetchOptions {
            cache_dir: None,
            progress: ProgressMode::Quiet,
            ..Default::default()
        };
        let dest = d.path().join("out");
        let good = sha256(&gz);
        let req = Request {
            location: src.to_str().unwrap(),
            digest: Some(&good),
            decompress: true,
            description: "the image",
        };
        assert_eq!(download(&dest, &req, &opts).unwrap(), Status::Downloaded);
        assert_eq!(fs::read(&dest).unwrap(), raw);
        assert_eq!(download(&dest, &req, &opts).unwrap(), Status::Skipped);

        // Without decompression the bytes are copied as they are.
        let dest2 = d.path().join("initrd");
        let loc = format!("file://{}", src.display());
        let req2 = Request {
            location: &loc,
            ..Default::default()
        };
        download(&dest2, &req2, &opts).unwrap();
        assert_eq!(fs::read(&dest2).unwrap(), gz);

        // A wrong digest: error with both digests, no destination, no temp.
        let bad = sha256(b"other");
        let dest3 = d.path().join("bad");
        let e = download(
            &dest3,
            &Request {
                digest: Some(&bad),
                ..req.clone()
            },
            &opts,
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(&bad) && msg.contains(&good), "{msg}");
        let names: Vec<_> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!names.iter().any(|n| n.contains("bad")), "{names:?}");

        // Invalid digest strings are refused up front.
        let e = download(
            &d.path().join("x"),
            &Request {
                digest: Some("sha256:xyz"),
                ..req.clone()
            },
            &opts,
        )
        .unwrap_err();
        assert!(matches!(e, ImageError::InvalidDigest { .. }));

        // Corrupt compressed data names the format.
        let broken = d.path().join("broken.xz");
        fs::write(&broken, b"not xz at all").unwrap();
        let e = download(
            &d.path().join("y"),
            &Request {
                location: broken.to_str().unwrap(),
                decompress: true,
                ..Default::default()
            },
            &opts,
        )
        .unwrap_err();
        assert!(e.to_string().contains("as xz"), "{e}");
        assert!(!d.path().join("y").exists());
    }
}
