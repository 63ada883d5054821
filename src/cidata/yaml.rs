//! A small YAML emitter for the cloud-init files.
//!
//! cloud-init reads YAML with PyYAML (YAML 1.1), where `52:55:55:12:34:56` is a
//! sexagesimal integer and `yes`/`on`/`0755` are not strings. So a string is
//! written plain only when it is obviously a string under both YAML 1.1 and 1.2;
//! multi-line strings become literal blocks when that reads back exactly, and
//! everything else is double-quoted.

/// A YAML value, with map keys in insertion order.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Y {
    Str(String),
    Bool(bool),
    Int(i64),
    Seq(Vec<Y>),
    Map(Vec<(String, Y)>),
}

impl Y {
    pub(crate) fn s(s: impl Into<String>) -> Y {
        Y::Str(s.into())
    }

    pub(crate) fn strs<I: IntoIterator<Item = S>, S: Into<String>>(items: I) -> Y {
        Y::Seq(items.into_iter().map(|s| Y::Str(s.into())).collect())
    }

    pub(crate) fn map<K: Into<String>>(entries: impl IntoIterator<Item = (K, Y)>) -> Y {
        Y::Map(entries.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }
}

/// The document as block-style YAML (no `---`).
pub(crate) fn emit(v: &Y) -> String {
    let mut out = String::new();
    match v {
        Y::Map(m) if !m.is_empty() => emit_map(&mut out, m, 0, false),
        Y::Seq(s) if !s.is_empty() => emit_seq(&mut out, s, 0, false),
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    out
}

fn indent(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

/// `first_inline`: the first key goes right after a `- ` already written.
fn emit_map(out: &mut String, m: &[(String, Y)], ind: usize, first_inline: bool) {
    for (i, (k, v)) in m.iter().enumerate() {
        if i > 0 || !first_inline {
            indent(out, ind);
        }
        out.push_str(&string(k));
        out.push(':');
        match v {
            Y::Map(inner) if !inner.is_empty() => {
                out.push('\n');
                emit_map(out, inner, ind + 2, false);
            }
            Y::Seq(items) if !items.is_empty() => {
                out.push('\n');
                emit_seq(out, items, ind, false);
            }
            Y::Str(s) if literal_ok(s) => {
                out.push(' ');
                literal(out, s, ind + 2);
            }
            other => {
                out.push(' ');
                out.push_str(&scalar(other));
                out.push('\n');
            }
        }
    }
}

fn emit_seq(out: &mut String, items: &[Y], ind: usize, first_inline: bool) {
    for (i, item) in items.iter().enumerate() {
        if i > 0 || !first_inline {
            indent(out, ind);
        }
        out.push_str("- ");
        match item {
            Y::Map(m) if !m.is_empty() => emit_map(out, m, ind + 2, true),
            Y::Seq(s) if !s.is_empty() => emit_seq(out, s, ind + 2, true),
            Y::Str(s) if literal_ok(s) => literal(out, s, ind + 2),
            other => {
                out.push_str(&scalar(other));
                out.push('\n');
            }
        }
    }
}

fn scalar(v: &Y) -> String {
    match v {
        Y::Str(s) => string(s),
        Y::Bool(b) => b.to_string(),
        Y::Int(i) => i.to_string(),
        Y::Seq(_) => "[]".into(),
        Y::Map(_) => "{}".into(),
    }
}

/// A string that is a string in YAML 1.1 and 1.2 when written plain.
fn plain_ok(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    if !(first.is_ascii_alphabetic() || first == '/' || first == '_') {
        return false;
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_./+=@-".contains(c))
    {
        return false;
    }
    !matches!(
        s.to_ascii_lowercase().as_str(),
        "y" | "n" | "yes" | "no" | "on" | "off" | "true" | "false" | "null"
    )
}

fn string(s: &str) -> String {
    if plain_ok(s) {
        s.to_string()
    } else {
        double_quoted(s)
    }
}

/// A double-quoted YAML scalar (escapes are the same in YAML 1.1 and 1.2).
pub(crate) fn double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() || matches!(c, '\u{feff}' | '\u{2028}' | '\u{2029}') => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A literal block reproduces the string exactly.
fn literal_ok(s: &str) -> bool {
    s.contains('\n')
        && !s.starts_with([' ', '\t', '\n'])
        && !s.trim_end_matches('\n').is_empty()
        && s.chars().all(|c| {
            c == '\n'
                || c == '\t'
                || !(c.is_control() || matches!(c, '\u{feff}' | '\u{2028}' | '\u{2029}'))
        })
        && !s.lines().any(|l| l.ends_with([' ', '\t']))
}

fn literal(out: &mut String, s: &str, ind: usize) {
    let body = s.trim_end_matches('\n');
    let trailing = s.len() - body.len();
    out.push('|');
    match trailing {
        0 => out.push('-'),
        1 => {}
        _ => out.push('+'),
    }
    out.push('\n');
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::yaml::{Value, parse_single};

    #[test]
    fn ambiguous_strings_are_quoted() {
        for s in [
            "52:55:55:12:34:56",
            "0755",
            "501",
            "yes",
            "On",
            "1.5",
            "",
            "a: b",
            "ALL=(ALL) NOPASSWD:ALL",
        ] {
            assert!(string(s).starts_with('"'), "{s} must be quoted");
        }
        assert_eq!(string("eth0"), "eth0");
        assert_eq!(string("/bin/bash"), "/bin/bash");
        assert_eq!(string("root:root"), "\"root:root\"");
    }

    #[test]
    fn round_trips_through_a_yaml_parser() {
        let doc = Y::map([
            ("a", Y::s("x\ny\n")),
            ("b", Y::s("no newline\nat end")),
            ("c", Y::s("two\n\n")),
            ("d", Y::strs(["1", "two words", "x\n  indented\n"])),
            (
                "e",
                Y::Seq(vec![Y::map([("k", Y::Int(1)), ("l", Y::Bool(true))])]),
            ),
            ("f", Y::Seq(vec![Y::strs(["a", "b"])])),
            ("g", Y::s("tab\tand \u{7f} trailing \nx")),
            ("h", Y::Seq(vec![])),
        ]);
        let text = emit(&doc);
        let n = parse_single("t.yaml", &text).unwrap().unwrap();
        let get = |k: &str| n.get(k).unwrap().value.clone();
        assert_eq!(get("a"), Value::Str("x\ny\n".into()), "{text}");
        assert_eq!(get("b"), Value::Str("no newline\nat end".into()));
        assert_eq!(get("c"), Value::Str("two\n\n".into()));
        let d = n.get("d").unwrap().as_seq().unwrap();
        assert_eq!(d[0].value, Value::Str("1".into()));
        assert_eq!(d[2].value, Value::Str("x\n  indented\n".into()));
        let e = &n.get("e").unwrap().as_seq().unwrap()[0];
        assert_eq!(e.get("k").unwrap().value, Value::Int(1));
        assert_eq!(e.get("l").unwrap().value, Value::Bool(true));
        let f = &n.get("f").unwrap().as_seq().unwrap()[0];
        assert_eq!(f.as_seq().unwrap()[1].value, Value::Str("b".into()));
        assert_eq!(get("g"), Value::Str("tab\tand \u{7f} trailing \nx".into()));
        assert_eq!(get("h"), Value::Seq(vec![]));
    }
}
