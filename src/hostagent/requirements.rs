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
    /// The remote command that reads the script on stdin (from its `#!`
    /// line); `None` is `/bin/sh -s`.
    pub interpreter: Option<Vec<String>>,
    /// The first connection of a boot: wait for sshd's banner before
    /// spending an ssh process on it.
    pub waits_for_banner: bool,
    /// Whether this connection may stay on as the ControlMaster.
    pub master_check: MasterCheck,
    /// Already satisfied when a ControlMaster is running: the requirement
    /// only exists to start one (a local check instead of a session).
    pub satisfied_by_master: bool,
    /// A fact of the guest's own saved state (a marker in its `/run`, a
    /// binary on its disk): it still holds when the guest is resumed from
    /// a state saved while it was ready, since nothing ran in between.
    pub kept_by_saved_state: bool,
}

/// A ControlMaster must not be a connection that logged in before the boot
/// scripts marked the user session ready (its environment would lack what
/// they set up). Scripts with a check print the session marker only when it
/// predates their connection (`session_script`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MasterCheck {
    None,
    /// Keep the connection as the master if the marker predates it, else
    /// close it; the requirement is satisfied either way.
    KeepIfReady,
    /// Satisfied only by a connection that may stay on as the master.
    RequireReady,
}

impl Requirement {
    /// `r`, marked [`Requirement::kept_by_saved_state`].
    fn kept(r: Requirement) -> Requirement {
        Requirement {
            kept_by_saved_state: true,
            ..r
        }
    }

    /// A requirement whose script runs under `/bin/sh` over the ControlMaster.
    pub fn sh(description: &str, script: String, hint: &str) -> Requirement {
        Requirement {
            description: description.into(),
            script,
            master: true,
            fatal: false,
            hint: hint.into(),
            satisfied_by_previous_output: None,
            interpreter: None,
            waits_for_banner: false,
            master_check: MasterCheck::None,
            satisfied_by_master: false,
            kept_by_saved_state: false,
        }
    }

    /// A `probes[]` entry (mode `readiness`): its script runs under the
    /// interpreter of its `#!` line, with `PARAM_*` exported for shells (as
    /// Lima's `prefixExportParam` does from param.env).
    pub fn probe(
        description: &str,
        script: &str,
        hint: &str,
        params: &std::collections::BTreeMap<String, String>,
    ) -> Requirement {
        let (interpreter, body) = split_shebang(script);
        let is_shell = interpreter.first().is_some_and(|i| {
            let base = i.rsplit('/').next().unwrap_or(i);
            ["sh", "bash", "dash", "ash", "zsh", "ksh"].contains(&base)
        });
        let mut script = String::new();
        if is_shell {
            for (k, v) in params {
                script.push_str(&format!(
                    "export PARAM_{k}={}\n",
                    crate::ssh::shell_quote(v)
                ));
            }
        }
        script.push_str(body);
        Requirement {
            description: description.into(),
            script,
            master: true,
            fatal: false,
            hint: hint.into(),
            satisfied_by_previous_output: None,
            interpreter: Some(interpreter),
            waits_for_banner: false,
            master_check: MasterCheck::None,
            satisfied_by_master: false,
            kept_by_saved_state: false,
        }
    }
}

/// Lima's optional requirements of a containerd-enabled guest (reference
/// §4.4): systemd (fatal: the services need it), then the binaries the boot
/// scripts install from the archive. Lima looks for `nerdctl` only; an
/// archive with containerd and no nerdctl (such as the Debian-built one of
/// the tests) counts here too. The wait polls in the guest, like a marker's.
fn containerd_requirements(prefix: &str, timeout: Duration) -> Vec<Requirement> {
    let mut systemd = Requirement::sh(
        "systemd must be available",
        "command -v systemctl >/dev/null\n".into(),
        "containerd (`containerd.system`/`containerd.user`) needs systemd in the guest; \
         set both to false for an image without it",
    );
    systemd.fatal = true;
    let bin = crate::ssh::shell_quote(&format!("{}/bin", prefix.trim_end_matches('/')));
    let binaries = Requirement::sh(
        "containerd binaries to be installed",
        poll_in_guest(
            &format!(
                "command -v nerdctl >/dev/null 2>&1 || [ -x {bin}/nerdctl ] || [ -x {bin}/containerd ]"
            ),
            timeout,
        ),
        "The nerdctl-full archive was not installed in the guest: \
         see /var/log/cloud-init-output.log in the guest (40-install-containerd.sh)",
    );
    vec![systemd, binaries]
}

