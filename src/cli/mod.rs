//! The `limactl` command line: argument parsing and output only; the work is
//! done by the library layers below. Output goes through [`out`]: nothing
//! here prints with `println!` (it panics when stdout's reader is gone).
#![deny(clippy::print_stdout)]

use clap::{Parser, Subcommand};

use crate::logging::{self, Level};

mod apply;
mod colour;
mod completion;
mod copy;
mod create;
mod delete;
mod disk;
mod edit;
mod export;
mod generate_doc;
mod hostagent;
mod info;
mod jsonschema;
mod list;
pub mod out;
mod plugin;
mod protect;
mod prune;
mod shell;
mod shell_sync;
mod shellenv;
mod show_ssh;
mod start;
mod start_progress;
mod status;
mod stop;
mod suspend;
mod template;
mod tunnel;
mod validate;
mod watch;
mod yq;
// Issue 15 part B: snapshots, clone/rename/factory-reset, autostart.
mod autostart;
mod clone;
mod factory_reset;
mod snapshot;

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
    #[arg(long, global = true, num_args = 0..=1, default_missing_value = "true", require_equals = true, value_parser = parse_go_bool)]
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
    /// Save running instances' state to disk and stop them (`start` resumes).
    Suspend(suspend::Args),
    /// Delete instances.
    #[command(aliases = ["remove", "rm"])]
    Delete(delete::Args),
    /// Declare instances from a lima.yaml file or a directory, and converge.
    Apply(apply::Args),
    /// Show what `apply` would change (exit 0: nothing, 1: changes, 2: errors).
    Diff(apply::Args),
    /// Render the instances of lima.yaml files for another engine (`export kubevirt`).
    Export(export::Args),
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
    /// Evaluate a yq expression over YAML documents.
    Yq(yq::Args),
    /// Print the JSON Schema of lima.yaml.
    #[command(name = "generate-jsonschema", hide = true)]
    GenerateJsonschema(jsonschema::Args),
    /// Generate a shell completion script (bash, zsh or fish).
    Completion(completion::Args),
    // Issue 15 part B: snapshots, clone/rename/factory-reset, autostart.
    /// Manage instance snapshots.
    Snapshot(snapshot::Args),
    /// Clone an instance.
    Clone(clone::Args),
    /// Rename an instance.
    Rename(clone::Args),
    /// Factory reset an instance.
    #[command(name = "factory-reset")]
    FactoryReset(factory_reset::Args),
    /// Manage automatic startup of Lima instances.
    Autostart(autostart::Args),
    /// Generate man pages into a directory.
    #[command(name = "generate-doc", hide = true)]
    GenerateDoc(generate_doc::Args),
    // (ev1) completion names, tunnel.
    /// Names for shell completion (internal: used by `completion` scripts).
    #[command(name = "__complete", hide = true)]
    Complete(completion::CompleteArgs),
    /// Open a SOCKS proxy into an instance's network over SSH (experimental).
    Tunnel(tunnel::Args),
}

