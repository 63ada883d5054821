//! Carries out a plan, step by step, under the instance's mutation lock.
//! Each step measures before acting, so re-running a half-done plan is safe.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::plan::{Action, Desired, Plan, Step};
use crate::hostagent::launch;
use crate::spec::units::format_size;
use crate::spec::yaml::quote_name;
use crate::store::paths::files;
use crate::store::{self, Home};

/// How the executor behaves.
#[derive(Clone, Debug)]
pub struct ExecOptions {
    /// How long `start` waits for the guest to be ready.
    pub start_timeout: Duration,
    /// How long a graceful stop may take before it fails.
    pub stop_timeout: Duration,
    /// Pass `--debug` to the host agent.
    pub debug: bool,
    /// Log each step and its reason.
    pub verbose: bool,
    /// `start --foreground`: become the host agent instead of launching it.
    pub foreground: bool,
}

impl Default for ExecOptions {
    fn default() -> Self {
        ExecOptions {
            start_timeout: Duration::from_secs(600),
            stop_timeout: Duration::from_secs(190),
            debug: false,
            verbose: true,
            foreground: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("{}: {}", quote_name(instance), refused.join("; "))]
    Refused {
        instance: String,
        refused: Vec<String>,
    },
    #[error("{}: {step} failed: {message}", quote_name(instance))]
    Step {
        instance: String,
        step: &'static str,
        message: String,
    },
    #[error(transparent)]
    Launch(#[from] launch::LaunchError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

fn step_err(instance: &str, step: &Step, message: impl ToString) -> ExecError {
    ExecError::Step {
        instance: instance.to_string(),
        step: step.action.verb(),
        message: message.to_string(),
    }
}

/// `qemu-img` with clear errors.
fn qemu_img(dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("qemu-img")
        .current_dir(dir)
        .args(args)
        .output()
        .map_err(|e| {
            format!("cannot run qemu-img: {e} (install qemu-utils: hack/install-deps.sh)")
        })?;
    if !out.status.success() {
        return Err(format!(
            "qemu-img {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The format of an image (`qemu-img info`), refusing images with a backing file.
pub fn image_format(dir: &Path, image: &str) -> Result<String, String> {
    let info = qemu_img(dir, &["info", "--output=json", "--force-share", image])?;
    let v: serde_json::Value =
        serde_json::from_str(&info).map_err(|e| format!("qemu-img info: {e}"))?;
    if v.get("backing-filename").is_some() {
        return Err(format!(
            "{image} has a backing file; a base image must be self-contained"
        ));
    }
    v.get("format")
        .and_then(|f| f.as_str())
        .map(str::to_string)
        .ok_or_else(|| format!("qemu-img could not tell the format of {image}"))
}

/// Runs the plan for one instance. `desired` supplies the bytes of a new
/// instance's lima.yaml and its configuration.
pub fn execute(
    home: &Home,
    plan: &Plan,
    desired: Option<&Desired>,
    opts: &ExecOptions,
) -> Result<(), ExecError> {
    execute_with(home, plan, desired, opts, None)
}

/// Takes the instance's mutation lock, observes and plans again under it,
/// then executes: the plan shown earlier may be stale if another actor
/// changed the instance meanwhile. Returns the plan that was carried out.
pub fn converge(
    home: &Home,
    env: &crate::spec::LoadEnv,
    name: &str,
    desired: Option<&Desired>,
    popts: &super::PlanOptions,
    opts: &ExecOptions,
) -> Result<Plan, ExecError> {
    let dir = home.instance_dir(name);
    let lock = if dir.is_dir() {
        Some(store::lock_instance(&dir, store::MUTATION_LOCK_TIMEOUT)?)
    } else {
        None
    };
    let observed = store::inspect(home, env, name);
    let plan = super::plan(desired, &observed, popts);
    if plan.steps.is_empty() && plan.refused.is_empty() {
        return Ok(plan);
    }
    execute_with(home, &plan, desired, opts, lock).map(|_| plan)
}

/// [`execute`], optionally with the mutation lock already held.
pub fn execute_with(
    home: &Home,
    plan: &Plan,
    desired: Option<&Desired>,
    opts: &ExecOptions,
    held: Option<store::lock::Held>,
) -> Result<(), ExecError> {
    let name = plan.instance.as_str();
    if !plan.refused.is_empty() {
        return Err(ExecError::Refused {
            instance: name.into(),
            refused: plan.refused.clone(),
        });
    }
    let dir = home.instance_dir(name);
    let mut lock = held;
    let mut created = false;
    let mut started = false;
    let result = (|| -> Result<(), ExecError> {
        for step in &plan.steps {
            if opts.verbose {
                crate::debug!(
                    "{}: {} ({})",
                    quote_name(name),
                    step.action.verb(),
                    step.reason
                );
            }
            if lock.is_none() && dir.is_dir() {
                lock = Some(store::lock_instance(&dir, store::MUTATION_LOCK_TIMEOUT)?);
            }
            super::journal::record(&dir, name, step, "begin");
            fault_point(step.action.verb(), "before");
            match &step.action {
                Action::Create => {
                    let d = desired.expect("create needs a desired state");
                    let version = crate::version_string();
                    store::create_instance_dir(
                        home,
                        name,
                        &[
                            store::NewFile {
                                name: files::LIMA_YAML,
                                data: d.lima_yaml.as_bytes(),
                                mode: 0o600,
                            },
                            store::NewFile {
                                name: files::LIMA_VERSION,
                                data: version.as_bytes(),
                                mode: 0o400,
                            },
                        ],
                    )
                    .map_err(|e| step_err(name, step, e))?;
                    lock = Some(store::lock_instance(&dir, store::MUTATION_LOCK_TIMEOUT)?);
                    created = true;
                    if let Some(owner) = &d.owner {
                        write_owner(&dir, owner)?;
                    }
                }
                Action::UpdateConfig => {
                    let d = desired.expect("updating the configuration needs a desired state");
                    store::atomic::write(
                        &dir.join(files::LIMA_YAML),
                        d.lima_yaml.as_bytes(),
                        0o600,
                    )
                    .map_err(|e| step_err(name, step, e))?;
                    super::status::bump_generation(&dir)?;
                    crate::info!(
                        "{}: configuration updated ({})",
                        quote_name(name),
                        step.reason
                    );
                }
                Action::Adopt => {
                    let d = desired.expect("adopting needs a desired state");
                    if let Some(owner) = &d.owner {
                        write_owner(&dir, owner)?;
                    }
                }
                Action::PrepareImages => {
                    let d = desired.expect("preparing images needs the configuration");
                    let images = d.config.images.clone().unwrap_or_default();
                    let arch = d.config.arch.clone().unwrap_or_default();
                    let prepared = crate::image::prepare_images(
                        &images,
                        &arch,
                        &dir,
                        &crate::image::FetchOptions::default(),
                    )
                    .map_err(|e| step_err(name, step, e))?;
                    if let Some(i) = prepared.index {
                        crate::info!("Using image {}", quote_name(&images[i].location));
                    }
                }
                Action::CreateDiffDisk { size } => {
                    if dir.join(files::DIFF_DISK).exists() {
                        continue;
                    }
                    let fmt = image_format(&dir, files::BASE_DISK)
                        .map_err(|e| step_err(name, step, e))?;
                    let tmp = format!(".{}.tmp", files::DIFF_DISK);
                    let _ = std::fs::remove_file(dir.join(&tmp));
                    // A relative backing file: the instance directory stays movable.
                    qemu_img(
                        &dir,
                        &[
                            "create",
                            "-q",
                            "-f",
                            "qcow2",
                            "-F",
                            &fmt,
                            "-b",
                            files::BASE_DISK,
                            &tmp,
                            &size.to_string(),
                        ],
                    )
                    .map_err(|e| step_err(name, step, e))?;
                    std::fs::rename(dir.join(&tmp), dir.join(files::DIFF_DISK))?;
                }
                Action::GrowDisk { from, to } => {
                    let have = store::instance::image_virtual_size(&dir.join(files::DIFF_DISK))
                        .unwrap_or(0);
                    if have >= *to {
                        continue;
                    }
                    crate::info!(
                        "Resize instance {}'s disk from {} to {}",
                        quote_name(name),
                        format_size(*from),
                        format_size(*to)
                    );
                    qemu_img(
                        &dir,
                        &[
                            "resize",
                            "-q",
                            "-f",
                            "qcow2",
                            files::DIFF_DISK,
                            &to.to_string(),
                        ],
                    )
                    .map_err(|e| step_err(name, step, e))?;
                }
                Action::Start => {
                    // The lock stays held while the guest boots: nobody else
                    // reconciles this instance meanwhile.
                    started = true;
                    start(home, name, opts)?;
                }
                Action::Stop { force } => {
                    if *force {
                        crate::info!("Stopping the instance {} forcibly", quote_name(name));
                    } else {
                        crate::info!("Stopping the instance {}", quote_name(name));
                    }
                    launch::stop(&dir, name, *force, opts.stop_timeout)?;
                    crate::info!("The instance {} has stopped", quote_name(name));
                }
                Action::Delete => {
                    launch::remove_runtime_files(&dir);
                    drop(lock.take());
                    store::remove_instance_dir(home, name).map_err(|e| step_err(name, step, e))?;
                    crate::info!(
                        "Deleted {} ({})",
                        quote_name(name),
                        quote_name(&dir.display().to_string())
                    );
                }
            }
            fault_point(step.action.verb(), "after");
            super::journal::record(&dir, name, step, "done");
        }
        Ok(())
    })();
    // An instance this plan created but could not complete (image missing,
    // digest mismatch, …) is removed again: nothing half-made is left.
    if result.is_err() && created && !started {
        drop(lock.take());
        if store::remove_instance_dir(home, name).is_ok() {
            crate::info!("Removed the incomplete instance {}", quote_name(name));
        }
    }
    drop(lock);
    if dir.is_dir() {
        super::status::record(
            home,
            name,
            plan,
            result.as_ref().err().map(|e| e.to_string()),
        );
    }
    result
}

/// Names the fault-injection environment variable: a comma-separated list
/// of `<step>:before` / `<step>:after` points (e.g. `create-disk:before`) at
/// which the process SIGKILLs itself, so tests can check that every
/// interrupted plan converges when run again. Never set in normal use.
pub const FAULT_ENV: &str = "LIMA_FAULT_INJECT";

fn fault_point(verb: &str, when: &str) {
    let Ok(spec) = std::env::var(FAULT_ENV) else {
        return;
    };
    let point = format!("{verb}:{when}");
    if spec.split(',').any(|p| p.trim() == point) {
        crate::warn!("fault injection: killing this process at {point}");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

fn write_owner(dir: &Path, owner: &str) -> std::io::Result<()> {
    store::atomic::write(
        &dir.join(files::OWNER),
        format!("{owner}\n").as_bytes(),
        0o600,
    )
}

/// Launches the host agent and waits for the guest to be ready.
fn start(home: &Home, name: &str, opts: &ExecOptions) -> Result<(), ExecError> {
    let dir = home.instance_dir(name);
    // Fail here, naming the package to install, rather than in the host agent.
    crate::driver::qemu::find_binary().map_err(|e| ExecError::Step {
        instance: name.to_string(),
        step: "start",
        message: e.to_string(),
    })?;
    crate::info!(
        "Starting the instance {} with internal VM driver `qemu`",
        quote_name(name)
    );
    if opts.foreground {
        // Only returns if the exec failed.
        return Err(launch::exec_foreground(&dir, name, opts.debug).into());
    }
    let mut child = launch::spawn(&dir, name, opts.debug)?;
    let mut err_lines = ErrForwarder::new(&dir);
    let mut port_logged = false;
    let result = launch::wait_ready(&dir, name, &mut child, opts.start_timeout, |ev| {
        // The host agent's log lines as they come (progress), then the event.
        err_lines.forward();
        let Some(ev) = ev else { return };
        if ev.status.ssh_local_port != 0 && !port_logged {
            port_logged = true;
            crate::info!("SSH Local Port: {}", ev.status.ssh_local_port);
        }
    });
    err_lines.forward();
    result?;
    let hint = if name == "default" {
        "Run `lima` to open the shell.".to_string()
    } else {
        format!("Run `limactl shell {name}` to open the shell.")
    };
    crate::info!("READY. {hint}");
    Ok(())
}

/// Re-logs the host agent's info/warning/error lines with a `[hostagent]` prefix.
struct ErrForwarder {
    reader: crate::hostagent::logfollow::LogFollower,
}

impl ErrForwarder {
    fn new(dir: &Path) -> Self {
        ErrForwarder {
            reader: crate::hostagent::logfollow::LogFollower::new(&dir.join(files::HA_STDERR_LOG)),
        }
    }
    fn forward(&mut self) {
        for (level, msg) in self.reader.poll() {
            crate::logging::log(level, &format!("[hostagent] {msg}"), &[]);
        }
    }
}
