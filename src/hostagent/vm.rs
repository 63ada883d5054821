//! The host agent's VM: what it prepares before QEMU (cidata, ssh.config,
//! disk locks), QEMU as a direct child holding `qemu.lock`, and shutdown.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::latch::Latch;
use super::requirements::Requirements;
use super::routines::Startup;
use crate::spec::LimaYaml;
use crate::spec::yaml::quote_name;
use crate::ssh::SshTarget;
use crate::store::instance::QEMU_LOCK;
use crate::store::paths::files;
use crate::store::{self, Home, lock};

pub struct Vm {
    home: Home,
    name: String,
    dir: PathBuf,
    config: LimaYaml,
    port: u16,
    iid: String,
    target: SshTarget,
    argv: Vec<String>,
    binary: PathBuf,
    qemu_version: String,
    disks: Vec<String>,
    guest_agent_shipped: bool,
}

impl Vm {
    /// Everything before QEMU starts: identity, cidata, ssh.config, disk locks, argv.
    /// `resume_iid`: the VM is to load a saved state, booted with that
    /// instance id: its cidata is kept as it was (the guest has read it).
    pub fn prepare(
        home: &Home,
        name: &str,
        dir: &Path,
        config: &LimaYaml,
        port: u16,
        debug: bool,
        resume_iid: Option<&str>,
    ) -> anyhow::Result<Vm> {
        let identity = crate::ssh::ensure_identity(home)?;
        let user = config.user.clone().unwrap_or_default();
        let ssh = config.ssh.clone().unwrap_or_default();
        let host = crate::spec::host::host();
        let keys =
            crate::ssh::authorized_keys(home, ssh.load_dot_ssh_pub_keys == Some(true), &host.home)?;
        let iid = match resume_iid {
            Some(iid) => iid.to_string(),
            None => format!(
                "iid-{}",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0)
            ),
        };

        let host_env: std::collections::BTreeMap<String, String> = std::env::vars().collect();
        let guest_agent = if config.plain == Some(true) {
            None
        } else {
            guest_agent_binary()
        };
        // What cidata and the driver read: `config` was validated when it was loaded.
        let spec = crate::spec::Spec::from_filled(config)?;
        if resume_iid.is_none() {
            // `start` fetched it already (before launching us): this finds it in the cache.
            let archive =
                crate::image::containerd_archive(&spec, &crate::image::FetchOptions::default())?;
            let cidata = crate::cidata::generate(&crate::cidata::CidataInput {
                spec: &spec,
                name,
                instance_dir: dir,
                iid: &iid,
                authorized_keys: &keys,
                debug,
                host_home: &host.home,
                host_env: &host_env,
                guest_agent: guest_agent.as_deref(),
                containerd_archive: archive.as_deref(),
                udp_dns_port: 0,
                tcp_dns_port: 0,
            })?;
            crate::cidata::write_iso(&dir.join(files::CIDATA_ISO), &cidata.files).with_context(
                || format!("cannot write {}", dir.join(files::CIDATA_ISO).display()),
            )?;
            store::atomic::write(
                &dir.join(files::CLOUD_CONFIG),
                cidata.cloud_config.as_bytes(),
                0o400,
            )?;
        }

        let target = SshTarget {
            instance_dir: dir.to_path_buf(),
            name: name.to_string(),
            user: user.name.clone().unwrap_or_default(),
            port,
            identity,
            extra_identities: Vec::new(),
            forward_agent: ssh.forward_agent == Some(true),
            forward_x11: ssh.forward_x11 == Some(true),
            forward_x11_trusted: ssh.forward_x11_trusted == Some(true),
        };
        store::atomic::write(
            &dir.join(files::SSH_CONFIG),
            target.config_text()?.as_bytes(),
            0o600,
        )?;

        let mut disks = Vec::new();
        let mut disk_paths = Vec::new();
        for d in config.additional_disks.iter().flatten() {
            if let Some(stale) = store::disk::lock_for(home, &d.name, dir)? {
                crate::warn!(
                    "Taking over disk {} from instance {}, which is not running",
                    quote_name(&d.name),
                    quote_name(&stale)
                );
            }
            crate::info!(
                "Mounting disk {} on {}",
                quote_name(&d.name),
                quote_name(&format!("/mnt/lima-{}", d.name))
            );
            disk_paths.push(
                store::disk::disk_dir(home, &d.name).join(store::paths::disk_files::DATA_DISK),
            );
            disks.push(d.name.clone());
        }

