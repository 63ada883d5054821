//! Reading templates by locator and embedding their `base:` templates and
//! `file:` scripts (reference §6.5, §6.6).

use std::path::{Path, PathBuf};

use sha2::Digest as _;

use super::error::SpecError;
use super::yaml::{self, Entry, Node, Value, quote_name};

/// Largest template (or embedding result) accepted, as in Lima.
pub const MAX_TEMPLATE_BYTES: u64 = 4 << 20;

mod bundled {
    include!(concat!(env!("OUT_DIR"), "/bundled_templates.rs"));
}

/// Where templates named by `template:NAME` are looked up.
#[derive(Clone, Debug)]
pub struct TemplateStore {
    dirs: Vec<PathBuf>,
}

/// Where a template came from; relative locators inside it resolve against it.
#[derive(Clone, Debug, PartialEq)]
pub enum Origin {
    File(PathBuf),
    /// A `template:NAME`, found on disk (`Some`) or bundled in the binary.
    Template(String, Option<PathBuf>),
    Stdin,
    /// Made up from an image URL given as the locator.
    Synthesized,
}

/// A template's text and where it came from.
#[derive(Clone, Debug)]
pub struct Template {
    pub locator: String,
    pub origin: Origin,
    pub text: String,
    /// The instance name the locator implies (`ubuntu-24.04.yaml` → `ubuntu-24.04`).
    pub name: Option<String>,
}

impl Template {
    /// The name used in messages and node locations.
    pub fn display(&self) -> String {
        match &self.origin {
            Origin::File(p) => p.display().to_string(),
            Origin::Template(n, _) => format!("template:{n}"),
            Origin::Stdin => "<stdin>".into(),
            Origin::Synthesized => self.locator.clone(),
        }
    }

    /// Wraps text that is not read from a locator (e.g. an instance's `lima.yaml`).
    pub fn from_text(path: &Path, text: String) -> Template {
        Template {
            locator: path.display().to_string(),
            origin: Origin::File(path.to_path_buf()),
            text,
            name: None,
        }
    }

    fn dir(&self) -> Option<PathBuf> {
        match &self.origin {
            Origin::File(p) => p.parent().map(Path::to_path_buf),
            Origin::Template(_, Some(p)) => p.parent().map(Path::to_path_buf),
            _ => None,
        }
    }
}

impl TemplateStore {
    /// `$LIMA_TEMPLATES_PATH` (`:`-separated) if set, else
    /// `$LIMA_HOME/_templates` and `<prefix>/share/lima/templates`; the
    /// templates bundled in the binary come last.
    pub fn new(lima_home: &Path) -> TemplateStore {
        let dirs = match std::env::var_os("LIMA_TEMPLATES_PATH") {
            Some(p) if !p.is_empty() => std::env::split_paths(&p).collect(),
            _ => {
                let mut d = vec![lima_home.join(crate::layout::TEMPLATES_DIR)];
                if let Ok(exe) = std::env::current_exe()
                    && let Some(prefix) = exe.parent().and_then(Path::parent)
                {
                    d.push(prefix.join(crate::layout::SHARE_TEMPLATES_DIR));
                }
                d
            }
        };
        TemplateStore { dirs }
    }

    pub fn with_dirs(dirs: Vec<PathBuf>) -> TemplateStore {
        TemplateStore { dirs }
    }

