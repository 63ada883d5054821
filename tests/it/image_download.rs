//! The image download path against a real HTTP/1.1 server on 127.0.0.1,
//! written here with std::net: GET, HEAD, Range/If-Range, Last-Modified,
//! ETag, 404, connections dropped mid-body, slow bodies, a CONNECT proxy.

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use lima::image::{
    self, Cache, FetchOptions, ImageError, ProgressMode, Request, Status, prepare_images,
};
use lima::spec::types::{File as SpecFile, Image, Kernel};
use sha2::Digest as _;

// ---------------------------------------------------------------- server

#[derive(Clone, Default)]
struct Resource {
    body: Vec<u8>,
    last_modified: Option<String>,
    etag: Option<String>,
    content_type: Option<String>,
    /// Close the connection after this many body bytes, for the next N GETs.
    drop_after: Option<(usize, usize)>,
    /// Sleep after each 64 KiB chunk.
    chunk_delay: Option<Duration>,
}

#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    range: Option<String>,
    if_range: Option<String>,
}

#[derive(Default)]
struct State {
    resources: HashMap<String, Resource>,
    seen: Vec<Seen>,
}

struct Server {
    port: u16,
    state: Arc<Mutex<State>>,
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                thread::spawn(move || {
                    let _ = serve(conn, &st);
                });
            }
        });
        Server { port, state }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn put(&self, path: &str, r: Resource) {
        self.state
            .lock()
            .unwrap()
            .resources
            .insert(path.to_string(), r);
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    fn count(&self, method: &str, path: &str) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.method == method && s.path == path)
            .count()
    }
}

fn read_head(r: &mut BufReader<TcpStream>) -> Option<(String, String, HashMap<String, String>)> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    Some((method, target, headers))
}

fn serve(conn: TcpStream, st: &Mutex<State>) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut out = conn;
    let Some((mut method, mut target, mut headers)) = read_head(&mut reader) else {
        return Ok(());
    };
    if method == "CONNECT" {
        // A tunnelling proxy: record the CONNECT, then serve what comes through.
        st.lock().unwrap().seen.push(Seen {
            method: method.clone(),
            path: target.clone(),
            range: None,
            if_range: None,
        });
        out.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
        let Some(next) = read_head(&mut reader) else {
            return Ok(());
        };
        (method, target, headers) = next;
    }
    // Absolute-form targets (plain proxying) are served by their path.
    let path = match target.split_once("://") {
        Some((_, rest)) => format!("/{}", rest.split_once('/').map(|x| x.1).unwrap_or("")),
        None => target.clone(),
    };
    let (res, drop_after) = {
        let mut s = st.lock().unwrap();
        s.seen.push(Seen {
            method: method.clone(),
            path: path.clone(),
            range: headers.get("range").cloned(),
            if_range: headers.get("if-range").cloned(),
        });
        let mut drop_after = None;
        if method == "GET"
            && let Some(r) = s.resources.get_mut(&path)
            && let Some((n, times)) = r.drop_after
            && times > 0
        {
            r.drop_after = Some((n, times - 1));
            drop_after = Some(n);
        }
        (s.resources.get(&path).cloned(), drop_after)
    };
    let Some(res) = res else {
        out.write_all(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found",
        )?;
        return Ok(());
    };
    let len = res.body.len();
    let mut start = 0;
    let mut status = "200 OK";
    let mut extra = String::new();
    if let Some(range) = headers.get("range")
        && let Some(n) = range
            .strip_prefix("bytes=")
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|n| n.parse::<usize>().ok())
    {
        let validator_ok = match headers.get("if-range") {
            None => true,
            Some(v) => Some(v) == res.etag.as_ref() || Some(v) == res.last_modified.as_ref(),
        };
        if validator_ok {
            if n >= len {
                out.write_all(
                    format!("HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                )?;
                return Ok(());
            }
            start = n;
            status = "206 Partial Content";
            extra.push_str(&format!("Content-Range: bytes {n}-{}/{len}\r\n", len - 1));
        }
    }
    if let Some(lm) = &res.last_modified {
        extra.push_str(&format!("Last-Modified: {lm}\r\n"));
    }
    if let Some(e) = &res.etag {
        extra.push_str(&format!("ETag: {e}\r\n"));
    }
    if let Some(t) = &res.content_type {
        extra.push_str(&format!("Content-Type: {t}\r\n"));
    }
    out.write_all(
        format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nAccept-Ranges: bytes\r\n{extra}Connection: close\r\n\r\n",
            len - start
        )
        .as_bytes(),
    )?;
    if method == "HEAD" {
        return Ok(());
    }
    let body = &res.body[start..];
    let limit = drop_after.unwrap_or(usize::MAX).min(body.len());
    for chunk in body[..limit].chunks(64 * 1024) {
        out.write_all(chunk)?;
        if let Some(d) = res.chunk_delay {
            thread::sleep(d);
        }
    }
    out.flush()?;
    if drop_after.is_some() {
        let _ = out.shutdown(Shutdown::Both);
    }
    Ok(())
}

