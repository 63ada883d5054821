//! Readiness requirements (reference §4.4), checked in order over SSH.
//!
//! Lima polls each requirement every 3 s. Here a requirement that waits for a
//! guest marker runs one SSH session whose script polls inside the guest
//! every 0.2 s, so readiness is noticed within a fraction of a second; SSH
//! itself is retried every 0.5 s while the guest boots.

use std::time::{Duration, Instant};

use crate::ssh::SshTarget;

/// One thing that must be true before the instance is ready.
#[derive(Clone, Debug)]
pub struct Requirement {
    pub description: String,
    /// Shell script run in the guest; exit 0 means satisfied.
    pub script: String,
    /// Use the ControlMaster (otherwise a fresh connection).
    pub master: bool,
    /// A failure aborts the remaining requirements.
    pub fatal: bool,
    pub hint: String,
}

/// The ordered requirements of one start.
#[derive(Clone, Debug)]
pub struct Requirements {
    pub target: SshTarget,
    pub essential: Vec<Requirement>,
    pub optional: Vec<Requirement>,
    pub final_: Vec<Requirement>,
    /// Per requirement.
    pub timeout: Duration,
}

/// A script that waits (in the guest) until `path` holds `iid`.
pub fn wait_for_marker(path: &str, iid: &str, timeout: Duration) -> String {
    let tries = (timeout.as_millis() / 200).max(1);
    format!(
        "i=0\nwhile [ \"$(cat {path} 2>/dev/null)\" != \"{iid}\" ]; do\n  i=$((i+1))\n  [ \"$i\" -gt {tries} ] && exit 1\n  sleep 0.2\ndone\n"
    )
}

impl Requirements {
    /// Lima's requirements for a Linux guest: ssh, the user session marker,
    /// the ControlMaster; then boot scripts finished.
    pub fn linux(target: SshTarget, iid: &str, timeout: Duration) -> Requirements {
        Requirements {
            target,
            essential: vec![
                Requirement {
                    description: "ssh".into(),
                    script: "true\n".into(),
                    master: false,
                    fatal: false,
                    hint: "The SSH server of the guest does not answer. Check serial.log; \
                           make sure `ssh.localPort` does not conflict with another port"
                        .into(),
                },
                Requirement {
                    description: "user session is ready for ssh".into(),
                    script: wait_for_marker("/run/lima-ssh-ready", iid, timeout),
                    master: false,
                    fatal: false,
                    hint: "The boot scripts did not mark the session ready; see /var/log/cloud-init-output.log in the guest".into(),
                },
                Requirement {
                    description: "Explicitly start ssh ControlMaster".into(),
                    script: "true\n".into(),
                    master: true,
                    fatal: false,
                    hint: "The ControlMaster could not be started".into(),
                },
            ],
            optional: Vec::new(),
            final_: vec![Requirement {
                description: "boot scripts must have finished".into(),
                script: wait_for_marker("/run/lima-boot-done", iid, timeout),
                master: true,
                fatal: false,
                hint: "See \"/var/log/cloud-init-output.log\" in the guest".into(),
            }],
            timeout,
        }
    }

    fn satisfy(&self, label: &str, i: usize, n: usize, r: &Requirement) -> Result<(), String> {
        crate::info!(
            "Waiting for the {label} requirement {i} of {n}: {:?}",
            r.description
        );
        let start = Instant::now();
        let mut last;
        loop {
            let left = self.timeout.saturating_sub(start.elapsed());
            // A marker wait runs in the guest for up to the whole timeout.
            match self
                .target
                .run_script(r.master, &r.script, left + Duration::from_secs(15))
            {
                Ok((Some(0), _, _)) => {
                    crate::info!("The {label} requirement {i} of {n} is satisfied");
                    return Ok(());
                }
                Ok((code, out, err)) => {
                    last = format!("exit {code:?}: {}{}", out.trim(), err.trim());
                }
                Err(e) => last = e.to_string(),
            }
            if start.elapsed() >= self.timeout {
                return Err(format!(
                    "failed to satisfy the {label} requirement {i} of {n} {:?}: {}: {last}",
                    r.description, r.hint
                ));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn run_group(&self, label: &str, reqs: &[Requirement], errors: &mut Vec<String>) -> bool {
        for (i, r) in reqs.iter().enumerate() {
            if let Err(e) = self.satisfy(label, i + 1, reqs.len(), r) {
                errors.push(e);
                if r.fatal {
                    return false;
                }
            }
        }
        true
    }

    /// Checks every requirement in order; returns the failures (empty = ready).
    pub fn wait_all(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.run_group("essential", &self.essential, &mut errors) {
            self.run_group("optional", &self.optional, &mut errors);
            self.run_group("final", &self.final_, &mut errors);
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_script_polls_with_a_bound() {
        let s = wait_for_marker("/run/lima-boot-done", "iid-1", Duration::from_secs(10));
        assert!(s.contains("cat /run/lima-boot-done"));
        assert!(s.contains("\"iid-1\""));
        assert!(s.contains("-gt 50"));
        // The script is valid sh and exits 1 when the marker never appears.
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(wait_for_marker(
                "/nonexistent",
                "x",
                Duration::from_millis(400),
            ))
            .status()
            .unwrap();
        assert_eq!(out.code(), Some(1));
    }
}
