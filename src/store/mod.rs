//! `LIMA_HOME`: paths, observation, locks and atomic writes.

pub mod paths;

pub use paths::Home;