// ---------------------------------------------------------------- helpers

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

fn sha512(data: &[u8]) -> String {
    format!("sha512:{}", hex::encode(sha2::Sha512::digest(data)))
}

/// Deterministic, poorly compressible bytes.
fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

const LM1: &str = "Wed, 21 Oct 2015 07:28:00 GMT";
const LM2: &str = "Thu, 22 Oct 2015 08:00:00 GMT";

fn res(body: Vec<u8>) -> Resource {
    Resource {
        body,
        last_modified: Some(LM1.into()),
        content_type: Some("application/octet-stream".into()),
        ..Default::default()
    }
}

fn opts(cache: &Path) -> FetchOptions {
    FetchOptions {
        cache_dir: Some(cache.to_path_buf()),
        progress: ProgressMode::Plain,
        retries: 0,
        retry_delay: Duration::from_millis(10),
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(10),
    }
}

fn req<'a>(url: &'a str, digest: Option<&'a str>) -> Request<'a> {
    Request {
        location: url,
        digest,
        decompress: true,
        description: "the image",
    }
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn image(location: &str, digest: Option<String>) -> Image {
    Image {
        location: location.into(),
        arch: Some("x86_64".into()),
        digest,
        ..Default::default()
    }
}

// ---------------------------------------------------------------- tests

#[test]
fn downloads_into_the_seed_layout_and_serves_the_second_request_from_cache() {
    let srv = Server::start();
    let body = payload(1 << 20, 1);
    srv.put("/disk.qcow2", res(body.clone()));
    let url = srv.url("/disk.qcow2");
    let digest = sha256(&body);
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let o = opts(&cache);

    let a = tmp.path().join("a");
    assert_eq!(
        image::download(&a, &req(&url, Some(&digest)), &o).unwrap(),
        Status::Downloaded
    );
    assert_eq!(fs::read(&a).unwrap(), body);

    let entry = Cache::new(&cache).entry(&url);
    let key = hex::encode(sha2::Sha256::digest(url.as_bytes()));
    assert_eq!(entry.dir, cache.join("download/by-url-sha256").join(&key));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&entry.dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert_eq!(
        files_in(&entry.dir),
        ["data", "sha256.digest", "time", "type", "url"]
    );
    assert_eq!(fs::read_to_string(entry.dir.join("url")).unwrap(), url);
    assert_eq!(fs::read(entry.dir.join("data")).unwrap(), body);
    assert_eq!(fs::read_to_string(entry.dir.join("time")).unwrap(), LM1);
    assert_eq!(
        fs::read_to_string(entry.dir.join("type")).unwrap(),
        "application/octet-stream"
    );
    assert_eq!(
        fs::read_to_string(entry.dir.join("sha256.digest")).unwrap(),
        digest
    );
    assert_eq!(srv.seen().len(), 1);

    // Digest-pinned and cached: no HTTP request at all.
    let b = tmp.path().join("b");
    assert_eq!(
        image::download(&b, &req(&url, Some(&digest)), &o).unwrap(),
        Status::UsedCache
    );
    assert_eq!(fs::read(&b).unwrap(), body);
    assert_eq!(srv.seen().len(), 1, "{:?}", srv.seen());

    // An existing destination is left alone, also without a request.
    assert_eq!(
        image::download(&b, &req(&url, Some(&digest)), &o).unwrap(),
        Status::Skipped
    );
    assert_eq!(srv.seen().len(), 1);
    assert_eq!(
        image::cached_path(&url, Some(&digest), &cache),
        Some(entry.data())
    );
}

#[test]
fn sha512_digests_are_verified_too() {
    let srv = Server::start();
    let body = payload(300_000, 2);
    srv.put("/k", res(body.clone()));
    let url = srv.url("/k");
    let tmp = tempfile::tempdir().unwrap();
    let d = sha512(&body);
    image::download(
        &tmp.path().join("k"),
        &req(&url, Some(&d)),
        &opts(tmp.path()),
    )
    .unwrap();
    let entry = Cache::new(tmp.path()).entry(&url);
    assert_eq!(
        fs::read_to_string(entry.dir.join("sha512.digest")).unwrap(),
        d
    );
}

#[test]
fn a_digest_mismatch_names_both_digests_and_caches_nothing() {
    let srv = Server::start();
    let body = payload(200_000, 3);
    srv.put("/img", res(body.clone()));
    let url = srv.url("/img");
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let wrong = sha256(b"something else");
    let dest = tmp.path().join("dest");
    let e = image::download(&dest, &req(&url, Some(&wrong)), &opts(&cache)).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ImageError::DigestMismatch { .. }), "{msg}");
    assert!(msg.contains(&wrong), "{msg}");
    assert!(msg.contains(&sha256(&body)), "{msg}");
    assert!(msg.contains(&url), "{msg}");
    let entry = Cache::new(&cache).entry(&url);
    assert_eq!(files_in(&entry.dir), ["url"]);
    assert!(!dest.exists());
    assert_eq!(files_in(tmp.path()), ["cache"]);
}

