//! HTTP(S): fetching into a cache entry (resumable, hashed while streaming),
//! revalidation of digest-less entries, and proxy selection.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::cache::{self, Cache, Entry};
use super::digest::{Digest, Hasher};
use super::progress::Progress;
use super::{FetchOptions, ImageError, io_err};

/// What a cache lookup ended with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheResult {
    Downloaded,
    UsedCache,
}

/// Validators and type of a response.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PartInfo {
    url: String,
    etag: Option<String>,
    last_modified: Option<String>,
    content_type: Option<String>,
}

fn header(resp: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn transfer_err(url: &str, e: impl std::fmt::Display) -> ImageError {
    ImageError::Transfer {
        url: url.to_string(),
        message: e.to_string(),
    }
}

/// The proxy URL for `url` from the environment, as Go's
/// `http.ProxyFromEnvironment` (which Lima uses) picks it: `HTTPS_PROXY` for
/// https, `HTTP_PROXY` for http (upper or lower case), never for loopback
/// hosts or hosts matched by `NO_PROXY`.
pub fn proxy_for(url: &str, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let get = |k: &str| {
        env(k)
            .or_else(|| env(&k.to_ascii_lowercase()))
            .filter(|v| !v.is_empty())
    };
    let (scheme, rest) = url.split_once("://")?;
    let proxy = match scheme {
        "https" => get("HTTPS_PROXY"),
        "http" => get("HTTP_PROXY"),
        _ => None,
    }?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let hostport = authority.rsplit('@').next().unwrap_or(authority);
    let host = if let Some(h) = hostport.strip_prefix('[') {
        h.split(']').next().unwrap_or(h)
    } else {
        hostport.split(':').next().unwrap_or(hostport)
    }
    .to_ascii_lowercase();
    if host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
    {
        return None;
    }
    if let Some(no) = get("NO_PROXY") {
        for pat in no.split(',').map(|p| p.trim().to_ascii_lowercase()) {
            if pat.is_empty() {
                continue;
            }
            if pat == "*" {
                return None;
            }
            let pat = pat.split(':').next().unwrap_or(&pat).to_string();
            let pat = pat.trim_start_matches("*.");
            let bare = pat.trim_start_matches('.');
            if host == bare || host.ends_with(&format!(".{bare}")) {
                return None;
            }
        }
    }
    Some(proxy)
}

/// An agent for `url`: no automatic decompression (bytes arrive exactly as
/// served), status codes returned rather than raised, proxy from the environment.
pub(crate) fn agent(url: &str, opts: &FetchOptions) -> Result<ureq::Agent, ImageError> {
    let proxy = match proxy_for(url, &|k| std::env::var(k).ok()) {
        Some(p) => Some(ureq::Proxy::new(&p).map_err(|e| ImageError::Transfer {
            url: url.to_string(),
            message: format!("invalid proxy `{p}` in the environment: {e}"),
        })?),
        None => None,
    };
    Ok(ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(proxy)
        .accept_encoding(ureq::config::AutoHeaderValue::None)
        .user_agent(format!("limactl/{}", crate::VERSION))
        .timeout_connect(Some(opts.connect_timeout))
        .timeout_recv_response(Some(opts.read_timeout))
        .timeout_per_read(Some(opts.read_timeout))
        .input_buffer_size(256 * 1024)
        .build()
        .new_agent())
}

/// Looks `url` up in `cache` and fetches it when missing or stale, under the
/// entry's lock (so concurrent callers cause one transfer).
pub(crate) fn ensure_cached(
    cache: &Cache,
    url: &str,
    expected: Option<&Digest>,
    opts: &FetchOptions,
    what: &str,
) -> Result<(Entry, CacheResult), ImageError> {
    let entry = cache.entry(url);
    let _lock = entry
        .lock(url)
        .map_err(|e| io_err("cannot lock the cache entry", &entry.dir, e))?;
    if entry.data().is_file() && cached_is_usable(&entry, url, expected, opts)? {
        return Ok((entry, CacheResult::UsedCache));
    }
    fetch_into_entry(&entry, url, expected, opts, what)?;
    Ok((entry, CacheResult::Downloaded))
}

/// Downloads `url` again because its cached `data` (the file `corrupt`, as
/// it was before it was read) does not match `expected`. Under the entry's
/// lock, so that callers that found the same corruption cause one transfer:
/// data replaced meanwhile is used as it is (the caller verifies it again).
pub(crate) fn refetch(
    cache: &Cache,
    url: &str,
    expected: &Digest,
    opts: &FetchOptions,
    what: &str,
    corrupt: Option<&fs::Metadata>,
) -> Result<(Entry, CacheResult), ImageError> {
    use std::os::unix::fs::MetadataExt;
    let entry = cache.entry(url);
    let _lock = entry
        .lock(url)
        .map_err(|e| io_err("cannot lock the cache entry", &entry.dir, e))?;
    let now = fs::metadata(entry.data()).ok();
    let id = |m: &fs::Metadata| (m.dev(), m.ino(), m.len(), m.mtime(), m.mtime_nsec());
    if let (Some(now), Some(corrupt)) = (&now, corrupt)
        && id(now) != id(corrupt)
    {
        return Ok((entry, CacheResult::UsedCache));
    }
    // The digest files go first: whatever happens next, the corrupt data is
    // never again taken for what they say.
    for p in entry.digest_files() {
        cache::remove_if_exists(&p).map_err(|e| io_err("cannot remove", &p, e))?;
    }
    fetch_into_entry(&entry, url, Some(expected), opts, what)?;
    Ok((entry, CacheResult::Downloaded))
}

/// Whether the entry's `data` may be used as it is (entry locked by the caller).
fn cached_is_usable(
    entry: &Entry,
    url: &str,
    expected: Option<&Digest>,
    opts: &FetchOptions,
) -> Result<bool, ImageError> {
    if let Some(d) = expected {
        let df = entry.digest_file(d.algo);
        if let Some(recorded) = entry.read_meta(&df) {
            if recorded.trim() == d.to_string() {
                return Ok(true);
            }
            crate::warn!(
                "Cached `{url}` has digest `{}`, expected `{d}`: re-downloading",
                recorded.trim()
            );
            return Ok(false);
        }
        // An entry without a digest file (fetched without a digest, or by
        // an older tool): hash it once, then remember.
        let mut f =
            File::open(entry.data()).map_err(|e| io_err("cannot open", &entry.data(), e))?;
        let mut h = d.algo.hasher();
        hash_all(&mut f, &mut h).map_err(|e| io_err("cannot read", &entry.data(), e))?;
        let actual = h.finish();
        if &actual == d {
            cache::write_small(&df, d.to_string().as_bytes())
                .map_err(|e| io_err("cannot write", &df, e))?;
            return Ok(true);
        }
        crate::warn!("Cached `{url}` has digest `{actual}`, expected `{d}`: re-downloading");
        return Ok(false);
    }
    match revalidate(entry, url, opts) {
        Freshness::Fresh => Ok(true),
        Freshness::Stale(why) => {
            crate::info!("Re-downloading digest-less image: {why}");
            Ok(false)
        }
        Freshness::Unknown(why) => {
            crate::debug!("Cannot revalidate `{url}` ({why}); using the cache");
            Ok(true)
        }
    }
}

fn hash_all(r: &mut dyn Read, h: &mut Hasher) -> io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok(n),
            Ok(k) => {
                h.update(&buf[..k]);
                n += k as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

enum Freshness {
    Fresh,
    Stale(String),
    /// The server could not be asked; the cache is used.
    Unknown(String),
}

fn same_http_date(a: &str, b: &str) -> bool {
    match (
        chrono::DateTime::parse_from_rfc2822(a.trim()),
        chrono::DateTime::parse_from_rfc2822(b.trim()),
    ) {
        (Ok(x), Ok(y)) => x == y,
        _ => a.trim() == b.trim(),
    }
}

/// Lima's check for digest-less entries: a HEAD request's `Last-Modified`
/// against the recorded `time` (and, when both sides have one, the ETag).
fn revalidate(entry: &Entry, url: &str, opts: &FetchOptions) -> Freshness {
    let cached_time = entry
        .read_meta(&entry.time_file())
        .unwrap_or_default()
        .trim()
        .to_string();
    let cached_etag = entry
        .read_meta(&entry.etag_file())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let agent = match agent(url, opts) {
        Ok(a) => a,
        Err(e) => return Freshness::Unknown(e.to_string()),
    };
    let resp = match agent.head(url).call() {
        Ok(r) => r,
        Err(e) => return Freshness::Unknown(e.to_string()),
    };
    let status = resp.status().as_u16();
    if !(200..300).contains(&status) {
        return Freshness::Unknown(format!("HEAD returned HTTP {status}"));
    }
    let remote_time = header(&resp, "last-modified");
    let remote_etag = header(&resp, "etag");
    if let (Some(c), Some(r)) = (&cached_etag, &remote_etag) {
        return if c == r {
            Freshness::Fresh
        } else {
            Freshness::Stale(format!("etag mismatch (cached {c}, remote {r})"))
        };
    }
    match remote_time {
        Some(r) if !cached_time.is_empty() && same_http_date(&cached_time, &r) => Freshness::Fresh,
        Some(r) => Freshness::Stale(format!(
            "last-modified mismatch (cached: {cached_time:?}, remote: {r:?})"
        )),
        None => Freshness::Stale("the server sent no Last-Modified".into()),
    }
}

/// Downloads `url` into the entry (locked by the caller) and records its metadata.
fn fetch_into_entry(
    entry: &Entry,
    url: &str,
    expected: Option<&Digest>,
    opts: &FetchOptions,
    what: &str,
) -> Result<(), ImageError> {
    if entry.url().as_deref() != Some(url) {
        cache::write_small(&entry.url_file(), url.as_bytes())
            .map_err(|e| io_err("cannot write", &entry.url_file(), e))?;
    }
    let info = fetch_to_part(entry, url, expected, opts, what)?;
    // The old data's validators go first, so a crash between the steps leaves
    // an entry that is revalidated rather than one that lies.
    let w = |p: &std::path::Path, r: io::Result<()>| r.map_err(|e| io_err("cannot update", p, e));
    for p in entry.digest_files() {
        w(&p, cache::remove_if_exists(&p))?;
    }
    for p in [entry.time_file(), entry.etag_file(), entry.type_file()] {
        w(&p, cache::remove_if_exists(&p))?;
    }
    w(&entry.data(), fs::rename(entry.part(), entry.data()))?;
    let _ = cache::remove_if_exists(&entry.part_info());
    cache::sync_dir(&entry.dir);
    let time = info.last_modified.unwrap_or_default();
    w(
        &entry.time_file(),
        cache::write_small(&entry.time_file(), time.as_bytes()),
    )?;
    let ctype = info.content_type.unwrap_or_default();
    w(
        &entry.type_file(),
        cache::write_small(&entry.type_file(), ctype.as_bytes()),
    )?;
    if let Some(etag) = info.etag {
        w(
            &entry.etag_file(),
            cache::write_small(&entry.etag_file(), etag.as_bytes()),
        )?;
    }
    if let Some(d) = expected {
        let df = entry.digest_file(d.algo);
        w(&df, cache::write_small(&df, d.to_string().as_bytes()))?;
    }
    Ok(())
}

fn read_part_info(entry: &Entry) -> Option<PartInfo> {
    serde_json::from_str(&fs::read_to_string(entry.part_info()).ok()?).ok()
}

/// `bytes START-END/TOTAL` → (START, TOTAL).
fn parse_content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    Some((start.trim().parse().ok()?, total.trim().parse().ok()))
}

fn strong_etag(e: &Option<String>) -> Option<&str> {
    e.as_deref().filter(|e| !e.starts_with("W/"))
}

/// Downloads into `data.part`, resuming a previous partial download with
/// `Range` when its validators allow, hashing with the expected algorithm.
/// On success the part is complete, synced and (if a digest was given) verified.
fn fetch_to_part(
    entry: &Entry,
    url: &str,
    expected: Option<&Digest>,
    opts: &FetchOptions,
    what: &str,
) -> Result<PartInfo, ImageError> {
    let agent = agent(url, opts)?;
    let part = entry.part();
    let mut retries_left = opts.retries;
    let mut allow_resume = true;
    let mut restarted_after_mismatch = false;
    loop {
        let prev = read_part_info(entry);
        let part_len = fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
        let resumable = allow_resume
            && part_len > 0
            && prev.as_ref().is_some_and(|p| {
                p.url == url
                    && (expected.is_some()
                        || strong_etag(&p.etag).is_some()
                        || p.last_modified.is_some())
            });
        if !resumable {
            let _ = cache::remove_if_exists(&part);
            let _ = cache::remove_if_exists(&entry.part_info());
        }
        let from = if resumable { part_len } else { 0 };
        let mut req = agent.get(url);
        if from > 0 {
            req = req.header("Range", format!("bytes={from}-"));
            let p = prev.as_ref().unwrap();
            if let Some(v) = strong_etag(&p.etag).or(p.last_modified.as_deref()) {
                req = req.header("If-Range", v);
            }
        }
        let resp = req.call().map_err(|e| transfer_err(url, e))?;
        let status = resp.status().as_u16();
        let mut info = PartInfo {
            url: url.to_string(),
            etag: header(&resp, "etag"),
            last_modified: header(&resp, "last-modified"),
            content_type: header(&resp, "content-type"),
        };
        let (offset, total) = match status {
            206 if from > 0 => {
                let cr = header(&resp, "content-range")
                    .as_deref()
                    .and_then(parse_content_range);
                let p = prev.clone().unwrap_or_default();
                let changed = (info.etag.is_some() && p.etag.is_some() && info.etag != p.etag)
                    || (info.last_modified.is_some()
                        && p.last_modified.is_some()
                        && !same_http_date(
                            info.last_modified.as_deref().unwrap(),
                            p.last_modified.as_deref().unwrap(),
                        ));
                match cr {
                    Some((start, total)) if start == from && !changed => {
                        info.etag = info.etag.or(p.etag);
                        info.last_modified = info.last_modified.or(p.last_modified);
                        info.content_type = info.content_type.or(p.content_type);
                        crate::info!(
                            "Resuming the download of {what} at {}",
                            super::progress::human(from)
                        );
                        (from, total)
                    }
                    _ => {
                        crate::debug!("`{url}`: unusable partial response; starting over");
                        allow_resume = false;
                        continue;
                    }
                }
            }
            416 if from > 0 => {
                allow_resume = false;
                continue;
            }
            200..=299 => (0, resp.body().content_length()),
            _ => {
                return Err(ImageError::HttpStatus {
                    url: url.to_string(),
                    status,
                });
            }
        };
        let mut hasher = expected.map(|d| d.algo.hasher());
        let mut file = if offset == 0 {
            let j = serde_json::to_vec(&info).unwrap_or_default();
            cache::write_small(&entry.part_info(), &j)
                .map_err(|e| io_err("cannot write", &entry.part_info(), e))?;
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&part)
                .map_err(|e| io_err("cannot create", &part, e))?
        } else {
            let mut f = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&part)
                .map_err(|e| io_err("cannot open", &part, e))?;
            if let Some(h) = &mut hasher {
                hash_all(&mut (&mut f).take(offset), h)
                    .map_err(|e| io_err("cannot read", &part, e))?;
            }
            f.set_len(offset)
                .map_err(|e| io_err("cannot truncate", &part, e))?;
            f.seek(SeekFrom::Start(offset))
                .map_err(|e| io_err("cannot seek", &part, e))?;
            f
        };
        let mut progress =
            Progress::new(opts.progress, &format!("Downloading {what}"), total, offset);
        let mut reader = resp.into_body().into_reader();
        let mut buf = vec![0u8; 256 * 1024];
        let mut written = offset;
        let read_result: io::Result<()> = loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(e),
            };
            if let Some(h) = &mut hasher {
                h.update(&buf[..n]);
            }
            file.write_all(&buf[..n])
                .map_err(|e| io_err("cannot write", &part, e))?;
            written += n as u64;
            progress.advance(n as u64);
        };
        progress.finish();
        let short = total.is_some_and(|t| written < t);
        if read_result.is_err() || short {
            let _ = file.sync_data();
            let why = match read_result {
                Err(e) => e.to_string(),
                Ok(()) => format!(
                    "the connection closed after {written} of {} bytes",
                    total.unwrap_or(0)
                ),
            };
            if retries_left > 0 && written > offset {
                retries_left -= 1;
                crate::warn!(
                    "Download of `{url}` interrupted at {} ({why}); resuming",
                    super::progress::human(written)
                );
                std::thread::sleep(opts.retry_delay);
                continue;
            }
            return Err(ImageError::Transfer {
                url: url.to_string(),
                message: format!(
                    "{why} (the {} received so far are kept; run the command again to resume)",
                    super::progress::human(written)
                ),
            });
        }
        file.sync_all()
            .map_err(|e| io_err("cannot sync", &part, e))?;
        drop(file);
        if let (Some(d), Some(h)) = (expected, hasher) {
            let actual = h.finish();
            if &actual != d {
                let _ = cache::remove_if_exists(&part);
                let _ = cache::remove_if_exists(&entry.part_info());
                if offset > 0 && !restarted_after_mismatch {
                    // The resumed prefix may be from an older file: try once whole.
                    crate::warn!(
                        "Resumed download of `{url}` has digest `{actual}`, expected `{d}`: downloading it again from the start"
                    );
                    restarted_after_mismatch = true;
                    allow_resume = false;
                    continue;
                }
                return Err(ImageError::DigestMismatch {
                    location: url.to_string(),
                    expected: d.to_string(),
                    actual: actual.to_string(),
                });
            }
        }
        return Ok(info);
    }
}

