//! `lima [COMMAND…]`: `limactl shell` for `$LIMA_INSTANCE` (default `default`),
//! honouring `$LIMA_SHELL` and `$LIMA_WORKDIR` (seed: environment variables).

use std::io::Write;
use std::os::unix::process::CommandExt;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let limactl = std::env::var("LIMACTL").unwrap_or_else(|_| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("limactl")))
            .filter(|p| p.exists())
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "limactl".into())
    });
    let mut cmd = std::process::Command::new(&limactl);
    match args.first().map(String::as_str) {
        Some("-h" | "--help") => {
            // A closed stdout (`lima --help | head -1`) is no error: writeln!
            // reports it instead of panicking as println! does, and we are done.
            let _ = writeln!(
                std::io::stdout(),
                "Usage: lima [COMMAND...]\n\nlima is an alias for \"limactl shell default\".\nThe instance name (\"default\") can be changed by specifying $LIMA_INSTANCE.\nThe shell and initial workdir inside the instance can be specified via $LIMA_SHELL\nand $LIMA_WORKDIR.\n\nSee `limactl shell --help` for further information."
            );
            return;
        }
        Some("-v" | "--version") => {
            let err = cmd.arg("--version").exec();
            eprintln!("lima: cannot run {limactl}: {err}");
            std::process::exit(1);
        }
        _ => {}
    }
    cmd.arg("shell");
    if let Ok(w) = std::env::var("LIMA_WORKDIR")
        && !w.is_empty()
    {
        cmd.args(["--workdir", &w]);
    }
    if let Ok(s) = std::env::var("LIMA_SHELL")
        && !s.is_empty()
    {
        cmd.args(["--shell", &s]);
    }
    let instance = std::env::var("LIMA_INSTANCE")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".into());
    cmd.args(["--instance", &instance]).args(&args);
    let err = cmd.exec();
    eprintln!("lima: cannot run {limactl}: {err}");
    std::process::exit(1);
}
