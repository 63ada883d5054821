//! Suspend and resume in the host agent. Suspend: the guest session is
//! torn down first (reverse-sshfs unmounted in the guest, forwards and the
//! ControlMaster closed: nothing in the saved guest waits for a host process
//! that will be gone), then QEMU migrates the VM into `vmstate` and quits.
//! Resume: QEMU starts with the same command line, paused and waiting for
//! the stream; once it is loaded the saved state is removed (the guest is
//! about to change the disks it matches) and the vCPUs run. The readiness
//! requirements then run as after a boot (the guest's markers hold the
//! instance id it booted with), and the clock is stepped to the host's.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use super::vm::{Qemu, Vm};
use crate::driver::qemu::migrate;
use crate::driver::qemu::qmp::Qmp;
use crate::spec::LimaYaml;
use crate::spec::yaml::quote_name;
use crate::ssh::SshTarget;
use crate::store::instance::StartedSpec;
use crate::store::paths::files;
use crate::store::suspended::{self, SavedState};
use crate::store::{self, Home};

/// How long saving or loading a state may take (under TCG a 2 GiB guest
/// takes seconds; a slow disk, more).
pub const MIGRATION_TIMEOUT: Duration = Duration::from_secs(300);

/// The fingerprint of the configuration the VM in `dir` was started with.
fn started_fingerprint(dir: &Path) -> Option<String> {
    let b = std::fs::read(dir.join(files::STARTED_SPEC)).ok()?;
    serde_json::from_slice::<StartedSpec>(&b)
        .ok()
        .map(|s| s.fingerprint)
}

/// The VM to run: resumed from the saved state when there is a complete
/// one this QEMU command line can load, else booted afresh (a saved state
/// that cannot be used is discarded, saying why). `configured_port` is
/// `ssh.localPort` (0: any).
pub fn prepare_vm(
    home: &Home,
    name: &str,
    dir: &Path,
    config: &LimaYaml,
    configured_port: i64,
    debug: bool,
) -> anyhow::Result<(Vm, Option<SavedState>)> {
    if let Some(saved) = suspended::read(dir) {
        match resumable(home, name, dir, config, debug, &saved) {
            Ok(vm) => return Ok((vm, Some(saved))),
            Err(why) => {
                crate::warn!(
                    "Cannot resume instance {} from its saved state: {why}; discarding it and booting afresh",
                    quote_name(name)
                );
                suspended::discard(dir)?;
            }
        }
    } else if suspended::any_present(dir) {
        // What an interrupted suspend left: never a state to resume.
        crate::info!("Removing an incomplete saved state (a suspend was interrupted)");
        suspended::discard(dir)?;
    }
    let port = super::ssh_port(configured_port)?;
    // What this VM runs with: the reconciler compares it with the desired
    // configuration to know whether a restart is pending.
    store::atomic::write(
        &dir.join(files::STARTED_SPEC),
        &serde_json::to_vec(&StartedSpec::new(config))?,
        0o600,
    )?;
    Ok((
        Vm::prepare(home, name, dir, config, port, debug, None)?,
        None,
    ))
}

fn resumable(
    home: &Home,
    name: &str,
    dir: &Path,
    config: &LimaYaml,
    debug: bool,
    saved: &SavedState,
) -> Result<Vm, String> {
    if started_fingerprint(dir).as_deref() != Some(saved.config_fingerprint.as_str()) {
        return Err(
            "the configuration it was started with is not the one recorded in started.json".into(),
        );
    }
    // The port is part of QEMU's command line.
    drop(
        std::net::TcpListener::bind(("127.0.0.1", saved.ssh_local_port))
            .map_err(|e| format!("its SSH port {} is taken ({e})", saved.ssh_local_port))?,
    );
    let vm = Vm::prepare(
        home,
        name,
        dir,
        config,
        saved.ssh_local_port,
        debug,
        Some(&saved.iid),
    )
    .map_err(|e| format!("{e:#}"))?;
    if let Some(why) = saved.mismatch(
        &vm.qemu_binary().display().to_string(),
        vm.qemu_argv(),
        vm.qemu_version(),
    ) {
        return Err(why);
    }
    Ok(vm)
}

/// Loads the saved state into a QEMU started with `incoming`, removes the
/// state and runs the vCPUs.
pub fn load(dir: &Path) -> Result<(), String> {
    let start = Instant::now();
    let mut qmp = Qmp::connect(&dir.join(files::QMP_SOCK), Duration::from_secs(30))
        .map_err(|e| e.to_string())?;
    migrate::load(&mut qmp, &dir.join(files::VM_STATE), MIGRATION_TIMEOUT)
        .map_err(|e| e.to_string())?;
    // From the first instruction on, the guest changes the disks the
    // state was saved with: it must never be loaded again.
    suspended::discard(dir)
        .map_err(|e| format!("cannot remove the saved state after loading it: {e}"))?;
    qmp.cont().map_err(|e| e.to_string())?;
    crate::info!("Resumed from the saved state in {}", super::elapsed(start));
    Ok(())
}

/// Why a suspend failed, and whether the guest is still running (else
/// it is paused with its disks flushed: only quitting QEMU is left).
pub struct SaveError {
    pub message: String,
    pub guest_running: bool,
}

