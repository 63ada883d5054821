//! What the host agent does once QEMU runs (reference §4.4
//! `startHostAgentRoutines`): essential requirements, reverse-sshfs mounts,
//! static and socket forwards, the guest agent connection (dynamic port
//! forwarding, time sync), optional requirements (probes), the guest agent's
//! first contact, final requirements, provisioning results, ansible.
//! [`Session`] holds what must be undone at shutdown.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::events::EventWriter;
use super::guest::{self, Alive};
use super::latch::Latch;
use super::mounts::{self, Mounts};
use super::portfwd::{self, Forwarder};
use super::requirements::Requirements;
use crate::spec::LimaYaml;
use crate::ssh::SshTarget;
use crate::sync::MutexExt;

/// How long the guest agent has to answer once the optional requirements
/// are done (Lima: 1 minute).
pub const GUEST_AGENT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a resume waits for the guest agent to set the clock before
/// doing it over SSH.
const AGENT_CLOCK_TIMEOUT: Duration = Duration::from_secs(10);

pub const GUEST_AGENT_NOT_RUNNING: &str =
    "guest agent does not seem to be running; port forwards will not work";

/// What runs alongside the guest and is torn down when it stops.
pub struct Session {
    stop: Arc<Latch>,
    mounts: Mutex<Mounts>,
    forwarder: Arc<Mutex<Forwarder>>,
    guest_agent: Mutex<Option<guest::Connection>>,
}

/// Everything the start-up routine needs.
pub struct Startup {
    pub name: String,
    pub dir: PathBuf,
    pub config: LimaYaml,
    pub target: SshTarget,
    pub requirements: Requirements,
    /// A guest agent binary was put in cidata (so its silence is an error).
    pub guest_agent_shipped: bool,
    pub ga_sock: PathBuf,
    /// The VM was resumed from a saved state: its clock is as old as the state.
    pub resumed: bool,
}

impl Session {
    pub fn new(
        config: &LimaYaml,
        target: SshTarget,
        ssh_local_port: u16,
        events: Arc<Mutex<EventWriter>>,
    ) -> Session {
        let rules = portfwd::rules(
            config.port_forwards.as_deref().unwrap_or_default(),
            ssh_local_port,
        );
        Session {
            stop: Arc::new(Latch::default()),
            mounts: Mutex::new(Mounts::default()),
            forwarder: Arc::new(Mutex::new(Forwarder::new(rules, target, events))),
            guest_agent: Mutex::new(None),
        }
    }

    fn stopping(&self) -> bool {
        self.stop.is_set()
    }

    /// Runs the routines in order; returns the errors (empty = ready).
    pub fn start(&self, s: &Startup) -> Vec<String> {
        let plain = s.config.plain == Some(true);
        if plain {
            let has_static = s
                .config
                .port_forwards
                .iter()
                .flatten()
                .any(|p| p.static_ == Some(true));
            crate::info!(
                "Running in plain mode. Mounts, dynamic port forwarding, containerd, etc. will be ignored. Guest agent will not be running.{}",
                if has_static {
                    " Static port forwarding is allowed."
                } else {
                    ""
                }
            );
        }
        // A resumed guest's clock stood still while it was suspended: its
        // agent sets it while SSH logs in (a login takes seconds under
        // emulation); done before Ready.
        let agent_clock = (s.resumed && !plain && s.guest_agent_shipped).then(|| {
            let sock = s.ga_sock.clone();
            crate::logging::spawn_in_span(move || {
                guest::sync_clock_once(&sock, AGENT_CLOCK_TIMEOUT)
            })
        });
        let mut errors = Vec::new();
        let r = &s.requirements;
        if !r.essential(&mut errors) || self.stopping() {
            return errors;
        }
        if !s.resumed {
            return self.converge(s, errors);
        }
        // Else (no agent, or no answer) stepped over the ControlMaster
        // beside the rest, in one sudo round trip.
        let target = s.target.clone();
        let clock = crate::logging::spawn_in_span(move || {
            match agent_clock.map(|t| t.join()) {
                Some(Ok(Ok(drift_ms))) => {
                    crate::info!(
                        "Set the guest clock to the host's after resuming (it was {drift_ms}ms off; through the guest agent)"
                    );
                    return Ok(());
                }
                Some(Ok(Err(e))) => {
                    crate::info!("The guest agent did not set the clock ({e}); setting it over SSH")
                }
                Some(Err(_)) => crate::warn!("the guest agent's clock sync panicked"),
                None => {}
            }
            super::suspend::set_guest_clock(&target)
        });
        let mut errors = self.converge(s, errors);
        match clock.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.insert(0, e),
            Err(_) => errors.insert(0, "setting the guest clock panicked".into()),
        }
        errors
    }

    /// [`Session::start`] after the essential requirements: mounts, forwards,
    /// the guest agent, the optional and final requirements, playbooks.
    fn converge(&self, s: &Startup, mut errors: Vec<String>) -> Vec<String> {
        let plain = s.config.plain == Some(true);
        let r = &s.requirements;
        // Mounts are started without holding the session's lock: checking
        // them takes seconds, and a shutdown must not wait for that.
        let mut started = Mounts::default();
        errors.extend(started.start(&s.target, &mounts::sshfs_mounts(&s.config)));
        if self.stopping() {
            started.stop();
            return errors;
        }
        self.mounts.locked().adopt(started);

        errors.extend(self.forwarder.locked().start_static());

        let alive = Arc::new(Alive::default());
        if !plain {
            let (sock, fw, a, stop) = (
                s.ga_sock.clone(),
                self.forwarder.clone(),
                alive.clone(),
                self.stop.clone(),
            );
            *self.guest_agent.locked() = Some(guest::spawn(sock, fw, a, stop));
        }

        r.optional(&mut errors);
        if !plain && s.guest_agent_shipped && !self.stopping() && !alive.wait(GUEST_AGENT_TIMEOUT) {
            errors.push(GUEST_AGENT_NOT_RUNNING.into());
        }
        if self.stopping() {
            return errors;
        }
        let provision_failures = r.final_(&mut errors);
        if errors.is_empty() {
            errors.extend(provision_failures);
        }
        // Playbooks need a ready guest (Lima runs them after READY).
        if errors.is_empty() && !self.stopping() {
            errors.extend(super::ansible::run(&s.config, &s.name, &s.dir));
        }
        errors
    }

    /// Stops the guest agent connection, reports the forwards as stopping
    /// and unmounts. The forwards themselves end with the ControlMaster.
    pub fn shutdown(&self) {
        self.stop.set();
        if let Some(c) = self.guest_agent.locked().take() {
            // A panic in that thread was reported there.
            let _ = c.stop();
        }
        self.forwarder.locked().stop_all();
        self.mounts.locked().stop();
    }
}
