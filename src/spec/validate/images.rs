//! `images`, `additionalDisks`, `containerd.archives` and the digests of files.

use super::{V, quote_list};
use crate::spec::names::validate_identifier;
use crate::spec::types::*;
use crate::spec::yaml::{go_quote, quote_name};

/// Images with their kernel and initrd; at least one is needed.
pub(super) fn validate_images(v: &mut V, y: &LimaYaml) {
    match &y.images {
        None => v.field("images", "must be set"),
        Some(images) if images.is_empty() => v.field("images", "must be set"),
        Some(images) => {
            for (i, img) in images.iter().enumerate() {
                let f = format!("images[{i}]");
                validate_file(
                    v,
                    &f,
                    &img.location,
                    img.arch.as_deref(),
                    img.digest.as_deref(),
                );
                if let Some(k) = &img.kernel {
                    validate_file(
                        v,
                        &format!("{f}.kernel"),
                        &k.location,
                        k.arch.as_deref(),
                        k.digest.as_deref(),
                    );
                    if k.arch != img.arch {
                        v.field(format!("{f}.kernel.arch"), "must match the image arch");
                    }
                }
                if let Some(initrd) = &img.initrd {
                    validate_file(
                        v,
                        &format!("{f}.initrd"),
                        &initrd.location,
                        initrd.arch.as_deref(),
                        initrd.digest.as_deref(),
                    );
                    if initrd.arch != img.arch {
                        v.field(format!("{f}.initrd.arch"), "must match the image arch");
                    }
                    if img.kernel.is_none() {
                        v.field(format!("{f}.initrd"), "requires `kernel` to be set too");
                    }
                }
            }
        }
    }
}

/// Additional disk names are identifiers; `fsType` and `fsArgs` are
/// `lima.env` lines (`mkfs.<fsType> <fsArgs…>` in the guest).
pub(super) fn validate_additional_disks(v: &mut V, y: &LimaYaml) {
    for (i, d) in y.additional_disks.iter().flatten().enumerate() {
        let f = format!("additionalDisks[{i}]");
        if let Err(e) = validate_identifier(&d.name) {
            v.field(format!("{f}.name"), format!("is invalid: {e}"));
        }
        if let Some(t) = &d.fs_type {
            v.no_control(format!("{f}.fsType"), t);
        }
        for (j, a) in d.fs_args.iter().flatten().enumerate() {
            v.no_control(format!("{f}.fsArgs[{j}]"), a);
        }
    }
}

/// Enabled containerd needs archives, each a valid file.
pub(super) fn validate_containerd(v: &mut V, y: &LimaYaml) {
    let containerd = y.containerd.as_ref();
    if containerd.is_some_and(|c| c.system == Some(true) || c.user == Some(true))
        && containerd.is_none_or(|c| c.archives.as_ref().is_none_or(Vec::is_empty))
    {
        v.field(
            "containerd.archives",
            "must be set when containerd is enabled",
        );
    }
    for (i, a) in containerd
        .and_then(|c| c.archives.as_ref())
        .into_iter()
        .flatten()
        .enumerate()
    {
        validate_file(
            v,
            &format!("containerd.archives[{i}]"),
            &a.location,
            a.arch.as_deref(),
            a.digest.as_deref(),
        );
    }
}

fn validate_file(v: &mut V, f: &str, location: &str, arch: Option<&str>, digest: Option<&str>) {
    if location.is_empty() {
        v.field(format!("{f}.location"), "must be set");
    } else if !location.contains("://") && !location.starts_with('/') && !location.starts_with('~')
    {
        v.field(
            format!("{f}.location"),
            format!(
                "must be a URL, an absolute path or start with `~`, got {}",
                go_quote(location)
            ),
        );
    }
    if let Some(a) = arch
        && !ARCHES.contains(&a)
    {
        v.field(
            format!("{f}.arch"),
            format!("must be one of {}, got {}", quote_list(ARCHES), go_quote(a)),
        );
    }
    if let Some(d) = digest
        && let Err(e) = validate_digest(d)
    {
        v.field(format!("{f}.digest"), e);
    }
}

/// Checks an OCI digest such as `sha256:<64 hex>`.
pub fn validate_digest(d: &str) -> Result<(), String> {
    let Some((algo, hexpart)) = d.split_once(':') else {
        return Err(format!("must be `<algorithm>:<hex>`, got {}", go_quote(d)));
    };
    let len = match algo {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => {
            return Err(format!(
                "uses unsupported digest algorithm {} (use sha256 or sha512)",
                quote_name(algo)
            ));
        }
    };
    if hexpart.len() != len
        || !hexpart
            .bytes()
            .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(format!(
            "must be {algo}: followed by {len} lowercase hex digits, got {}",
            go_quote(d)
        ));
    }
    Ok(())
}
