//! One call from YAML to a filled, validated configuration.

use std::path::{Path, PathBuf};

use super::defaults::{self, FillContext};
use super::error::{LocatedError, SpecError};
use super::host::HostInfo;
use super::load::{self, EmbedContext, Template, TemplateStore};
use super::schema;
use super::typed::Spec;
use super::types::LimaYaml;
use super::validate;
use super::yaml::{Node, PathSeg, parse_path, path_string, quote_name};
use crate::layout::{CONFIG_DIR, config_files};

/// What loading needs from outside the YAML: `LIMA_HOME`, the host, the
/// template search path.
#[derive(Clone, Debug)]
pub struct LoadEnv {
    pub lima_home: PathBuf,
    pub host: HostInfo,
    pub store: TemplateStore,
}

impl LoadEnv {
    pub fn new(lima_home: &Path) -> LoadEnv {
        LoadEnv {
            lima_home: lima_home.to_path_buf(),
            host: super::host::host().clone(),
            store: TemplateStore::new(lima_home),
        }
    }

    pub fn config_dir(&self) -> PathBuf {
        self.lima_home.join(CONFIG_DIR)
    }

    pub fn embed_context(&self, default_base: bool) -> EmbedContext<'_> {
        EmbedContext {
            store: &self.store,
            default_base: default_base.then(|| self.config_dir().join(config_files::BASE_YAML)),
        }
    }
}

/// A filled, validated configuration.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// The wire form: what is stored, written back and diffed.
    pub config: LimaYaml,
    /// The same configuration resolved, for the consumers that run it.
    pub spec: Spec,
}

/// Parses a node into the typed form; type errors name file, line and field.
pub fn typed(node: &Node, file: &str) -> Result<LimaYaml, SpecError> {
    let json = node.to_json();
    serde_path_to_error::deserialize(&json).map_err(|e| {
        let path: Vec<PathSeg> = e
            .path()
            .iter()
            .filter_map(|s| match s {
                serde_path_to_error::Segment::Seq { index } => Some(PathSeg::Index(*index)),
                serde_path_to_error::Segment::Map { key } => Some(PathSeg::Key(key.clone())),
                _ => None,
            })
            .collect();
        SpecError::Type {
            file: file.to_string(),
            loc: node.locate(&path),
            field: path_string(&path),
            message: friendly_type_message(&e.inner().to_string()),
        }
    })
}

fn friendly_type_message(m: &str) -> String {
    m.replace("expected i64", "expected an integer")
        .replace("expected u32", "expected a non-negative integer")
        .replace("expected a boolean", "expected true or false")
        .replace("invalid type: map", "invalid type: mapping")
}

fn read_config_node(path: &Path) -> Result<Option<Node>, SpecError> {
    if !path.exists() {
        return Ok(None);
    }
    let t = Template::from_text(path, load::read_limited(path)?);
    load::parse_template(&t).map(Some)
}

