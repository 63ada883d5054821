//! Copying instance files and disks cheaply: `cp --reflink=auto
//! --sparse=always` shares the blocks on filesystems that can (btrfs, XFS:
//! an instant copy-on-write clone), and elsewhere copies only the data,
//! keeping holes, so a 100 GiB qcow2 with 2 GiB used costs 2 GiB.

use std::path::Path;
use std::process::Command;

use super::at;

/// Copies the regular file `src` to `dst` (which must not exist), sharing
/// or skipping blocks where possible; `dst` gets `src`'s permission bits.
pub fn copy_file(src: &Path, dst: &Path) -> std::io::Result<()> {
    if dst.symlink_metadata().is_ok() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!("{} already exists", dst.display()),
        ));
    }
    let out = Command::new("cp")
        .args(["--reflink=auto", "--sparse=always", "--preserve=mode", "--"])
        .arg(src)
        .arg(dst)
        .output()
        .map_err(at(src, "run cp to copy"))?;
    if !out.status.success() {
        let _ = std::fs::remove_file(dst);
        return Err(std::io::Error::other(format!(
            "cannot copy {} to {}: {}",
            src.display(),
            dst.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Copies the tree `src` into the new directory `dst` (created 0700; its
/// subdirectories too): regular files with [`copy_file`], symbolic links as
/// links. Entries for which `skip(relative path, is_dir)` holds are left out.
pub fn copy_tree(
    src: &Path,
    dst: &Path,
    skip: &dyn Fn(&Path, bool) -> bool,
) -> std::io::Result<()> {
    copy_dir(src, dst, Path::new(""), skip)
}

fn copy_dir(
    src: &Path,
    dst: &Path,
    rel: &Path,
    skip: &dyn Fn(&Path, bool) -> bool,
) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dst.join(rel))
        .map_err(at(&dst.join(rel), "create"))?;
    let dir = src.join(rel);
    for entry in std::fs::read_dir(&dir).map_err(at(&dir, "read"))? {
        let entry = entry.map_err(at(&dir, "read"))?;
        let rel = rel.join(entry.file_name());
        let ty = entry.file_type().map_err(at(&entry.path(), "inspect"))?;
        if skip(&rel, ty.is_dir()) {
            continue;
        }
        let (from, to) = (src.join(&rel), dst.join(&rel));
        if ty.is_dir() {
            copy_dir(src, dst, &rel, skip)?;
        } else if ty.is_symlink() {
            let target = std::fs::read_link(&from).map_err(at(&from, "read the link"))?;
            std::os::unix::fs::symlink(target, &to).map_err(at(&to, "create the link"))?;
        } else if ty.is_file() {
            copy_file(&from, &to)?;
        }
        // Sockets, fifos and devices are run-time things: never copied.
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn sparse_files_stay_sparse_and_links_stay_links() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        // 64 MiB with 4 KiB of data at the end.
        let f = std::fs::File::create(src.join("disk")).unwrap();
        f.set_len(64 << 20).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, &[7u8; 4096], (64 << 20) - 4096).unwrap();
        std::fs::set_permissions(src.join("disk"), std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(src.join("sub/skip.pid"), "1").unwrap();
        std::os::unix::fs::symlink("disk", src.join("link")).unwrap();
        let dst = d.path().join("dst");
        copy_tree(&src, &dst, &|p, _| p.to_string_lossy().ends_with(".pid")).unwrap();
        let m = std::fs::metadata(dst.join("disk")).unwrap();
        assert_eq!(m.len(), 64 << 20);
        assert!(
            m.blocks() * 512 < 1 << 20,
            "{} blocks: not sparse",
            m.blocks()
        );
        assert_eq!(m.permissions().mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::read(dst.join("disk")).unwrap(),
            std::fs::read(src.join("disk")).unwrap()
        );
        assert_eq!(
            std::fs::read_link(dst.join("link")).unwrap(),
            Path::new("disk")
        );
        assert!(dst.join("sub").is_dir());
        assert!(!dst.join("sub/skip.pid").exists());
        let err = copy_file(&src.join("disk"), &dst.join("disk")).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
    }
}
