//! `lima-guestagent`: runs in the guest as root (a systemd service written by
//! the boot script `25-guestagent-base.sh`) and talks to the host agent over
//! the virtio-serial port. Built statically by hack/build-guestagent.sh.
//!
//! Usage: `lima-guestagent daemon [--virtio-port NAME] [--tick MILLISECONDS]`,
//! `lima-guestagent yq …` (limactl's yq, for provision `mode: yq`),
//! `lima-guestagent --version`.

use std::time::Duration;

const USAGE: &str = "usage: lima-guestagent daemon [--virtio-port NAME] [--tick MILLISECONDS] | yq ARGS… | --version";

fn main() {
    // The boot script's provision-yq.sh runs `lima-guestagent yq …`, as
    // Lima's guest agent embeds yq: the same front end as `limactl yq`.
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "yq") {
        args[0] = "limactl".into();
        std::process::exit(lima::cli::main_with_args(args));
    }
    std::process::exit(match run(std::env::args().skip(1).collect()) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("lima-guestagent: {e}");
            2
        }
    });
}

fn run(args: Vec<String>) -> Result<(), String> {
    let mut it = args.into_iter();
    match it.next().as_deref() {
        Some("--version" | "-v" | "version") => {
            // writeln! reports a closed stdout where println! would panic.
            use std::io::Write;
            writeln!(
                std::io::stdout(),
                "lima-guestagent version {} (protocol {})",
                lima::VERSION,
                lima::guestagent::protocol::VERSION
            )
            .or_else(|e| match e.kind() {
                std::io::ErrorKind::BrokenPipe => Ok(()),
                _ => Err(format!("cannot print the version: {e}")),
            })
        }
        Some("daemon") => {
            let mut port = lima::store::paths::cidata_files::VIRTIO_PORT.to_string();
            let mut tick = Duration::from_millis(250);
            while let Some(a) = it.next() {
                let (key, inline) = match a.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (a.clone(), None),
                };
                let mut value = || {
                    inline
                        .clone()
                        .or_else(|| it.next())
                        .ok_or_else(|| format!("{key} needs a value\n{USAGE}"))
                };
                match key.as_str() {
                    "--virtio-port" => port = value()?,
                    "--tick" => {
                        let v = value()?;
                        let ms: u64 = v
                            .trim_end_matches("ms")
                            .parse()
                            .map_err(|_| format!("--tick {v:?}: not a number of milliseconds"))?;
                        tick = Duration::from_millis(ms.max(10));
                    }
                    // Accepted for Lima compatibility; this agent has no unix socket.
                    "--runtime-dir" | "--socket-owner" => {
                        value()?;
                    }
                    "--vsock-port" => {
                        return Err(
                            "--vsock-port: only the virtio port transport is supported".into()
                        );
                    }
                    other => return Err(format!("unknown option {other:?}\n{USAGE}")),
                }
            }
            if !nix::unistd::geteuid().is_root() {
                return Err("must run as root".into());
            }
            lima::guestagent::daemon::run(&lima::guestagent::daemon::Options {
                port: lima::guestagent::daemon::virtio_port_path(&port),
                tick,
            })
        }
        _ => Err(USAGE.to_string()),
    }
}
