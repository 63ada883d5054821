//! `limactl shell [--workdir D] [--shell S] INSTANCE [COMMAND…]` (reference §5.4).

use std::os::unix::process::CommandExt;

use crate::reconcile::ops::existing;
use crate::spec::yaml::quote_name;
use crate::ssh::{SshTarget, shell_quote};
use crate::store::{Home, Status};

#[derive(clap::Args, Debug)]
#[command(trailing_var_arg = true)]
pub struct Args {
    /// Shell to run (default: the guest user's shell).
    #[arg(long)]
    pub shell: Option<String>,
    /// Working directory in the guest.
    #[arg(long)]
    pub workdir: Option<String>,
    /// Start the instance if it is stopped.
    #[arg(long)]
    pub start: bool,
    /// Close the SSH ControlMaster connection first (a fresh login).
    #[arg(long)]
    pub reconnect: bool,
    /// Pass the host's environment (minus LIMA_SHELLENV_BLOCK, default: PATH,
    /// HOME, SSH_*, …; LIMA_SHELLENV_ALLOW exempts names).
    #[arg(long)]
    pub preserve_env: bool,
    /// Copy DIR into the guest (under the guest home), run there, then offer
    /// to copy the changes back (needs rsync; not with mounts).
    #[arg(long, value_name = "DIR")]
    pub sync: Option<String>,
    /// Instance name; all positional arguments are then the command (used by `lima`).
    #[arg(long, hide = true)]
    pub instance: Option<String>,
    /// INSTANCE [COMMAND…]: flags end at the instance name.
    #[arg(value_name = "INSTANCE")]
    pub args: Vec<String>,
}

/// Where the session starts (reference §5.4 item 5).
#[derive(Debug, Default)]
pub struct Place<'a> {
    pub workdir: Option<&'a str>,
    /// `<guest home><host dir>` with `--sync`.
    pub synced: Option<&'a str>,
    /// The host's working directory and home (symlinks resolved).
    pub cwd: Option<&'a std::path::Path>,
    pub host_home: Option<&'a std::path::Path>,
    /// The instance's mounts: (host location, guest mount point).
    pub mounts: &'a [(std::path::PathBuf, String)],
}

impl Place<'_> {
    /// `d` as the guest sees it through a mount, when one holds it.
    fn in_guest(&self, d: &std::path::Path) -> Option<String> {
        self.mounts.iter().find_map(|(host, guest)| {
            let rel = d.strip_prefix(host).ok()?;
            if rel.as_os_str().is_empty() {
                return Some(guest.clone());
            }
            Some(
                std::path::Path::new(guest)
                    .join(rel)
                    .to_string_lossy()
                    .into_owned(),
            )
        })
    }
}

/// The `cd` part of the remote script: `--workdir`, else the host's working
/// directory when a mount holds it (so `lima make` works in a project), else
/// the host home when mounted, else `false` (the guest home). A mount whose
/// mount point differs from its location is followed to the guest's path.
pub fn cd_command(p: &Place) -> String {
    if let Some(w) = p.workdir {
        return format!("cd {} || exit 1", shell_quote(w));
    }
    if let Some(s) = p.synced {
        return format!("cd {} || exit 1", shell_quote(s));
    }
    let home = p.host_home.map(|h| {
        p.in_guest(h)
            .unwrap_or_else(|| h.to_string_lossy().into_owned())
    });
    if let Some(cwd) = p.cwd.and_then(|d| p.in_guest(d)) {
        return match home {
            Some(h) => format!("cd {} || cd {}", shell_quote(&cwd), shell_quote(&h)),
            None => format!("cd {}", shell_quote(&cwd)),
        };
    }
    match p.host_home.and_then(|h| p.in_guest(h)) {
        Some(h) => format!("cd {}", shell_quote(&h)),
        None => "false".into(),
    }
}

/// Quotes a command: every word, except that `NAME=value` prefixes quote only the value.
fn quote_command(words: &[String]) -> String {
    let mut out = Vec::new();
    let mut env_prefix = true;
    for w in words {
        if env_prefix
            && let Some((k, v)) = w.split_once('=')
            && !k.is_empty()
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            out.push(format!("{k}={}", shell_quote(v)));
            continue;
        }
        env_prefix = false;
        out.push(shell_quote(w));
    }
    out.join(" ")
}

