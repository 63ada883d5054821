//! SSH to guests with the OpenSSH client (reference §5): Lima's identity in
//! `_config`, the option list, `ssh.config`, and running commands and
//! scripts over the instance's ControlMaster.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::spec::yaml::quote_name;
use crate::store::paths::{Home, config_files, files};

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("`{tool}` failed: {message} (is openssh-client installed? run hack/install-deps.sh)")]
    Tool { tool: String, message: String },
    #[error("no SSH key was found, run `ssh-keygen`")]
    NoKey,
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("ssh option {} contains a line break", quote_name(.0))]
    Injection(String),
}

/// `_config/user` and `user.pub`: generated once (ed25519, 0600) under a lock.
pub fn ensure_identity(home: &Home) -> Result<PathBuf, SshError> {
    use std::os::unix::fs::DirBuilderExt;
    let cfg = home.config_dir();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&cfg)?;
    let key = cfg.join(config_files::USER_KEY);
    if key.exists() && cfg.join(config_files::USER_PUB_KEY).exists() {
        return Ok(key);
    }
    let _lock = crate::store::lock::exclusive(&cfg.join(".user.lock"), Duration::from_secs(60))?;
    if key.exists() && cfg.join(config_files::USER_PUB_KEY).exists() {
        return Ok(key);
    }
    let _ = std::fs::remove_file(&key);
    let _ = std::fs::remove_file(cfg.join(config_files::USER_PUB_KEY));
    let out = Command::new("ssh-keygen")
        .args(["-t", "ed25519", "-q", "-N", "", "-C", "lima", "-f"])
        .arg(&key)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| SshError::Tool {
            tool: "ssh-keygen".into(),
            message: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(SshError::Tool {
            tool: "ssh-keygen".into(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
    Ok(key)
}

/// Whether a line looks like an OpenSSH public key (`<algo> <base64 blob> …`
/// with the algorithm repeated inside the blob).
fn is_public_key(line: &str) -> bool {
    let mut parts = line.split_whitespace();
    let (Some(algo), Some(blob)) = (parts.next(), parts.next()) else {
        return false;
    };
    let Some(bytes) = base64_decode(blob) else {
        return false;
    };
    if bytes.len() < 4 {
        return false;
    }
    let n = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
    bytes.get(4..4 + n) == Some(algo.as_bytes())
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut buf, mut bits) = (0u32, 0);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        buf = (buf << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
            buf &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Keys authorized in the guest: Lima's own, plus `~/.ssh/*.pub` when
/// `ssh.loadDotSSHPubKeys` is set.
pub fn authorized_keys(
    home: &Home,
    load_dot_ssh: bool,
    user_home: &Path,
) -> Result<Vec<String>, SshError> {
    ensure_identity(home)?;
    let mut keys = Vec::new();
    let own = std::fs::read_to_string(home.config_file(config_files::USER_PUB_KEY))?;
    keys.push(own.trim().to_string());
    if load_dot_ssh {
        let mut pubs: Vec<PathBuf> = std::fs::read_dir(user_home.join(".ssh"))
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        pubs.sort();
        for p in pubs {
            if p.extension().is_some_and(|e| e == "pub")
                && let Ok(text) = std::fs::read_to_string(&p)
            {
                let t = text.trim();
                if !t.contains('\n') && is_public_key(t) && !keys.iter().any(|k| k == t) {
                    keys.push(t.to_string());
                }
            }
        }
    }
    if keys.iter().all(|k| k.is_empty()) {
        return Err(SshError::NoKey);
    }
    Ok(keys)
}

/// What the option list depends on.
#[derive(Clone, Debug)]
pub struct SshTarget {
    pub instance_dir: PathBuf,
    pub name: String,
    pub user: String,
    pub port: u16,
    pub identity: PathBuf,
    pub extra_identities: Vec<PathBuf>,
    pub forward_agent: bool,
    pub forward_x11: bool,
    pub forward_x11_trusted: bool,
}

/// The key exchange limactl's own connections prefer ([`SshTarget::command`]);
/// `^` puts it before OpenSSH's defaults, which stay allowed.
const FAST_KEX: &str = "KexAlgorithms=^curve25519-sha256,curve25519-sha256@libssh.org";

impl SshTarget {
    pub fn control_path(&self) -> PathBuf {
        self.instance_dir.join(files::SSH_SOCK)
    }

    /// Lima's option list (`KEY=VALUE`), reference §5.2.
    pub fn options(&self, master: bool) -> Vec<String> {
        let mut o = vec![format!("IdentityFile=\"{}\"", self.identity.display())];
        for i in &self.extra_identities {
            o.push(format!("IdentityFile=\"{}\"", i.display()));
        }
        o.extend(
            [
                "StrictHostKeyChecking=no",
                "UserKnownHostsFile=/dev/null",
                "NoHostAuthenticationForLocalhost=yes",
                "PreferredAuthentications=publickey",
                "Compression=no",
                "BatchMode=yes",
                "IdentitiesOnly=yes",
                "GSSAPIAuthentication=no",
                "Ciphers=\"^aes128-gcm@openssh.com,aes256-gcm@openssh.com\"",
            ]
            .map(String::from),
        );
        o.push(format!("User={}", self.user));
        if master {
            o.push("ControlMaster=auto".into());
            o.push(format!("ControlPath=\"{}\"", self.control_path().display()));
            o.push("ControlPersist=yes".into());
        } else {
            o.push("ControlMaster=no".into());
            o.push("ControlPath=none".into());
            o.push("ControlPersist=no".into());
        }
        if self.forward_agent {
            o.push("ForwardAgent=yes".into());
        }
        if self.forward_x11 {
            o.push("ForwardX11=yes".into());
        }
        if self.forward_x11_trusted {
            o.push("ForwardX11Trusted=yes".into());
        }
        o
    }

    /// `-F /dev/null -o K=V …` (the user's ~/.ssh/config is not consulted).
    pub fn args(&self, master: bool) -> Vec<String> {
        let mut a = vec!["-F".to_string(), "/dev/null".to_string()];
        for opt in self.options(master) {
            a.push("-o".into());
            // ssh's -o takes the value unquoted.
            a.push(opt.replace('"', ""));
        }
        a
    }

    /// The `ssh.config` text (reference §5.2), mode 0600.
    pub fn config_text(&self) -> Result<String, SshError> {
        let mut s = String::from(
            "# This SSH config file can be passed to 'ssh -F'.\n\
             # This file is created by Lima, but not used by Lima itself currently.\n\
             # Modifications to this file will be lost on restarting the Lima instance.\n",
        );
        s.push_str(&format!(
            "Host {}\n",
            crate::spec::defaults::hostname_for(&self.name)
        ));
        for opt in self.options(true) {
            if opt.contains(['\n', '\r']) {
                return Err(SshError::Injection(opt));
            }
            let (k, v) = opt.split_once('=').unwrap();
            s.push_str(&format!("  {k} {v}\n"));
        }
        s.push_str("  Hostname 127.0.0.1\n");
        s.push_str(&format!("  Port {}\n", self.port));
        Ok(s)
    }

    /// A `ssh` command to 127.0.0.1 with these options (no remote command
    /// yet), for limactl's own connections; the ControlMaster is one of
    /// them. These prefer the classic curve25519 key exchange to OpenSSH's
    /// default post-quantum hybrid: a connection that never leaves this
    /// host, and the hybrid's key generation is the guest's costliest part
    /// of a login under emulation, on the way to Ready and after every
    /// resume. (Not in `ssh.config`, which keeps Lima's options.)
    pub fn command(&self, master: bool) -> Command {
        let mut c = Command::new(ssh_binary());
        c.args(self.args(master))
            .arg("-o")
            .arg(FAST_KEX)
            .arg("-o")
            .arg("LogLevel=ERROR")
            .arg("-o")
            .arg("ConnectTimeout=10")
            .arg("-p")
            .arg(self.port.to_string())
            .arg("127.0.0.1");
        c
    }

    /// Runs a shell script in the guest (its text on stdin of `sh -s`),
    /// returning (exit status, stdout, stderr).
    pub fn run_script(
        &self,
        master: bool,
        script: &str,
        timeout: Duration,
    ) -> std::io::Result<(Option<i32>, String, String)> {
        let mut c = self.command(master);
        c.arg("--").arg("/bin/sh").arg("-s");
        run_with_input(c, script.as_bytes(), timeout)
    }

    /// A target for unit tests: instance directory `dir`, user `u`, port 1.
    #[cfg(test)]
    pub fn for_tests(dir: &Path) -> SshTarget {
        SshTarget {
            instance_dir: dir.to_path_buf(),
            name: "t".into(),
            user: "u".into(),
            port: 1,
            identity: dir.join("id"),
            extra_identities: vec![],
            forward_agent: false,
            forward_x11: false,
            forward_x11_trusted: false,
        }
    }

    /// `ssh -O OP` to the ControlMaster, if its socket exists: whether it
    /// answered. A local question; nothing reaches the guest.
    fn control_master(&self, op: &str) -> bool {
        self.control_path().exists()
            && self
                .command(true)
                .args(["-O", op])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
    }

    /// Whether a ControlMaster answers on the control socket.
    pub fn master_alive(&self) -> bool {
        self.control_master("check")
    }

    /// Stops the ControlMaster if one is listening.
    pub fn exit_master(&self) {
        self.control_master("exit");
    }
}

impl SshTarget {
    /// The target of an inspected instance (its port from the last start).
    pub fn for_instance(home: &Home, inst: &crate::store::Instance) -> Result<SshTarget, SshError> {
        let config = inst.config.clone().unwrap_or_default();
        let ssh = config.ssh.unwrap_or_default();
        Ok(SshTarget {
            instance_dir: inst.dir.clone(),
            name: inst.name.clone(),
            user: config.user.and_then(|u| u.name).unwrap_or_default(),
            port: inst.ssh_local_port,
            identity: ensure_identity(home)?,
            extra_identities: Vec::new(),
            forward_agent: ssh.forward_agent == Some(true),
            forward_x11: ssh.forward_x11 == Some(true),
            forward_x11_trusted: ssh.forward_x11_trusted == Some(true),
        })
    }
}

/// The ssh binary: `$SSH` (first word) or `ssh` on PATH.
pub fn ssh_binary() -> String {
    std::env::var("SSH")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "ssh".into())
}

/// Runs a command with `input` on stdin, killing it after `timeout`.
pub fn run_with_input(
    mut c: Command,
    input: &[u8],
    timeout: Duration,
) -> std::io::Result<(Option<i32>, String, String)> {
    use std::io::{Read, Write};
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let deadline = std::time::Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break Some(s);
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = writer.join();
    let out = String::from_utf8_lossy(&out_t.join().unwrap_or_default()).into_owned();
    let err = String::from_utf8_lossy(&err_t.join().unwrap_or_default()).into_owned();
    Ok((status.and_then(|s| s.code()), out, err))
}

/// Single-quotes a word for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> SshTarget {
        SshTarget {
            instance_dir: "/lh/vm".into(),
            name: "vm".into(),
            user: "alice".into(),
            port: 60022,
            identity: "/lh/_config/user".into(),
            extra_identities: vec![],
            forward_agent: false,
            forward_x11: false,
            forward_x11_trusted: false,
        }
    }

    #[test]
    fn ssh_config_matches_lima() {
        let t = target().config_text().unwrap();
        assert!(t.starts_with("# This SSH config file can be passed to 'ssh -F'.\n"));
        assert!(
            t.contains(
                "Host lima-vm\n  IdentityFile \"/lh/_config/user\"\n  StrictHostKeyChecking no\n"
            ),
            "{t}"
        );
        assert!(t.contains("  User alice\n  ControlMaster auto\n  ControlPath \"/lh/vm/ssh.sock\"\n  ControlPersist yes\n"), "{t}");
        assert!(t.ends_with("  Hostname 127.0.0.1\n  Port 60022\n"), "{t}");
    }

    /// limactl's own connections prefer curve25519 (OpenSSH itself, `ssh
    /// -G`, resolves the option so), the defaults still allowed after it;
    /// `ssh.config` keeps Lima's options without it.
    #[test]
    fn own_connections_prefer_the_classic_key_exchange() {
        let t = target();
        let c = t.command(true);
        let args: Vec<String> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(args.contains(&FAST_KEX.to_string()), "{args:?}");
        assert!(!t.config_text().unwrap().contains("KexAlgorithms"));
        let out = std::process::Command::new(ssh_binary())
            .arg("-G")
            .args(&args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        let kex = text
            .lines()
            .find_map(|l| l.strip_prefix("kexalgorithms "))
            .unwrap_or_else(|| panic!("{text}"));
        let list: Vec<&str> = kex.split(',').collect();
        assert_eq!(list[0], "curve25519-sha256", "{kex}");
        assert!(list.iter().any(|k| k.starts_with("sntrup761")), "{kex}");
    }

    #[test]
    fn public_keys_are_recognised() {
        let k =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl lima";
        assert!(is_public_key(k));
        assert!(!is_public_key(
            "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
        ));
        assert!(!is_public_key("not a key"));
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("abc"), "abc");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
