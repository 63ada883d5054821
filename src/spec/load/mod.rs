//! Reading templates by locator and embedding their `base:` templates and
//! `file:` scripts (reference §6.5, §6.6).
//!
//! Locators and the template search path are in `locator.rs`; Lima's merge
//! rules for `base:` in `merge.rs`.

mod locator;
mod merge;
pub mod remote;

use std::path::{Path, PathBuf};

use sha2::Digest as _;

pub use locator::{Origin, Template, TemplateStore, name_from_locator, read_locator};
pub use merge::{combine_list_entries, merge_documents};

use super::error::SpecError;
use super::yaml::{self, Node, Value};

/// Largest template (or embedding result) accepted, as in Lima.
pub const MAX_TEMPLATE_BYTES: u64 = 4 << 20;

/// Reads a template, `base:`/`file:` target, `_config` file or `lima.yaml`:
/// the one way the spec layer reads a file. Refuses anything that is not a
/// regular file (a FIFO would block `open(2)`/`read(2)` for ever, a device
/// could stream without end) and anything larger than [`MAX_TEMPLATE_BYTES`].
pub fn read_limited(path: &Path) -> Result<String, SpecError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| SpecError::Io {
        path: path.display().to_string(),
        source,
    };
    // Checked before opening: opening a FIFO for reading waits for a writer.
    check_regular(path, &std::fs::metadata(path).map_err(io)?)?;
    // The path may be swapped for a FIFO or device between the check and
    // the open: O_NONBLOCK makes that open return at once, and the type is
    // checked again on the descriptor actually read. (A regular file's
    // reads ignore O_NONBLOCK.)
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)
        .map_err(io)?;
    check_regular(path, &f.metadata().map_err(io)?)?;
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

/// What a file that is not a regular file is, in words (`None`: regular).
pub fn irregular_kind(t: std::fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    Some(if t.is_file() {
        return None;
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "not a regular file"
    })
}

fn check_regular(path: &Path, meta: &std::fs::Metadata) -> Result<(), SpecError> {
    match irregular_kind(meta.file_type()) {
        None => Ok(()),
        Some(kind) => Err(SpecError::NotRegular {
            path: path.display().to_string(),
            kind,
        }),
    }
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
    if let Origin::Url(u) = &tmpl.origin {
        return Ok(remote::join_url(u, locator));
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
        && b.exists()
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
