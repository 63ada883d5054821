//! A small YAML document model that remembers where every node came from.
//!
//! `lima.yaml` files are parsed into [`Node`] trees (one per document) so that
//! every later error — a type mismatch, a failed validation, an unknown key —
//! can name the file, line and column it is about, even after `base:`
//! templates from other files were merged in. The same tree is what the
//! template merge rules operate on, and [`emit`] writes it back as YAML.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};

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
    #[error("{file}: nesting is deeper than {limit} levels; refusing to load it")]
    TooDeep { file: Arc<str>, limit: usize },
}

/// Upper bound on nodes produced by alias expansion, so that a "billion laughs"
/// document fails fast instead of exhausting memory.
pub const MAX_NODES: usize = 1_000_000;
const MAX_DEPTH: usize = 256;

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

/// Parses every document of a YAML stream. An empty stream yields no documents.
pub fn parse_documents(file: &str, text: &str) -> Result<Vec<Node>, YamlError> {
    let file: Arc<str> = Arc::from(file);
    let mut b = Builder {
        file: file.clone(),
        anchors: Default::default(),
        nodes: 0,
        stack: Vec::new(),
        docs: Vec::new(),
    };
    let mut parser = Parser::new_from_str(text);
    while let Some(ev) = parser.next_event() {
        let (ev, span) = ev.map_err(|e| YamlError::Syntax {
            loc: Loc {
                file: file.clone(),
                line: e.marker().line(),
                col: e.marker().col() + 1,
            },
            message: e.info().to_string(),
        })?;
        b.on_event(ev, span)?;
    }
    Ok(b.docs)
}

/// Parses a single-document YAML text. An empty text yields `None`.
pub fn parse_single(file: &str, text: &str) -> Result<Option<Node>, YamlError> {
    let mut docs = parse_documents(file, text)?;
    if docs.len() > 1 {
        let loc = docs[1].loc.clone().unwrap_or(Loc {
            file: Arc::from(file),
            line: 1,
            col: 1,
        });
        return Err(YamlError::Syntax {
            loc,
            message: "expected a single YAML document, found several (`---`)".into(),
        });
    }
    Ok(docs.pop())
}

enum Frame {
    Seq {
        anchor: usize,
        loc: Loc,
        items: Vec<Node>,
    },
    Map {
        anchor: usize,
        loc: Loc,
        entries: Vec<Entry>,
        pending_key: Option<(Node, Loc)>,
        /// Keys that came from a `<<` merge; an explicit key may override them.
        merged: Vec<String>,
    },
}

struct Builder {
    file: Arc<str>,
    anchors: std::collections::HashMap<usize, (Node, usize)>,
    nodes: usize,
    stack: Vec<Frame>,
    docs: Vec<Node>,
}

fn node_size(n: &Node) -> usize {
    match &n.value {
        Value::Seq(s) => 1 + s.iter().map(node_size).sum::<usize>(),
        Value::Map(m) => 1 + m.iter().map(|e| 1 + node_size(&e.value)).sum::<usize>(),
        _ => 1,
    }
}

impl Builder {
    fn loc(&self, span: &Span) -> Loc {
        Loc {
            file: self.file.clone(),
            line: span.start.line(),
            col: span.start.col() + 1,
        }
    }

    fn count(&mut self, n: usize) -> Result<(), YamlError> {
        self.nodes += n;
        if self.nodes > MAX_NODES {
            return Err(YamlError::AliasBomb {
                file: self.file.clone(),
                limit: MAX_NODES,
            });
        }
        Ok(())
    }

