use super::*;
use serde_json::json;

fn errors_of(v: serde_json::Value) -> Vec<String> {
    let mut y: LimaYaml = serde_json::from_value(v).unwrap();
    let host = super::super::host::HostInfo::for_tests();
    super::super::defaults::fill(
        &mut y,
        &super::super::defaults::FillContext {
            host: &host,
            instance_name: "t".into(),
            instance_dir: "/lh/t".into(),
            lima_home: "/lh".into(),
        },
    );
    validate(&y, "2.0.0")
        .0
        .into_iter()
        .map(|e| e.message)
        .collect()
}

fn img() -> serde_json::Value {
    json!([{"location": "/img.qcow2", "arch": "x86_64"}])
}

#[test]
fn minimal_config_is_valid() {
    assert_eq!(errors_of(json!({"images": img()})), Vec::<String>::new());
}

#[test]
fn images_are_required() {
    assert_eq!(errors_of(json!({})), vec!["field `images` must be set"]);
}

#[test]
fn mount_point_errors_name_the_field() {
    let e = errors_of(json!({"images": img(), "mounts": [
        {"location": "/tmp"}, {"location": "/tmp/a", "mountPoint": "/x"},
        {"location": "/tmp/b", "mountPoint": "rel"}, {"location": "/tmp/c", "mountPoint": "/etc"}]}));
    assert!(
        e[0].starts_with("field `mounts[0].mountPoint` must not be `/tmp`"),
        "{e:?}"
    );
    assert!(
        e[1].starts_with("field `mounts[2].mountPoint` must be an absolute path"),
        "{e:?}"
    );
    assert!(
        e[2].starts_with("field `mounts[3].mountPoint` must not be `/etc`"),
        "{e:?}"
    );
}

#[test]
fn bad_scalars() {
    let e = errors_of(
        json!({"images": img(), "cpus": 0, "memory": "lots", "arch": "sparc", "vmType": "vbox"}),
    );
    assert!(
        e.iter()
            .any(|m| m.starts_with("field `cpus` must be a positive")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|m| m.starts_with("field `memory` has an invalid value")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|m| m.starts_with("field `arch` must be one of")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|m| m.starts_with("field `vmType` must be one of")),
        "{e:?}"
    );
    let e = errors_of(json!({"images": img(), "cpus": -2}));
    assert!(e[0].contains("got -2"), "{e:?}");
}

#[test]
fn digests_are_checked() {
    assert!(validate_digest("sha256:0123").is_err());
    assert!(validate_digest("md5:00").is_err());
    assert!(validate_digest(&format!("sha256:{}", "a".repeat(64))).is_ok());
    assert!(validate_digest(&format!("sha512:{}", "0".repeat(128))).is_ok());
}

#[test]
fn port_forward_rules() {
    let e = errors_of(json!({"images": img(), "portForwards": [
        {"guestPort": 22}, {"guestPort": 80, "hostPortRange": [1, 10]},
        {"guestSocket": "/a", "hostSocket": "/b", "proto": "sctp"}]}));
    assert!(
        e.iter()
            .any(|m| m == "field `portForwards[0].guestPort` must not be 22"),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|m| m.starts_with("field `portForwards[1].hostPortRange` must span")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|m| m.starts_with("field `portForwards[2].proto`")),
        "{e:?}"
    );
}

#[test]
fn provision_modes() {
    let e = errors_of(json!({"images": img(), "provision": [
        {"mode": "data", "path": "/etc/x", "content": "x", "permissions": "9"},
        {"mode": "system"}, {"mode": "wat", "script": "x"},
        {"mode": "user", "script": "#!/bin/sh", "path": "/x"}]}));
    assert!(
        e.iter()
            .any(|m| m.starts_with("field `provision[0].permissions` must be an octal")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|m| m == "field `provision[1].script` must not be empty"),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|m| m.starts_with("field `provision[2].mode` must be one of")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|m| m.starts_with("field `provision[3].path` must not be set")),
        "{e:?}"
    );
}