        let prepared = crate::driver::qemu::prepare(&crate::driver::qemu::Launch {
            spec: &spec,
            name,
            instance_dir: dir,
            ssh_local_port: port,
            additional_disks: disk_paths,
            lima_home: &home.root,
        })?;
        let (binary, argv) = (prepared.binary, prepared.argv);
        let qemu_version = prepared
            .version
            .map(|v| format!("{}.{}.{}", v.0, v.1, v.2))
            .unwrap_or_default();
        Ok(Vm {
            home: home.clone(),
            name: name.to_string(),
            dir: dir.to_path_buf(),
            config: config.clone(),
            port,
            iid,
            target,
            argv,
            binary,
            qemu_version,
            disks,
            guest_agent_shipped: guest_agent.is_some(),
        })
    }

    pub fn target(&self) -> &SshTarget {
        &self.target
    }

    pub fn iid(&self) -> &str {
        &self.iid
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn qemu_binary(&self) -> &Path {
        &self.binary
    }

    pub fn qemu_argv(&self) -> &[String] {
        &self.argv
    }

    pub fn qemu_version(&self) -> &str {
        &self.qemu_version
    }

    /// What the start-up routine (requirements, mounts, forwards) needs;
    /// `resumed`: Some(whether the saved guest was ready) after a resume.
    pub fn startup(&self, resumed: Option<bool>) -> Startup {
        Startup {
            name: self.name.clone(),
            dir: self.dir.clone(),
            config: self.config.clone(),
            target: self.target.clone(),
            requirements: {
                let r = Requirements::for_config(
                    self.target.clone(),
                    &self.iid,
                    Duration::from_secs(600),
                    &self.config,
                );
                match resumed {
                    Some(ready) => r.after_resume(ready),
                    None => r,
                }
            },
            guest_agent_shipped: self.guest_agent_shipped,
            resumed: resumed.is_some(),
            ga_sock: self.dir.join(files::GA_SOCK),
        }
    }

    /// Starts QEMU as a direct child. It inherits `qemu.lock` (held), so the
    /// lock lives exactly as long as QEMU; this process drops its copy.
    /// `on_exit` runs (in another thread) when QEMU has exited.
    pub fn start_qemu(
        &mut self,
        incoming: bool,
        on_exit: impl FnOnce() + Send + 'static,
    ) -> anyhow::Result<Qemu> {
        use std::os::fd::AsRawFd;
        for f in [
            files::QMP_SOCK,
            files::SERIAL_SOCK,
            files::SERIALV_SOCK,
            files::GA_SOCK,
            files::SERIAL_LOG,
            files::SERIALV_LOG,
            files::QEMU_PID,
        ] {
            let _ = std::fs::remove_file(self.dir.join(f));
        }
        let held = lock::try_exclusive_patient(&self.dir.join(QEMU_LOCK))?.ok_or_else(|| {
            anyhow::anyhow!(
                "a QEMU process of instance {} is still running without its host agent; run `limactl stop -f {}`",
                quote_name(&self.name),
                self.name
            )
        })?;
        let fd = held.file().as_raw_fd();
        crate::info!(
            "Starting QEMU (hint: to watch the boot progress, see {:?})",
            self.dir.join("serial*.log").display().to_string()
        );
        crate::debug!(
            "QEMU command line: {} {}",
            self.binary.display(),
            self.argv.join(" ")
        );
        let mut c = Command::new(&self.binary);
        c.args(&self.argv);
        if incoming {
            c.args(crate::driver::qemu::migrate::INCOMING_ARGS);
        }
        c.current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        inherit_unmasked(&mut c, fd);
        let mut child = c
            .spawn()
            .with_context(|| format!("cannot start {}", self.binary.display()))?;
        drop(held);
        for (stream, tag) in [
            (
                child
                    .stdout
                    .take()
                    .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
                "stdout",
            ),
            (
                child
                    .stderr
                    .take()
                    .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
                "stderr",
            ),
        ] {
            if let Some(s) = stream {
                crate::logging::spawn_in_span(move || {
                    use std::io::BufRead;
                    for line in std::io::BufReader::new(s).lines().map_while(Result::ok) {
                        if tag == "stderr" {
                            crate::warn!("qemu[{tag}]: {line}");
                        } else {
                            crate::debug!("qemu[{tag}]: {line}");
                        }
                    }
                });
            }
        }
        Qemu::watch(child, on_exit).context("cannot start the thread that waits for QEMU")
    }

    /// Undo what the running guest session set up (ControlMaster).
    pub fn cleanup_guest_side(&self) {
        self.target.exit_master();
    }

    /// ACPI power button through QMP; after `timeout`, `quit`; then SIGKILL.
    pub fn shutdown(&self, qemu: &mut Qemu, timeout: Duration) {
        let qmp_path = self.dir.join(files::QMP_SOCK);
        let start = Instant::now();
        match crate::driver::qemu::qmp::Qmp::connect(&qmp_path, Duration::from_secs(5)) {
            Ok(mut qmp) => {
                crate::info!("Shutting down QEMU with ACPI");
                if let Err(e) = qmp.system_powerdown() {
                    crate::warn!("QMP system_powerdown failed: {e}");
                }
                if qemu.wait_exit(timeout.saturating_sub(start.elapsed())) {
                    crate::info!(
                        "QEMU has exited after {:.1}s",
                        start.elapsed().as_secs_f64()
                    );
                    let _ = qemu.reap();
                    return;
                }
                crate::warn!(
                    "The guest did not power off within {}s; sending QMP quit",
                    timeout.as_secs()
                );
                let _ = qmp.quit();
                if qemu.wait_exit(Duration::from_secs(5)) {
                    let _ = qemu.reap();
                    return;
                }
            }
            Err(e) => crate::warn!("cannot connect to QMP ({e}); killing QEMU"),
        }
        qemu.kill();
        let _ = qemu.reap();
    }

    /// Releases disks and removes run-time files QEMU may have left.
    pub fn cleanup_host_side(&self) {
        for d in &self.disks {
            if let Err(e) = store::disk::unlock_for(&self.home, d, &self.dir) {
                crate::warn!(
                    "Failed to unlock disk {}. To use, run `limactl disk unlock {d}`: {e}",
                    quote_name(d)
                );
            }
        }
        let _ = (&self.config, self.port);
    }
}

