//! [`Spec::from_filled`]: the wire type, defaults filled and validated, to
//! the resolved form. Every check here is one validation already made, so a
//! failure means the caller skipped `defaults::fill` or `validate::validate`.

use std::net::IpAddr;
use std::str::FromStr;

use super::*;
use crate::spec::SpecError;
use crate::spec::types::{self as wire, LimaYaml};

fn unresolved(field: impl Into<String>, message: impl Into<String>) -> SpecError {
    SpecError::NotResolved {
        field: field.into(),
        message: message.into(),
    }
}

fn need<'a, T>(v: &'a Option<T>, field: &str) -> Result<&'a T, SpecError> {
    v.as_ref().ok_or_else(|| unresolved(field, "is not set"))
}

fn need_str(v: &Option<String>, field: &str) -> Result<String, SpecError> {
    need(v, field).cloned()
}

fn need_bool(v: &Option<bool>, field: &str) -> Result<bool, SpecError> {
    need(v, field).copied()
}

fn parse_enum<E: FromStr<Err = String>>(v: &Option<String>, field: &str) -> Result<E, SpecError> {
    need(v, field)?
        .parse()
        .map_err(|e: String| unresolved(field, format!("is invalid: {e}")))
}

fn size(v: &Option<String>, field: &str) -> Result<ByteSize, SpecError> {
    ByteSize::parse(need(v, field)?).map_err(|e| unresolved(field, format!("is invalid: {e}")))
}

fn ip(v: &Option<String>, field: &str) -> Result<IpAddr, SpecError> {
    let s = need(v, field)?;
    s.parse()
        .map_err(|_| unresolved(field, format!("is not an IP address: {s:?}")))
}

fn port_range(v: &Option<[i64; 2]>, field: &str) -> Result<[u16; 2], SpecError> {
    let [a, b] = *need(v, field)?;
    let p = |n: i64| {
        u16::try_from(n).map_err(|_| unresolved(field, format!("has a port out of range: {n}")))
    };
    Ok([p(a)?, p(b)?])
}

/// `""` is how Lima writes "unset" for these strings.
fn non_empty(v: &Option<String>) -> Option<String> {
    v.clone().filter(|s| !s.is_empty())
}

impl Spec {
    /// Converts a configuration that `defaults::fill` filled and
    /// `validate::validate` accepted (what [`crate::spec::resolve`] returns).
    /// A missing or invalid field is a [`SpecError::NotResolved`] naming it.
    pub fn from_filled(y: &LimaYaml) -> Result<Spec, SpecError> {
        let cpus = *need(&y.cpus, "cpus")?;
        Ok(Spec {
            minimum_lima_version: y.minimum_lima_version.clone(),
            run_strategy: parse_enum(&y.run_strategy, "runStrategy")?,
            vm_type: parse_enum(&y.vm_type, "vmType")?,
            vm_opts: vm_opts(y),
            os: parse_enum(&y.os, "os")?,
            arch: parse_enum(&y.arch, "arch")?,
            images: images(y)?,
            cpus: u32::try_from(cpus)
                .ok()
                .filter(|c| *c > 0)
                .ok_or_else(|| unresolved("cpus", format!("must be positive, got {cpus}")))?,
            memory: size(&y.memory, "memory")?,
            disk: size(&y.disk, "disk")?,
            additional_disks: additional_disks(y)?,
            mounts: mounts(y)?,
            mount_types_unsupported: need(&y.mount_types_unsupported, "mountTypesUnsupported")?
                .clone(),
            mount_type: parse_enum(&y.mount_type, "mountType")?,
            mount_inotify: need_bool(&y.mount_inotify, "mountInotify")?,
            ssh: ssh(need(&y.ssh, "ssh")?)?,
            firmware: firmware(need(&y.firmware, "firmware")?)?,
            audio: audio(need(&y.audio, "audio")?)?,
            video: video(need(&y.video, "video")?)?,
            provision: y
                .provision
                .iter()
                .flatten()
                .enumerate()
                .map(|(i, p)| provision(i, p))
                .collect::<Result<_, _>>()?,
            upgrade_packages: need_bool(&y.upgrade_packages, "upgradePackages")?,
            containerd: containerd(need(&y.containerd, "containerd")?)?,
            guest_install_prefix: need_str(&y.guest_install_prefix, "guestInstallPrefix")?,
            probes: probes(y)?,
            port_forwards: y
                .port_forwards
                .iter()
                .flatten()
                .enumerate()
                .map(|(i, pf)| port_forward(i, pf))
                .collect::<Result<_, _>>()?,
            copy_to_host: copy_to_host(y)?,
            message: need_str(&y.message, "message")?,
            networks: networks(y)?,
            env: need(&y.env, "env")?.clone(),
            param: need(&y.param, "param")?.clone(),
            dns: need(&y.dns, "dns")?
                .iter()
                .enumerate()
                .map(|(i, d)| ip(&Some(d.clone()), &format!("dns[{i}]")))
                .collect::<Result<_, _>>()?,
            host_resolver: host_resolver(need(&y.host_resolver, "hostResolver")?)?,
            propagate_proxy_env: need_bool(&y.propagate_proxy_env, "propagateProxyEnv")?,
            ca_certs: ca_certs(need(&y.ca_certs, "caCerts")?)?,
            plain: need_bool(&y.plain, "plain")?,
            timezone: Some(need_str(&y.timezone, "timezone")?).filter(|t| !t.is_empty()),
            nested_virtualization: need_bool(&y.nested_virtualization, "nestedVirtualization")?,
            user: user(need(&y.user, "user")?)?,
            tpm: need_bool(&y.tpm, "tpm")?,
        })
    }
}