#[test]
fn unused_params_are_found() {
    let y: LimaYaml = serde_json::from_value(json!({
        "param": {"A": "1", "B": "2", "C": "3"},
        "provision": [{"script": "echo {{.Param.A}} $PARAM_C"}]
    }))
    .unwrap();
    assert_eq!(unused_params(&y), vec!["B"]);
}

#[test]
fn minimum_version() {
    let e = errors_of(json!({"images": img(), "minimumLimaVersion": "9.0.0"}));
    assert!(e[0].contains("requires limactl version 9.0.0"), "{e:?}");
    assert_eq!(semver_parse("v2.0.1-rc1"), Some((2, 0, 1)));
    assert_eq!(semver_parse("x"), None);
}

/// Every configuration value that cidata writes into a line of `lima.env`,
/// `param.env`, `etc_environment`, an fstab entry or a boot script (or that
/// QEMU reads as a path): `field` is the validation field path (`<key>`: the
/// map's key itself), `tab` whether a tab is legitimate (Lima's rule for
/// `param` values; `env` values alike), `syntax` whether a stricter check of
/// the field (a name or number pattern) rejects control characters with its
/// own message, `in_cidata` whether cidata writes it (else it reaches QEMU).
struct Row {
    field: &'static str,
    tab: bool,
    syntax: bool,
    in_cidata: bool,
}

const fn row(field: &'static str) -> Row {
    Row {
        field,
        tab: false,
        syntax: false,
        in_cidata: true,
    }
}

const CONTROL_FIELDS: &[Row] = &[
    Row {
        in_cidata: false,
        ..row("mounts[0].location")
    },
    row("mounts[0].mountPoint"),
    Row {
        in_cidata: false,
        ..row("mounts[0].9p.securityModel")
    },
    row("mounts[0].9p.protocolVersion"),
    row("mounts[0].9p.cache"),
    Row {
        syntax: true,
        ..row("additionalDisks[0].name")
    },
    row("additionalDisks[0].fsType"),
    row("additionalDisks[0].fsArgs[0]"),
    row("additionalDisks[0].fsArgs[1]"),
    Row {
        syntax: true,
        ..row("user.name")
    },
    row("user.comment"),
    row("user.home"),
    row("user.shell"),
    row("provision[0].path"),
    row("provision[0].owner"),
    Row {
        syntax: true,
        ..row("provision[0].permissions")
    },
    row("provision[1].path"),
    row("provision[1].owner"),
    Row {
        syntax: true,
        ..row("provision[1].permissions")
    },
    row("provision[1].format"),
    row("guestInstallPrefix"),
    row("timezone"),
    row("networks[0].interface"),
    Row {
        syntax: true,
        ..row("networks[0].macAddress")
    },
    Row {
        syntax: true,
        ..row("param.<key>")
    },
    Row {
        tab: true,
        ..row("param.FOO")
    },
    Row {
        syntax: true,
        ..row("env.<key>")
    },
    Row {
        tab: true,
        ..row("env.MYVAR")
    },
];

/// Values cidata writes that are multi-line by nature, and why that is safe.
const MULTI_LINE_FIELDS: &[(&str, &str)] = &[
    (
        "provision[2].script",
        "a `mode: boot` script is a here-document whose delimiter never occurs in it",
    ),
    (
        "caCerts.certs[0]",
        "a PEM block: a YAML literal block that cloud-init writes as a file",
    ),
];

/// A configuration that sets every field of [`CONTROL_FIELDS`] (validly).
fn every_field() -> serde_json::Value {
    json!({
        "images": img(),
        "mountType": "9p",
        "mounts": [{"location": "/nonexistent/share", "mountPoint": "/mnt/share", "writable": true,
                    "9p": {"securityModel": "none", "protocolVersion": "9p2000.L", "cache": "mmap"}}],
        "additionalDisks": [{"name": "data", "format": true, "fsType": "ext4", "fsArgs": ["-m", "0"]}],
        "user": {"name": "alice", "comment": "Alice", "home": "/home/alice.guest", "shell": "/bin/bash"},
        "guestInstallPrefix": "/usr/local",
        "timezone": "Europe/Berlin",
        "provision": [
            {"mode": "data", "path": "/etc/foo", "content": "x\n", "owner": "root:root", "permissions": "644"},
            {"mode": "yq", "path": "/etc/x.json", "expression": ".a = 1", "format": "json",
             "owner": "root:root", "permissions": "600"},
            {"mode": "boot", "script": "#!/bin/sh\necho \"$PARAM_FOO\"\n"}
        ],
        "param": {"FOO": "bar"},
        "env": {"MYVAR": "some value"},
        "networks": [{"socket": "/nonexistent/vde.sock", "interface": "lima0",
                      "macAddress": "52:55:55:00:00:01"}],
        "hostResolver": {"enabled": false},
        "dns": ["192.0.2.53"],
        "caCerts": {"certs": ["-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"]},
    })
}

