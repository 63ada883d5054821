//! VM drivers. Only QEMU exists on this host; this module is the small
//! surface the host agent and the reconciler use, so that a second driver can
//! be added beside [`qemu`] without touching callers much.

pub mod qemu;

use crate::spec::Spec;
use crate::spec::typed::VmType;

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

/// Every driver this build has (`limactl start --list-drivers`).
pub const DRIVERS: &[Info] = &[QEMU];

/// The driver for `vmType`, or an error naming it.
pub fn for_spec(spec: &Spec) -> Result<Info, String> {
    match spec.vm_type {
        VmType::Qemu => Ok(QEMU),
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
        let mut s = Spec::for_tests(serde_json::json!({}));
        assert_eq!(for_spec(&s).unwrap().name, "qemu");
        s.vm_type = VmType::Vz;
        assert!(for_spec(&s).unwrap_err().contains("vz"));
    }
}
