//! The integration tests, as one test binary (one link of the whole crate
//! instead of one per file). One module per area; select one with
//! `cargo nextest run -E 'test(/^e2e_vm::/)'` (README "Run the tests").
//!
//! `e2e_*` boot real VMs (one at a time: `common::guest_lock`); the others
//! run `limactl`, QEMU with `-S`, or library code, without a guest.

mod common;

mod cidata_iso;
mod cli_apply;
mod cli_compat;
mod cli_containerd;
mod cli_daemon;
mod cli_everyday;
mod cli_git;
mod cli_instance_ops;
mod cli_lifecycle;
mod cli_progress;
mod cli_reliability;
mod cli_spec;
mod cli_store;
mod cli_suspend;
mod daemon_metrics;
mod e2e_apply;
mod e2e_containerd;
mod e2e_daemon;
mod e2e_export;
mod e2e_git;
mod e2e_guestagent;
mod e2e_install;
mod e2e_snapshot;
mod e2e_suspend;
mod e2e_vm;
mod export_kubevirt;
mod image_download;
mod install_deps;
mod qemu_driver;
mod qemu_migrate;
