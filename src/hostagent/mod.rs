//! The per-instance supervisor, `limactl hostagent NAME` (reference §4):
//! holds the instance's liveness lock for its whole life, regenerates
//! cidata, runs QEMU as its direct child, waits for the guest's readiness
//! requirements, reports events in `ha.stdout.log`, serves `ha.sock`, and on
//! SIGINT/SIGTERM powers the guest off (ACPI), then quits or kills QEMU.

pub mod ansible;
pub mod api;
pub mod events;
pub mod guest;
pub mod latch;
pub mod launch;
pub mod logfollow;
pub mod mounts;
pub mod portfwd;
pub mod requirements;
pub mod routines;
pub mod suspend;
mod vm;
mod vnc;

use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{SigSet, Signal};

use crate::spec::yaml::quote_name;
use crate::store::paths::files;
use crate::store::{self, Home, lock};
use crate::sync::MutexExt;
use events::{EventWriter, Status};

/// How long the guest gets to power off after the ACPI power button.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(180);

/// What wakes the host agent's main loop, each sent by the thread that
/// blocks waiting for it: `sigwait`, QEMU's `waitid`, the start-up routine.
enum Wake {
    Signal(Signal),
    QemuExited,
    Ready(Vec<String>),
}

/// Picks the SSH port: `ssh.localPort`, or a free 127.0.0.1 port. A
/// configured port that is taken is an error now rather than a QEMU failure later.
pub fn ssh_port(configured: i64) -> anyhow::Result<u16> {
    if configured > 0 {
        let port = configured as u16;
        std::net::TcpListener::bind(("127.0.0.1", port)).with_context(|| {
            format!("SSH port {port} (`ssh.localPort`) is already in use on 127.0.0.1; choose another port or set 0 for a free one")
        })?;
        return Ok(port);
    }
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).context("cannot find a free port")?;
    Ok(l.local_addr()?.port())
}

/// Blocks the termination signals in this thread (and the threads it
/// spawns) so one thread can `sigwait` for them.
fn block_signals() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGHUP);
    set.add(launch::SUSPEND_SIGNAL);
    let _ = set.thread_block();
    set
}

/// `limactl hostagent NAME`.
pub fn run(home: &Home, name: &str, debug: bool) -> anyhow::Result<i32> {
    // Every line of this process (and of its threads) names its instance.
    let _span = crate::logging::instance_span(name).entered();
    let dir = home.instance_dir(name);
    if !dir.join(files::LIMA_YAML).exists() {
        bail!("instance {} does not exist", quote_name(name));
    }
    let _liveness = lock::try_exclusive_patient(&dir.join(files::HA_LOCK))?.ok_or_else(|| {
        anyhow::anyhow!(
            "another host agent is already running for instance {}",
            quote_name(name)
        )
    })?;
    let sigset = block_signals();
    store::atomic::write(
        &dir.join(files::HA_PID),
        format!("{}\n", std::process::id()).as_bytes(),
        0o600,
    )?;
    // Shared: port-forward events come from the guest agent's thread.
    let events = Arc::new(Mutex::new(EventWriter::open(
        &dir.join(files::HA_STDOUT_LOG),
    )?));
    let result = run_locked(home, name, &dir, debug, &events, sigset);
    if let Err(e) = &result {
        crate::error!("{e:#}");
    }
    // A failure is told apart from a clean stop (SIGINT, guest poweroff) by
    // the errors of the last event: the watch daemon's RerunOnFailure needs it.
    let errors = match &result {
        Ok(0) => Vec::new(),
        Ok(_) => vec!["the VM stopped unexpectedly (QEMU failed)".to_string()],
        Err(e) => vec![format!("{e:#}")],
    };
    let _ = events.locked().emit(Status::exiting(errors));
    for f in [
        files::HA_SOCK,
        files::HA_PID,
        files::QMP_SOCK,
        files::GA_SOCK,
        files::SERIAL_SOCK,
        files::SERIALV_SOCK,
    ] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    result
}