/// Fills and validates `y` (an embedded lima.yaml) as instance `name`:
/// `_config/default.yaml` and `override.yaml` are layered in, builtin
/// defaults and template variables applied, then everything validated.
/// Non-fatal findings (unknown keys, deprecations) go to `warnings`, also
/// when the result is an error.
pub fn resolve(
    y: &Node,
    file: &str,
    name: &str,
    env: &LoadEnv,
    warnings: &mut Vec<String>,
) -> Result<Resolved, SpecError> {
    let cfg = env.config_dir();
    let d_path = cfg.join(config_files::DEFAULT_YAML);
    let o_path = cfg.join(config_files::OVERRIDE_YAML);
    let d_node = read_config_node(&d_path)?;
    let o_node = read_config_node(&o_path)?;

    // The file's own unknown keys are reported by `load_template`; here only
    // those of the _config files (read on every load).
    for n in [d_node.as_ref(), o_node.as_ref()].into_iter().flatten() {
        for u in schema::unknown_keys(n) {
            warnings.push(u.to_string());
        }
    }
    let y_typed = typed(y, file)?;
    let d_typed = d_node
        .as_ref()
        .map(|n| typed(n, &d_path.display().to_string()))
        .transpose()?
        .unwrap_or_default();
    let o_typed = o_node
        .as_ref()
        .map(|n| typed(n, &o_path.display().to_string()))
        .transpose()?
        .unwrap_or_default();

    let unused = validate::unused_params(&y_typed);
    if !unused.is_empty() {
        let errors = unused
            .iter()
            .map(|k| LocatedError {
                loc: y.locate(&[PathSeg::Key("param".into()), PathSeg::Key(k.clone())]),
                field: format!("param.{k}"),
                message: format!(
                    "field `param` key {} is not used in any provision, probe, copyToHost, or portForward",
                    quote_name(k)
                ),
            })
            .collect();
        return Err(SpecError::Invalid {
            file: file.to_string(),
            errors,
        });
    }

    let (layered, offsets) =
        defaults::layer(&d_typed.to_json(), &y_typed.to_json(), &o_typed.to_json());
    let mut config: LimaYaml = serde_json::from_value(layered).map_err(|e| SpecError::Type {
        file: file.to_string(),
        loc: None,
        field: String::new(),
        message: format!("after merging _config/default.yaml and override.yaml: {e}"),
    })?;
    let ctx = FillContext {
        host: &env.host,
        instance_name: name.to_string(),
        instance_dir: env.lima_home.join(name),
        lima_home: env.lima_home.clone(),
    };
    warnings.extend(defaults::fill(&mut config, &ctx));
    let (errors, more) = validate::validate(&config, crate::LIMA_COMPAT_VERSION);
    warnings.extend(more);
    if !errors.is_empty() {
        let y_lens = y_typed.to_json();
        let errors = errors
            .into_iter()
            .map(|e| LocatedError {
                loc: locate_in_file(y, &y_lens, &offsets, &e.field),
                field: e.field,
                message: e.message,
            })
            .collect();
        return Err(SpecError::Invalid {
            file: file.to_string(),
            errors,
        });
    }
    let spec = Spec::from_filled(&config)?;
    Ok(Resolved { config, spec })
}

/// Maps a field path of the merged configuration back to the file's node:
/// list indices shift by the entries `_config` files contributed.
fn locate_in_file(
    y: &Node,
    y_json: &serde_json::Value,
    offsets: &defaults::ListOffsets,
    field: &str,
) -> Option<super::yaml::Loc> {
    let mut path = parse_path(field);
    let PathSeg::Key(first) = path.first()?.clone() else {
        return None;
    };
    y.get(&first)?;
    if let (Some(off), Some(PathSeg::Index(i))) = (offsets.get(&first), path.get(1).cloned()) {
        let len = y_json
            .get(&first)
            .and_then(|v| v.as_array())
            .map_or(0, Vec::len);
        if i < *off || i >= off + len {
            return None;
        }
        path[1] = PathSeg::Index(i - off);
    }
    y.locate(&path)
}

/// Reads a locator, embeds its bases, and resolves it as instance `name`
/// (or the name the locator implies, or `default`).
pub fn load_locator(
    locator: &str,
    name: Option<&str>,
    env: &LoadEnv,
    default_base: bool,
    stdin: &mut dyn FnMut() -> std::io::Result<String>,
    warnings: &mut Vec<String>,
) -> Result<Loaded, SpecError> {
    let tmpl = load::read_locator(locator, &env.store, stdin, warnings)?;
    load_template(tmpl, name, env, default_base, warnings)
}

/// A template read, embedded and resolved.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub template: Template,
    /// The embedded document (what an instance's lima.yaml stores).
    pub node: Node,
    /// Whether embedding changed the document (otherwise its text is kept).
    pub embedded_changed: bool,
    pub name: String,
    pub resolved: Resolved,
}

impl Loaded {
    /// The bytes an instance created from this template stores as lima.yaml.
    pub fn lima_yaml_text(&self) -> String {
        if self.embedded_changed {
            super::yaml::emit(&self.node)
        } else {
            self.template.text.clone()
        }
    }
}

pub fn load_template(
    tmpl: Template,
    name: Option<&str>,
    env: &LoadEnv,
    default_base: bool,
    warnings: &mut Vec<String>,
) -> Result<Loaded, SpecError> {
    let display = tmpl.display();
    let (node, changed) = load::embed(&tmpl, &env.embed_context(default_base), warnings)?;
    if node.as_map().is_some_and(Vec::is_empty) {
        return Err(SpecError::Empty { file: display });
    }
    warnings.extend(schema::unknown_keys(&node).iter().map(ToString::to_string));
    let name = name
        .map(str::to_string)
        .or_else(|| tmpl.name.clone())
        .unwrap_or_else(|| "default".into());
    let resolved = resolve(&node, &display, &name, env, warnings)?;
    Ok(Loaded {
        template: tmpl,
        node,
        embedded_changed: changed,
        name,
        resolved,
    })
}