/// `#!/usr/bin/env bash -e` → (["/usr/bin/env", "bash", "-e"], rest of the
/// script); no `#!` line → `/bin/sh`.
pub fn split_shebang(script: &str) -> (Vec<String>, &str) {
    if let Some(rest) = script.strip_prefix("#!") {
        let (line, body) = rest.split_once('\n').unwrap_or((rest, ""));
        let words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        if !words.is_empty() {
            return (words, body);
        }
    }
    (vec!["/bin/sh".into()], script)
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
    /// The instance id the boot scripts write to the session marker; `None`
    /// in plain mode (no boot scripts, no marker).
    pub session_marker: Option<String>,
    /// Resumed from a state saved while the guest was ready: the
    /// requirements [`Requirement::kept_by_saved_state`] are met.
    pub resumed_ready: bool,
}

/// A session script that prints the session marker only when it predates
/// this SSH connection (`wait`: first wait in the guest until the marker
/// holds that instance id). Then the connection's login already had what the
/// boot scripts set up before writing it (`/etc/environment`), so it may stay
/// on as the ControlMaster — saving a connection, which costs seconds while
/// a guest under emulation is still booting.
fn session_script(wait: Option<(&str, Duration)>) -> String {
    session_script_at(crate::store::paths::guest_files::SSH_READY, wait)
}

fn session_script_at(marker: &str, wait: Option<(&str, Duration)>) -> String {
    let first = match wait {
        Some((iid, timeout)) => wait_for_marker(marker, iid, timeout),
        None => format!("[ -f {marker} ] || exit 0\n"),
    };
    // Shell builtins only (a process costs tens of milliseconds while a
    // guest under emulation boots), but for one `stat`. In `/proc/PID/stat`
    // after the `)` closing the command name, field 2 is the parent and field
    // 20 the start time in clock ticks since boot (USER_HZ, 100 in Linux's
    // ABI). The connection's process is the ancestor whose parent is sshd's
    // listener (whose parent is PID 1). Whole seconds, rounded against the
    // marker.
    format!(
        r#"{first}proc() {{ read -r s <"/proc/$1/stat"; set -- ${{s##*)}}; ppid=$2; start=${{20}}; }}
p=$$
while proc "$p" && q=$ppid && [ "$q" -gt 1 ] && proc "$q" && [ "$ppid" -gt 1 ]; do p=$q; done
proc "$p"
while read -r k v; do [ "$k" = btime ] && break; done </proc/stat
if [ "$(stat -c %Y {marker})" -lt $((v + start / 100)) ]; then
  read -r id <{marker} && echo "$id"
fi
true
"#
    )
}

/// A script that waits (in the guest) until `path` holds `iid`.
pub fn wait_for_marker(path: &str, iid: &str, timeout: Duration) -> String {
    poll_in_guest(
        &format!("[ \"$(cat {path} 2>/dev/null)\" = \"{iid}\" ]"),
        timeout,
    )
}

/// A script that checks `condition` (a shell command) in the guest every
/// 0.2 s until it holds (exit 0) or `timeout` has passed (exit 1): one SSH
/// session per wait instead of one per attempt.
fn poll_in_guest(condition: &str, timeout: Duration) -> String {
    let tries = (timeout.as_millis() / 200).max(1);
    format!(
        "i=0\nuntil {condition}; do\n  i=$((i+1))\n  [ \"$i\" -gt {tries} ] && exit 1\n  sleep 0.2\ndone\n"
    )
}

