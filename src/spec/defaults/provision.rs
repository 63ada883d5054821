//! Defaults of `probes`, `provision` and `copyToHost`, and the template
//! variables expanded in them.

use serde_json::Value as J;

use super::Warnings;
use super::template::expand_opt;
use crate::spec::types::LimaYaml;

/// Probes are readiness probes named `user probe i/n`.
pub(super) fn fill_probes(y: &mut LimaYaml, guest: &J, w: &mut Warnings) {
    let n_probes = y.probes.as_ref().map_or(0, Vec::len);
    for (i, p) in y.probes.iter_mut().flatten().enumerate() {
        if p.mode.as_deref().is_none_or(str::is_empty) {
            p.mode = Some("readiness".into());
        }
        if p.description.as_deref().is_none_or(str::is_empty) {
            p.description = Some(format!("user probe {}/{}", i + 1, n_probes));
        }
        p.script.get_or_insert_with(String::new);
        expand_opt(&mut p.script, guest, &format!("`probes[{i}].script`"), w);
    }
}

/// Provision entries: mode `system`, and the per-mode defaults (`data` and
/// `yq` files owned by root, mode 644).
pub(super) fn fill_provision(y: &mut LimaYaml, os: &str, guest: &J, w: &mut Warnings) {
    let owner_default = if os == "Darwin" || os == "FreeBSD" {
        "root:wheel"
    } else {
        "root:root"
    };
    for (i, p) in y.provision.iter_mut().flatten().enumerate() {
        if p.mode.as_deref().is_none_or(str::is_empty) {
            p.mode = Some("system".into());
        }
        let mode = p.mode.clone().unwrap();
        if mode == "dependency" {
            p.skip_default_dependency_resolution.get_or_insert(false);
        }
        if mode == "data" {
            p.content.get_or_insert_with(String::new);
            p.overwrite.get_or_insert(true);
        }
        if mode == "yq" {
            p.format.get_or_insert_with(|| "auto".into());
        }
        if mode == "data" || mode == "yq" {
            p.owner.get_or_insert_with(|| owner_default.into());
            p.permissions.get_or_insert_with(|| "644".into());
        }
        let f = |n: &str| format!("`provision[{i}].{n}`");
        expand_opt(&mut p.script, guest, &f("script"), w);
        expand_opt(&mut p.content, guest, &f("content"), w);
        expand_opt(&mut p.expression, guest, &f("expression"), w);
        expand_opt(&mut p.owner, guest, &f("owner"), w);
        expand_opt(&mut p.path, guest, &f("path"), w);
    }
}

/// `copyToHost`: guest paths are guest templates, host paths host templates.
pub(super) fn fill_copy_to_host(y: &mut LimaYaml, guest: &J, hostd: &J, w: &mut Warnings) {
    for (i, c) in y.copy_to_host.iter_mut().flatten().enumerate() {
        expand_opt(&mut c.guest, guest, &format!("`copyToHost[{i}].guest`"), w);
        expand_opt(&mut c.host, hostd, &format!("`copyToHost[{i}].host`"), w);
        c.skip_if_missing.get_or_insert(false);
        c.delete_on_stop.get_or_insert(false);
    }
}