    fn on_event(&mut self, ev: Event<'_>, span: Span) -> Result<(), YamlError> {
        match ev {
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart(_)
            | Event::DocumentEnd => Ok(()),
            Event::Alias(id) => {
                let loc = self.loc(&span);
                let Some((node, size)) = self.anchors.get(&id).cloned() else {
                    return Err(YamlError::Syntax {
                        loc,
                        message: "unknown alias".into(),
                    });
                };
                self.count(size)?;
                let mut node = node;
                node.loc = Some(loc);
                self.push(node, span)
            }
            Event::Scalar(value, style, anchor, tag) => {
                self.count(1)?;
                let loc = self.loc(&span);
                let value = resolve_scalar(&value, style, tag.as_deref()).map_err(|message| {
                    YamlError::Syntax {
                        loc: loc.clone(),
                        message,
                    }
                })?;
                let node = Node {
                    value,
                    loc: Some(loc),
                };
                if anchor > 0 {
                    self.anchors.insert(anchor, (node.clone(), 1));
                }
                self.push(node, span)
            }
            Event::SequenceStart(anchor, _) => {
                self.count(1)?;
                if self.stack.len() >= MAX_DEPTH {
                    return Err(YamlError::TooDeep {
                        file: self.file.clone(),
                        limit: MAX_DEPTH,
                    });
                }
                let loc = self.loc(&span);
                self.stack.push(Frame::Seq {
                    anchor,
                    loc,
                    items: Vec::new(),
                });
                Ok(())
            }
            Event::MappingStart(anchor, _) => {
                self.count(1)?;
                if self.stack.len() >= MAX_DEPTH {
                    return Err(YamlError::TooDeep {
                        file: self.file.clone(),
                        limit: MAX_DEPTH,
                    });
                }
                let loc = self.loc(&span);
                self.stack.push(Frame::Map {
                    anchor,
                    loc,
                    entries: Vec::new(),
                    pending_key: None,
                    merged: Vec::new(),
                });
                Ok(())
            }
            Event::SequenceEnd => {
                let Some(Frame::Seq { anchor, loc, items }) = self.stack.pop() else {
                    unreachable!("parser emits balanced sequence events")
                };
                let node = Node {
                    value: Value::Seq(items),
                    loc: Some(loc),
                };
                if anchor > 0 {
                    let size = node_size(&node);
                    self.anchors.insert(anchor, (node.clone(), size));
                }
                self.push(node, span)
            }
            Event::MappingEnd => {
                let Some(Frame::Map {
                    anchor,
                    loc,
                    entries,
                    ..
                }) = self.stack.pop()
                else {
                    unreachable!("parser emits balanced mapping events")
                };
                let node = Node {
                    value: Value::Map(entries),
                    loc: Some(loc),
                };
                if anchor > 0 {
                    let size = node_size(&node);
                    self.anchors.insert(anchor, (node.clone(), size));
                }
                self.push(node, span)
            }
        }
    }

    fn push(&mut self, node: Node, span: Span) -> Result<(), YamlError> {
        let file = self.file.clone();
        match self.stack.last_mut() {
            None => {
                self.docs.push(node);
                Ok(())
            }
            Some(Frame::Seq { items, .. }) => {
                items.push(node);
                Ok(())
            }
            Some(Frame::Map {
                entries,
                pending_key,
                merged,
                ..
            }) => match pending_key.take() {
                None => {
                    let key_loc = node.loc.clone().unwrap_or(Loc {
                        file,
                        line: span.start.line(),
                        col: span.start.col() + 1,
                    });
                    *pending_key = Some((node, key_loc));
                    Ok(())
                }
                Some((key, key_loc)) => {
                    let key_str = match &key.value {
                        Value::Str(s) => s.clone(),
                        Value::Int(i) => i.to_string(),
                        Value::Bool(b) => b.to_string(),
                        Value::Float(f) => format_float(*f),
                        Value::Null => "null".to_string(),
                        Value::Seq(_) | Value::Map(_) => {
                            return Err(YamlError::Syntax {
                                loc: key_loc,
                                message: "mapping keys must be scalars".into(),
                            });
                        }
                    };
                    if key_str == "<<" {
                        merge_key(entries, merged, node);
                        return Ok(());
                    }
                    if let Some(i) = merged.iter().position(|k| *k == key_str) {
                        merged.remove(i);
                        entries.retain(|e| e.key != key_str);
                    }
                    if entries.iter().any(|e| e.key == key_str) {
                        return Err(YamlError::Syntax {
                            loc: key_loc,
                            message: format!(
                                "mapping key {} already defined",
                                quote_name(&key_str)
                            ),
                        });
                    }
                    entries.push(Entry {
                        key: key_str,
                        key_loc: Some(key_loc),
                        value: node,
                    });
                    Ok(())
                }
            },
        }
    }
}

/// YAML 1.1 merge keys (`<<: *base`): entries not already present are added.
fn merge_key(entries: &mut Vec<Entry>, merged: &mut Vec<String>, value: Node) {
    let sources: Vec<Node> = match value.value {
        Value::Seq(s) => s,
        _ => vec![value],
    };
    for src in sources {
        if let Value::Map(m) = src.value {
            for e in m {
                if !entries.iter().any(|x| x.key == e.key) {
                    merged.push(e.key.clone());
                    entries.push(e);
                }
            }
        }
    }
}