/// Waits (in the guest) until no reverse-sshfs mount is left: sshfs exits
/// and unmounts once its stream closes, which takes a moment.
pub fn wait_unmounted(target: &SshTarget) {
    let script = "i=0\nwhile grep -q ' fuse.sshfs ' /proc/mounts; do\n  i=$((i+1)); [ \"$i\" -gt 100 ] && exit 1\n  sleep 0.1\ndone\n";
    match target.run_script(true, script, Duration::from_secs(20)) {
        Ok((Some(0), _, _)) => {}
        Ok((_, out, err)) => crate::warn!(
            "reverse-sshfs mounts are still in the guest before suspending: {}{}",
            out.trim(),
            err.trim()
        ),
        Err(e) => crate::warn!("cannot check the guest's mounts before suspending: {e}"),
    }
}

/// Saves the VM into the instance directory, then quits QEMU.
/// `ready`: the guest had met its readiness requirements.
pub fn save(dir: &Path, vm: &Vm, qemu: &mut Qemu, ready: bool) -> Result<SavedState, SaveError> {
    let start = Instant::now();
    let running = |message: String| SaveError {
        message,
        guest_running: true,
    };
    let mut qmp = Qmp::connect(&dir.join(files::QMP_SOCK), Duration::from_secs(5))
        .map_err(|e| running(e.to_string()))?;
    let partial = dir.join(files::VM_STATE_PARTIAL);
    crate::info!("Saving the VM's state");
    migrate::save(&mut qmp, &partial, MIGRATION_TIMEOUT).map_err(|e| running(e.to_string()))?;
    let meta = SavedState {
        config_fingerprint: started_fingerprint(dir).unwrap_or_default(),
        qemu_binary: vm.qemu_binary().display().to_string(),
        qemu_argv: vm.qemu_argv().to_vec(),
        qemu_version: vm.qemu_version().to_string(),
        ssh_local_port: vm.port(),
        iid: vm.iid().to_string(),
        saved_at: chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
        size: 0,
        ready,
    };
    let paused = |message: String| SaveError {
        message,
        guest_running: false,
    };
    let meta = suspended::commit(dir, meta).map_err(|e| paused(e.to_string()))?;
    let _ = qmp.quit();
    if !qemu.wait_exit(Duration::from_secs(30)) {
        qemu.kill();
    }
    let _ = qemu.reap();
    crate::info!(
        "Saved the VM's state ({} MiB) in {}",
        meta.size >> 20,
        super::elapsed(start)
    );
    Ok(meta)
}

/// Steps the guest clock to the host's (it stood still while suspended),
/// in one round trip: the host's time when the command is sent, plus what
/// the guest's monotonic clock says passed from the script's start to the
/// `date` under sudo (sudo alone takes a few tenths of a second under
/// emulation). What is left is the way in, a round trip's half.
pub fn set_guest_clock(target: &SshTarget) -> Result<(), String> {
    let now = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    run(target, &clock_script(now))?;
    crate::info!("Set the guest clock to the host's after resuming");
    Ok(())
}

/// The guest script of [`set_guest_clock`] for host time `now`. Builtins
/// but for sudo and date; `/proc/uptime` has two decimals (centiseconds,
/// leading zeros stripped: they would make a number octal).
fn clock_script(now: Duration) -> String {
    let centis = now.as_millis() / 10;
    format!(
        r#"read -r u0 _ </proc/uptime
exec sudo -n sh -c '
read -r u1 _ </proc/uptime
a=${{1%.*}}${{1#*.}} b=${{u1%.*}}${{u1#*.}}
a=${{a#"${{a%%[!0]*}}"}} b=${{b#"${{b%%[!0]*}}"}}
t=$(($2 + ${{b:-0}} - ${{a:-0}}))
date -u -s "@$((t / 100)).$((t / 10 % 10))$((t % 10))" >/dev/null
' sh "$u0" {centis}
"#
    )
}

fn run(target: &SshTarget, script: &str) -> Result<(), String> {
    match target.run_script(true, script, Duration::from_secs(30)) {
        Ok((Some(0), _, _)) => Ok(()),
        Ok((code, _, err)) => Err(format!(
            "cannot set the guest clock after resuming ({}): {}",
            code.map_or("killed".into(), |c| format!("exit {c}")),
            err.trim()
        )),
        Err(e) => Err(format!("cannot set the guest clock after resuming: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The clock script under dash and bash, with a sudo that runs its
    /// command and a date that records its arguments: the time set is the
    /// host's plus the little the guest's clock saw pass, in `@S.CC` form.
    #[test]
    fn the_clock_script_sets_the_host_time_plus_the_delay_in_the_guest() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let bin = d.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let args = d.path().join("date.args");
        for (name, body) in [
            ("sudo", "[ \"$1\" = -n ] && shift\nexec \"$@\"".to_string()),
            ("date", format!("echo \"$*\" >{}", args.display())),
        ] {
            let f = bin.join(name);
            std::fs::write(&f, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let now = Duration::from_millis(1_767_225_600_123);
        for shell in ["sh", "bash"] {
            let _ = std::fs::remove_file(&args);
            let out = std::process::Command::new(shell)
                .args(["-c", &clock_script(now)])
                .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
                .output()
                .unwrap();
            assert!(out.status.success(), "{shell}: {out:?}");
            let line = std::fs::read_to_string(&args).unwrap();
            let set = line
                .trim()
                .strip_prefix("-u -s @")
                .unwrap_or_else(|| panic!("{shell}: {line}"));
            let (secs, centis) = set.split_once('.').unwrap();
            assert_eq!(centis.len(), 2, "{shell}: {line}");
            let t: u64 = secs.parse::<u64>().unwrap() * 100 + centis.parse::<u64>().unwrap();
            // At least the host's time; at most a minute later (a loaded machine).
            assert!(
                (176_722_560_012..176_722_560_012 + 6000).contains(&t),
                "{shell}: {line}"
            );
        }
    }
}