/// Global options every command may consult.
#[derive(Clone, Debug)]
pub struct Globals {
    pub debug: bool,
    pub tty: bool,
    /// `-y`/`--yes`: confirmations are answered yes.
    pub yes: bool,
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
    // A word that is no command of ours may be a plugin, `limactl-WORD`.
    if let Some(word) = args.get(1).and_then(|a| a.to_str())
        && !word.starts_with('-')
        && <Cli as clap::CommandFactory>::command()
            .find_subcommand(word)
            .is_none()
        && let Some(path) = plugin::find(word)
    {
        let e = plugin::exec(&path, &args[2..]);
        fatal(&format!("cannot run the plugin {}: {e}", path.display()));
        return 1;
    }
    let args = go_bool_flags(args);
    let parsed = grouped_help(<Cli as clap::CommandFactory>::command())
        .try_get_matches_from(&args)
        .and_then(|m| <Cli as clap::FromArgMatches>::from_arg_matches(&m));
    let cli = match parsed {
        Ok(c) => c,
        Err(e) if e.use_stderr() => {
            let root = grouped_help(<Cli as clap::CommandFactory>::command());
            let message = positional_error(root, &args, &e).unwrap_or_else(|| cobra_message(&e));
            fatal(&message);
            return 1;
        }
        Err(e) => {
            let _ = e.print();
            return 0;
        }
    };
    if cli.version {
        return finish(
            crate::outln!("limactl version {}", crate::version_string())
                .map(|()| 0)
                .map_err(Into::into),
        );
    }
    // As in Lima, an explicit --log-level wins over --debug.
    let level = match cli.log_level.as_deref() {
        None if cli.debug => Level::Debug,
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
    if cli.yes && cli.tty.is_some() {
        fatal("cannot use both --tty and --yes flags at the same time");
        return 1;
    }
    let globals = Globals {
        debug: cli.debug,
        yes: cli.yes,
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
        Command::Complete(a) => completion::complete(a),
        Command::Tunnel(a) => tunnel::run(a),
        Command::GenerateDoc(a) => generate_doc::run(a),
        Command::Create(a) => create::run(a, &globals),
        Command::Start(a) => start::run(a, &globals),
        Command::Stop(a) => stop::run(a, &globals),
        Command::Restart(a) => start::restart(a, &globals),
        Command::Suspend(a) => suspend::run(a, &globals),
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
        Command::Export(a) => export::run(a, &globals),
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
        // Issue 15 part B.
        Command::Snapshot(a) => snapshot::run(a),
        Command::Clone(a) => clone::run_clone(a, &globals),
        Command::Rename(a) => clone::run_rename(a, &globals),
        Command::FactoryReset(a) => factory_reset::run(a, &globals),
        Command::Autostart(a) => autostart::run(a),
    };
    finish(result)
}

/// Lima's command groups, in its order; the rest are this project's own.
const BASIC: &[&str] = &[
    "create", "start", "stop", "shell", "list", "delete", "edit", "restart",
];
const ADVANCED: &[&str] = &[
    "copy",
    "validate",
    "prune",
    "info",
    "show-ssh",
    "disk",
    "protect",
    "unprotect",
    "template",
    "watch",
    "snapshot",
    "clone",
    "rename",
    "factory-reset",
    "autostart",
];

/// The top-level help with commands grouped as Lima's (Basic, Advanced).
fn grouped_help(cmd: clap::Command) -> clap::Command {
    let subs: Vec<(String, String)> = cmd
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .map(|c| {
            let about = c.get_about().map(|a| a.to_string()).unwrap_or_default();
            (c.get_name().to_string(), about)
        })
        .collect();
    let width = subs.iter().map(|(n, _)| n.len()).max().unwrap_or(0) + 2;
    let section = |title: &str, names: &mut dyn Iterator<Item = &(String, String)>| {
        let mut s = format!("{title}:\n");
        for (n, a) in names {
            s.push_str(&format!("  {n:width$}{a}\n"));
        }
        s
    };
    let in_group = |n: &str| BASIC.contains(&n) || ADVANCED.contains(&n);
    let mut text = String::new();
    for (title, group) in [("Basic Commands", BASIC), ("Advanced Commands", ADVANCED)] {
        let mut it = group
            .iter()
            .filter_map(|g| subs.iter().find(|(n, _)| n == g));
        text.push_str(&section(title, &mut it));
        text.push('\n');
    }
    let mut rest = subs.iter().filter(|(n, _)| !in_group(n));
    text.push_str(&section("Additional Commands", &mut rest));
    cmd.help_template(format!(
        "{{about-with-newline}}\n{{usage-heading}} {{usage}}\n\n{text}\nFlags:\n{{options}}\n"
    ))
}

/// Go's `strconv.ParseBool`, which cobra's boolean flags use.
fn parse_go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("strconv.ParseBool: parsing {s:?}: invalid syntax")),
    }
}