fn resolve_scalar(s: &str, style: ScalarStyle, tag: Option<&Tag>) -> Result<Value, String> {
    if let Some(tag) = tag
        && (tag.handle == "tag:yaml.org,2002:" || tag.handle == "!!")
    {
        return match tag.suffix.as_str() {
            "str" => Ok(Value::Str(s.to_string())),
            "binary" => decode_base64(s)
                .and_then(|b| String::from_utf8(b).ok())
                .map(Value::Str)
                .ok_or_else(|| "invalid !!binary value".to_string()),
            "int" => parse_int(s.trim())
                .map(Value::Int)
                .ok_or_else(|| format!("invalid !!int value {}", quote_name(s))),
            "float" => parse_float(s.trim())
                .or_else(|| parse_int(s.trim()).map(|i| i as f64))
                .map(Value::Float)
                .ok_or_else(|| format!("invalid !!float value {}", quote_name(s))),
            "bool" => parse_bool(s.trim())
                .map(Value::Bool)
                .ok_or_else(|| format!("invalid !!bool value {}", quote_name(s))),
            "null" => Ok(Value::Null),
            _ => Ok(plain_scalar(s)),
        };
    }
    Ok(match style {
        ScalarStyle::Plain => plain_scalar(s),
        _ => Value::Str(s.to_string()),
    })
}

fn plain_scalar(s: &str) -> Value {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        _ => {}
    }
    if let Some(b) = parse_bool(s) {
        return Value::Bool(b);
    }
    if let Some(i) = parse_int(s) {
        return Value::Int(i);
    }
    if let Some(f) = parse_float(s) {
        return Value::Float(f);
    }
    Value::Str(s.to_string())
}

fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

fn parse_int(s: &str) -> Option<i64> {
    let (neg, digits) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() {
        return None;
    }
    let v = if let Some(h) = digits.strip_prefix("0x") {
        if h.is_empty() || !h.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        i64::from_str_radix(h, 16).ok()?
    } else if let Some(o) = digits.strip_prefix("0o") {
        if o.is_empty() || !o.bytes().all(|c| (b'0'..=b'7').contains(&c)) {
            return None;
        }
        i64::from_str_radix(o, 8).ok()?
    } else {
        if !digits.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        digits.parse::<i64>().ok()?
    };
    Some(if neg { -v } else { v })
}

fn parse_float(s: &str) -> Option<f64> {
    match s {
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Some(f64::NAN),
        _ => {}
    }
    let re = float_regex();
    if re.is_match(s) { s.parse().ok() } else { None }
}

fn float_regex() -> &'static regex::Regex {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| {
        regex::Regex::new(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$").unwrap()
    })
}

fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut buf = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            b' ' | b'\n' | b'\r' | b'\t' => continue,
            _ => return None,
        };
        buf = (buf << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
            buf &= (1 << bits) - 1;
        }
    }
    Some(out)
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

// ---------------------------------------------------------------------------
// Emitter

/// Writes a node as a block-style YAML document (sequences not indented under
/// their key, as Lima's yamlfmt settings produce).
pub fn emit(node: &Node) -> String {
    let mut out = String::new();
    match &node.value {
        Value::Map(m) if !m.is_empty() => emit_map(&mut out, m, 0),
        Value::Seq(s) if !s.is_empty() => emit_seq(&mut out, s, 0),
        _ => {
            out.push_str(&scalar_inline(node));
            out.push('\n');
        }
    }
    out
}

/// Convenience: emit a JSON value as YAML.
pub fn emit_json(v: &serde_json::Value) -> String {
    emit(&Node::from_json(v))
}

fn indent(out: &mut String, n: usize) {
    for _ in 0..n {
        out.push(' ');
    }
}

fn is_block(n: &Node) -> bool {
    match &n.value {
        Value::Map(m) => !m.is_empty(),
        Value::Seq(s) => !s.is_empty(),
        _ => false,
    }
}

fn emit_map(out: &mut String, m: &[Entry], ind: usize) {
    for (i, e) in m.iter().enumerate() {
        if i > 0 {
            indent(out, ind);
        }
        out.push_str(&scalar_str(&e.key));
        out.push(':');
        emit_value_after_key(out, &e.value, ind);
    }
}

