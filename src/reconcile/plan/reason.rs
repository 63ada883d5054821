//! Why a step is planned, and why a change is refused: typed (Cargo's
//! `DirtyReason`), with `Display` for the plan text and a stable serde form
//! for `-o json` (`why` beside today's `reason` text; see `Step`).
//!
//! The JSON form is tagged by `kind` (kebab-case) and only ever grows: new
//! kinds and new fields may appear, existing ones keep their names.

use serde::Serialize;

use crate::spec::mutability::FieldChange;
use crate::spec::units::format_size;
use crate::spec::yaml::quote_name;

/// The root disk growing from one size to another (bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Grow {
    pub from: u64,
    pub to: u64,
}

impl std::fmt::Display for Grow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "disk {} → {}",
            format_size(self.from),
            format_size(self.to)
        )
    }
}

/// Why a step is in a plan.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Reason {
    /// The instance does not exist yet.
    Missing,
    /// A new instance needs its base disk.
    NewBaseDisk,
    /// A new instance needs its root disk of this size.
    NewDiffDisk { size: u64 },
    /// An existing instance lost its root disk.
    DiffDiskMissing { size: u64 },
    /// An existing instance lost its base disk.
    BaseDiskMissing,
    /// The stored lima.yaml does not load; the desired one replaces it.
    AppliedInvalid { errors: Vec<String> },
    /// Fields changed (every class but immutable).
    ConfigChanged { changes: Vec<FieldChange> },
    /// The root disk grows to the desired size.
    GrowDisk(Grow),
    /// Immutable fields changed and `--recreate` was given: what the old
    /// instance's stop and delete are for.
    ImmutableChanged { changes: Vec<FieldChange> },
    /// The same, for the new instance's steps.
    Recreate { changes: Vec<FieldChange> },
    /// Nobody managed the instance; this source takes it over.
    Unmanaged,
    /// Another source managed the instance until now.
    ManagedBy { owner: String },
    /// The desired power state is stopped.
    DesiredStopped,
    /// The desired power state is running.
    DesiredRunning,
    /// Stopped, and the desired power state is running.
    StoppedButDesiredRunning,
    /// The running VM lacks restart-required changes (and a disk growth).
    RestartRequired {
        changes: Vec<FieldChange>,
        #[serde(skip_serializing_if = "Option::is_none")]
        grow: Option<Grow>,
    },
    /// Processes of a Broken instance are left: clean up before going on.
    Broken { errors: Vec<String> },
    /// Processes of a Broken instance are left: kill them before deleting.
    BrokenBeforeDelete { errors: Vec<String> },
    /// A running instance is stopped before it is deleted.
    RunningBeforeDelete,
    /// The instance is not wanted any more (`delete`, or a recreate).
    NotWanted,
    /// Its file is gone from a source that prunes.
    Pruned,
    /// `limactl stop`.
    StopRequested,
    /// `limactl restart`.
    RestartRequested,
    /// `limactl suspend`.
    SuspendRequested,
    /// Suspended, and the desired power state is running: resume.
    SuspendedButDesiredRunning,
    /// `limactl stop` of a suspended instance: its saved state is discarded.
    SuspendedStopRequested,
    /// Suspended, and the desired power state is stopped.
    SuspendedButDesiredStopped,
    /// The saved state was made with a configuration that changed since
    /// (restart-required changes, a disk growth): the instance boots afresh.
    SavedStateStale {
        changes: Vec<FieldChange>,
        #[serde(skip_serializing_if = "Option::is_none")]
        grow: Option<Grow>,
    },
}

