//! `user` and `ssh`.

use super::{V, validate_port};
use crate::spec::types::LimaYaml;
use crate::spec::yaml::go_quote;

/// The guest user: shell, name, home and passwordless sudo.
pub(super) fn validate_user(v: &mut V, y: &LimaYaml, os: &str, vm_type: &str) {
    if let Some(user) = &y.user {
        // Shell, home and comment are `lima.env` lines and `/etc/passwd` fields.
        if let Some(comment) = &user.comment {
            v.no_control("user.comment", comment);
        }
        if let Some(shell) = &user.shell
            && v.no_control("user.shell", shell)
        {
            if os == "Windows" {
                let base = shell
                    .rsplit(['/', '\\'])
                    .next()
                    .unwrap_or("")
                    .to_lowercase();
                if !["cmd.exe", "powershell.exe", "pwsh.exe"].contains(&base.as_str()) {
                    v.field("user.shell", "must be cmd.exe, powershell.exe or pwsh.exe");
                }
            } else if !shell.starts_with('/') {
                v.field(
                    "user.shell",
                    format!("must be an absolute path, got {}", go_quote(shell)),
                );
            }
        }
        if let Some(name) = &user.name
            && !is_linux_user_name(name)
        {
            v.field(
                "user.name",
                format!("must match ^[a-z_][a-z0-9_-]*$, got {}", go_quote(name)),
            );
        }
        if let Some(home) = &user.home
            && v.no_control("user.home", home)
            && !home.starts_with('/')
        {
            v.field(
                "user.home",
                format!("must be an absolute path, got {}", go_quote(home)),
            );
        }
        match (user.passwordless_sudo, os, vm_type) {
            (Some(true), "Darwin", _) => v.field(
                "user.passwordlessSudo",
                "must not be true for Darwin guests",
            ),
            (Some(false), _, "wsl2") => v.field("user.passwordlessSudo", "must be true for wsl2"),
            (Some(false), o, _) if o != "Darwin" && y.plain != Some(true) => v.field(
                "user.passwordlessSudo",
                "can only be false in plain mode (`plain: true`)",
            ),
            (Some(false), _, _) => v
                .warnings
                .push("`user.passwordlessSudo: false` is experimental".into()),
            _ => {}
        }
    }
}

/// `ssh.localPort` (0 picks a free port).
pub(super) fn validate_ssh(v: &mut V, y: &LimaYaml) {
    if let Some(port) = y.ssh.as_ref().and_then(|s| s.local_port)
        && port != 0
    {
        validate_port(v, "ssh.localPort", port);
    }
}

/// `^[a-z_][a-z0-9_-]*$`
pub fn is_linux_user_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}
