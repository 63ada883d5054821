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
    /// Already satisfied when the previous requirement's output contains
    /// this text (saves an SSH session: each costs a second or more under
    /// emulation).
    pub satisfied_by_previous_output: Option<String>,
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
                    // Also reports the session marker, usually written by then.
                    script: "cat /run/lima-ssh-ready 2>/dev/null; true\n".into(),
                    master: false,
                    fatal: false,
                    hint: "The SSH server of the guest does not answer. Check serial.log; \
                           make sure `ssh.localPort` does not conflict with another port"
                        .into(),
                    satisfied_by_previous_output: None,
                },
                Requirement {
                    description: "user session is ready for ssh".into(),
                    script: wait_for_marker("/run/lima-ssh-ready", iid, timeout),
                    master: false,
                    fatal: false,
                    hint: "The boot scripts did not mark the session ready; see /var/log/cloud-init-output.log in the guest".into(),
                    satisfied_by_previous_output: Some(iid.to_string()),
                },
                Requirement {
                    description: "Explicitly start ssh ControlMaster".into(),
                    script: "true\n".into(),
                    master: true,
                    fatal: false,
                    hint: "The ControlMaster could not be started".into(),
                    satisfied_by_previous_output: None,
                },
            ],
            optional: Vec::new(),
            final_: vec![Requirement {
                description: "boot scripts must have finished".into(),
                script: wait_for_marker("/run/lima-boot-done", iid, timeout),
                master: true,
                fatal: false,
                hint: "See \"/var/log/cloud-init-output.log\" in the guest".into(),
                satisfied_by_previous_output: None,
            }],
            timeout,
        }
    }

    fn satisfy(
        &self,
        label: &str,
        i: usize,
        n: usize,
        r: &Requirement,
        previous_output: &str,
    ) -> Result<String, String> {
        crate::info!(
            "Waiting for the {label} requirement {i} of {n}: {:?}",
            r.description
        );
        if let Some(text) = &r.satisfied_by_previous_output
            && previous_output.lines().any(|l| l.trim() == text)
        {
            crate::info!("The {label} requirement {i} of {n} is satisfied");
            return Ok(String::new());
        }
        let start = Instant::now();
        if !r.master {
            // Cheap first: wait for sshd's banner before spending an ssh process.
            wait_for_banner(self.target.port, self.timeout);
        }
        let mut last;
        loop {
            let left = self.timeout.saturating_sub(start.elapsed());
            // A marker wait runs in the guest for up to the whole timeout.
            match self
                .target
                .run_script(r.master, &r.script, left + Duration::from_secs(15))
            {
                Ok((Some(0), out, _)) => {
                    crate::info!("The {label} requirement {i} of {n} is satisfied");
                    return Ok(out);
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
        let mut previous = String::new();
        for (i, r) in reqs.iter().enumerate() {
            match self.satisfy(label, i + 1, reqs.len(), r, &previous) {
                Ok(out) => previous = out,
                Err(e) => {
                    previous.clear();
                    errors.push(e);
                    if r.fatal {
                        return false;
                    }
                }
            }
        }
        true
    }

    /// Checks every requirement in order; returns the failures (empty = ready).
    /// Once the boot scripts are done, failed provisioning scripts count as
    /// failures too (Lima reports none of them: lima-vm/lima#209).
    pub fn wait_all(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.run_group("essential", &self.essential, &mut errors) {
            self.run_group("optional", &self.optional, &mut errors);
            self.run_group("final", &self.final_, &mut errors);
        }
        if errors.is_empty() {
            errors.extend(self.provision_failures());
        }
        errors
    }

    /// Failed provisioning scripts of this boot, from the guest's status files.
    pub fn provision_failures(&self) -> Vec<String> {
        match self
            .target
            .run_script(true, &provision_check_script(), Duration::from_secs(60))
        {
            Ok((Some(0), out, _)) => parse_provision_failures(&out),
            Ok((code, out, err)) => vec![format!(
                "cannot read the provisioning results (exit {code:?}): {}{}",
                out.trim(),
                err.trim()
            )],
            Err(e) => vec![format!("cannot read the provisioning results: {e}")],
        }
    }
}

/// How long one banner probe waits. QEMU's user networking accepts the TCP
/// connection at once and only then connects to the guest, retrying with a
/// growing back-off, so one long attempt notices sshd late. But every
/// abandoned attempt may still reach sshd later and sit there as an
/// unauthenticated connection for its LoginGraceTime (120 s); beyond
/// MaxStartups (10) of them sshd starts refusing everybody. Three seconds
/// keeps a typical boot well under ten abandoned attempts.
const BANNER_PROBE: Duration = Duration::from_secs(3);

/// Waits until something on 127.0.0.1:`port` sends an SSH banner.
pub fn wait_for_banner(port: u16, timeout: Duration) -> bool {
    use std::io::Read;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let start = Instant::now();
    while start.elapsed() < timeout {
        let attempt = Instant::now();
        if let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            let _ = s.set_read_timeout(Some(BANNER_PROBE));
            let mut buf = [0u8; 4];
            if s.read_exact(&mut buf).is_ok() && &buf == b"SSH-" {
                return true;
            }
        }
        // Refused outright (QEMU not listening yet): do not spin.
        if attempt.elapsed() < Duration::from_millis(500) {
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    false
}

/// Prints `LIMA-PROVISION-FAILED <index> <mode> <exit>` and the log tail
/// (indented) for every failed provisioning step of this boot.
fn provision_check_script() -> String {
    let dir = crate::store::paths::guest_files::PROVISION_STATUS_DIR;
    format!(
        r#"for f in {dir}/*.status; do
  [ -f "$f" ] || continue
  code=$(sed -n 's/^exit=//p' "$f")
  [ "$code" = 0 ] && continue
  n=$(basename "$f" .status)
  echo "LIMA-PROVISION-FAILED $n $(sed -n 's/^mode=//p' "$f") $code"
  sudo tail -n 5 "{dir}/$n.log" 2>/dev/null | sed 's/^/  /'
done
true
"#
    )
}

pub(crate) fn parse_provision_failures(out: &str) -> Vec<String> {
    let mut failures: Vec<(String, Vec<String>)> = Vec::new();
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix("LIMA-PROVISION-FAILED ") {
            let parts: Vec<&str> = rest.split_whitespace().collect();
            let index = parts
                .first()
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(0);
            let mode = parts.get(1).copied().unwrap_or("?");
            let code = parts.get(2).copied().unwrap_or("?");
            failures.push((
                format!("provision[{index}] (mode: {mode}) failed with exit code {code}"),
                Vec::new(),
            ));
        } else if let (Some(tail), Some(last)) = (line.strip_prefix("  "), failures.last_mut()) {
            last.1.push(tail.to_string());
        }
    }
    failures
        .into_iter()
        .map(|(head, tail)| {
            if tail.is_empty() {
                head
            } else {
                format!("{head}; last output: {}", tail.join(" | "))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn banner_probe_sees_an_ssh_server() {
        use std::io::Write;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for mut c in l.incoming().flatten() {
                let _ = c.write_all(b"SSH-2.0-OpenSSH_9.2\r\n");
            }
        });
        assert!(wait_for_banner(port, Duration::from_secs(5)));
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = silent.local_addr().unwrap().port();
        assert!(!wait_for_banner(port, Duration::from_millis(3500)));
    }

    #[test]
    fn provision_failures_are_parsed() {
        let out = "LIMA-PROVISION-FAILED 00000002 system 7\n  step one\n  oops\nLIMA-PROVISION-FAILED 00000010 user 1\n";
        assert_eq!(
            parse_provision_failures(out),
            vec![
                "provision[2] (mode: system) failed with exit code 7; last output: step one | oops"
                    .to_string(),
                "provision[10] (mode: user) failed with exit code 1".to_string(),
            ]
        );
        assert!(parse_provision_failures("").is_empty());
        // The check script runs in sh and prints nothing without status files.
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(provision_check_script())
            .output()
            .unwrap();
        assert!(out.status.success());
    }

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
