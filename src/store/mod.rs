//! `LIMA_HOME`: paths, observation, locks and atomic writes.

pub mod atomic;
pub mod copy;
pub mod disk;
pub mod instance;
pub mod lock;
pub mod paths;
pub mod qemu_img;
pub mod suspended;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use instance::{Instance, Status, inspect, inspect_listed, instance_names};
pub use paths::Home;

use crate::spec::yaml::quote_name;

/// How long a writer waits for another actor's mutation of the same instance.
pub const MUTATION_LOCK_TIMEOUT: Duration = Duration::from_secs(600);

/// Takes the instance's mutation lock (every writer holds it while it works).
pub fn lock_instance(dir: &Path, timeout: Duration) -> std::io::Result<lock::Held> {
    let path = dir.join(paths::files::MUTATION_LOCK);
    let name = quote_name(&dir.file_name().unwrap_or_default().to_string_lossy());
    lock::exclusive(&path, timeout).map_err(|e| {
        let message = match e.kind() {
            std::io::ErrorKind::WouldBlock => format!(
                "instance {name} is being changed by another limactl process (lock {})",
                path.display()
            ),
            std::io::ErrorKind::NotFound => format!(
                "cannot take the lock {} of instance {name}: its directory is gone (deleted meanwhile?): {e}",
                path.display()
            ),
            _ => format!(
                "cannot take the lock {} of instance {name}: {e}",
                path.display()
            ),
        };
        std::io::Error::new(e.kind(), message)
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

/// Names `path` (and what was being done to it) in an I/O error, keeping its kind.
pub fn at(path: &Path, what: &str) -> impl FnOnce(std::io::Error) -> std::io::Error {
    let context = format!("cannot {what} {}", path.display());
    move |e| std::io::Error::new(e.kind(), format!("{context}: {e}"))
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
        .create(&home.root)
        .map_err(at(&home.root, "create LIMA_HOME"))?;
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
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&tmp)
        .map_err(at(&tmp, "create the new instance's directory"))?;
    let result = (|| {
        for f in files {
            use std::io::Write;
            let p = tmp.join(f.name);
            (|| {
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(f.mode)
                    .open(&p)?;
                file.write_all(f.data)?;
                file.set_permissions(std::fs::Permissions::from_mode(f.mode))?;
                file.sync_all()
            })()
            .map_err(at(&p, "write"))?;
        }
        atomic::sync_dir(&tmp).map_err(at(&tmp, "sync"))?;
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
                at(&dest, &format!("move {} into place as", tmp.display()))(e)
            }
        })?;
        atomic::sync_dir(&home.root).map_err(at(&home.root, "sync"))
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result.map(|_| dest)
}

/// Prefix of the hidden name an instance directory is removed under
/// (`.deleting-NAME-PID`).
pub const DELETING_PREFIX: &str = ".deleting-";

/// Deletes an instance directory so that listing never sees it half-deleted:
/// it is renamed to a hidden name, then removed, its disks and `lima.yaml`
/// last so that whatever a failure part-way leaves is still the instance.
/// When the removal fails, the directory is put back under its name with a
/// `delete-failed` note saying why (it lists as Broken, and the next delete
/// finishes it): a failed delete never hides an instance's data.
pub fn remove_instance_dir(home: &Home, name: &str) -> std::io::Result<()> {
    remove_instance_dir_with(home, name, &|path, shown| remove_tree(path, shown))
}

/// [`remove_instance_dir`] with the removal of each top-level entry given
/// (`path` to remove, `shown` the path to name in errors).
fn remove_instance_dir_with(
    home: &Home,
    name: &str,
    remove: &dyn Fn(&Path, &Path) -> std::io::Result<()>,
) -> std::io::Result<()> {
    use std::io::Error;
    let dir = home.instance_dir(name);
    let hidden = home
        .root
        .join(format!("{DELETING_PREFIX}{name}-{}", std::process::id()));
    std::fs::rename(&dir, &hidden).map_err(|e| {
        Error::new(
            e.kind(),
            format!(
                "cannot delete instance {}: cannot move {} aside: {e}",
                quote_name(name),
                dir.display()
            ),
        )
    })?;
    let Err(e) = remove_contents(&hidden, &dir, remove) else {
        return atomic::sync_dir(&home.root);
    };
    // Best effort: without the note the instance still lists, only not as Broken.
    let _ = atomic::write(
        &hidden.join(paths::files::DELETE_FAILED),
        format!("{e}\n").as_bytes(),
        0o600,
    );
    match std::fs::rename(&hidden, &dir) {
        Ok(()) => Err(Error::new(
            e.kind(),
            format!(
                "{e}; what is left of instance {} was put back in {} (it lists as Broken): fix the cause and run `limactl delete {name}` again",
                quote_name(name),
                dir.display()
            ),
        )),
        Err(back) => Err(Error::new(
            e.kind(),
            format!(
                "{e}; what is left of instance {} is in {} and could not be put back in {} ({back}): remove it by hand",
                quote_name(name),
                hidden.display(),
                dir.display()
            ),
        )),
    }
}

/// Where an entry of an instance directory comes in its removal: first
/// everything that can be made again, then the overlay disk, its base, and
/// `lima.yaml` (what makes the directory an instance).
fn removal_rank(name: &str) -> u8 {
    use paths::files;
    match name {
        files::DIFF_DISK | files::DISK_V21 => 1,
        files::BASE_DISK | files::IMAGE_V21 | files::ISO_V21 => 2,
        files::LIMA_YAML => 3,
        files::DELETE_FAILED => 4,
        _ => 0,
    }
}

/// Removes the entries of `dir` in [`removal_rank`] order, then `dir`;
/// errors name the entry as `shown` (the instance's own path) would.
fn remove_contents(
    dir: &Path,
    shown: &Path,
    remove: &dyn Fn(&Path, &Path) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let named = |e: std::io::Error, p: &Path| {
        std::io::Error::new(e.kind(), format!("cannot remove {}: {e}", p.display()))
    };
    let mut names = std::fs::read_dir(dir)
        .and_then(|rd| {
            rd.map(|e| e.map(|e| e.file_name()))
                .collect::<std::io::Result<Vec<_>>>()
        })
        .map_err(|e| named(e, shown))?;
    names.sort_by_key(|n| (removal_rank(&n.to_string_lossy()), n.clone()));
    for n in names {
        remove(&dir.join(&n), &shown.join(&n))?;
    }
    std::fs::remove_dir(dir).map_err(|e| named(e, shown))
}

/// Removes a file, a symlink (never what it points to) or a directory tree;
/// an error names the entry that could not be removed.
fn remove_tree(path: &Path, shown: &Path) -> std::io::Result<()> {
    let named = |e: std::io::Error| {
        std::io::Error::new(e.kind(), format!("cannot remove {}: {e}", shown.display()))
    };
    let meta = match path.symlink_metadata() {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(named(e)),
    };
    if !meta.is_dir() {
        return std::fs::remove_file(path).map_err(named);
    }
    for entry in std::fs::read_dir(path).map_err(named)? {
        let n = entry.map_err(named)?.file_name();
        remove_tree(&path.join(&n), &shown.join(&n))?;
    }
    std::fs::remove_dir(path).map_err(named)
}

/// Directories a delete left hidden (`.deleting-NAME-PID`) whose process is
/// gone: it was killed, or could not put them back. `list` reports them.
pub fn leftover_deletions(home: &Home) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(&home.root) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = rd
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(DELETING_PREFIX) else {
                return false;
            };
            let pid = rest.rsplit('-').next().and_then(|p| p.parse::<i32>().ok());
            // A delete still running is no leftover (pid 0 would name our group).
            pid.filter(|p| *p > 0).is_some_and(|p| {
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None)
                    == Err(nix::errno::Errno::ESRCH)
            })
        })
        .map(|e| e.path())
        .collect();
    found.sort();
    found
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

    /// An instance directory with disks, configuration and run-time files.
    fn instance_with_disks(home: &Home, name: &str) -> PathBuf {
        let files: Vec<NewFile> = [
            "lima.yaml",
            "diffdisk",
            "basedisk",
            "cidata.iso",
            "serial.log",
        ]
        .into_iter()
        .map(|name| NewFile {
            name,
            data: name.as_bytes(),
            mode: 0o600,
        })
        .collect();
        let dir = create_instance_dir(home, name, &files).unwrap();
        std::fs::create_dir(dir.join("sock")).unwrap();
        std::fs::write(dir.join("sock/x"), b"").unwrap();
        dir
    }

    fn hidden_entries(home: &Home) -> Vec<String> {
        std::fs::read_dir(&home.root)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect()
    }

    #[test]
    fn a_delete_that_fails_part_way_puts_the_instance_back() {
        let d = tempfile::tempdir().unwrap();
        let home = Home::new(d.path().join("lh"));
        let dir = instance_with_disks(&home, "vm");
        let removed = std::sync::Mutex::new(Vec::new());
        let failing = |path: &Path, shown: &Path| {
            use crate::sync::MutexExt;
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            removed.locked().push(name.clone());
            if name == "diffdisk" {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!("cannot remove {}: Operation not permitted", shown.display()),
                ));
            }
            remove_tree(path, shown)
        };
        let err = remove_instance_dir_with(&home, "vm", &failing).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("cannot remove {}/diffdisk", dir.display())),
            "the failing file is named by its place in the instance: {msg}"
        );
        assert!(
            msg.contains("instance `vm` was put back") && msg.contains("limactl delete vm"),
            "{msg}"
        );
        // What can be made again went first; the disks and lima.yaml are intact.
        assert_eq!(
            *crate::sync::MutexExt::locked(&removed),
            ["cidata.iso", "serial.log", "sock", "diffdisk"]
        );
        for f in ["lima.yaml", "diffdisk", "basedisk"] {
            assert!(dir.join(f).exists(), "{f} was kept");
        }
        assert!(
            hidden_entries(&home).is_empty(),
            "{:?}",
            hidden_entries(&home)
        );
        assert_eq!(instance_names(&home).unwrap(), ["vm"]);
        let inst = inspect(&home, &crate::spec::LoadEnv::new(&home.root), "vm");
        assert_eq!(inst.status, Status::Broken);
        assert!(inst.present.delete_failed);
        assert!(
            inst.errors
                .iter()
                .any(|e| e.contains("a delete failed part-way")
                    && e.contains("Operation not permitted")),
            "{:?}",
            inst.errors
        );
        // Once the cause is gone, the next delete finishes it.
        remove_instance_dir(&home, "vm").unwrap();
        assert!(!dir.exists());
        assert!(hidden_entries(&home).is_empty());
    }

    #[test]
    fn what_cannot_be_put_back_is_named_and_reported() {
        let d = tempfile::tempdir().unwrap();
        let home = Home::new(d.path().join("lh"));
        let dir = instance_with_disks(&home, "vm");
        // While the delete runs, another instance of the same name appears.
        let failing = |path: &Path, shown: &Path| {
            if path.ends_with("diffdisk") {
                std::fs::create_dir_all(dir.join("new")).unwrap();
                return Err(std::io::Error::other(format!(
                    "cannot remove {}",
                    shown.display()
                )));
            }
            remove_tree(path, shown)
        };
        let err = remove_instance_dir_with(&home, "vm", &failing).unwrap_err();
        let hidden = hidden_entries(&home);
        assert_eq!(hidden.len(), 1, "{hidden:?}");
        let hidden = home.root.join(&hidden[0]);
        assert!(
            err.to_string().contains(&hidden.display().to_string())
                && err.to_string().contains("remove it by hand"),
            "{err}"
        );
        assert!(hidden.join("diffdisk").exists());
        // Its process is alive (this one): not yet a leftover.
        assert!(leftover_deletions(&home).is_empty());
        // A dead process's hidden directory is.
        let dead = std::process::Command::new("true").spawn().unwrap();
        let pid = dead.id();
        dead.wait_with_output().unwrap();
        let orphan = home.root.join(format!(".deleting-vm-{pid}"));
        std::fs::rename(&hidden, &orphan).unwrap();
        assert_eq!(leftover_deletions(&home), [orphan]);
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
