//! [`Node`] trees back to YAML text.

use super::parse::plain_scalar;
use super::{Entry, Node, Value, format_float};

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