/// The remote script: `<cd> ; exec [env K=V …] <shell> -l [-c '<command>']`.
pub fn remote_script(cd: &str, env: &str, shell: &str, command: &[String]) -> String {
    let mut s = format!("{cd} ; exec {env}{shell} -l");
    if !command.is_empty() {
        s.push_str(&format!(" -c {}", shell_quote(&quote_command(command))));
    }
    s
}

/// Asks a yes/no question on the terminal (Enter: `default`).
pub fn ask(question: &str, default: bool) -> bool {
    use std::io::Write;
    let hint = if default { "[Y/n]" } else { "[y/N]" };
    eprint!("? {question} {hint} ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).unwrap_or(0) == 0 {
        return false;
    }
    match line.trim().to_ascii_lowercase().as_str() {
        "" => default,
        a => a == "y" || a == "yes",
    }
}

fn stdin_is_tty() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stdin())
}

/// Lima's `--reconnect`: ask the ControlMaster to exit; a socket nobody
/// listens on any more is removed, so the next ssh logs in afresh.
fn reconnect(target: &SshTarget) {
    let sock = target.control_path();
    target.exit_master();
    if sock.exists() && std::os::unix::net::UnixStream::connect(&sock).is_err() {
        crate::debug!("removing the stale SSH control socket {}", sock.display());
        let _ = std::fs::remove_file(&sock);
    }
}

