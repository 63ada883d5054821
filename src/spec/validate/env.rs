//! `param` and `env`, and Lima's rule that every param is used.

use super::V;
use crate::spec::types::LimaYaml;

/// Param names and values, env names and values: each pair is one
/// `KEY=value` line (`param.env`, `etc_environment`, the here-document of a
/// `mode: boot` script), so a value holds no control character but a tab.
pub(super) fn validate_env(v: &mut V, y: &LimaYaml) {
    for (k, val) in y.param.iter().flatten() {
        if !is_param_name(k) {
            v.field(
                format!("param.{k}"),
                "name must match ^[a-zA-Z][a-zA-Z0-9_]*$",
            );
        }
        v.no_control_except(format!("param.{k}"), val, &['\t']);
    }
    for (k, val) in y.env.iter().flatten() {
        if !is_env_name(k) {
            v.field(
                format!("env.{k}"),
                "is not a valid environment variable name (letters, digits and `_`, not starting with a digit)",
            );
        }
        v.no_control_except(format!("env.{k}"), val, &['\t']);
    }
}

/// `^[A-Za-z_][A-Za-z0-9_]*$`: what `/etc/environment` and `export` accept.
fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `^[a-zA-Z][a-zA-Z0-9_]*$`
pub fn is_param_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Lima's rule that every `param` key is used somewhere: an unused key is
/// almost always a typo.
pub fn unused_params(y: &LimaYaml) -> Vec<String> {
    let Some(params) = &y.param else {
        return Vec::new();
    };
    // Lima reads an ansible playbook (the path only names it) to find the
    // params it uses; an unreadable one uses none.
    let playbooks: Vec<String> = y
        .provision
        .iter()
        .flatten()
        .filter_map(|p| p.playbook.as_deref())
        .filter_map(|path| {
            use std::io::Read;
            let mut text = String::new();
            std::fs::File::open(path)
                .ok()?
                .take(crate::spec::load::MAX_TEMPLATE_BYTES)
                .read_to_string(&mut text)
                .ok()?;
            Some(text)
        })
        .collect();
    let mut texts: Vec<&str> = playbooks.iter().map(String::as_str).collect();
    for p in y.provision.iter().flatten() {
        for s in [
            &p.script,
            &p.content,
            &p.expression,
            &p.owner,
            &p.path,
            &p.playbook,
        ]
        .into_iter()
        .flatten()
        {
            texts.push(s);
        }
    }
    for p in y.probes.iter().flatten() {
        texts.extend(p.script.as_deref());
    }
    for c in y.copy_to_host.iter().flatten() {
        texts.extend(c.guest.as_deref());
        texts.extend(c.host.as_deref());
    }
    for pf in y.port_forwards.iter().flatten() {
        texts.extend(pf.guest_socket.as_deref());
        texts.extend(pf.host_socket.as_deref());
    }
    for m in y.mounts.iter().flatten() {
        texts.push(&m.location);
        texts.extend(m.mount_point.as_deref());
    }
    let mut unused = Vec::new();
    for key in params.keys() {
        if key == "internal_netplanOptional" {
            continue;
        }
        let k = regex::escape(key);
        let re = regex::Regex::new(&format!(
            r"\{{\{{[^}}]*\.Param\.{k}\b[^}}]*\}}\}}|\bPARAM_{k}\b"
        ))
        .unwrap();
        if !texts.iter().any(|t| re.is_match(t)) {
            unused.push(key.clone());
        }
    }
    unused
}
