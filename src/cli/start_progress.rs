//! `limactl start --progress`: the guest's provisioning output
//! (`/var/log/cloud-init-output.log`, where the boot scripts write too)
//! shown while the start waits, followed over SSH as soon as sshd answers.

use std::io::BufRead;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::ssh::SshTarget;
use crate::store::Home;

/// The remote command: everything logged so far, then what follows.
pub const FOLLOW: &str = "sudo -n tail -n +1 -F /var/log/cloud-init-output.log 2>/dev/null || tail -n +1 -F /var/log/cloud-init-output.log";

pub struct Follower {
    stop: Arc<AtomicBool>,
    child: Arc<Mutex<Option<std::process::Child>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Starts following the log of instance `name` in the background.
pub fn follow(home: Home, name: String) -> Follower {
    let stop = Arc::new(AtomicBool::new(false));
    let child: Arc<Mutex<Option<std::process::Child>>> = Arc::new(Mutex::new(None));
    let (s, c) = (stop.clone(), child.clone());
    let thread = std::thread::spawn(move || {
        let env = crate::spec::LoadEnv::new(&home.root);
        while !s.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_secs(2));
            let Ok(inst) = crate::reconcile::ops::existing(&home, &env, &name) else {
                continue;
            };
            if inst.ssh_local_port == 0 {
                continue;
            }
            let Ok(target) = SshTarget::for_instance(&home, &inst) else {
                continue;
            };
            let mut cmd = target.command(false);
            cmd.arg("--")
                .arg(FOLLOW)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null());
            let Ok(mut ch) = cmd.spawn() else { continue };
            let out = ch.stdout.take();
            {
                // Under the lock: either Drop sees the child, or we see stop.
                let mut slot = c.lock().unwrap();
                if s.load(Ordering::SeqCst) {
                    let _ = ch.kill();
                    let _ = ch.wait();
                    break;
                }
                *slot = Some(ch);
            }
            if let Some(out) = out {
                for line in std::io::BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    crate::info!("[cloud-init] {line}");
                }
            }
            // The log ends when sshd is not up yet (try again), when we are
            // stopped, or when the guest reboots (follow it again).
            if let Some(mut ch) = c.lock().unwrap().take() {
                let _ = ch.wait();
            }
        }
    });
    Follower {
        stop,
        child,
        thread: Some(thread),
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(ch) = self.child.lock().unwrap().as_mut() {
            let _ = ch.kill();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
