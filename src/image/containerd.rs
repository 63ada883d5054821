//! The nerdctl-full archive of `containerd.archives` (reference §3.2, `nerdctl-full.tgz`).
//!
//! [`containerd_archive`] picks the archive for the guest's arch and makes it
//! available locally through the download cache, digest verified; the caller
//! puts that file into cidata. It runs before QEMU: an instance whose archive
//! cannot be had does not boot half set up.

use std::path::PathBuf;

use super::{FetchOptions, ImageError, Request, cache_only};
use crate::spec::Spec;
use crate::spec::yaml::quote_name;

/// Why the archive is not available.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// No `containerd.archives` entry matches the guest's arch.
    #[error(
        "containerd.archives has no archive for arch {arch} (it has: {available}): add an entry with `arch: {arch}`, or set containerd.system and containerd.user to false"
    )]
    NoArchiveForArch { arch: String, available: String },
    /// Fetching or verifying the archive failed.
    #[error(
        "cannot get the containerd archive {} (containerd.archives[{index}]): {source}; when offline, start once online so it is cached, fix the location or digest, or set containerd.system and containerd.user to false",
        quote_name(location)
    )]
    Fetch {
        index: usize,
        location: String,
        #[source]
        source: ImageError,
    },
}

/// Whether `spec` asks for containerd at all (`plain` turns both off in the defaults).
pub fn containerd_enabled(spec: &Spec) -> bool {
    !spec.plain && (spec.containerd.system || spec.containerd.user)
}

