//! `limactl info` (reference §8.4).

use crate::store::{Home, paths};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A jq expression applied to the output (default `.`).
    #[arg(long = "yq", value_name = "EXPR")]
    yq: Option<String>,
}

pub fn info_json() -> anyhow::Result<serde_json::Value> {
    let home = Home::from_env();
    let env = crate::spec::LoadEnv::new(&home.root);
    let templates: Vec<serde_json::Value> = env
        .store
        .list()
        .into_iter()
        .map(|(name, location)| serde_json::json!({"name": name, "location": location}))
        .collect();
    let mut warnings = Vec::new();
    let default_template = crate::spec::resolve::load_locator(
        "template:default",
        Some("default"),
        &env,
        false,
        &mut || Ok(String::new()),
        &mut warnings,
    )
    .map(|l| l.resolved.config.to_json())
    .unwrap_or(serde_json::Value::Null);
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    Ok(serde_json::json!({
        "version": crate::version_string(),
        "templates": templates,
        "defaultTemplate": default_template,
        "limaHome": home.root.display().to_string(),
        "vmTypes": ["qemu"],
        "vmTypesEx": {"qemu": {"location": exe}},
        "guestAgents": guest_agents(),
        "shellEnvBlock": super::shell_env_block(),
        "hostOS": "linux",
        "hostArch": crate::spec::host::host_arch(),
        "identityFile": home.config_file(paths::config_files::USER_KEY).display().to_string(),
        "plugins": super::plugin::list()
            .into_iter()
            .map(|(name, path)| serde_json::json!({"name": name, "path": path.display().to_string()}))
            .collect::<Vec<_>>(),
        "libexecPaths": paths_json(super::plugin::libexec_paths()),
        "sharePaths": paths_json(super::plugin::share_paths()),
    }))
}

fn paths_json(p: Vec<std::path::PathBuf>) -> Vec<String> {
    p.iter().map(|p| p.display().to_string()).collect()
}

/// Lima's `guestAgents`: the agent each guest arch gets (Linux keys have no
/// OS prefix); here the one x86_64 agent, when it is found.
fn guest_agents() -> serde_json::Value {
    match crate::hostagent::guest::find_binary() {
        Some(p) => serde_json::json!({"x86_64": {"location": p.display().to_string()}}),
        None => serde_json::json!({}),
    }
}

pub fn run(a: Args, g: &super::Globals) -> anyhow::Result<i32> {
    let v = info_json()?;
    let outs = crate::yq::eval(a.yq.as_deref().unwrap_or("."), &v)?;
    for o in outs {
        if g.tty || o.is_object() {
            crate::outln!("{}", super::list::pretty4(&o))?;
        } else {
            crate::outln!("{o}")?;
        }
    }
    Ok(0)
}
