//! VM drivers. Only QEMU exists on this host; this module is the small
//! surface the host agent and the reconciler use, so that a second driver can
//! be added beside [`qemu`] without touching callers much.

pub mod qemu;

use crate::spec::LimaYaml;

/// What callers need to know about a driver (Lima's `Info()`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Info {
    /// `vmType` value, e.g. `qemu`.
    pub name: &'static str,
    /// Where the guest's sshd is reached (through the forwarded port).
    pub ssh_address: &'static str,
    /// Name of the virtio-serial port the guest agent uses (host side `ga.sock`).
    pub virtio_port: &'static str,
}

/// The QEMU driver's facts.
pub const QEMU: Info = Info {
    name: "qemu",
    ssh_address: "127.0.0.1",
    virtio_port: qemu::argv::GUEST_AGENT_PORT,
};

/// The driver for `config.vmType` (default `qemu`), or an error naming it.
pub fn for_config(config: &LimaYaml) -> Result<Info, String> {
    match config.vm_type.as_deref().unwrap_or("qemu") {
        "" | "qemu" => Ok(QEMU),
        other => Err(format!(
            "vmType `{other}` is not available on this host (only `qemu` is)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_qemu() {
        let mut y = LimaYaml::default();
        assert_eq!(for_config(&y).unwrap().name, "qemu");
        y.vm_type = Some("vz".into());
        assert!(for_config(&y).unwrap_err().contains("vz"));
    }
}
