//! `limactl show-ssh [--format cmd|args|options|config] INSTANCE` (deprecated in Lima).

use crate::reconcile::ops::existing;
use crate::ssh::SshTarget;
use crate::store::Home;
use crate::store::paths::files;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// cmd, args, options or config.
    #[arg(short = 'f', long, default_value = "cmd")]
    pub format: String,
    pub name: String,
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    let home = Home::from_env();
    let env = crate::spec::LoadEnv::new(&home.root);
    let inst = existing(&home, &env, &a.name)?;
    crate::warn!(
        "`limactl show-ssh` is deprecated. Instead, use `ssh -F {} {}`.",
        inst.dir.join(files::SSH_CONFIG).display(),
        inst.hostname()
    );
    let t = SshTarget::for_instance(&home, &inst)?;
    let mut opts = t.options(true);
    opts.push("Hostname=127.0.0.1".into());
    opts.push(format!("Port={}", inst.ssh_local_port));
    let quote = |o: &str| {
        if o.contains('"') {
            format!("'{o}'")
        } else {
            o.to_string()
        }
    };
    match a.format.as_str() {
        "cmd" => crate::outln!(
            "ssh {} {}",
            opts.iter()
                .map(|o| format!("-o {}", quote(o)))
                .collect::<Vec<_>>()
                .join(" "),
            inst.hostname()
        )?,
        "args" => crate::outln!(
            "{}",
            opts.iter()
                .map(|o| format!("-o {}", quote(o)))
                .collect::<Vec<_>>()
                .join(" ")
        )?,
        "options" => {
            for o in &opts {
                crate::outln!("{o}")?;
            }
        }
        "config" => {
            crate::outln!("Host {}", inst.hostname())?;
            for o in &opts {
                let (k, v) = o.split_once('=').unwrap_or((o, ""));
                crate::outln!("  {k} {v}")?;
            }
        }
        other => anyhow::bail!("unknown format {other:?} (cmd, args, options, config)"),
    }
    Ok(0)
}
