//! `limactl tunnel [--socks-port N] INSTANCE` (reference §8.10): a SOCKS
//! proxy into the guest's network, `ssh -D` on 127.0.0.1 backgrounded by ssh
//! itself (`-f -N`), over the instance's SSH options as Lima does.

use crate::reconcile::ops::existing;
use crate::spec::yaml::quote_name;
use crate::ssh::SshTarget;
use crate::store::{Home, Status};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Tunnel type (only `socks`).
    #[arg(long = "type", default_value = "socks", value_name = "TYPE")]
    pub kind: String,
    /// SOCKS port on 127.0.0.1 (0: a free one).
    #[arg(long, default_value_t = 0, value_name = "PORT")]
    pub socks_port: u32,
    pub instance: String,
}

/// The port to listen on: the one asked for (1024–65535), else a free one.
pub fn socks_port(asked: u32) -> anyhow::Result<u16> {
    match asked {
        0 => {
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            Ok(l.local_addr()?.port())
        }
        1024..=65535 => Ok(asked as u16),
        _ => anyhow::bail!("invalid socks port {asked}: use 0 (a free port) or 1024-65535"),
    }
}

/// `ssh <instance options> -q -f -N -D 127.0.0.1:PORT -p SSHPORT 127.0.0.1`.
pub fn ssh_argv(target: &SshTarget, socks: u16, ssh_port: u16) -> Vec<String> {
    let mut argv = target.args(true);
    argv.extend(
        [
            "-q",
            "-f",
            "-N",
            "-D",
            &format!("127.0.0.1:{socks}"),
            "-p",
            &ssh_port.to_string(),
            "127.0.0.1",
        ]
        .map(String::from),
    );
    argv
}

/// What Lima prints on Linux once the proxy listens.
pub fn instructions(name: &str, port: u16) -> String {
    format!(
        "Set `ALL_PROXY=socks5h://127.0.0.1:{port}`, etc.\n\
         The instance can be connected from the host as <http://{}.internal> via a web browser.\n",
        crate::spec::defaults::hostname_for(name)
    )
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    if a.kind != "socks" {
        anyhow::bail!(
            "unknown tunnel type {} (the only type is `socks`)",
            quote_name(&a.kind)
        );
    }
    let home = Home::from_env();
    let env = crate::spec::LoadEnv::new(&home.root);
    let inst = existing(&home, &env, &a.instance)?;
    if inst.status == Status::Stopped {
        anyhow::bail!(
            "instance {} is stopped, run `limactl start {}` to start the instance",
            quote_name(&inst.name),
            inst.name
        );
    }
    let port = socks_port(a.socks_port)?;
    let target = SshTarget::for_instance(&home, &inst)?;
    let argv = ssh_argv(&target, port, inst.ssh_local_port);
    crate::debug!("executing ssh {}", argv.join(" "));
    let status = std::process::Command::new(crate::ssh::ssh_binary())
        .args(&argv)
        .stdin(std::process::Stdio::null())
        .status()
        .map_err(|e| anyhow::anyhow!("cannot run ssh: {e} (run hack/install-deps.sh)"))?;
    if !status.success() {
        anyhow::bail!(
            "ssh could not open the SOCKS proxy on 127.0.0.1:{port} for {} ({status})",
            quote_name(&inst.name)
        );
    }
    let mut out = super::out::stdout();
    std::io::Write::write_all(&mut out, instructions(&inst.name, port).as_bytes())?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_free_or_unprivileged() {
        assert_eq!(socks_port(1080).unwrap(), 1080);
        assert!(socks_port(0).unwrap() > 0);
        assert!(socks_port(80).is_err());
        assert!(socks_port(70000).is_err());
    }

    #[test]
    fn ssh_listens_on_loopback_only_in_the_background() {
        let t = SshTarget::for_tests(std::path::Path::new("/lh/vm"));
        let argv = ssh_argv(&t, 4321, 60022);
        assert_eq!(
            argv[argv.len() - 8..],
            [
                "-q",
                "-f",
                "-N",
                "-D",
                "127.0.0.1:4321",
                "-p",
                "60022",
                "127.0.0.1"
            ]
        );
        assert_eq!(argv[..2], ["-F", "/dev/null"]);
        assert!(argv.iter().any(|a| a == "User=u"), "{argv:?}");
        assert_eq!(
            instructions("vm", 4321),
            "Set `ALL_PROXY=socks5h://127.0.0.1:4321`, etc.\nThe instance can be connected from the host as <http://lima-vm.internal> via a web browser.\n"
        );
    }
}