fn describe_all(changes: &[FieldChange]) -> String {
    changes
        .iter()
        .map(FieldChange::describe)
        .collect::<Vec<_>>()
        .join(", ")
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Missing => f.write_str("instance does not exist"),
            Reason::NewBaseDisk => f.write_str("new instance needs its base disk"),
            Reason::NewDiffDisk { size } => {
                write!(f, "new instance needs its {} disk", format_size(*size))
            }
            Reason::DiffDiskMissing { size } => {
                write!(
                    f,
                    "diffdisk is missing; create it with {}",
                    format_size(*size)
                )
            }
            Reason::BaseDiskMissing => f.write_str("basedisk is missing"),
            Reason::AppliedInvalid { errors } => write!(
                f,
                "the applied lima.yaml does not load ({})",
                errors.join("; ")
            ),
            Reason::ConfigChanged { changes } => f.write_str(&describe_all(changes)),
            Reason::GrowDisk(g) => write!(f, "{g}"),
            Reason::ImmutableChanged { changes } => {
                write!(f, "immutable fields changed: {}", describe_all(changes))
            }
            Reason::Recreate { changes } => write!(
                f,
                "recreate (immutable fields changed: {})",
                describe_all(changes)
            ),
            Reason::Unmanaged => {
                f.write_str("instance exists but no source manages it; this source takes it over")
            }
            Reason::ManagedBy { owner } => write!(f, "managed by {owner} until now"),
            Reason::DesiredStopped => f.write_str("desired power state is stopped"),
            Reason::DesiredRunning => f.write_str("desired power state is running"),
            Reason::StoppedButDesiredRunning => {
                f.write_str("instance is stopped; desired power state is running")
            }
            Reason::RestartRequired { changes, grow } => {
                let mut parts: Vec<String> = changes.iter().map(FieldChange::describe).collect();
                if let Some(g) = grow {
                    parts.push(g.to_string());
                }
                write!(f, "restart required: {}", parts.join(", "))
            }
            Reason::Broken { errors } => {
                write!(
                    f,
                    "instance is Broken ({}); clean up first",
                    errors.join("; ")
                )
            }
            Reason::BrokenBeforeDelete { errors } => write!(
                f,
                "instance is Broken ({}); kill what is left",
                errors.join("; ")
            ),
            Reason::RunningBeforeDelete => {
                f.write_str("instance is running; stop it before deleting")
            }
            Reason::NotWanted => f.write_str("instance is not wanted any more"),
            Reason::Pruned => f.write_str("its file is gone from the source (--prune)"),
            Reason::StopRequested => f.write_str("stop requested"),
            Reason::RestartRequested => f.write_str("restart requested"),
            Reason::SuspendRequested => f.write_str("suspend requested"),
            Reason::SuspendedButDesiredRunning => f.write_str(
                "instance is suspended; desired power state is running: resume from the saved state",
            ),
            Reason::SuspendedStopRequested => f.write_str(
                "stop requested: the suspended instance's saved state is discarded (what ran in it is lost)",
            ),
            Reason::SuspendedButDesiredStopped => f.write_str(
                "desired power state is stopped: the suspended instance's saved state is discarded",
            ),
            Reason::SavedStateStale { changes, grow } => {
                let mut parts: Vec<String> = changes.iter().map(FieldChange::describe).collect();
                if let Some(g) = grow {
                    parts.push(g.to_string());
                }
                write!(
                    f,
                    "the saved state does not match the configuration ({}): it is discarded and the instance boots afresh",
                    parts.join(", ")
                )
            }
        }
    }
}

/// A change that cannot be made, with what to do instead.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Refusal {
    /// A protected instance is never deleted.
    Protected { instance: String },
    /// An immutable field changed (and `--recreate` was not given, or the
    /// instance is protected).
    Immutable {
        instance: String,
        change: FieldChange,
        protected: bool,
    },
    /// Disks only grow.
    Shrink { from: u64, to: u64 },
    /// A power-only patch (stop, start) of an instance that does not exist.
    NotFound { instance: String },
    /// A directory without `lima.yaml` is never deleted: it may be an
    /// instance being created or cloned into (Lima refuses too).
    NoLimaYaml { instance: String, dir: String },
    /// Only a running instance can be suspended.
    NotRunning { instance: String, status: String },
    /// The VM cannot be saved as configured.
    Unsuspendable { instance: String, why: String },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Protected { instance } => write!(
                f,
                "failed to delete instance {}: instance is protected to prohibit accidental removal (Hint: use `limactl unprotect`)",
                quote_name(instance)
            ),
            Refusal::Immutable {
                instance,
                change,
                protected,
            } => {
                let hint = if *protected {
                    "the instance is protected, so it cannot be recreated; `limactl unprotect` it first or restore the old value".to_string()
                } else {
                    format!(
                        "restore the old value, or apply with `--recreate` to delete and recreate {} (its disk is lost)",
                        quote_name(instance)
                    )
                };
                write!(
                    f,
                    "field `{}` is immutable ({}): {hint}",
                    change.path,
                    change.describe()
                )
            }
            Refusal::Shrink { from, to } => write!(
                f,
                "field `disk` cannot shrink ({} → {}): disks only grow; keep `disk: {}` or recreate the instance",
                format_size(*from),
                format_size(*to),
                format_size(*from)
            ),
            Refusal::NotFound { instance } => write!(
                f,
                "instance {} does not exist, run `limactl create {instance}` to create a new instance",
                quote_name(instance)
            ),
            Refusal::NoLimaYaml { instance, dir } => write!(
                f,
                "instance {} directory {} exists but has no lima.yaml; it was NOT deleted, because it may be an instance that is being created or cloned into; if nothing uses it, remove it by hand: rm -rf {}",
                quote_name(instance),
                quote_name(dir),
                crate::ssh::shell_quote(dir)
            ),
            Refusal::NotRunning { instance, status } => write!(
                f,
                "instance {} is not running (status {}): there is nothing to suspend; start it with `limactl start {instance}`",
                quote_name(instance),
                quote_name(if status.is_empty() { "unknown" } else { status })
            ),
            Refusal::Unsuspendable { instance, why } => write!(
                f,
                "instance {} cannot be suspended: {why}; use `mountType: reverse-sshfs`, or `limactl stop {instance}` instead",
                quote_name(instance)
            ),
        }
    }
}
