//! A small YAML document model that remembers where every node came from.
//!
//! `lima.yaml` files are parsed into [`Node`] trees (one per document) so that
//! every later error — a type mismatch, a failed validation, an unknown key —
//! can name the file, line and column it is about, even after `base:`
//! templates from other files were merged in. The same tree is what the
//! template merge rules operate on, and [`emit`] writes it back as YAML.
//!
//! The model lives here; `parse.rs` builds trees from text (aliases, merge
//! keys, YAML 1.2 core scalars) and `emit.rs` writes them back.

mod emit;
mod parse;

use std::fmt;
use std::sync::Arc;

pub use emit::{emit, emit_json, scalar_str};
pub use parse::{alias_byte_limit, parse_documents, parse_single};

/// Where a node starts: file, 1-based line, 1-based column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loc {
    pub file: Arc<str>,
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_loc: Option<Loc>,
    pub value: Node,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: Value,
    pub loc: Option<Loc>,
}

/// One step of a path into a document: a mapping key or a sequence index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathSeg {
    Key(String),
    Index(usize),
}

/// Renders a path the way Lima's messages spell fields: `mounts[2].mountPoint`.
pub fn path_string(path: &[PathSeg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            PathSeg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            PathSeg::Index(i) => {
                s.push_str(&format!("[{i}]"));
            }
        }
    }
    s
}

/// Parses a path written as `mounts[2].mountPoint` back into segments.
pub fn parse_path(s: &str) -> Vec<PathSeg> {
    let mut out = Vec::new();
    for part in s.split('.') {
        let mut rest = part;
        if let Some(i) = rest.find('[') {
            if i > 0 {
                out.push(PathSeg::Key(rest[..i].to_string()));
            }
            rest = &rest[i..];
            while let Some(stripped) = rest.strip_prefix('[') {
                let Some(end) = stripped.find(']') else { break };
                if let Ok(n) = stripped[..end].parse() {
                    out.push(PathSeg::Index(n));
                }
                rest = &stripped[end + 1..];
            }
        } else if !rest.is_empty() {
            out.push(PathSeg::Key(rest.to_string()));
        }
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum YamlError {
    #[error("{loc}: {message}")]
    Syntax { loc: Loc, message: String },
    #[error(
        "{file}: YAML aliases expand to more than {limit} nodes (an alias bomb?); refusing to load it"
    )]
    AliasBomb { file: Arc<str>, limit: usize },
    #[error(
        "{file}: YAML aliases expand to more than {limit} bytes (an alias bomb?); refusing to load it"
    )]
    AliasBytes { file: Arc<str>, limit: usize },
    #[error("{file}: nesting is deeper than {limit} levels; refusing to load it")]
    TooDeep { file: Arc<str>, limit: usize },
}

/// Upper bound on nodes produced by alias expansion, so that a "billion laughs"
/// document fails fast instead of exhausting memory.
pub const MAX_NODES: usize = 1_000_000;

impl Node {
    pub fn new(value: Value) -> Node {
        Node { value, loc: None }
    }
    pub fn null() -> Node {
        Node::new(Value::Null)
    }
    pub fn str(s: impl Into<String>) -> Node {
        Node::new(Value::Str(s.into()))
    }
    pub fn map(entries: Vec<(String, Node)>) -> Node {
        Node::new(Value::Map(
            entries
                .into_iter()
                .map(|(key, value)| Entry {
                    key,
                    key_loc: None,
                    value,
                })
                .collect(),
        ))
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&Vec<Entry>> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_map_mut(&mut self) -> Option<&mut Vec<Entry>> {
        match &mut self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&Vec<Node>> {
        match &self.value {
            Value::Seq(s) => Some(s),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|e| e.key == key)
            .map(|e| &e.value)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        self.as_map_mut()?
            .iter_mut()
            .find(|e| e.key == key)
            .map(|e| &mut e.value)
    }

    /// Sets `key` in a mapping, replacing an existing entry in place or appending.
    pub fn set(&mut self, key: &str, value: Node) {
        if let Some(m) = self.as_map_mut() {
            if let Some(e) = m.iter_mut().find(|e| e.key == key) {
                e.value = value;
            } else {
                m.push(Entry {
                    key: key.to_string(),
                    key_loc: None,
                    value,
                });
            }
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<Node> {
        let m = self.as_map_mut()?;
        let i = m.iter().position(|e| e.key == key)?;
        Some(m.remove(i).value)
    }

    /// Location of the node at `path`; for a missing leaf, the closest
    /// existing ancestor (a mapping key's location is preferred, since that is
    /// what a reader looks for).
    pub fn locate(&self, path: &[PathSeg]) -> Option<Loc> {
        let mut cur = self;
        let mut best = self.loc.clone();
        for seg in path {
            match (seg, &cur.value) {
                (PathSeg::Key(k), Value::Map(m)) => match m.iter().find(|e| &e.key == k) {
                    Some(e) => {
                        best = e.key_loc.clone().or_else(|| e.value.loc.clone()).or(best);
                        cur = &e.value;
                    }
                    None => return best,
                },
                (PathSeg::Index(i), Value::Seq(s)) => match s.get(*i) {
                    Some(n) => {
                        best = n.loc.clone().or(best);
                        cur = n;
                    }
                    None => return best,
                },
                _ => return best,
            }
        }
        best
    }

    /// The node at `path`, if present.
    pub fn at(&self, path: &[PathSeg]) -> Option<&Node> {
        let mut cur = self;
        for seg in path {
            cur = match (seg, &cur.value) {
                (PathSeg::Key(k), Value::Map(_)) => cur.get(k)?,
                (PathSeg::Index(i), Value::Seq(s)) => s.get(*i)?,
                _ => return None,
            };
        }
        Some(cur)
    }

    /// Converts to JSON. Mapping order is kept; non-finite floats become strings.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(J::Number)
                .unwrap_or_else(|| J::String(format_float(*f))),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(s) => J::Array(s.iter().map(Node::to_json).collect()),
            Value::Map(m) => J::Object(
                m.iter()
                    .map(|e| (e.key.clone(), e.value.to_json()))
                    .collect(),
            ),
        }
    }

    pub fn from_json(v: &serde_json::Value) -> Node {
        use serde_json::Value as J;
        Node::new(match v {
            J::Null => Value::Null,
            J::Bool(b) => Value::Bool(*b),
            J::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => match n.as_u64() {
                    Some(u) => Value::Float(u as f64),
                    None => Value::Float(n.as_f64().unwrap_or(0.0)),
                },
            },
            J::String(s) => Value::Str(s.clone()),
            J::Array(a) => Value::Seq(a.iter().map(Node::from_json).collect()),
            J::Object(o) => Value::Map(
                o.iter()
                    .map(|(k, v)| Entry {
                        key: k.clone(),
                        key_loc: None,
                        value: Node::from_json(v),
                    })
                    .collect(),
            ),
        })
    }
}

pub(crate) fn format_float(f: f64) -> String {
    if f.is_nan() {
        ".nan".into()
    } else if f.is_infinite() {
        if f > 0.0 {
            ".inf".into()
        } else {
            "-.inf".into()
        }
    } else if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{f:.1}")
    } else {
        format!("{f}")
    }
}

/// Lima prints names in messages with Go's `%#q`: between backticks when that
/// is unambiguous, otherwise as a Go double-quoted string.
pub fn quote_name(s: &str) -> String {
    if !s.contains('`') && s.chars().all(|c| !c.is_control() || c == '\t') {
        format!("`{s}`")
    } else {
        go_quote(s)
    }
}

/// Go's `strconv.Quote`.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests;
