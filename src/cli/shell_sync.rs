//! `limactl shell --sync DIR` (reference §5.4 item 10): the host directory
//! is copied to `<guest home><DIR>` with rsync, the session runs there, and
//! the guest's changes come back only once accepted (a terminal's answer,
//! or `--yes`), so a mistake in the guest never silently rewrites the host.

use std::path::{Path, PathBuf};

use crate::spec::LimaYaml;
use crate::ssh::{SshTarget, shell_quote};

pub struct Sync {
    pub host_dir: PathBuf,
    pub guest_dir: String,
    remote: String,
    ssh: String,
}

/// `/a/b` has depth 3 as Lima counts it (`"", "a", "b"`); less than 4 is the
/// host's root, a top directory or a home, which `--delete` must never mirror.
pub fn check_depth(dir: &Path) -> anyhow::Result<()> {
    let depth = dir.to_string_lossy().split('/').count();
    if depth < 4 {
        anyhow::bail!(
            "expected the depth of the host working directory ({}) to be more than 3, only got {depth} (Hint: sync a project directory, not a home or the root)",
            dir.display()
        );
    }
    Ok(())
}

/// `rsync -a --delete [extra] -e SSH -- FROM/ TO/`.
pub fn rsync_argv(ssh: &str, from: &str, to: &str, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ["-a", "--delete"].map(String::from).to_vec();
    v.extend(extra.iter().map(|s| s.to_string()));
    v.extend([
        "-e".to_string(),
        ssh.to_string(),
        "--".into(),
        format!("{}/", from.trim_end_matches('/')),
        format!("{}/", to.trim_end_matches('/')),
    ]);
    v
}

fn rsync(argv: &[String]) -> anyhow::Result<String> {
    crate::debug!("executing rsync {}", argv.join(" "));
    let out = std::process::Command::new("rsync")
        .args(argv)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run rsync: {e} (run hack/install-deps.sh)"))?;
    if !out.status.success() {
        anyhow::bail!(
            "rsync failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Sync {
    /// Checks Lima's preconditions and copies DIR into the guest.
    pub fn prepare(
        dir: &str,
        config: &LimaYaml,
        mounts: &[(PathBuf, String)],
        target: &SshTarget,
        inst: &crate::store::Instance,
    ) -> anyhow::Result<Sync> {
        if crate::hostagent::ansible::which("rsync", std::env::var_os("PATH").as_deref()).is_none()
        {
            anyhow::bail!("rsync is required for `--sync` but not found on the host");
        }
        if !mounts.is_empty() {
            anyhow::bail!(
                "cannot use `--sync` when the instance {} has host mounts configured: set `mounts: []` (limactl edit --set '.mounts = []')",
                crate::spec::yaml::quote_name(&inst.name)
            );
        }
        let host_dir =
            std::fs::canonicalize(dir).map_err(|e| anyhow::anyhow!("--sync {dir}: {e}"))?;
        if !host_dir.is_dir() {
            anyhow::bail!("--sync {}: not a directory", host_dir.display());
        }
        check_depth(&host_dir)?;
        let guest_home = config
            .user
            .as_ref()
            .and_then(|u| u.home.clone())
            .ok_or_else(|| anyhow::anyhow!("the guest home of {} is unknown", inst.name))?;
        let guest_dir = format!("{guest_home}{}", host_dir.display());
        let mut ssh = vec![crate::ssh::ssh_binary()];
        ssh.extend(target.args(true));
        ssh.extend(["-p".to_string(), inst.ssh_local_port.to_string()]);
        let ssh = ssh
            .iter()
            .map(|w| shell_quote(w))
            .collect::<Vec<_>>()
            .join(" ");
        let remote = format!("{}@127.0.0.1:{guest_dir}", target.user);
        let mkdir = target
            .command(true)
            .arg("--")
            .arg(format!("mkdir -p {}", shell_quote(&guest_dir)))
            .stdin(std::process::Stdio::null())
            .status()?;
        if !mkdir.success() {
            anyhow::bail!("cannot create {guest_dir} in the guest");
        }
        let s = Sync {
            host_dir,
            guest_dir,
            remote,
            ssh,
        };
        rsync(&rsync_argv(
            &s.ssh,
            &s.host_dir.to_string_lossy(),
            &s.remote,
            &[],
        ))?;
        crate::info!(
            "Synced {} to the guest's {}",
            s.host_dir.display(),
            s.guest_dir
        );
        Ok(s)
    }

    /// After the session: show what changed in the guest and copy it back
    /// when accepted.
    pub fn finish(&self, g: &super::Globals) -> anyhow::Result<()> {
        let host = self.host_dir.to_string_lossy();
        let changes = rsync(&rsync_argv(
            &self.ssh,
            &self.remote,
            &host,
            &["--dry-run", "--itemize-changes"],
        ))?;
        if changes.trim().is_empty() {
            crate::info!("No changes to sync back to {host}");
            return Ok(());
        }
        eprintln!("Changes made in the guest's {}:\n{changes}", self.guest_dir);
        let accept = if g.yes {
            true
        } else if g.tty && std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            super::shell::ask("Accept the changes (copy them back to the host)?", true)
        } else {
            crate::warn!(
                "not syncing the changes back to {host} without a terminal to confirm (use --yes)"
            );
            false
        };
        if accept {
            rsync(&rsync_argv(&self.ssh, &self.remote, &host, &[]))?;
            crate::info!("Synced the changes back to {host}");
        } else {
            crate::info!("Changes left in the guest's {}", self.guest_dir);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shallow_directories_are_refused() {
        assert!(check_depth(Path::new("/")).is_err());
        assert!(check_depth(Path::new("/home")).is_err());
        let e = check_depth(Path::new("/home/me")).unwrap_err().to_string();
        assert!(e.contains("more than 3, only got 3"), "{e}");
        check_depth(Path::new("/home/me/project")).unwrap();
    }

    #[test]
    fn rsync_mirrors_directory_contents() {
        assert_eq!(
            rsync_argv("ssh -p 1", "/h/p/", "u@127.0.0.1:/g/h/p", &["--dry-run"]),
            [
                "-a",
                "--delete",
                "--dry-run",
                "-e",
                "ssh -p 1",
                "--",
                "/h/p/",
                "u@127.0.0.1:/g/h/p/"
            ]
        );
    }
}
