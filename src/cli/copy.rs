//! `limactl copy|cp [-r] [-v] [--backend=scp|rsync|auto] SOURCE… TARGET`
//! (reference §5.6): guest paths are `INSTANCE:PATH`; files travel with
//! `scp -3` or `rsync -e ssh` over the instance's SSH options.

use crate::spec::yaml::quote_name;
use crate::ssh::{SshTarget, shell_quote};
use crate::store::{Home, Status};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Copy directories recursively.
    #[arg(short = 'r', long)]
    pub recursive: bool,
    /// Verbose output (also implied by --debug).
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// How to copy: scp, rsync or auto (rsync when the host and every
    /// involved guest have it and at most one side is a guest).
    #[arg(long, default_value = "auto", value_name = "BACKEND")]
    pub backend: String,
    /// SOURCE… TARGET; guest paths as INSTANCE:PATH.
    #[arg(num_args = 2.., required = true, value_name = "PATH")]
    pub paths: Vec<String>,
}

/// One argument: a host path, or a path in an instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyPath {
    pub instance: Option<String>,
    pub path: String,
}

pub fn parse_path(arg: &str) -> anyhow::Result<CopyPath> {
    let parts: Vec<&str> = arg.split(':').collect();
    match parts.as_slice() {
        [p] => Ok(CopyPath {
            instance: None,
            path: (*p).to_string(),
        }),
        [i, p] => Ok(CopyPath {
            instance: Some((*i).to_string()),
            path: (*p).to_string(),
        }),
        _ => anyhow::bail!("path {} contains multiple colons", quote_name(arg)),
    }
}

/// How to reach one instance.
#[derive(Clone, Debug)]
pub struct Remote {
    pub user: String,
    pub port: u16,
    /// `-F /dev/null -o K=V …` for this instance (ControlMaster included).
    pub ssh_args: Vec<String>,
}

fn remote_of<'a>(remotes: &'a [(String, Remote)], name: &str) -> &'a Remote {
    &remotes.iter().find(|(n, _)| n == name).expect("resolved").1
}

/// `-o` options shared by all instances (no user, no ControlMaster), for a
/// copy between two instances.
pub fn common_args(instance_args: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < instance_args.len() {
        let a = &instance_args[i];
        if a == "-o"
            && let Some(v) = instance_args.get(i + 1)
        {
            if !v.starts_with("User=") && !v.starts_with("Control") {
                out.extend([a.clone(), v.clone()]);
            }
            i += 2;
            continue;
        }
        out.push(a.clone());
        i += 1;
    }
    out
}

/// `scp [ssh options] -q|-v [-r] -3 -- <paths>`, remote paths as
/// `scp://user@127.0.0.1:PORT/PATH` (an absolute PATH gives `//`).
pub fn scp_argv(
    paths: &[CopyPath],
    remotes: &[(String, Remote)],
    recursive: bool,
    verbose: bool,
) -> Vec<String> {
    let mut argv = if remotes.len() == 1 {
        remotes[0].1.ssh_args.clone()
    } else {
        common_args(
            remotes
                .first()
                .map(|(_, r)| r.ssh_args.as_slice())
                .unwrap_or_default(),
        )
    };
    argv.push(if verbose { "-v" } else { "-q" }.into());
    if recursive {
        argv.push("-r".into());
    }
    argv.extend(["-3".to_string(), "--".into()]);
    for p in paths {
        argv.push(match &p.instance {
            None => p.path.clone(),
            Some(i) => {
                let r = remote_of(remotes, i);
                format!("scp://{}@127.0.0.1:{}/{}", r.user, r.port, p.path)
            }
        });
    }
    argv
}