/// The local file holding the archive for `spec.arch` (a cache entry's data, or
/// the local file named by the location), or `None` when containerd is off.
/// The first entry for the arch is used; its digest, when given, is verified.
pub fn containerd_archive(
    spec: &Spec,
    opts: &FetchOptions,
) -> Result<Option<PathBuf>, ArchiveError> {
    if !containerd_enabled(spec) {
        return Ok(None);
    }
    let archives = &spec.containerd.archives;
    let Some((index, archive)) = archives
        .iter()
        .enumerate()
        .find(|(_, a)| a.arch == spec.arch)
    else {
        let mut available: Vec<&str> = archives.iter().map(|a| a.arch.as_str()).collect();
        available.dedup();
        return Err(ArchiveError::NoArchiveForArch {
            arch: spec.arch.as_str().to_string(),
            available: if available.is_empty() {
                "none".into()
            } else {
                available.join(", ")
            },
        });
    };
    let req = Request {
        location: &archive.location,
        digest: archive.digest.as_deref(),
        decompress: false,
        description: "the containerd archive",
    };
    cache_only(&req, opts)
        .map(Some)
        .map_err(|source| ArchiveError::Fetch {
            index,
            location: archive.location.clone(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::LimaYaml;
    use crate::spec::typed::Arch;

    fn spec(extra: &str) -> Spec {
        use crate::spec::defaults::{FillContext, fill};
        let text = format!("images: [{{location: /i.qcow2, arch: x86_64}}]\narch: x86_64\n{extra}");
        let node = crate::spec::yaml::parse_single("t.yaml", &text)
            .unwrap()
            .unwrap();
        let mut y: LimaYaml = crate::spec::resolve::typed(&node, "t.yaml").unwrap();
        let host = crate::spec::host::HostInfo::for_tests();
        let ctx = FillContext {
            host: &host,
            instance_name: "test".into(),
            instance_dir: std::path::PathBuf::from("/lima/test"),
            lima_home: std::path::PathBuf::from("/lima"),
        };
        fill(&mut y, &ctx);
        Spec::from_filled(&y).unwrap()
    }

    fn offline() -> (tempfile::TempDir, FetchOptions) {
        let cache = tempfile::tempdir().unwrap();
        let opts = FetchOptions {
            cache_dir: Some(cache.path().to_path_buf()),
            progress: crate::image::ProgressMode::Quiet,
            retries: 0,
            retry_delay: std::time::Duration::ZERO,
            connect_timeout: std::time::Duration::from_secs(2),
            read_timeout: std::time::Duration::from_secs(2),
        };
        (cache, opts)
    }

    fn sha256_hex(data: &[u8]) -> String {
        use sha2::Digest as _;
        format!("{:x}", sha2::Sha256::digest(data))
    }

    #[test]
    fn off_needs_no_archive() {
        let (_c, opts) = offline();
        let s = spec(
            "containerd: {system: false, user: false, archives: [{location: /nonexistent.tgz, arch: x86_64}]}",
        );
        assert_eq!(containerd_archive(&s, &opts).unwrap(), None);
    }

    #[test]
    fn plain_needs_no_archive() {
        let (_c, opts) = offline();
        let s = spec(
            "plain: true\ncontainerd: {system: true, user: true, archives: [{location: /nonexistent.tgz, arch: x86_64}]}",
        );
        assert!(!containerd_enabled(&s));
        assert_eq!(containerd_archive(&s, &opts).unwrap(), None);
    }

    #[test]
    fn local_archive_with_matching_digest_is_used() {
        let (_c, opts) = offline();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nerdctl-full.tar.gz");
        std::fs::write(&path, b"archive bytes").unwrap();
        let s = spec(&format!(
            "containerd: {{system: true, user: false, archives: [{{location: {p}, arch: aarch64, digest: 'sha256:{d}'}}, {{location: {p}, arch: x86_64, digest: 'sha256:{d}'}}]}}",
            p = path.display(),
            d = sha256_hex(b"archive bytes")
        ));
        assert_eq!(containerd_archive(&s, &opts).unwrap(), Some(path));
    }

    #[test]
    fn digest_mismatch_is_an_error_naming_the_archive() {
        let (_c, opts) = offline();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nerdctl-full.tar.gz");
        std::fs::write(&path, b"tampered").unwrap();
        let s = spec(&format!(
            "containerd: {{user: true, archives: [{{location: {}, arch: x86_64, digest: 'sha256:{}'}}]}}",
            path.display(),
            sha256_hex(b"original")
        ));
        let err = containerd_archive(&s, &opts).unwrap_err();
        assert!(matches!(
            &err,
            ArchiveError::Fetch {
                index: 0,
                source: ImageError::DigestMismatch { .. },
                ..
            }
        ));
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("containerd.archives[0]"), "{msg}");
    }

    #[test]
    fn no_archive_for_the_arch_is_an_error() {
        let (_c, opts) = offline();
        let s = spec(
            "containerd: {user: true, archives: [{location: /a.tgz, arch: aarch64}, {location: /b.tgz, arch: riscv64}]}",
        );
        assert_eq!(s.arch, Arch::X86_64);
        let err = containerd_archive(&s, &opts).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(&err, ArchiveError::NoArchiveForArch { arch, available } if arch == "x86_64" && available == "aarch64, riscv64"),
            "{msg}"
        );
        assert!(msg.contains("arch: x86_64"), "{msg}");
    }

    #[test]
    fn unreachable_remote_archive_fails_and_caches_nothing() {
        let (cache, opts) = offline();
        // A port nothing listens on: the fetch fails at once, as it does offline.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let s = spec(&format!(
            "containerd: {{user: true, archives: [{{location: 'http://127.0.0.1:{port}/nerdctl-full.tgz', arch: x86_64, digest: 'sha256:{}'}}]}}",
            sha256_hex(b"x")
        ));
        let err = containerd_archive(&s, &opts).unwrap_err();
        assert!(err.to_string().contains("nerdctl-full.tgz"), "{err}");
        let url = format!("http://127.0.0.1:{port}/nerdctl-full.tgz");
        assert!(
            !crate::image::Cache::new(cache.path())
                .entry(&url)
                .data()
                .exists()
        );
    }
}
