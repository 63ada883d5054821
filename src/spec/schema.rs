//! The JSON Schema of `lima.yaml` (generated from [`LimaYaml`]) and the
//! unknown-key check that uses it.

use serde_json::Value as J;

use super::types::LimaYaml;
use super::yaml::{Loc, Node, PathSeg, Value, path_string};

/// The schema as a JSON value (draft 2020-12).
pub fn schema() -> &'static J {
    static SCHEMA: std::sync::OnceLock<J> = std::sync::OnceLock::new();
    SCHEMA.get_or_init(|| {
        let mut s =
            serde_json::to_value(schemars::schema_for!(LimaYaml)).expect("schema serializes");
        if let Some(o) = s.as_object_mut() {
            o.insert(
                "$id".into(),
                J::String("https://lima-vm.io/schemas/lima.schema.json".into()),
            );
        }
        s
    })
}

/// The schema as pretty-printed text, as checked in at `schemas/lima.schema.json`.
pub fn schema_text() -> String {
    let mut s = serde_json::to_string_pretty(schema()).expect("schema serializes");
    s.push('\n');
    s
}

/// A key the schema does not know, with a suggestion when one is close.
#[derive(Clone, Debug, PartialEq)]
pub struct UnknownKey {
    pub path: String,
    pub loc: Option<Loc>,
    pub suggestion: Option<String>,
}

impl std::fmt::Display for UnknownKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(loc) = &self.loc {
            write!(f, "{loc}: ")?;
        }
        write!(f, "unknown field `{}`", self.path)?;
        if let Some(s) = &self.suggestion {
            write!(f, " (did you mean `{s}`?)")?;
        }
        Ok(())
    }
}

/// Finds keys of `node` the schema does not describe.
pub fn unknown_keys(node: &Node) -> Vec<UnknownKey> {
    let root = schema();
    let mut out = Vec::new();
    let mut path = Vec::new();
    walk(root, root, node, &mut path, &mut out);
    out
}

fn resolve<'a>(root: &'a J, s: &'a J) -> &'a J {
    let mut s = s;
    for _ in 0..16 {
        match s.get("$ref").and_then(J::as_str) {
            Some(r) => {
                let Some(name) = r.strip_prefix("#/$defs/") else {
                    return s;
                };
                match root.get("$defs").and_then(|d| d.get(name)) {
                    Some(d) => s = d,
                    None => return s,
                }
            }
            None => return s,
        }
    }
    s
}

/// Sub-schemas a value may match: the schema itself plus its anyOf/oneOf arms.
fn alternatives<'a>(root: &'a J, s: &'a J) -> Vec<&'a J> {
    let s = resolve(root, s);
    let mut out = vec![s];
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(arms) = s.get(key).and_then(J::as_array) {
            for a in arms {
                out.extend(alternatives(root, a));
            }
        }
    }
    out
}

fn walk(root: &J, schema: &J, node: &Node, path: &mut Vec<PathSeg>, out: &mut Vec<UnknownKey>) {
    let alts = alternatives(root, schema);
    match &node.value {
        Value::Map(entries) => {
            let objects: Vec<&J> = alts
                .iter()
                .copied()
                .filter(|a| {
                    a.get("properties").is_some() || a.get("additionalProperties").is_some()
                })
                .collect();
            if objects.is_empty() {
                return;
            }
            let mut known: Vec<&str> = Vec::new();
            let mut open: Option<&J> = None;
            for o in &objects {
                if let Some(p) = o.get("properties").and_then(J::as_object) {
                    known.extend(p.keys().map(String::as_str));
                }
                match o.get("additionalProperties") {
                    Some(J::Bool(false)) | None => {}
                    Some(ap) => open = Some(ap),
                }
            }
            for e in entries {
                path.push(PathSeg::Key(e.key.clone()));
                let prop = objects
                    .iter()
                    .find_map(|o| o.get("properties").and_then(|p| p.get(&e.key)));
                match (prop, open) {
                    (Some(p), _) => walk(root, p, &e.value, path, out),
                    (None, Some(ap)) => walk(root, ap, &e.value, path, out),
                    (None, None) => out.push(UnknownKey {
                        path: path_string(path),
                        loc: e.key_loc.clone(),
                        suggestion: suggest(&e.key, &known),
                    }),
                }
                path.pop();
            }
        }
        Value::Seq(items) => {
            let item_schema = alts.iter().find_map(|a| a.get("items"));
            if let Some(is) = item_schema {
                for (i, item) in items.iter().enumerate() {
                    path.push(PathSeg::Index(i));
                    walk(root, is, item, path, out);
                    path.pop();
                }
            }
        }
        _ => {}
    }
}

/// The closest known name, if it is close enough to be a likely typo.
pub fn suggest(key: &str, known: &[&str]) -> Option<String> {
    let lower = key.to_ascii_lowercase();
    if let Some(k) = known.iter().find(|k| k.to_ascii_lowercase() == lower) {
        return Some(k.to_string());
    }
    known
        .iter()
        .map(|k| (strsim::jaro_winkler(&lower, &k.to_ascii_lowercase()), *k))
        .filter(|(score, _)| *score >= 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::yaml::parse_single;

    fn unknown(src: &str) -> Vec<String> {
        let n = parse_single("f.yaml", src).unwrap().unwrap();
        unknown_keys(&n)
            .into_iter()
            .map(|u| u.to_string())
            .collect()
    }

    #[test]
    fn typos_get_suggestions_with_locations() {
        assert_eq!(
            unknown("images: []\nmemroy: 4GiB\n"),
            vec!["f.yaml:2:1: unknown field `memroy` (did you mean `memory`?)"]
        );
        assert_eq!(
            unknown("mounts:\n- location: /x\n  writeable: true\n"),
            vec!["f.yaml:3:3: unknown field `mounts[0].writeable` (did you mean `writable`?)"]
        );
        assert_eq!(
            unknown("CPUs: 2\n"),
            vec!["f.yaml:1:1: unknown field `CPUs` (did you mean `cpus`?)"]
        );
    }

    #[test]
    fn known_and_open_maps_are_fine() {
        assert!(unknown("env: {ANYTHING: x}\nparam: {K: v}\nvmOpts: {qemu: {cpuType: {x86_64: max}}, custom: {a: 1}}\nadditionalDisks: [d1, {name: d2, fsType: xfs}]\nbase: template:default\n").is_empty());
        assert_eq!(
            unknown("frobnicate: 1\n"),
            vec!["f.yaml:1:1: unknown field `frobnicate`"]
        );
    }
}