/// `rsync -a -q|-v --progress [-r] -e '<ssh …>' -- <paths>`. With `-r`,
/// trailing slashes are adjusted so that rsync copies as `scp -r` does
/// (Lima issue #4468).
pub fn rsync_argv(
    paths: &[CopyPath],
    remotes: &[(String, Remote)],
    recursive: bool,
    verbose: bool,
) -> Vec<String> {
    let mut argv = vec!["-a".to_string()];
    if verbose {
        argv.extend(["-v".to_string(), "--progress".into()]);
    } else {
        argv.push("-q".into());
    }
    if recursive {
        argv.push("-r".into());
    }
    if let Some((_, r)) = remotes.first() {
        let mut ssh = vec![crate::ssh::ssh_binary()];
        ssh.extend(r.ssh_args.iter().cloned());
        ssh.extend(["-p".to_string(), r.port.to_string()]);
        argv.push("-e".into());
        argv.push(
            ssh.iter()
                .map(|w| shell_quote(w))
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
    let mut paths = paths.to_vec();
    if recursive {
        for i in 0..paths.len() {
            if paths[i].path.ends_with('/') {
                if paths[i].instance.is_some() {
                    for (j, p) in paths.iter_mut().enumerate() {
                        if i != j && p.path.ends_with('/') {
                            p.path.pop();
                        }
                    }
                } else {
                    paths[i].path.pop();
                }
            } else {
                paths[i].path.push('/');
            }
        }
    }
    argv.push("--".into());
    for p in &paths {
        argv.push(match &p.instance {
            None => p.path.clone(),
            Some(i) => format!("{}@127.0.0.1:{}", remote_of(remotes, i).user, p.path),
        });
    }
    argv
}

/// Whether a source and the target are both in instances (rsync cannot).
pub fn both_remote(paths: &[CopyPath]) -> bool {
    let (target, sources) = match paths.split_last() {
        Some(x) => x,
        None => return false,
    };
    target.instance.is_some() && sources.iter().any(|p| p.instance.is_some())
}

fn which(name: &str) -> bool {
    crate::hostagent::ansible::which(name, std::env::var_os("PATH").as_deref()).is_some()
}

fn guest_has_rsync(r: &Remote) -> bool {
    std::process::Command::new(crate::ssh::ssh_binary())
        .args(&r.ssh_args)
        .args(["-p", &r.port.to_string(), "127.0.0.1", "--"])
        .arg("command -v rsync >/dev/null 2>&1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub fn run(a: Args, g: &super::Globals) -> anyhow::Result<i32> {
    let home = Home::from_env();
    let env = crate::spec::LoadEnv::new(&home.root);
    let verbose = a.verbose || g.debug;
    let paths: Vec<CopyPath> = a
        .paths
        .iter()
        .map(|p| parse_path(p))
        .collect::<anyhow::Result<_>>()?;
    let mut remotes: Vec<(String, Remote)> = Vec::new();
    for name in paths.iter().filter_map(|p| p.instance.as_deref()) {
        if remotes.iter().any(|(n, _)| n == name) {
            continue;
        }
        let inst = crate::reconcile::ops::existing(&home, &env, name)?;
        if inst.status == Status::Stopped {
            anyhow::bail!(
                "instance {} is stopped, run `limactl start {name}` to start the instance",
                quote_name(name)
            );
        }
        let target = SshTarget::for_instance(&home, &inst)?;
        remotes.push((
            name.to_string(),
            Remote {
                user: target.user.clone(),
                port: inst.ssh_local_port,
                ssh_args: target.args(true),
            },
        ));
    }
    // rsync takes at most one remote side, even when both name one instance.
    let both_remote = both_remote(&paths);
    let use_rsync = match a.backend.as_str() {
        "scp" => false,
        "rsync" => {
            if !which("rsync") {
                anyhow::bail!("rsync not found on host: install rsync, or use --backend=scp");
            }
            if !remotes.iter().all(|(_, r)| guest_has_rsync(r)) {
                anyhow::bail!("rsync not available on guest(s)");
            }
            true
        }
        "auto" => {
            let ok =
                !both_remote && which("rsync") && remotes.iter().all(|(_, r)| guest_has_rsync(r));
            if !ok {
                crate::debug!("rsync is not usable here; falling back to scp");
            }
            ok
        }
        other => anyhow::bail!(
            "invalid backend {}, must be one of: scp, rsync, auto",
            quote_name(other)
        ),
    };
    if use_rsync && both_remote {
        anyhow::bail!("rsync cannot copy from one guest path to another; use --backend=scp");
    }
    let (tool, argv) = if use_rsync {
        ("rsync", rsync_argv(&paths, &remotes, a.recursive, verbose))
    } else {
        ("scp", scp_argv(&paths, &remotes, a.recursive, verbose))
    };
    crate::debug!("executing {tool} {}", argv.join(" "));
    let status = std::process::Command::new(tool)
        .args(&argv)
        .status()
        .map_err(|e| anyhow::anyhow!("cannot run {tool}: {e} (run hack/install-deps.sh)"))?;
    Ok(status.code().unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(port: u16) -> Remote {
        Remote {
            user: "lima".into(),
            port,
            ssh_args: vec![
                "-F".into(),
                "/dev/null".into(),
                "-o".into(),
                "IdentityFile=/lh/_config/user".into(),
                "-o".into(),
                "User=lima".into(),
                "-o".into(),
                "ControlMaster=auto".into(),
                "-o".into(),
                "ControlPath=/lh/vm/ssh.sock".into(),
            ],
        }
    }

    fn p(s: &str) -> CopyPath {
        parse_path(s).unwrap()
    }

    #[test]
    fn paths_are_host_or_instance() {
        assert_eq!(
            p("a/b"),
            CopyPath {
                instance: None,
                path: "a/b".into()
            }
        );
        assert_eq!(
            p("vm:/etc/hosts"),
            CopyPath {
                instance: Some("vm".into()),
                path: "/etc/hosts".into()
            }
        );
        assert_eq!(
            p("vm:"),
            CopyPath {
                instance: Some("vm".into()),
                path: "".into()
            }
        );
        assert!(
            parse_path("a:b:c")
                .unwrap_err()
                .to_string()
                .contains("multiple colons")
        );
    }

    #[test]
    fn scp_uses_uris_and_the_instance_options() {
        let r = vec![("vm".to_string(), remote(2222))];
        let argv = scp_argv(&[p("f"), p("vm:/tmp/x"), p("vm:rel")], &r, true, false);
        assert_eq!(
            argv[argv.len() - 6..],
            [
                "-r",
                "-3",
                "--",
                "f",
                "scp://lima@127.0.0.1:2222//tmp/x",
                "scp://lima@127.0.0.1:2222/rel"
            ]
        );
        assert!(argv.contains(&"ControlPath=/lh/vm/ssh.sock".to_string()));
        assert!(argv.contains(&"-q".to_string()));
        // Two instances: no user or ControlMaster options.
        let r2 = vec![("a".to_string(), remote(1)), ("b".to_string(), remote(2))];
        let argv = scp_argv(&[p("a:/x"), p("b:/y")], &r2, false, true);
        assert!(
            !argv
                .iter()
                .any(|w| w.starts_with("Control") || w.starts_with("User="))
        );
        assert!(argv.contains(&"IdentityFile=/lh/_config/user".to_string()));
        assert!(argv.contains(&"-v".to_string()));
        assert_eq!(
            argv[argv.len() - 2..],
            ["scp://lima@127.0.0.1:1//x", "scp://lima@127.0.0.1:2//y"]
        );
    }

    #[test]
    fn rsync_uses_an_ssh_command_and_scp_like_slashes() {
        let r = vec![("vm".to_string(), remote(2222))];
        let argv = rsync_argv(&[p("f"), p("vm:/tmp/x")], &r, false, false);
        assert_eq!(argv[..2], ["-a", "-q"]);
        assert_eq!(argv[2], "-e");
        assert!(argv[3].ends_with(" -p 2222"), "{}", argv[3]);
        assert!(
            argv[3].contains("ControlPath=/lh/vm/ssh.sock"),
            "{}",
            argv[3]
        );
        assert_eq!(argv[4..], ["--", "f", "lima@127.0.0.1:/tmp/x"]);
        // -r: a directory without a slash is copied as its contents into the target.
        let argv = rsync_argv(&[p("dir"), p("vm:/tmp/x")], &r, true, false);
        assert_eq!(argv[argv.len() - 2..], ["dir/", "lima@127.0.0.1:/tmp/x/"]);
        // A local path with a slash loses it; a remote one strips the others'.
        let argv = rsync_argv(&[p("dir/"), p("vm:/tmp/x")], &r, true, false);
        assert_eq!(argv[argv.len() - 2..], ["dir", "lima@127.0.0.1:/tmp/x/"]);
        let argv = rsync_argv(&[p("vm:/tmp/x/"), p("out/")], &r, true, true);
        assert_eq!(argv[..4], ["-a", "-v", "--progress", "-r"]);
        assert_eq!(argv[argv.len() - 2..], ["lima@127.0.0.1:/tmp/x/", "out/"]);
    }

    #[test]
    fn two_remote_sides_are_seen_in_one_instance_too() {
        assert!(both_remote(&[p("vm:/a"), p("vm:/b")]));
        assert!(both_remote(&[p("a:/x"), p("b:/y")]));
        assert!(both_remote(&[p("f"), p("a:/x"), p("b:/y")]));
        assert!(!both_remote(&[p("vm:/a"), p("b")]));
        assert!(!both_remote(&[p("a"), p("vm:/b")]));
    }

    #[test]
    fn common_args_keep_only_shared_options() {
        assert_eq!(
            common_args(&remote(1).ssh_args),
            ["-F", "/dev/null", "-o", "IdentityFile=/lh/_config/user"]
        );
    }
}
