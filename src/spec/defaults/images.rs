//! Defaults of `images`, `additionalDisks`, `firmware.images` and
//! `containerd.archives`: every file gets the instance's arch when it names none.

use super::is_unset;
use crate::spec::types::{File, LimaYaml};

/// Images, and their kernel and initrd, default to the instance's arch.
pub(super) fn fill_images(y: &mut LimaYaml, arch: &str) {
    for img in y.images.iter_mut().flatten() {
        if is_unset(&img.arch) {
            img.arch = Some(arch.to_string());
        }
        let img_arch = img.arch.clone();
        if let Some(k) = &mut img.kernel
            && is_unset(&k.arch)
        {
            k.arch = img_arch.clone();
        }
        if let Some(i) = &mut img.initrd
            && is_unset(&i.arch)
        {
            i.arch = img_arch.clone();
        }
    }
}

/// Additional disks are formatted as ext4 unless told otherwise.
pub(super) fn fill_additional_disks(y: &mut LimaYaml) {
    for d in y.additional_disks.iter_mut().flatten() {
        d.format.get_or_insert(true);
        d.fs_type.get_or_insert_with(|| "ext4".into());
        d.fs_args.get_or_insert_with(Vec::new);
    }
}

/// UEFI unless `legacyBIOS`; firmware images default to the instance's arch.
pub(super) fn fill_firmware(y: &mut LimaYaml, arch: &str) {
    let fw = y.firmware.get_or_insert_with(Default::default);
    fw.legacy_bios.get_or_insert(false);
    for img in fw.images.get_or_insert_with(Vec::new) {
        if is_unset(&img.arch) {
            img.arch = Some(arch.to_string());
        }
    }
}

/// `upgradePackages`, `containerd` (user containerd on Linux x86_64/aarch64,
/// Lima's pinned nerdctl-full archives) and `guestInstallPrefix`.
pub(super) fn fill_containerd(y: &mut LimaYaml, os: &str, arch: &str) {
    y.upgrade_packages.get_or_insert(false);
    let containerd = y.containerd.get_or_insert_with(Default::default);
    containerd.system.get_or_insert(false);
    containerd
        .user
        .get_or_insert(os == "Linux" && (arch == "x86_64" || arch == "aarch64"));
    let archives = containerd.archives.get_or_insert_with(Vec::new);
    if archives.is_empty() {
        *archives = default_containerd_archives();
    }
    for a in archives {
        if is_unset(&a.arch) {
            a.arch = Some(arch.to_string());
        }
    }
    y.guest_install_prefix
        .get_or_insert_with(|| "/usr/local".into());
}

/// The nerdctl-full archives used when `containerd.archives` is empty
/// (nerdctl v2.1.4, the release and digests Lima pins).
fn default_containerd_archives() -> Vec<File> {
    const VERSION: &str = "2.1.4";
    [
        (
            "amd64",
            "x86_64",
            "sha256:03c1a3194b6e5fec02d866a35d0029c694b4cedb865b28f931187aa0c85dd125",
        ),
        (
            "arm64",
            "aarch64",
            "sha256:124b171778f8cc9bb317e094e5a92de5faf6d1bb5f5c9ded4b82a55df2c3c295",
        ),
    ]
    .into_iter()
    .map(|(goarch, arch, digest)| File {
        location: format!(
            "https://github.com/containerd/nerdctl/releases/download/v{VERSION}/nerdctl-full-{VERSION}-linux-{goarch}.tar.gz"
        ),
        arch: Some(arch.into()),
        digest: Some(digest.into()),
    })
    .collect()
}