/// Makes `c`'s child keep `fd` open across exec and start with no signal
/// blocked (the host agent blocks the termination signals for its sigwait
/// thread, and a mask survives exec; std's spawn resets it too, this does
/// not rely on that). `fd` must stay open until `c` is spawned.
fn inherit_unmasked(c: &mut Command, fd: std::os::fd::RawFd) {
    use std::os::unix::process::CommandExt;
    let child_setup = move || -> std::io::Result<()> {
        use nix::fcntl::{FcntlArg, FdFlag, fcntl};
        // SAFETY: `fd` is open in the child: fork copied the parent's
        // descriptor table, where the caller keeps it open until `c` is
        // spawned (start_qemu's `held`).
        let locked = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let flags = FdFlag::from_bits_truncate(fcntl(locked, FcntlArg::F_GETFD)?);
        fcntl(locked, FcntlArg::F_SETFD(flags - FdFlag::FD_CLOEXEC))?;
        nix::sys::signal::SigSet::all().thread_unblock()?;
        Ok(())
    };
    // SAFETY: the closure runs in the forked child, where only
    // async-signal-safe calls are sound (another thread may have held a
    // lock, the allocator's say, when it forked): it makes two fcntl(2)
    // calls and one pthread_sigmask(3), and allocates nothing (an error
    // is an errno value).
    unsafe {
        c.pre_exec(child_setup);
    }
}

/// QEMU, the host agent's child, and a thread that blocks until it exits.
///
/// The thread waits with `waitid(WEXITED | WNOWAIT)`: it learns of the exit
/// without reaping, so QEMU stays a zombie and its pid cannot be reused
/// while this process may still signal it ([`Qemu::kill`]); [`Qemu::reap`]
/// collects the status afterwards.
pub struct Qemu {
    child: Child,
    exited: Arc<Latch>,
}

