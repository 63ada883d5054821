//! Additional disks: `$LIMA_HOME/_disk/<NAME>/datadisk` and the `in_use_by`
//! symlink that records which instance uses a disk (seed layout; Lima ≥ 1.0's
//! `_disks` directory is read too).

use std::path::{Path, PathBuf};

use super::instance::{self, image_virtual_size};
use super::paths::{DISKS_DIR_LIMA, Home, disk_files};
use crate::spec::yaml::quote_name;

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("disk {} does not exist (see `limactl disk list`)", quote_name(.0))]
    NotFound(String),
    #[error("disk {} already exists ({})", quote_name(name), dir.display())]
    Exists { name: String, dir: PathBuf },
    #[error("invalid disk name: {0}")]
    Name(String),
    #[error(
        "cannot delete disk {} in use by instance {}",
        quote_name(disk),
        quote_name(instance)
    )]
    InUse { disk: String, instance: String },
    #[error(
        "disk {} is in use by running instance {}; stop it first",
        quote_name(disk),
        quote_name(instance)
    )]
    InUseRunning { disk: String, instance: String },
    #[error("disk shrinking is not supported: {} is {}, asked for {}", quote_name(disk), crate::spec::units::format_size(*current), crate::spec::units::format_size(*requested))]
    Shrink {
        disk: String,
        current: u64,
        requested: u64,
    },
    #[error("{0}")]
    Other(String),
    #[error(transparent)]
    QemuImg(#[from] super::qemu_img::QemuImgError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Who holds a disk's `in_use_by` lock, and whether that lock is still live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lock {
    Free,
    /// Held by an instance that is running.
    Held {
        instance: String,
    },
    /// Names an instance that is not running (or no longer exists): stale.
    Stale {
        instance: String,
    },
}

#[derive(Clone, Debug)]
pub struct Disk {
    pub name: String,
    pub dir: PathBuf,
    pub size: u64,
    pub format: String,
    pub lock: Lock,
}

impl Disk {
    pub fn datadisk(&self) -> PathBuf {
        self.dir.join(disk_files::DATA_DISK)
    }