#[test]
fn prepare_falls_back_past_404_and_refused_connections() {
    let srv = Server::start();
    let body = payload(100_000, 4);
    srv.put("/good.img", res(body.clone()));
    // A port nobody listens on.
    let refused = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = l.local_addr().unwrap().port();
        drop(l);
        format!("http://127.0.0.1:{p}/x.img")
    };
    let missing = srv.url("/missing.img");
    let tmp = tempfile::tempdir().unwrap();
    let inst = tmp.path().join("inst");
    fs::create_dir(&inst).unwrap();
    let images = vec![
        image(&refused, None),
        image(&missing, Some(sha256(b"x"))),
        Image {
            arch: Some("aarch64".into()),
            ..image(&srv.url("/arm.img"), None)
        },
        image(&srv.url("/good.img"), Some(sha256(&body))),
    ];
    let p = prepare_images(&images, "x86_64", &inst, &opts(&tmp.path().join("c"))).unwrap();
    assert_eq!(p.index, Some(3));
    assert_eq!(p.status, Status::Downloaded);
    assert_eq!(fs::read(inst.join("basedisk")).unwrap(), body);
    assert_eq!(files_in(&inst), ["basedisk"]);
    // The aarch64 entry was never asked for.
    assert_eq!(srv.count("GET", "/arm.img"), 0);

    // When all fail, each failure is reported.
    let inst2 = tmp.path().join("inst2");
    fs::create_dir(&inst2).unwrap();
    let e =
        prepare_images(&images[..2], "x86_64", &inst2, &opts(&tmp.path().join("c"))).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains(&refused) && msg.contains(&missing), "{msg}");
    assert!(msg.contains("HTTP status 404"), "{msg}");
    assert!(files_in(&inst2).is_empty());
}

#[test]
fn an_interrupted_transfer_resumes_with_range() {
    let srv = Server::start();
    let body = payload(1_000_000, 5);
    srv.put(
        "/big.img",
        Resource {
            drop_after: Some((300_000, 1)),
            etag: Some("\"v1\"".into()),
            ..res(body.clone())
        },
    );
    let url = srv.url("/big.img");
    let digest = sha256(&body);
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let dest = tmp.path().join("dest");
    // No automatic retry: the call fails and keeps what it got.
    let e = image::download(&dest, &req(&url, Some(&digest)), &opts(&cache)).unwrap_err();
    assert!(matches!(e, ImageError::Transfer { .. }), "{e}");
    assert!(e.to_string().contains("resume"), "{e}");
    let entry = Cache::new(&cache).entry(&url);
    assert_eq!(fs::metadata(entry.part()).unwrap().len(), 300_000);
    assert!(!entry.data().exists() && !dest.exists());

    // The next call asks only for the rest.
    assert_eq!(
        image::download(&dest, &req(&url, Some(&digest)), &opts(&cache)).unwrap(),
        Status::Downloaded
    );
    assert_eq!(sha256(&fs::read(&dest).unwrap()), digest);
    let gets: Vec<Seen> = srv
        .seen()
        .into_iter()
        .filter(|s| s.method == "GET")
        .collect();
    assert_eq!(gets.len(), 2);
    assert_eq!(gets[1].range.as_deref(), Some("bytes=300000-"));
    assert_eq!(gets[1].if_range.as_deref(), Some("\"v1\""));
    assert_eq!(
        files_in(&entry.dir),
        ["data", "etag", "sha256.digest", "time", "type", "url"]
    );
}

