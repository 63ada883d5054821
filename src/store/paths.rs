//! Every path of `LIMA_HOME`, built from the names in [`crate::layout`]
//! (re-exported here, so `store::paths::files::X` keeps working).

use std::path::{Path, PathBuf};

use crate::layout::{CACHE_DIR_NAME, DEFAULT_LIMA_HOME, XDG_CACHE_DEFAULT};
pub use crate::layout::{
    CONFIG_DIR, DISK_DIR, DISKS_DIR_LIMA, LIMA_CACHE_DIR, QEMU_ACCEL_CACHE, TEMPLATES_DIR,
    cache_files, cidata_files, config_files, disk_files, files, guest_files,
};

/// Resolves `LIMA_HOME`: `$LIMA_HOME`, else `~/.lima`; symlinks resolved when it exists.
pub fn lima_home() -> PathBuf {
    let p = match std::env::var_os("LIMA_HOME") {
        Some(h) if !h.is_empty() => PathBuf::from(h),
        _ => {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/"));
            home.join(DEFAULT_LIMA_HOME)
        }
    };
    let p = if p.is_relative() {
        std::env::current_dir().map(|d| d.join(&p)).unwrap_or(p)
    } else {
        p
    };
    std::fs::canonicalize(&p).unwrap_or(p)
}

/// A `LIMA_HOME` and the paths inside it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Home {
    pub root: PathBuf,
}

impl Home {
    pub fn new(root: impl Into<PathBuf>) -> Home {
        Home { root: root.into() }
    }

    pub fn from_env() -> Home {
        Home::new(lima_home())
    }

    pub fn config_dir(&self) -> PathBuf {
        self.root.join(CONFIG_DIR)
    }

    pub fn config_file(&self, name: &str) -> PathBuf {
        self.config_dir().join(name)
    }

    pub fn instance_dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    pub fn disk_root(&self) -> PathBuf {
        self.root.join(DISK_DIR)
    }

    pub fn disk_dir(&self, name: &str) -> PathBuf {
        self.disk_root().join(name)
    }
}

/// The download cache root: `$XDG_CACHE_HOME/lima` or `~/.cache/lima`.
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("XDG_CACHE_HOME") {
        Some(x) if !x.is_empty() => PathBuf::from(x).join(CACHE_DIR_NAME),
        _ => std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/"))
            .join(XDG_CACHE_DEFAULT)
            .join(CACHE_DIR_NAME),
    }
}

/// `~` prefix for display, as Lima's `list` shows DIR.
pub fn tilde(p: &Path) -> String {
    if let Some(home) = std::env::var_os("HOME") {
        let home = PathBuf::from(home);
        if home != Path::new("/")
            && let Ok(rest) = p.strip_prefix(&home)
        {
            return if rest.as_os_str().is_empty() {
                "~".into()
            } else {
                format!("~/{}", rest.display())
            };
        }
    }
    p.display().to_string()
}
