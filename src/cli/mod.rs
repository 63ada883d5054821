//! The `limactl` command line: argument parsing and output only; the work is
//! done by the library layers below. Output goes through [`out`]: nothing
//! here prints with `println!` (it panics when stdout's reader is gone).
#![deny(clippy::print_stdout)]

use clap::{Parser, Subcommand};

use crate::logging::{self, Level};

mod apply;
mod completion;
mod copy;
mod create;
mod delete;
mod disk;
mod edit;
mod generate_doc;
mod hostagent;
mod info;
mod jsonschema;
mod list;
pub mod out;
mod protect;
mod prune;
mod shell;
mod show_ssh;
mod start;
mod status;
mod stop;
mod template;
mod validate;
mod watch;
mod yq;

#[derive(Parser, Debug)]
#[command(
    name = "limactl",
    about = "Lima: Linux virtual machines, declared and reconciled",
    disable_version_flag = true,
    arg_required_else_help = true
)]
pub struct Cli {
    /// Print the version.
    #[arg(short = 'v', long = "version", global = false)]
    version: bool,
    /// Log level (trace, debug, info, warn, error).
    #[arg(long, global = true, value_name = "LEVEL")]
    log_level: Option<String>,
    /// Log format: text or json.
    #[arg(long, global = true, default_value = "text", value_name = "FORMAT")]
    log_format: String,
    /// Debug mode (same as --log-level=debug).
    #[arg(long, global = true)]
    debug: bool,
    /// Enable TUI interactions (default: when stdout is a terminal).
    #[arg(long, global = true)]
    tty: Option<bool>,
    /// Alias of --tty=false.
    #[arg(short = 'y', long, global = true)]
    yes: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate YAML files.
    Validate(validate::Args),
    /// Work with templates.
    #[command(alias = "tmpl")]
    Template(template::Args),
    /// Create an instance (from a template, a file, or `-`).
    Create(create::Args),
    /// Start an instance (creating it from a template if needed).
    Start(start::Args),
    /// Stop instances.
    Stop(stop::Args),
    /// Restart an instance.
    Restart(start::RestartArgs),
    /// Delete instances.
    #[command(aliases = ["remove", "rm"])]
    Delete(delete::Args),
    /// Declare instances from a lima.yaml file or a directory, and converge.
    Apply(apply::Args),
    /// Show what `apply` would change (exit 0: nothing, 1: changes, 2: errors).
    Diff(apply::Args),
    /// Show the reconciler's conditions of instances.
    Status(status::Args),
    /// Edit an instance's configuration.
    Edit(edit::Args),
    /// Stream instance events (host agents and the reconciler).
    Watch(watch::Args),
    /// Run a shell or a command in an instance.
    Shell(shell::Args),
    /// Copy files between the host and instances (INSTANCE:PATH).
    #[command(alias = "cp")]
    Copy(copy::Args),
    /// Show the SSH command line (deprecated: use `ssh -F <inst>/ssh.config lima-NAME`).
    #[command(name = "show-ssh")]
    ShowSsh(show_ssh::Args),
    /// Run the host agent of an instance (internal).
    #[command(hide = true)]
    Hostagent(hostagent::Args),
    /// List instances.
    #[command(alias = "ls")]
    List(list::Args),
    /// Show diagnostic information.
    Info(info::Args),
    /// Protect instances from deletion.
    Protect(protect::Args),
    /// Unprotect instances.
    Unprotect(protect::Args),
    /// Manage additional disks.
    Disk(disk::Args),
    /// Prune the download cache.
    Prune(prune::Args),
    /// Evaluate a jq expression over YAML documents.
    Yq(yq::Args),
    /// Print the JSON Schema of lima.yaml.
    #[command(name = "generate-jsonschema", hide = true)]
    GenerateJsonschema(jsonschema::Args),
    /// Generate a shell completion script (bash, zsh or fish).
    Completion(completion::Args),
    /// Generate man pages into a directory.
    #[command(name = "generate-doc", hide = true)]
    GenerateDoc(generate_doc::Args),
}

/// Global options every command may consult.
#[derive(Clone, Debug)]
pub struct Globals {
    pub debug: bool,
    pub tty: bool,
}

