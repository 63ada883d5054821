//! Lima's merge of a template with its `base:` templates, and the combining
//! of list entries that share a key.

use crate::spec::yaml::{Entry, Node, Value};

fn version_max(a: &str, b: &str) -> bool {
    let pa = crate::spec::validate::semver_parse(a);
    let pb = crate::spec::validate::semver_parse(b);
    pb > pa
}

/// Lima's template merge: the template wins for scalars, maps merge
/// recursively, lists concatenate (template items first, except `provision`
/// and `probes` where the base's come first).
pub fn merge_documents(t: Node, b: Node, path: &str) -> Node {
    let Node { value, loc } = t;
    let Value::Map(mut entries) = value else {
        return Node { value, loc };
    };
    let Value::Map(base_entries) = b.value else {
        return Node {
            value: Value::Map(entries),
            loc,
        };
    };
    for be in base_entries {
        let p = if path.is_empty() {
            be.key.clone()
        } else {
            format!("{path}.{}", be.key)
        };
        match entries.iter_mut().find(|e| e.key == be.key) {
            None => entries.push(be),
            Some(te) if te.value.is_null() => te.value = be.value,
            Some(te) => {
                let tv = std::mem::replace(&mut te.value, Node::null());
                te.value = merge_value(tv, be.value, &p);
            }
        }
    }
    Node {
        value: Value::Map(entries),
        loc,
    }
}

fn merge_value(t: Node, b: Node, path: &str) -> Node {
    match (&t.value, &b.value) {
        (Value::Seq(ts), _) if path == "dns" && !ts.is_empty() => t,
        (Value::Seq(_), Value::Seq(_)) => {
            let Node {
                value: Value::Seq(ts),
                loc,
            } = t
            else {
                unreachable!()
            };
            let Value::Seq(bs) = b.value else {
                unreachable!()
            };
            let mut items = if matches!(path, "provision" | "probes" | "base") {
                bs.into_iter().chain(ts).collect::<Vec<_>>()
            } else {
                ts.into_iter().chain(bs).collect::<Vec<_>>()
            };
            if path == "mountTypesUnsupported" {
                let mut seen = Vec::new();
                items.retain(|n| {
                    let j = n.to_json();
                    if seen.contains(&j) {
                        false
                    } else {
                        seen.push(j);
                        true
                    }
                });
            }
            Node {
                value: Value::Seq(items),
                loc,
            }
        }
        (Value::Map(_), Value::Map(_)) => merge_documents(t, b, path),
        (Value::Str(ts), Value::Str(bs))
            if (path == "minimumLimaVersion" || path == "vmOpts.qemu.minimumVersion")
                && version_max(ts, bs) =>
        {
            b
        }
        _ => t,
    }
}

/// Merges list entries that share a key (`*` amends every earlier entry).
pub fn combine_list_entries(node: &mut Node, list: &str, key: &str) {
    let Some(Value::Seq(items)) = node.get_mut(list).map(|n| &mut n.value) else {
        return;
    };
    let key_of = |n: &Node| -> Option<String> {
        match &n.value {
            Value::Str(s) => Some(s.clone()),
            Value::Map(_) => n
                .get(key)
                .and_then(Node::as_str)
                .map(str::to_string)
                .or_else(|| {
                    (key == "mountPoint")
                        .then(|| n.get("location").and_then(Node::as_str).map(str::to_string))
                        .flatten()
                }),
            _ => None,
        }
    };
    let mut out: Vec<Node> = Vec::new();
    for item in std::mem::take(items) {
        match key_of(&item) {
            Some(k) if k == "*" => {
                for prev in out.iter_mut() {
                    fill_missing(prev, &item, key);
                }
            }
            Some(k) => {
                if let Some(prev) = out.iter_mut().find(|p| key_of(p).as_deref() == Some(&k)) {
                    fill_missing(prev, &item, key);
                } else {
                    out.push(item);
                }
            }
            None => out.push(item),
        }
    }
    *items = out;
}

fn fill_missing(prev: &mut Node, later: &Node, key: &str) {
    if let Value::Str(name) = &prev.value {
        let mut n = Node::map(vec![(key.to_string(), Node::str(name.clone()))]);
        n.loc = prev.loc.clone();
        *prev = n;
    }
    let Some(later_entries) = later.as_map() else {
        return;
    };
    let Some(entries) = prev.as_map_mut() else {
        return;
    };
    for e in later_entries {
        if e.key == key && e.value.as_str() == Some("*") {
            continue;
        }
        if !entries.iter().any(|x| x.key == e.key) {
            entries.push(Entry {
                key: e.key.clone(),
                key_loc: e.key_loc.clone(),
                value: e.value.clone(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::yaml::parse_single;

    fn node(s: &str) -> Node {
        parse_single("t", s).unwrap().unwrap()
    }

    #[test]
    fn merge_rules() {
        let t = node(
            "cpus: 2\nmounts: [{location: /t}]\nprovision: [{script: t}]\nvmOpts: {qemu: {minimumVersion: 7.0.0}}\nminimumLimaVersion: 1.0.0\n",
        );
        let b = node(
            "cpus: 4\nmemory: 1GiB\nmounts: [{location: /b}]\nprovision: [{script: b}]\nvmOpts: {qemu: {minimumVersion: 8.0.0, cpuType: {x86_64: max}}}\nminimumLimaVersion: 2.0.0\n",
        );
        let m = merge_documents(t, b, "").to_json();
        assert_eq!(m["cpus"], 2);
        assert_eq!(m["memory"], "1GiB");
        assert_eq!(
            m["mounts"],
            serde_json::json!([{"location": "/t"}, {"location": "/b"}])
        );
        assert_eq!(
            m["provision"],
            serde_json::json!([{"script": "b"}, {"script": "t"}])
        );
        assert_eq!(m["vmOpts"]["qemu"]["minimumVersion"], "8.0.0");
        assert_eq!(m["vmOpts"]["qemu"]["cpuType"]["x86_64"], "max");
        assert_eq!(m["minimumLimaVersion"], "2.0.0");
    }

    #[test]
    fn combine_entries_by_key() {
        let mut n = node(
            "additionalDisks: [a, {name: a, fsType: xfs}, b, {name: '*', format: false}]\nmounts: [{location: /x, writable: true}, {location: /x, writable: false, mountPoint: /x}]\n",
        );
        combine_list_entries(&mut n, "additionalDisks", "name");
        combine_list_entries(&mut n, "mounts", "mountPoint");
        let j = n.to_json();
        assert_eq!(
            j["additionalDisks"],
            serde_json::json!([{"name": "a", "fsType": "xfs", "format": false}, {"name": "b", "format": false}])
        );
        assert_eq!(
            j["mounts"],
            serde_json::json!([{"location": "/x", "writable": true, "mountPoint": "/x"}])
        );
    }
}
