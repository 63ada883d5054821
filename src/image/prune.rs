//! `limactl prune`: empty the download cache, or keep the entries that
//! templates and instances refer to (reference §7.6).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use super::cache::{self, Cache, dir_size};
use super::digest::sha256_hex;
use super::{ImageError, io_err};
use crate::spec::LoadEnv;
use crate::spec::Spec;
use crate::store::paths::files;

/// What a prune did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Removed entry directories and the URL each held.
    pub removed: Vec<(PathBuf, Option<String>)>,
    /// Entries kept because something refers to them.
    pub kept: usize,
    /// Entries left alone because a download holds their lock.
    pub busy: Vec<PathBuf>,
    /// Partial/temporary files removed from kept entries.
    pub stale_files: Vec<PathBuf>,
    pub bytes_freed: u64,
}

fn remove_entry(entry: &cache::Entry, report: &mut PruneReport) -> Result<(), ImageError> {
    let Some(_lock) = entry
        .try_lock()
        .map_err(|e| io_err("cannot lock", &entry.dir, e))?
    else {
        report.busy.push(entry.dir.clone());
        return Ok(());
    };
    let size = entry.size();
    let url = entry.url();
    fs::remove_dir_all(&entry.dir).map_err(|e| io_err("cannot remove", &entry.dir, e))?;
    report.bytes_freed += size;
    report.removed.push((entry.dir.clone(), url));
    Ok(())
}

/// Removes the whole cache root (entries being downloaded right now are
/// left alone, and so is the root then).
pub fn prune_all(cache_root: &Path) -> Result<PruneReport, ImageError> {
    let mut report = PruneReport::default();
    let c = Cache::new(cache_root);
    for entry in c
        .entries()
        .map_err(|e| io_err("cannot read", &c.entries_dir(), e))?
    {
        remove_entry(&entry, &mut report)?;
    }
    if !report.busy.is_empty() {
        return Ok(report);
    }
    let rest = dir_size(cache_root);
    match fs::remove_dir_all(cache_root) {
        Ok(()) => report.bytes_freed += rest,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("cannot remove", cache_root, e)),
    }
    Ok(report)
}

/// Removes every entry whose URL is not in `keep` (a set of locations), and
/// stale partial files of the kept ones.
pub fn prune_unreferenced(
    cache_root: &Path,
    keep: &BTreeSet<String>,
) -> Result<PruneReport, ImageError> {
    let keys: BTreeSet<String> = keep.iter().map(|u| sha256_hex(u)).collect();
    let mut report = PruneReport::default();
    let c = Cache::new(cache_root);
    for entry in c
        .entries()
        .map_err(|e| io_err("cannot read", &c.entries_dir(), e))?
    {
        if !keys.contains(&entry.key()) {
            remove_entry(&entry, &mut report)?;
            continue;
        }
        report.kept += 1;
        let Some(_lock) = entry
            .try_lock()
            .map_err(|e| io_err("cannot lock", &entry.dir, e))?
        else {
            report.busy.push(entry.dir.clone());
            continue;
        };
        for f in entry.stale_files() {
            let size = dir_size(&f);
            if fs::remove_file(&f).is_ok() {
                report.bytes_freed += size;
                report.stale_files.push(f);
            }
        }
    }
    Ok(report)
}

fn locations_of(s: &Spec, out: &mut BTreeSet<String>) {
    for img in &s.images {
        out.insert(img.location.clone());
        if let Some(k) = &img.kernel {
            out.insert(k.location.clone());
        }
        if let Some(i) = &img.initrd {
            out.insert(i.location.clone());
        }
    }
    for a in &s.containerd.archives {
        out.insert(a.location.clone());
    }
    for i in &s.firmware.images {
        out.insert(i.location.clone());
    }
}

/// Every image, kernel, initrd, containerd archive and firmware location of
/// every template (embedded, defaults filled) and every instance in
/// `env.lima_home`. Templates or instances that fail to load are skipped with
/// a warning (returned); an instance directory without lima.yaml is an error.
pub fn referenced_locations(env: &LoadEnv) -> Result<(BTreeSet<String>, Vec<String>), ImageError> {
    let mut out = BTreeSet::new();
    let mut warnings = Vec::new();
    let mut no_stdin = || Err(std::io::Error::other("stdin is not read by prune"));
    if let Ok(rd) = fs::read_dir(&env.lima_home) {
        let mut dirs: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        dirs.sort();
        for dir in dirs {
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.starts_with('.') || name.starts_with('_') || !dir.is_dir() {
                continue;
            }
            let yaml = dir.join(files::LIMA_YAML);
            if !yaml.is_file() {
                return Err(ImageError::InstanceInUse { name, dir });
            }
            let mut w = Vec::new();
            match crate::spec::resolve::load_locator(
                &yaml.display().to_string(),
                Some(&name),
                env,
                false,
                &mut no_stdin,
                &mut w,
            ) {
                Ok(l) => locations_of(&l.resolved.spec, &mut out),
                Err(e) => warnings.push(format!("skipping instance `{name}`: {e}")),
            }
        }
    }
    for (name, _) in env.store.list() {
        let mut w = Vec::new();
        match crate::spec::resolve::load_locator(
            &format!("template:{name}"),
            None,
            env,
            true,
            &mut no_stdin,
            &mut w,
        ) {
            Ok(l) => locations_of(&l.resolved.spec, &mut out),
            Err(e) => warnings.push(format!("skipping template `{name}`: {e}")),
        }
    }
    Ok((out, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry_with(c: &Cache, url: &str, data: &[u8]) -> cache::Entry {
        let e = c.entry(url);
        e.create().unwrap();
        fs::write(e.url_file(), url).unwrap();
        fs::write(e.data(), data).unwrap();
        e
    }

    #[test]
    fn prune_keeps_referred_and_cleans_partials() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("lima");
        let c = Cache::new(&root);
        let keep = entry_with(&c, "https://a/keep.img", b"1234");
        fs::write(keep.part(), b"xx").unwrap();
        fs::write(keep.dir.join("data.tmp.1.0"), b"yyy").unwrap();
        let gone = entry_with(&c, "https://a/gone.img", b"123456");
        let set: BTreeSet<String> = ["https://a/keep.img".to_string()].into();
        let r = prune_unreferenced(&root, &set).unwrap();
        assert_eq!(r.kept, 1);
        assert_eq!(r.removed.len(), 1);
        assert_eq!(r.removed[0].1.as_deref(), Some("https://a/gone.img"));
        assert!(!gone.dir.exists());
        assert!(keep.data().exists() && !keep.part().exists());
        assert_eq!(r.stale_files.len(), 2);
        assert_eq!(r.bytes_freed, 6 + "https://a/gone.img".len() as u64 + 2 + 3);

        // A locked entry is left alone.
        let held = keep.lock("x").unwrap();
        let r = prune_all(&root).unwrap();
        assert_eq!(r.busy, vec![keep.dir.clone()]);
        assert!(keep.data().exists());
        drop(held);
        let r = prune_all(&root).unwrap();
        assert!(r.bytes_freed >= 4);
        assert!(!root.exists());
        // Pruning nothing is fine.
        assert_eq!(prune_all(&root).unwrap().bytes_freed, 0);
    }
}
