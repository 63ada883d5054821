//! Template locators that name something on the network (reference §6.6):
//! `http(s)://…` fetched through the download cache (revalidated there, so a
//! changed template is seen), `github:ORG[/REPO][/PATH][@BRANCH]` resolved
//! to its raw-content URL as Lima resolves it, and other `SCHEME:` locators
//! turned into a URL by a `limactl-url-SCHEME` plugin.

use std::path::PathBuf;

use crate::spec::error::SpecError;

fn locator_err(locator: &str, message: impl Into<String>) -> SpecError {
    SpecError::Locator {
        locator: locator.into(),
        message: message.into(),
    }
}

/// `github:` without its scheme → `https://raw.githubusercontent.com/…`.
/// `default_branch(org, repo)` is asked only when no `@BRANCH` is given.
pub fn github_url(
    rest: &str,
    default_branch: &mut dyn FnMut(&str, &str) -> Result<String, String>,
) -> Result<String, String> {
    let (input, branch) = match rest.rsplit_once('@') {
        Some((i, b)) => (i, Some(b.to_string())),
        None => (rest, None),
    };
    let parts: Vec<&str> = input.split('/').collect();
    let org = parts[0];
    let repo = parts
        .get(1)
        .copied()
        .filter(|r| !r.is_empty())
        .unwrap_or(org);
    let valid = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    if !valid(org) || !valid(repo) {
        return Err(format!(
            "expected github:ORG[/REPO][/PATH][@BRANCH], got organisation {org:?} and repository {repo:?}"
        ));
    }
    let mut path = parts.get(2..).map(|p| p.join("/")).unwrap_or_default();
    if path.split('/').any(|c| c == "..") {
        return Err("`..` is not allowed in the path".into());
    }
    if path.is_empty() || path.ends_with('/') {
        path.push_str(".lima.yaml");
    } else {
        // A hidden file's leading dot is no extension.
        let file = path.rsplit('/').next().unwrap_or(&path);
        if !file[1..].contains('.') {
            path.push_str(".yaml");
        }
    }
    let branch = match branch {
        Some(b) if !b.is_empty() => b,
        Some(_) => return Err("empty branch after `@`".into()),
        None => default_branch(org, repo)?,
    };
    Ok(format!(
        "https://raw.githubusercontent.com/{org}/{repo}/{branch}/{path}"
    ))
}

/// The `github:` locator a fetched template redirects to, if its whole
/// content is one (reference §6.6): a single line `github:ORG[/…]`, of the
/// same organisation and without a branch of its own (the first locator's
/// branch is kept, so a redirect cannot move to another ref).
pub fn github_redirect(org: &str, text: &str) -> Result<Option<String>, String> {
    let line = text.trim();
    let Some(rest) = line.strip_prefix("github:") else {
        return Ok(None);
    };
    if line.contains(char::is_whitespace) {
        return Ok(None);
    }
    if rest.contains('@') {
        return Err(format!(
            "the redirect `{line}` names a branch: a redirect keeps the branch of the first locator"
        ));
    }
    let target_org = rest.split('/').next().unwrap_or("");
    if target_org != org {
        return Err(format!(
            "the redirect `{line}` leaves the organisation `{org}`: redirects stay within one"
        ));
    }
    Ok(Some(rest.to_string()))
}

/// Resolves `github:REST` and follows its redirects: `fetch(url)` reads the
/// template at a raw-content URL. Gives the final URL and what `fetch` read.
pub fn follow_github<T: AsRef<str>>(
    locator: &str,
    rest: &str,
    default_branch: &mut dyn FnMut(&str, &str) -> Result<String, String>,
    fetch: &mut dyn FnMut(&str) -> Result<T, SpecError>,
) -> Result<(String, T), SpecError> {
    let org = rest.split(['/', '@']).next().unwrap_or("").to_string();
    let mut branch = None;
    let mut current = rest.to_string();
    let mut seen: Vec<String> = Vec::new();
    loop {
        let url = github_url(&current, &mut |o, r| {
            let b = default_branch(o, r)?;
            branch = Some(b.clone());
            Ok(b)
        })
        .map_err(|m| locator_err(locator, m))?;
        if branch.is_none() {
            branch = current.rsplit_once('@').map(|(_, b)| b.to_string());
        }
        if seen.contains(&url) {
            return Err(locator_err(
                locator,
                format!("custom locator `{locator}` has a redirect loop"),
            ));
        }
        seen.push(url.clone());
        let got = fetch(&url)?;
        match github_redirect(&org, got.as_ref()).map_err(|m| locator_err(locator, m))? {
            None => return Ok((url, got)),
            Some(next) => {
                let b = branch.clone().unwrap_or_default();
                current = format!("{next}@{b}");
            }
        }
    }
}

