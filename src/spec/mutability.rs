//! How each field of an existing instance may change (DESIGN §4). The
//! reconciler plans from this table: immutable fields are refused, grow-only
//! ones grow while stopped, restart-required ones restart the VM.

use serde_json::Value as J;

use super::types::LimaYaml;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FieldClass {
    /// Changes apply without touching the VM (display text, power policy).
    Live,
    /// Needs the VM restarted to take effect.
    RestartRequired,
    /// May only grow, and only while stopped.
    GrowOnly,
    /// Cannot change for an existing instance; recreate it instead.
    Immutable,
}

impl FieldClass {
    pub fn as_str(self) -> &'static str {
        match self {
            FieldClass::Live => "live",
            FieldClass::RestartRequired => "restart-required",
            FieldClass::GrowOnly => "grow-only",
            FieldClass::Immutable => "immutable",
        }
    }
}

/// Top-level (or dotted) field names and their class; the longest matching
/// prefix wins, anything unlisted is restart-required.
const TABLE: &[(&str, FieldClass)] = &[
    ("vmType", FieldClass::Immutable),
    ("arch", FieldClass::Immutable),
    ("os", FieldClass::Immutable),
    ("images", FieldClass::Immutable),
    ("base", FieldClass::Immutable),
    ("plain", FieldClass::Immutable),
    ("user.name", FieldClass::Immutable),
    ("user.uid", FieldClass::Immutable),
    ("containerd.system", FieldClass::Immutable),
    ("containerd.user", FieldClass::Immutable),
    ("vmOpts.vz.diskImageFormat", FieldClass::Immutable),
    ("disk", FieldClass::GrowOnly),
    ("message", FieldClass::Live),
    ("runStrategy", FieldClass::Live),
    ("minimumLimaVersion", FieldClass::Live),
];

/// The class of a field path such as `mounts[0].writable` or `user.name`.
pub fn class_of(path: &str) -> FieldClass {
    let normalized: String = {
        // Indices do not matter for classification.
        let mut s = String::new();
        let mut skip = false;
        for c in path.chars() {
            match c {
                '[' => skip = true,
                ']' => skip = false,
                c if !skip => s.push(c),
                _ => {}
            }
        }
        s
    };
    TABLE
        .iter()
        .filter(|(p, _)| normalized == *p || normalized.starts_with(&format!("{p}.")))
        .max_by_key(|(p, _)| p.len())
        .map(|(_, c)| *c)
        .unwrap_or(FieldClass::RestartRequired)
}

/// One changed field between two filled configurations.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct FieldChange {
    pub path: String,
    pub old: Option<J>,
    pub new: Option<J>,
    pub class: FieldClass,
}

impl FieldChange {
    /// `memory 4GiB → 8GiB`
    pub fn describe(&self) -> String {
        let show = |v: &Option<J>| match v {
            None => "(unset)".to_string(),
            Some(J::String(s)) => s.clone(),
            Some(v) => v.to_string(),
        };
        format!("{} {} → {}", self.path, show(&self.old), show(&self.new))
    }
}

/// Field-level differences. Lists are compared as a whole (their entries have
/// no identity), objects field by field.
pub fn diff(old: &LimaYaml, new: &LimaYaml) -> Vec<FieldChange> {
    let mut out = Vec::new();
    diff_values("", Some(&old.to_json()), Some(&new.to_json()), &mut out);
    out
}

fn diff_values(path: &str, old: Option<&J>, new: Option<&J>, out: &mut Vec<FieldChange>) {
    if old == new {
        return;
    }
    if let (Some(J::Object(o)), Some(J::Object(n))) = (old, new) {
        let mut keys: Vec<&String> = n.keys().collect();
        for k in o.keys() {
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        for k in keys {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            diff_values(&p, o.get(k), n.get(k), out);
        }
        return;
    }
    out.push(FieldChange {
        path: path.to_string(),
        old: old.cloned(),
        new: new.cloned(),
        class: class_of(path),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn classes_follow_the_design_table() {
        assert_eq!(class_of("arch"), FieldClass::Immutable);
        assert_eq!(class_of("images"), FieldClass::Immutable);
        assert_eq!(class_of("images[0].location"), FieldClass::Immutable);
        assert_eq!(class_of("user.name"), FieldClass::Immutable);
        assert_eq!(class_of("user.shell"), FieldClass::RestartRequired);
        assert_eq!(class_of("containerd.user"), FieldClass::Immutable);
        assert_eq!(class_of("containerd.archives"), FieldClass::RestartRequired);
        assert_eq!(class_of("disk"), FieldClass::GrowOnly);
        assert_eq!(class_of("cpus"), FieldClass::RestartRequired);
        assert_eq!(class_of("memory"), FieldClass::RestartRequired);
        assert_eq!(class_of("mounts"), FieldClass::RestartRequired);
        assert_eq!(class_of("portForwards"), FieldClass::RestartRequired);
        assert_eq!(class_of("env.FOO"), FieldClass::RestartRequired);
        assert_eq!(class_of("message"), FieldClass::Live);
        assert_eq!(class_of("runStrategy"), FieldClass::Live);
        assert_eq!(class_of("disks"), FieldClass::RestartRequired);
    }

    #[test]
    fn diff_reports_leaves_with_classes() {
        let a: LimaYaml =
            serde_json::from_value(json!({"cpus": 2, "memory": "4GiB", "arch": "x86_64",
            "user": {"name": "a", "shell": "/bin/bash"}, "mounts": [{"location": "/x"}]}))
            .unwrap();
        let b: LimaYaml = serde_json::from_value(json!({"cpus": 4, "memory": "4GiB", "arch": "aarch64",
            "user": {"name": "a", "shell": "/bin/zsh"}, "mounts": [{"location": "/y"}], "disk": "200GiB"})).unwrap();
        let d = diff(&a, &b);
        let paths: Vec<(&str, FieldClass)> = d.iter().map(|c| (c.path.as_str(), c.class)).collect();
        assert_eq!(
            paths,
            vec![
                ("arch", FieldClass::Immutable),
                ("cpus", FieldClass::RestartRequired),
                ("disk", FieldClass::GrowOnly),
                ("mounts", FieldClass::RestartRequired),
                ("user.shell", FieldClass::RestartRequired),
            ]
        );
        assert_eq!(d[1].describe(), "cpus 2 → 4");
        assert_eq!(d[2].describe(), "disk (unset) → 200GiB");
        assert!(diff(&a, &a).is_empty());
    }
}
