//! `meta-data` and `network-config` (reference §3.2, §3.4).

use super::Facts;
use super::yaml::{Y, emit};

/// `instance-id` changes every start, so cloud-init re-applies the network
/// configuration and re-runs per-instance modules.
pub(crate) fn meta_data(f: &Facts) -> String {
    emit(&Y::map([
        ("instance-id", Y::s(&f.iid)),
        ("local-hostname", Y::s(&f.hostname)),
    ]))
}

/// Netplan v2: `eth0` (slirp) matched by MAC with route metric 200, then the
/// configured `networks[]`.
pub(crate) fn network_config(f: &Facts) -> String {
    let mut ethernets = Vec::new();
    for nic in &f.nics {
        let mut e: Vec<(&str, Y)> = vec![
            ("match", Y::map([("macaddress", Y::s(&nic.mac))])),
            ("dhcp4", Y::Bool(true)),
            ("set-name", Y::s(&nic.interface)),
        ];
        if f.netplan_optional {
            e.push(("optional", Y::Bool(true)));
        }
        e.push((
            "dhcp4-overrides",
            Y::map([("route-metric", Y::Int(nic.metric))]),
        ));
        e.push(("dhcp-identifier", Y::s("mac")));
        if nic.interface == super::SLIRP_NIC && !f.dns.is_empty() {
            e.push((
                "nameservers",
                Y::map([("addresses", Y::strs(f.dns.iter().cloned()))]),
            ));
        }
        ethernets.push((nic.interface.clone(), Y::map(e)));
    }
    emit(&Y::map([
        ("version", Y::Int(2)),
        ("ethernets", Y::Map(ethernets)),
    ]))
}