/// `mounts[0].9p.cache` → `["mounts", "0", "9p", "cache"]`.
fn segments(field: &str) -> Vec<String> {
    field
        .replace('[', ".")
        .replace(']', "")
        .split('.')
        .map(String::from)
        .collect()
}

/// Sets the value at `field` (or renames the key of a `<key>` row) to `to(old)`.
fn set_field(doc: &mut serde_json::Value, field: &str, to: impl Fn(&str) -> String) {
    let segs = segments(field);
    let (last, parents) = segs.split_last().unwrap();
    let mut node = doc;
    for s in parents {
        node = match node {
            serde_json::Value::Array(a) => &mut a[s.parse::<usize>().unwrap()],
            other => &mut other[s.as_str()],
        };
    }
    if last == "<key>" {
        let map = node.as_object_mut().unwrap();
        let (k, v) = map
            .iter()
            .next()
            .map(|(k, v)| (k.clone(), v.clone()))
            .unwrap();
        map.remove(&k);
        map.insert(to(&k), v);
        return;
    }
    let slot = match node {
        serde_json::Value::Array(a) => &mut a[last.parse::<usize>().unwrap()],
        other => &mut other[last.as_str()],
    };
    let old = slot
        .as_str()
        .unwrap_or_else(|| panic!("{field} is not a string"))
        .to_string();
    *slot = json!(to(&old));
}

fn field_errors_of(v: serde_json::Value) -> Vec<FieldError> {
    let mut y: LimaYaml = serde_json::from_value(v).unwrap();
    let host = super::super::host::HostInfo::for_tests();
    super::super::defaults::fill(
        &mut y,
        &super::super::defaults::FillContext {
            host: &host,
            instance_name: "t".into(),
            instance_dir: "/lh/t".into(),
            lima_home: "/lh".into(),
        },
    );
    validate(&y, "2.0.0").0
}

/// Issue 13 row 5: a newline (or any other control character) in a value
/// that becomes a line of a guest file is a validation error naming the
/// field, e.g. `mountPoint: "/mnt/a\nPATH=/tmp/evil"`.
#[test]
fn control_characters_are_rejected_in_every_field_that_reaches_the_guest() {
    assert_eq!(field_errors_of(every_field()), vec![], "the base is valid");
    for r in CONTROL_FIELDS {
        for c in [
            '\n', '\r', '\0', '\x01', '\x08', '\x1b', '\x7f', '\u{85}', '\t',
        ] {
            let mut doc = every_field();
            let bad = |old: &str| format!("{old}{c}PATH=/tmp/evil");
            set_field(&mut doc, r.field, bad);
            let field = match r.field.strip_suffix("<key>") {
                Some(map) => {
                    let key = segments(r.field).iter().rev().nth(1).cloned().unwrap();
                    let old = every_field()[&key]
                        .as_object()
                        .unwrap()
                        .keys()
                        .next()
                        .unwrap()
                        .clone();
                    format!("{map}{}", bad(&old))
                }
                None => r.field.to_string(),
            };
            let errors = field_errors_of(doc);
            let named: Vec<&FieldError> = errors.iter().filter(|e| e.field == field).collect();
            if c == '\t' && r.tab {
                assert!(named.is_empty(), "{field}: a tab is allowed: {named:?}");
                continue;
            }
            assert!(
                !named.is_empty(),
                "{field} with {c:?} must be refused; errors: {errors:?}"
            );
            if !r.syntax {
                let want = format!(
                    "field {} must not contain control characters, got ",
                    quote_name(&field)
                );
                assert!(
                    named.iter().any(|e| e.message.starts_with(&want)),
                    "{field} with {c:?}: {named:?}"
                );
            }
        }
    }
}