fn vm_opts(y: &LimaYaml) -> VmOpts {
    let qemu = y.vm_opts.as_ref().and_then(|o| o.qemu.as_ref());
    let vz = y.vm_opts.as_ref().and_then(|o| o.vz.as_ref());
    // `vmOpts.vz.rosetta` wins as a whole over the deprecated top-level one.
    let rosetta = vz.and_then(|v| v.rosetta.as_ref()).or(y.rosetta.as_ref());
    VmOpts {
        qemu: QemuOpts {
            minimum_version: qemu.and_then(|q| q.minimum_version.clone()),
            cpu_type: qemu.and_then(|q| q.cpu_type.clone()).unwrap_or_default(),
        },
        vz: VzOpts {
            rosetta: Rosetta {
                enabled: rosetta.and_then(|r| r.enabled).unwrap_or(false),
                binfmt: rosetta.and_then(|r| r.binfmt).unwrap_or(false),
            },
            disk_image_format: vz.and_then(|v| v.disk_image_format.clone()),
        },
    }
}

fn file(
    f: &str,
    location: &str,
    arch: &Option<String>,
    digest: &Option<String>,
) -> Result<File, SpecError> {
    Ok(File {
        location: location.to_string(),
        arch: parse_enum(arch, &format!("{f}.arch"))?,
        digest: digest.clone(),
    })
}

fn images(y: &LimaYaml) -> Result<Vec<Image>, SpecError> {
    let mut out = Vec::new();
    for (i, img) in y.images.iter().flatten().enumerate() {
        let f = format!("images[{i}]");
        let kernel = match &img.kernel {
            None => None,
            Some(k) => Some(Kernel {
                location: k.location.clone(),
                arch: parse_enum(&k.arch, &format!("{f}.kernel.arch"))?,
                digest: k.digest.clone(),
                cmdline: k.cmdline.clone(),
            }),
        };
        let initrd = match &img.initrd {
            None => None,
            Some(r) => Some(file(
                &format!("{f}.initrd"),
                &r.location,
                &r.arch,
                &r.digest,
            )?),
        };
        out.push(Image {
            location: img.location.clone(),
            arch: parse_enum(&img.arch, &format!("{f}.arch"))?,
            digest: img.digest.clone(),
            kernel,
            initrd,
            variant: img.variant.clone(),
            arch_variant: img.arch_variant.clone(),
        });
    }
    Ok(out)
}

fn additional_disks(y: &LimaYaml) -> Result<Vec<AdditionalDisk>, SpecError> {
    let mut out = Vec::new();
    for (i, d) in y.additional_disks.iter().flatten().enumerate() {
        let f = |n: &str| format!("additionalDisks[{i}].{n}");
        out.push(AdditionalDisk {
            name: d.name.clone(),
            format: need_bool(&d.format, &f("format"))?,
            fs_type: need_str(&d.fs_type, &f("fsType"))?,
            fs_args: need(&d.fs_args, &f("fsArgs"))?.clone(),
        });
    }
    Ok(out)
}

