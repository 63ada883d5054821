//! `limactl clone SRC DST`, `rename OLD NEW`, `factory-reset NAME`
//! (reference §8.7, §8.9): whole-directory operations on stopped instances,
//! each under the mutation lock of the instance it reads.
//!
//! Identity: the hostname (`lima-NAME`), the MAC address (derived from the
//! instance directory) and the SSH port (a free one at each start unless
//! `ssh.localPort` is set) all follow from the new name and directory, and
//! `cidata.iso` is rebuilt at each start; so a clone copies the disks and
//! `lima.yaml` and leaves out what belongs to the original's runs.
//!
//! Ownership: the `owner` file is never carried over. A clone is a new
//! instance nobody declared, and a renamed one is no longer the instance
//! its source declares: both become unowned (an `apply` of that source
//! neither adopts nor prunes them; it would create the old name anew).

use std::path::Path;

use super::edits::EditFlags;
use super::target::{check_name, edited_desired};
use super::{Ctx, OpsError, existing};
use crate::reconcile::ExecOptions;
use crate::reconcile::execute;
use crate::reconcile::plan::{Plan, RestartPolicy};
use crate::spec::yaml::quote_name;
use crate::store::paths::files;
use crate::store::{self, Instance, copy, instance::QEMU_LOCK};

#[derive(Clone, Debug, Default)]
pub struct CloneOptions {
    pub src: String,
    pub dst: String,
    /// Edit flags applied to the new instance's lima.yaml (`--set`, `--cpus`, …).
    pub edit: EditFlags,
    pub exec: ExecOptions,
}

/// Files of an instance directory that belong to its runs, its reconciler
/// history or its source, not to the machine: never cloned. Run-time files
/// (`*.pid`, `*.sock`, `*.tmp`) are left out by suffix.
const NOT_CLONED: &[&str] = &[
    files::PROTECTED,
    files::OWNER,
    files::MUTATION_LOCK,
    files::HA_LOCK,
    QEMU_LOCK,
    files::STATUS,
    files::STARTED_SPEC,
    files::RECONCILE_LOG,
    files::DELETE_FAILED,
    files::CIDATA_ISO,
    files::VNC_DISPLAY,
    files::VNC_PASSWORD,
    files::HA_STDOUT_LOG,
    files::HA_STDERR_LOG,
    files::SERIAL_LOG,
    files::SERIALP_LOG,
    files::SERIALV_LOG,
    // TPM state is the original's identity (Lima skips it too).
    "swtpm",
];

fn runtime(name: &str) -> bool {
    files::RUNTIME_SUFFIXES.iter().any(|s| name.ends_with(s))
}

fn skipped_on_clone(rel: &Path, _is_dir: bool) -> bool {
    let name = rel.to_string_lossy();
    let top = rel.components().count() == 1;
    runtime(&name) || (top && NOT_CLONED.contains(&name.as_ref()))
}

fn failed(name: &str, what: &str, e: impl std::fmt::Display) -> OpsError {
    OpsError::Failed {
        name: name.into(),
        what: what.into(),
        message: e.to_string(),
    }
}

/// The source instance, stopped, with its configuration loading.
fn stopped_source(ctx: &Ctx, name: &str, verb: &str) -> Result<Instance, OpsError> {
    let inst = existing(&ctx.home, &ctx.env, name)?;
    if inst.config.is_none() {
        return Err(OpsError::HasErrors {
            name: name.into(),
            errors: inst.errors.clone(),
        });
    }
    let live = store::instance::Liveness::probe(&inst.dir);
    if live.host_agent || live.qemu {
        return Err(OpsError::Usage(format!(
            "cannot {verb} a running instance {}: stop it first (`limactl stop {name}`)",
            quote_name(name)
        )));
    }
    Ok(inst)
}

fn check_new(ctx: &Ctx, src: &str, dst: &str) -> Result<(), OpsError> {
    if src == dst {
        return Err(OpsError::Usage(format!(
            "the new name must differ from {}",
            quote_name(src)
        )));
    }
    check_name(&ctx.home, dst)?;
    if ctx.home.instance_dir(dst).symlink_metadata().is_ok() {
        return Err(OpsError::Exists { name: dst.into() });
    }
    Ok(())
}

/// Applies the edit flags to the (stopped) instance `name` through the plan.
fn apply_edits(ctx: &Ctx, name: &str, opts: &CloneOptions) -> Result<Option<Plan>, OpsError> {
    let inst = existing(&ctx.home, &ctx.env, name)?;
    let Some(desired) = edited_desired(ctx, &inst, &opts.edit, None)? else {
        return Ok(None);
    };
    super::edit(ctx, &desired, RestartPolicy::Never, &opts.exec, &mut |_| {}).map(Some)
}