#[test]
fn a_dropped_connection_is_resumed_within_one_call() {
    let srv = Server::start();
    let body = payload(800_000, 6);
    srv.put(
        "/img",
        Resource {
            drop_after: Some((100_000, 2)),
            ..res(body.clone())
        },
    );
    let url = srv.url("/img");
    let tmp = tempfile::tempdir().unwrap();
    let o = FetchOptions {
        retries: 3,
        ..opts(tmp.path())
    };
    let dest = tmp.path().join("dest");
    // Digest-less: Last-Modified is the validator that makes resuming safe.
    image::download(&dest, &req(&url, None), &o).unwrap();
    assert_eq!(fs::read(&dest).unwrap(), body);
    let ranges: Vec<Option<String>> = srv.seen().into_iter().map(|s| s.range).collect();
    assert_eq!(
        ranges,
        [
            None,
            Some("bytes=100000-".into()),
            Some("bytes=200000-".into())
        ]
    );
}

#[test]
fn a_changed_file_restarts_instead_of_resuming() {
    let srv = Server::start();
    let old = payload(500_000, 7);
    srv.put(
        "/img",
        Resource {
            drop_after: Some((200_000, 1)),
            ..res(old)
        },
    );
    let url = srv.url("/img");
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("dest");
    assert!(image::download(&dest, &req(&url, None), &opts(tmp.path())).is_err());
    // The file changes upstream: If-Range no longer matches, the server sends
    // it whole, and the stale prefix is dropped.
    let new = payload(400_000, 8);
    srv.put(
        "/img",
        Resource {
            last_modified: Some(LM2.into()),
            ..res(new.clone())
        },
    );
    image::download(&dest, &req(&url, None), &opts(tmp.path())).unwrap();
    assert_eq!(fs::read(&dest).unwrap(), new);
    let last = srv.seen().pop().unwrap();
    assert_eq!(last.if_range.as_deref(), Some(LM1));
}

fn compressed(format: &str, data: &[u8]) -> Vec<u8> {
    match format {
        "gz" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "bz2" => {
            let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "xz" => {
            let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "zst" => zstd::encode_all(data, 3).unwrap(),
        _ => unreachable!(),
    }
}

#[test]
fn each_compression_format_is_decompressed_and_cached_compressed() {
    let srv = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    // Half random, half zeros: the zeros become holes in the destination.
    let mut raw = payload(400_000, 9);
    raw.extend(vec![0u8; 600_000]);
    for fmt in ["gz", "bz2", "xz", "zst"] {
        let c = compressed(fmt, &raw);
        let path = format!("/disk.img.{fmt}");
        srv.put(&path, res(c.clone()));
        let url = srv.url(&path);
        let dest = tmp.path().join(format!("out-{fmt}"));
        let d = sha256(&c);
        image::download(&dest, &req(&url, Some(&d)), &opts(&cache)).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), raw, "{fmt}");
        let entry = Cache::new(&cache).entry(&url);
        assert_eq!(
            fs::read(entry.data()).unwrap(),
            c,
            "{fmt}: cache keeps the compressed bytes"
        );
    }
    // No telling extension: the magic bytes decide.
    let c = compressed("zst", &raw);
    srv.put("/download?id=7", res(c.clone()));
    let url = srv.url("/download?id=7");
    let dest = tmp.path().join("out-magic");
    image::download(&dest, &req(&url, None), &opts(&cache)).unwrap();
    assert_eq!(fs::read(&dest).unwrap(), raw);
    // Not asked to decompress (an initrd): the bytes as served.
    let dest = tmp.path().join("out-raw");
    let r = Request {
        decompress: false,
        ..req(&url, None)
    };
    image::download(&dest, &r, &opts(&cache)).unwrap();
    assert_eq!(fs::read(&dest).unwrap(), c);
}

