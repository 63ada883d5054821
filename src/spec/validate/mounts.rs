//! `mounts`, `mountType` and `mountInotify`.

use super::{V, quote_list};
use crate::spec::types::*;
use crate::spec::units::parse_size;
use crate::spec::yaml::{go_quote, quote_name};

/// Directories a mount must never cover in the guest.
const RESERVED_MOUNT_POINTS: &[&str] = &[
    "/", "/bin", "/dev", "/etc", "/home", "/opt", "/sbin", "/tmp", "/usr", "/var",
];

/// Locations, mount points and 9p options of every mount.
pub(super) fn validate_mounts(v: &mut V, y: &LimaYaml) {
    let home = y.user.as_ref().and_then(|u| u.home.clone());
    for (i, m) in y.mounts.iter().flatten().enumerate() {
        let f = format!("mounts[{i}]");
        // The location reaches QEMU (`-virtfs path=`) and the sshfs command;
        // the mount point `lima.env` and fstab.
        if v.no_control(format!("{f}.location"), &m.location) {
            if !(m.location.starts_with('/') || m.location.starts_with('~')) {
                v.field(
                    format!("{f}.location"),
                    format!(
                        "must be an absolute path or start with `~`, got {}",
                        go_quote(&m.location)
                    ),
                );
            } else if std::fs::metadata(&m.location).is_ok_and(|md| !md.is_dir()) {
                // A missing location is created at start; a file is an error.
                v.field(
                    format!("{f}.location"),
                    format!("refers to a non-directory path {}", quote_name(&m.location)),
                );
            }
        }
        if let Some(mp) = &m.mount_point
            && v.no_control(format!("{f}.mountPoint"), mp)
        {
            let clean = crate::spec::defaults::clean_path(mp);
            if mp.starts_with('~') {
                v.field(format!("{f}.mountPoint"), "must not start with `~`");
            } else if !mp.starts_with('/') {
                v.field(
                    format!("{f}.mountPoint"),
                    format!("must be an absolute path, got {}", go_quote(mp)),
                );
            } else if RESERVED_MOUNT_POINTS.contains(&clean.as_str()) {
                v.field(
                    format!("{f}.mountPoint"),
                    format!(
                        "must not be {} (it would hide a system directory of the guest)",
                        quote_name(&clean)
                    ),
                );
            } else if home.as_deref() == Some(clean.as_str()) {
                v.field(
                    format!("{f}.mountPoint"),
                    format!("must not be the guest user's home {}", quote_name(&clean)),
                );
            }
        }
        if let Some(p) = &m.nine_p {
            if let Some(model) = &p.security_model {
                v.no_control(format!("{f}.9p.securityModel"), model);
            }
            // Both are written into the fstab options `…,version=V,…,cache=C,…`.
            for (n, val) in [
                ("protocolVersion", &p.protocol_version),
                ("cache", &p.cache),
            ] {
                if let Some(val) = val
                    && v.no_control(format!("{f}.9p.{n}"), val)
                    && val.contains(|c: char| c == ',' || c.is_whitespace())
                {
                    v.field(
                        format!("{f}.9p.{n}"),
                        format!(
                            "must be a single mount option value (no `,` or whitespace), got {}",
                            go_quote(val)
                        ),
                    );
                }
            }
        }
        if let Some(msize) = m.nine_p.as_ref().and_then(|n| n.msize.as_ref())
            && let Err(e) = parse_size(msize)
        {
            v.field(
                format!("{f}.9p.msize"),
                format!("has an invalid value: {e}"),
            );
        }
    }
}

/// The mount type must be known and not excluded by `mountTypesUnsupported`.
pub(super) fn validate_mount_type(v: &mut V, y: &LimaYaml) {
    if let Some(mt) = &y.mount_type {
        if !MOUNT_TYPES.contains(&mt.as_str()) {
            v.field(
                "mountType",
                format!(
                    "must be one of {}, got {}",
                    quote_list(MOUNT_TYPES),
                    go_quote(mt)
                ),
            );
        } else if y.mount_types_unsupported.iter().flatten().any(|u| u == mt) {
            v.field(
                "mountType",
                format!(
                    "uses mount type {} which is explicitly unsupported (`mountTypesUnsupported`)",
                    quote_name(mt)
                ),
            );
        }
        if mt == "virtiofs" {
            v.warnings
                .push("mountType `virtiofs` is experimental on Linux hosts".into());
        }
    }
    if y.mount_inotify == Some(true) {
        v.warnings.push("`mountInotify` is experimental".into());
    }
}
