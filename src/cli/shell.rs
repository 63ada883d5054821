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
    /// Instance name; all positional arguments are then the command (used by `lima`).
    #[arg(long, hide = true)]
    pub instance: Option<String>,
    /// INSTANCE [COMMAND…]
    #[arg(allow_hyphen_values = true)]
    pub args: Vec<String>,
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

/// The remote script: `cd … ; exec <shell> -l [-c '<command>']`.
pub fn remote_script(workdir: Option<&str>, shell: &str, command: &[String]) -> String {
    let cd = match workdir {
        Some(d) => format!("cd {} || exit 1", shell_quote(d)),
        None => "false".to_string(),
    };
    let mut s = format!("{cd} ; exec {shell} -l");
    if !command.is_empty() {
        s.push_str(&format!(" -c {}", shell_quote(&quote_command(command))));
    }
    s
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
    let mut inst = existing(&home, &env, &name)?;
    if inst.status != Status::Running {
        if a.start {
            let sa = super::start::Args {
                name: None,
                target: Some(name.clone()),
                edit: Default::default(),
                create: Default::default(),
                timeout: std::time::Duration::from_secs(600),
                foreground: false,
            };
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
    let shell = match &a.shell {
        Some(s) => shell_quote(s),
        None => inst
            .config
            .as_ref()
            .and_then(|c| c.user.as_ref())
            .and_then(|u| u.shell.clone())
            .map(|s| shell_quote(&s))
            .unwrap_or_else(|| "\"$SHELL\"".into()),
    };
    let script = remote_script(a.workdir.as_deref(), &shell, &a.args);
    let mut cmd = std::process::Command::new(crate::ssh::ssh_binary());
    cmd.args(target.args(true));
    if std::io::IsTerminal::is_terminal(&std::io::stdout())
        && std::io::IsTerminal::is_terminal(&std::io::stdin())
    {
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
    let err = cmd.exec();
    anyhow::bail!("cannot run ssh: {err} (is openssh-client installed? run hack/install-deps.sh)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_quote_like_lima() {
        assert_eq!(
            remote_script(None, "/bin/bash", &[]),
            "false ; exec /bin/bash -l"
        );
        assert_eq!(
            remote_script(
                Some("/tmp/a b"),
                "/bin/bash",
                &["uname".into(), "-a".into()]
            ),
            "cd '/tmp/a b' || exit 1 ; exec /bin/bash -l -c 'uname -a'"
        );
        assert_eq!(
            remote_script(
                None,
                "/bin/sh",
                &["FOO=a b".into(), "echo".into(), "it's".into()]
            ),
            "false ; exec /bin/sh -l -c 'FOO='\\''a b'\\'' echo '\\''it'\\''\\'\\'''\\''s'\\'''"
        );
    }
}