fn emit_value_after_key(out: &mut String, v: &Node, ind: usize) {
    match &v.value {
        Value::Map(m) if !m.is_empty() => {
            out.push('\n');
            indent(out, ind + 2);
            emit_map(out, m, ind + 2);
        }
        Value::Seq(s) if !s.is_empty() => {
            out.push('\n');
            indent(out, ind);
            emit_seq(out, s, ind);
        }
        Value::Str(s) if block_literal_ok(s) => {
            out.push(' ');
            emit_literal(out, s, ind + 2);
        }
        _ => {
            out.push(' ');
            out.push_str(&scalar_inline(v));
            out.push('\n');
        }
    }
}

fn emit_seq(out: &mut String, s: &[Node], ind: usize) {
    for (i, item) in s.iter().enumerate() {
        if i > 0 {
            indent(out, ind);
        }
        out.push_str("- ");
        match &item.value {
            Value::Map(m) if !m.is_empty() => emit_map(out, m, ind + 2),
            Value::Seq(inner) if !inner.is_empty() => emit_seq(out, inner, ind + 2),
            Value::Str(st) if block_literal_ok(st) => emit_literal(out, st, ind + 2),
            _ => {
                out.push_str(&scalar_inline(item));
                out.push('\n');
            }
        }
        let _ = is_block(item);
    }
}

fn block_literal_ok(s: &str) -> bool {
    s.contains('\n')
        && !s.starts_with(' ')
        && !s.starts_with('\n')
        && s.chars()
            .all(|c| c == '\n' || c == '\t' || (!c.is_control() && c != '\u{feff}'))
        && !s.lines().any(|l| l.ends_with(' ') || l.ends_with('\t'))
}

fn emit_literal(out: &mut String, s: &str, ind: usize) {
    let trailing = s.len() - s.trim_end_matches('\n').len();
    out.push('|');
    match trailing {
        0 => out.push('-'),
        1 => {}
        _ => out.push('+'),
    }
    out.push('\n');
    let body = s.trim_end_matches('\n');
    for line in body.split('\n') {
        if !line.is_empty() {
            indent(out, ind);
            out.push_str(line);
        }
        out.push('\n');
    }
    for _ in 1..trailing {
        out.push('\n');
    }
}

fn scalar_inline(n: &Node) -> String {
    match &n.value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => format_float(*f),
        Value::Str(s) => scalar_str(s),
        Value::Seq(_) => "[]".into(),
        Value::Map(_) => "{}".into(),
    }
}

/// A string as a plain scalar when that reads back as the same string,
/// otherwise double-quoted.
pub fn scalar_str(s: &str) -> String {
    if plain_ok(s) {
        s.to_string()
    } else {
        yaml_double_quote(s)
    }
}

fn plain_ok(s: &str) -> bool {
    if s.is_empty() || s.trim() != s {
        return false;
    }
    if !matches!(plain_scalar(s), Value::Str(_)) {
        return false;
    }
    // YAML 1.1 readers (go-yaml, PyYAML) treat these as booleans.
    if matches!(
        s.to_ascii_lowercase().as_str(),
        "y" | "n" | "yes" | "no" | "on" | "off"
    ) {
        return false;
    }
    let first = s.chars().next().unwrap();
    if "-?:,[]{}#&*!|>'\"%@`".contains(first) {
        // `-foo`, `:foo`, `?foo` are plain in YAML 1.2 only when followed by a
        // non-space; stay simple and quote.
        return false;
    }
    if s.contains(": ") || s.contains(" #") || s.ends_with(':') {
        return false;
    }
    s.chars()
        .all(|c| !c.is_control() && c != '\u{feff}' && c != '\u{85}')
}

