//! Locators (`template:NAME`, paths, `file://`, image URLs, `-`) and the
//! template search path.

use std::path::{Path, PathBuf};

use super::{check_size, read_limited};
use crate::spec::error::SpecError;
use crate::spec::yaml::{self, Node, Value, quote_name};

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
    /// Fetched from this `http(s)://` URL (through the download cache).
    Url(String),
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

/// The text, for [`super::remote::follow_github`] to look for a redirect in.
impl AsRef<str> for Template {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

impl Template {
    /// The name used in messages and node locations.
    pub fn display(&self) -> String {
        match &self.origin {
            Origin::File(p) => p.display().to_string(),
            Origin::Template(n, _) => format!("template:{n}"),
            Origin::Stdin => "<stdin>".into(),
            Origin::Synthesized => self.locator.clone(),
            Origin::Url(u) => u.clone(),
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

    pub(super) fn dir(&self) -> Option<PathBuf> {
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
            // Anything there is read (a FIFO or directory is refused by
            // name), not passed over for a template further down the path.
            if p.exists() {
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
    crate::spec::names::validate_instance_name(stem)
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
    if let Some(rest) = locator.strip_prefix("github:") {
        warnings.push("The github: scheme is still EXPERIMENTAL".into());
        let (_, template) = super::remote::follow_github(
            locator,
            rest,
            &mut super::remote::github_default_branch,
            &mut |url| read_url(locator, url),
        )?;
        return Ok(template);
    }
    if locator.starts_with("http://") || locator.starts_with("https://") {
        if image_locator(locator) {
            return Ok(synthesize_image_template(locator));
        }
        return read_url(locator, locator);
    }
    if super::remote::custom_scheme(locator).is_some() && !Path::new(locator).exists() {
        let url = super::remote::transform_url(locator)?;
        return read_locator(&url, store, stdin, warnings);
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

/// A template at an `http(s)://` URL, through the download cache.
fn read_url(locator: &str, url: &str) -> Result<Template, SpecError> {
    let path = super::remote::fetch(url)?;
    let text = read_limited(&path)?;
    Ok(Template {
        locator: locator.into(),
        name: name_from_locator(url),
        origin: Origin::Url(url.into()),
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
    .unwrap_or_else(|| crate::spec::host::host_arch().to_string());
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
        name: crate::spec::names::validate_instance_name(&name)
            .ok()
            .map(|_| name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
