//! Template variables (`{{.User}}`, `{{.Param.X}}`, …) and host paths.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value as J;

use super::{FillContext, Warnings};
use crate::spec::gotmpl;

pub(super) fn host_template_data(ctx: &FillContext, param: &BTreeMap<String, String>) -> J {
    serde_json::json!({
        "Dir": ctx.instance_dir.to_string_lossy(),
        "Name": ctx.instance_name,
        "Hostname": hostname_for(&ctx.instance_name),
        "UID": ctx.host.uid,
        "User": ctx.host.user,
        "Home": ctx.host.home.to_string_lossy(),
        "Param": param,
        "GlobalTempDir": "/tmp",
        "TempDir": std::env::temp_dir().to_string_lossy(),
        "Instance": ctx.instance_name,
        "LimaHome": ctx.lima_home.to_string_lossy(),
    })
}

pub(super) fn guest_template_data(
    ctx: &FillContext,
    user: &str,
    uid: u32,
    home: &str,
    param: &BTreeMap<String, String>,
) -> J {
    serde_json::json!({
        "Name": ctx.instance_name,
        "Hostname": hostname_for(&ctx.instance_name),
        "UID": uid,
        "User": user,
        "Home": home,
        "Param": param,
    })
}

/// `lima-` + the instance name with `.` and `_` replaced by `-`.
pub fn hostname_for(instance: &str) -> String {
    format!("lima-{}", instance.replace(['.', '_'], "-"))
}

pub(super) fn expand(s: &mut String, data: &J, field: &str, warnings: &mut Warnings) {
    match gotmpl::render(s, data) {
        Ok(out) => *s = out,
        Err(e) => warnings.push(format!(
            "couldn't process {field} {} as a template: {e}",
            crate::spec::yaml::quote_name(s)
        )),
    }
}

pub(super) fn expand_opt(s: &mut Option<String>, data: &J, field: &str, warnings: &mut Warnings) {
    if let Some(s) = s {
        expand(s, data, field, warnings);
    }
}

/// Expands `~` and `~/…` against the host home, then cleans the path.
pub fn expand_host_path(p: &str, home: &Path) -> String {
    let expanded = if p == "~" {
        home.to_string_lossy().into_owned()
    } else if let Some(rest) = p.strip_prefix("~/") {
        home.join(rest).to_string_lossy().into_owned()
    } else {
        p.to_string()
    };
    clean_path(&expanded)
}

/// Go's `filepath.Clean` for absolute and relative paths.
pub fn clean_path(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let abs = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !abs {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let joined = parts.join("/");
    if abs {
        format!("/{joined}")
    } else if joined.is_empty() {
        ".".into()
    } else {
        joined
    }
}
