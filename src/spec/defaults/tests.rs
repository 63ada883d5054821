use super::*;
use serde_json::json;
use std::path::Path;

fn ctx(host: &HostInfo) -> FillContext<'_> {
    FillContext {
        host,
        instance_name: "dev".into(),
        instance_dir: "/lh/dev".into(),
        lima_home: "/lh".into(),
    }
}

#[test]
fn scalars_override_then_file_then_default() {
    let (v, _) = layer(
        &json!({"cpus": 1, "memory": "1GiB", "disk": "9GiB"}),
        &json!({"cpus": 2, "memory": "2GiB"}),
        &json!({"cpus": 3}),
    );
    assert_eq!(v, json!({"cpus": 3, "memory": "2GiB", "disk": "9GiB"}));
}

#[test]
fn lists_follow_lima_concatenation_order() {
    let (v, off) = layer(
        &json!({"provision": ["d"], "mounts": ["d"], "dns": ["1.1.1.1"]}),
        &json!({"provision": ["y"], "mounts": ["y"], "dns": []}),
        &json!({"provision": ["o"], "mounts": ["o"]}),
    );
    assert_eq!(v["provision"], json!(["o", "y", "d"]));
    assert_eq!(v["mounts"], json!(["d", "y", "o"]));
    assert_eq!(v["dns"], json!(["1.1.1.1"]));
    assert_eq!(off["provision"], 1);
    assert_eq!(off["mounts"], 1);
}

#[test]
fn maps_merge_key_wise() {
    let (v, _) = layer(
        &json!({"env": {"A": "d", "B": "d"}}),
        &json!({"env": {"B": "y", "C": "y"}}),
        &json!({"env": {"C": "o"}}),
    );
    assert_eq!(v["env"], json!({"B": "y", "C": "o", "A": "d"}));
}

#[test]
fn builtin_defaults_follow_host() {
    let host = HostInfo::for_tests();
    let mut y = LimaYaml::default();
    fill(&mut y, &ctx(&host));
    assert_eq!(y.cpus, Some(4));
    assert_eq!(y.memory.as_deref(), Some("4GiB"));
    assert_eq!(y.disk.as_deref(), Some("100GiB"));
    assert_eq!(y.arch.as_deref(), Some("x86_64"));
    assert_eq!(y.os.as_deref(), Some("Linux"));
    assert_eq!(y.vm_type.as_deref(), Some("qemu"));
    let u = y.user.unwrap();
    assert_eq!(u.name.as_deref(), Some("alice"));
    assert_eq!(u.home.as_deref(), Some("/home/alice.guest"));
    assert_eq!(u.uid, Some(1001));
    assert_eq!(y.timezone.as_deref(), Some("Europe/Berlin"));

    let small = HostInfo {
        cpus: 2,
        memory_bytes: 3 << 30,
        ..HostInfo::for_tests()
    };
    let mut y = LimaYaml::default();
    fill(&mut y, &ctx(&small));
    assert_eq!(y.cpus, Some(2));
    assert_eq!(y.memory.as_deref(), Some("1.5GiB"));
}

#[test]
fn mounts_expand_and_merge_by_mount_point() {
    let host = HostInfo::for_tests();
    let mut y: LimaYaml = serde_json::from_value(json!({
        "mounts": [
            {"location": "~"},
            {"location": "/tmp/lima", "writable": true},
            {"location": "~", "mountPoint": "/home/alice", "writable": true},
            {"location": "/data", "mountPoint": "/mnt/{{.User}}"},
        ]
    }))
    .unwrap();
    fill(&mut y, &ctx(&host));
    let m = y.mounts.unwrap();
    assert_eq!(m.len(), 3);
    assert_eq!(m[0].location, "/home/alice");
    assert_eq!(m[0].writable, Some(true));
    assert_eq!(m[0].nine_p.as_ref().unwrap().cache.as_deref(), Some("mmap"));
    assert_eq!(m[2].mount_point.as_deref(), Some("/mnt/alice"));
}

#[test]
fn port_forward_defaults() {
    let host = HostInfo::for_tests();
    let mut pf = PortForward {
        guest_port: Some(8080),
        ..Default::default()
    };
    fill_port_forward(&mut pf, &ctx(&host));
    assert_eq!(pf.guest_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(pf.guest_port_range, Some([8080, 8080]));
    assert_eq!(pf.host_port_range, Some([8080, 8080]));
    assert_eq!(pf.proto.as_deref(), Some("any"));
    let mut pf = PortForward {
        guest_ip: Some("0.0.0.0".into()),
        ..Default::default()
    };
    fill_port_forward(&mut pf, &ctx(&host));
    assert_eq!(pf.guest_ip_must_be_zero, Some(true));
    assert_eq!(pf.host_port_range, Some([1, 65535]));
}

#[test]
fn mac_and_tag_are_stable() {
    assert_eq!(mac_address("id", "/x").len(), 17);
    assert!(mac_address("id", "/x").starts_with("52:55:55:"));
    assert_eq!(mount_tag("/a", "/b").len(), 5 + 16);
    assert_eq!(hostname_for("my.vm_1"), "lima-my-vm-1");
    assert_eq!(clean_path("/a/./b/../c/"), "/a/c");
    assert_eq!(expand_host_path("~/x/../y", Path::new("/h")), "/h/y");
}

#[test]
fn plain_mode_drops_dynamic_features() {
    let host = HostInfo::for_tests();
    let mut y: LimaYaml = serde_json::from_value(json!({
        "plain": true,
        "mounts": [{"location": "/tmp"}],
        "portForwards": [{"guestPort": 80, "static": true}, {"guestPort": 81}],
    }))
    .unwrap();
    fill(&mut y, &ctx(&host));
    assert!(y.mounts.unwrap().is_empty());
    assert_eq!(y.port_forwards.unwrap().len(), 1);
    assert_eq!(y.containerd.unwrap().user, Some(false));
}
