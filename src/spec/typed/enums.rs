//! The closed sets of `lima.yaml` values as enums, and byte sizes.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::spec::units::{format_size, parse_size};

/// Defines an enum of Lima spellings: `as_str()` gives the spelling,
/// `parse()`/`FromStr` read it back (exactly, as Lima compares them), `ALL`
/// lists the values in Lima's order.
macro_rules! lima_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $what:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $spelling:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $spelling)] $variant, )+
        }

        impl $name {
            /// Every value, in Lima's order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// Lima's spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $spelling,)+
                }
            }

            /// The value Lima spells `s`, if any.
            pub fn parse(s: &str) -> Option<$name> {
                match s {
                    $($spelling => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<$name, String> {
                $name::parse(s).ok_or_else(|| {
                    format!(
                        "{} {} is not one of {}",
                        $what,
                        crate::spec::yaml::go_quote(s),
                        $name::ALL
                            .iter()
                            .map(|v| crate::spec::yaml::quote_name(v.as_str()))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })
            }
        }
    };
}

lima_enum! {
    /// A guest architecture (`arch`, and the arch of every image and file).
    Arch, "arch" {
        X86_64 = "x86_64",
        Aarch64 = "aarch64",
        Armv7l = "armv7l",
        Ppc64le = "ppc64le",
        Riscv64 = "riscv64",
        S390x = "s390x",
    }
}

lima_enum! {
    /// The guest operating system (`os`).
    Os, "os" {
        Linux = "Linux",
        Darwin = "Darwin",
        FreeBSD = "FreeBSD",
        Windows = "Windows",
    }
}

lima_enum! {
    /// The VM driver (`vmType`); only `qemu` runs on this host.
    VmType, "vmType" {
        Qemu = "qemu",
        Vz = "vz",
        Wsl2 = "wsl2",
    }
}

lima_enum! {
    /// How host directories are shared (`mountType`).
    MountType, "mountType" {
        /// sshfs run by the host agent over the SSH connection (the default here).
        ReverseSshfs = "reverse-sshfs",
        /// virtio-9p, mounted by the guest kernel.
        NineP = "9p",
        Virtiofs = "virtiofs",
        Wsl2 = "wsl2",
    }
}

lima_enum! {
    /// The desired power state (`runStrategy`, this project's extension
    /// modelled on KubeVirt).
    RunStrategy, "runStrategy" {
        /// Keep the VM running; start it again whenever it stops.
        Always = "Always",
        /// Start it again only when it stopped with a failure.
        RerunOnFailure = "RerunOnFailure",
        /// Keep the VM stopped.
        Halted = "Halted",
        /// Leave the power state to `limactl start`/`stop`.
        Manual = "Manual",
    }
}

lima_enum! {
    /// When and how a `provision` entry runs (`provision[].mode`).
    Mode, "provision mode" {
        /// A script run as root at every boot.
        System = "system",
        /// A script run as the guest user at every boot.
        User = "user",
        /// A script run by cloud-init's `bootcmd`, early in every boot.
        Boot = "boot",
        /// A file written into the guest.
        Data = "data",
        /// A script run as root before the package installation.
        Dependency = "dependency",
        /// A playbook run from the host (deprecated).
        Ansible = "ansible",
        /// A yq expression applied to a file in the guest.
        Yq = "yq",
    }
}

lima_enum! {
    /// The protocols a port forward applies to (`portForwards[].proto`).
    Proto, "proto" {
        Tcp = "tcp",
        Udp = "udp",
        /// Both TCP and UDP (the default).
        Any = "any",
    }
}

/// A size in bytes (`memory`, `disk`, `mounts[].9p.msize`), parsed the way
/// Lima reads sizes (`4GiB`, `100G`, …; see [`crate::spec::units`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn bytes(self) -> u64 {
        self.0
    }

    /// Whole MiB, rounded down (QEMU's `-m`).
    pub fn mib(self) -> u64 {
        self.0 >> 20
    }

    /// Parses a size as Lima writes it.
    pub fn parse(s: &str) -> Result<ByteSize, String> {
        parse_size(s).map(ByteSize)
    }
}

/// Lima's spelling of the size (`4GiB`, `1.5GiB`).
impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_size(self.0))
    }
}

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<ByteSize, String> {
        ByteSize::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::types::{
        ARCHES, MOUNT_TYPES, OSES, PROVISION_MODES, RUN_STRATEGIES, VM_TYPES,
    };

    /// The enums know exactly the spellings validation accepts.
    #[test]
    fn spellings_match_the_validated_lists() {
        fn spellings<T: Copy>(all: &[T], f: fn(T) -> &'static str) -> Vec<&'static str> {
            all.iter().map(|v| f(*v)).collect()
        }
        assert_eq!(spellings(Arch::ALL, Arch::as_str), ARCHES);
        assert_eq!(spellings(Os::ALL, Os::as_str), OSES);
        assert_eq!(spellings(VmType::ALL, VmType::as_str), VM_TYPES);
        assert_eq!(spellings(MountType::ALL, MountType::as_str), MOUNT_TYPES);
        assert_eq!(
            spellings(RunStrategy::ALL, RunStrategy::as_str),
            RUN_STRATEGIES
        );
        assert_eq!(spellings(Mode::ALL, Mode::as_str), PROVISION_MODES);
        for a in Arch::ALL {
            assert_eq!(a.as_str().parse::<Arch>(), Ok(*a));
        }
        assert_eq!(MountType::parse("9p"), Some(MountType::NineP));
        assert_eq!(Proto::parse("any"), Some(Proto::Any));
        assert_eq!(Os::parse("linux"), None, "Lima compares case-sensitively");
        let e = "sparc".parse::<Arch>().unwrap_err();
        assert!(
            e.starts_with("arch \"sparc\" is not one of `x86_64`, "),
            "{e}"
        );
        assert_eq!(
            serde_json::to_value(MountType::ReverseSshfs).unwrap(),
            "reverse-sshfs"
        );
    }

    #[test]
    fn byte_sizes() {
        let s: ByteSize = "1.5GiB".parse().unwrap();
        assert_eq!(s, ByteSize(3 << 29));
        assert_eq!(s.mib(), 1536);
        assert_eq!(s.to_string(), "1.5GiB");
        assert!(ByteSize::parse("lots").is_err());
        assert_eq!(serde_json::to_value(ByteSize(1024)).unwrap(), 1024);
    }
}
