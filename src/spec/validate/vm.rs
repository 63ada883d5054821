//! `base`, `minimumLimaVersion`, `runStrategy`, `os`, `arch`, `vmType`, the
//! resources (`cpus`, `memory`, `disk`) and the devices (`tpm`, `audio`, `video`).

use super::{V, quote_list, semver_parse};
use crate::spec::types::*;
use crate::spec::units::parse_size;
use crate::spec::yaml::{go_quote, quote_name};

/// The platform fields; returns the OS, arch and VM type the other sections
/// depend on (Lima's defaults when unset).
pub(super) fn validate_platform<'a>(
    v: &mut V,
    y: &'a LimaYaml,
    running_version: &str,
) -> (&'a str, &'a str, &'a str) {
    if y.base.as_ref().is_some_and(|b| !b.is_empty()) {
        v.field(
            "base",
            "must be empty (base templates are merged before validation)",
        );
    }
    if let Some(min) = &y.minimum_lima_version {
        match semver_parse(min) {
            None => v.field(
                "minimumLimaVersion",
                format!("must be a semver version, got {}", go_quote(min)),
            ),
            Some(min_v) => {
                if let Some(cur) = semver_parse(running_version)
                    && cur < min_v
                {
                    v.field(
                        "minimumLimaVersion",
                        format!("requires limactl version {min}, but this is {running_version}"),
                    );
                }
            }
        }
    }
    if let Some(rs) = &y.run_strategy
        && !RUN_STRATEGIES.contains(&rs.as_str())
    {
        v.field(
            "runStrategy",
            format!(
                "must be one of {}, got {}",
                RUN_STRATEGIES.join(", "),
                go_quote(rs)
            ),
        );
    }
    let os = y.os.as_deref().unwrap_or("Linux");
    if !OSES.contains(&os) {
        v.field(
            "os",
            format!("must be one of {}, got {}", quote_list(OSES), go_quote(os)),
        );
    }
    let arch = y.arch.as_deref().unwrap_or("");
    if !ARCHES.contains(&arch) {
        v.field(
            "arch",
            format!(
                "must be one of {}, got {}",
                quote_list(ARCHES),
                go_quote(arch)
            ),
        );
    }
    let vm_type = y.vm_type.as_deref().unwrap_or("qemu");
    if !VM_TYPES.contains(&vm_type) {
        v.field(
            "vmType",
            format!(
                "must be one of {}, got {} (vmType {} is not a registered driver)",
                quote_list(VM_TYPES),
                go_quote(vm_type),
                quote_name(vm_type)
            ),
        );
    }
    if os == "Windows" && (vm_type != "qemu" || !(arch == "x86_64" || arch == "aarch64")) {
        v.field(
            "os",
            "Windows requires vmType `qemu` and arch x86_64 or aarch64",
        );
    }
    (os, arch, vm_type)
}

/// `cpus`, `memory` and `disk`.
pub(super) fn validate_resources(v: &mut V, y: &LimaYaml) {
    match y.cpus {
        Some(c) if c <= 0 => v.field(
            "cpus",
            format!("must be a positive number of CPUs, got {c} (omit it for the default)"),
        ),
        Some(c) if c > 1024 => v.field("cpus", format!("is implausibly large ({c})")),
        _ => {}
    }
    for (name, val) in [("memory", &y.memory), ("disk", &y.disk)] {
        if let Some(s) = val {
            match parse_size(s) {
                Err(e) => v.field(name, format!("has an invalid value: {e}")),
                Ok(0) => v.field(name, "must be larger than zero"),
                Ok(_) => {}
            }
        }
    }
    if let (Some(m), Some(Ok(bytes))) = (&y.memory, y.memory.as_deref().map(parse_size))
        && bytes < (64 << 20)
    {
        v.field(
            "memory",
            format!("is too small ({m}); a guest needs at least 64MiB"),
        );
    }
}

/// `tpm`, `audio`, `video`, and the experimental OS and arch warnings.
pub(super) fn validate_devices(v: &mut V, y: &LimaYaml, os: &str, arch: &str) {
    if y.tpm == Some(true) && !["x86_64", "aarch64", "armv7l", "riscv64"].contains(&arch) {
        v.field(
            "tpm",
            format!("is not supported on arch {}", quote_name(arch)),
        );
    }
    if let Some(iface) = y.audio.as_ref().and_then(|a| a.interface.as_deref())
        && !["", "hda", "virtio"].contains(&iface)
    {
        v.field(
            "audio.interface",
            format!("must be \"\", `hda` or `virtio`, got {}", go_quote(iface)),
        );
    }
    if y.video.as_ref().and_then(|v| v.display.as_deref()) == Some("vnc") {
        v.warnings
            .push("`video.display: vnc` is experimental".into());
    }
    if y.audio
        .as_ref()
        .and_then(|a| a.device.as_deref())
        .is_some_and(|d| !d.is_empty())
    {
        v.warnings.push("`audio.device` is experimental".into());
    }
    if os == "Windows" {
        v.warnings.push("Windows guests are experimental".into());
    }
    if ["riscv64", "armv7l", "s390x", "ppc64le"].contains(&arch) {
        v.warnings
            .push(format!("arch {} is experimental", quote_name(arch)));
    }
}
