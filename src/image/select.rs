//! Image selection by arch with fallback across `images` (reference §7.5).
//!
//! [`prepare`] takes the resolved `images` of a [`Spec`](crate::spec::Spec);
//! [`prepare_images`] the wire form, for callers that still hold a
//! `LimaYaml`. Both select and fetch through the same view of an entry.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{FetchOptions, ImageError, ImageFailure, Request, Staged, Status, io_err, stage};
use crate::logging::{self, Level};
use crate::spec::typed::{self, Arch};
use crate::spec::types::Image;
use crate::store::paths::files;

/// What [`prepare_images`] left in the instance directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreparedImage {
    /// Index in `images` of the entry used; `None` when `basedisk` already existed.
    pub index: Option<usize>,
    /// How the base disk was obtained (`Skipped` when it already existed).
    pub status: Status,
    pub base_disk: PathBuf,
    pub kernel: Option<PathBuf>,
    pub kernel_cmdline: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
}

/// A downloadable file of an entry: where, and the digest it must match.
struct Source<'a> {
    location: &'a str,
    digest: Option<&'a str>,
}

/// One `images` entry as selection reads it, from either form.
struct Candidate<'a> {
    image: Source<'a>,
    /// `None` (or empty: the wire form before defaults) matches every arch.
    arch: Option<&'a str>,
    /// The kernel and its command line.
    kernel: Option<(Source<'a>, Option<&'a str>)>,
    initrd: Option<Source<'a>>,
    variant: Option<&'a str>,
    arch_variant: Option<&'a str>,
}

