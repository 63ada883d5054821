//! Defaults of `ssh` and `user` (the guest user derived from the host user).

use std::collections::BTreeMap;

use super::template::{expand_opt, guest_template_data};
use super::{FillContext, Warnings};
use crate::spec::types::LimaYaml;

/// No fixed SSH port (0: a free one at each start), no forwarding.
pub(super) fn fill_ssh(y: &mut LimaYaml) {
    let ssh = y.ssh.get_or_insert_with(Default::default);
    ssh.local_port.get_or_insert(0);
    ssh.load_dot_ssh_pub_keys.get_or_insert(false);
    ssh.forward_agent.get_or_insert(false);
    ssh.forward_x11.get_or_insert(false);
    ssh.forward_x11_trusted.get_or_insert(false);
    ssh.over_vsock.get_or_insert(false);
}

/// The guest user as the template variables see it.
pub(super) struct GuestUser {
    pub name: String,
    pub uid: u32,
    pub home: String,
}

/// `user`: the host's name, comment and uid, the OS's shell and a
/// `<name>.guest` home (a template, expanded here).
pub(super) fn fill_user(
    y: &mut LimaYaml,
    ctx: &FillContext,
    os: &str,
    param: &BTreeMap<String, String>,
    w: &mut Warnings,
) -> GuestUser {
    let host = ctx.host;
    let user = y.user.get_or_insert_with(Default::default);
    if user.name.as_deref().is_none_or(str::is_empty) {
        user.name = Some(host.user.clone());
    }
    if user.comment.is_none() {
        user.comment = Some(host.comment.clone());
    }
    user.uid.get_or_insert(host.uid);
    if user.shell.as_deref().is_none_or(str::is_empty) {
        user.shell = Some(default_shell(os).into());
    }
    user.passwordless_sudo.get_or_insert(os != "Darwin");
    if user.home.as_deref().is_none_or(str::is_empty) {
        user.home = Some(if os == "Darwin" {
            "/Users/{{.User}}.guest".into()
        } else {
            "/home/{{.User}}.guest".into()
        });
    }
    let user_name = user.name.clone().unwrap();
    let uid = user.uid.unwrap();
    {
        let data = guest_template_data(ctx, &user_name, uid, "", param);
        expand_opt(&mut user.home, &data, "`user.home`", w);
    }
    GuestUser {
        name: user_name,
        uid,
        home: user.home.clone().unwrap(),
    }
}

fn default_shell(os: &str) -> &'static str {
    match os {
        "Darwin" => "/bin/zsh",
        "FreeBSD" => "/bin/sh",
        "Windows" => "cmd.exe",
        _ => "/bin/bash",
    }
}
