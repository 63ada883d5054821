//! `limactl completion bash|zsh|fish`: a shell completion script. Flags and
//! subcommands come from the same clap definition that parses the arguments
//! (so they never lag behind); names of instances, templates and disks are
//! asked of `limactl __complete WORDS…` when the shell completes, so they are
//! those of the moment (and of the `LIMA_HOME` then set).

use clap::CommandFactory;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The shell to complete in.
    #[arg(value_enum)]
    shell: Shell,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// `limactl __complete [--] WORDS…`: the words typed after `limactl` before
/// the one being completed; prints the names that fit there, one a line.
#[derive(clap::Args, Debug)]
pub struct CompleteArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    words: Vec<String>,
}

/// What a position on the command line names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Instances,
    /// Instances, then `template:NAME` locators (`start`).
    InstancesOrTemplates,
    Templates,
    Disks,
}

/// Subcommand path and the number of positional words after it.
fn parse_words(words: &[String]) -> (Vec<String>, usize) {
    let mut root = super::Cli::command();
    root.build();
    let mut chain: Vec<&clap::Command> = vec![&root];
    let mut path = Vec::new();
    let mut positionals = 0;
    let mut it = words.iter();
    while let Some(w) = it.next() {
        if w == "--" {
            positionals += it.by_ref().count();
            break;
        }
        if let Some(flag) = w.strip_prefix('-') {
            // A flag that takes a value, given without `=`, eats the next word.
            let takes = chain.iter().flat_map(|c| c.get_arguments()).any(|a| {
                let named = match flag.strip_prefix('-') {
                    Some(long) => a.get_long() == Some(long),
                    None => flag.len() == 1 && a.get_short() == flag.chars().next(),
                };
                named && a.get_action().takes_values()
            });
            if takes && !w.contains('=') {
                it.next();
            }
            continue;
        }
        let cmd = *chain.last().expect("root");
        match (positionals, cmd.find_subcommand(w)) {
            (0, Some(sub)) => {
                path.push(sub.get_name().to_string());
                chain.push(sub);
            }
            _ => positionals += 1,
        }
    }
    (path, positionals)
}

/// The kind of name expected after `words` (Lima's `ValidArgsFunction`s).
pub fn kind_at(words: &[String]) -> Option<Kind> {
    let (path, pos) = parse_words(words);
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    let shell_instance_given = words.iter().any(|w| w == "--instance");
    match path.as_slice() {
        ["shell"] if pos == 0 && !shell_instance_given => Some(Kind::Instances),
        ["start"] if pos == 0 => Some(Kind::InstancesOrTemplates),
        ["create"] if pos == 0 => Some(Kind::Templates),
        ["restart" | "edit" | "show-ssh" | "tunnel" | "suspend" | "factory-reset"] if pos == 0 => {
            Some(Kind::Instances)
        }
        ["clone" | "rename"] if pos == 0 => Some(Kind::Instances),
        ["snapshot", "create" | "apply" | "delete" | "list"] if pos == 0 => Some(Kind::Instances),
        ["autostart", "enable" | "disable"] if pos == 0 => Some(Kind::Instances),
        ["stop" | "delete" | "protect" | "unprotect" | "list" | "status"] => Some(Kind::Instances),
        ["disk", "delete" | "resize" | "unlock" | "list"] => Some(Kind::Disks),
        ["template", "copy" | "yq"] if pos == 0 => Some(Kind::Templates),
        ["template", "validate"] => Some(Kind::Templates),
        _ => None,
    }
}

/// The names of `kind` in `home` right now.
pub fn names(kind: Kind, home: &crate::store::Home) -> Vec<String> {
    let instances = || crate::store::instance::instance_names(home).unwrap_or_default();
    let templates = || {
        crate::spec::LoadEnv::new(&home.root)
            .store
            .list()
            .into_iter()
            .map(|(n, _)| format!("template:{n}"))
            .collect::<Vec<_>>()
    };
    match kind {
        Kind::Instances => instances(),
        Kind::Templates => templates(),
        Kind::InstancesOrTemplates => {
            let mut v = instances();
            v.extend(templates());
            v
        }
        Kind::Disks => crate::store::disk::list(home)
            .into_iter()
            .map(|d| d.name)
            .collect(),
    }
}

pub fn complete(a: CompleteArgs) -> anyhow::Result<i32> {
    use std::io::Write;
    let mut words = a.words;
    if words.first().map(String::as_str) == Some("--") {
        words.remove(0);
    }
    let mut out = super::out::stdout();
    if let Some(kind) = kind_at(&words) {
        for n in names(kind, &crate::store::Home::from_env()) {
            writeln!(out, "{n}")?;
        }
    }
    Ok(0)
}

