//! The reconciler: desired state + observed state → a plan of steps, each
//! with the reason it is needed; then an executor that carries the steps out.
//!
//! Every verb (`create`, `start`, `stop`, `restart`, `delete`, `edit`) and
//! `apply` is "patch the desired state, plan, execute". Planning is a pure
//! function (DESIGN §2); running a verb twice plans nothing the second time.

pub mod controller;
pub mod daemon;
pub mod execute;
pub mod journal;
pub mod plan;
pub mod power;
pub mod source;
pub mod status;

pub use execute::{ExecOptions, converge, execute};
pub use plan::{Action, Desired, Kind, Plan, PlanOptions, PowerState, RestartPolicy, Step, plan};
