//! Carries out a plan, step by step, under the instance's mutation lock:
//! one method per step kind. Each step measures before acting, so re-running
//! a half-done plan is safe. Every step is short: `Start` returns once QEMU
//! runs, never waiting for the guest (readiness is observed from events).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::plan::{Action, DesiredConfig, Plan, Refusal, Step};
use crate::hostagent::launch;
use crate::spec::units::format_size;
use crate::spec::yaml::quote_name;
use crate::store::paths::files;
use crate::store::{self, Home, at, lock::Held, qemu_img};

/// How the executor behaves.
#[derive(Clone, Debug)]
pub struct ExecOptions {
    /// How long a start may take until QEMU runs (not until the guest is ready).
    pub launch_timeout: Duration,
    /// How long a graceful stop may take before it fails.
    pub stop_timeout: Duration,
    /// How long to wait for another actor's mutation of the same instance.
    pub lock_timeout: Duration,
    /// Pass `--debug` to the host agent.
    pub debug: bool,
    /// `start --foreground`: become the host agent instead of launching it.
    pub foreground: bool,
}

impl Default for ExecOptions {
    fn default() -> Self {
        ExecOptions {
            launch_timeout: Duration::from_secs(600),
            stop_timeout: Duration::from_secs(190),
            lock_timeout: store::MUTATION_LOCK_TIMEOUT,
            debug: false,
            foreground: false,
        }
    }
}

/// Why a plan was not carried out; the watch daemon's error policy
/// (`super::outcome`) decides from the variant what to do next.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The plan refuses a change: retrying cannot help, a new desired state can.
    #[error("{}: {}", quote_name(instance), refused.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Refused {
        instance: String,
        refused: Vec<Refusal>,
    },
    /// Another actor holds the instance's mutation lock.
    #[error("{0}")]
    Busy(std::io::Error),
    /// A step failed.
    #[error("{}: {step} failed: {message}", quote_name(instance))]
    Step {
        instance: String,
        step: &'static str,
        message: String,
    },
    #[error(transparent)]
    Launch(launch::LaunchError),
    /// A file operation failed: which instance, in which step (the error
    /// names the file). Never a bare `os error`.
    #[error("{}: {step} failed: {error}", quote_name(instance))]
    Io {
        instance: String,
        step: &'static str,
        error: std::io::Error,
    },
}

impl ExecError {
    /// An I/O error of `step` of `instance`.
    pub fn io(instance: &str, step: &'static str, error: std::io::Error) -> ExecError {
        ExecError::Io {
            instance: instance.to_string(),
            step,
            error,
        }
    }

    /// A host agent error of `step`: its I/O errors say on which instance
    /// and in which step they happened (the others name the instance).
    pub fn launch(instance: &str, step: &'static str, error: launch::LaunchError) -> ExecError {
        match error {
            launch::LaunchError::Io(e) => ExecError::io(instance, step, e),
            other => ExecError::Launch(other),
        }
    }
}

/// Takes an instance's mutation lock, telling "busy" apart from I/O errors.
pub fn lock(dir: &std::path::Path, timeout: Duration) -> Result<Held, ExecError> {
    store::lock_instance(dir, timeout).map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock => ExecError::Busy(e),
        _ => ExecError::io(
            &dir.file_name().unwrap_or_default().to_string_lossy(),
            "lock",
            e,
        ),
    })
}

/// Runs `plan`; `held` is the mutation lock if the caller planned under it
/// (a new instance's lock is taken as soon as its directory exists). The
/// outcome is recorded in the instance's status.
pub fn execute(
    home: &Home,
    plan: &Plan,
    opts: &ExecOptions,
    held: Option<Held>,
) -> Result<(), ExecError> {
    let name = plan.instance.as_str();
    let _span = crate::logging::instance_span(name).entered();
    if !plan.refused.is_empty() {
        return Err(ExecError::Refused {
            instance: name.into(),
            refused: plan.refused.clone(),
        });
    }
    let mut ex = Executor {
        home,
        name,
        dir: home.instance_dir(name),
        opts,
        lock: held,
        created: false,
        started: false,
        revision: plan.revision.as_deref(),
    };
    let result = plan.steps.iter().try_for_each(|s| ex.run(s));
    ex.finish(result)
}

