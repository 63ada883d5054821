//! reverse-sshfs mounts (reference §4.7): for each mount the guest runs
//! `sshfs -o slave`, whose SFTP stream is an SSH session wired to a host
//! `sftp-server` serving the mount's location. No network path from the
//! guest to the host is needed; the host's files are served with the host
//! user's rights. 9p mounts need nothing here (QEMU `-virtfs` and
//! cloud-init `mounts:`).

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::spec::LimaYaml;
use crate::ssh::{SshTarget, shell_quote};

/// Where distributions install OpenSSH's SFTP server.
const SFTP_SERVERS: &[&str] = &[
    "/usr/lib/openssh/sftp-server",
    "/usr/libexec/openssh/sftp-server",
    "/usr/libexec/sftp-server",
    "/usr/lib/ssh/sftp-server",
    "/usr/libexec/ssh/sftp-server",
    "/usr/lib/sftp-server",
];

/// How long the guest may take to show a mount in /proc/mounts.
const MOUNT_CHECK: Duration = Duration::from_secs(30);

/// One mount to make.
#[derive(Clone, Debug, PartialEq)]
pub struct SshfsMount {
    pub location: String,
    pub mount_point: String,
    pub writable: bool,
    pub cache: bool,
    pub follow_symlinks: bool,
}

/// The reverse-sshfs mounts of a filled configuration (none in plain mode
/// or with another mount type).
pub fn sshfs_mounts(config: &LimaYaml) -> Vec<SshfsMount> {
    if config.plain == Some(true) || config.mount_type.as_deref() != Some("reverse-sshfs") {
        return Vec::new();
    }
    config
        .mounts
        .iter()
        .flatten()
        .map(|m| {
            let sshfs = m.sshfs.clone().unwrap_or_default();
            SshfsMount {
                location: m.location.clone(),
                mount_point: m.mount_point.clone().unwrap_or_else(|| m.location.clone()),
                writable: m.writable == Some(true),
                cache: sshfs.cache != Some(false),
                follow_symlinks: sshfs.follow_symlinks == Some(true),
            }
        })
        .collect()
}

impl SshfsMount {
    /// The guest command (words are quoted for the remote shell).
    pub fn guest_command(&self) -> String {
        let mut opts = String::from("allow_other");
        if !self.cache {
            opts.push_str(",cache=no");
        }
        if self.follow_symlinks {
            opts.push_str(",follow_symlinks");
        }
        let mut words = vec![
            "sshfs".to_string(),
            shell_quote(&format!(":{}", self.location)),
            shell_quote(&self.mount_point),
            "-o".into(),
            "slave".into(),
        ];
        if !self.writable {
            words.extend(["-o".into(), "ro".into()]);
        }
        words.extend(["-o".into(), opts]);
        words.join(" ")
    }

    /// The host SFTP server's arguments.
    pub fn sftp_args(&self) -> Vec<String> {
        let mut a = vec!["-e".to_string(), "-d".into(), self.location.clone()];
        if !self.writable {
            a.push("-R".into());
        }
        a
    }
}

/// `sftp-server` of OpenSSH on this host.
pub fn find_sftp_server() -> Option<PathBuf> {
    SFTP_SERVERS.iter().map(PathBuf::from).find(|p| p.is_file())
}

/// A mount point as `/proc/mounts` spells it (octal escapes).
pub fn proc_mounts_escape(p: &str) -> String {
    let mut s = String::new();
    for c in p.chars() {
        match c {
            ' ' => s.push_str("\\040"),
            '\t' => s.push_str("\\011"),
            '\n' => s.push_str("\\012"),
            '\\' => s.push_str("\\134"),
            c => s.push(c),
        }
    }
    s
}

/// `s` for use inside a double-quoted shell word.
fn double_quoted(s: &str) -> String {
    let mut o = String::new();
    for c in s.chars() {
        if matches!(c, '\\' | '"' | '$' | '`') {
            o.push('\\');
        }
        o.push(c);
    }
    o
}

