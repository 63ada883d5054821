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
/// On a terminal, a spinner shows the requirement being waited for and the
/// time since the wait began (`dev: Waiting for the essential requirement 2
/// of 5: "user session is ready" (0:41)`).
pub fn ready(dir: &Path, name: &str, opts: WaitOptions) -> Result<Ready, LaunchError> {
    let spinner = crate::progress::Bar::new(None, "{spinner} {prefix}: {msg} ({elapsed})");
    spinner.set_prefix(name.to_string());
    spinner.set_message("waiting for the host agent");
    let mut progress = (opts.progress || spinner.is_drawn())
        .then(|| LogFollower::new(&dir.join(files::HA_STDERR_LOG)));
    let mut port_logged = false;
    let forward = |progress: &mut Option<LogFollower>| {
        if let Some(p) = progress {
            for (level, msg) in p.poll() {
                if let Some(current) = requirement(&msg) {
                    spinner.set_message(current.to_string());
                }
                if opts.progress {
                    crate::logging::log(level, &format!("[hostagent] {msg}"), &[]);
                }
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

/// What a host agent line says the guest is waiting for, if it says so.
fn requirement(line: &str) -> Option<&str> {
    line.starts_with("Waiting for the ").then_some(line)
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
