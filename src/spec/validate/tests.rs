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