/// A guest script that waits until every mount point shows up as
/// `fuse.sshfs` in /proc/mounts; prints the ones that did not.
pub fn check_script(mount_points: &[String], timeout: Duration) -> String {
    let tries = (timeout.as_millis() / 200).max(1);
    let mut s = String::from("missing() {\n  m=''\n");
    for mp in mount_points {
        s.push_str(&format!(
            "  M={} awk '$2 == ENVIRON[\"M\"] && $3 == \"fuse.sshfs\" {{ f = 1 }} END {{ exit !f }}' /proc/mounts || m=\"$m {}\"\n",
            shell_quote(&proc_mounts_escape(mp)),
            double_quoted(mp)
        ));
    }
    s.push_str(&format!(
        "  [ -n \"$m\" ] && echo \"$m\"\n  [ -z \"$m\" ]\n}}\ni=0\nwhile ! missing >/dev/null; do\n  i=$((i+1))\n  if [ \"$i\" -gt {tries} ]; then missing; exit 1; fi\n  sleep 0.2\ndone\n"
    ));
    s
}

/// The processes of the running mounts.
#[derive(Default)]
pub struct Mounts {
    procs: Vec<(String, Child, Child)>,
}

impl Mounts {
    /// Adds the processes of `other` (so a set started in one thread can be
    /// stopped from another).
    pub fn adopt(&mut self, other: Mounts) {
        self.procs.extend(other.procs);
    }

    /// Starts every mount, then checks them in the guest. Returns the
    /// errors (a mount that fails makes the instance degraded).
    pub fn start(&mut self, target: &SshTarget, mounts: &[SshfsMount]) -> Vec<String> {
        if mounts.is_empty() {
            return Vec::new();
        }
        let Some(sftp) = find_sftp_server() else {
            return vec![format!(
                "cannot mount {} with reverse-sshfs: OpenSSH's sftp-server is not installed on the host (package openssh-sftp-server; run hack/install-deps.sh)",
                mounts
                    .iter()
                    .map(|m| m.location.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )];
        };
        let mut errors = Vec::new();
        let mut started = Vec::new();
        for m in mounts {
            crate::info!(
                "Mounting {:?} on {:?} (reverse-sshfs{})",
                m.location,
                m.mount_point,
                if m.writable { ", writable" } else { "" }
            );
            match self.start_one(target, &sftp, m) {
                Ok(()) => started.push(m.mount_point.clone()),
                Err(e) => errors.push(format!("failed to mount {:?}: {e}", m.mount_point)),
            }
        }
        if started.is_empty() {
            return errors;
        }
        match target.run_script(
            true,
            &check_script(&started, MOUNT_CHECK),
            MOUNT_CHECK + Duration::from_secs(15),
        ) {
            Ok((Some(0), _, _)) => {}
            Ok((_, out, err)) => {
                let missing = out.trim();
                let detail = self.exited_detail();
                errors.push(format!(
                    "reverse-sshfs mounts did not appear in the guest within {}s: {}{}{detail}",
                    MOUNT_CHECK.as_secs(),
                    if missing.is_empty() { "?" } else { missing },
                    if err.trim().is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", err.trim())
                    },
                ));
            }
            Err(e) => errors.push(format!("cannot check the reverse-sshfs mounts: {e}")),
        }
        errors
    }

