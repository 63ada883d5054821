//! `provision`, `probes` and `copyToHost`.

use super::{V, quote_list};
use crate::spec::types::*;
use crate::spec::yaml::{go_quote, quote_name};

/// Every provision entry, by mode.
pub(super) fn validate_provisions(v: &mut V, y: &LimaYaml, os: &str) {
    for (i, p) in y.provision.iter().flatten().enumerate() {
        validate_provision(v, i, p, os);
    }
}

/// Readiness probes: embedded scripts with a `#!` line.
pub(super) fn validate_probes(v: &mut V, y: &LimaYaml) {
    for (i, p) in y.probes.iter().flatten().enumerate() {
        let f = format!("probes[{i}]");
        if p.file.as_ref().is_some_and(|l| !l.url.is_empty()) {
            v.field(
                format!("{f}.file"),
                "must be embedded into `script` before validation",
            );
        }
        if !p.script.as_deref().unwrap_or("").starts_with("#!") {
            v.field(format!("{f}.script"), "must start with a `#!` line");
        }
        if p.mode.as_deref().is_some_and(|m| m != "readiness") {
            v.field(format!("{f}.mode"), "must be `readiness`");
        }
    }
}

/// `copyToHost` paths are absolute on both sides.
pub(super) fn validate_copy_to_host(v: &mut V, y: &LimaYaml) {
    for (i, c) in y.copy_to_host.iter().flatten().enumerate() {
        for (n, val) in [("guest", &c.guest), ("host", &c.host)] {
            match val {
                Some(p) if p.starts_with('/') => {}
                Some(p) => v.field(
                    format!("copyToHost[{i}].{n}"),
                    format!("must be an absolute path, got {}", go_quote(p)),
                ),
                None => v.field(format!("copyToHost[{i}].{n}"), "must be set"),
            }
        }
    }
}

fn validate_provision(v: &mut V, i: usize, p: &Provision, os: &str) {
    let f = format!("provision[{i}]");
    if p.file.as_ref().is_some_and(|l| !l.url.is_empty()) {
        v.field(format!("{f}.file"), "must be embedded before validation");
    }
    let mode = p.mode.as_deref().unwrap_or("system");
    if !PROVISION_MODES.contains(&mode) {
        v.field(
            format!("{f}.mode"),
            format!(
                "must be one of {}, got {}",
                quote_list(PROVISION_MODES),
                go_quote(mode)
            ),
        );
        return;
    }
    if os == "Windows" && ["ansible", "boot", "yq"].contains(&mode) {
        v.field(
            format!("{f}.mode"),
            format!("{} is not supported for Windows guests", quote_name(mode)),
        );
    }
    if p.skip_default_dependency_resolution.is_some() && mode != "dependency" {
        v.field(
            format!("{f}.skipDefaultDependencyResolution"),
            "can only be set for mode `dependency`",
        );
    }
    if p.playbook.is_some() && mode != "ansible" {
        v.field(
            format!("{f}.playbook"),
            "can only be set for mode `ansible`",
        );
    }
    match mode {
        "data" | "yq" => {
            match &p.path {
                None => {
                    v.field(format!("{f}.path"), "must be set");
                    return;
                }
                // Path, owner and format are `lima.env` lines.
                Some(path) => {
                    if v.no_control(format!("{f}.path"), path) && !path.starts_with('/') {
                        v.field(
                            format!("{f}.path"),
                            format!("must be an absolute path, got {}", go_quote(path)),
                        );
                    }
                }
            }
            if let Some(owner) = &p.owner {
                v.no_control(format!("{f}.owner"), owner);
            }
            if let Some(format) = &p.format {
                v.no_control(format!("{f}.format"), format);
            }
            if mode == "data" && p.content.is_none() {
                v.field(format!("{f}.content"), "must be set");
            }
            if mode == "yq" && p.expression.as_deref().is_none_or(str::is_empty) {
                v.field(format!("{f}.expression"), "must be set");
            }
            if let Some(perm) = &p.permissions
                && (perm.is_empty() || !perm.bytes().all(|c| (b'0'..=b'7').contains(&c)))
            {
                v.field(
                    format!("{f}.permissions"),
                    format!("must be an octal number, got {}", go_quote(perm)),
                );
            }
            if p.script.is_some() {
                v.field(
                    format!("{f}.script"),
                    format!("must not be set for mode {}", quote_name(mode)),
                );
            }
        }
        "ansible" => {
            v.warnings
                .push(format!("`{f}`: provision mode `ansible` is deprecated"));
            match &p.playbook {
                None => v.field(format!("{f}.playbook"), "must be set for mode `ansible`"),
                Some(pb) if !std::path::Path::new(pb).exists() => v.field(
                    format!("{f}.playbook"),
                    format!("refers to a missing file {}", quote_name(pb)),
                ),
                _ => {}
            }
            if p.script.is_some() {
                v.field(format!("{f}.script"), "must not be set for mode `ansible`");
            }
        }
        _ => {
            if p.script.as_deref().is_none_or(|s| s.trim().is_empty()) {
                v.field(format!("{f}.script"), "must not be empty");
            }
            for (n, set) in [
                ("content", p.content.is_some()),
                ("overwrite", p.overwrite.is_some()),
                ("owner", p.owner.is_some()),
                ("path", p.path.is_some()),
                ("permissions", p.permissions.is_some()),
                ("format", p.format.is_some()),
                ("expression", p.expression.is_some()),
            ] {
                if set {
                    v.field(
                        format!("{f}.{n}"),
                        format!("must not be set for mode {}", quote_name(mode)),
                    );
                }
            }
        }
    }
    if let Some(s) = &p.script
        && s.contains("LIMA_CIDATA")
    {
        v.warnings.push(format!(
            "`{f}.script`: LIMA_CIDATA variables are internal and may change"
        ));
    }
}