#[test]
fn prepare_fetches_kernel_decompressed_and_initrd_as_is() {
    let srv = Server::start();
    let disk = payload(50_000, 10);
    let kernel = payload(30_000, 11);
    let initrd_gz = compressed("gz", &payload(20_000, 12));
    srv.put("/disk.img.xz", res(compressed("xz", &disk)));
    srv.put("/vmlinuz.gz", res(compressed("gz", &kernel)));
    srv.put("/initrd.gz", res(initrd_gz.clone()));
    let tmp = tempfile::tempdir().unwrap();
    let inst = tmp.path().join("inst");
    fs::create_dir(&inst).unwrap();
    let img = Image {
        kernel: Some(Kernel {
            location: srv.url("/vmlinuz.gz"),
            cmdline: Some("root=/dev/vda console=ttyS0".into()),
            ..Default::default()
        }),
        initrd: Some(SpecFile {
            location: srv.url("/initrd.gz"),
            ..Default::default()
        }),
        ..image(&srv.url("/disk.img.xz"), None)
    };
    let p = prepare_images(&[img], "x86_64", &inst, &opts(&tmp.path().join("c"))).unwrap();
    assert_eq!(p.index, Some(0));
    assert_eq!(fs::read(inst.join("basedisk")).unwrap(), disk);
    assert_eq!(fs::read(inst.join("kernel")).unwrap(), kernel);
    assert_eq!(fs::read(inst.join("initrd")).unwrap(), initrd_gz);
    assert_eq!(
        fs::read_to_string(inst.join("kernel.cmdline")).unwrap(),
        "root=/dev/vda console=ttyS0"
    );
    assert_eq!(
        files_in(&inst),
        ["basedisk", "initrd", "kernel", "kernel.cmdline"]
    );
}

