//! Layering `_config/default.yaml` (d) < the file (y) < `_config/override.yaml`
//! (o) on the JSON form, list by list as Lima's `FillDefault` does.

use std::collections::BTreeMap;

use serde_json::{Map, Value as J};

/// How a list is combined across d, y and o.
enum ListRule {
    /// Highest priority set value wins (o, then y, then d).
    Scalar,
    /// Concatenation override first: o, y, d (first matching rule wins).
    OverrideFirst,
    /// Concatenation d, y, o (later entries can amend earlier ones).
    DefaultFirst,
    /// Highest-priority non-empty list wins.
    FirstNonEmpty,
    /// d, y, o without duplicates.
    Unique,
}

fn list_rule(path: &str) -> ListRule {
    match path {
        "images"
        | "additionalDisks"
        | "provision"
        | "probes"
        | "portForwards"
        | "copyToHost"
        | "firmware.images"
        | "containerd.archives"
        | "mountTypesUnsupported" => ListRule::OverrideFirst,
        "mounts" | "networks" => ListRule::DefaultFirst,
        "dns" => ListRule::FirstNonEmpty,
        "caCerts.files" | "caCerts.certs" => ListRule::Unique,
        _ => ListRule::Scalar,
    }
}

/// Where the file's own entries start in each concatenated list, so that a
/// message about `provision[3]` can point at the right line of the file.
pub type ListOffsets = BTreeMap<String, usize>;

/// Layers d < y < o the way Lima's `FillDefault` does, on the JSON form.
pub fn layer(d: &J, y: &J, o: &J) -> (J, ListOffsets) {
    let mut offsets = ListOffsets::new();
    let v = layer_at("", d, y, o, &mut offsets);
    (v, offsets)
}

fn layer_at(path: &str, d: &J, y: &J, o: &J, offsets: &mut ListOffsets) -> J {
    let is_obj = |v: &J| v.is_object();
    if is_obj(d) || is_obj(y) || is_obj(o) {
        let empty = Map::new();
        let dm = d.as_object().unwrap_or(&empty);
        let ym = y.as_object().unwrap_or(&empty);
        let om = o.as_object().unwrap_or(&empty);
        let mut keys: Vec<&String> = Vec::new();
        for m in [ym, dm, om] {
            for k in m.keys() {
                if !keys.contains(&k) {
                    keys.push(k);
                }
            }
        }
        let mut out = Map::new();
        for k in keys {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            let v = layer_at(
                &p,
                dm.get(k).unwrap_or(&J::Null),
                ym.get(k).unwrap_or(&J::Null),
                om.get(k).unwrap_or(&J::Null),
                offsets,
            );
            if !v.is_null() {
                out.insert(k.clone(), v);
            }
        }
        return J::Object(out);
    }
    let arr = |v: &J| v.as_array().cloned().unwrap_or_default();
    if d.is_array() || y.is_array() || o.is_array() {
        match list_rule(path) {
            ListRule::OverrideFirst => {
                let (o, y, d) = (arr(o), arr(y), arr(d));
                offsets.insert(path.to_string(), o.len());
                return J::Array(o.into_iter().chain(y).chain(d).collect());
            }
            ListRule::DefaultFirst => {
                let (d, y, o) = (arr(d), arr(y), arr(o));
                offsets.insert(path.to_string(), d.len());
                return J::Array(d.into_iter().chain(y).chain(o).collect());
            }
            ListRule::Unique => {
                let mut out: Vec<J> = Vec::new();
                for v in arr(d).into_iter().chain(arr(y)).chain(arr(o)) {
                    if !out.contains(&v) {
                        out.push(v);
                    }
                }
                return J::Array(out);
            }
            ListRule::FirstNonEmpty => {
                for v in [o, y, d] {
                    if v.as_array().is_some_and(|a| !a.is_empty()) {
                        return v.clone();
                    }
                }
                return J::Array(vec![]);
            }
            ListRule::Scalar => {}
        }
    }
    for v in [o, y, d] {
        if !v.is_null() {
            return v.clone();
        }
    }
    J::Null
}