impl Requirements {
    /// Lima's requirements for a Linux guest (reference §4.4): ssh, the user
    /// session marker, then either what reverse-sshfs needs (sshfs, fuse
    /// `allow_other`) or just the ControlMaster; optional: the readiness
    /// probes; final: boot scripts finished. Plain mode has no session
    /// marker (its boot module does not run).
    pub fn for_config(
        target: SshTarget,
        iid: &str,
        timeout: Duration,
        config: &crate::spec::LimaYaml,
    ) -> Requirements {
        let plain = config.plain == Some(true);
        let mut essential = vec![Requirement {
            description: "ssh".into(),
            // Also reports the session marker, usually written by then.
            script: session_script(None),
            master: true,
            fatal: false,
            hint: "The SSH server of the guest does not answer. Check serial.log; \
                   make sure `ssh.localPort` does not conflict with another port"
                .into(),
            satisfied_by_previous_output: None,
            interpreter: None,
            waits_for_banner: true,
            master_check: if plain {
                MasterCheck::None
            } else {
                MasterCheck::KeepIfReady
            },
            satisfied_by_master: false,
            kept_by_saved_state: false,
        }];
        if !plain {
            essential.push(Requirement {
                description: "user session is ready for ssh".into(),
                script: session_script(Some((iid, timeout))),
                master: true,
                fatal: false,
                hint: "The boot scripts did not mark the session ready; see /var/log/cloud-init-output.log in the guest".into(),
                satisfied_by_previous_output: Some(iid.to_string()),
                interpreter: None,
                waits_for_banner: false,
                master_check: MasterCheck::RequireReady,
                satisfied_by_master: false,
                kept_by_saved_state: false,
            });
        }
        if !super::mounts::sshfs_mounts(config).is_empty() {
            essential.push(Requirement::kept(Requirement::sh(
                "sshfs binary to be installed",
                poll_in_guest("command -v sshfs >/dev/null 2>&1", Duration::from_secs(10)),
                "Make sure that the guest image has sshfs (package `sshfs`), or set `mountType` to 9p",
            )));
            essential.push(Requirement::kept(Requirement::sh(
                "fuse to allow_other as user",
                wait_for_marker(crate::store::paths::guest_files::FUSE_READY, iid, timeout),
                "The boot scripts did not enable user_allow_other in /etc/fuse.conf; see /var/log/cloud-init-output.log in the guest",
            )));
        } else {
            essential.push(Requirement {
                satisfied_by_master: true,
                ..Requirement::sh(
                    "Explicitly start ssh ControlMaster",
                    "true\n".into(),
                    "The ControlMaster could not be started",
                )
            });
        }
        let params = config.param.clone().unwrap_or_default();
        let mut optional = Vec::new();
        let containerd = config
            .containerd
            .as_ref()
            .is_some_and(|c| c.system == Some(true) || c.user == Some(true));
        if !plain && containerd {
            optional.extend(containerd_requirements(
                config
                    .guest_install_prefix
                    .as_deref()
                    .unwrap_or("/usr/local"),
                timeout,
            ));
        }
        if !plain {
            optional.extend(
                config
                    .probes
                    .iter()
                    .flatten()
                    .filter(|p| p.mode.as_deref().unwrap_or("readiness") == "readiness")
                    .enumerate()
                    .map(|(i, p)| {
                        Requirement::probe(
                            p.description
                                .as_deref()
                                .filter(|d| !d.is_empty())
                                .unwrap_or(&format!("user probe {}", i + 1)),
                            p.script.as_deref().unwrap_or(""),
                            p.hint.as_deref().unwrap_or("See the probe's script"),
                            &params,
                        )
                    }),
            );
        }
        Requirements {
            target,
            essential,
            optional,
            // The same session then reports failed provisioning scripts
            // (`final_` returns its output): no second session for that.
            // Ready means no provisioning script had failed either.
            final_: vec![Requirement::kept(Requirement::sh(
                "boot scripts must have finished",
                format!(
                    "{}{}",
                    wait_for_marker("/run/lima-boot-done", iid, timeout),
                    provision_check_script()
                ),
                "See \"/var/log/cloud-init-output.log\" in the guest",
            ))],
            timeout,
            session_marker: (!plain).then(|| iid.to_string()),
            resumed_ready: false,
        }
    }