fn run_locked(
    home: &Home,
    name: &str,
    dir: &Path,
    debug: bool,
    events: &Arc<Mutex<EventWriter>>,
    sigset: SigSet,
) -> anyhow::Result<i32> {
    let env = crate::spec::LoadEnv::new(&home.root);
    let inst = store::inspect(home, &env, name);
    let config = inst.config.clone().ok_or_else(|| {
        anyhow::anyhow!(
            "instance {} has errors: {}",
            quote_name(name),
            inst.errors.join("; ")
        )
    })?;

    // Before anything boots: a start that cannot run its playbooks fails now.
    ansible::check(&config, std::env::var_os("PATH").as_deref()).map_err(|e| anyhow::anyhow!(e))?;

    let configured_port = config.ssh.as_ref().and_then(|s| s.local_port).unwrap_or(0);
    let (mut vm, saved) = suspend::prepare_vm(home, name, dir, &config, configured_port, debug)?;
    let port = vm.port();

    // Start answering /v1/info before QEMU: `list` must see the port.
    let info = Arc::new(Mutex::new(api::Info {
        ssh_local_port: port,
        ..Default::default()
    }));
    api::serve(&dir.join(files::HA_SOCK), info.clone())?;

    let (mut tx, mut rx) = mpsc::channel::<Wake>();
    let start = |vm: &mut vm::Vm, incoming: bool, tx: &mpsc::Sender<Wake>| {
        let tx = tx.clone();
        vm.start_qemu(incoming, move || {
            let _ = tx.send(Wake::QemuExited);
        })
    };
    let mut qemu = start(&mut vm, saved.is_some(), &tx)?;
    // Some(whether the saved guest was ready) when resumed.
    let mut resumed = saved.as_ref().map(|s| s.ready);
    if resumed.is_some()
        && let Err(e) = suspend::load(dir)
    {
        // The state is unusable: never try it again; boot afresh.
        crate::warn!("Cannot resume from the saved state ({e}); discarding it and booting afresh");
        qemu.kill();
        let _ = qemu.reap();
        store::suspended::discard(dir)?;
        (vm, _) = suspend::prepare_vm(home, name, dir, &config, configured_port, debug)?;
        // A new channel: the killed QEMU's exit is no news.
        (tx, rx) = mpsc::channel::<Wake>();
        qemu = start(&mut vm, false, &tx)?;
        resumed = None;
        info.locked().ssh_local_port = vm.port();
    }
    let port = vm.port();
    let video = config.video.clone().unwrap_or_default();
    if video.display.as_deref() == Some("vnc") {
        let option = video.vnc.and_then(|v| v.display).unwrap_or_default();
        vnc::start(dir, &option);
    }
    events.locked().emit(Status::booting(port))?;
    let session = Arc::new(routines::Session::new(
        &config,
        vm.target().clone(),
        port,
        events.clone(),
    ));

    {
        let tx = tx.clone();
        crate::logging::spawn_in_span(move || {
            if let Ok(sig) = sigset.wait() {
                let _ = tx.send(Wake::Signal(sig));
            }
        });
    }
    {
        let tx = tx.clone();
        let startup = vm.startup(resumed);
        let session = session.clone();
        crate::logging::spawn_in_span(move || {
            let errors = session.start(&startup);
            let _ = tx.send(Wake::Ready(errors));
        });
    }

    let mut ready = false;
    let exit = loop {
        match rx.recv() {
            Ok(Wake::Ready(errors)) => {
                for e in &errors {
                    crate::warn!("{e}");
                }
                ready = errors.is_empty();
                events.locked().emit(Status::running(port, errors))?;
                if ready {
                    crate::info!("The instance {} is ready", quote_name(name));
                }
            }
            Ok(w) => break w,
            Err(mpsc::RecvError) => unreachable!("this function holds a sender"),
        }
    };

    if let Wake::Signal(sig) = &exit {
        crate::info!("Received {sig}, shutting down the host agent");
    }
    session.shutdown();
    if matches!(exit, Wake::Signal(launch::SUSPEND_SIGNAL))
        && !mounts::sshfs_mounts(&config).is_empty()
    {
        suspend::wait_unmounted(vm.target());
    }
    vm.cleanup_guest_side();
    let code = match exit {
        Wake::Signal(launch::SUSPEND_SIGNAL) => match suspend::save(dir, &vm, &mut qemu, ready) {
            Ok(_) => {
                crate::info!("The instance {} is suspended", quote_name(name));
                0
            }
            Err(e) => {
                crate::error!(
                    "Cannot suspend the instance {}: {}; shutting it down instead",
                    quote_name(name),
                    e.message
                );
                let _ = store::suspended::discard(dir);
                if e.guest_running {
                    vm.shutdown(&mut qemu, SHUTDOWN_TIMEOUT);
                } else {
                    // Paused with its disks flushed: nothing left to lose.
                    qemu.kill();
                    let _ = qemu.reap();
                }
                0
            }
        },
        Wake::Signal(_) => {
            vm.shutdown(&mut qemu, SHUTDOWN_TIMEOUT);
            0
        }
        Wake::QemuExited => match qemu.reap() {
            Ok(status) if status.success() => {
                crate::info!("QEMU has exited (the guest powered off)");
                0
            }
            Ok(status) => {
                crate::error!(
                    "Driver stopped due to error: QEMU exited with {status} (see {})",
                    dir.join(files::SERIAL_LOG).display()
                );
                1
            }
            Err(e) => {
                crate::error!("QEMU has exited, but its exit status cannot be read: {e}");
                1
            }
        },
        Wake::Ready(_) => unreachable!("handled in the loop"),
    };
    vm.cleanup_host_side();
    vnc::remove(dir);
    Ok(code)
}

/// Milliseconds since `start`, for log lines.
pub fn elapsed(start: Instant) -> String {
    format!("{:.1}s", start.elapsed().as_secs_f64())
}