#[test]
fn concurrent_fetches_of_one_url_cause_one_transfer() {
    let srv = Server::start();
    let body = payload(1 << 20, 13);
    srv.put(
        "/slow.img",
        Resource {
            chunk_delay: Some(Duration::from_millis(20)),
            ..res(body.clone())
        },
    );
    let url = srv.url("/slow.img");
    let digest = sha256(&body);
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let handles: Vec<_> = (0..3)
        .map(|i| {
            let (url, digest, cache) = (url.clone(), digest.clone(), cache.clone());
            let dest = tmp.path().join(format!("d{i}"));
            thread::spawn(move || {
                let s = image::download(&dest, &req(&url, Some(&digest)), &opts(&cache)).unwrap();
                (s, fs::read(&dest).unwrap())
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for h in handles {
        let (s, data) = h.join().unwrap();
        assert_eq!(data, body);
        statuses.push(s);
    }
    statuses.sort_by_key(|s| format!("{s:?}"));
    assert_eq!(
        statuses,
        [Status::Downloaded, Status::UsedCache, Status::UsedCache]
    );
    assert_eq!(srv.seen().len(), 1, "{:?}", srv.seen());
}

#[test]
fn an_entry_without_data_is_repaired() {
    let srv = Server::start();
    let body = payload(100_000, 14);
    srv.put("/img", res(body.clone()));
    let url = srv.url("/img");
    let digest = sha256(&body);
    let tmp = tempfile::tempdir().unwrap();
    let o = opts(tmp.path());
    image::download(&tmp.path().join("a"), &req(&url, Some(&digest)), &o).unwrap();
    let entry = Cache::new(tmp.path()).entry(&url);
    fs::remove_file(entry.data()).unwrap();
    assert_eq!(image::cached_path(&url, Some(&digest), tmp.path()), None);
    assert_eq!(
        image::download(&tmp.path().join("b"), &req(&url, Some(&digest)), &o).unwrap(),
        Status::Downloaded
    );
    assert_eq!(fs::read(entry.data()).unwrap(), body);
    assert_eq!(srv.count("GET", "/img"), 2);
}

#[test]
fn digest_less_urls_are_revalidated_with_last_modified() {
    let srv = Server::start();
    let v1 = payload(100_000, 15);
    srv.put("/latest.img", res(v1.clone()));
    let url = srv.url("/latest.img");
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let o = opts(&cache);
    let dest = |n: &str| tmp.path().join(n);
    assert_eq!(
        image::download(&dest("a"), &req(&url, None), &o).unwrap(),
        Status::Downloaded
    );
    // Unchanged: one HEAD, no GET.
    assert_eq!(
        image::download(&dest("b"), &req(&url, None), &o).unwrap(),
        Status::UsedCache
    );
    assert_eq!(srv.count("HEAD", "/latest.img"), 1);
    assert_eq!(srv.count("GET", "/latest.img"), 1);
    // Changed upstream: re-downloaded.
    let v2 = payload(120_000, 16);
    srv.put(
        "/latest.img",
        Resource {
            last_modified: Some(LM2.into()),
            ..res(v2.clone())
        },
    );
    assert_eq!(
        image::download(&dest("c"), &req(&url, None), &o).unwrap(),
        Status::Downloaded
    );
    assert_eq!(fs::read(dest("c")).unwrap(), v2);
    assert_eq!(srv.count("GET", "/latest.img"), 2);
    let entry = Cache::new(&cache).entry(&url);
    assert_eq!(fs::read_to_string(entry.time_file()).unwrap(), LM2);
    // A server that no longer sends Last-Modified: re-downloaded (as Lima does).
    srv.put(
        "/latest.img",
        Resource {
            last_modified: None,
            ..res(v2.clone())
        },
    );
    assert_eq!(
        image::download(&dest("d"), &req(&url, None), &o).unwrap(),
        Status::Downloaded
    );
}

#[test]
fn a_head_failure_uses_the_cache_and_etags_decide_when_present() {
    let srv = Server::start();
    let v1 = payload(50_000, 17);
    srv.put(
        "/e.img",
        Resource {
            etag: Some("\"a\"".into()),
            ..res(v1.clone())
        },
    );
    let url = srv.url("/e.img");
    let tmp = tempfile::tempdir().unwrap();
    let o = opts(tmp.path());
    image::download(&tmp.path().join("a"), &req(&url, None), &o).unwrap();
    // Same Last-Modified but another ETag: the ETag wins.
    let v2 = payload(50_000, 18);
    srv.put(
        "/e.img",
        Resource {
            etag: Some("\"b\"".into()),
            ..res(v2.clone())
        },
    );
    assert_eq!(
        image::download(&tmp.path().join("b"), &req(&url, None), &o).unwrap(),
        Status::Downloaded
    );
    assert_eq!(fs::read(tmp.path().join("b")).unwrap(), v2);
    // HEAD answered 404 (cannot revalidate): the cached copy is used.
    srv.state.lock().unwrap().resources.clear();
    assert_eq!(
        image::download(&tmp.path().join("c"), &req(&url, None), &o).unwrap(),
        Status::UsedCache
    );
    assert_eq!(fs::read(tmp.path().join("c")).unwrap(), v2);
    // Nobody listening at all: the cached copy is used too.
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = l.local_addr().unwrap().port();
        drop(l);
        format!("http://127.0.0.1:{p}/e.img")
    };
    let entry = Cache::new(tmp.path()).entry(&dead);
    entry.create().unwrap();
    fs::write(entry.url_file(), &dead).unwrap();
    fs::write(entry.data(), b"cached").unwrap();
    fs::write(entry.time_file(), LM1).unwrap();
    assert_eq!(
        image::download(&tmp.path().join("d"), &req(&dead, None), &o).unwrap(),
        Status::UsedCache
    );
    assert_eq!(fs::read(tmp.path().join("d")).unwrap(), b"cached");
}

#[test]
fn without_a_cache_remote_files_are_fetched_directly() {
    let srv = Server::start();
    let body = payload(70_000, 19);
    srv.put("/img.gz", res(compressed("gz", &body)));
    let tmp = tempfile::tempdir().unwrap();
    let o = FetchOptions {
        cache_dir: None,
        ..opts(tmp.path())
    };
    let dest = tmp.path().join("out");
    image::download(&dest, &req(&srv.url("/img.gz"), None), &o).unwrap();
    assert_eq!(fs::read(&dest).unwrap(), body);
    assert_eq!(files_in(tmp.path()), ["out"]);
}

#[test]
fn cache_only_returns_the_compressed_cached_file() {
    let srv = Server::start();
    let c = compressed("gz", &payload(10_000, 20));
    srv.put("/nerdctl-full.tar.gz", res(c.clone()));
    let url = srv.url("/nerdctl-full.tar.gz");
    let tmp = tempfile::tempdir().unwrap();
    let d = sha256(&c);
    let p = image::cache_only(&req(&url, Some(&d)), &opts(tmp.path())).unwrap();
    assert_eq!(fs::read(&p).unwrap(), c);
    assert_eq!(p, Cache::new(tmp.path()).entry(&url).data());
}

/// HTTP_PROXY from the environment is honoured (a CONNECT tunnel through
/// the test server); runs in a child process so the environment is its own.
#[test]
fn the_proxy_from_the_environment_is_used() {
    if std::env::var_os("LIMA_TEST_PROXY_CHILD").is_some() {
        let url = std::env::var("LIMA_TEST_URL").unwrap();
        let digest = std::env::var("LIMA_TEST_DIGEST").unwrap();
        let dest = PathBuf::from(std::env::var("LIMA_TEST_DEST").unwrap());
        let cache = PathBuf::from(std::env::var("LIMA_TEST_CACHE").unwrap());
        image::download(&dest, &req(&url, Some(&digest)), &opts(&cache)).unwrap();
        return;
    }
    // This test's name as libtest filters it (its module path without the
    // crate), for the child to run exactly this test again.
    let this_test = concat!(module_path!(), "::the_proxy_from_the_environment_is_used")
        .split_once("::")
        .unwrap()
        .1;
    let srv = Server::start();
    let body = payload(60_000, 21);
    srv.put("/via-proxy.img", res(body.clone()));
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("out");
    // A name that only the proxy can reach: direct resolution would fail.
    let url = "http://images.invalid/via-proxy.img";
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", this_test, "--nocapture"])
        .env("LIMA_TEST_PROXY_CHILD", "1")
        .env("HTTP_PROXY", format!("http://127.0.0.1:{}", srv.port))
        .env_remove("http_proxy")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .env("LIMA_TEST_URL", url)
        .env("LIMA_TEST_DIGEST", sha256(&body))
        .env("LIMA_TEST_DEST", &dest)
        .env("LIMA_TEST_CACHE", tmp.path().join("cache"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fs::read(&dest).unwrap(), body);
    let seen = srv.seen();
    assert!(seen.iter().any(|s| s.path == "/via-proxy.img"), "{seen:?}");

    // NO_PROXY sends the same request direct, where the name does not resolve.
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", this_test, "--nocapture"])
        .env("LIMA_TEST_PROXY_CHILD", "1")
        .env("HTTP_PROXY", format!("http://127.0.0.1:{}", srv.port))
        .env("NO_PROXY", ".invalid")
        .env("LIMA_TEST_URL", url)
        .env("LIMA_TEST_DIGEST", sha256(&body))
        .env("LIMA_TEST_DEST", tmp.path().join("out2"))
        .env("LIMA_TEST_CACHE", tmp.path().join("cache2"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(srv.seen().len(), seen.len());
}

#[test]
fn prune_removes_unreferenced_entries_and_reports_bytes() {
    let srv = Server::start();
    let a = payload(30_000, 22);
    let b = payload(40_000, 23);
    srv.put("/a", res(a.clone()));
    srv.put("/b", res(b.clone()));
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let o = opts(&cache);
    image::download(&tmp.path().join("a"), &req(&srv.url("/a"), None), &o).unwrap();
    image::download(&tmp.path().join("b"), &req(&srv.url("/b"), None), &o).unwrap();
    let keep = [srv.url("/a")].into_iter().collect();
    let r = image::prune_unreferenced(&cache, &keep).unwrap();
    assert_eq!(r.kept, 1);
    assert_eq!(r.removed.len(), 1);
    assert_eq!(r.removed[0].1, Some(srv.url("/b")));
    assert!(r.bytes_freed >= b.len() as u64);
    assert!(Cache::new(&cache).entry(&srv.url("/a")).data().exists());
    let r = image::prune_all(&cache).unwrap();
    assert!(r.bytes_freed >= a.len() as u64);
    assert!(!cache.exists());
}

/// Issue 13 row 11: a cached `data` that no longer matches the digest its
/// entry records (`sha256.digest` intact) is downloaded again before it
/// becomes a base disk, with a warning; the repaired entry serves the next
/// prepare.
#[test]
fn a_corrupted_cache_entry_never_becomes_a_base_disk() {
    let srv = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    // A real (tiny) qcow2 image, so that `limactl create` can use it below.
    let body = fs::read(crate::common::tiny_image(tmp.path())).unwrap();
    srv.put("/disk.qcow2", res(body.clone()));
    let url = srv.url("/disk.qcow2");
    let digest = sha256(&body);
    let cache = tmp.path().join("xdg/lima");
    let o = opts(&cache);
    let images = [image(&url, Some(digest.clone()))];
    let corrupt = |entry: &image::cache::Entry| {
        let mut data = fs::read(entry.data()).unwrap();
        let mid = data.len() / 2;
        data[mid] ^= 0xff;
        fs::write(entry.data(), &data).unwrap();
        assert_eq!(
            fs::read_to_string(entry.digest_file(image::Algorithm::Sha256)).unwrap(),
            digest,
            "the digest file still vouches for the data"
        );
    };
    let prepare = |name: &str| {
        let inst = tmp.path().join(name);
        fs::create_dir_all(&inst).unwrap();
        let p = prepare_images(&images, "x86_64", &inst, &o).unwrap();
        (p.status, sha256(&fs::read(inst.join("basedisk")).unwrap()))
    };
    assert_eq!(prepare("a"), (Status::Downloaded, digest.clone()));
    let entry = Cache::new(&cache).entry(&url);
    corrupt(&entry);
    assert_eq!(prepare("b"), (Status::Downloaded, digest.clone()));
    assert_eq!(srv.count("GET", "/disk.qcow2"), 2);
    assert_eq!(
        fs::read(entry.data()).unwrap(),
        body,
        "the entry is repaired"
    );
    assert_eq!(prepare("c"), (Status::UsedCache, digest.clone()));
    assert_eq!(srv.count("GET", "/disk.qcow2"), 2);

    // As users see it: `limactl create` says so, and its base disk is intact.
    corrupt(&entry);
    let env = crate::common::Env::new();
    let template = tmp.path().join("vm.yaml");
    fs::write(
        &template,
        format!(
            "images:\n- location: {url}\n  arch: x86_64\n  digest: {digest}\nmounts: []\ncontainerd: {{user: false, system: false}}\n"
        ),
    )
    .unwrap();
    let out = env
        .cmd()
        .env("XDG_CACHE_HOME", tmp.path().join("xdg"))
        .args(["create", "--name", "vm", template.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "The cache entry `{}` of the image is corrupt",
            entry.data().display()
        )) && err.contains("downloading it again"),
        "{err}"
    );
    let base = fs::read(env.instance_dir("vm").join("basedisk")).unwrap();
    assert_eq!(sha256(&base), digest);
    assert_eq!(srv.count("GET", "/disk.qcow2"), 3);
}

/// Issue 13 row 11, compressed: a corrupted cached `.xz` is reported as the
/// corruption it is (not as undecodable data) and downloaded again.
#[test]
fn a_corrupted_compressed_cache_entry_is_downloaded_again() {
    let srv = Server::start();
    let raw = payload(300_000, 31);
    let body = compressed("xz", &raw);
    srv.put("/disk.img.xz", res(body.clone()));
    let url = srv.url("/disk.img.xz");
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let o = opts(&cache);
    let images = [image(&url, Some(sha256(&body)))];
    let prepare = |name: &str| {
        let inst = tmp.path().join(name);
        fs::create_dir_all(&inst).unwrap();
        let p = prepare_images(&images, "x86_64", &inst, &o).unwrap();
        (p.status, fs::read(inst.join("basedisk")).unwrap() == raw)
    };
    assert_eq!(prepare("a"), (Status::Downloaded, true));
    let entry = Cache::new(&cache).entry(&url);
    let mut data = fs::read(entry.data()).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    fs::write(entry.data(), &data).unwrap();
    assert_eq!(prepare("b"), (Status::Downloaded, true));
    assert_eq!(srv.count("GET", "/disk.img.xz"), 2);
    assert_eq!(fs::read(entry.data()).unwrap(), body);
}
