//! `limactl autostart enable|disable NAME` on Linux, as Lima does it: a
//! systemd user unit `lima-vm@NAME.service` in
//! `$XDG_CONFIG_HOME/systemd/user` running `limactl start NAME
//! --foreground`, enabled with `systemctl --user enable` (reference §8.13).
//! The unit carries `LIMA_HOME`: the user manager does not inherit the
//! environment of the shell that registered it.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Ctx, OpsError, existing};
use crate::spec::yaml::quote_name;

#[derive(Clone, Debug)]
pub struct AutostartOptions {
    pub name: String,
    /// The `limactl` binary the unit runs.
    pub limactl: PathBuf,
    /// `$XDG_CONFIG_HOME` (default `~/.config`).
    pub config_home: PathBuf,
}

impl AutostartOptions {
    /// For this process: its own binary and environment.
    pub fn from_env(name: &str) -> std::io::Result<AutostartOptions> {
        let config_home = match std::env::var_os("XDG_CONFIG_HOME") {
            Some(x) if !x.is_empty() => PathBuf::from(x),
            _ => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/".into()))
                .join(".config"),
        };
        Ok(AutostartOptions {
            name: name.to_string(),
            limactl: std::env::current_exe()?,
            config_home,
        })
    }

    /// The unit's file name: `lima-vm@NAME.service`.
    pub fn unit_name(&self) -> String {
        format!("lima-vm@{}.service", self.name)
    }

    pub fn unit_path(&self) -> PathBuf {
        self.config_home.join("systemd/user").join(self.unit_name())
    }
}

/// A word of a unit file's command line or assignment: double-quoted, with
/// `\` and `"` escaped, `%` (specifiers) and `$` (variables) doubled.
fn systemd_quote(s: &str) -> Result<String, String> {
    if s.chars().any(char::is_control) {
        return Err(format!(
            "{} contains a control character and cannot go into a unit file",
            quote_name(s)
        ));
    }
    let mut q = String::from('"');
    for c in s.chars() {
        match c {
            '\\' | '"' => {
                q.push('\\');
                q.push(c)
            }
            '%' => q.push_str("%%"),
            '$' => q.push_str("$$"),
            _ => q.push(c),
        }
    }
    q.push('"');
    Ok(q)
}

/// The unit (`%i` is the instance name, `%h` the user's home). Stopping it
/// sends SIGTERM to the foreground host agent, which powers the guest off
/// for up to 180 s: the stop timeout leaves it that time.
pub fn unit(limactl: &Path, lima_home: &Path) -> Result<String, String> {
    let bin = systemd_quote(&limactl.display().to_string())?;
    let env = systemd_quote(&format!("LIMA_HOME={}", lima_home.display()))?;
    Ok(format!(
        "[Unit]
Description=Lima - Linux virtual machines, with a focus on running containers.
Documentation=man:lima(1)

[Service]
ExecStart={bin} start %i --foreground
Environment={env}
WorkingDirectory=%h
Type=simple
TimeoutStartSec=10
TimeoutStopSec=200
Restart=on-failure

[Install]
WantedBy=default.target
"
    ))
}

fn failed(name: &str, what: &str, e: impl std::fmt::Display) -> OpsError {
    OpsError::Failed {
        name: name.into(),
        what: what.into(),
        message: e.to_string(),
    }
}

fn systemctl(name: &str, args: &[&str]) -> Result<(), OpsError> {
    let out = Command::new("systemctl")
        .arg("--user")
        .args(args)
        .output()
        .map_err(|e| failed(name, "run systemctl (install systemd)", e))?;
    if !out.status.success() {
        return Err(failed(
            name,
            &format!("systemctl --user {}", args.join(" ")),
            String::from_utf8_lossy(&out.stderr).trim(),
        ));
    }
    Ok(())
}

/// Writes the unit (replacing an older one) and enables it; returns its path.
pub fn enable(ctx: &Ctx, opts: &AutostartOptions) -> Result<PathBuf, OpsError> {
    existing(&ctx.home, &ctx.env, &opts.name)?;
    let text = unit(&opts.limactl, &ctx.home.root).map_err(OpsError::Usage)?;
    let path = opts.unit_path();
    if let Some(dir) = path.parent() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(crate::store::at(dir, "create"))
            .map_err(|e| failed(&opts.name, "autostart enable", e))?;
    }
    crate::store::atomic::write(&path, text.as_bytes(), 0o600)
        .map_err(|e| failed(&opts.name, "autostart enable", e))?;
    systemctl(&opts.name, &["enable", &opts.unit_name()])?;
    Ok(path)
}

/// Disables and removes the unit; `false` when there was none.
pub fn disable(ctx: &Ctx, opts: &AutostartOptions) -> Result<bool, OpsError> {
    crate::spec::names::validate_instance_name(&opts.name).map_err(OpsError::Name)?;
    let _ = ctx;
    let path = opts.unit_path();
    if path.symlink_metadata().is_err() {
        return Ok(false);
    }
    systemctl(&opts.name, &["disable", &opts.unit_name()])?;
    std::fs::remove_file(&path)
        .map_err(crate::store::at(&path, "remove"))
        .map_err(|e| failed(&opts.name, "autostart disable", e))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_quoted_for_systemd() {
        let u = unit(Path::new("/opt/my lima/limactl"), Path::new("/h/50%$x")).unwrap();
        assert!(
            u.contains("ExecStart=\"/opt/my lima/limactl\" start %i --foreground\n"),
            "{u}"
        );
        assert!(u.contains("Environment=\"LIMA_HOME=/h/50%%$$x\"\n"), "{u}");
        assert!(unit(Path::new("/a\nb"), Path::new("/h")).is_err());
    }
}