impl<'a> Candidate<'a> {
    fn of_spec(i: &'a typed::Image) -> Candidate<'a> {
        Candidate {
            image: Source {
                location: &i.location,
                digest: i.digest.as_deref(),
            },
            arch: Some(i.arch.as_str()),
            kernel: i.kernel.as_ref().map(|k| {
                (
                    Source {
                        location: &k.location,
                        digest: k.digest.as_deref(),
                    },
                    k.cmdline.as_deref(),
                )
            }),
            initrd: i.initrd.as_ref().map(|f| Source {
                location: &f.location,
                digest: f.digest.as_deref(),
            }),
            variant: i.variant.as_deref(),
            arch_variant: i.arch_variant.as_deref(),
        }
    }

    fn of_wire(i: &'a Image) -> Candidate<'a> {
        Candidate {
            image: Source {
                location: &i.location,
                digest: i.digest.as_deref(),
            },
            arch: i.arch.as_deref(),
            kernel: i.kernel.as_ref().map(|k| {
                (
                    Source {
                        location: &k.location,
                        digest: k.digest.as_deref(),
                    },
                    k.cmdline.as_deref(),
                )
            }),
            initrd: i.initrd.as_ref().map(|f| Source {
                location: &f.location,
                digest: f.digest.as_deref(),
            }),
            variant: i.variant.as_deref(),
            arch_variant: i.arch_variant.as_deref(),
        }
    }
}

fn arch_matches(img_arch: Option<&str>, arch: &str) -> bool {
    img_arch.is_none_or(|a| a.is_empty() || a == arch)
}

fn existing(p: PathBuf) -> Option<PathBuf> {
    p.exists().then_some(p)
}

/// Downloads the image for `arch` into `inst_dir/basedisk` (decompressed),
/// plus that entry's `kernel` (decompressed), `kernel.cmdline` and `initrd`
/// (as is). The first entry for `arch` that can be fetched wins; entries for
/// other arches (or another variant than the first match's) are skipped; a
/// failed kernel or initrd moves on to the next entry like a failed image.
/// Nothing is fetched when `basedisk` exists. `basedisk` is renamed into place
/// last, so its presence means the set is complete.
pub fn prepare(
    images: &[typed::Image],
    arch: Arch,
    inst_dir: &Path,
    opts: &FetchOptions,
) -> Result<PreparedImage, ImageError> {
    let candidates: Vec<Candidate> = images.iter().map(Candidate::of_spec).collect();
    select(&candidates, arch.as_str(), inst_dir, opts)
}

/// [`prepare`] for the wire form of `images` (a filled `LimaYaml`), where an
/// entry without an arch matches every arch.
pub fn prepare_images(
    images: &[Image],
    arch: &str,
    inst_dir: &Path,
    opts: &FetchOptions,
) -> Result<PreparedImage, ImageError> {
    let candidates: Vec<Candidate> = images.iter().map(Candidate::of_wire).collect();
    select(&candidates, arch, inst_dir, opts)
}

fn select(
    images: &[Candidate],
    arch: &str,
    inst_dir: &Path,
    opts: &FetchOptions,
) -> Result<PreparedImage, ImageError> {
    let base_disk = inst_dir.join(files::BASE_DISK);
    if base_disk.exists() {
        return Ok(PreparedImage {
            index: None,
            status: Status::Skipped,
            base_disk,
            kernel: existing(inst_dir.join(files::KERNEL)),
            kernel_cmdline: existing(inst_dir.join(files::KERNEL_CMDLINE)),
            initrd: existing(inst_dir.join(files::INITRD)),
        });
    }
    if images.is_empty() {
        return Err(ImageError::NoImages);
    }
    let Some(target) = images.iter().find(|i| arch_matches(i.arch, arch)) else {
        let mut available: Vec<String> = images
            .iter()
            .filter_map(|i| i.arch.map(str::to_string))
            .collect();
        available.dedup();
        return Err(ImageError::NoImageForArch {
            arch: arch.to_string(),
            available: available.join(", "),
        });
    };
    remove_stale_temps(inst_dir);
    let mut failures = Vec::new();
    for (index, img) in images.iter().enumerate() {
        if !arch_matches(img.arch, arch) {
            crate::debug!(
                "Skipping `{}`: unsupported arch `{}`",
                img.image.location,
                img.arch.unwrap_or("")
            );
            continue;
        }
        if img.variant != target.variant || img.arch_variant != target.arch_variant {
            crate::debug!("Skipping `{}`: another variant", img.image.location);
            continue;
        }
        logging::log(
            Level::Info,
            "Attempting to download the image",
            &[
                ("arch", arch),
                ("digest", img.image.digest.unwrap_or("")),
                ("location", img.image.location),
            ],
        );
        match prepare_one(img, inst_dir, opts) {
            Ok(status) => {
                return Ok(PreparedImage {
                    index: Some(index),
                    status,
                    base_disk,
                    kernel: existing(inst_dir.join(files::KERNEL)),
                    kernel_cmdline: existing(inst_dir.join(files::KERNEL_CMDLINE)),
                    initrd: existing(inst_dir.join(files::INITRD)),
                });
            }
            Err(error) => {
                crate::warn!("{error}");
                failures.push(ImageFailure {
                    index,
                    location: img.image.location.to_string(),
                    error,
                });
            }
        }
    }
    Err(ImageError::AllFailed {
        arch: arch.to_string(),
        failures,
    })
}

/// Fetches one entry's files to temporary names, then renames them into
/// place (kernel, cmdline, initrd, then basedisk).
fn prepare_one(
    img: &Candidate,
    inst_dir: &Path,
    opts: &FetchOptions,
) -> Result<Status, ImageError> {
    let base_disk = inst_dir.join(files::BASE_DISK);
    let (base, status) = stage(
        &base_disk,
        &Request {
            location: img.image.location,
            digest: img.image.digest,
            decompress: true,
            description: "the image",
        },
        opts,
    )?;
    let kernel_path = inst_dir.join(files::KERNEL);
    let cmdline_path = inst_dir.join(files::KERNEL_CMDLINE);
    let initrd_path = inst_dir.join(files::INITRD);
    let mut kernel: Option<Staged> = None;
    let mut cmdline: Option<Staged> = None;
    if let Some((k, k_cmdline)) = &img.kernel {
        let (s, _) = stage(
            &kernel_path,
            &Request {
                location: k.location,
                digest: k.digest,
                decompress: true,
                description: "the kernel",
            },
            opts,
        )?;
        kernel = Some(s);
        if let Some(c) = k_cmdline.filter(|c| !c.is_empty()) {
            let s = Staged::new(&cmdline_path);
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&s.path)
                .map_err(|e| io_err("cannot create", &s.path, e))?;
            f.write_all(c.as_bytes())
                .and_then(|_| f.sync_all())
                .map_err(|e| io_err("cannot write", &s.path, e))?;
            cmdline = Some(s);
        }
    }
    let mut initrd: Option<Staged> = None;
    if let Some(i) = &img.initrd {
        let (s, _) = stage(
            &initrd_path,
            &Request {
                location: i.location,
                digest: i.digest,
                decompress: false,
                description: "the initrd",
            },
            opts,
        )?;
        initrd = Some(s);
    }
    for (staged, path) in [
        (kernel, &kernel_path),
        (cmdline, &cmdline_path),
        (initrd, &initrd_path),
    ] {
        match staged {
            Some(s) => s.persist(path)?,
            // A leftover from an earlier, different attempt must not be booted.
            None => super::cache::remove_if_exists(path)
                .map_err(|e| io_err("cannot remove", path, e))?,
        }
    }
    base.persist(&base_disk)?;
    Ok(status)
}

/// Removes `.<name>.tmp.<pid>.<n>` files left by prepares whose process is gone.
fn remove_stale_temps(inst_dir: &Path) {
    let Ok(rd) = fs::read_dir(inst_dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = [
            files::BASE_DISK,
            files::KERNEL,
            files::KERNEL_CMDLINE,
            files::INITRD,
            files::DOWNLOAD_TEMP_DIR,
        ]
        .iter()
        .find_map(|n| name.strip_prefix(&format!(".{n}.tmp."))) else {
            continue;
        };
        let Some(pid) = rest.split('.').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        let alive = pid == std::process::id() as i32
            || nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
        if !alive {
            let p = e.path();
            let _ = if p.is_dir() {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::ProgressMode;
    use crate::spec::types::{File as SpecFile, Kernel};

    fn opts() -> FetchOptions {
        FetchOptions {
            cache_dir: None,
            progress: ProgressMode::Quiet,
            ..Default::default()
        }
    }

    fn img(location: &str, arch: &str) -> Image {
        Image {
            location: location.into(),
            arch: Some(arch.into()),
            ..Default::default()
        }
    }

    #[test]
    fn picks_arch_and_falls_back() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        fs::create_dir(&src).unwrap();
        fs::write(src.join("arm.img"), b"arm").unwrap();
        fs::write(src.join("x86.img"), b"x86").unwrap();
        fs::write(src.join("vmlinuz"), b"kernel").unwrap();
        fs::write(src.join("initrd.gz"), b"\x1f\x8binitrd").unwrap();
        let inst = d.path().join("inst");
        fs::create_dir(&inst).unwrap();
        let s = |n: &str| src.join(n).display().to_string();
        let mut with_kernel = img(&s("x86.img"), "x86_64");
        with_kernel.kernel = Some(Kernel {
            location: s("vmlinuz"),
            cmdline: Some("console=ttyS0".into()),
            ..Default::default()
        });
        with_kernel.initrd = Some(SpecFile {
            location: s("initrd.gz"),
            ..Default::default()
        });
        let images = vec![
            img(&s("arm.img"), "aarch64"),
            img(&s("missing.img"), "x86_64"),
            with_kernel,
        ];
        let p = prepare_images(&images, "x86_64", &inst, &opts()).unwrap();
        assert_eq!(p.index, Some(2));
        assert_eq!(fs::read(inst.join("basedisk")).unwrap(), b"x86");
        assert_eq!(fs::read(inst.join("kernel")).unwrap(), b"kernel");
        assert_eq!(
            fs::read_to_string(inst.join("kernel.cmdline")).unwrap(),
            "console=ttyS0"
        );
        // initrds are never decompressed.
        assert_eq!(fs::read(inst.join("initrd")).unwrap(), b"\x1f\x8binitrd");
        let mut names: Vec<_> = fs::read_dir(&inst)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["basedisk", "initrd", "kernel", "kernel.cmdline"]);

        // Idempotent: nothing is fetched again (the sources are gone).
        fs::remove_dir_all(&src).unwrap();
        let again = prepare_images(&images, "x86_64", &inst, &opts()).unwrap();
        assert_eq!(again.index, None);
        assert_eq!(again.status, Status::Skipped);
        assert!(again.kernel.is_some() && again.initrd.is_some());
    }

    /// The resolved images: an entry without an arch got the instance's.
    #[test]
    fn resolved_images_select_by_the_spec_arch() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("x86.img"), b"x86").unwrap();
        let inst = d.path().join("inst");
        fs::create_dir(&inst).unwrap();
        let spec = crate::spec::Spec::for_tests(serde_json::json!({"images": [
            {"location": "/nope/arm.img", "arch": "aarch64"},
            {"location": d.path().join("x86.img").display().to_string()},
        ]}));
        assert_eq!(spec.images[1].arch, Arch::X86_64);
        let p = prepare(&spec.images, spec.arch, &inst, &opts()).unwrap();
        assert_eq!(p.index, Some(1));
        assert_eq!(fs::read(inst.join("basedisk")).unwrap(), b"x86");
        let e = prepare(&spec.images[..1], Arch::X86_64, d.path(), &opts()).unwrap_err();
        assert!(e.to_string().contains("aarch64"), "{e}");
    }