    fn file_name(name: &str) -> String {
        // `ubuntu-24.04` has an "extension" starting with a digit: not an extension.
        let has_ext = Path::new(name)
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| !e.starts_with(|c: char| c.is_ascii_digit()));
        if has_ext {
            name.to_string()
        } else {
            format!("{name}.yaml")
        }
    }

    /// Reads `template:NAME`.
    pub fn read(&self, name: &str) -> Result<(String, Option<PathBuf>), SpecError> {
        if name.is_empty()
            || name.split('/').any(|s| s == ".." || s.is_empty())
            || name.starts_with('/')
        {
            return Err(SpecError::Locator {
                locator: format!("template:{name}"),
                message: "template names must be relative and must not contain `..`".into(),
            });
        }
        let file = Self::file_name(name);
        for d in &self.dirs {
            let p = d.join(&file);
            if p.is_file() {
                return read_limited(&p).map(|t| (t, Some(p)));
            }
        }
        let key = file.strip_suffix(".yaml").unwrap_or(&file);
        if let Some((_, text)) = bundled::BUNDLED.iter().find(|(n, _)| *n == key) {
            return Ok((text.to_string(), None));
        }
        Err(SpecError::TemplateNotFound {
            name: name.to_string(),
            searched: self.dirs.clone(),
        })
    }

    /// Every template name (without `.yaml`) and where it is; the first
    /// occurrence along the search path wins. Names starting with `_` are parts,
    /// not templates, and are left out.
    pub fn list(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        fn walk(dir: &Path, root: &Path, out: &mut Vec<(String, String)>) {
            let Ok(rd) = std::fs::read_dir(dir) else {
                return;
            };
            let mut entries: Vec<_> = rd.flatten().map(|e| e.path()).collect();
            entries.sort();
            for p in entries {
                let fname = p
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .to_string();
                if fname.starts_with('.') {
                    continue;
                }
                if p.is_dir() {
                    walk(&p, root, out);
                } else if fname.ends_with(".yaml") {
                    let rel = p.strip_prefix(root).unwrap().to_string_lossy();
                    let name = rel.trim_end_matches(".yaml").to_string();
                    if !out.iter().any(|(n, _)| *n == name) {
                        out.push((name, p.display().to_string()));
                    }
                }
            }
        }
        for d in &self.dirs {
            walk(d, d, &mut out);
        }
        for (name, _) in bundled::BUNDLED {
            if !out.iter().any(|(n, _)| n == name) {
                out.push((name.to_string(), format!("template:{name} (bundled)")));
            }
        }
        out.retain(|(n, _)| !n.split('/').any(|s| s.starts_with('_')));
        out.sort();
        out
    }
}

