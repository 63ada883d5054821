//! UEFI firmware for x86_64 guests (reference §2.5): only the CODE volume is
//! attached, as read-only pflash; `firmware.legacyBIOS: true` attaches none
//! (SeaBIOS, QEMU's default).

use std::path::{Path, PathBuf};

use super::QemuError;
use crate::spec::typed::Firmware;
use crate::store::paths::files;

/// System locations searched for x86_64, after the QEMU-relative ones.
pub const X86_64_SYSTEM_CANDIDATES: &[&str] = &[
    "/usr/share/edk2/x64/OVMF_CODE.4m.fd",
    "/usr/share/OVMF/OVMF_CODE.fd",
    "/usr/share/OVMF/OVMF_CODE_4M.fd",
    "/usr/share/edk2/ovmf/OVMF_CODE.fd",
    "/usr/share/qemu/ovmf-x86_64.bin",
    "/usr/share/qemu/ovmf-x86_64-4m.bin",
];

/// Every place searched, in order, for `qemu_binary` (an absolute path) and
/// the user's `home`: `~/.local/share/qemu/edk2-x86_64-code.fd`,
/// `<qemu prefix>/share/qemu/edk2-x86_64-code.fd`, then the system list.
pub fn candidates(qemu_binary: &Path, home: Option<&Path>) -> Vec<PathBuf> {
    let mut c = Vec::new();
    if let Some(h) = home {
        c.push(h.join(".local/share/qemu/edk2-x86_64-code.fd"));
    }
    if let Some(prefix) = qemu_binary.parent().and_then(Path::parent) {
        c.push(prefix.join("share/qemu/edk2-x86_64-code.fd"));
    }
    c.extend(X86_64_SYSTEM_CANDIDATES.iter().map(PathBuf::from));
    c
}

/// The firmware to attach: `None` for legacy BIOS, else `<inst>/qemu-efi-code.fd`
/// when present, else the first existing [`candidates`] entry.
pub fn find(
    firmware: &Firmware,
    instance_dir: &Path,
    qemu_binary: &Path,
) -> Result<Option<PathBuf>, QemuError> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    find_in(
        firmware,
        instance_dir,
        &candidates(qemu_binary, home.as_deref()),
    )
}

/// [`find`] with an explicit candidate list.
pub fn find_in(
    firmware: &Firmware,
    instance_dir: &Path,
    candidates: &[PathBuf],
) -> Result<Option<PathBuf>, QemuError> {
    if firmware.legacy_bios {
        return Ok(None);
    }
    let own = instance_dir.join(files::QEMU_EFI_CODE);
    if own.is_file() {
        crate::debug!("Using existing firmware ({})", own.display());
        return Ok(Some(own));
    }
    if !firmware.images.is_empty() {
        crate::warn!(
            "`firmware.images` are not fetched by this QEMU driver; place the code volume at {} to use it. Using the system firmware",
            own.display()
        );
    }
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .map(Some)
        .ok_or_else(|| QemuError::NoFirmware {
            searched: candidates.to_vec(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(legacy: bool) -> Firmware {
        Firmware {
            legacy_bios: legacy,
            images: vec![],
        }
    }

    #[test]
    fn candidate_order() {
        let c = candidates(
            Path::new("/opt/qemu/bin/qemu-system-x86_64"),
            Some(Path::new("/home/a")),
        );
        assert_eq!(
            c[0],
            Path::new("/home/a/.local/share/qemu/edk2-x86_64-code.fd")
        );
        assert_eq!(c[1], Path::new("/opt/qemu/share/qemu/edk2-x86_64-code.fd"));
        assert_eq!(c[2], Path::new("/usr/share/edk2/x64/OVMF_CODE.4m.fd"));
        assert!(c.contains(&PathBuf::from("/usr/share/OVMF/OVMF_CODE_4M.fd")));
        assert_eq!(c.len(), 2 + X86_64_SYSTEM_CANDIDATES.len());
    }

    #[test]
    fn legacy_instance_and_search() {
        let d = tempfile::tempdir().unwrap();
        let inst = d.path().join("inst");
        std::fs::create_dir(&inst).unwrap();
        let a = d.path().join("a.fd");
        let b = d.path().join("b.fd");
        std::fs::write(&b, b"fw").unwrap();
        let cands = vec![a.clone(), b.clone()];

        assert_eq!(find_in(&cfg(true), &inst, &cands).unwrap(), None);
        assert_eq!(
            find_in(&cfg(false), &inst, &cands).unwrap(),
            Some(b.clone())
        );
        std::fs::write(&a, b"fw").unwrap();
        assert_eq!(
            find_in(&cfg(false), &inst, &cands).unwrap(),
            Some(a.clone())
        );
        std::fs::write(inst.join(files::QEMU_EFI_CODE), b"fw").unwrap();
        assert_eq!(
            find_in(&cfg(false), &inst, &cands).unwrap(),
            Some(inst.join(files::QEMU_EFI_CODE))
        );

        let err = find_in(&cfg(false), d.path(), &[d.path().join("none.fd")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("firmware.legacyBIOS"), "{err}");
        assert!(err.contains("none.fd"), "{err}");
    }
}