    #[test]
    fn a_failed_kernel_moves_on_and_leaves_nothing_behind() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("a.img"), b"a").unwrap();
        fs::write(d.path().join("b.img"), b"b").unwrap();
        let inst = d.path().join("inst");
        fs::create_dir(&inst).unwrap();
        let mut first = img(&d.path().join("a.img").display().to_string(), "x86_64");
        first.kernel = Some(Kernel {
            location: d.path().join("nokernel").display().to_string(),
            ..Default::default()
        });
        let second = img(&d.path().join("b.img").display().to_string(), "x86_64");
        let p = prepare_images(&[first, second], "x86_64", &inst, &opts()).unwrap();
        assert_eq!(p.index, Some(1));
        assert_eq!(fs::read(inst.join("basedisk")).unwrap(), b"b");
        assert_eq!(p.kernel, None);
        assert_eq!(fs::read_dir(&inst).unwrap().count(), 1);
    }

    #[test]
    fn errors_name_every_candidate() {
        let d = tempfile::tempdir().unwrap();
        let e = prepare_images(&[], "x86_64", d.path(), &opts()).unwrap_err();
        assert!(e.to_string().contains("no images are configured"));
        let e =
            prepare_images(&[img("/nope/a", "aarch64")], "x86_64", d.path(), &opts()).unwrap_err();
        assert!(e.to_string().contains("aarch64"), "{e}");
        let e = prepare_images(
            &[img("/nope/a", "x86_64"), img("/nope/b", "x86_64")],
            "x86_64",
            d.path(),
            &opts(),
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("/nope/a") && msg.contains("/nope/b"), "{msg}");
    }

    #[test]
    fn variants_follow_the_first_match() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("v2.img"), b"v2").unwrap();
        let inst = d.path().join("inst");
        fs::create_dir(&inst).unwrap();
        let mut a = img("/nope/v1.img", "x86_64");
        a.variant = Some("v1".into());
        let mut b = img(&d.path().join("v2.img").display().to_string(), "x86_64");
        b.variant = Some("v2".into());
        // The target is v1; v2 is skipped even though v1 fails.
        let e = prepare_images(&[a, b], "x86_64", &inst, &opts()).unwrap_err();
        assert!(!e.to_string().contains("v2.img"), "{e}");
    }
}