fn yaml_double_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c if c.is_control() || c == '\u{feff}' => {
                let n = c as u32;
                if n <= 0xff {
                    out.push_str(&format!("\\x{n:02x}"));
                } else {
                    out.push_str(&format!("\\u{n:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Borrow-or-own helper for callers that render optional file names.
pub fn display_file(file: Option<&str>) -> Cow<'_, str> {
    match file {
        Some(f) => Cow::Borrowed(f),
        None => Cow::Borrowed("<stdin>"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Node {
        parse_single("t.yaml", s).unwrap().unwrap()
    }

    #[test]
    fn scalars_resolve_like_yaml_1_2_core() {
        let n = p("a: 1\nb: 1.5\nc: true\nd: ~\ne: '1'\nf: yes\ng: 0x10\nh: 0777\ni: -3\n");
        assert_eq!(n.get("a").unwrap().value, Value::Int(1));
        assert_eq!(n.get("b").unwrap().value, Value::Float(1.5));
        assert_eq!(n.get("c").unwrap().value, Value::Bool(true));
        assert_eq!(n.get("d").unwrap().value, Value::Null);
        assert_eq!(n.get("e").unwrap().value, Value::Str("1".into()));
        assert_eq!(n.get("f").unwrap().value, Value::Str("yes".into()));
        assert_eq!(n.get("g").unwrap().value, Value::Int(16));
        assert_eq!(n.get("h").unwrap().value, Value::Int(777));
        assert_eq!(n.get("i").unwrap().value, Value::Int(-3));
    }

    #[test]
    fn locations_are_one_based() {
        let n = p("cpus: 2\nmounts:\n- location: /a\n  mountPoint: rel\n");
        let loc = n.locate(&parse_path("mounts[0].mountPoint")).unwrap();
        assert_eq!((loc.line, loc.col), (4, 3));
        let loc = n.locate(&parse_path("cpus")).unwrap();
        assert_eq!((loc.line, loc.col), (1, 1));
    }

    #[test]
    fn alias_bomb_is_refused() {
        let mut s = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            s.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n",
                p = i - 1
            ));
        }
        let err = parse_single("bomb.yaml", &s).unwrap_err();
        assert!(matches!(err, YamlError::AliasBomb { .. }), "{err}");
    }

    #[test]
    fn aliases_and_merge_keys_expand() {
        let n = p("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  y: 3\n");
        let o = n.get("other").unwrap();
        assert_eq!(o.get("x").unwrap().value, Value::Int(1));
        assert_eq!(o.get("y").unwrap().value, Value::Int(3));
    }

    #[test]
    fn duplicate_keys_are_errors_with_location() {
        let err = parse_single("d.yaml", "cpus: 1\ncpus: 2\n").unwrap_err();
        assert!(err.to_string().starts_with("d.yaml:2:1:"), "{err}");
    }

    #[test]
    fn syntax_error_names_file_line_column() {
        let err = parse_single("s.yaml", "a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.to_string().starts_with("s.yaml:"), "{err}");
    }

    #[test]
    fn binary_tag_decodes() {
        let n = p("script: !!binary IyEvYmluL3NoCmVjaG8gaGk=\n");
        assert_eq!(
            n.get("script").unwrap().as_str(),
            Some("#!/bin/sh\necho hi")
        );
    }

    #[test]
    fn emit_round_trips() {
        let src = "a: 1\nb: hello world\nc:\n- x: 1\n  y: [1]\n- 2\nd: {}\ne: []\nf: \"yes\"\ng: \"\"\nh: |\n  line1\n  line2\ni: \"123\"\nj: \"a: b\"\nk: null\nl: -x\nm: 2.5\n";
        let n = p(src);
        let out = emit(&n);
        let back = parse_single("t", &out).unwrap().unwrap();
        assert_eq!(n.to_json(), back.to_json(), "{out}");
    }

    #[test]
    fn emit_literal_preserves_trailing_newlines() {
        for s in ["a\nb", "a\nb\n", "a\nb\n\n", "#!/bin/sh\n  indented\n"] {
            let n = Node::map(vec![("s".into(), Node::str(s))]);
            let out = emit(&n);
            let back = parse_single("t", &out).unwrap().unwrap();
            assert_eq!(back.get("s").unwrap().as_str(), Some(s), "{out}");
        }
    }

    #[test]
    fn go_quote_matches_strconv() {
        assert_eq!(go_quote("a\"b\n"), "\"a\\\"b\\n\"");
        assert_eq!(quote_name("foo"), "`foo`");
        assert_eq!(quote_name("a`b"), "\"a`b\"");
    }

    #[test]
    fn path_round_trip() {
        let p = parse_path("mounts[2].mountPoint");
        assert_eq!(path_string(&p), "mounts[2].mountPoint");
        assert_eq!(path_string(&parse_path("a[0][1].b")), "a[0][1].b");
    }
}