struct Executor<'a> {
    home: &'a Home,
    name: &'a str,
    dir: PathBuf,
    opts: &'a ExecOptions,
    lock: Option<Held>,
    /// This plan made the instance directory (undone if the plan fails before a start).
    created: bool,
    started: bool,
    /// The Git commit the plan comes from (in events and the status).
    revision: Option<&'a str>,
}

impl Executor<'_> {
    fn run(&mut self, step: &Step) -> Result<(), ExecError> {
        crate::debug!("{} ({})", step.action.verb(), step.reason);
        if self.lock.is_none() && self.dir.is_dir() {
            self.lock = Some(lock(&self.dir, self.opts.lock_timeout)?);
        }
        super::journal::record(&self.dir, self.name, step, "begin", self.revision);
        fault_point(step.action.verb(), "before");
        let name = self.name;
        let failed = |e: &dyn std::fmt::Display| ExecError::Step {
            instance: name.to_string(),
            step: step.action.verb(),
            message: e.to_string(),
        };
        match &step.action {
            Action::Create { config, owner } => self.create(config, owner.as_deref(), failed),
            Action::PrepareImages { config } => self.prepare_images(config, failed),
            Action::CreateDiffDisk { size } => self.create_diff_disk(*size, failed),
            Action::UpdateConfig { config } => self.update_config(config, step, failed),
            Action::Adopt { owner } => self.write_owner(owner),
            Action::GrowDisk { from, to } => self.grow_disk(*from, *to, failed),
            Action::Start => self.start(),
            Action::Resume => self.resume(),
            Action::Stop { force } => self.stop(*force),
            Action::Suspend => self.suspend(),
            Action::DiscardState => self.discard_state(&step.reason, failed),
            Action::Delete => self.delete(failed),
        }?;
        fault_point(step.action.verb(), "after");
        super::journal::record(&self.dir, self.name, step, "done", self.revision);
        Ok(())
    }

    fn create(
        &mut self,
        config: &Arc<DesiredConfig>,
        owner: Option<&str>,
        failed: impl Fn(&dyn std::fmt::Display) -> ExecError,
    ) -> Result<(), ExecError> {
        let version = crate::version_string();
        store::create_instance_dir(
            self.home,
            self.name,
            &[
                store::NewFile {
                    name: files::LIMA_YAML,
                    data: config.lima_yaml.as_bytes(),
                    mode: 0o600,
                },
                store::NewFile {
                    name: files::LIMA_VERSION,
                    data: version.as_bytes(),
                    mode: 0o400,
                },
            ],
        )
        .map_err(|e| failed(&e))?;
        // Deleted already by someone else, the lock says so (naming this step).
        self.lock = Some(
            lock(&self.dir, self.opts.lock_timeout).map_err(|e| match e {
                ExecError::Io { error, .. } => failed(&error),
                other => other,
            })?,
        );
        self.created = true;
        match owner {
            Some(owner) => self.write_owner(owner),
            None => Ok(()),
        }
    }

    fn prepare_images(
        &mut self,
        config: &DesiredConfig,
        failed: impl Fn(&dyn std::fmt::Display) -> ExecError,
    ) -> Result<(), ExecError> {
        let spec = &config.spec;
        let prepared = crate::image::prepare(
            &spec.images,
            spec.arch,
            &self.dir,
            &crate::image::FetchOptions::default(),
        )
        .map_err(|e| failed(&e))?;
        if let Some(i) = prepared.index {
            crate::info!("Using image {}", quote_name(&spec.images[i].location));
        }
        Ok(())
    }

    fn create_diff_disk(
        &mut self,
        size: u64,
        failed: impl Fn(&dyn std::fmt::Display) -> ExecError,
    ) -> Result<(), ExecError> {
        if self.dir.join(files::DIFF_DISK).exists() {
            return Ok(());
        }
        let fmt =
            qemu_img::base_image_format(&self.dir, files::BASE_DISK).map_err(|e| failed(&e))?;
        let tmp = format!(".{}.tmp", files::DIFF_DISK);
        let _ = std::fs::remove_file(self.dir.join(&tmp));
        // A relative backing file: the instance directory stays movable.
        qemu_img::create(
            &self.dir,
            &tmp,
            "qcow2",
            size,
            Some((files::BASE_DISK, &fmt)),
        )
        .map_err(|e| failed(&e))?;
        let diffdisk = self.dir.join(files::DIFF_DISK);
        std::fs::rename(self.dir.join(&tmp), &diffdisk)
            .map_err(at(&diffdisk, "move the new disk into place as"))
            .map_err(|e| failed(&e))?;
        Ok(())
    }

    fn update_config(
        &mut self,
        config: &DesiredConfig,
        step: &Step,
        failed: impl Fn(&dyn std::fmt::Display) -> ExecError,
    ) -> Result<(), ExecError> {
        store::atomic::write(
            &self.dir.join(files::LIMA_YAML),
            config.lima_yaml.as_bytes(),
            0o600,
        )
        .map_err(|e| failed(&e))?;
        let status = self.dir.join(files::STATUS);
        super::status::bump_generation(&self.dir)
            .map_err(at(&status, "record the new generation in"))
            .map_err(|e| failed(&e))?;
        crate::info!("configuration updated ({})", step.reason);
        Ok(())
    }

    fn write_owner(&mut self, owner: &str) -> Result<(), ExecError> {
        let path = self.dir.join(files::OWNER);
        store::atomic::write(&path, format!("{owner}\n").as_bytes(), 0o600)
            .map_err(at(&path, "write"))
            .map_err(|e| ExecError::io(self.name, "adopt", e))
    }

    fn grow_disk(
        &mut self,
        from: u64,
        to: u64,
        failed: impl Fn(&dyn std::fmt::Display) -> ExecError,
    ) -> Result<(), ExecError> {
        let have =
            store::instance::image_virtual_size(&self.dir.join(files::DIFF_DISK)).unwrap_or(0);
        if have >= to {
            return Ok(());
        }
        crate::info!(
            "Resize instance {}'s disk from {} to {}",
            quote_name(self.name),
            format_size(from),
            format_size(to)
        );
        qemu_img::resize(&self.dir, files::DIFF_DISK, "qcow2", to).map_err(|e| failed(&e))
    }

    /// Launches the host agent and returns once QEMU runs.
    fn start(&mut self) -> Result<(), ExecError> {
        // Before `started`: an instance this plan created is removed again when
        // its archive cannot be had, as when its image cannot.
        self.fetch_containerd_archive()?;
        self.started = true;
        // Fail here, naming the package to install, rather than in the host agent.
        crate::driver::qemu::find_binary().map_err(|e| ExecError::Step {
            instance: self.name.to_string(),
            step: "start",
            message: e.to_string(),
        })?;
        crate::info!(
            "Starting the instance {} with internal VM driver `qemu`",
            quote_name(self.name)
        );
        if self.opts.foreground {
            // Only returns if the exec failed.
            let e = launch::exec_foreground(&self.dir, self.name, self.opts.debug);
            return Err(ExecError::launch(self.name, "start", e));
        }
        let launched = |e| ExecError::launch(self.name, "start", e);
        let child = launch::spawn(&self.dir, self.name, self.opts.debug).map_err(launched)?;
        launch::wait_launched(&self.dir, self.name, child, self.opts.launch_timeout)
            .map_err(launched)
    }

    /// The containerd archive, fetched and verified here (with progress on this
    /// terminal) so that an offline start or a bad digest fails before the host
    /// agent and QEMU run; the host agent then finds it in the cache.
    fn fetch_containerd_archive(&self) -> Result<(), ExecError> {
        let env = crate::spec::LoadEnv::new(&self.home.root);
        // A configuration with errors is the host agent's to report, as before.
        let Some(config) = store::inspect(self.home, &env, self.name).config else {
            return Ok(());
        };
        let Ok(spec) = crate::spec::Spec::from_filled(&config) else {
            return Ok(());
        };
        crate::image::containerd_archive(&spec, &crate::image::FetchOptions::default())
            .map(drop)
            .map_err(|e| ExecError::Step {
                instance: self.name.to_string(),
                step: "start",
                message: e.to_string(),
            })
    }

    /// A start whose host agent finds the saved state and loads it.
    fn resume(&mut self) -> Result<(), ExecError> {
        crate::info!(
            "Resuming the instance {} from its saved state",
            quote_name(self.name)
        );
        self.start()
    }

    fn suspend(&mut self) -> Result<(), ExecError> {
        crate::info!("Suspending the instance {}", quote_name(self.name));
        launch::suspend(&self.dir, self.name, self.opts.stop_timeout)
            .map_err(|e| ExecError::launch(self.name, "suspend", e))?;
        let size = store::suspended::read(&self.dir).map_or(0, |s| s.size);
        crate::info!(
            "The instance {} is suspended (state: {}, {})",
            quote_name(self.name),
            quote_name(&self.dir.join(files::VM_STATE).display().to_string()),
            format_size(size)
        );
        Ok(())
    }

    fn discard_state(
        &mut self,
        why: &super::plan::Reason,
        failed: impl Fn(&dyn std::fmt::Display) -> ExecError,
    ) -> Result<(), ExecError> {
        crate::info!(
            "Discarding the saved state of the suspended instance {}: {why}",
            quote_name(self.name)
        );
        store::suspended::discard(&self.dir).map_err(|e| failed(&e))
    }

    fn stop(&mut self, force: bool) -> Result<(), ExecError> {
        if force {
            crate::info!("Stopping the instance {} forcibly", quote_name(self.name));
        } else {
            crate::info!("Stopping the instance {}", quote_name(self.name));
        }
        let step = if force { "force-stop" } else { "stop" };
        launch::stop(&self.dir, self.name, force, self.opts.stop_timeout)
            .map_err(|e| ExecError::launch(self.name, step, e))?;
        crate::info!("The instance {} has stopped", quote_name(self.name));
        Ok(())
    }

    fn delete(
        &mut self,
        failed: impl Fn(&dyn std::fmt::Display) -> ExecError,
    ) -> Result<(), ExecError> {
        launch::remove_runtime_files(&self.dir);
        drop(self.lock.take());
        store::remove_instance_dir(self.home, self.name).map_err(|e| failed(&e))?;
        crate::info!(
            "Deleted {} ({})",
            quote_name(self.name),
            quote_name(&self.dir.display().to_string())
        );
        Ok(())
    }

    /// Undoes an incomplete create, releases the lock, records the status.
    fn finish(mut self, result: Result<(), ExecError>) -> Result<(), ExecError> {
        // An instance this plan created but could not complete (image missing,
        // digest mismatch, …) is removed again: nothing half-made is left.
        if result.is_err() && self.created && !self.started {
            drop(self.lock.take());
            if store::remove_instance_dir(self.home, self.name).is_ok() {
                crate::info!("Removed the incomplete instance {}", quote_name(self.name));
            }
        }
        drop(self.lock.take());
        if self.dir.is_dir() {
            super::status::record(
                self.home,
                self.name,
                result.as_ref().err().map(ToString::to_string),
            );
            if let (Ok(()), Some(rev)) = (&result, self.revision) {
                super::status::record_revision(&self.dir, self.name, rev);
            }
        }
        result
    }
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
        // Only returns if the signal could not be sent, which cannot happen
        // for the calling process; the plan then simply goes on.
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::{Level, capture};
    use crate::reconcile::plan::{Action, Plan, Reason, Step};

    #[test]
    fn steps_log_inside_the_instance_span() {
        let d = tempfile::tempdir().unwrap();
        let home = Home::new(d.path());
        std::fs::create_dir_all(home.instance_dir("vm")).unwrap();
        let mut plan = Plan::new("vm");
        plan.steps.push(Step {
            action: Action::Adopt {
                owner: "/src".into(),
            },
            reason: Reason::Unmanaged,
        });
        let mut result = None;
        let text = capture(Level::Debug, false, || {
            result = Some(execute(&home, &plan, &ExecOptions::default(), None));
        });
        result.unwrap().unwrap();
        assert_eq!(
            text.lines().next().unwrap(),
            "time=\"2024-01-02T03:04:05Z\" level=debug msg=\"adopt (instance exists but no source manages it; this source takes it over)\" instance=vm"
        );
        assert_eq!(
            std::fs::read_to_string(home.instance_dir("vm").join(files::OWNER)).unwrap(),
            "/src\n"
        );
    }
}
