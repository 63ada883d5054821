//! Waiting for a guest to be Ready, from the host agent's events: what
//! `start`, `restart` and `apply --wait` do after their (short) plans ran,
//! outside the instance lock, so nobody else is held up meanwhile.

use std::path::Path;
use std::time::Duration;

use crate::hostagent::launch::{self, LaunchError, Ready};
use crate::hostagent::logfollow::LogFollower;
use crate::spec::yaml::quote_name;
use crate::store::paths::files;

/// How to wait.
#[derive(Clone, Copy, Debug)]
pub struct WaitOptions {
    pub timeout: Duration,
    /// Re-log the host agent's progress lines (`[hostagent] …`) as they come.
    pub progress: bool,
}

/// Waits until the guest of the instance in `dir` is Ready (its requirements
/// passed), Degraded, or its host agent gone.
pub fn ready(dir: &Path, name: &str, opts: WaitOptions) -> Result<Ready, LaunchError> {
    let mut progress = opts
        .progress
        .then(|| LogFollower::new(&dir.join(files::HA_STDERR_LOG)));
    let mut port_logged = false;
    let forward = |progress: &mut Option<LogFollower>| {
        if let Some(p) = progress {
            for (level, msg) in p.poll() {
                crate::logging::log(level, &format!("[hostagent] {msg}"), &[]);
            }
        }
    };
    let result = launch::wait_ready(dir, name, opts.timeout, |ev| {
        forward(&mut progress);
        if let Some(ev) = ev
            && opts.progress
            && ev.status.ssh_local_port != 0
            && !port_logged
        {
            port_logged = true;
            crate::info!("SSH Local Port: {}", ev.status.ssh_local_port);
        }
    });
    forward(&mut progress);
    if result.is_ok() && opts.progress {
        let hint = if name == "default" {
            "Run `lima` to open the shell.".to_string()
        } else {
            format!("Run `limactl shell {name}` to open the shell.")
        };
        crate::info!("READY. {hint}");
    }
    result
}

/// `apply --wait`'s message for an instance that did not become Ready.
pub fn describe_failure(name: &str, e: &LaunchError) -> String {
    match e {
        LaunchError::Degraded { errors, .. } => format!(
            "instance {} is degraded: {}",
            quote_name(name),
            errors.join("; ")
        ),
        other => other.to_string(),
    }
}