/// The repository's default branch from the GitHub API (`GH_TOKEN` or
/// `GITHUB_TOKEN` authenticates, as in Lima).
pub fn github_default_branch(org: &str, repo: &str) -> Result<String, String> {
    let url = format!("https://api.github.com/repos/{org}/{repo}");
    let mut req = ureq::get(&url).header("User-Agent", "limactl");
    if let Some(t) = std::env::var("GH_TOKEN")
        .ok()
        .or_else(|| std::env::var("GITHUB_TOKEN").ok())
        .filter(|t| !t.is_empty())
    {
        req = req.header("Authorization", &format!("token {t}"));
    }
    let body = req
        .call()
        .map_err(|e| {
            format!("cannot ask {url} for the default branch: {e} (name one: github:…@BRANCH)")
        })?
        .into_body()
        .with_config()
        .limit(1 << 20)
        .read_to_string()
        .map_err(|e| format!("cannot read {url}: {e}"))?;
    let v: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| format!("{url} answered no JSON: {e}"))?;
    v["default_branch"]
        .as_str()
        .map(String::from)
        .ok_or_else(|| format!("{url} names no default_branch"))
}

/// Schemes read directly; any other `SCHEME:` needs a `limactl-url-SCHEME`.
fn builtin(scheme: &str) -> bool {
    ["http", "https", "file", "template", "github"].contains(&scheme)
}

/// A plugin-like scheme of `locator` (`SCHEME:` with SCHEME a word), if any.
pub fn custom_scheme(locator: &str) -> Option<&str> {
    let (scheme, _) = locator.split_once(':')?;
    let word = !scheme.is_empty()
        && scheme.len() > 1 // `C:` style paths are not schemes
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-');
    (word && !builtin(scheme)).then_some(scheme)
}

/// `limactl template url`: the URL a locator stands for (`github:` and
/// plugin schemes transformed, others as they are).
pub fn transform_url(locator: &str) -> Result<String, SpecError> {
    if let Some(rest) = locator.strip_prefix("github:") {
        return github_url(rest, &mut github_default_branch).map_err(|m| locator_err(locator, m));
    }
    if let Some(scheme) = custom_scheme(locator) {
        return plugin_url(locator, scheme);
    }
    Ok(locator.to_string())
}

