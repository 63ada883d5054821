//! What create/start share: turning `[NAME|TEMPLATE]` plus edit flags into a
//! desired instance, and looking instances up.

use anyhow::{Context, bail};

use super::editflags::{self, CreateFlags, EditFlags};
use crate::reconcile::{Desired, PowerState};
use crate::spec::yaml::{self, quote_name};
use crate::spec::{LoadEnv, load, names, resolve};
use crate::store::{self, Home, Instance};

/// Unix socket paths must fit in 108 bytes; `ssh.sock.<16 random chars>` is
/// the longest OpenSSH creates in the instance directory.
const LONGEST_SOCK: &str = "ssh.sock.1234567890123456";

pub fn check_name(home: &Home, name: &str) -> anyhow::Result<()> {
    names::validate_instance_name(name).map_err(|e| anyhow::anyhow!(e))?;
    let sock = home.instance_dir(name).join(LONGEST_SOCK);
    if sock.as_os_str().len() >= 108 {
        bail!(
            "instance name {} too long: {} would exceed the 108-byte unix socket path limit; use a shorter name or LIMA_HOME",
            quote_name(name),
            sock.display()
        );
    }
    Ok(())
}

/// Where the argument of create/start points.
pub enum Target {
    /// An existing instance.
    Existing(String),
    /// A new instance from a template (already loaded, edited and validated).
    New(Box<Desired>),
}

/// Resolves `[NAME|TEMPLATE]` as Lima does (reference §1.3).
pub fn resolve_target(
    home: &Home,
    env: &LoadEnv,
    arg: Option<&str>,
    name_flag: Option<&str>,
    edit: &EditFlags,
    create: &CreateFlags,
    power: Option<PowerState>,
) -> anyhow::Result<Target> {
    if let Some(n) = name_flag {
        check_name(home, n)?;
    }
    let arg_is_name = match arg {
        None => true,
        Some(a) => names::validate_instance_name(a).is_ok() && a != "-",
    };
    let (name, locator) = if arg_is_name {
        let name = match (arg, name_flag) {
            (Some(a), Some(n)) if a != n => {
                bail!(
                    "instance name {} conflicts with --name={}",
                    quote_name(a),
                    quote_name(n)
                )
            }
            (Some(a), _) => a.to_string(),
            (None, Some(n)) => n.to_string(),
            (None, None) => "default".to_string(),
        };
        if home
            .instance_dir(&name)
            .join(store::paths::files::LIMA_YAML)
            .exists()
        {
            return Ok(Target::Existing(name));
        }
        if name != "default" {
            crate::warn!(
                "Use `limactl create --name={name} template:default` instead of `limactl create {name}`"
            );
        }
        (name, "template:default".to_string())
    } else {
        let locator = arg.unwrap().to_string();
        if locator == "-" && name_flag.is_none() {
            bail!("--name must be given when reading the template from stdin");
        }
        let name = match name_flag {
            Some(n) => n.to_string(),
            None => load::name_from_locator(&locator).ok_or_else(|| {
                anyhow::anyhow!(
                    "cannot derive an instance name from {}; use --name",
                    quote_name(&locator)
                )
            })?,
        };
        (name, locator)
    };
    check_name(home, &name)?;
    let dir = home.instance_dir(&name);
    if dir.join(store::paths::files::LIMA_YAML).exists() {
        return Ok(Target::Existing(name));
    }
    if dir.exists() {
        bail!(
            "instance {} is Broken: {} exists but has no lima.yaml; remove that directory to create the instance anew",
            quote_name(&name),
            dir.display()
        );
    }
    let mut warnings = Vec::new();
    let tmpl = load::read_locator(&locator, &env.store, &mut super::read_stdin, &mut warnings)?;
    let embedded = load::embed(&tmpl, &env.embed_context(true), &mut warnings);
    super::log_warnings(&warnings);
    let (node, changed) = embedded?;
    let mut exprs = edit.expressions(&node)?;
    exprs.extend(create.expressions()?);
    let edited = editflags::apply(&node, &exprs)?;
    let text = if changed || !exprs.is_empty() {
        yaml::emit(&edited)
    } else {
        tmpl.text.clone()
    };
    let mut warnings = Vec::new();
    let resolved = resolve::resolve(&edited, &tmpl.display(), &name, env, &mut warnings);
    super::log_warnings(&warnings);
    let resolved = resolved.with_context(|| "the YAML is invalid")?;
    Ok(Target::New(Box::new(Desired {
        name,
        lima_yaml: text,
        config: resolved.config,
        power,
        owner: None,
    })))
}

/// An existing instance, with a clear error when it does not exist.
pub fn existing(home: &Home, env: &LoadEnv, name: &str) -> anyhow::Result<Instance> {
    names::validate_instance_name(name).map_err(|e| anyhow::anyhow!(e))?;
    let inst = store::inspect(home, env, name);
    if !inst.dir_exists {
        bail!(
            "instance {} does not exist, run `limactl create {name}` to create a new instance",
            quote_name(name)
        );
    }
    Ok(inst)
}

/// The desired state of an existing instance from its stored lima.yaml.
pub fn desired_of(inst: &Instance, power: Option<PowerState>) -> anyhow::Result<Desired> {
    let config = inst.config.clone().ok_or_else(|| {
        anyhow::anyhow!(
            "instance {} has errors: {}",
            quote_name(&inst.name),
            inst.errors.join("; ")
        )
    })?;
    Ok(Desired {
        name: inst.name.clone(),
        lima_yaml: inst.lima_yaml.clone().unwrap_or_default(),
        config,
        power,
        owner: inst.owner.clone(),
    })
}

/// The desired state of an existing instance with edit flags applied to its
/// lima.yaml, validated (nothing is written). `None`: the flags change nothing.
pub fn edited_desired(
    env: &LoadEnv,
    inst: &Instance,
    edit: &EditFlags,
    power: Option<PowerState>,
) -> anyhow::Result<Option<Desired>> {
    let text = inst.lima_yaml.clone().unwrap_or_default();
    let path = inst.dir.join(store::paths::files::LIMA_YAML);
    let tmpl = load::Template::from_text(&path, text);
    let node = load::parse_template(&tmpl)?;
    let exprs = edit.expressions(&node)?;
    if exprs.is_empty() {
        return Ok(None);
    }
    let edited = editflags::apply(&node, &exprs)?;
    if edited.to_json() == node.to_json() {
        return Ok(None);
    }
    desired_from_node(env, inst, &edited, power).map(Some)
}

/// Validates an edited document of an existing instance into a desired state.
pub fn desired_from_node(
    env: &LoadEnv,
    inst: &Instance,
    node: &yaml::Node,
    power: Option<PowerState>,
) -> anyhow::Result<Desired> {
    let path = inst.dir.join(store::paths::files::LIMA_YAML);
    let mut warnings = Vec::new();
    let r = resolve::resolve(
        node,
        &path.display().to_string(),
        &inst.name,
        env,
        &mut warnings,
    );
    super::log_warnings(&warnings);
    let resolved = r.with_context(|| {
        format!(
            "the edited configuration of {} is invalid; nothing was changed",
            quote_name(&inst.name)
        )
    })?;
    Ok(Desired {
        name: inst.name.clone(),
        lima_yaml: yaml::emit(node),
        config: resolved.config,
        power,
        owner: inst.owner.clone(),
    })
}
