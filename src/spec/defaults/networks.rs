//! Defaults of `networks` (interface, metric, MAC) and the MAC derivation
//! shared with the QEMU driver and cidata.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::FillContext;
use crate::spec::types::LimaYaml;

/// `52:55:55:` + the first three bytes of sha256(machine id + `key`).
pub fn mac_address(machine_id: &str, key: &str) -> String {
    let sum = Sha256::digest(format!("{machine_id}{key}").as_bytes());
    format!("52:55:55:{:02x}:{:02x}:{:02x}", sum[0], sum[1], sum[2])
}

/// The MAC of an instance's slirp NIC: [`mac_address`] of this host's
/// machine id and the instance directory. QEMU's NIC and cidata's
/// network-config must agree, so both call this.
pub fn instance_mac(instance_dir: &Path) -> String {
    mac_address(
        &crate::spec::host::host().machine_id,
        &instance_dir.to_string_lossy(),
    )
}

/// Networks: interface `lima<i>`, metric 100, a MAC derived from the
/// instance's lima.yaml path and the index.
pub(super) fn fill_networks(y: &mut LimaYaml, ctx: &FillContext) {
    let host = ctx.host;
    for (i, n) in y.networks.iter_mut().flatten().enumerate() {
        if n.interface.as_deref().is_none_or(str::is_empty) {
            n.interface = Some(format!("lima{i}"));
        }
        n.metric.get_or_insert(100);
        if n.mac_address.as_deref().is_none_or(str::is_empty) {
            let key = format!("{}#{i}", ctx.lima_yaml_path().display());
            n.mac_address = Some(mac_address(&host.machine_id, &key));
        }
    }
}
