//! `limactl shell --preserve-env`: which host variables reach the guest
//! (Lima's pkg/envutil, reference §5.4 item 7). The block list keeps out what
//! describes the host session (PATH, HOME, SSH_*, …); `LIMA_SHELLENV_BLOCK`
//! replaces it (`+a,b` extends it) and `LIMA_SHELLENV_ALLOW` exempts names.

use crate::ssh::shell_quote;

/// A comma-separated pattern list: trimmed, empty entries dropped, each
/// pattern only of `[A-Za-z0-9_*]` (they name variables; `*` is a wildcard).
fn parse_list(var: &str, raw: &str) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for p in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((i, c)) = p
            .char_indices()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '*'))
        {
            anyhow::bail!(
                "Invalid {var} pattern: pattern {p:?} contains invalid character {c:?} at position {i}"
            );
        }
        out.push(p.to_string());
    }
    Ok(out)
}

/// The block list for `LIMA_SHELLENV_BLOCK`'s value (`None`: unset).
pub fn block_list(raw: Option<&str>) -> anyhow::Result<Vec<String>> {
    let default = || {
        super::shell_env_block()
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    match raw {
        None | Some("") => Ok(default()),
        Some(r) => match r.strip_prefix('+') {
            Some(extra) => {
                let mut l = default();
                l.extend(parse_list("LIMA_SHELLENV_BLOCK", extra)?);
                Ok(l)
            }
            None => parse_list("LIMA_SHELLENV_BLOCK", r),
        },
    }
}

pub fn allow_list(raw: Option<&str>) -> anyhow::Result<Vec<String>> {
    parse_list("LIMA_SHELLENV_ALLOW", raw.unwrap_or(""))
}

/// `*` matches any run of characters, anywhere in the pattern.
pub fn matches(name: &str, pattern: &str) -> bool {
    fn go(n: &[u8], p: &[u8]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some((b'*', rest)) => (0..=n.len()).any(|i| go(&n[i..], rest)),
            Some((c, rest)) => n.first() == Some(c) && go(&n[1..], rest),
        }
    }
    go(name.as_bytes(), pattern.as_bytes())
}

/// A name the guest's `env` can take as `NAME=value` (no `=`, no shell syntax).
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The variables of `vars` that pass: allowed ones always, then those no
/// block pattern matches. Names that are no shell identifier never pass.
pub fn filter(
    vars: impl IntoIterator<Item = (String, String)>,
    allow: &[String],
    block: &[String],
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = vars
        .into_iter()
        .filter(|(k, _)| is_identifier(k))
        .filter(|(k, _)| {
            allow.iter().any(|p| matches(k, p)) || !block.iter().any(|p| matches(k, p))
        })
        .collect();
    out.sort();
    out
}

/// `env K='v' … ` (with its trailing space), or "" when nothing passes.
pub fn env_prefix(vars: &[(String, String)]) -> String {
    if vars.is_empty() {
        return String::new();
    }
    let mut s = String::from("env ");
    for (k, v) in vars {
        s.push_str(&format!("{k}={} ", shell_quote(v)));
    }
    s
}

/// This process's environment filtered by the lists its variables set.
pub fn from_host() -> anyhow::Result<Vec<(String, String)>> {
    let block = block_list(std::env::var("LIMA_SHELLENV_BLOCK").ok().as_deref())?;
    let allow = allow_list(std::env::var("LIMA_SHELLENV_ALLOW").ok().as_deref())?;
    let vars = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
    Ok(filter(vars, &allow, &block))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn wildcards_match_anywhere() {
        assert!(matches("SSH_AUTH_SOCK", "SSH_*"));
        assert!(matches("_", "_*"));
        assert!(matches("MY_TOKEN_X", "*TOKEN*"));
        assert!(matches("PATH", "PATH"));
        assert!(!matches("XPATH", "PATH"));
        assert!(!matches("PATHX", "PATH"));
        assert!(!matches("LD", "LD_*"));
    }

    #[test]
    fn the_default_block_list_keeps_host_session_variables_out() {
        let block = block_list(None).unwrap();
        let got = filter(
            vars(&[
                ("PATH", "/usr/bin"),
                ("HOME", "/home/me"),
                ("SSH_AUTH_SOCK", "/tmp/s"),
                ("LD_PRELOAD", "x"),
                ("XDG_RUNTIME_DIR", "/run"),
                ("EDITOR", "vi"),
                ("MY_VAR", "a b"),
                ("BAD-NAME", "x"),
            ]),
            &[],
            &block,
        );
        assert_eq!(got, vars(&[("EDITOR", "vi"), ("MY_VAR", "a b")]));
        assert_eq!(env_prefix(&got), "env EDITOR=vi MY_VAR='a b' ");
        assert_eq!(env_prefix(&[]), "");
    }

    #[test]
    fn block_replaces_or_extends_and_allow_exempts() {
        let all = vars(&[("PATH", "p"), ("EDITOR", "vi"), ("SECRET_X", "s")]);
        let replaced = block_list(Some("SECRET_*, EDITOR")).unwrap();
        assert_eq!(filter(all.clone(), &[], &replaced), vars(&[("PATH", "p")]));
        let extended = block_list(Some("+SECRET_*")).unwrap();
        assert_eq!(
            filter(all.clone(), &[], &extended),
            vars(&[("EDITOR", "vi")])
        );
        let allow = allow_list(Some("PATH")).unwrap();
        assert_eq!(
            filter(all, &allow, &extended),
            vars(&[("EDITOR", "vi"), ("PATH", "p")])
        );
    }

    #[test]
    fn invalid_patterns_are_named() {
        let e = block_list(Some("A,B-C")).unwrap_err().to_string();
        assert!(
            e.contains("Invalid LIMA_SHELLENV_BLOCK pattern") && e.contains("'-'"),
            "{e}"
        );
        let e = allow_list(Some("$X")).unwrap_err().to_string();
        assert!(e.contains("Invalid LIMA_SHELLENV_ALLOW pattern"), "{e}");
    }
}