/// Cobra accepts `--force=true` / `--quiet=false` for every boolean flag:
/// `--name=VALUE` of a switch of the command line's (sub)command becomes
/// the bare switch, or nothing when VALUE is false.
fn go_bool_flags(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    use clap::CommandFactory;
    let root = Cli::command();
    // (long name, short letter) of every switch.
    let mut switches: Vec<(String, Option<char>)> = Vec::new();
    let mut collect = |c: &clap::Command| {
        for a in c.get_arguments() {
            if let (clap::ArgAction::SetTrue, Some(l)) = (a.get_action(), a.get_long()) {
                switches.push((l.to_string(), a.get_short()));
            }
        }
    };
    collect(&root);
    // The subcommand path: leading words that name subcommands.
    let mut cmd = &root;
    for a in args.iter().skip(1) {
        let Some(word) = a.to_str() else { break };
        if word.starts_with('-') {
            continue;
        }
        match cmd.find_subcommand(word) {
            Some(sub) => {
                cmd = sub;
                collect(cmd);
            }
            None => break,
        }
    }
    let mut out = Vec::with_capacity(args.len());
    let mut rest = false;
    for a in args {
        let s = a.to_string_lossy();
        if rest || s == "--" {
            rest = true;
            out.push(a);
            continue;
        }
        if let Some((name, value)) = s.strip_prefix("--").and_then(|f| f.split_once('='))
            && let Some((_, short)) = switches.iter().find(|(w, _)| w == name)
        {
            match parse_go_bool(value) {
                Ok(true) => out.push(format!("--{name}").into()),
                // The last occurrence wins, as in cobra: `-q --quiet=false` is not quiet.
                Ok(false) => {
                    let long = format!("--{name}");
                    let short = short.map(|c| format!("-{c}"));
                    out.retain(|o| o.to_str() != Some(&long) && o.to_str() != short.as_deref());
                }
                Err(_) => out.push(a),
            }
            continue;
        }
        out.push(a);
    }
    out
}