    fn start_one(&mut self, target: &SshTarget, sftp: &Path, m: &SshfsMount) -> Result<(), String> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&m.location)
            .map_err(|e| format!("cannot create {:?} on the host: {e}", m.location))?;
        let mut server = Command::new(sftp)
            .args(m.sftp_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", sftp.display()))?;
        let (to_server, from_server) =
            (server.stdin.take().unwrap(), server.stdout.take().unwrap());
        // The mount point normally exists (05-lima-mounts.sh); mkdir's
        // messages go to stderr, never into the SFTP stream on stdout.
        let remote = format!(
            "mkdir -p {} 2>/dev/null; exec {}",
            shell_quote(&m.mount_point),
            m.guest_command()
        );
        let mut ssh = target.command(true);
        ssh.arg("--")
            .arg(remote)
            .stdin(Stdio::from(from_server))
            .stdout(Stdio::from(to_server))
            .stderr(Stdio::piped());
        let mut child = match ssh.spawn() {
            Ok(c) => c,
            Err(e) => {
                let _ = server.kill();
                let _ = server.wait();
                return Err(format!("cannot run ssh: {e}"));
            }
        };
        if let Some(err) = child.stderr.take() {
            let mp = m.mount_point.clone();
            crate::logging::spawn_in_span(move || {
                for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                    crate::warn!("sshfs {mp:?}: {line}");
                }
            });
        }
        self.procs.push((m.mount_point.clone(), child, server));
        Ok(())
    }

    /// Which ssh sessions already ended (for the error message).
    fn exited_detail(&mut self) -> String {
        let mut s = String::new();
        for (mp, ssh, _) in &mut self.procs {
            if let Ok(Some(st)) = ssh.try_wait() {
                s.push_str(&format!("; sshfs for {mp:?} exited with {st}"));
            }
        }
        s
    }

    /// Unmounts by ending the SSH sessions and SFTP servers (sshfs in the
    /// guest exits when its stream closes).
    pub fn stop(&mut self) {
        for (mp, mut ssh, mut server) in std::mem::take(&mut self.procs) {
            crate::info!("Unmounting {mp:?}");
            let _ = ssh.kill();
            let _ = server.kill();
            let _ = ssh.wait();
            let _ = server.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount() -> SshfsMount {
        SshfsMount {
            location: "/home/u/my dir".into(),
            mount_point: "/mnt/my dir".into(),
            writable: false,
            cache: true,
            follow_symlinks: false,
        }
    }

    #[test]
    fn sshfs_and_sftp_server_command_lines() {
        let m = mount();
        assert_eq!(
            m.guest_command(),
            "sshfs ':/home/u/my dir' '/mnt/my dir' -o slave -o ro -o allow_other"
        );
        assert_eq!(m.sftp_args(), ["-e", "-d", "/home/u/my dir", "-R"]);
        let w = SshfsMount {
            writable: true,
            cache: false,
            follow_symlinks: true,
            ..mount()
        };
        assert_eq!(
            w.guest_command(),
            "sshfs ':/home/u/my dir' '/mnt/my dir' -o slave -o allow_other,cache=no,follow_symlinks"
        );
        assert_eq!(w.sftp_args(), ["-e", "-d", "/home/u/my dir"]);
    }

    #[test]
    fn mounts_come_from_a_filled_config() {
        let y = LimaYaml {
            mount_type: Some("reverse-sshfs".into()),
            mounts: Some(vec![crate::spec::types::Mount {
                location: "/h".into(),
                mount_point: Some("/g".into()),
                writable: Some(true),
                sshfs: Some(crate::spec::types::Sshfs {
                    cache: Some(false),
                    follow_symlinks: Some(false),
                    sftp_driver: Some(String::new()),
                }),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let m = sshfs_mounts(&y);
        assert_eq!(m.len(), 1);
        assert_eq!(
            (m[0].mount_point.as_str(), m[0].writable, m[0].cache),
            ("/g", true, false)
        );
        let nine_p = LimaYaml {
            mount_type: Some("9p".into()),
            ..y.clone()
        };
        assert!(sshfs_mounts(&nine_p).is_empty());
        let plain = LimaYaml {
            plain: Some(true),
            ..y
        };
        assert!(sshfs_mounts(&plain).is_empty());
    }

    #[test]
    fn check_script_reads_proc_mounts() {
        assert_eq!(proc_mounts_escape("/a b\\c"), "/a\\040b\\134c");
        let d = tempfile::tempdir().unwrap();
        // Runs the real script against a fake /proc/mounts via sed.
        let script = check_script(
            &["/mnt/a b".into(), "/m2".into()],
            Duration::from_millis(200),
        );
        let fake = d.path().join("mounts");
        std::fs::write(&fake, "host:/x /mnt/a\\040b fuse.sshfs rw 0 0\n").unwrap();
        let script = script.replace("/proc/mounts", fake.to_str().unwrap());
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "/m2");
        std::fs::write(
            &fake,
            "host:/x /mnt/a\\040b fuse.sshfs rw 0 0\n:/y /m2 fuse.sshfs rw 0 0\n",
        )
        .unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn this_host_has_an_sftp_server() {
        // hack/install-deps.sh installs openssh-sftp-server.
        assert!(find_sftp_server().is_some());
    }
}
