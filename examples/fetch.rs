//! Fetches one location through the real download path (cache, digest,
//! decompression): what `hack/bench-download.sh` measures.
//!
//! `cargo run --release --example fetch -- URL DEST [--digest sha256:…]
//! [--cache DIR] [--cache-only] [--no-decompress]`

use std::path::PathBuf;
use std::time::Instant;

use lima::image::{self, FetchOptions, Request};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut positional = Vec::new();
    let mut digest = None;
    let mut cache = None;
    let mut cache_only = false;
    let mut decompress = true;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--digest" => digest = args.next(),
            "--cache" => cache = args.next().map(PathBuf::from),
            "--cache-only" => cache_only = true,
            "--no-decompress" => decompress = false,
            _ => positional.push(a),
        }
    }
    let [url, dest] = positional.as_slice() else {
        anyhow::bail!(
            "usage: fetch URL DEST [--digest D] [--cache DIR] [--cache-only] [--no-decompress]"
        );
    };
    let mut opts = FetchOptions::default();
    if cache.is_some() {
        opts.cache_dir = cache;
    }
    let req = Request {
        location: url,
        digest: digest.as_deref(),
        decompress,
        description: "the file",
    };
    let t = Instant::now();
    let path = if cache_only {
        image::cache_only(&req, &opts)?
    } else {
        let dest = PathBuf::from(dest);
        image::download(&dest, &req, &opts)?;
        dest
    };
    let secs = t.elapsed().as_secs_f64();
    let size = std::fs::metadata(&path)?.len();
    println!(
        "{} bytes in {secs:.3} s = {:.1} MB/s ({})",
        size,
        size as f64 / secs / 1e6,
        path.display()
    );
    Ok(())
}