/// `limactl clone SRC DST`: a stopped instance copied (disks shared
/// copy-on-write where the filesystem can, else copied sparsely) into a new
/// directory, made under a temporary name and renamed into place; then the
/// edit flags. An edit that does not validate removes the clone again.
pub fn clone(ctx: &Ctx, opts: &CloneOptions) -> Result<(), OpsError> {
    let (src, dst) = (opts.src.as_str(), opts.dst.as_str());
    check_new(ctx, src, dst)?;
    let inst = stopped_source(ctx, src, "clone")?;
    let lock = execute::lock(&inst.dir, opts.exec.lock_timeout)?;
    // Checked again under the lock: a start may have won the race.
    stopped_source(ctx, src, "clone")?;
    let tmp = ctx
        .home
        .root
        .join(format!(".tmp-clone-{dst}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let copied = copy::copy_tree(&inst.dir, &tmp, &skipped_on_clone);
    drop(lock);
    if let Err(e) = copied {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(failed(dst, &format!("clone of {}", quote_name(src)), e));
    }
    let target = ctx.home.instance_dir(dst);
    if target.symlink_metadata().is_ok() {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(OpsError::Exists { name: dst.into() });
    }
    if let Err(e) = std::fs::rename(&tmp, &target) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(failed(dst, "move the clone into place", e));
    }
    if let Err(e) = apply_edits(ctx, dst, opts) {
        let _ = std::fs::remove_dir_all(&target);
        return Err(e);
    }
    Ok(())
}

/// What a rename changed about ownership.
#[derive(Debug, PartialEq, Eq)]
pub struct Renamed {
    /// The source that managed the old name, which no longer manages it.
    pub released_from: Option<String>,
}

/// `limactl rename OLD NEW`: the directory of a stopped instance moved
/// (one rename(2): nothing copied, nothing half-done), its run-time files
/// and owner dropped, then the edit flags applied.
pub fn rename(ctx: &Ctx, opts: &CloneOptions) -> Result<Renamed, OpsError> {
    let (old, new) = (opts.src.as_str(), opts.dst.as_str());
    check_new(ctx, old, new)?;
    let inst = stopped_source(ctx, old, "rename")?;
    let lock = execute::lock(&inst.dir, opts.exec.lock_timeout)?;
    stopped_source(ctx, old, "rename")?;
    let target = ctx.home.instance_dir(new);
    if target.symlink_metadata().is_ok() {
        return Err(OpsError::Exists { name: new.into() });
    }
    std::fs::rename(&inst.dir, &target)
        .map_err(|e| failed(old, &format!("rename to {}", quote_name(new)), e))?;
    // The lock file moved with the directory: still held, now in NEW.
    let released_from = inst.owner.clone();
    for entry in std::fs::read_dir(&target).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let drop_it = (runtime(&name) && name != files::MUTATION_LOCK)
            || [
                files::OWNER,
                files::STARTED_SPEC,
                files::VNC_DISPLAY,
                files::VNC_PASSWORD,
            ]
            .contains(&name.as_str());
        if drop_it {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    drop(lock);
    apply_edits(ctx, new, opts)?;
    Ok(Renamed { released_from })
}

/// What a factory reset found.
#[derive(Debug, PartialEq, Eq)]
pub enum Reset {
    Reset,
    /// There is no such instance.
    Absent,
}

/// Kept by a factory reset: the configuration (every `*.yaml`/`*.yml`),
/// the version it was created by, protection, ownership and the lock.
fn kept_on_reset(name: &str) -> bool {
    name.ends_with(".yaml")
        || name.ends_with(".yml")
        || [
            files::LIMA_VERSION,
            files::PROTECTED,
            files::OWNER,
            files::MUTATION_LOCK,
            "vz-identifier",
        ]
        .contains(&name)
}

/// `limactl factory-reset NAME`: stops the instance (forcibly, as Lima),
/// then removes everything but [`kept_on_reset`]; the next start prepares
/// the image from the cache and boots a fresh disk: a first boot.
pub fn factory_reset(ctx: &Ctx, name: &str, exec: &ExecOptions) -> Result<Reset, OpsError> {
    crate::spec::names::validate_instance_name(name).map_err(OpsError::Name)?;
    if !ctx.home.instance_dir(name).is_dir() {
        return Ok(Reset::Absent);
    }
    let inst = existing(&ctx.home, &ctx.env, name)?;
    if inst.present.protected {
        return Err(OpsError::Usage(format!(
            "instance {} is protected; run `limactl unprotect {name}` first",
            quote_name(name)
        )));
    }
    super::stop(ctx, name, true, exec)?;
    let _lock = execute::lock(&inst.dir, exec.lock_timeout)?;
    let mut errors = Vec::new();
    let entries = std::fs::read_dir(&inst.dir).map_err(|e| failed(name, "factory reset", e))?;
    for entry in entries.flatten() {
        let n = entry.file_name().to_string_lossy().into_owned();
        if kept_on_reset(&n) {
            continue;
        }
        let path = entry.path();
        let removed = match entry.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path),
            _ => std::fs::remove_file(&path),
        };
        if let Err(e) = removed {
            errors.push(format!("{}: {e}", path.display()));
        }
    }
    if !errors.is_empty() {
        return Err(failed(name, "factory reset", errors.join("; ")));
    }
    Ok(Reset::Reset)
}
