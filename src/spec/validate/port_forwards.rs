//! `portForwards`.

use std::net::IpAddr;

use super::{V, validate_port};
use crate::spec::types::*;
use crate::spec::yaml::go_quote;

/// Every rule.
pub(super) fn validate_port_forwards(v: &mut V, y: &LimaYaml) {
    for (i, pf) in y.port_forwards.iter().flatten().enumerate() {
        validate_port_forward(v, i, pf);
    }
}

fn validate_port_forward(v: &mut V, i: usize, pf: &PortForward) {
    let f = format!("portForwards[{i}]");
    let guest_ip = pf.guest_ip.as_deref().unwrap_or("127.0.0.1");
    for (n, ip) in [("guestIP", &pf.guest_ip), ("hostIP", &pf.host_ip)] {
        if let Some(ip) = ip
            && ip.parse::<IpAddr>().is_err()
        {
            v.field(
                format!("{f}.{n}"),
                format!("must be an IP address, got {}", go_quote(ip)),
            );
        }
    }
    if pf.guest_ip_must_be_zero == Some(true) && guest_ip != "0.0.0.0" {
        v.field(
            format!("{f}.guestIPMustBeZero"),
            "can only be true when `guestIP` is 0.0.0.0",
        );
    }
    let guest_socket = pf.guest_socket.as_deref().unwrap_or("");
    let host_socket = pf.host_socket.as_deref().unwrap_or("");
    if guest_socket.is_empty() {
        if let Some(p) = pf.guest_port {
            validate_port(v, &format!("{f}.guestPort"), p);
        }
    } else {
        if pf.guest_port.is_some_and(|p| p != 0) {
            v.field(
                format!("{f}.guestPort"),
                "must not be set when `guestSocket` is set",
            );
        }
        if !guest_socket.starts_with('/') {
            v.field(format!("{f}.guestSocket"), "must be an absolute path");
        }
    }
    if host_socket.is_empty() {
        if let Some(p) = pf.host_port {
            validate_port(v, &format!("{f}.hostPort"), p);
        }
    } else {
        if pf.host_port.is_some_and(|p| p != 0) {
            v.field(
                format!("{f}.hostPort"),
                "must not be set when `hostSocket` is set",
            );
        }
        if !host_socket.starts_with('/') {
            v.field(format!("{f}.hostSocket"), "must be an absolute path");
        }
        if host_socket.len() >= 108 {
            v.field(
                format!("{f}.hostSocket"),
                "is too long for a unix socket path (must be < 108 bytes)",
            );
        }
    }
    for (n, range) in [
        ("guestPortRange", pf.guest_port_range),
        ("hostPortRange", pf.host_port_range),
    ] {
        if let Some([a, b]) = range {
            if !(1..=65535).contains(&a) || !(1..=65535).contains(&b) {
                v.field(
                    format!("{f}.{n}"),
                    format!("must be within 1–65535, got [{a}, {b}]"),
                );
            } else if a > b {
                v.field(
                    format!("{f}.{n}"),
                    format!("must be ordered (start <= end), got [{a}, {b}]"),
                );
            }
        }
    }
    if let (Some(p), Some([a, b])) = (pf.guest_port, pf.guest_port_range)
        && guest_socket.is_empty()
        && p != 0
        && (p != a || p != b)
    {
        v.field(
            format!("{f}.guestPort"),
            format!("{p} does not match `guestPortRange` [{a}, {b}]"),
        );
    }
    if let (Some(p), Some([a, b])) = (pf.host_port, pf.host_port_range)
        && host_socket.is_empty()
        && p != 0
        && (p != a || p != b)
    {
        v.field(
            format!("{f}.hostPort"),
            format!("{p} does not match `hostPortRange` [{a}, {b}]"),
        );
    }
    if let (Some(g), Some(h)) = (pf.guest_port_range, pf.host_port_range)
        && host_socket.is_empty()
        && guest_socket.is_empty()
        && g[1] - g[0] != h[1] - h[0]
    {
        v.field(
            format!("{f}.hostPortRange"),
            "must span as many ports as `guestPortRange`",
        );
    }
    if !host_socket.is_empty()
        && guest_socket.is_empty()
        && let Some([a, b]) = pf.guest_port_range
        && a != b
    {
        v.field(
            format!("{f}.hostSocket"),
            "can only forward a single guest port",
        );
    }
    if let Some(proto) = &pf.proto
        && !["tcp", "udp", "any"].contains(&proto.as_str())
    {
        v.field(
            format!("{f}.proto"),
            format!("must be `tcp`, `udp` or `any`, got {}", go_quote(proto)),
        );
    }
    if pf.reverse == Some(true) && (guest_socket.is_empty() || host_socket.is_empty()) {
        v.field(
            format!("{f}.reverse"),
            "requires both `guestSocket` and `hostSocket`",
        );
    }
}