/// Runs limactl with `args`; returns the process exit code.
pub fn main_with_args(mut args: Vec<std::ffi::OsString>) -> i32 {
    // Multi-call: invoked as `yq` (a symlink), behave as `limactl yq`.
    let argv0 = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .map(|n| {
            n.to_string_lossy()
                .split('.')
                .next()
                .unwrap_or("")
                .to_string()
        });
    if argv0.as_deref() == Some("yq") {
        args.insert(1, "yq".into());
    }
    let cli = match Cli::try_parse_from(&args) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    if cli.version {
        return finish(
            crate::outln!("limactl version {}", crate::version_string())
                .map(|()| 0)
                .map_err(Into::into),
        );
    }
    let level = if cli.debug {
        Level::Debug
    } else {
        match cli.log_level.as_deref() {
            None => Level::Info,
            Some(l) => match Level::parse(l) {
                Some(l) => l,
                None => {
                    fatal(&format!(
                        "invalid log level {}",
                        crate::spec::yaml::quote_name(l)
                    ));
                    return 1;
                }
            },
        }
    };
    logging::set_level(level);
    match cli.log_format.as_str() {
        "text" => logging::set_json(false),
        "json" => logging::set_json(true),
        other => {
            fatal(&format!(
                "unsupported log format {} (use text or json)",
                crate::spec::yaml::quote_name(other)
            ));
            return 1;
        }
    }
    if cli.yes && cli.tty == Some(true) {
        fatal("--tty and --yes are mutually exclusive");
        return 1;
    }
    let globals = Globals {
        debug: cli.debug,
        tty: if cli.yes {
            false
        } else {
            cli.tty
                .unwrap_or_else(|| std::io::IsTerminal::is_terminal(&std::io::stdout()))
        },
    };
    let Some(command) = cli.command else {
        return 0;
    };
    let result = match command {
        Command::Validate(a) => validate::run(a, &globals),
        Command::Template(a) => template::run(a, &globals),
        Command::GenerateJsonschema(a) => jsonschema::run(a),
        Command::Completion(a) => completion::run(a),
        Command::GenerateDoc(a) => generate_doc::run(a),
        Command::Create(a) => create::run(a, &globals),
        Command::Start(a) => start::run(a, &globals),
        Command::Stop(a) => stop::run(a, &globals),
        Command::Restart(a) => start::restart(a, &globals),
        Command::Delete(a) => delete::run(a, &globals),
        Command::Apply(a) => apply::run(a, &globals),
        Command::Diff(a) => match apply::diff(a, &globals) {
            Ok(code) => Ok(code),
            Err(e) if out::reader_gone(&e) => Err(e),
            Err(e) => {
                fatal(&format!("{e:#}"));
                Ok(2)
            }
        },
        Command::Status(a) => status::run(a),
        Command::Edit(a) => edit::run(a, &globals),
        Command::Watch(a) => watch::run(a),
        Command::Shell(a) => shell::run(a, &globals),
        Command::Copy(a) => copy::run(a, &globals),
        Command::ShowSsh(a) => show_ssh::run(a),
        Command::Hostagent(a) => hostagent::run(a, &globals),
        Command::List(a) => list::run(a, &globals),
        Command::Info(a) => info::run(a, &globals),
        Command::Protect(a) => protect::run(a, true),
        Command::Unprotect(a) => protect::run(a, false),
        Command::Disk(a) => disk::run(a),
        Command::Yq(a) => yq::run(a),
        Command::Prune(a) => prune::run(a, &globals),
    };
    finish(result)
}

/// The exit code of a command's result: its output flushed first (so that a
/// write error is seen), a closed stdout ending it quietly ([`out`]).
fn finish(result: anyhow::Result<i32>) -> i32 {
    let result = result.and_then(|code| out::flush().map(|()| code).map_err(Into::into));
    match result {
        Ok(code) => code,
        Err(e) if out::reader_gone(&e) => out::end_quietly(),
        Err(e) => {
            fatal(&format!("{e:#}"));
            1
        }
    }
}

/// Logs at fatal level (the caller exits 1, as logrus.Fatal does).
pub fn fatal(msg: &str) {
    logging::log(Level::Fatal, msg, &[]);
}

pub fn main() -> i32 {
    // Nothing limactl creates is for other users: instance files, sockets,
    // logs and keys are private (files that must be shared set their mode).
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let code = main_with_args(std::env::args_os().collect());
    if out::ended_quietly() {
        return out::die_of_sigpipe();
    }
    code
}

/// Reads all of stdin (for `-` locators).
pub fn read_stdin() -> std::io::Result<String> {
    use std::io::Read;
    let mut s = String::new();
    std::io::stdin()
        .take(crate::spec::load::MAX_TEMPLATE_BYTES + 1)
        .read_to_string(&mut s)?;
    Ok(s)
}

/// The load environment for this process's `LIMA_HOME`.
pub fn load_env() -> crate::spec::LoadEnv {
    crate::spec::LoadEnv::new(&crate::store::paths::lima_home())
}

pub use crate::reconcile::ops::target::log_warnings;

/// Host environment variables `limactl shell --preserve-env` never forwards.
pub fn shell_env_block() -> Vec<&'static str> {
    vec![
        "BASH*",
        "DISPLAY",
        "DYLD_*",
        "EUID",
        "FPATH",
        "GID",
        "GROUP",
        "HOME",
        "HOSTNAME",
        "LD_*",
        "LOGNAME",
        "OLDPWD",
        "PATH",
        "PWD",
        "SHELL",
        "SHLVL",
        "SSH_*",
        "TERM",
        "TERMINFO",
        "TMPDIR",
        "UID",
        "USER",
        "XAUTHORITY",
        "XDG_*",
        "ZDOTDIR",
        "ZSH*",
        "_*",
    ]
}
