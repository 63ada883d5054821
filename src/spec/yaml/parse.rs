//! YAML text to [`Node`] trees: saphyr's events, with aliases expanded
//! (bounded by [`MAX_NODES`] and [`alias_byte_limit`]), `<<` merge keys and
//! YAML 1.2 core scalars.

use std::sync::Arc;

use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};

use super::{Entry, Loc, MAX_NODES, Node, Value, YamlError, format_float, quote_name};

const MAX_DEPTH: usize = 256;

/// How many bytes of strings alias expansion may copy for a text of `len`
/// bytes: four times the text, and at least 4 MiB (the largest template
/// accepted), so that memory stays a small multiple of the file size. The
/// node budget alone lets one large string referenced by many aliases grow
/// a 3 MB file into gigabytes.
pub fn alias_byte_limit(len: usize) -> usize {
    len.saturating_mul(4).max(4 << 20)
}

/// Parses every document of a YAML stream. An empty stream yields no documents.
pub fn parse_documents(file: &str, text: &str) -> Result<Vec<Node>, YamlError> {
    let file: Arc<str> = Arc::from(file);
    let mut b = Builder {
        file: file.clone(),
        anchors: Default::default(),
        nodes: 0,
        bytes: 0,
        byte_limit: alias_byte_limit(text.len()),
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
    /// Each anchored node with its size (nodes, string bytes).
    anchors: std::collections::HashMap<usize, (Node, Size)>,
    nodes: usize,
    /// String bytes copied by alias expansion and by keeping anchored nodes.
    bytes: usize,
    byte_limit: usize,
    stack: Vec<Frame>,
    docs: Vec<Node>,
}

/// Nodes and string bytes (scalars and keys) of a tree.
#[derive(Clone, Copy, Default)]
struct Size {
    nodes: usize,
    bytes: usize,
}

fn node_size(n: &Node) -> Size {
    let mut size = Size { nodes: 1, bytes: 0 };
    match &n.value {
        Value::Seq(s) => {
            for i in s {
                let c = node_size(i);
                size.nodes += c.nodes;
                size.bytes += c.bytes;
            }
        }
        Value::Map(m) => {
            for e in m {
                let c = node_size(&e.value);
                size.nodes += 1 + c.nodes;
                size.bytes += e.key.len() + c.bytes;
            }
        }
        Value::Str(s) => size.bytes = s.len(),
        _ => {}
    }
    size
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

    /// Counts string bytes about to be copied (before the copy is made).
    fn count_bytes(&mut self, n: usize) -> Result<(), YamlError> {
        self.bytes = self.bytes.saturating_add(n);
        if self.bytes > self.byte_limit {
            return Err(YamlError::AliasBytes {
                file: self.file.clone(),
                limit: self.byte_limit,
            });
        }
        Ok(())
    }

    /// Keeps a copy of an anchored node for its aliases.
    fn anchor(&mut self, anchor: usize, node: &Node) -> Result<(), YamlError> {
        let size = node_size(node);
        self.count_bytes(size.bytes)?;
        self.anchors.insert(anchor, (node.clone(), size));
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
                let Some(size) = self.anchors.get(&id).map(|(_, s)| *s) else {
                    return Err(YamlError::Syntax {
                        loc,
                        message: "unknown alias".into(),
                    });
                };
                self.count(size.nodes)?;
                self.count_bytes(size.bytes)?;
                let mut node = self.anchors[&id].0.clone();
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
                    self.anchor(anchor, &node)?;
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
                    self.anchor(anchor, &node)?;
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
                    self.anchor(anchor, &node)?;
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

pub(super) fn plain_scalar(s: &str) -> Value {
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