/// Reads a file, refusing anything larger than [`MAX_TEMPLATE_BYTES`].
pub fn read_limited(path: &Path) -> Result<String, SpecError> {
    use std::io::Read;
    let io = |source| SpecError::Io {
        path: path.display().to_string(),
        source,
    };
    let f = std::fs::File::open(path).map_err(io)?;
    let mut buf = Vec::new();
    f.take(MAX_TEMPLATE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(io)?;
    check_size(&path.display().to_string(), buf.len() as u64)?;
    String::from_utf8(buf).map_err(|_| SpecError::Locator {
        locator: path.display().to_string(),
        message: "is not UTF-8 text".into(),
    })
}

fn check_size(display: &str, len: u64) -> Result<(), SpecError> {
    if len > MAX_TEMPLATE_BYTES {
        return Err(SpecError::TooLarge {
            file: display.to_string(),
            limit: MAX_TEMPLATE_BYTES,
        });
    }
    Ok(())
}

/// Image-file locators (`….qcow2`, `….img.xz`) become a minimal template.
fn image_locator(locator: &str) -> bool {
    let l = locator.to_ascii_lowercase();
    let l = [".gz", ".xz", ".bz2", ".zst", ".zstd"]
        .iter()
        .find_map(|c| l.strip_suffix(c))
        .unwrap_or(&l);
    [".img", ".qcow2", ".raw", ".iso"]
        .iter()
        .any(|e| l.ends_with(e))
}

/// The instance name a locator implies, if it is a valid name.
pub fn name_from_locator(locator: &str) -> Option<String> {
    let base = locator.rsplit('/').next()?;
    let base = base.split(':').next_back()?;
    let lower = base.to_ascii_lowercase();
    let stem = lower
        .strip_suffix(".yaml")
        .or_else(|| lower.strip_suffix(".yml"))
        .unwrap_or(&lower);
    super::names::validate_instance_name(stem)
        .ok()
        .map(|_| stem.to_string())
}

/// Reads the template a locator names (reference §6.6). `stdin` supplies `-`.
pub fn read_locator(
    locator: &str,
    store: &TemplateStore,
    stdin: &mut dyn FnMut() -> std::io::Result<String>,
    warnings: &mut Vec<String>,
) -> Result<Template, SpecError> {
    if locator == "-" {
        let text = stdin().map_err(|source| SpecError::Io {
            path: "<stdin>".into(),
            source,
        })?;
        check_size("<stdin>", text.len() as u64)?;
        return Ok(Template {
            locator: "-".into(),
            origin: Origin::Stdin,
            text,
            name: None,
        });
    }
    if let Some(rest) = locator.strip_prefix("template:") {
        let name = match rest.strip_prefix("//") {
            Some(n) => {
                warnings.push(format!(
                    "template locator {} should be written `template:{n}` since Lima v2.0",
                    quote_name(locator)
                ));
                n
            }
            None => rest,
        };
        let (text, path) = store.read(name)?;
        let short = name.rsplit('/').next().unwrap_or(name);
        return Ok(Template {
            locator: locator.into(),
            origin: Origin::Template(name.into(), path),
            text,
            name: name_from_locator(short),
        });
    }
    if locator.starts_with("http://") || locator.starts_with("https://") {
        if image_locator(locator) {
            return Ok(synthesize_image_template(locator));
        }
        return Err(SpecError::Locator {
            locator: locator.into(),
            message: "fetching templates over HTTP is not supported yet; download the file and pass its path".into(),
        });
    }
    let path = if let Some(p) = locator.strip_prefix("file://") {
        if !p.starts_with('/') {
            return Err(SpecError::Locator {
                locator: locator.into(),
                message: "file:// locators must name an absolute path".into(),
            });
        }
        PathBuf::from(p)
    } else if let Some((scheme, _)) = locator.split_once(':') {
        if !scheme.is_empty()
            && !scheme.contains('/')
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-')
            && !Path::new(locator).exists()
        {
            return Err(SpecError::Locator {
                locator: locator.into(),
                message: format!("unsupported locator scheme {}", quote_name(scheme)),
            });
        }
        PathBuf::from(locator)
    } else {
        PathBuf::from(locator)
    };
    if image_locator(locator) && !path.is_file() {
        return Ok(synthesize_image_template(locator));
    }
    let path = if path.is_absolute() {
        path
    } else {
        std::env::current_dir()
            .map(|d| d.join(&path))
            .unwrap_or(path)
    };
    if image_locator(locator) {
        return Ok(synthesize_image_template(&path.display().to_string()));
    }
    if !path.exists() {
        return Err(SpecError::Io {
            path: locator.into(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        });
    }
    let text = read_limited(&path)?;
    Ok(Template {
        locator: locator.into(),
        name: name_from_locator(locator),
        origin: Origin::File(path),
        text,
    })
}

fn synthesize_image_template(location: &str) -> Template {
    let lower = location.to_ascii_lowercase();
    let arch = [
        ("aarch64", "aarch64"),
        ("arm64", "aarch64"),
        ("amd64", "x86_64"),
        ("x86_64", "x86_64"),
        ("armhf", "armv7l"),
        ("armv7l", "armv7l"),
        ("ppc64el", "ppc64le"),
        ("ppc64le", "ppc64le"),
        ("riscv64", "riscv64"),
        ("s390x", "s390x"),
    ]
    .iter()
    .find(|(k, _)| lower.contains(k))
    .map(|(_, a)| a.to_string())
    .unwrap_or_else(|| super::host::host_arch().to_string());
    let os = if lower.contains("freebsd") {
        "FreeBSD"
    } else {
        "Linux"
    };
    let text = yaml::emit(&Node::map(vec![
        ("os".into(), Node::str(os)),
        ("arch".into(), Node::str(arch.clone())),
        (
            "images".into(),
            Node::new(Value::Seq(vec![Node::map(vec![
                ("location".into(), Node::str(location)),
                ("arch".into(), Node::str(arch)),
            ])])),
        ),
    ]));
    let base = location.rsplit('/').next().unwrap_or(location);
    let stem = base.split('.').next().unwrap_or(base).to_ascii_lowercase();
    let generic = [
        "base",
        "basic",
        "cloud",
        "cloudimg",
        "cloudinit",
        "current",
        "daily",
        "default",
        "generic",
        "genericcloud",
        "kvm",
        "latest",
        "linux",
        "minimal",
        "openstack",
        "release",
        "restore",
        "server",
        "std",
        "stream",
        "uefi",
        "vm",
        "amd64",
        "x86_64",
        "arm64",
        "aarch64",
    ];
    let name: Vec<&str> = stem
        .split(['-', '_'])
        .filter(|p| {
            let date = p.len() == 8 && p.bytes().all(|c| c.is_ascii_digit());
            !(p.is_empty() || generic.contains(p) || date)
        })
        .collect();
    let name = name.join("-");
    Template {
        locator: location.into(),
        origin: Origin::Synthesized,
        text,
        name: super::names::validate_instance_name(&name)
            .ok()
            .map(|_| name),
    }
}

/// Parses a template's text into a mapping node (an empty text is an empty mapping).
pub fn parse_template(t: &Template) -> Result<Node, SpecError> {
    let display = t.display();
    check_size(&display, t.text.len() as u64)?;
    let node = yaml::parse_single(&display, &t.text)?;
    match node {
        None => Ok(Node::new(Value::Map(Vec::new()))),
        Some(n) if n.is_null() => Ok(Node::new(Value::Map(Vec::new()))),
        Some(n) if n.as_map().is_some() => Ok(n),
        Some(n) => Err(SpecError::NotMapping {
            file: display,
            loc: n.loc.clone(),
            found: kind_name(&n).into(),
        }),
    }
}

fn kind_name(n: &Node) -> &'static str {
    match n.value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Int(_) | Value::Float(_) => "a number",
        Value::Str(_) => "a string",
        Value::Seq(_) => "a list",
        Value::Map(_) => "a mapping",
    }
}

