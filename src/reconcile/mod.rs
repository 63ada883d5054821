//! The reconciler: desired state + observed state → a plan of steps, each
//! with the reason it is needed; then an executor that carries the steps out.
//!
//! Every verb (`create`, `start`, `stop`, `restart`, `delete`, `edit`) and
//! `apply` is "patch the desired state, plan, execute" ([`ops`]). Planning is
//! a pure function (DESIGN §2); running a verb twice plans nothing the second
//! time. The watch daemon ([`daemon`]) drives the same operations from a work
//! queue ([`controller`]) with typed outcomes ([`outcome`]).

pub mod backoff;
pub mod controller;
pub mod daemon;
pub mod execute;
pub mod journal;
pub mod metrics;
pub mod ops;
pub mod outcome;
pub mod plan;
pub mod power;
pub mod source;
pub mod status;

pub use execute::{ExecError, ExecOptions, execute};
pub use plan::{
    Action, Cause, Desired, DesiredConfig, Kind, Plan, PlanOptions, PowerState, Reason,
    RestartPolicy, Step, plan,
};