pub fn run(mut a: Args, g: &super::Globals) -> anyhow::Result<i32> {
    let home = Home::from_env();
    let env = crate::spec::LoadEnv::new(&home.root);
    let name = match a.instance.take() {
        Some(n) => n,
        None => {
            if a.args.is_empty() {
                anyhow::bail!("requires instance name as first argument");
            }
            a.args.remove(0)
        }
    };
    if a.args.first().map(String::as_str) == Some("--") {
        a.args.remove(0);
    }
    if let Some(first) = a.args.first()
        && ["create", "start", "delete", "shell"].contains(&first.as_str())
    {
        crate::warn!("Perhaps you meant `limactl {}`?", a.args.join(" "));
    }
    if a.sync.is_some() && a.workdir.is_some() {
        anyhow::bail!("cannot use `--workdir` and `--sync` together");
    }
    // Bad patterns are refused before anything else happens.
    let preserved = if a.preserve_env {
        super::shellenv::from_host()?
    } else {
        Vec::new()
    };
    let mut inst = existing(&home, &env, &name)?;
    if inst.status != Status::Running {
        let start = a.start
            || (inst.status == Status::Stopped
                && g.tty
                && stdin_is_tty()
                && ask("Do you want to start the instance now?", true));
        if start {
            let sa = super::start::Args::instance(&name);
            super::start::run(sa, g)?;
            inst = existing(&home, &env, &name)?;
        } else if inst.status == Status::Stopped {
            anyhow::bail!(
                "instance {} is stopped, run `limactl start {name}` to start the instance",
                quote_name(&name)
            );
        } else {
            anyhow::bail!(
                "instance {} is not running (status {}): {}",
                quote_name(&name),
                inst.status.as_str(),
                inst.errors.join("; ")
            );
        }
    }
    let target = SshTarget::for_instance(&home, &inst)?;
    if a.reconnect {
        reconnect(&target);
    }
    let config = inst.config.clone().unwrap_or_default();
    let shell = match &a.shell {
        Some(s) => shell_quote(s),
        None => config
            .user
            .as_ref()
            .and_then(|u| u.shell.clone())
            .map(|s| shell_quote(&s))
            .unwrap_or_else(|| "\"$SHELL\"".into()),
    };
    let mounts: Vec<(std::path::PathBuf, String)> = config
        .mounts
        .iter()
        .flatten()
        .map(|m| {
            let host =
                std::fs::canonicalize(&m.location).unwrap_or_else(|_| m.location.clone().into());
            let guest = m.mount_point.clone().unwrap_or_else(|| m.location.clone());
            (host, guest)
        })
        .collect();
    let cwd = std::env::current_dir()
        .ok()
        .map(|d| std::fs::canonicalize(&d).unwrap_or(d));
    let host_home = std::env::var_os("HOME")
        .map(std::path::PathBuf::from)
        .map(|h| std::fs::canonicalize(&h).unwrap_or(h));
    let sync = match &a.sync {
        Some(dir) => Some(super::shell_sync::Sync::prepare(
            dir, &config, &mounts, &target, &inst,
        )?),
        None => None,
    };
    let place = Place {
        workdir: a.workdir.as_deref(),
        synced: sync.as_ref().map(|s| s.guest_dir.as_str()),
        cwd: cwd.as_deref(),
        host_home: host_home.as_deref(),
        mounts: &mounts,
    };
    let script = remote_script(
        &cd_command(&place),
        &super::shellenv::env_prefix(&preserved),
        &shell,
        &a.args,
    );
    let mut cmd = std::process::Command::new(crate::ssh::ssh_binary());
    cmd.args(target.args(true));
    if std::io::IsTerminal::is_terminal(&std::io::stdout()) && stdin_is_tty() {
        cmd.arg("-t");
    }
    if std::env::var_os("COLORTERM").is_some() {
        cmd.args(["-o", "SendEnv=COLORTERM"]);
    }
    cmd.args(["-o", "LogLevel=ERROR", "-p"])
        .arg(inst.ssh_local_port.to_string())
        .arg("127.0.0.1")
        .arg("--")
        .arg(script);
    crate::debug!("executing ssh: {cmd:?}");
    let Some(sync) = sync else {
        let err = cmd.exec();
        anyhow::bail!(
            "cannot run ssh: {err} (is openssh-client installed? run hack/install-deps.sh)"
        )
    };
    let status = cmd
        .status()
        .map_err(|e| anyhow::anyhow!("cannot run ssh: {e} (run hack/install-deps.sh)"))?;
    sync.finish(g)?;
    Ok(status.code().unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_quote_like_lima() {
        assert_eq!(
            remote_script("false", "", "/bin/bash", &[]),
            "false ; exec /bin/bash -l"
        );
        assert_eq!(
            remote_script(
                "cd '/tmp/a b' || exit 1",
                "",
                "/bin/bash",
                &["uname".into(), "-a".into()]
            ),
            "cd '/tmp/a b' || exit 1 ; exec /bin/bash -l -c 'uname -a'"
        );
        assert_eq!(
            remote_script(
                "false",
                "env A='1 2' ",
                "/bin/sh",
                &["FOO=a b".into(), "echo".into(), "it's".into()]
            ),
            "false ; exec env A='1 2' /bin/sh -l -c 'FOO='\\''a b'\\'' echo '\\''it'\\''\\'\\'''\\''s'\\'''"
        );
    }

    #[test]
    fn the_session_starts_where_lima_starts_it() {
        use std::path::{Path, PathBuf};
        let m = |h: &str, g: &str| (PathBuf::from(h), g.to_string());
        let mounts = [m("/home/me", "/home/me"), m("/data", "/data")];
        let home = Path::new("/home/me");
        let at = |cwd: &str, mounts: &[(PathBuf, String)]| {
            cd_command(&Place {
                cwd: Some(Path::new(cwd)),
                host_home: Some(home),
                mounts,
                ..Default::default()
            })
        };
        // The host's directory, when a mount holds it (home as the fallback).
        assert_eq!(
            at("/home/me/proj x", &mounts),
            "cd '/home/me/proj x' || cd /home/me"
        );
        assert_eq!(at("/data/a", &mounts), "cd /data/a || cd /home/me");
        // Elsewhere: the mounted host home, else the guest home.
        assert_eq!(at("/tmp", &mounts), "cd /home/me");
        assert_eq!(at("/tmp", &mounts[1..]), "false");
        assert_eq!(at("/home/me", &[]), "false");
        // A path prefix is no mount: /database is not under /data.
        assert_eq!(at("/database", &mounts[1..]), "false");
        // A mount point elsewhere in the guest is followed.
        let moved = [m("/data", "/mnt/d")];
        assert_eq!(at("/data/a b", &moved), "cd '/mnt/d/a b' || cd /home/me");
        // --workdir and --sync win.
        let p = Place {
            workdir: Some("/w"),
            cwd: Some(Path::new("/data/a")),
            mounts: &mounts,
            ..Default::default()
        };
        assert_eq!(cd_command(&p), "cd /w || exit 1");
        let p = Place {
            synced: Some("/home/me.guest/home/me/p"),
            cwd: Some(Path::new("/data/a")),
            mounts: &mounts,
            ..Default::default()
        };
        assert_eq!(cd_command(&p), "cd /home/me.guest/home/me/p || exit 1");
    }
}
