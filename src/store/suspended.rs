//! A suspended instance's saved state: QEMU's migration stream in
//! `vmstate` and what it was made with in `vmstate.json`.
//!
//! The stream is written to a `.tmp` name, fsynced and renamed; the metadata
//! is written (atomically) after that, so it is the commit marker: a state is
//! resumable only when both files are there and the stream has the recorded
//! size. Anything less (a suspend killed half-way) is no saved state at all.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::paths::files;

/// What a saved state was made with. A resume needs the very QEMU command
/// line (devices, memory, disks) the state was saved from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SavedState {
    /// [`super::instance::fingerprint`] of the configuration the VM was started with.
    pub config_fingerprint: String,
    /// The QEMU binary and its arguments (without `-incoming`).
    pub qemu_binary: String,
    pub qemu_argv: Vec<String>,
    /// `qemu-system-* --version`, first line: a different QEMU may not load the stream.
    #[serde(default)]
    pub qemu_version: String,
    /// The SSH port QEMU forwards (part of the argv): kept on resume.
    pub ssh_local_port: u16,
    /// The cloud-init instance id the guest booted with: its readiness
    /// markers hold it, and cidata keeps it.
    pub iid: String,
    /// When it was saved (RFC 3339).
    pub saved_at: String,
    /// Size of `vmstate` in bytes.
    pub size: u64,
    /// The guest had met every readiness requirement when it was saved
    /// (states from before this field: not known, so no).
    #[serde(default)]
    pub ready: bool,
}

impl SavedState {
    /// Why the state cannot be resumed with `binary argv` (`None`: it can).
    pub fn mismatch(&self, binary: &str, argv: &[String], version: &str) -> Option<String> {
        if self.qemu_binary != binary {
            return Some(format!(
                "the QEMU binary changed ({} → {binary})",
                self.qemu_binary
            ));
        }
        if self.qemu_version != version {
            return Some(format!(
                "the QEMU version changed ({:?} → {version:?})",
                self.qemu_version
            ));
        }
        if self.qemu_argv != argv {
            let gone: Vec<&str> = self
                .qemu_argv
                .iter()
                .filter(|a| !argv.contains(a))
                .map(String::as_str)
                .collect();
            let new: Vec<&str> = argv
                .iter()
                .filter(|a| !self.qemu_argv.contains(a))
                .map(String::as_str)
                .collect();
            return Some(format!(
                "the QEMU command line changed (was: {}; now: {})",
                if gone.is_empty() {
                    "-".into()
                } else {
                    gone.join(" ")
                },
                if new.is_empty() {
                    "-".into()
                } else {
                    new.join(" ")
                }
            ));
        }
        None
    }
}

/// The saved state of the instance in `dir`, if it is complete.
pub fn read(dir: &Path) -> Option<SavedState> {
    let meta: SavedState =
        serde_json::from_slice(&std::fs::read(dir.join(files::VM_STATE_META)).ok()?).ok()?;
    let len = std::fs::metadata(dir.join(files::VM_STATE)).ok()?.len();
    (len == meta.size && len > 0).then_some(meta)
}

/// Whether any piece of a saved state (complete or not) is in `dir`.
pub fn any_present(dir: &Path) -> bool {
    [
        files::VM_STATE_META,
        files::VM_STATE,
        files::VM_STATE_PARTIAL,
    ]
    .iter()
    .any(|f| dir.join(f).exists())
}

/// Makes the stream QEMU wrote to [`files::VM_STATE_PARTIAL`] the saved
/// state described by `meta` (its `size` is filled in here).
pub fn commit(dir: &Path, mut meta: SavedState) -> std::io::Result<SavedState> {
    let partial = dir.join(files::VM_STATE_PARTIAL);
    let f = std::fs::File::open(&partial)?;
    f.sync_all()?;
    meta.size = f.metadata()?.len();
    drop(f);
    if meta.size == 0 {
        return Err(std::io::Error::other(format!(
            "{} is empty: QEMU wrote no state",
            partial.display()
        )));
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&partial, dir.join(files::VM_STATE))?;
    super::atomic::write(
        &dir.join(files::VM_STATE_META),
        &serde_json::to_vec_pretty(&meta).expect("state serializes"),
        0o600,
    )?;
    Ok(meta)
}

/// Removes the saved state: the marker first, so a crash half-way leaves
/// no state rather than a broken one.
pub fn discard(dir: &Path) -> std::io::Result<()> {
    for f in [
        files::VM_STATE_META,
        files::VM_STATE,
        files::VM_STATE_PARTIAL,
    ] {
        match std::fs::remove_file(dir.join(f)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    super::atomic::sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> SavedState {
        SavedState {
            config_fingerprint: "f".into(),
            qemu_binary: "/usr/bin/qemu-system-x86_64".into(),
            qemu_argv: vec!["-m".into(), "2048".into()],
            qemu_version: "QEMU emulator version 7.2.22".into(),
            ssh_local_port: 60022,
            iid: "iid-1".into(),
            saved_at: "2026-01-01T00:00:00Z".into(),
            size: 0,
            ready: true,
        }
    }

    #[test]
    fn only_a_committed_complete_stream_is_a_saved_state() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        assert_eq!(read(dir), None);
        // QEMU is writing (or was killed writing): no state.
        std::fs::write(dir.join(files::VM_STATE_PARTIAL), b"stream").unwrap();
        assert_eq!(read(dir), None);
        assert!(any_present(dir));
        let m = commit(dir, meta()).unwrap();
        assert_eq!(m.size, 6);
        assert_eq!(read(dir), Some(m.clone()));
        assert!(!dir.join(files::VM_STATE_PARTIAL).exists());
        // A truncated stream is not resumable.
        std::fs::write(dir.join(files::VM_STATE), b"str").unwrap();
        assert_eq!(read(dir), None);
        std::fs::write(dir.join(files::VM_STATE), b"stream").unwrap();
        assert_eq!(read(dir), Some(m));
        use std::os::unix::fs::PermissionsExt;
        for f in [files::VM_STATE, files::VM_STATE_META] {
            let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        discard(dir).unwrap();
        assert_eq!(read(dir), None);
        assert!(!any_present(dir));
        // Discarding nothing is fine.
        discard(dir).unwrap();
    }

    #[test]
    fn an_empty_stream_is_refused() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(files::VM_STATE_PARTIAL), b"").unwrap();
        assert!(commit(d.path(), meta()).is_err());
        assert_eq!(read(d.path()), None);
    }

    #[test]
    fn a_mismatch_says_what_changed() {
        let m = meta();
        let (b, v) = (m.qemu_binary.clone(), m.qemu_version.clone());
        assert_eq!(m.mismatch(&b, &m.qemu_argv, &v), None);
        let why = m.mismatch(&b, &["-m".into(), "4096".into()], &v).unwrap();
        assert!(why.contains("was: 2048; now: 4096"), "{why}");
        assert!(
            m.mismatch("/other", &m.qemu_argv, &v)
                .unwrap()
                .contains("binary")
        );
        assert!(
            m.mismatch(&b, &m.qemu_argv, "8.0")
                .unwrap()
                .contains("version")
        );
    }
}
