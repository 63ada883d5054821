//! `dns` (with `hostResolver`) and `networks`.

use std::net::IpAddr;

use super::V;
use crate::spec::types::*;
use crate::spec::yaml::{go_quote, quote_name};

/// DNS servers are IP addresses, and only without the host resolver.
pub(super) fn validate_dns(v: &mut V, y: &LimaYaml) {
    for (i, d) in y.dns.iter().flatten().enumerate() {
        if d.parse::<IpAddr>().is_err() {
            v.field(
                format!("dns[{i}]"),
                format!("must be an IP address, got {}", go_quote(d)),
            );
        }
    }
    if y.dns.as_ref().is_some_and(|d| !d.is_empty())
        && y.host_resolver.as_ref().and_then(|h| h.enabled) == Some(true)
    {
        v.field("dns", "must be empty when `hostResolver.enabled` is true");
    }
}

pub(super) fn validate_networks(v: &mut V, y: &LimaYaml) {
    let mut seen: Vec<&str> = Vec::new();
    for (i, n) in y.networks.iter().flatten().enumerate() {
        let f = format!("networks[{i}]");
        let set = [
            n.lima.as_deref().is_some_and(|s| !s.is_empty()),
            n.socket.as_deref().is_some_and(|s| !s.is_empty()),
            n.vz_nat == Some(true),
        ];
        match set.iter().filter(|b| **b).count() {
            0 => v.field(f.clone(), "must set one of `lima`, `socket` or `vzNAT`"),
            1 => {}
            _ => v.field(
                f.clone(),
                "must set only one of `lima`, `socket` and `vzNAT`",
            ),
        }
        if n.lima.as_deref().is_some_and(|s| !s.is_empty()) {
            v.field(
                format!("{f}.lima"),
                "is only supported on macOS hosts (socket_vmnet); use `socket` on Linux",
            );
        }
        if n.vz_nat == Some(true) {
            v.field(format!("{f}.vzNAT"), "requires vmType `vz` (macOS)");
        }
        if let Some(s) = n.socket.as_deref().filter(|s| !s.is_empty()) {
            use std::os::unix::fs::FileTypeExt;
            if let Ok(md) = std::fs::metadata(s)
                && !md.file_type().is_socket()
            {
                v.field(
                    format!("{f}.socket"),
                    format!("{} is not a socket", quote_name(s)),
                );
            }
        }
        if let Some(mac) = n.mac_address.as_deref().filter(|s| !s.is_empty()) {
            let ok = mac.split(':').count() == 6
                && mac
                    .split(':')
                    .all(|b| b.len() == 2 && b.bytes().all(|c| c.is_ascii_hexdigit()));
            if !ok {
                v.field(
                    format!("{f}.macAddress"),
                    format!("must be a 6-byte MAC address, got {}", go_quote(mac)),
                );
            }
        }
        if let Some(iface) = n.interface.as_deref().filter(|s| !s.is_empty()) {
            // (network-config and the NIC-renaming boot command name it.)
            if v.no_control(format!("{f}.interface"), iface)
                && (iface.len() >= 16 || iface.contains(char::is_whitespace) || iface.contains('/'))
            {
                v.field(
                    format!("{f}.interface"),
                    "must be shorter than 16 bytes and contain no whitespace or `/`",
                );
            }
            if iface == "eth0" {
                v.field(
                    format!("{f}.interface"),
                    "must not be `eth0` (used by the default network)",
                );
            }
            if seen.contains(&iface) {
                v.field(
                    format!("{f}.interface"),
                    format!("{} is used twice", quote_name(iface)),
                );
            }
            seen.push(iface);
        }
    }
}