fn mounts(y: &LimaYaml) -> Result<Vec<Mount>, SpecError> {
    let mut out = Vec::new();
    for (i, m) in y.mounts.iter().flatten().enumerate() {
        let f = |n: &str| format!("mounts[{i}].{n}");
        let s = need(&m.sshfs, &f("sshfs"))?;
        let p = need(&m.nine_p, &f("9p"))?;
        out.push(Mount {
            location: m.location.clone(),
            mount_point: need_str(&m.mount_point, &f("mountPoint"))?,
            writable: need_bool(&m.writable, &f("writable"))?,
            sshfs: Sshfs {
                cache: need_bool(&s.cache, &f("sshfs.cache"))?,
                follow_symlinks: need_bool(&s.follow_symlinks, &f("sshfs.followSymlinks"))?,
                sftp_driver: non_empty(&s.sftp_driver),
            },
            nine_p: NineP {
                // QEMU's default; Lima treats an empty model as unset too.
                security_model: non_empty(&p.security_model).unwrap_or_else(|| "none".into()),
                protocol_version: need_str(&p.protocol_version, &f("9p.protocolVersion"))?,
                msize: size(&p.msize, &f("9p.msize"))?,
                cache: need_str(&p.cache, &f("9p.cache"))?,
            },
            virtiofs: Virtiofs {
                queue_size: m.virtiofs.as_ref().and_then(|v| v.queue_size),
            },
        });
    }
    Ok(out)
}

fn ssh(s: &wire::Ssh) -> Result<Ssh, SpecError> {
    let port = *need(&s.local_port, "ssh.localPort")?;
    Ok(Ssh {
        local_port: u16::try_from(port)
            .map_err(|_| unresolved("ssh.localPort", format!("is out of range: {port}")))?,
        load_dot_ssh_pub_keys: need_bool(&s.load_dot_ssh_pub_keys, "ssh.loadDotSSHPubKeys")?,
        forward_agent: need_bool(&s.forward_agent, "ssh.forwardAgent")?,
        forward_x11: need_bool(&s.forward_x11, "ssh.forwardX11")?,
        forward_x11_trusted: need_bool(&s.forward_x11_trusted, "ssh.forwardX11Trusted")?,
        over_vsock: need_bool(&s.over_vsock, "ssh.overVsock")?,
    })
}

fn firmware(fw: &wire::Firmware) -> Result<Firmware, SpecError> {
    let mut images = Vec::new();
    for (i, img) in need(&fw.images, "firmware.images")?.iter().enumerate() {
        images.push(FirmwareImage {
            location: img.location.clone(),
            arch: need_str(&img.arch, &format!("firmware.images[{i}].arch"))?,
            digest: img.digest.clone(),
            vm_type: img.vm_type.clone(),
        });
    }
    Ok(Firmware {
        legacy_bios: need_bool(&fw.legacy_bios, "firmware.legacyBIOS")?,
        images,
    })
}

fn audio(a: &wire::Audio) -> Result<Audio, SpecError> {
    Ok(Audio {
        device: need_str(&a.device, "audio.device")?,
        interface: need_str(&a.interface, "audio.interface")?,
    })
}

fn video(v: &wire::Video) -> Result<Video, SpecError> {
    Ok(Video {
        // An explicit "" means the default, as for the VNC display.
        display: non_empty(&v.display).unwrap_or_else(|| "none".into()),
        vnc_display: v
            .vnc
            .as_ref()
            .and_then(|v| non_empty(&v.display))
            .unwrap_or_else(|| "127.0.0.1:0,to=9".into()),
    })
}

fn provision(i: usize, p: &wire::Provision) -> Result<Provision, SpecError> {
    let f = |n: &str| format!("provision[{i}].{n}");
    let script = || need_str(&p.script, &f("script"));
    Ok(match parse_enum::<Mode>(&p.mode, &f("mode"))? {
        Mode::System => Provision::System { script: script()? },
        Mode::User => Provision::User { script: script()? },
        Mode::Boot => Provision::Boot { script: script()? },
        Mode::Dependency => Provision::Dependency {
            script: script()?,
            skip_default_dependency_resolution: need_bool(
                &p.skip_default_dependency_resolution,
                &f("skipDefaultDependencyResolution"),
            )?,
        },
        Mode::Data => Provision::Data(DataFile {
            path: need_str(&p.path, &f("path"))?,
            content: need_str(&p.content, &f("content"))?,
            overwrite: need_bool(&p.overwrite, &f("overwrite"))?,
            owner: need_str(&p.owner, &f("owner"))?,
            permissions: need_str(&p.permissions, &f("permissions"))?,
        }),
        Mode::Yq => Provision::Yq(YqFile {
            path: need_str(&p.path, &f("path"))?,
            expression: need_str(&p.expression, &f("expression"))?,
            format: need_str(&p.format, &f("format"))?,
            owner: need_str(&p.owner, &f("owner"))?,
            permissions: need_str(&p.permissions, &f("permissions"))?,
        }),
        Mode::Ansible => Provision::Ansible {
            playbook: need_str(&p.playbook, &f("playbook"))?,
        },
    })
}

fn containerd(c: &wire::Containerd) -> Result<Containerd, SpecError> {
    let mut archives = Vec::new();
    for (i, a) in need(&c.archives, "containerd.archives")?.iter().enumerate() {
        archives.push(file(
            &format!("containerd.archives[{i}]"),
            &a.location,
            &a.arch,
            &a.digest,
        )?);
    }
    Ok(Containerd {
        system: need_bool(&c.system, "containerd.system")?,
        user: need_bool(&c.user, "containerd.user")?,
        archives,
    })
}

