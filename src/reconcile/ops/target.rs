//! What create/start/edit share: turning `[NAME|TEMPLATE]` plus edit flags
//! into a desired instance (loaded, edited and validated; nothing written).

use std::sync::Arc;

use super::edits::{self, CreateFlags, EditFlags};
use super::{Ctx, OpsError};
use crate::reconcile::plan::{Desired, DesiredConfig, PowerState};
use crate::spec::yaml::{self, quote_name};
use crate::spec::{load, names, resolve};
use crate::store::{self, Home, Instance};

/// Whether `name` can be a new instance of `home` (the same check as `apply`'s).
pub fn check_name(home: &Home, name: &str) -> Result<(), OpsError> {
    store::check_instance_name(home, name).map_err(OpsError::Name)
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
    ctx: &Ctx,
    arg: Option<&str>,
    name_flag: Option<&str>,
    edit: &EditFlags,
    create: &CreateFlags,
    power: Option<PowerState>,
    stdin: &mut dyn FnMut() -> std::io::Result<String>,
) -> Result<Target, OpsError> {
    let (home, env) = (&ctx.home, &ctx.env);
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
                return Err(OpsError::Usage(format!(
                    "instance name {} conflicts with --name={}",
                    quote_name(a),
                    quote_name(n)
                )));
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
            return Err(OpsError::Usage(
                "--name must be given when reading the template from stdin".into(),
            ));
        }
        let name = match name_flag {
            Some(n) => n.to_string(),
            None => load::name_from_locator(&locator).ok_or_else(|| {
                OpsError::Usage(format!(
                    "cannot derive an instance name from {}; use --name",
                    quote_name(&locator)
                ))
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
        return Err(OpsError::Broken { name, dir });
    }
    let mut warnings = Vec::new();
    let tmpl = load::read_locator(&locator, &env.store, stdin, &mut warnings)?;
    let embedded = load::embed(&tmpl, &env.embed_context(true), &mut warnings);
    log_warnings(&warnings);
    let (node, changed) = embedded?;
    let mut exprs = edit.expressions(&node)?;
    exprs.extend(create.expressions()?);
    let edited = edits::apply(&node, &exprs)?;
    if (create.image_variant.is_some() || create.arch_variant.is_some())
        && edited.to_json()["images"]
            .as_array()
            .is_none_or(|a| a.is_empty())
    {
        return Err(OpsError::Usage(
            "no images are configured (did you set --image-variant or --arch-variant to a value not present in the template?)".into(),
        ));
    }
    let text = if changed || !exprs.is_empty() {
        yaml::emit(&edited)
    } else {
        tmpl.text.clone()
    };
    let mut warnings = Vec::new();
    let resolved = resolve::resolve(&edited, &tmpl.display(), &name, env, &mut warnings);
    log_warnings(&warnings);
    let resolved = resolved.map_err(|source| OpsError::Invalid {
        context: "the YAML is invalid".into(),
        source: Box::new(source),
    })?;
    Ok(Target::New(Box::new(Desired {
        name,
        config: Some(Arc::new(DesiredConfig::new(text, resolved))),
        power,
        owner: None,
        revision: None,
    })))
}

/// Logs the warnings a load produced.
pub fn log_warnings(warnings: &[String]) {
    for w in warnings {
        crate::warn!("{w}");
    }
}

/// The desired state of an existing instance: its edits applied, or (no
/// edits) a power-only patch. Refused when its lima.yaml does not load.
pub fn existing_desired(
    ctx: &Ctx,
    inst: &Instance,
    edit: &EditFlags,
    power: Option<PowerState>,
) -> Result<(Desired, bool), OpsError> {
    if inst.config.is_none() {
        return Err(OpsError::HasErrors {
            name: inst.name.clone(),
            errors: inst.errors.clone(),
        });
    }
    Ok(match edited_desired(ctx, inst, edit, power)? {
        Some(d) => (d, true),
        None => (Desired::power(&inst.name, power), false),
    })
}

/// The desired state of an existing instance with edit flags applied to its
/// lima.yaml, validated (nothing is written). `None`: the flags change nothing.
pub fn edited_desired(
    ctx: &Ctx,
    inst: &Instance,
    edit: &EditFlags,
    power: Option<PowerState>,
) -> Result<Option<Desired>, OpsError> {
    let text = inst.lima_yaml.clone().unwrap_or_default();
    let path = inst.dir.join(store::paths::files::LIMA_YAML);
    let tmpl = load::Template::from_text(&path, text);
    let node = load::parse_template(&tmpl)?;
    let exprs = edit.expressions(&node)?;
    if exprs.is_empty() {
        return Ok(None);
    }
    let edited = edits::apply(&node, &exprs)?;
    if edited.to_json() == node.to_json() {
        return Ok(None);
    }
    desired_from_node(ctx, inst, &edited, None, power).map(Some)
}

/// Validates an edited document of an existing instance into a desired
/// state; `text` is what to store (default: the document emitted).
pub fn desired_from_node(
    ctx: &Ctx,
    inst: &Instance,
    node: &yaml::Node,
    text: Option<String>,
    power: Option<PowerState>,
) -> Result<Desired, OpsError> {
    let path = inst.dir.join(store::paths::files::LIMA_YAML);
    let mut warnings = Vec::new();
    let r = resolve::resolve(
        node,
        &path.display().to_string(),
        &inst.name,
        &ctx.env,
        &mut warnings,
    );
    log_warnings(&warnings);
    let resolved = r.map_err(|source| OpsError::Invalid {
        context: format!(
            "the edited configuration of {} is invalid; nothing was changed",
            quote_name(&inst.name)
        ),
        source: Box::new(source),
    })?;
    Ok(Desired {
        name: inst.name.clone(),
        config: Some(Arc::new(DesiredConfig::new(
            text.unwrap_or_else(|| yaml::emit(node)),
            resolved,
        ))),
        power,
        owner: inst.owner.clone(),
        revision: None,
    })
}
