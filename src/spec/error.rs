//! Errors of the spec layer. Each names the file (and where possible the line,
//! column and field) and says what to do.

use std::path::PathBuf;

use super::yaml::{Loc, YamlError, quote_name};

/// A validation problem with the place in the source it is about.
#[derive(Clone, Debug, PartialEq)]
pub struct LocatedError {
    pub loc: Option<Loc>,
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for LocatedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.loc {
            Some(l) => write!(f, "{l}: {}", self.message),
            None => write!(f, "{}", self.message),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", quote_name(path))]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// FIFOs, sockets, devices and directories are never read: they could
    /// block the reader for ever or never end.
    #[error(
        "cannot read {}: it is {kind}, not a regular file; give the path of a YAML file",
        quote_name(path)
    )]
    NotRegular { path: String, kind: &'static str },
    /// Lima refuses templates over 4 MiB.
    #[error(
        "{} is larger than {} bytes; refusing to load it",
        quote_name(file),
        limit
    )]
    TooLarge { file: String, limit: u64 },
    #[error(transparent)]
    Yaml(#[from] YamlError),
    #[error("{}: expected a mapping of lima.yaml fields, found {found}", loc.as_ref().map(|l| l.to_string()).unwrap_or_else(|| quote_name(file)))]
    NotMapping {
        file: String,
        loc: Option<Loc>,
        found: String,
    },
    #[error("{}: field `{field}`: {message}", loc.as_ref().map(|l| l.to_string()).unwrap_or_else(|| quote_name(file)))]
    Type {
        file: String,
        loc: Option<Loc>,
        field: String,
        message: String,
    },
    #[error("template {} not found (searched {} and the bundled templates; see `limactl template list`)", quote_name(name), searched.iter().map(|p| quote_name(&p.display().to_string())).collect::<Vec<_>>().join(", "))]
    TemplateNotFound {
        name: String,
        searched: Vec<PathBuf>,
    },
    #[error("locator {}: {message}", quote_name(locator))]
    Locator { locator: String, message: String },
    #[error(
        "{}: expected digest {}, got {}",
        quote_name(what),
        quote_name(expected),
        quote_name(actual)
    )]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("base template loop detected: {}", chain.iter().map(|c| quote_name(c)).collect::<Vec<_>>().join(" → "))]
    BaseLoop { chain: Vec<String> },
    #[error(
        "{} is empty; a lima.yaml needs at least `images` (see `limactl template copy template:default -`)",
        quote_name(file)
    )]
    Empty { file: String },
    /// A configuration was converted to [`crate::spec::Spec`] before its
    /// defaults were filled or without passing validation.
    #[error(
        "field `{field}` {message}: only a configuration filled with defaults and validated (`spec::resolve`) converts to a Spec"
    )]
    NotResolved { field: String, message: String },
    #[error("{}", format_invalid(file, errors))]
    Invalid {
        file: String,
        errors: Vec<LocatedError>,
    },
}

fn format_invalid(file: &str, errors: &[LocatedError]) -> String {
    if errors.len() == 1 {
        let e = &errors[0];
        return match &e.loc {
            Some(_) => e.to_string(),
            None => format!("{}: {}", quote_name(file), e.message),
        };
    }
    let mut s = format!("{}: {} errors:", quote_name(file), errors.len());
    for e in errors {
        s.push_str("\n  ");
        s.push_str(&e.to_string());
    }
    s
}
