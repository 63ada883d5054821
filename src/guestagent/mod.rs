//! The guest agent: `lima-guestagent` runs in the guest as root and talks to
//! the host agent over the virtio-serial port `io.lima-vm.guest_agent.0`
//! (host side `<inst>/ga.sock`).
//!
//! Both sides share [`protocol`] (newline-delimited JSON, versioned). The
//! guest side is [`daemon`]: it reports listening TCP/UDP sockets read from
//! `/proc/net/*` ([`procnet`]) and the ports containers publish through CNI's
//! DNAT rules ([`cniports`]), sets the guest clock on request, and relays
//! forwarded UDP datagrams to guest listeners ([`udp`]).
//!
//! Lima speaks gRPC here; this project uses a line protocol small enough to
//! read in a serial log, with no code generation and no HTTP/2 stack in a
//! statically linked guest binary.

pub mod cniports;
#[cfg(target_os = "linux")]
pub mod daemon;
pub mod procnet;
pub mod protocol;
pub mod udp;