impl Qemu {
    fn watch(child: Child, on_exit: impl FnOnce() + Send + 'static) -> std::io::Result<Qemu> {
        use nix::sys::wait::{Id, WaitPidFlag, waitid};
        let exited = Arc::new(Latch::default());
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let latch = exited.clone();
        std::thread::Builder::new()
            .name("qemu-wait".into())
            .spawn(move || {
                loop {
                    match waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
                        Err(nix::errno::Errno::EINTR) => continue,
                        Ok(_) => break,
                        Err(e) => {
                            // Cannot happen for our own child; reporting it
                            // as an exit lets the main loop's reap tell.
                            crate::warn!("cannot wait for QEMU (pid {pid}): {e}");
                            break;
                        }
                    }
                }
                latch.set();
                on_exit();
            })?;
        Ok(Qemu { child, exited })
    }

    /// Waits up to `timeout` for QEMU to exit; true when it has.
    pub fn wait_exit(&self, timeout: Duration) -> bool {
        self.exited.wait(timeout)
    }

    /// QEMU's exit status, reaping it (blocks until it exits).
    pub fn reap(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait()
    }

    /// SIGKILL (harmless once it has exited: the zombie keeps its pid).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
    }
}

/// The guest agent binary to ship, with a warning when there is none (the
/// instance still boots; only automatic port forwarding is missing).
fn guest_agent_binary() -> Option<PathBuf> {
    match super::guest::find_binary() {
        Some(p) => {
            if super::guest::is_dynamically_linked(&p) {
                crate::warn!(
                    "{} is dynamically linked and may not run in the guest; build a static one with hack/build-guestagent.sh and point {} at it",
                    p.display(),
                    super::guest::GUESTAGENT_ENV
                );
            }
            crate::info!("Guest agent: {}", p.display());
            Some(p)
        }
        None => {
            crate::warn!(
                "lima-guestagent was not found (set {} or build it with hack/build-guestagent.sh): guest ports will not be forwarded automatically",
                super::guest::GUESTAGENT_ENV
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn watched(script: &str) -> (Qemu, std::sync::mpsc::Receiver<()>) {
        let child = Command::new("sh").args(["-c", script]).spawn().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let q = Qemu::watch(child, move || tx.send(()).unwrap()).unwrap();
        (q, rx)
    }

    #[test]
    fn the_child_keeps_the_descriptor_and_has_no_signal_blocked() {
        use nix::sys::signal::{SigSet, Signal};
        use std::os::fd::AsRawFd;
        let f = tempfile::tempfile().unwrap();
        let fd = f.as_raw_fd();
        let mut blocked = SigSet::empty();
        blocked.add(Signal::SIGINT);
        blocked.thread_block().unwrap();
        let run = |setup: bool| {
            let mut c = Command::new("sh");
            c.args([
                "-c",
                &format!(
                    "test -e /proc/$$/fd/{fd} && echo open; exec grep '^SigBlk' /proc/self/status"
                ),
            ]);
            if setup {
                inherit_unmasked(&mut c, fd);
            }
            String::from_utf8(c.output().unwrap().stdout).unwrap()
        };
        let (plain, set_up) = (run(false), run(true));
        blocked.thread_unblock().unwrap();
        // The lock's descriptor is close-on-exec like every other one...
        assert!(!plain.contains("open"), "{plain}");
        // ...except in QEMU, which starts with the host agent's mask undone.
        assert_eq!(set_up, "open\nSigBlk:\t0000000000000000\n");
    }

    #[test]
    fn an_exit_is_reported_and_the_status_is_still_there_to_reap() {
        let (mut q, rx) = watched("sleep 0.2; exit 3");
        assert!(!q.wait_exit(Duration::ZERO));
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(q.wait_exit(Duration::ZERO));
        // WNOWAIT left the zombie: the status is reaped here.
        assert_eq!(q.reap().unwrap().code(), Some(3));
    }

    #[test]
    fn a_killed_child_wakes_the_waiter() {
        let (mut q, rx) = watched("exec sleep 60");
        assert!(!q.wait_exit(Duration::from_millis(50)));
        q.kill();
        assert!(q.wait_exit(Duration::from_secs(10)));
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
        // A second kill hits the zombie, not another process.
        q.kill();
        assert_eq!(q.reap().unwrap().signal(), Some(9));
    }
}
