//! Defaults of `mountType`, `mounts` (expanded, merged by mount point, per
//! type options) and the 9p/virtiofs mount tag.

use serde_json::Value as J;
use sha2::{Digest, Sha256};

use super::template::{expand, expand_host_path, expand_opt};
use super::{FillContext, Warnings, is_unset};
use crate::spec::types::{LimaYaml, Mount};

/// The 9p/virtiofs mount tag: `lima-` + 16 hex of sha256(location:mountPoint).
pub fn mount_tag(location: &str, mount_point: &str) -> String {
    let sum = Sha256::digest(format!("{location}:{mount_point}").as_bytes());
    format!("lima-{}", hex::encode(&sum[..8]))
}

/// `mountTypesUnsupported`, `mountType` and `mountInotify`; returns the mount type.
pub(super) fn fill_mount_type(y: &mut LimaYaml) -> String {
    let unsupported = y
        .mount_types_unsupported
        .get_or_insert_with(Vec::new)
        .clone();
    if is_unset(&y.mount_type) {
        // This project's QEMU driver defaults to reverse-sshfs (it needs no
        // 9p support in the guest kernel); 9p when reverse-sshfs is excluded.
        y.mount_type = Some(if unsupported.iter().any(|t| t == "reverse-sshfs") {
            "9p".into()
        } else {
            "reverse-sshfs".into()
        });
    }
    let mount_type = y.mount_type.clone().unwrap();
    y.mount_inotify.get_or_insert(false);
    mount_type
}

/// Mounts: expand, per-entry defaults, then merge entries with the same mountPoint.
/// `guest` and `hostd` are the template data of the guest and the host side.
pub(super) fn fill_mounts(
    y: &mut LimaYaml,
    ctx: &FillContext,
    mount_type: &str,
    guest: &J,
    hostd: &J,
    w: &mut Warnings,
) {
    let host = ctx.host;
    let mut merged: Vec<Mount> = Vec::new();
    for (i, mut m) in y.mounts.take().unwrap_or_default().into_iter().enumerate() {
        expand(
            &mut m.location,
            hostd,
            &format!("`mounts[{i}].location`"),
            w,
        );
        m.location = expand_host_path(&m.location, &host.home);
        expand_opt(
            &mut m.mount_point,
            guest,
            &format!("`mounts[{i}].mountPoint`"),
            w,
        );
        if m.mount_point.as_deref().is_none_or(str::is_empty) {
            m.mount_point = Some(m.location.clone());
        }
        if let Some(prev) = merged.iter_mut().find(|p| p.mount_point == m.mount_point) {
            merge_mount(prev, m);
        } else {
            merged.push(m);
        }
    }
    for m in &mut merged {
        let writable = *m.writable.get_or_insert(false);
        let s = m.sshfs.get_or_insert_with(Default::default);
        s.cache.get_or_insert(true);
        s.follow_symlinks.get_or_insert(false);
        s.sftp_driver.get_or_insert_with(String::new);
        let p = m.nine_p.get_or_insert_with(Default::default);
        p.security_model.get_or_insert_with(|| "none".into());
        p.protocol_version.get_or_insert_with(|| "9p2000.L".into());
        p.msize.get_or_insert_with(|| "128KiB".into());
        p.cache
            .get_or_insert_with(|| if writable { "mmap" } else { "fscache" }.into());
        if mount_type == "virtiofs" {
            m.virtiofs
                .get_or_insert_with(Default::default)
                .queue_size
                .get_or_insert(1024);
        }
    }
    y.mounts = Some(merged);
}

fn merge_mount(prev: &mut Mount, m: Mount) {
    if m.writable.is_some() {
        prev.writable = m.writable;
    }
    prev.location = m.location;
    if let Some(s) = m.sshfs {
        let p = prev.sshfs.get_or_insert_with(Default::default);
        p.cache = s.cache.or(p.cache);
        p.follow_symlinks = s.follow_symlinks.or(p.follow_symlinks);
        p.sftp_driver = s.sftp_driver.or(p.sftp_driver.take());
    }
    if let Some(n) = m.nine_p {
        let p = prev.nine_p.get_or_insert_with(Default::default);
        p.security_model = n.security_model.or(p.security_model.take());
        p.protocol_version = n.protocol_version.or(p.protocol_version.take());
        p.msize = n.msize.or(p.msize.take());
        p.cache = n.cache.or(p.cache.take());
    }
    if let Some(v) = m.virtiofs {
        let p = prev.virtiofs.get_or_insert_with(Default::default);
        p.queue_size = v.queue_size.or(p.queue_size);
    }
}