/// Runs `limactl-url-SCHEME REST` (PATH, then libexec next to limactl): its
/// first output line is the URL.
fn plugin_url(locator: &str, scheme: &str) -> Result<String, SpecError> {
    let name = format!("limactl-url-{scheme}");
    let path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain(
            std::env::current_exe()
                .ok()
                .and_then(|e| e.parent()?.parent().map(|p| p.join("libexec/lima"))),
        )
        .map(|d| d.join(&name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            locator_err(
                locator,
                format!("unsupported locator scheme `{scheme}` (no `{name}` plugin on PATH)"),
            )
        })?;
    let rest = &locator[scheme.len() + 1..];
    let out = std::process::Command::new(&path)
        .arg(rest)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| locator_err(locator, format!("cannot run {}: {e}", path.display())))?;
    if !out.status.success() {
        return Err(locator_err(
            locator,
            format!(
                "{} failed: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    let url = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    if url.is_empty() {
        return Err(locator_err(
            locator,
            format!("{} printed no URL", path.display()),
        ));
    }
    Ok(url)
}

/// The cached copy of an `http(s)://` template (fetched or revalidated).
pub fn fetch(url: &str) -> Result<PathBuf, SpecError> {
    let opts = crate::image::FetchOptions {
        progress: crate::image::ProgressMode::Quiet,
        ..Default::default()
    };
    let req = crate::image::Request {
        location: url,
        digest: None,
        decompress: false,
        description: url,
    };
    crate::image::cache_only(&req, &opts).map_err(|e| locator_err(url, e.to_string()))
}

/// A relative locator inside the template at `url`: next to it (`..`
/// never climbs above the host).
pub fn join_url(url: &str, relative: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("https", url));
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    segs.pop(); // the template's own file name
    for s in relative.split('/') {
        match s {
            "." | "" => {}
            ".." => {
                segs.pop();
            }
            s => segs.push(s),
        }
    }
    format!("{scheme}://{host}/{}", segs.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gh(rest: &str) -> Result<String, String> {
        github_url(rest, &mut |org, repo| {
            Ok(format!("default-of-{org}-{repo}"))
        })
    }

    #[test]
    fn github_locators_resolve_as_lima_resolves_them() {
        let raw = "https://raw.githubusercontent.com";
        assert_eq!(
            gh("lima-vm").unwrap(),
            format!("{raw}/lima-vm/lima-vm/default-of-lima-vm-lima-vm/.lima.yaml")
        );
        assert_eq!(
            gh("lima-vm/lima").unwrap(),
            format!("{raw}/lima-vm/lima/default-of-lima-vm-lima/.lima.yaml")
        );
        assert_eq!(
            gh("lima-vm/lima/templates/docker@master").unwrap(),
            format!("{raw}/lima-vm/lima/master/templates/docker.yaml")
        );
        assert_eq!(
            gh("o/r/dir/@v1").unwrap(),
            format!("{raw}/o/r/v1/dir/.lima.yaml")
        );
        assert_eq!(gh("o/r/a/x.yml@b").unwrap(), format!("{raw}/o/r/b/a/x.yml"));
        assert_eq!(
            gh("o/r/.hidden@b").unwrap(),
            format!("{raw}/o/r/b/.hidden.yaml")
        );
        assert!(gh("").is_err());
        assert!(gh("o/r/../x@b").is_err());
        assert!(gh("o/r@").is_err());
        assert!(gh("o/r?x=1").is_err());
    }

    #[test]
    fn the_default_branch_is_asked_only_without_one() {
        let mut asked = 0;
        github_url("o/r/x@main", &mut |_, _| {
            asked += 1;
            Ok("m".into())
        })
        .unwrap();
        assert_eq!(asked, 0);
    }

    #[test]
    fn schemes_other_than_builtin_ones_are_plugins() {
        assert_eq!(custom_scheme("oci:foo"), Some("oci"));
        assert_eq!(custom_scheme("github:x"), None);
        assert_eq!(custom_scheme("https://x"), None);
        assert_eq!(custom_scheme("/abs/path"), None);
        assert_eq!(custom_scheme("C:x"), None);
        assert_eq!(
            transform_url("https://h/x.yaml").unwrap(),
            "https://h/x.yaml"
        );
        let e = transform_url("nosuch-scheme-xyz:a")
            .unwrap_err()
            .to_string();
        assert!(e.contains("limactl-url-nosuch-scheme-xyz"), "{e}");
    }

    #[test]
    fn relative_locators_resolve_next_to_the_url() {
        assert_eq!(join_url("http://h/a/b.yaml", "c.yaml"), "http://h/a/c.yaml");
        assert_eq!(
            join_url("http://h/a/b.yaml", "../c.yaml"),
            "http://h/c.yaml"
        );
        assert_eq!(
            join_url("http://h/b.yaml", "../../c.yaml"),
            "http://h/c.yaml"
        );
    }

    #[test]
    fn github_redirects_are_followed_within_the_organisation_and_branch() {
        let raw = "https://raw.githubusercontent.com";
        let files = std::collections::BTreeMap::from([
            (
                format!("{raw}/o/o/dev/.lima.yaml"),
                "github:o/r/templates/x\n",
            ),
            (format!("{raw}/o/r/dev/templates/x.yaml"), "images: []\n"),
            (format!("{raw}/o/loop/b/a.yaml"), "github:o/loop/b"),
            (format!("{raw}/o/loop/b/b.yaml"), "github:o/loop/a"),
            (format!("{raw}/o/away/b/.lima.yaml"), "github:evil/x"),
            (format!("{raw}/o/pin/b/.lima.yaml"), "github:o/x@other"),
        ]);
        let mut asked = Vec::new();
        let mut fetch = |url: &str| -> Result<String, SpecError> {
            asked.push(url.to_string());
            files
                .get(url)
                .map(|t| t.to_string())
                .ok_or_else(|| locator_err(url, "404"))
        };
        let (url, text) =
            follow_github("github:o", "o", &mut |_, _| Ok("dev".into()), &mut fetch).unwrap();
        assert_eq!(url, format!("{raw}/o/r/dev/templates/x.yaml"));
        assert_eq!(text, "images: []\n");
        let mut nobranch = |_: &str, _: &str| -> Result<String, String> { Err("no API".into()) };
        let e = follow_github("github:o/loop/a@b", "o/loop/a@b", &mut nobranch, &mut fetch)
            .unwrap_err()
            .to_string();
        assert!(e.contains("has a redirect loop"), "{e}");
        let e = follow_github("l", "o/away@b", &mut nobranch, &mut fetch)
            .unwrap_err()
            .to_string();
        assert!(e.contains("leaves the organisation `o`"), "{e}");
        let e = follow_github("l", "o/pin@b", &mut nobranch, &mut fetch)
            .unwrap_err()
            .to_string();
        assert!(e.contains("names a branch"), "{e}");
        // A template that merely mentions a locator is no redirect.
        assert_eq!(github_redirect("o", "base: github:o/x\n").unwrap(), None);
        assert_eq!(
            github_redirect("o", "github:o/x\nimages: []").unwrap(),
            None
        );
    }
}