    /// After a resume the guest runs from the first instruction on, its sshd
    /// listening: SSH itself connects at once, and a banner probe would only
    /// cost sshd (re-translating its code under emulation) another child.
    /// `ready_when_saved`: the state was saved after the guest had met
    /// every requirement, so those it keeps in its own state are met again.
    pub fn after_resume(mut self, ready_when_saved: bool) -> Requirements {
        for r in &mut self.essential {
            r.waits_for_banner = false;
        }
        self.resumed_ready = ready_when_saved;
        self
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
        if r.satisfied_by_master && self.target.master_alive() {
            crate::info!("The {label} requirement {i} of {n} is satisfied");
            return Ok(String::new());
        }
        if r.kept_by_saved_state && self.resumed_ready {
            crate::info!(
                "The {label} requirement {i} of {n} is satisfied (it was when the instance was suspended)"
            );
            return Ok(String::new());
        }
        let start = Instant::now();
        if r.waits_for_banner {
            wait_for_banner(self.target.port, self.timeout);
        }
        let mut last;
        loop {
            let left = self.timeout.saturating_sub(start.elapsed());
            // A marker wait runs in the guest for up to the whole timeout.
            match self.run(r, left + Duration::from_secs(15)) {
                Ok((Some(0), out, _))
                    if r.master_check == MasterCheck::RequireReady
                        && !self.master_may_stay(&out) =>
                {
                    self.target.exit_master();
                    last = "the SSH session started before the boot scripts marked it ready".into();
                }
                Ok((Some(0), out, _)) => {
                    if r.master_check == MasterCheck::KeepIfReady && !self.master_may_stay(&out) {
                        // Logged in before the session was ready: a later
                        // connection becomes the ControlMaster instead.
                        self.target.exit_master();
                    }
                    crate::info!("The {label} requirement {i} of {n} is satisfied");
                    return Ok(out);
                }
                Ok((code, out, err)) => {
                    last = format!("exit {code:?}: {}{}", out.trim(), err.trim());
                }
                Err(e) => last = e.to_string(),
            }
            if r.master_check != MasterCheck::None {
                self.target.exit_master();
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

    /// Runs a requirement's script once.
    fn run(
        &self,
        r: &Requirement,
        timeout: Duration,
    ) -> std::io::Result<(Option<i32>, String, String)> {
        match &r.interpreter {
            None => self.target.run_script(r.master, &r.script, timeout),
            Some(words) => {
                let mut c = self.target.command(r.master);
                c.arg("--")
                    .args(words.iter().map(|w| crate::ssh::shell_quote(w)));
                crate::ssh::run_with_input(c, r.script.as_bytes(), timeout)
            }
        }
    }

    /// The essential requirements; false when a fatal one failed.
    pub fn essential(&self, errors: &mut Vec<String>) -> bool {
        self.run_group("essential", &self.essential, errors)
    }

    /// The optional requirements (readiness probes).
    pub fn optional(&self, errors: &mut Vec<String>) {
        self.run_group("optional", &self.optional, errors);
    }

    /// The final requirements (boot scripts done); when they are met, the
    /// failed provisioning scripts of this boot.
    pub fn final_(&self, errors: &mut Vec<String>) -> Vec<String> {
        let before = errors.len();
        match self.run_group_output("final", &self.final_, errors) {
            Some(out) if errors.len() == before => parse_provision_failures(&out),
            _ => Vec::new(),
        }
    }

    /// Runs a group in order: false when a fatal requirement failed.
    fn run_group(&self, label: &str, reqs: &[Requirement], errors: &mut Vec<String>) -> bool {
        self.run_group_output(label, reqs, errors).is_some()
    }

    /// Runs a group in order; the last requirement's output, or `None` when
    /// a fatal one failed.
    fn run_group_output(
        &self,
        label: &str,
        reqs: &[Requirement],
        errors: &mut Vec<String>,
    ) -> Option<String> {
        let mut previous = String::new();
        for (i, r) in reqs.iter().enumerate() {
            match self.satisfy(label, i + 1, reqs.len(), r, &previous) {
                Ok(out) => previous = out,
                Err(e) => {
                    previous.clear();
                    errors.push(e);
                    if r.fatal {
                        return None;
                    }
                }
            }
        }
        Some(previous)
    }

    /// Whether the first connection (its output `out`) may stay on as the
    /// ControlMaster: its session started after the session marker was written.
    fn master_may_stay(&self, out: &str) -> bool {
        match &self.session_marker {
            None => true,
            Some(iid) => out.lines().any(|l| l.trim() == iid),
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
        // Refused or reset at once (QEMU not listening yet, or sshd not yet
        // listening in the guest): such an attempt never reaches sshd, so
        // retrying soon costs nothing and notices sshd sooner.
        if attempt.elapsed() < Duration::from_millis(100) {
            std::thread::sleep(Duration::from_millis(100));
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
    fn the_session_marker_counts_only_when_it_predates_the_connection() {
        let d = tempfile::tempdir().unwrap();
        let marker = d.path().join("ready");
        std::fs::write(&marker, "iid-1\n").unwrap();
        let run = |wait: Option<(&str, Duration)>| {
            let script = session_script_at(marker.to_str().unwrap(), wait);
            let out = std::process::Command::new("sh")
                .args(["-c", &script])
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            String::from_utf8(out.stdout).unwrap()
        };
        // Written just now: after this process tree's "connection" began.
        assert_eq!(run(None), "");
        // Written long before it.
        let old = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        std::fs::File::options()
            .write(true)
            .open(&marker)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert_eq!(run(None), "iid-1\n");
        assert_eq!(run(Some(("iid-1", Duration::from_secs(1)))), "iid-1\n");
        std::fs::remove_file(&marker).unwrap();
        assert_eq!(run(None), "", "no marker yet");
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

    fn target() -> SshTarget {
        SshTarget {
            instance_dir: "/lh/vm".into(),
            name: "vm".into(),
            user: "u".into(),
            port: 1,
            identity: "/lh/_config/user".into(),
            extra_identities: vec![],
            forward_agent: false,
            forward_x11: false,
            forward_x11_trusted: false,
        }
    }

    fn descriptions(v: &[Requirement]) -> Vec<&str> {
        v.iter().map(|r| r.description.as_str()).collect()
    }

    /// A boot waits for sshd's banner before the first login; a resume,
    /// whose guest runs at once, does not; nothing else changes.
    #[test]
    fn a_resume_logs_in_without_a_banner_probe() {
        let y = crate::spec::LimaYaml::default();
        let t = Duration::from_secs(10);
        let boot = Requirements::for_config(target(), "iid-1", t, &y);
        let banner = |r: &Requirements| -> Vec<bool> {
            r.essential.iter().map(|q| q.waits_for_banner).collect()
        };
        assert_eq!(banner(&boot), [true, false, false]);
        let resume = Requirements::for_config(target(), "iid-1", t, &y).after_resume(false);
        assert_eq!(banner(&resume), [false, false, false]);
        // Only the requirement that exists to start the ControlMaster is
        // satisfied by a running one.
        let by_master: Vec<bool> = boot
            .essential
            .iter()
            .map(|q| q.satisfied_by_master)
            .collect();
        assert_eq!(by_master, [false, false, true]);
        let d = tempfile::tempdir().unwrap();
        assert!(!crate::ssh::SshTarget::for_tests(d.path()).master_alive());
        assert_eq!(
            descriptions(&resume.essential),
            descriptions(&boot.essential)
        );
        assert_eq!(descriptions(&resume.final_), descriptions(&boot.final_));
        assert!(!resume.resumed_ready && !boot.resumed_ready);
    }

    /// Resumed from a state saved while ready, the requirements the guest
    /// keeps in its own state are met without a session; the login, the
    /// ControlMaster and the readiness probes still run.
    #[test]
    fn a_resume_of_a_ready_guest_keeps_what_its_state_holds() {
        use crate::spec::types::{Mount, Probe};
        let y = crate::spec::LimaYaml {
            mount_type: Some("reverse-sshfs".into()),
            mounts: Some(vec![Mount {
                location: "/h".into(),
                mount_point: Some("/g".into()),
                ..Default::default()
            }]),
            probes: Some(vec![Probe {
                mode: Some("readiness".into()),
                script: Some("true\n".into()),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let t = Duration::from_secs(10);
        let r = Requirements::for_config(target(), "iid-1", t, &y).after_resume(true);
        let kept = |v: &[Requirement]| -> Vec<(String, bool)> {
            v.iter()
                .map(|q| (q.description.clone(), q.kept_by_saved_state))
                .collect()
        };
        let owned = |v: &[(&str, bool)]| -> Vec<(String, bool)> {
            v.iter().map(|(d, k)| (d.to_string(), *k)).collect()
        };
        assert_eq!(
            kept(&r.essential),
            owned(&[
                ("ssh", false),
                ("user session is ready for ssh", false),
                ("sshfs binary to be installed", true),
                ("fuse to allow_other as user", true),
            ])
        );
        assert_eq!(kept(&r.optional), owned(&[("user probe 1", false)]));
        assert_eq!(
            kept(&r.final_),
            owned(&[("boot scripts must have finished", true)])
        );
        // Met with no connection: the target's port 1 answers nobody.
        let mut errors = Vec::new();
        assert_eq!(r.final_(&mut errors), Vec::<String>::new());
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            r.satisfy("essential", 3, 4, &r.essential[2], ""),
            Ok(String::new())
        );
    }

    #[test]
    fn requirements_follow_the_configuration() {
        use crate::spec::types::{Mount, Probe};
        let t = Duration::from_secs(10);
        let mut y = crate::spec::LimaYaml {
            mount_type: Some("reverse-sshfs".into()),
            ..Default::default()
        };
        let r = Requirements::for_config(target(), "iid-1", t, &y);
        assert_eq!(
            descriptions(&r.essential),
            [
                "ssh",
                "user session is ready for ssh",
                "Explicitly start ssh ControlMaster"
            ]
        );
        assert!(r.optional.is_empty());
        assert_eq!(descriptions(&r.final_), ["boot scripts must have finished"]);

        y.mounts = Some(vec![Mount {
            location: "/h".into(),
            mount_point: Some("/g".into()),
            ..Default::default()
        }]);
        y.probes = Some(vec![
            Probe {
                mode: Some("readiness".into()),
                description: Some("docker".into()),
                script: Some("#!/bin/bash\ntest -S /run/docker.sock\n".into()),
                hint: Some("wait".into()),
                ..Default::default()
            },
            Probe {
                mode: Some("readiness".into()),
                script: Some("true\n".into()),
                ..Default::default()
            },
        ]);
        let r = Requirements::for_config(target(), "iid-1", t, &y);
        assert_eq!(
            descriptions(&r.essential),
            [
                "ssh",
                "user session is ready for ssh",
                "sshfs binary to be installed",
                "fuse to allow_other as user"
            ]
        );
        assert!(r.essential[3].script.contains("/run/lima-fuse-ready"));
        assert_eq!(descriptions(&r.optional), ["docker", "user probe 2"]);
        assert_eq!(
            r.optional[0].interpreter.as_deref(),
            Some(&["/bin/bash".to_string()][..])
        );
        assert_eq!(r.optional[0].hint, "wait");

        // containerd: systemd (fatal) and the binaries, before the probes.
        y.containerd = Some(crate::spec::types::Containerd {
            user: Some(true),
            ..Default::default()
        });
        y.guest_install_prefix = Some("/opt/lima".into());
        let r = Requirements::for_config(target(), "iid-1", t, &y);
        assert_eq!(
            descriptions(&r.optional),
            [
                "systemd must be available",
                "containerd binaries to be installed",
                "docker",
                "user probe 2"
            ]
        );
        assert!(r.optional[0].fatal && !r.optional[1].fatal);
        assert!(
            r.optional[1]
                .script
                .contains("[ -x /opt/lima/bin/nerdctl ]")
        );

        // Plain mode: no session marker, mounts, containerd or probes.
        y.plain = Some(true);
        let r = Requirements::for_config(target(), "iid-1", t, &y);
        assert_eq!(
            descriptions(&r.essential),
            ["ssh", "Explicitly start ssh ControlMaster"]
        );
        assert!(r.optional.is_empty());
    }

    #[test]
    fn the_containerd_binaries_wait_ends_when_the_archive_is_unpacked() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("pre fix");
        let run = |timeout: Duration| {
            let r = &containerd_requirements(prefix.to_str().unwrap(), timeout)[1];
            std::process::Command::new("sh")
                .args(["-c", &r.script])
                .env("PATH", "/usr/bin:/bin")
                .status()
                .unwrap()
                .success()
        };
        // Nothing installed: gives up after the timeout.
        assert!(!run(Duration::from_millis(400)));
        std::fs::create_dir_all(prefix.join("bin")).unwrap();
        let containerd = prefix.join("bin/containerd");
        std::fs::write(&containerd, "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&containerd, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(run(Duration::from_secs(600)));
    }

    #[test]
    fn probes_run_under_their_interpreter_with_params() {
        assert_eq!(
            split_shebang("#!/usr/bin/env bash -e\necho hi\n"),
            (
                vec!["/usr/bin/env".to_string(), "bash".into(), "-e".into()],
                "echo hi\n"
            )
        );
        assert_eq!(
            split_shebang("echo hi\n"),
            (vec!["/bin/sh".to_string()], "echo hi\n")
        );
        let params: std::collections::BTreeMap<String, String> =
            [("GREETING".to_string(), "it's me".to_string())]
                .into_iter()
                .collect();
        let p = Requirement::probe("p", "#!/bin/sh\necho \"$PARAM_GREETING\"\n", "h", &params);
        // The rewritten script prints the param when run by its interpreter.
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&p.script)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "it's me\n");
        // Not a shell: the script is left alone.
        let py = Requirement::probe("p", "#!/usr/bin/python3\nprint(1)\n", "h", &params);
        assert_eq!(py.script, "print(1)\n");
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
