//! `qemu-img`, the one wrapper: the tool *is* the standard for qcow2, so it
//! is run rather than reimplemented; every call goes through [`run`] and
//! fails with what to do.

use std::path::Path;
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum QemuImgError {
    /// The binary is missing.
    #[error("cannot run qemu-img: {0} (install qemu-utils: hack/install-deps.sh)")]
    Missing(std::io::Error),
    /// It ran and failed.
    #[error("qemu-img {args}: {stderr}")]
    Failed { args: String, stderr: String },
    /// A base image refers to another file.
    #[error("{image} has a backing file; a base image must be self-contained")]
    BackingFile { image: String },
    /// `qemu-img info` said nothing usable.
    #[error("qemu-img could not tell the format of {image}: {detail}")]
    UnknownFormat { image: String, detail: String },
}

/// Runs `qemu-img ARGS` in `dir`; returns its stdout.
pub fn run(dir: &Path, args: &[&str]) -> Result<String, QemuImgError> {
    let out = Command::new("qemu-img")
        .current_dir(dir)
        .args(args)
        .output()
        .map_err(QemuImgError::Missing)?;
    if !out.status.success() {
        return Err(QemuImgError::Failed {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The format of a self-contained image (`qemu-img info`); one with a
/// backing file is refused.
pub fn base_image_format(dir: &Path, image: &str) -> Result<String, QemuImgError> {
    let info = run(dir, &["info", "--output=json", "--force-share", image])?;
    let unknown = |detail: String| QemuImgError::UnknownFormat {
        image: image.to_string(),
        detail,
    };
    let v: serde_json::Value = serde_json::from_str(&info).map_err(|e| unknown(e.to_string()))?;
    if v.get("backing-filename").is_some() {
        return Err(QemuImgError::BackingFile {
            image: image.to_string(),
        });
    }
    v.get("format")
        .and_then(|f| f.as_str())
        .map(str::to_string)
        .ok_or_else(|| unknown("no `format` in its output".into()))
}

/// Creates an image of `size` bytes; with `backing`, a qcow2 overlay on it
/// (`(file, format)`, relative to `dir` so the directory stays movable).
pub fn create(
    dir: &Path,
    file: &str,
    format: &str,
    size: u64,
    backing: Option<(&str, &str)>,
) -> Result<(), QemuImgError> {
    let size = size.to_string();
    let mut args = vec!["create", "-q", "-f", format];
    if let Some((base, base_format)) = backing {
        args.extend(["-F", base_format, "-b", base]);
    }
    args.extend([file, size.as_str()]);
    run(dir, &args).map(drop)
}

/// Grows (never shrinks: callers check) an image to `size` bytes.
pub fn resize(dir: &Path, file: &str, format: &str, size: u64) -> Result<(), QemuImgError> {
    run(
        dir,
        &["resize", "-q", "-f", format, file, &size.to_string()],
    )
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlays_are_relative_and_base_images_must_stand_alone() {
        let d = tempfile::tempdir().unwrap();
        create(d.path(), "base", "raw", 1 << 20, None).unwrap();
        assert_eq!(base_image_format(d.path(), "base").unwrap(), "raw");
        create(d.path(), "over", "qcow2", 2 << 20, Some(("base", "raw"))).unwrap();
        let err = base_image_format(d.path(), "over").unwrap_err();
        assert!(matches!(err, QemuImgError::BackingFile { .. }), "{err}");
        resize(d.path(), "over", "qcow2", 4 << 20).unwrap();
        assert_eq!(
            crate::store::instance::image_virtual_size(&d.path().join("over")),
            Some(4 << 20)
        );
        let err = run(d.path(), &["info", "missing"]).unwrap_err();
        assert!(
            err.to_string().starts_with("qemu-img info missing: "),
            "{err}"
        );
    }
}
