//! `limactl hostagent NAME` (hidden): the per-instance supervisor process.

use crate::store::Home;

#[derive(clap::Args, Debug)]
pub struct Args {
    pub name: String,
    /// Accepted for compatibility with Lima's command line; the pid file is always `<inst>/ha.pid`.
    #[arg(short = 'p', long)]
    pub pidfile: Option<String>,
    /// Accepted for compatibility; the socket is always `<inst>/ha.sock`.
    #[arg(long)]
    pub socket: Option<String>,
}

pub fn run(a: Args, g: &super::Globals) -> anyhow::Result<i32> {
    // The host agent logs JSON lines, as Lima's does (its stderr is ha.stderr.log).
    crate::logging::set_json(true);
    if g.debug {
        crate::logging::set_level(crate::logging::Level::Debug);
    }
    let home = Home::from_env();
    crate::hostagent::run(&home, &a.name, g.debug)
}
