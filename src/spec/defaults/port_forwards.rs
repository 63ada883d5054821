//! Defaults of `portForwards` (Lima's `FillPortForwardDefaults`) and the
//! template variables in their socket paths.

use serde_json::Value as J;

use super::template::expand_opt;
use super::{FillContext, Warnings};
use crate::spec::types::{LimaYaml, PortForward};

/// Every rule's defaults; sockets expanded, relative host sockets put under
/// the instance's `sock` directory.
pub(super) fn fill_port_forwards(
    y: &mut LimaYaml,
    ctx: &FillContext,
    guest: &J,
    hostd: &J,
    w: &mut Warnings,
) {
    for (i, pf) in y.port_forwards.iter_mut().flatten().enumerate() {
        fill_port_forward(pf, ctx);
        expand_opt(
            &mut pf.guest_socket,
            guest,
            &format!("`portForwards[{i}].guestSocket`"),
            w,
        );
        expand_opt(
            &mut pf.host_socket,
            hostd,
            &format!("`portForwards[{i}].hostSocket`"),
            w,
        );
        if let Some(hs) = &mut pf.host_socket
            && !hs.is_empty()
            && !hs.starts_with('/')
        {
            *hs = ctx
                .instance_dir
                .join(crate::layout::files::SOCK_DIR)
                .join(&*hs)
                .to_string_lossy()
                .into();
        }
    }
}

/// Lima's `FillPortForwardDefaults`.
pub fn fill_port_forward(pf: &mut PortForward, _ctx: &FillContext) {
    if pf.proto.as_deref().is_none_or(str::is_empty) {
        pf.proto = Some("any".into());
    }
    let must_be_zero = pf.guest_ip_must_be_zero == Some(true);
    if pf.guest_ip.as_deref().is_none_or(str::is_empty) {
        pf.guest_ip = Some(if must_be_zero { "0.0.0.0" } else { "127.0.0.1" }.into());
    }
    if pf.guest_ip_must_be_zero.is_none() {
        pf.guest_ip_must_be_zero = Some(pf.guest_ip.as_deref() == Some("0.0.0.0"));
    }
    if pf.host_ip.as_deref().is_none_or(str::is_empty) {
        pf.host_ip = Some("127.0.0.1".into());
    }
    if pf.guest_port_range.is_none_or(|r| r == [0, 0]) {
        pf.guest_port_range = Some(match pf.guest_port {
            Some(p) if p != 0 => [p, p],
            _ => [1, 65535],
        });
    }
    if pf.host_port_range.is_none_or(|r| r == [0, 0]) {
        pf.host_port_range = Some(match pf.host_port {
            Some(p) if p != 0 => [p, p],
            _ => pf.guest_port_range.unwrap(),
        });
    }
    pf.reverse.get_or_insert(false);
    pf.ignore.get_or_insert(false);
    pf.static_.get_or_insert(false);
}