/// Runs before clap's completion: names where they fit, else flags and
/// subcommands from clap (`_limactl_clap`). `${COMP_WORDS[0]}` is the
/// limactl being completed, so the names are that build's.
const BASH: &str = r#"
_limactl() {
    local cur="${COMP_WORDS[COMP_CWORD]}"
    if [[ "$cur" != -* ]]; then
        local names
        names=$("${COMP_WORDS[0]}" __complete -- "${COMP_WORDS[@]:1:COMP_CWORD-1}" 2>/dev/null)
        if [[ -n "$names" ]]; then
            local IFS=$'\n'
            COMPREPLY=($(compgen -W "$names" -- "$cur"))
            if declare -F __ltrim_colon_completions >/dev/null; then
                __ltrim_colon_completions "$cur"
            fi
            return 0
        fi
    fi
    _limactl_clap "$@"
}
"#;

const ZSH: &str = r#"
_limactl() {
    if [[ "${words[CURRENT]}" != -* ]]; then
        local -a names
        names=("${(@f)$("${words[1]}" __complete -- "${(@)words[2,CURRENT-1]}" 2>/dev/null)}")
        if (( ${#names} )) && [[ -n "${names[1]}" ]]; then
            compadd -a names
            return
        fi
    fi
    _limactl_clap "$@"
}
if [ "$funcstack[1]" = "_limactl" ]; then
    _limactl "$@"
else
    compdef _limactl limactl
fi
"#;

const FISH: &str = r#"
function __limactl_names
    set -l words (commandline -opc)
    $words[1] __complete -- $words[2..-1] 2>/dev/null
end
complete -c limactl -f -n 'test -n "$(__limactl_names)"' -a '(__limactl_names)'
"#;

/// The script for `shell`: clap's, with its entry function renamed so the
/// name-completing one above runs first.
pub fn script(shell: clap_complete::Shell) -> String {
    let mut raw = Vec::new();
    clap_complete::generate(shell, &mut super::Cli::command(), "limactl", &mut raw);
    let raw = String::from_utf8_lossy(&raw).into_owned();
    match shell {
        clap_complete::Shell::Bash => {
            let s = raw.replacen("_limactl() {", "_limactl_clap() {", 1);
            format!("{s}{BASH}")
        }
        clap_complete::Shell::Zsh => {
            // clap's tail registers `_limactl` itself; ours does instead.
            let s = raw.replacen("_limactl() {", "_limactl_clap() {", 1);
            let s = match s.rfind("if [ \"$funcstack[1]\" = \"_limactl\" ]") {
                Some(i) => s[..i].to_string(),
                None => s,
            };
            format!("{s}{ZSH}")
        }
        _ => format!("{raw}{FISH}"),
    }
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    let shell = match a.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    std::io::Write::write_all(&mut super::out::stdout(), script(shell).as_bytes())?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: &str) -> Option<Kind> {
        let words: Vec<String> = line.split_whitespace().map(String::from).collect();
        kind_at(&words)
    }

    #[test]
    fn positions_name_what_lima_completes() {
        assert_eq!(at("shell"), Some(Kind::Instances));
        assert_eq!(at("shell --workdir /tmp"), Some(Kind::Instances));
        assert_eq!(at("shell vm"), None, "the command is the user's");
        assert_eq!(at("shell --instance vm"), None);
        assert_eq!(at("start"), Some(Kind::InstancesOrTemplates));
        assert_eq!(at("create --name x"), Some(Kind::Templates));
        assert_eq!(at("stop a"), Some(Kind::Instances));
        assert_eq!(at("disk delete"), Some(Kind::Disks));
        assert_eq!(at("disk create"), None);
        assert_eq!(at("template copy"), Some(Kind::Templates));
        assert_eq!(at("template copy t"), None);
        assert_eq!(at("prune"), None);
        assert_eq!(at("clone"), Some(Kind::Instances));
        assert_eq!(at("clone a"), None, "the new name is the user's");
        assert_eq!(at("snapshot apply --tag t"), Some(Kind::Instances));
        assert_eq!(at("suspend"), Some(Kind::Instances));
        assert_eq!(at("autostart enable"), Some(Kind::Instances));
        assert_eq!(at(""), None);
    }

    #[test]
    fn scripts_call_the_name_completer_first() {
        for sh in [clap_complete::Shell::Bash, clap_complete::Shell::Zsh] {
            let s = script(sh);
            assert!(s.contains("_limactl_clap() {"), "{sh}");
            assert!(s.contains("__complete --"), "{sh}");
            assert_eq!(s.matches("_limactl() {").count(), 1, "{sh}");
        }
        assert!(script(clap_complete::Shell::Fish).contains("__limactl_names"));
    }
}