/// A wrong number of positional arguments in the words of Lima's
/// `WrapArgsError` over cobra's validators:
/// `"limactl start" accepts at most 1 arg(s), received 2.`, then where to
/// look, the usage line and the command's summary. `None` for other errors.
fn positional_error(
    mut root: clap::Command,
    args: &[std::ffi::OsString],
    e: &clap::Error,
) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let flag_like = |s: &str| s.starts_with('-');
    match e.kind() {
        ErrorKind::UnknownArgument => match e.get(ContextKind::InvalidArg) {
            Some(ContextValue::String(a)) if !flag_like(a) => {}
            _ => return None,
        },
        ErrorKind::MissingRequiredArgument => match e.get(ContextKind::InvalidArg) {
            Some(ContextValue::Strings(v)) if v.iter().all(|a| !flag_like(a)) => {}
            _ => return None,
        },
        _ => return None,
    }
    root.build();
    // The subcommand path, then the positionals after it (flag values skipped).
    let mut path = vec![root.get_name().to_string()];
    let mut chain: Vec<&clap::Command> = vec![&root];
    let mut words = args.iter().skip(1).filter_map(|a| a.to_str());
    let mut received = 0usize;
    let takes_value = |chain: &[&clap::Command], flag: &str| -> bool {
        let found = chain.iter().flat_map(|c| c.get_arguments()).find(|a| {
            if let Some(long) = flag.strip_prefix("--") {
                a.get_long() == Some(long)
            } else {
                flag.chars()
                    .nth(1)
                    .is_some_and(|c| a.get_short() == Some(c))
                    && flag.len() == 2
            }
        });
        found.is_some_and(|a| a.get_action().takes_values())
    };
    while let Some(w) = words.next() {
        if w == "--" {
            received += words.by_ref().count();
            break;
        }
        if flag_like(w) {
            if !w.contains('=') && takes_value(&chain, w) {
                words.next();
            }
            continue;
        }
        let cmd = *chain.last()?;
        match (received, cmd.find_subcommand(w)) {
            (0, Some(sub)) => {
                path.push(sub.get_name().to_string());
                chain.push(sub);
            }
            _ => received += 1,
        }
    }
    if chain.len() < 2 {
        return None; // the root: an unknown command, said by cobra_message
    }
    let cmd = *chain.last()?;
    let (mut min, mut max) = (0usize, Some(0usize));
    let mut use_line = path.join(" ");
    for p in cmd.get_positionals() {
        let range = p.get_num_args().unwrap_or_default();
        if p.is_required_set() {
            min += range.min_values();
        }
        max = max.and_then(|m| (range.max_values() != usize::MAX).then(|| m + range.max_values()));
        let name = p
            .get_value_names()
            .and_then(|v| v.first())
            .map(|n| n.to_string())
            .unwrap_or_else(|| p.get_id().to_string().to_uppercase());
        let many = if range.max_values() > 1 { "..." } else { "" };
        if p.is_required_set() {
            use_line.push_str(&format!(" {name}{many}"));
        } else {
            use_line.push_str(&format!(" [{name}{many}]"));
        }
    }
    use_line.push_str(" [flags]");
    let said = if received < min {
        format!("requires at least {min} arg(s), only received {received}")
    } else {
        match max {
            Some(max) if received > max && min == max => {
                format!("accepts {max} arg(s), received {received}")
            }
            Some(max) if received > max && min == 0 => {
                format!("accepts at most {max} arg(s), received {received}")
            }
            Some(max) if received > max => {
                format!("accepts between {min} and {max} arg(s), received {received}")
            }
            _ => return None,
        }
    };
    let path = path.join(" ");
    let short = cmd.get_about().map(|a| a.to_string()).unwrap_or_default();
    Some(format!(
        "{} {said}.\nSee '{path} --help'.\n\nUsage:  {use_line}\n\n{short}",
        crate::spec::yaml::go_quote(&path)
    ))
}

/// A command-line error in cobra's words (`unknown flag: --x`), for the
/// `level=fatal` line Lima prints.
fn cobra_message(e: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let invalid = || match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        _ => None,
    };
    if e.kind() == ErrorKind::UnknownArgument
        && let Some(arg) = invalid()
    {
        {
            let flag = arg.split('=').next().unwrap_or(&arg).to_string();
            if let Some(short) = flag.strip_prefix('-').filter(|f| !f.starts_with('-')) {
                let c = short.chars().next().unwrap_or('?');
                return format!("unknown shorthand flag: '{c}' in {flag}");
            }
            if flag.starts_with("--") {
                return format!("unknown flag: {flag}");
            }
            return format!(
                "unknown command {} for \"limactl\"",
                crate::spec::yaml::go_quote(&flag)
            );
        }
    }
    if e.kind() == ErrorKind::InvalidSubcommand
        && let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidSubcommand)
    {
        return format!(
            "unknown command {} for \"limactl\"",
            crate::spec::yaml::go_quote(arg)
        );
    }
    // clap's own first line, without its "error: " and its tips.
    let text = e.render().to_string();
    let first = text.lines().next().unwrap_or("").trim();
    first.strip_prefix("error: ").unwrap_or(first).to_string()
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
/// The instances a verb acts on: those named, else Lima's `default`.
pub fn names_or_default(names: &[String]) -> Vec<String> {
    if names.is_empty() {
        vec!["default".to_string()]
    } else {
        names.to_vec()
    }
}

/// Exit status 0 when every instance succeeded; otherwise one error with
/// each instance's failure on its own line (the others were still done).
pub fn all_succeeded(errors: Vec<String>) -> anyhow::Result<i32> {
    if errors.is_empty() {
        Ok(0)
    } else {
        anyhow::bail!("{}", errors.join("\n"))
    }
}

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