/// What embedding needs from its surroundings.
pub struct EmbedContext<'a> {
    pub store: &'a TemplateStore,
    /// `$LIMA_HOME/_config/base.yaml`, prepended to `base:` when it exists.
    pub default_base: Option<PathBuf>,
}

/// A locator as written in `base:` / `file:`, made absolute for its template.
fn absolutize(locator: &str, tmpl: &Template) -> Result<String, SpecError> {
    if locator.contains("://") || locator.starts_with("template:") {
        return Ok(locator.to_string());
    }
    if let Some(rest) = locator.strip_prefix("~/") {
        let home = std::env::var("HOME").unwrap_or_default();
        return Ok(format!("{home}/{rest}"));
    }
    if locator.starts_with('/') {
        return Ok(locator.to_string());
    }
    match tmpl.dir() {
        Some(d) => Ok(super::defaults::clean_path(
            &d.join(locator).to_string_lossy(),
        )),
        None => Err(SpecError::Locator {
            locator: locator.into(),
            message: format!(
                "a relative locator cannot be resolved inside {} (it has no directory)",
                tmpl.display()
            ),
        }),
    }
}

/// `template copy` without `--embed`: relative `base:`/`file:` locators made
/// absolute so the copy still works elsewhere; unchanged text when none are relative.
pub fn absolutize_locators(tmpl: &Template) -> Result<String, SpecError> {
    let mut node = parse_template(tmpl)?;
    let mut changed = false;
    let mut fix = |n: &mut Node| -> Result<(), SpecError> {
        match &mut n.value {
            Value::Str(s) => {
                let abs = absolutize(s, tmpl)?;
                if abs != *s {
                    *s = abs;
                    changed = true;
                }
            }
            Value::Map(_) => {
                if let Some(Value::Str(s)) = n.get_mut("url").map(|u| &mut u.value) {
                    let abs = absolutize(s, tmpl)?;
                    if abs != *s {
                        *s = abs;
                        changed = true;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    };
    if let Some(b) = node.get_mut("base") {
        if let Value::Seq(items) = &mut b.value {
            for i in items {
                fix(i)?;
            }
        } else {
            fix(b)?;
        }
    }
    for list in ["provision", "probes"] {
        if let Some(Value::Seq(items)) = node.get_mut(list).map(|n| &mut n.value) {
            for item in items {
                if let Some(f) = item.get_mut("file") {
                    fix(f)?;
                }
            }
        }
    }
    Ok(if changed {
        yaml::emit(&node)
    } else {
        tmpl.text.clone()
    })
}

fn locator_of(n: &Node) -> Option<(String, Option<String>)> {
    match &n.value {
        Value::Str(s) => Some((s.clone(), None)),
        Value::Map(_) => Some((
            n.get("url")?.as_str()?.to_string(),
            n.get("digest").and_then(Node::as_str).map(str::to_string),
        )),
        _ => None,
    }
}

/// Checks bytes against an OCI digest (`sha256:…` / `sha512:…`).
pub fn verify_digest(what: &str, bytes: &[u8], digest: &str) -> Result<(), SpecError> {
    super::validate::validate_digest(digest).map_err(|e| SpecError::Locator {
        locator: what.into(),
        message: format!("digest {e}"),
    })?;
    let (algo, want) = digest.split_once(':').unwrap();
    let got = match algo {
        "sha256" => hex::encode(sha2::Sha256::digest(bytes)),
        "sha384" => hex::encode(sha2::Sha384::digest(bytes)),
        _ => hex::encode(sha2::Sha512::digest(bytes)),
    };
    if got != want {
        return Err(SpecError::DigestMismatch {
            what: what.into(),
            expected: digest.into(),
            actual: format!("{algo}:{got}"),
        });
    }
    Ok(())
}

/// Merges every `base:` template into `tmpl` and inlines `file:` scripts,
/// returning the embedded document. Whether anything changed is reported so
/// that an unchanged file can be stored byte for byte (comments kept).
pub fn embed(
    tmpl: &Template,
    ctx: &EmbedContext,
    warnings: &mut Vec<String>,
) -> Result<(Node, bool), SpecError> {
    let mut stack = vec![stack_key(tmpl)];
    let (node, changed) = embed_inner(tmpl, ctx, &mut stack, true, warnings)?;
    let size = yaml::emit(&node).len() as u64;
    check_size(&format!("{} (embedded)", tmpl.display()), size)?;
    Ok((node, changed))
}

fn stack_key(t: &Template) -> String {
    match &t.origin {
        Origin::File(p) => p.display().to_string(),
        Origin::Template(n, _) => format!("template:{n}"),
        _ => t.locator.clone(),
    }
}

fn embed_inner(
    tmpl: &Template,
    ctx: &EmbedContext,
    stack: &mut Vec<String>,
    top: bool,
    warnings: &mut Vec<String>,
) -> Result<(Node, bool), SpecError> {
    let mut node = parse_template(tmpl)?;
    let mut changed = false;
    let mut bases: Vec<(String, Option<String>)> = Vec::new();
    if top
        && let Some(b) = &ctx.default_base
        && b.is_file()
        && stack.first().map(String::as_str) != Some(&b.display().to_string())
    {
        bases.push((b.display().to_string(), None));
    }
    if let Some(b) = node.remove("base") {
        changed = true;
        let list = match &b.value {
            Value::Seq(items) => items.iter().collect::<Vec<_>>(),
            Value::Null => Vec::new(),
            _ => vec![&b],
        };
        for item in list {
            let (loc, digest) = locator_of(item).ok_or_else(|| SpecError::Type {
                file: tmpl.display(),
                loc: item.loc.clone(),
                field: "base".into(),
                message: "expected a locator string or {url, digest}".into(),
            })?;
            bases.push((absolutize(&loc, tmpl)?, digest));
        }
    }
    for (loc, digest) in bases {
        changed = true;
        let mut noop = || Ok(String::new());
        let base = read_locator(&loc, ctx.store, &mut noop, warnings)?;
        if let Some(d) = &digest {
            verify_digest(&loc, base.text.as_bytes(), d)?;
        }
        let key = stack_key(&base);
        if stack.contains(&key) {
            let mut chain = stack.clone();
            chain.push(key);
            return Err(SpecError::BaseLoop { chain });
        }
        stack.push(key);
        let (base_node, _) = embed_inner(&base, ctx, stack, false, warnings)?;
        stack.pop();
        node = merge_documents(node, base_node, "");
    }
    changed |= inline_files(&mut node, tmpl, "provision")?;
    changed |= inline_files(&mut node, tmpl, "probes")?;
    if top && changed {
        combine_list_entries(&mut node, "additionalDisks", "name");
        combine_list_entries(&mut node, "mounts", "mountPoint");
        combine_list_entries(&mut node, "networks", "interface");
    }
    Ok((node, changed))
}

fn inline_files(node: &mut Node, tmpl: &Template, list: &str) -> Result<bool, SpecError> {
    let Some(Value::Seq(items)) = node.get_mut(list).map(|n| &mut n.value) else {
        return Ok(false);
    };
    let mut changed = false;
    for item in items.iter_mut() {
        let Some(file) = item.remove("file") else {
            continue;
        };
        changed = true;
        let Some((loc, digest)) = locator_of(&file) else {
            return Err(SpecError::Type {
                file: tmpl.display(),
                loc: file.loc.clone(),
                field: format!("{list}[].file"),
                message: "expected a locator string or {url, digest}".into(),
            });
        };
        let abs = absolutize(&loc, tmpl)?;
        let path = abs.strip_prefix("file://").unwrap_or(&abs);
        if abs.contains("://") && !abs.starts_with("file://") {
            return Err(SpecError::Locator {
                locator: abs.clone(),
                message: "only local files can be embedded as scripts for now".into(),
            });
        }
        let text = read_limited(Path::new(path))?;
        if let Some(d) = &digest {
            verify_digest(&abs, text.as_bytes(), d)?;
        }
        let field = match item.get("mode").and_then(Node::as_str) {
            Some("data") => "content",
            Some("yq") => "expression",
            _ => "script",
        };
        let mut n = Node::str(text);
        n.loc = file.loc.clone();
        item.set(field, n);
    }
    Ok(changed)
}

fn version_max(a: &str, b: &str) -> bool {
    let pa = super::validate::semver_parse(a);
    let pb = super::validate::semver_parse(b);
    pb > pa
}

/// Lima's template merge: the template wins for scalars, maps merge
/// recursively, lists concatenate (template items first, except `provision`
/// and `probes` where the base's come first).
pub fn merge_documents(t: Node, b: Node, path: &str) -> Node {
    let Node { value, loc } = t;
    let Value::Map(mut entries) = value else {
        return Node { value, loc };
    };
    let Value::Map(base_entries) = b.value else {
        return Node {
            value: Value::Map(entries),
            loc,
        };
    };
    for be in base_entries {
        let p = if path.is_empty() {
            be.key.clone()
        } else {
            format!("{path}.{}", be.key)
        };
        match entries.iter_mut().find(|e| e.key == be.key) {
            None => entries.push(be),
            Some(te) if te.value.is_null() => te.value = be.value,
            Some(te) => {
                let tv = std::mem::replace(&mut te.value, Node::null());
                te.value = merge_value(tv, be.value, &p);
            }
        }
    }
    Node {
        value: Value::Map(entries),
        loc,
    }
}

fn merge_value(t: Node, b: Node, path: &str) -> Node {
    match (&t.value, &b.value) {
        (Value::Seq(ts), _) if path == "dns" && !ts.is_empty() => t,
        (Value::Seq(_), Value::Seq(_)) => {
            let Node {
                value: Value::Seq(ts),
                loc,
            } = t
            else {
                unreachable!()
            };
            let Value::Seq(bs) = b.value else {
                unreachable!()
            };
            let mut items = if matches!(path, "provision" | "probes" | "base") {
                bs.into_iter().chain(ts).collect::<Vec<_>>()
            } else {
                ts.into_iter().chain(bs).collect::<Vec<_>>()
            };
            if path == "mountTypesUnsupported" {
                let mut seen = Vec::new();
                items.retain(|n| {
                    let j = n.to_json();
                    if seen.contains(&j) {
                        false
                    } else {
                        seen.push(j);
                        true
                    }
                });
            }
            Node {
                value: Value::Seq(items),
                loc,
            }
        }
        (Value::Map(_), Value::Map(_)) => merge_documents(t, b, path),
        (Value::Str(ts), Value::Str(bs))
            if (path == "minimumLimaVersion" || path == "vmOpts.qemu.minimumVersion")
                && version_max(ts, bs) =>
        {
            b
        }
        _ => t,
    }
}

/// Merges list entries that share a key (`*` amends every earlier entry).
pub fn combine_list_entries(node: &mut Node, list: &str, key: &str) {
    let Some(Value::Seq(items)) = node.get_mut(list).map(|n| &mut n.value) else {
        return;
    };
    let key_of = |n: &Node| -> Option<String> {
        match &n.value {
            Value::Str(s) => Some(s.clone()),
            Value::Map(_) => n
                .get(key)
                .and_then(Node::as_str)
                .map(str::to_string)
                .or_else(|| {
                    (key == "mountPoint")
                        .then(|| n.get("location").and_then(Node::as_str).map(str::to_string))
                        .flatten()
                }),
            _ => None,
        }
    };
    let mut out: Vec<Node> = Vec::new();
    for item in std::mem::take(items) {
        match key_of(&item) {
            Some(k) if k == "*" => {
                for prev in out.iter_mut() {
                    fill_missing(prev, &item, key);
                }
            }
            Some(k) => {
                if let Some(prev) = out.iter_mut().find(|p| key_of(p).as_deref() == Some(&k)) {
                    fill_missing(prev, &item, key);
                } else {
                    out.push(item);
                }
            }
            None => out.push(item),
        }
    }
    *items = out;
}

fn fill_missing(prev: &mut Node, later: &Node, key: &str) {
    if let Value::Str(name) = &prev.value {
        let mut n = Node::map(vec![(key.to_string(), Node::str(name.clone()))]);
        n.loc = prev.loc.clone();
        *prev = n;
    }
    let Some(later_entries) = later.as_map() else {
        return;
    };
    let Some(entries) = prev.as_map_mut() else {
        return;
    };
    for e in later_entries {
        if e.key == key && e.value.as_str() == Some("*") {
            continue;
        }
        if !entries.iter().any(|x| x.key == e.key) {
            entries.push(Entry {
                key: e.key.clone(),
                key_loc: e.key_loc.clone(),
                value: e.value.clone(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::yaml::parse_single;

    fn node(s: &str) -> Node {
        parse_single("t", s).unwrap().unwrap()
    }

    #[test]
    fn merge_rules() {
        let t = node(
            "cpus: 2\nmounts: [{location: /t}]\nprovision: [{script: t}]\nvmOpts: {qemu: {minimumVersion: 7.0.0}}\nminimumLimaVersion: 1.0.0\n",
        );
        let b = node(
            "cpus: 4\nmemory: 1GiB\nmounts: [{location: /b}]\nprovision: [{script: b}]\nvmOpts: {qemu: {minimumVersion: 8.0.0, cpuType: {x86_64: max}}}\nminimumLimaVersion: 2.0.0\n",
        );
        let m = merge_documents(t, b, "").to_json();
        assert_eq!(m["cpus"], 2);
        assert_eq!(m["memory"], "1GiB");
        assert_eq!(
            m["mounts"],
            serde_json::json!([{"location": "/t"}, {"location": "/b"}])
        );
        assert_eq!(
            m["provision"],
            serde_json::json!([{"script": "b"}, {"script": "t"}])
        );
        assert_eq!(m["vmOpts"]["qemu"]["minimumVersion"], "8.0.0");
        assert_eq!(m["vmOpts"]["qemu"]["cpuType"]["x86_64"], "max");
        assert_eq!(m["minimumLimaVersion"], "2.0.0");
    }

    #[test]
    fn combine_entries_by_key() {
        let mut n = node(
            "additionalDisks: [a, {name: a, fsType: xfs}, b, {name: '*', format: false}]\nmounts: [{location: /x, writable: true}, {location: /x, writable: false, mountPoint: /x}]\n",
        );
        combine_list_entries(&mut n, "additionalDisks", "name");
        combine_list_entries(&mut n, "mounts", "mountPoint");
        let j = n.to_json();
        assert_eq!(
            j["additionalDisks"],
            serde_json::json!([{"name": "a", "fsType": "xfs", "format": false}, {"name": "b", "format": false}])
        );
        assert_eq!(
            j["mounts"],
            serde_json::json!([{"location": "/x", "writable": true, "mountPoint": "/x"}])
        );
    }

    #[test]
    fn names_from_locators() {
        assert_eq!(
            name_from_locator("template:ubuntu-24.04").as_deref(),
            Some("ubuntu-24.04")
        );
        assert_eq!(
            name_from_locator("./dir/My-VM.yaml").as_deref(),
            Some("my-vm")
        );
        assert_eq!(name_from_locator("/x/bad name.yaml"), None);
    }

    #[test]
    fn image_urls_make_templates() {
        let t = synthesize_image_template("https://x/debian-12-genericcloud-arm64-20240101.qcow2");
        assert_eq!(t.name.as_deref(), Some("debian-12"));
        assert!(t.text.contains("arch: aarch64"), "{}", t.text);
    }

    #[test]
    fn bundled_templates_are_found() {
        let store = TemplateStore::with_dirs(vec![]);
        let (text, path) = store.read("default").unwrap();
        assert!(path.is_none());
        assert!(text.contains("base:"));
        assert!(store.read("nope").is_err());
        assert!(store.read("../etc/passwd").is_err());
        assert!(store.list().iter().any(|(n, _)| n == "debian-12"));
        assert!(!store.list().iter().any(|(n, _)| n.starts_with('_')));
    }
}