/// The companion of the test above: generates cidata for the filled
/// configuration with each string (and each `env`/`param` key) in turn
/// replaced by a marker, and checks that every marker that shows up in a
/// cidata file comes from a field in [`CONTROL_FIELDS`] (or
/// [`MULTI_LINE_FIELDS`]) — and that every such row does show up.
#[test]
fn the_control_character_table_covers_every_value_cidata_writes() {
    let mut y: LimaYaml = serde_json::from_value(every_field()).unwrap();
    let host = super::super::host::HostInfo::for_tests();
    super::super::defaults::fill(
        &mut y,
        &super::super::defaults::FillContext {
            host: &host,
            instance_name: "t".into(),
            instance_dir: "/lh/t".into(),
            lima_home: "/lh".into(),
        },
    );
    let filled = serde_json::to_value(&y).unwrap();

    // (field path, the filled document with a marker there, the marker)
    let mut variants = Vec::new();
    fn walk(
        v: &serde_json::Value,
        path: &str,
        root: &serde_json::Value,
        out: &mut Vec<(String, serde_json::Value, String)>,
    ) {
        let marker = |n: usize| format!("MARK{n}X");
        match v {
            serde_json::Value::String(_) => {
                let m = marker(out.len());
                let mut doc = root.clone();
                set_field(&mut doc, path, |_| m.clone());
                out.push((path.to_string(), doc, m));
            }
            serde_json::Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    walk(x, &format!("{path}[{i}]"), root, out);
                }
            }
            serde_json::Value::Object(o) => {
                if ["env", "param"].contains(&path) && !o.is_empty() {
                    let m = marker(out.len());
                    let mut doc = root.clone();
                    set_field(&mut doc, &format!("{path}.<key>"), |_| m.clone());
                    out.push((format!("{path}.<key>"), doc, m));
                }
                for (k, x) in o {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(x, &p, root, out);
                }
            }
            _ => {}
        }
    }
    walk(&filled, "", &filled, &mut variants);

    let keys = vec!["ssh-ed25519 AAAA test".to_string()];
    let host_env = std::collections::BTreeMap::new();
    let mut found = std::collections::BTreeSet::new();
    let archive = tempfile::NamedTempFile::new().unwrap();
    for (path, doc, marker) in &variants {
        let y: LimaYaml = serde_json::from_value(doc.clone()).unwrap();
        // An enum, number or address cannot hold a marker (nor a control character).
        let Ok(spec) = crate::spec::Spec::from_filled(&y) else {
            continue;
        };
        let input = crate::cidata::CidataInput {
            spec: &spec,
            name: "t",
            instance_dir: std::path::Path::new("/lh/t"),
            iid: "iid-1",
            authorized_keys: &keys,
            debug: false,
            host_home: std::path::Path::new("/home/alice"),
            host_env: &host_env,
            guest_agent: None,
            containerd_archive: Some(archive.path()),
            udp_dns_port: 0,
            tcp_dns_port: 0,
        };
        let c =
            crate::cidata::generate(&input).unwrap_or_else(|e| panic!("{path} = {marker}: {e}"));
        // Provision files are contents, not lines read by the boot scripts.
        let written = c
            .files
            .iter()
            .filter(|f| !f.path.starts_with("provision."))
            .any(|f| String::from_utf8_lossy(&f.data).contains(marker.as_str()));
        if !written {
            continue;
        }
        assert!(
            CONTROL_FIELDS.iter().any(|r| r.field == path)
                || MULTI_LINE_FIELDS.iter().any(|(f, _)| f == path),
            "cidata writes `{path}` but the control-character table does not check it"
        );
        found.insert(path.clone());
    }
    for r in CONTROL_FIELDS.iter().filter(|r| r.in_cidata) {
        assert!(
            found.contains(r.field),
            "`{}` is in the table but cidata does not write it (found: {found:?})",
            r.field
        );
    }
}