/// Default timeouts.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let v: Vec<(String, String)> = pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        move |k| v.iter().find(|(a, _)| a == k).map(|(_, b)| b.clone())
    }

    #[test]
    fn proxy_selection_follows_go() {
        let e = env(&[
            ("HTTPS_PROXY", "http://p:3128"),
            ("http_proxy", "http://q:8080"),
            ("NO_PROXY", "internal.example, .corp, *.lan:80"),
        ]);
        assert_eq!(
            proxy_for("https://a.org/x", &e).as_deref(),
            Some("http://p:3128")
        );
        assert_eq!(
            proxy_for("http://a.org/x", &e).as_deref(),
            Some("http://q:8080")
        );
        assert_eq!(proxy_for("https://internal.example/x", &e), None);
        assert_eq!(proxy_for("https://a.internal.example/x", &e), None);
        assert_eq!(proxy_for("https://x.corp:8443/x", &e), None);
        assert_eq!(proxy_for("https://corp/x", &e), None);
        assert_eq!(proxy_for("https://h.lan/x", &e), None);
        assert_eq!(proxy_for("http://127.0.0.1:8000/x", &e), None);
        assert_eq!(proxy_for("http://[::1]:8000/x", &e), None);
        assert_eq!(proxy_for("http://localhost/x", &e), None);
        assert_eq!(
            proxy_for("https://user@a.org:1/x", &e).as_deref(),
            Some("http://p:3128")
        );
        assert_eq!(
            proxy_for("https://a.org/", &env(&[("NO_PROXY", "*")])),
            None
        );
        assert_eq!(proxy_for("https://a.org/", &env(&[])), None);
    }

    #[test]
    fn content_range_and_dates() {
        assert_eq!(
            parse_content_range("bytes 100-199/200"),
            Some((100, Some(200)))
        );
        assert_eq!(parse_content_range("bytes 100-199/*"), Some((100, None)));
        assert_eq!(parse_content_range("items 1-2/3"), None);
        assert!(same_http_date(
            "Wed, 21 Oct 2015 07:28:00 GMT",
            "Wed, 21 Oct 2015 07:28:00 +0000"
        ));
        assert!(!same_http_date(
            "Wed, 21 Oct 2015 07:28:00 GMT",
            "Wed, 21 Oct 2015 07:28:01 GMT"
        ));
        assert!(same_http_date("garbage", "garbage"));
    }
}