fn probes(y: &LimaYaml) -> Result<Vec<Probe>, SpecError> {
    let mut out = Vec::new();
    for (i, p) in y.probes.iter().flatten().enumerate() {
        let f = |n: &str| format!("probes[{i}].{n}");
        out.push(Probe {
            description: need_str(&p.description, &f("description"))?,
            script: need_str(&p.script, &f("script"))?,
            hint: p.hint.clone(),
        });
    }
    Ok(out)
}

fn port_forward(i: usize, pf: &wire::PortForward) -> Result<PortForward, SpecError> {
    let f = |n: &str| format!("portForwards[{i}].{n}");
    Ok(PortForward {
        guest_ip_must_be_zero: need_bool(&pf.guest_ip_must_be_zero, &f("guestIPMustBeZero"))?,
        guest_ip: ip(&pf.guest_ip, &f("guestIP"))?,
        guest_port_range: port_range(&pf.guest_port_range, &f("guestPortRange"))?,
        guest_socket: non_empty(&pf.guest_socket),
        host_ip: ip(&pf.host_ip, &f("hostIP"))?,
        host_port_range: port_range(&pf.host_port_range, &f("hostPortRange"))?,
        host_socket: non_empty(&pf.host_socket),
        proto: parse_enum(&pf.proto, &f("proto"))?,
        reverse: need_bool(&pf.reverse, &f("reverse"))?,
        ignore: need_bool(&pf.ignore, &f("ignore"))?,
        static_: need_bool(&pf.static_, &f("static"))?,
    })
}

fn copy_to_host(y: &LimaYaml) -> Result<Vec<CopyToHost>, SpecError> {
    let mut out = Vec::new();
    for (i, c) in y.copy_to_host.iter().flatten().enumerate() {
        let f = |n: &str| format!("copyToHost[{i}].{n}");
        out.push(CopyToHost {
            guest: need_str(&c.guest, &f("guest"))?,
            host: need_str(&c.host, &f("host"))?,
            skip_if_missing: need_bool(&c.skip_if_missing, &f("skipIfMissing"))?,
            delete_on_stop: need_bool(&c.delete_on_stop, &f("deleteOnStop"))?,
        });
    }
    Ok(out)
}

fn networks(y: &LimaYaml) -> Result<Vec<Network>, SpecError> {
    let mut out = Vec::new();
    for (i, n) in y.networks.iter().flatten().enumerate() {
        let f = |k: &str| format!("networks[{i}].{k}");
        let attachment = match (non_empty(&n.lima), non_empty(&n.socket), n.vz_nat) {
            (Some(name), None, None | Some(false)) => NetworkAttachment::Lima(name),
            (None, Some(path), None | Some(false)) => NetworkAttachment::Socket(path),
            (None, None, Some(true)) => NetworkAttachment::VzNat,
            _ => {
                return Err(unresolved(
                    format!("networks[{i}]"),
                    "must set exactly one of `lima`, `socket` and `vzNAT`",
                ));
            }
        };
        out.push(Network {
            attachment,
            mac_address: need_str(&n.mac_address, &f("macAddress"))?,
            interface: need_str(&n.interface, &f("interface"))?,
            metric: *need(&n.metric, &f("metric"))?,
        });
    }
    Ok(out)
}

fn host_resolver(h: &wire::HostResolver) -> Result<HostResolver, SpecError> {
    Ok(HostResolver {
        enabled: need_bool(&h.enabled, "hostResolver.enabled")?,
        ipv6: need_bool(&h.ipv6, "hostResolver.ipv6")?,
        hosts: need(&h.hosts, "hostResolver.hosts")?.clone(),
    })
}

fn ca_certs(c: &wire::CaCerts) -> Result<CaCerts, SpecError> {
    Ok(CaCerts {
        remove_defaults: need_bool(&c.remove_defaults, "caCerts.removeDefaults")?,
        files: need(&c.files, "caCerts.files")?.clone(),
        certs: need(&c.certs, "caCerts.certs")?.clone(),
    })
}

fn user(u: &wire::User) -> Result<User, SpecError> {
    Ok(User {
        name: need_str(&u.name, "user.name")?,
        comment: need_str(&u.comment, "user.comment")?,
        home: need_str(&u.home, "user.home")?,
        shell: need_str(&u.shell, "user.shell")?,
        uid: *need(&u.uid, "user.uid")?,
        passwordless_sudo: need_bool(&u.passwordless_sudo, "user.passwordlessSudo")?,
    })
}
