//! `lima.env`, `param.env` and `etc_environment` (reference §3.5, §3.6).

use std::collections::BTreeMap;

use super::{CidataError, Facts, SLIRP_GATEWAY, check_line};

/// `LIMA_CIDATA_*` lines in Lima's order. Values are not quoted: `boot.sh`
/// exports each line as a whole, so a value with a control character (a
/// newline would add a line of its own) is refused, naming the variable.
pub(crate) fn lima_env(f: &Facts) -> Result<String, CidataError> {
    let mut out = String::new();
    let mut refused = None;
    let mut kv = |k: &str, v: &str| {
        if refused.is_none()
            && let Err(e) = check_line("lima.env", &format!("LIMA_CIDATA_{k}"), v, false)
        {
            refused = Some(e);
        }
        out.push_str("LIMA_CIDATA_");
        out.push_str(k);
        out.push('=');
        out.push_str(v);
        out.push('\n');
    };
    let flag = |b: bool| if b { "1" } else { "" };
    kv("DEBUG", if f.debug { "true" } else { "false" });
    kv("IID", &f.iid);
    kv("NAME", &f.name);
    kv("USER", &f.user);
    kv("UID", &f.uid.to_string());
    kv("COMMENT", &f.comment);
    kv("HOME", &f.home);
    kv("SHELL", &f.shell);
    kv("HOSTHOME_MOUNTPOINT", &f.host_home_mount_point);
    kv("MOUNTS", &f.mounts.len().to_string());
    for (i, m) in f.mounts.iter().enumerate() {
        kv(&format!("MOUNTS_{i}_MOUNTPOINT"), &m.mount_point);
    }
    kv("MOUNTTYPE", f.mount_type.as_str());
    kv("DISKS", &f.disks.len().to_string());
    for (i, d) in f.disks.iter().enumerate() {
        kv(&format!("DISK_{i}_NAME"), &d.name);
        kv(&format!("DISK_{i}_DEVICE"), &d.device);
        kv(
            &format!("DISK_{i}_FORMAT"),
            if d.format { "true" } else { "false" },
        );
        kv(&format!("DISK_{i}_FSTYPE"), &d.fs_type);
        kv(&format!("DISK_{i}_FSARGS"), &d.fs_args.join(" "));
    }
    for d in &f.data_files {
        let p = format!("DATAFILE_{}_", d.index);
        kv(
            &format!("{p}OVERWRITE"),
            if d.overwrite { "true" } else { "false" },
        );
        kv(&format!("{p}OWNER"), &d.owner);
        kv(&format!("{p}PATH"), &d.path);
        kv(&format!("{p}PERMISSIONS"), &d.permissions);
    }
    for y in &f.yq_files {
        let p = format!("YQ_PROVISION_{}_", y.index);
        kv(&format!("{p}FORMAT"), &y.format);
        kv(&format!("{p}OWNER"), &y.owner);
        kv(&format!("{p}PATH"), &y.path);
        kv(&format!("{p}PERMISSIONS"), &y.permissions);
    }
    kv("GUEST_INSTALL_PREFIX", &f.guest_install_prefix);
    kv("UPGRADE_PACKAGES", flag(f.upgrade_packages));
    kv("CONTAINERD_USER", flag(f.containerd_user));
    kv("CONTAINERD_SYSTEM", flag(f.containerd_system));
    if f.containerd_user || f.containerd_system {
        kv(
            "CONTAINERD_ARCHIVE",
            crate::store::paths::cidata_files::NERDCTL_ARCHIVE,
        );
        if let Some(digest) = &f.containerd_archive_sha256 {
            kv("CONTAINERD_ARCHIVE_SHA256", digest);
        }
    }
    kv("SLIRP_DNS", &f.slirp_dns);
    kv("SLIRP_GATEWAY", SLIRP_GATEWAY);
    kv("SLIRP_IP_ADDRESS", super::SLIRP_IP_ADDRESS);
    kv("UDP_DNS_LOCAL_PORT", &f.udp_dns_port.to_string());
    kv("TCP_DNS_LOCAL_PORT", &f.tcp_dns_port.to_string());
    kv(
        "ROSETTA_ENABLED",
        if f.rosetta_enabled { "true" } else { "false" },
    );
    kv(
        "ROSETTA_BINFMT",
        if f.rosetta_binfmt { "true" } else { "false" },
    );
    kv(
        "SKIP_DEFAULT_DEPENDENCY_RESOLUTION",
        flag(f.skip_default_dependency_resolution),
    );
    kv("VMTYPE", f.vm_type.as_str());
    kv("VSOCK_PORT", "0");
    kv(
        "VIRTIO_PORT",
        crate::store::paths::cidata_files::VIRTIO_PORT,
    );
    kv("PLAIN", flag(f.plain));
    kv("NO_CLOUD_INIT", "");
    kv("PASSWORDLESS_SUDO", flag(f.passwordless_sudo));
    match refused {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// `PARAM_<key>=<value>`, sorted by key.
pub(crate) fn param_env(param: &BTreeMap<String, String>) -> Result<String, CidataError> {
    let mut out = String::new();
    for (k, v) in param {
        check_env_pair("param", k, v)?;
        out.push_str(&format!("PARAM_{k}={v}\n"));
    }
    Ok(out)
}

/// `etc_environment`: the resolved environment between `#LIMA-START` and `#LIMA-END`.
pub(crate) fn etc_environment(env: &BTreeMap<String, String>) -> Result<String, CidataError> {
    let mut out = String::from("#LIMA-START\n");
    for (k, v) in env {
        check_env_pair("env", k, v)?;
        out.push_str(&format!("{k}={v}\n"));
    }
    out.push_str("#LIMA-END\n");
    Ok(out)
}

/// A line-based `KEY=value` file cannot hold a newline (nor another control
/// character but a tab), and a key must be a name.
pub(crate) fn check_env_pair(what: &'static str, k: &str, v: &str) -> Result<(), CidataError> {
    let name_ok = k
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !name_ok {
        return Err(CidataError::InvalidValue {
            what,
            key: k.to_string(),
            message: "a variable name may hold only letters, digits and `_`, and must not start with a digit".into(),
        });
    }
    check_line(what, k, v, true)
}

const PROXY_VARS: [&str; 4] = ["ftp_proxy", "http_proxy", "https_proxy", "no_proxy"];

/// Lima's `setupEnv` on a Linux host: `env` from lima.yaml, overridden by the
/// proxy variables of the limactl process when `propagate` is set; empty
/// values removed; a loopback proxy host replaced by the slirp gateway (port
/// kept); then upper- and lower-case variants made equal (lower case wins).
///
/// "Loopback" is decided without DNS: `localhost`, `*.localhost`, `127.0.0.0/8`
/// and `::1` (Lima resolves the name; a name that resolves to a loopback
/// address only through DNS or /etc/hosts is left as it is).
pub(crate) fn setup_env(
    config_env: &BTreeMap<String, String>,
    propagate: bool,
    host_env: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut env = config_env.clone();
    let all: Vec<String> = PROXY_VARS
        .iter()
        .map(|s| s.to_string())
        .chain(PROXY_VARS.iter().map(|s| s.to_ascii_uppercase()))
        .collect();
    if propagate {
        for name in &all {
            if let Some(v) = host_env.get(name) {
                if env.get(name).is_some_and(|old| old != v) {
                    crate::info!(
                        "Overriding {name:?} value {:?} with {v:?} from limactl process environment",
                        env[name]
                    );
                }
                env.insert(name.clone(), v.clone());
            }
        }
    }
    for name in &all {
        let Some(value) = env.get(name).cloned() else {
            continue;
        };
        if value.is_empty() {
            env.remove(name);
        } else if !name.eq_ignore_ascii_case("no_proxy")
            && let Some(new) = replace_loopback(&value, SLIRP_GATEWAY)
        {
            crate::info!("Replacing {name:?} value {value:?} with {new:?}");
            env.insert(name.clone(), new);
        }
    }
    for lower in PROXY_VARS {
        let upper = lower.to_ascii_uppercase();
        if let Some(v) = env.get(lower).cloned() {
            if env.get(&upper).is_some_and(|u| *u != v) {
                crate::warn!("Changing {upper:?} value to {v:?} to match {lower:?}");
            }
            env.insert(upper, v);
        } else if let Some(v) = env.get(&upper).cloned() {
            env.insert(lower.to_string(), v);
        }
    }
    env
}

/// The proxy URL with a loopback host replaced by `gateway`, or `None` when
/// the host is not loopback (or the value is not a URL with a host).
fn replace_loopback(value: &str, gateway: &str) -> Option<String> {
    let (scheme, rest) = match value.find("://") {
        Some(i) => (&value[..i + 3], &value[i + 3..]),
        None => ("", value),
    };
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(auth_end);
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(i) => (&authority[..=i], &authority[i + 1..]),
        None => ("", authority),
    };
    let (host, port) = if let Some(inner) = hostport.strip_prefix('[') {
        let close = inner.find(']')?;
        (&inner[..close], &inner[close + 1..])
    } else {
        match hostport.rfind(':') {
            Some(i) => (&hostport[..i], &hostport[i..]),
            None => (hostport, ""),
        }
    };
    if !is_loopback_host(host) {
        return None;
    }
    Some(format!("{scheme}{userinfo}{gateway}{port}{tail}"))
}

fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    if h == "localhost" || h.ends_with(".localhost") {
        return true;
    }
    h.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn loopback_proxies_point_at_the_gateway() {
        assert_eq!(
            replace_loopback("http://127.0.0.1:3128", "192.168.5.2").as_deref(),
            Some("http://192.168.5.2:3128")
        );
        assert_eq!(
            replace_loopback("http://user:pw@localhost:8080/x", "192.168.5.2").as_deref(),
            Some("http://user:pw@192.168.5.2:8080/x")
        );
        assert_eq!(
            replace_loopback("http://[::1]:1/", "192.168.5.2").as_deref(),
            Some("http://192.168.5.2:1/")
        );
        assert_eq!(
            replace_loopback("socks5://127.1.2.3", "192.168.5.2").as_deref(),
            Some("socks5://192.168.5.2")
        );
        assert_eq!(replace_loopback("http://proxy.corp:3128", "g"), None);
        assert_eq!(replace_loopback("http://10.0.0.1:3128", "g"), None);
    }

    #[test]
    fn proxy_propagation_follows_lima() {
        let config = m(&[
            ("FOO", "bar"),
            ("http_proxy", "http://from-yaml:1"),
            ("ftp_proxy", "ftp://keep:21"),
        ]);
        let host = m(&[
            ("http_proxy", "http://127.0.0.1:3128"),
            ("HTTPS_PROXY", "http://localhost:8443"),
            ("no_proxy", "localhost,127.0.0.1"),
            ("FTP_PROXY", ""),
            ("PATH", "/usr/bin"),
        ]);
        let env = setup_env(&config, true, &host);
        assert_eq!(
            env,
            m(&[
                ("FOO", "bar"),
                ("HTTPS_PROXY", "http://192.168.5.2:8443"),
                ("HTTP_PROXY", "http://192.168.5.2:3128"),
                ("NO_PROXY", "localhost,127.0.0.1"),
                ("ftp_proxy", "ftp://keep:21"),
                ("FTP_PROXY", "ftp://keep:21"),
                ("http_proxy", "http://192.168.5.2:3128"),
                ("https_proxy", "http://192.168.5.2:8443"),
                ("no_proxy", "localhost,127.0.0.1"),
            ])
        );
        // Without propagation only lima.yaml counts (still rewritten and paired).
        let env = setup_env(&config, false, &host);
        assert_eq!(env["http_proxy"], "http://from-yaml:1");
        assert_eq!(env["HTTP_PROXY"], "http://from-yaml:1");
        assert!(!env.contains_key("https_proxy"));
        assert!(!env.contains_key("PATH"));
    }

    /// These lines went nowhere under the old logger; Lima prints them.
    #[test]
    fn proxy_rewrites_are_logged_as_lima_logs_them() {
        let config = m(&[
            ("http_proxy", "http://from-yaml:1"),
            ("HTTPS_PROXY", "http://u:2"),
        ]);
        let host = m(&[
            ("http_proxy", "http://127.0.0.1:3128"),
            ("https_proxy", "http://p:3"),
        ]);
        let lines = crate::logging::capture(crate::logging::Level::Info, false, || {
            setup_env(&config, true, &host);
        });
        let expected = [
            r#"level=info msg="Overriding \"http_proxy\" value \"http://from-yaml:1\" with \"http://127.0.0.1:3128\" from limactl process environment""#,
            r#"level=info msg="Replacing \"http_proxy\" value \"http://127.0.0.1:3128\" with \"http://192.168.5.2:3128\"""#,
            r#"level=warning msg="Changing \"HTTPS_PROXY\" value to \"http://p:3\" to match \"https_proxy\"""#,
        ];
        for e in expected {
            assert!(lines.contains(e), "missing {e}\nin:\n{lines}");
        }
    }

    #[test]
    fn etc_environment_is_a_marked_block() {
        let env = setup_env(
            &m(&[("A", "1 2")]),
            true,
            &m(&[("http_proxy", "http://[::1]:9")]),
        );
        assert_eq!(
            etc_environment(&env).unwrap(),
            "#LIMA-START\nA=1 2\nHTTP_PROXY=http://192.168.5.2:9\nhttp_proxy=http://192.168.5.2:9\n#LIMA-END\n"
        );
        assert!(etc_environment(&m(&[("A", "x\ny")])).is_err());
        assert!(etc_environment(&m(&[("1A", "x")])).is_err());
    }

    #[test]
    fn param_env_is_sorted() {
        assert_eq!(
            param_env(&m(&[("b", "2"), ("A", "x y")])).unwrap(),
            "PARAM_A=x y\nPARAM_b=2\n"
        );
    }
}
