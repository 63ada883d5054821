//! Validation of a filled `lima.yaml` (Lima's `limayaml.Validate`, reference
//! §6.4). Every problem names its field path, e.g. ``field `mounts[2].mountPoint`
//! must be an absolute path``; the loader adds the file, line and column.
//!
//! [`validate`] runs the sections in Lima's order (messages come out in that
//! order); each section module checks one part of the file: `vm` (platform,
//! resources, devices), `user` (user and ssh), `images` (images, disks,
//! containerd archives, digests), `mounts`, `provision` (provision, probes,
//! copyToHost), `port_forwards`, `networks` (dns and networks), `env`
//! (param and env) and `guest` (the remaining values the guest's boot scripts
//! read).
//!
//! Every string that reaches a line of a cidata file (`lima.env`,
//! `param.env`, `etc_environment`, an fstab entry) or a boot script is checked
//! for control characters by its section ([`V::no_control`]): a newline in
//! `mountPoint` would otherwise add a line such as `PATH=/tmp/evil` to
//! `lima.env`, which `boot.sh` exports as root.

mod env;
mod guest;
mod images;
mod mounts;
mod networks;
mod port_forwards;
mod provision;
mod user;
mod vm;

#[cfg(test)]
mod tests;

pub use env::{is_param_name, unused_params};
pub use images::validate_digest;
pub use user::is_linux_user_name;

use super::types::*;
use super::yaml::{go_quote, quote_name};

/// One validation problem: the field it is about and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Path like `mounts[2].mountPoint`; empty for whole-document problems.
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.message)
    }
}

struct V {
    errors: Vec<FieldError>,
    warnings: Vec<String>,
}

impl V {
    fn err(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }
    /// ``field `F` <rest>``
    fn field(&mut self, field: impl Into<String>, rest: impl AsRef<str>) {
        let field = field.into();
        let message = format!("field {} {}", quote_name(&field), rest.as_ref());
        self.err(field, message);
    }

    /// A single-line value: no control character at all (C0, DEL, C1; a tab
    /// would also split an fstab field or a word list). Returns whether it
    /// passed.
    fn no_control(&mut self, field: impl Into<String>, value: &str) -> bool {
        self.no_control_except(field, value, &[])
    }

    /// As [`V::no_control`], but `allowed` control characters may appear
    /// (a tab in a `param` or `env` value, as Lima allows).
    fn no_control_except(
        &mut self,
        field: impl Into<String>,
        value: &str,
        allowed: &[char],
    ) -> bool {
        if !value
            .chars()
            .any(|c| c.is_control() && !allowed.contains(&c))
        {
            return true;
        }
        self.field(
            field,
            format!(
                "must not contain control characters, got {}",
                go_quote_short(value)
            ),
        );
        false
    }
}

/// `go_quote`, shortened to its first 80 characters (a value may be huge).
fn go_quote_short(s: &str) -> String {
    const MAX: usize = 80;
    match s.char_indices().nth(MAX) {
        None => go_quote(s),
        Some((i, _)) => format!("{}…", go_quote(&s[..i])),
    }
}

/// Validates a filled configuration. Returns errors and warnings.
pub fn validate(y: &LimaYaml, running_version: &str) -> (Vec<FieldError>, Vec<String>) {
    let mut v = V {
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let (os, arch, vm_type) = vm::validate_platform(&mut v, y, running_version);
    user::validate_user(&mut v, y, os, vm_type);
    images::validate_images(&mut v, y);
    vm::validate_resources(&mut v, y);
    images::validate_additional_disks(&mut v, y);
    mounts::validate_mounts(&mut v, y);
    user::validate_ssh(&mut v, y);
    mounts::validate_mount_type(&mut v, y);
    provision::validate_provisions(&mut v, y, os);
    images::validate_containerd(&mut v, y);
    provision::validate_probes(&mut v, y);
    port_forwards::validate_port_forwards(&mut v, y);
    provision::validate_copy_to_host(&mut v, y);
    networks::validate_dns(&mut v, y);
    networks::validate_networks(&mut v, y);
    env::validate_env(&mut v, y);
    guest::validate_guest(&mut v, y);
    vm::validate_devices(&mut v, y, os, arch);
    (v.errors, v.warnings)
}

fn quote_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| quote_name(s))
        .collect::<Vec<_>>()
        .join(", ")
}

fn validate_port(v: &mut V, f: &str, port: i64) {
    if port <= 0 {
        v.field(f, format!("must be > 0, got {port}"));
    } else if port == 22 {
        v.field(f, "must not be 22");
    } else if port >= 65536 {
        v.field(f, format!("must be < 65536, got {port}"));
    }
}

/// A semver `major.minor.patch` (pre-release and build metadata ignored).
pub fn semver_parse(s: &str) -> Option<(u64, u64, u64)> {
    let s = s.trim().trim_start_matches('v');
    let core = s.split(['-', '+']).next()?;
    let mut it = core.split('.');
    let major = it.next()?.parse().ok()?;
    let minor = it.next().map_or(Some(0), |m| m.parse().ok())?;
    let patch = it.next().map_or(Some(0), |p| p.parse().ok())?;
    if it.next().is_some() {
        return None;
    }
    Some((major, minor, patch))
}