    pub fn instance(&self) -> Option<&str> {
        match &self.lock {
            Lock::Free => None,
            Lock::Held { instance } | Lock::Stale { instance } => Some(instance),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        let instance_dir = match self.lock {
            Lock::Free => String::new(),
            _ => std::fs::read_link(self.dir.join(disk_files::IN_USE_BY))
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        };
        serde_json::json!({
            "name": self.name,
            "size": self.size,
            "format": self.format,
            "dir": self.dir.display().to_string(),
            "instance": self.instance().unwrap_or(""),
            "instanceDir": instance_dir,
            "mountPoint": format!("/mnt/lima-{}", self.name),
            "stale": matches!(self.lock, Lock::Stale { .. }),
        })
    }
}

fn detect_format(path: &Path) -> String {
    use std::io::Read;
    let mut magic = [0u8; 4];
    let ok = std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok();
    if ok && &magic == b"QFI\xfb" {
        "qcow2".into()
    } else {
        "raw".into()
    }
}

/// Where disk `name` lives: `_disk/<name>`, or Lima's `_disks/<name>` if only that exists.
pub fn disk_dir(home: &Home, name: &str) -> PathBuf {
    let seed = home.disk_dir(name);
    let lima = home.root.join(DISKS_DIR_LIMA).join(name);
    if !seed.exists() && lima.exists() {
        lima
    } else {
        seed
    }
}

/// Reads the lock of a disk directory, checking the owner's liveness.
pub fn read_lock(dir: &Path) -> Lock {
    let Ok(target) = std::fs::read_link(dir.join(disk_files::IN_USE_BY)) else {
        return Lock::Free;
    };
    let instance = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if target.is_dir() && instance::Liveness::probe(&target).host_agent {
        Lock::Held { instance }
    } else {
        Lock::Stale { instance }
    }
}

pub fn inspect(home: &Home, name: &str) -> Result<Disk, DiskError> {
    crate::spec::names::validate_identifier(name).map_err(DiskError::Name)?;
    let dir = disk_dir(home, name);
    let data = dir.join(disk_files::DATA_DISK);
    if !data.exists() {
        return Err(DiskError::NotFound(name.into()));
    }
    Ok(Disk {
        name: name.into(),
        size: image_virtual_size(&data).unwrap_or(0),
        format: detect_format(&data),
        lock: read_lock(&dir),
        dir,
    })
}

/// Every disk, sorted by name.
pub fn list(home: &Home) -> Vec<Disk> {
    let mut names = Vec::new();
    for root in [home.disk_root(), home.root.join(DISKS_DIR_LIMA)] {
        if let Ok(rd) = std::fs::read_dir(root) {
            for e in rd.flatten() {
                if let Ok(n) = e.file_name().into_string()
                    && !n.starts_with('.')
                    && !names.contains(&n)
                {
                    names.push(n);
                }
            }
        }
    }
    names.sort();
    names.iter().filter_map(|n| inspect(home, n).ok()).collect()
}

/// `limactl disk create NAME --size SIZE [--format qcow2|raw]`.
pub fn create(home: &Home, name: &str, size: u64, format: &str) -> Result<Disk, DiskError> {
    crate::spec::names::validate_identifier(name).map_err(DiskError::Name)?;
    if !matches!(format, "qcow2" | "raw") {
        return Err(DiskError::Other(format!(
            "unsupported disk format {} (use qcow2 or raw)",
            quote_name(format)
        )));
    }
    let dir = disk_dir(home, name);
    if dir.exists() {
        return Err(DiskError::Exists {
            name: name.into(),
            dir,
        });
    }
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(home.disk_root())
        .map_err(super::at(&home.disk_root(), "create the disk directory"))?;
    // Build under a hidden name, then rename: a listing never sees a half disk.
    let tmp = home
        .disk_root()
        .join(format!(".tmp-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&tmp)
        .map_err(super::at(&tmp, "create"))?;
    let result = super::qemu_img::create(&tmp, disk_files::DATA_DISK, format, size, None)
        .map_err(DiskError::from)
        .and_then(|_| {
            std::fs::rename(&tmp, &dir)
                .map_err(super::at(
                    &dir,
                    &format!("move {} into place as", tmp.display()),
                ))
                .map_err(DiskError::from)
        });
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    inspect(home, name)
}

/// `limactl disk import NAME FILE`: a self-contained qcow2 or raw image
/// copied in as the new disk's `datadisk` (shared copy-on-write or copied
/// sparsely, see [`super::copy`]); FILE itself is left as it is.
pub fn import(home: &Home, name: &str, file: &Path) -> Result<Disk, DiskError> {
    crate::spec::names::validate_identifier(name).map_err(DiskError::Name)?;
    let dir = disk_dir(home, name);
    if dir.exists() {
        return Err(DiskError::Exists {
            name: name.into(),
            dir,
        });
    }
    let meta = std::fs::metadata(file).map_err(super::at(file, "read"))?;
    if !meta.is_file() {
        return Err(DiskError::Other(format!(
            "{} is not a regular file",
            file.display()
        )));
    }
    let abs = std::path::absolute(file).map_err(super::at(file, "resolve"))?;
    let here = abs.parent().unwrap_or(Path::new("/"));
    let base = abs.file_name().unwrap_or_default().to_string_lossy();
    // A relative `./` keeps a file named like an option from being read as one.
    let format = super::qemu_img::base_image_format(here, &format!("./{base}"))?;
    if !matches!(format.as_str(), "qcow2" | "raw") {
        return Err(DiskError::Other(format!(
            "{} is a {format} image; only qcow2 and raw disks can be imported (convert it with `qemu-img convert -O qcow2`)",
            file.display()
        )));
    }
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(home.disk_root())
        .map_err(super::at(&home.disk_root(), "create the disk directory"))?;
    let tmp = home
        .disk_root()
        .join(format!(".tmp-import-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let result = std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&tmp)
        .map_err(super::at(&tmp, "create"))
        .and_then(|()| {
            let data = tmp.join(disk_files::DATA_DISK);
            super::copy::copy_file(&abs, &data)?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o600))
                .map_err(super::at(&data, "set the mode of"))
        })
        .and_then(|()| {
            std::fs::rename(&tmp, &dir).map_err(super::at(
                &dir,
                &format!("move {} into place as", tmp.display()),
            ))
        });
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e.into());
    }
    inspect(home, name)
}

/// `limactl disk delete`: refuses a disk locked by a running instance, and
/// (without `force`) one locked at all.
pub fn delete(home: &Home, name: &str, force: bool) -> Result<PathBuf, DiskError> {
    let disk = inspect(home, name)?;
    match (&disk.lock, force) {
        (Lock::Held { instance }, _) => {
            return Err(DiskError::InUse {
                disk: name.into(),
                instance: instance.clone(),
            });
        }
        (Lock::Stale { instance }, false) if home.instance_dir(instance).is_dir() => {
            return Err(DiskError::InUse {
                disk: name.into(),
                instance: instance.clone(),
            });
        }
        _ => {}
    }
    std::fs::remove_dir_all(&disk.dir).map_err(super::at(&disk.dir, "remove"))?;
    Ok(disk.dir)
}

/// `limactl disk resize NAME --size SIZE`: grows only, never while in use.
pub fn resize(home: &Home, name: &str, size: u64) -> Result<Disk, DiskError> {
    let disk = inspect(home, name)?;
    if let Lock::Held { instance } = &disk.lock {
        return Err(DiskError::InUseRunning {
            disk: name.into(),
            instance: instance.clone(),
        });
    }
    if size < disk.size {
        return Err(DiskError::Shrink {
            disk: name.into(),
            current: disk.size,
            requested: size,
        });
    }
    if size > disk.size {
        super::qemu_img::resize(&disk.dir, disk_files::DATA_DISK, &disk.format, size)?;
    }
    inspect(home, name)
}

/// `limactl disk unlock`: removes a lock unless its instance is running.
pub fn unlock(home: &Home, name: &str) -> Result<Lock, DiskError> {
    let disk = inspect(home, name)?;
    match &disk.lock {
        Lock::Held { instance } => Err(DiskError::InUseRunning {
            disk: name.into(),
            instance: instance.clone(),
        }),
        Lock::Free => Ok(Lock::Free),
        l @ Lock::Stale { .. } => {
            let link = disk.dir.join(disk_files::IN_USE_BY);
            std::fs::remove_file(&link).map_err(super::at(&link, "remove"))?;
            Ok(l.clone())
        }
    }
}

/// Locks a disk for an instance (at start). A lock of the same instance is
/// replaced; a stale lock of another instance is taken over with a warning by
/// the caller; a live one is an error.
pub fn lock_for(home: &Home, name: &str, instance_dir: &Path) -> Result<Option<String>, DiskError> {
    let disk = inspect(home, name)?;
    let me = instance_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut stale_owner = None;
    match &disk.lock {
        Lock::Held { instance } if *instance != me => {
            return Err(DiskError::Other(format!(
                "disk {} is in use by instance {}",
                quote_name(name),
                quote_name(instance)
            )));
        }
        Lock::Stale { instance } if *instance != me => stale_owner = Some(instance.clone()),
        _ => {}
    }
    let link = disk.dir.join(disk_files::IN_USE_BY);
    let tmp = disk
        .dir
        .join(format!(".in_use_by.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let locking = format!(
        "lock disk {} for instance {}:",
        quote_name(name),
        quote_name(&me)
    );
    std::os::unix::fs::symlink(instance_dir, &tmp)
        .map_err(super::at(&tmp, &format!("{locking} create the symlink")))?;
    std::fs::rename(&tmp, &link).map_err(super::at(
        &link,
        &format!("{locking} move it into place as"),
    ))?;
    Ok(stale_owner)
}

/// Releases a disk lock if it names `instance_dir`.
pub fn unlock_for(home: &Home, name: &str, instance_dir: &Path) -> Result<(), DiskError> {
    let dir = disk_dir(home, name);
    let link = dir.join(disk_files::IN_USE_BY);
    if std::fs::read_link(&link).is_ok_and(|t| t == instance_dir) {
        std::fs::remove_file(&link).map_err(super::at(&link, "remove"))?;
    }
    Ok(())
}
