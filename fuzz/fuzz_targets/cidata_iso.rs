//! The cidata ISO writer: files with arbitrary names, modes and contents are
//! either refused or written so that a real ISO reader (`isoinfo`, Rock
//! Ridge) lists exactly those names and extracts exactly those bytes.
#![no_main]

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use lima::cidata::{CidataFile, write_iso};

fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("limactl-fuzz-iso-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    })
}

fn isoinfo(args: &[&str]) -> Vec<u8> {
    let out = Command::new("isoinfo").args(args).output().expect("isoinfo (genisoimage) is installed");
    assert!(out.status.success(), "isoinfo {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fuzz_target!(|data: &[u8]| {
    // Up to 4 files: "<path>\n<mode byte><contents>" separated by 0xff.
    let mut files = Vec::new();
    for chunk in data.split(|b| *b == 0xff).take(4) {
        let Some(nl) = chunk.iter().position(|b| *b == b'\n') else { continue };
        let Ok(path) = std::str::from_utf8(&chunk[..nl]) else { return };
        let rest = &chunk[nl + 1..];
        let (mode, body) = match rest.split_first() {
            Some((m, b)) => (0o600 | (u32::from(*m) & 0o177), b.to_vec()),
            None => (0o644, Vec::new()),
        };
        files.push(CidataFile { path: path.to_string(), data: body, mode });
    }
    let iso = dir().join("cidata.iso");
    let _ = std::fs::remove_file(&iso);
    if write_iso(&iso, &files).is_err() {
        return;
    }
    let iso = iso.to_str().unwrap();
    let listing = String::from_utf8_lossy(&isoinfo(&["-R", "-f", "-i", iso])).into_owned();
    for f in &files {
        let p = format!("/{}", f.path);
        assert!(listing.lines().any(|l| l == p), "{p} missing from {listing:?}");
        let got = isoinfo(&["-R", "-i", iso, "-x", &p]);
        assert_eq!(got, f.data, "contents of {p}");
    }
});
