//! One function per operation, as Cargo's `ops`: what the `limactl` verbs
//! call. Each takes an options struct, plans under the instance's mutation
//! lock ([`converge`]), and reports through typed results; `cli/` only
//! parses arguments, calls one of these and renders.
//!
//! Verbs differ by the desired state they ask for and by [`PlanOptions`]
//! (force stop, restart policy, why a delete happens), never by editing a
//! plan.

pub mod apply;
pub mod autostart;
pub mod clone;
pub mod edits;
pub mod export;
pub mod lifecycle;
pub mod snapshot;
pub mod target;
pub mod wait;

use std::path::PathBuf;

use super::execute::{self, ExecError, ExecOptions};
use super::plan::{self, Desired, Plan, PlanOptions, Refusal};
use crate::spec::yaml::quote_name;
use crate::spec::{LoadEnv, SpecError};
use crate::store::{self, Home, Instance};

pub use apply::{ApplyOptions, Planned, apply, diff, plan_sources};
pub use lifecycle::{
    Deleted, StartOptions, Started, Stopped, SuspendOptions, Suspended, create, delete, edit,
    restart, start, stop, suspend,
};

/// What every operation works on: `LIMA_HOME` and how to load files there.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub home: Home,
    pub env: LoadEnv,
}

impl Ctx {
    pub fn new(home: Home) -> Ctx {
        let env = LoadEnv::new(&home.root);
        Ctx { home, env }
    }

    /// `LIMA_HOME` of this process's environment.
    pub fn from_env() -> Ctx {
        Ctx::new(Home::from_env())
    }
}

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// An instance name that cannot be used.
    #[error("{0}")]
    Name(String),
    #[error(
        "instance {} does not exist, run `limactl create {name}` to create a new instance",
        quote_name(name)
    )]
    NotFound { name: String },
    #[error("instance {} already exists", quote_name(name))]
    Exists { name: String },
    #[error("instance {} is Broken: {} exists but has no lima.yaml; remove that directory to create the instance anew", quote_name(name), dir.display())]
    Broken { name: String, dir: PathBuf },
    /// The stored configuration does not load.
    #[error("instance {} has errors: {}", quote_name(name), errors.join("; "))]
    HasErrors { name: String, errors: Vec<String> },
    /// Arguments that do not fit together or do not parse.
    #[error("{0}")]
    Usage(String),
    /// A configuration that does not load or validate.
    #[error("{context}: {source}")]
    Invalid {
        context: String,
        #[source]
        source: Box<SpecError>,
    },
    #[error(transparent)]
    Spec(Box<SpecError>),
    /// A yq expression (`--set`, an edit flag) that does not evaluate.
    #[error(transparent)]
    Edit(#[from] crate::yq::YqError),
    #[error("failed to delete instance {}: {}", quote_name(name), refused.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    DeleteRefused { name: String, refused: Vec<Refusal> },
    /// `export`: files that do not load, or instances that cannot be exported.
    #[error("nothing exported: {}", errors.join("; "))]
    NotExported { errors: Vec<String> },
    /// A step failed (its error names the instance and the step).
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// An operation outside the plan (snapshot, clone, …) failed.
    #[error("instance {}: {what} failed: {message}", quote_name(name))]
    Failed {
        name: String,
        what: String,
        message: String,
    },
}

impl From<SpecError> for OpsError {
    fn from(e: SpecError) -> Self {
        OpsError::Spec(Box::new(e))
    }
}

/// An existing instance, or [`OpsError::NotFound`].
pub fn existing(home: &Home, env: &LoadEnv, name: &str) -> Result<Instance, OpsError> {
    crate::spec::names::validate_instance_name(name).map_err(OpsError::Name)?;
    let inst = store::inspect(home, env, name);
    if !inst.dir_exists {
        return Err(OpsError::NotFound { name: name.into() });
    }
    Ok(inst)
}

/// Takes the instance's mutation lock (when its directory exists), observes
/// and plans under it, shows the plan, then executes it: nobody changes the
/// instance between the observation and the last step. Returns the plan
/// that was carried out.
pub fn converge(
    ctx: &Ctx,
    name: &str,
    desired: Option<&Desired>,
    popts: &PlanOptions,
    eopts: &ExecOptions,
    show: &mut dyn FnMut(&Plan),
) -> Result<Plan, ExecError> {
    let dir = ctx.home.instance_dir(name);
    let lock = if dir.is_dir() {
        Some(execute::lock(&dir, eopts.lock_timeout)?)
    } else {
        None
    };
    let observed = store::inspect(&ctx.home, &ctx.env, name);
    let plan = plan::plan(desired, &observed, popts);
    show(&plan);
    if plan.is_empty() {
        // Already converged: with this commit too.
        if let Some(rev) = &plan.revision {
            super::status::record_revision(&dir, name, rev);
        }
        return Ok(plan);
    }
    execute::execute(&ctx.home, &plan, eopts, lock).map(|_| plan)
}
