//! The `lima.yaml` specification layer: parse, merge templates, fill
//! defaults, validate, and resolve into the typed [`Spec`]. Pure except for
//! reading template files.

pub mod defaults;
pub mod error;
pub mod gotmpl;
pub mod host;
pub mod load;
pub mod mutability;
pub mod names;
pub mod resolve;
pub mod schema;
pub mod typed;
pub mod types;
pub mod units;
pub mod validate;
pub mod yaml;

pub use error::SpecError;
pub use resolve::{LoadEnv, Loaded, Resolved};
pub use typed::Spec;
pub use types::LimaYaml;
