//! Lima's plugins: `limactl NAME ARGS…` runs an executable `limactl-NAME`
//! found in `<prefix>/libexec/lima` or on `PATH` when NAME is no command of
//! limactl's own.

use std::path::{Path, PathBuf};

/// `<prefix>` of this binary: the directory above the one it is in.
fn prefix() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.to_path_buf())
}

/// Where Lima looks for its helper executables, first.
pub fn libexec_paths() -> Vec<PathBuf> {
    prefix()
        .map(|p| vec![p.join("libexec/lima")])
        .unwrap_or_default()
}

/// Where Lima looks for shared files (guest agents, templates).
pub fn share_paths() -> Vec<PathBuf> {
    prefix()
        .map(|p| vec![p.join("share/lima")])
        .unwrap_or_default()
}

fn search_dirs() -> Vec<PathBuf> {
    let mut dirs = libexec_paths();
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The plugin `limactl-NAME`, if there is one (the first along the search path).
pub fn find(name: &str) -> Option<PathBuf> {
    if name.is_empty() || name.contains('/') {
        return None;
    }
    search_dirs()
        .into_iter()
        .map(|d| d.join(format!("limactl-{name}")))
        .find(|p| is_executable(p))
}

/// Every plugin (name, path); `limactl-url-*` helpers are not commands.
pub fn list() -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = Vec::new();
    for d in search_dirs() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut found: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        found.sort();
        for p in found {
            let Some(name) = p
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("limactl-"))
                .map(str::to_string)
            else {
                continue;
            };
            if name.starts_with("url-") || out.iter().any(|(n, _)| *n == name) || !is_executable(&p)
            {
                continue;
            }
            out.push((name, p));
        }
    }
    out
}

/// Runs the plugin in this process's place (its exit status becomes ours);
/// returns only if it could not be started.
pub fn exec(path: &Path, args: &[std::ffi::OsString]) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    std::process::Command::new(path).args(args).exec()
}
