//! `LIMA_HOME`: paths, observation, locks and atomic writes.

pub mod atomic;
pub mod disk;
pub mod instance;
pub mod lock;
pub mod paths;
pub mod qemu_img;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use instance::{Instance, Status, inspect, inspect_listed, instance_names};
pub use paths::Home;

use crate::spec::yaml::quote_name;

/// How long a writer waits for another actor's mutation of the same instance.
pub const MUTATION_LOCK_TIMEOUT: Duration = Duration::from_secs(600);

/// Takes the instance's mutation lock (every writer holds it while it works).
pub fn lock_instance(dir: &Path, timeout: Duration) -> std::io::Result<lock::Held> {
    lock::exclusive(&dir.join(paths::files::MUTATION_LOCK), timeout).map_err(|e| {
        if e.kind() == std::io::ErrorKind::WouldBlock {
            std::io::Error::new(
                e.kind(),
                format!(
                    "instance {} is being changed by another limactl process (lock {})",
                    quote_name(&dir.file_name().unwrap_or_default().to_string_lossy()),
                    dir.join(paths::files::MUTATION_LOCK).display()
                ),
            )
        } else {
            e
        }
    })
}

/// Unix socket paths must fit in 108 bytes (`sun_path`); `ssh.sock.<16
/// random chars>` is the longest one OpenSSH creates in the instance directory.
const LONGEST_SOCK: &str = "ssh.sock.1234567890123456";

/// Whether `name` can be an instance of `home`: a valid name whose socket
/// paths fit. Every way of creating an instance (`create`, `apply`, the
/// daemon) checks this, so none makes an instance that can never start.
pub fn check_instance_name(home: &Home, name: &str) -> Result<(), String> {
    crate::spec::names::validate_instance_name(name)?;
    let sock = home.instance_dir(name).join(LONGEST_SOCK);
    if sock.as_os_str().len() >= 108 {
        return Err(format!(
            "instance name {} too long: {} would exceed the 108-byte unix socket path limit; use a shorter name or LIMA_HOME",
            quote_name(name),
            sock.display()
        ));
    }
    Ok(())
}

/// A file to put into a new instance directory.
pub struct NewFile<'a> {
    pub name: &'a str,
    pub data: &'a [u8],
    pub mode: u32,
}

/// Creates `home/<name>` with `files`, atomically: the directory is built
/// under a hidden temp name (which instance listing skips) and renamed into
/// place, so nobody ever sees a half-made instance. Fails if it exists.
pub fn create_instance_dir(home: &Home, name: &str, files: &[NewFile]) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&home.root)?;
    let dest = home.instance_dir(name);
    if dest.symlink_metadata().is_ok() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!(
                "instance {} already exists ({})",
                quote_name(name),
                dest.display()
            ),
        ));
    }
    let tmp = home
        .root
        .join(format!(".tmp-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::DirBuilder::new().mode(0o700).create(&tmp)?;
    let result = (|| {
        for f in files {
            use std::io::Write;
            let p = tmp.join(f.name);
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(f.mode)
                .open(&p)?;
            file.write_all(f.data)?;
            file.set_permissions(std::fs::Permissions::from_mode(f.mode))?;
            file.sync_all()?;
        }
        atomic::sync_dir(&tmp)?;
        // rename(2) onto an existing non-empty directory fails: no clobbering.
        std::fs::rename(&tmp, &dest).map_err(|e| {
            if dest.exists() {
                std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    format!(
                        "instance {} already exists ({})",
                        quote_name(name),
                        dest.display()
                    ),
                )
            } else {
                e
            }
        })?;
        atomic::sync_dir(&home.root)
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result.map(|_| dest)
}

/// Deletes an instance directory so that listing never sees it half-deleted:
/// it is first renamed to a hidden name, then removed.
pub fn remove_instance_dir(home: &Home, name: &str) -> std::io::Result<()> {
    let dir = home.instance_dir(name);
    let tmp = home
        .root
        .join(format!(".deleting-{name}-{}", std::process::id()));
    std::fs::rename(&dir, &tmp)?;
    std::fs::remove_dir_all(&tmp)
}

/// `limactl protect`: creates the empty `protected` file (0400).
pub fn protect(dir: &Path) -> std::io::Result<bool> {
    let p = dir.join(paths::files::PROTECTED);
    if p.exists() {
        return Ok(false);
    }
    atomic::write(&p, b"", 0o400)?;
    Ok(true)
}

/// `limactl unprotect`: removes `protected`.
pub fn unprotect(dir: &Path) -> std::io::Result<bool> {
    match std::fs::remove_file(dir.join(paths::files::PROTECTED)) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_dirs_appear_whole_or_not_at_all() {
        let d = tempfile::tempdir().unwrap();
        let home = Home::new(d.path().join("lh"));
        let dir = create_instance_dir(
            &home,
            "vm",
            &[NewFile {
                name: "lima.yaml",
                data: b"x: 1\n",
                mode: 0o644,
            }],
        )
        .unwrap();
        assert_eq!(std::fs::read(dir.join("lima.yaml")).unwrap(), b"x: 1\n");
        let err = create_instance_dir(&home, "vm", &[]).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(instance_names(&home).unwrap(), vec!["vm"]);
        remove_instance_dir(&home, "vm").unwrap();
        assert!(instance_names(&home).unwrap().is_empty());
    }

    #[test]
    fn instance_names_must_leave_room_for_sockets() {
        let home = Home::new("/tmp/lima-home");
        assert_eq!(check_instance_name(&home, "vm"), Ok(()));
        // 14 + 1 + name + 1 + 25 bytes (and the NUL): 66 fits, 67 does not.
        assert_eq!(check_instance_name(&home, &"a".repeat(66)), Ok(()));
        let err = check_instance_name(&home, &"a".repeat(67)).unwrap_err();
        assert!(err.contains("108-byte unix socket path limit"), "{err}");
        assert!(check_instance_name(&home, "a/b").is_err());
    }

    #[test]
    fn protect_is_idempotent() {
        let d = tempfile::tempdir().unwrap();
        assert!(protect(d.path()).unwrap());
        assert!(!protect(d.path()).unwrap());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.path().join("protected"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o400);
        assert!(unprotect(d.path()).unwrap());
        assert!(!unprotect(d.path()).unwrap());
    }
}
