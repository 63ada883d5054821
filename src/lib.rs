//! limactl: Lima's VM manager rebuilt as a declarative reconciler.

pub mod cidata;
pub mod cli;
pub mod driver;
pub mod export;
pub mod guestagent;
pub mod hostagent;
pub mod image;
pub mod layout;
pub mod logging;
pub mod progress;
pub mod reconcile;
pub mod spec;
pub mod ssh;
pub mod store;
pub mod sync;
pub mod yq;

/// This implementation's own version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The Lima release whose file formats and behaviour this build implements.
/// `minimumLimaVersion` in templates is checked against it, and
/// `limactl --version` reports it (with this build's version as metadata) so
/// tools that parse Lima's version keep working.
pub const LIMA_COMPAT_VERSION: &str = "2.0.0";

/// What `limactl --version` prints after `limactl version `.
pub fn version_string() -> String {
    format!("{LIMA_COMPAT_VERSION}+rs.{VERSION}")
}
