//! The mapping table of the README ("Export to KubeVirt"), row by row.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use super::*;

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKmTKBq5oOv5r6pAjRA9EyBhVCEmjO9ulPKAXXZwtmJ5 test";

fn run(json: Value) -> Exported {
    run_with(json, &BTreeMap::new(), None).unwrap()
}

fn run_with(
    json: Value,
    disks: &BTreeMap<String, u64>,
    ns: Option<&str>,
) -> Result<Exported, ExportError> {
    let spec = Spec::for_tests(json);
    let keys = vec![KEY.to_string()];
    export(&Input {
        name: "web",
        spec: &spec,
        spec_hash: "sha256:00",
        source: "web.yaml",
        namespace: ns,
        authorized_keys: &keys,
        host_home: Path::new("/home/u"),
        disk_sizes: disks,
    })
}

fn vm(e: &Exported) -> &Value {
    assert_eq!(e.objects[0].kind, "VirtualMachine");
    &e.objects[0].value
}

fn image(arch: &str) -> Value {
    json!({"location": format!("https://example.com/{arch}.qcow2"), "arch": arch,
           "digest": format!("sha256:{}", "ab".repeat(32))})
}

fn base() -> Value {
    // containerd is on by default (Lima's), and has no export: the fleet turns it off too.
    json!({"images": [image("x86_64"), image("aarch64")], "arch": "x86_64",
           "containerd": {"system": false, "user": false}})
}

fn with(extra: Value) -> Value {
    let mut b = base();
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    b
}

/// The root disk's DataVolume (the second object).
fn root(e: &Exported) -> &Value {
    assert_eq!(e.objects[1].kind, "DataVolume");
    &e.objects[1].value
}

fn fields(e: &Exported) -> Vec<&str> {
    e.warnings.iter().map(|w| w.field.as_str()).collect()
}

#[test]
fn run_strategy_is_copied() {
    for s in ["Always", "RerunOnFailure", "Halted", "Manual"] {
        let e = run(with(json!({ "runStrategy": s })));
        assert_eq!(vm(&e)["spec"]["runStrategy"], s);
    }
}

#[test]
fn cpus_and_memory() {
    let e = run(with(json!({"cpus": 3, "memory": "1536MiB"})));
    let d = &vm(&e)["spec"]["template"]["spec"]["domain"];
    assert_eq!(d["cpu"], json!({"cores": 3}));
    assert_eq!(d["memory"], json!({"guest": "1536Mi"}));
    assert_eq!(quantity(3 << 30), "3Gi");
    assert_eq!(quantity(1000), "1000");
    assert_eq!(quantity(2 << 40), "2Ti");
}

#[test]
fn firmware_bios_or_efi() {
    let bios = run(with(json!({"firmware": {"legacyBIOS": true}})));
    assert_eq!(
        vm(&bios)["spec"]["template"]["spec"]["domain"]["firmware"],
        json!({"bootloader": {"bios": {}}})
    );
    let efi = run(base());
    assert_eq!(
        vm(&efi)["spec"]["template"]["spec"]["domain"]["firmware"],
        json!({"bootloader": {"efi": {"secureBoot": false}}})
    );
}

#[test]
fn the_image_of_the_target_arch_is_imported_with_its_digest() {
    for (arch, kv) in [("x86_64", "amd64"), ("aarch64", "arm64")] {
        let e = run(with(json!({ "arch": arch })));
        let v = vm(&e);
        assert_eq!(v["spec"]["template"]["spec"]["architecture"], kv);
        let root = root(&e);
        assert_eq!(root["apiVersion"], "cdi.kubevirt.io/v1beta1");
        assert_eq!(root["metadata"]["name"], "web-root");
        assert_eq!(
            v["spec"]["template"]["spec"]["volumes"][0],
            json!({"name": "rootdisk", "dataVolume": {"name": "web-root"}})
        );
        assert_eq!(
            root["spec"]["source"]["http"],
            json!({"url": format!("https://example.com/{arch}.qcow2"),
                   "checksum": format!("sha256:{}", "ab".repeat(32))})
        );
        assert!(e.warnings.is_empty(), "{:?}", e.warnings);
    }
}

#[test]
fn a_local_image_waits_for_an_upload_and_says_so() {
    let mut local = base();
    local["images"] = json!([{"location": "/srv/disk.qcow2", "arch": "x86_64"}]);
    let e = run(local);
    assert_eq!(root(&e)["spec"]["source"], json!({"upload": {}}));
    assert_eq!(fields(&e), ["images[0].location"]);
    assert!(
        e.warnings[0]
            .to_string()
            .contains("virtctl image-upload dv web-root"),
        "{}",
        e.warnings[0]
    );
}

#[test]
fn disks_are_data_volumes_in_device_order() {
    let sizes = BTreeMap::from([("data".to_string(), 5u64 << 30)]);
    let e = run_with(
        with(json!({"disk": "20GiB", "additionalDisks": ["data", "gone"]})),
        &sizes,
        None,
    )
    .unwrap();
    let v = vm(&e);
    assert_eq!(
        root(&e)["spec"]["storage"],
        json!({"resources": {"requests": {"storage": "20Gi"}}})
    );
    let dvs = &v["spec"]["dataVolumeTemplates"];
    assert_eq!(dvs[0]["metadata"]["name"], "web-disk-data");
    assert_eq!(dvs[0]["spec"]["source"], json!({"blank": {}}));
    assert_eq!(
        dvs[0]["spec"]["storage"]["resources"]["requests"]["storage"],
        "5Gi"
    );
    assert_eq!(dvs.as_array().unwrap().len(), 1);
    // Without additional disks, no templates at all.
    assert!(
        vm(&run(base()))["spec"]
            .get("dataVolumeTemplates")
            .is_none()
    );
    let spec = &v["spec"]["template"]["spec"];
    let names: Vec<&str> = spec["domain"]["devices"]["disks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["rootdisk", "disk0", "cloudinitdisk"]);
    assert_eq!(spec["volumes"][1]["dataVolume"]["name"], "web-disk-data");
    // The guest formats and mounts it as /dev/vdb (cidata's lima.env).
    assert!(e.user_data.contains("LIMA_CIDATA_DISK_0_DEVICE=vdb"));
    assert!(!e.user_data.contains("gone"));
    assert_eq!(fields(&e), ["additionalDisks[1]"]);
    assert!(e.warnings[0].message.contains("limactl disk create gone"));
}

#[test]
fn port_forwards_become_services_when_they_can() {
    let e = run(with(json!({"portForwards": [
        {"guestPort": 22, "ignore": true},
        {"guestPort": 80, "hostPort": 8080, "proto": "tcp"},
        {"guestPort": 53, "hostPort": 5353, "proto": "any"},
        {"guestPortRange": [9000, 9010]},
        {"guestSocket": "/run/a.sock", "hostSocket": "/tmp/a.sock"},
        {"guestPort": 22, "hostPort": 2222},
        {"guestPort": 81, "hostPort": 8080},
    ]})));
    let svcs: Vec<&Object> = e.objects.iter().filter(|o| o.kind == "Service").collect();
    let names: Vec<&str> = svcs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["web-5353", "web-8080"]);
    let web = &svcs[1].value;
    assert_eq!(web["apiVersion"], "v1");
    assert_eq!(web["spec"]["selector"], json!({LABEL_INSTANCE: "web"}));
    assert_eq!(
        web["spec"]["ports"],
        json!([{"name": "tcp-8080", "protocol": "TCP", "port": 8080, "targetPort": 80}])
    );
    let protos: Vec<&str> = svcs[0].value["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["protocol"].as_str().unwrap())
        .collect();
    assert_eq!(protos, ["TCP", "UDP"]);
    // The VM's pods carry the label the Services select.
    assert_eq!(
        vm(&e)["spec"]["template"]["metadata"]["labels"][LABEL_INSTANCE],
        "web"
    );
    assert_eq!(
        fields(&e),
        [
            "portForwards[3]",
            "portForwards[4].guestSocket",
            "portForwards[5]",
            "portForwards[6]"
        ]
    );
    assert!(e.warnings[2].message.contains("portForwards[0] first"));
    assert!(
        e.warnings[3]
            .message
            .contains("already the Service port of portForwards[1]")
    );
}

#[test]
fn fields_that_cannot_map_are_warned_about_by_name() {
    let e = run(with(json!({
        "mounts": [{"location": "/srv/data"}],
        "networks": [{"socket": "/var/run/vmnet.sock"}],
        "copyToHost": [{"guest": "/etc/hostname", "host": "/tmp/h"}],
        "probes": [{"script": "#!/bin/sh\ntrue\n"}],
        "provision": [{"mode": "ansible", "playbook": "/p.yaml"}],
        "nestedVirtualization": true,
        "ssh": {"localPort": 60022},
        "containerd": {"system": true, "user": false},
        "hostResolver": {"hosts": {"db.example": "10.0.0.1"}},
        "firmware": {"images": [{"location": "/x.fd"}]},
        "portForwards": [{"guestPort": 80, "reverse": true, "hostSocket": "/tmp/s"}],
    })));
    let f = fields(&e);
    for want in [
        "mounts[0]",
        "networks[0]",
        "copyToHost[0]",
        "probes[0]",
        "provision[0]",
        "nestedVirtualization",
        "ssh.localPort",
        "containerd",
        "hostResolver.hosts",
        "firmware.images",
        "portForwards[0].hostSocket",
    ] {
        assert!(f.contains(&want), "{want} not warned about: {f:?}");
    }
    assert!(e.warnings.iter().all(|w| w.instance == "web"));
    assert!(
        e.warnings[0]
            .to_string()
            .starts_with("instance `web`: field `mounts[0]`: host directory `/srv/data`"),
        "{}",
        e.warnings[0]
    );
    // What is refused does not reach the guest either.
    assert!(!e.user_data.contains("/srv/data"));
    assert!(!e.user_data.contains("db.example"));
}

#[test]
fn vz_and_rosetta_are_refused() {
    let e = run(with(
        json!({"vmType": "vz", "vmOpts": {"vz": {"rosetta": {"enabled": true}}}}),
    ));
    let f = fields(&e);
    assert!(
        f.contains(&"vmType") && f.contains(&"vmOpts.vz.rosetta"),
        "{f:?}"
    );
    assert!(!e.user_data.contains("rosetta"));
}

#[test]
fn direct_kernel_boot_is_refused() {
    let mut img = image("x86_64");
    img["kernel"] = json!({"location": "https://example.com/vmlinuz"});
    let e = run(with(json!({ "images": [img] })));
    assert_eq!(fields(&e), ["images[0].kernel"]);
}

#[test]
fn cloud_init_carries_the_guest_configuration() {
    let e = run(with(json!({
        "user": {"name": "alice"},
        "env": {"GREETING": "hello"},
        "param": {"COLOUR": "blue"},
        "timezone": "Europe/Berlin",
        "caCerts": {"certs": ["-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"]},
        "provision": [
            {"mode": "system", "script": "#!/bin/sh\necho system-marker\n"},
            {"mode": "user", "script": "#!/bin/sh\necho user-marker\n"},
            {"mode": "boot", "script": "#!/bin/sh\necho boot-marker\n"},
            {"mode": "dependency", "script": "#!/bin/sh\necho dependency-marker\n"},
            {"mode": "data", "path": "/etc/data-marker", "content": "data-content\n"},
            {"mode": "yq", "path": "/etc/y.json", "expression": ".a = 1"},
        ],
    })));
    let u = &e.user_data;
    assert!(u.starts_with("#cloud-config\n"), "{u}");
    for want in [
        "name: alice",
        KEY,
        "hostname: lima-web",
        "timezone: Europe/Berlin",
        "MIIB",
        "GREETING=hello",
        "PARAM_COLOUR=blue",
        "echo system-marker",
        "echo user-marker",
        "echo boot-marker",
        "echo dependency-marker",
        "data-content",
        ".a = 1",
        // The volume's files, folded in; runcmd starts boot.sh from them.
        "path: /var/lib/lima-cidata/boot.sh",
        "path: /var/lib/lima-cidata/lima.env",
        "path: /var/lib/lima-cidata/provision.system/00000000",
        "path: /var/lib/lima-cidata/provision.user/00000001",
        "path: /var/lib/lima-cidata/provision.dependency/00000003",
        "path: /var/lib/lima-cidata/provision.data/00000004",
        "path: /var/lib/lima-cidata/provision.yq/00000005",
        "path: /var/lib/lima-cidata/boot.Linux/05-lima-disks.sh",
        "runcmd:",
        "/var/lib/lima-cidata/boot-hook.sh",
        "LIMA_CIDATA_IID=web.default",
    ] {
        assert!(u.contains(want), "user-data lacks {want:?}:\n{u}");
    }
    // No cidata volume to mount, no host resolver, no guest agent.
    assert!(!u.contains("/dev/disk/by-label/cidata"), "{u}");
    assert!(
        !u.contains("path: /var/lib/lima-cidata/lima-guestagent"),
        "{u}"
    );
    let v = vm(&e);
    let vol = &v["spec"]["template"]["spec"]["volumes"][1];
    assert_eq!(vol["name"], "cloudinitdisk");
    assert_eq!(
        vol["cloudInitNoCloud"],
        json!({"secretRef": {"name": "web-cloudinit"},
               "networkDataSecretRef": {"name": "web-cloudinit"}})
    );
    assert_eq!(e.objects[2].kind, "Secret");
    let secret = &e.objects[2].value;
    assert_eq!(secret["metadata"]["name"], "web-cloudinit");
    assert_eq!(secret["type"], "Opaque");
    assert_eq!(secret["stringData"][SECRET_USER_DATA], e.user_data.as_str());
    assert_eq!(
        secret["stringData"][SECRET_NETWORK_DATA],
        e.network_data.as_str()
    );
    // Why a Secret: KubeVirt refuses inline user-data over 2048 bytes.
    assert!(e.user_data.len() > 2048, "{}", e.user_data.len());
    // network-data matches the NIC KubeVirt creates.
    let nic = &v["spec"]["template"]["spec"]["domain"]["devices"]["interfaces"][0];
    assert_eq!(nic["macAddress"], e.mac.as_str());
    assert_eq!(nic["masquerade"], json!({}));
    assert!(e.network_data.contains(&e.mac), "{}", e.network_data);
    assert!(e.warnings.is_empty(), "{:?}", e.warnings);
}

#[test]
fn labels_annotations_and_namespace() {
    let e = run_with(base(), &BTreeMap::new(), Some("fleet")).unwrap();
    assert_eq!(root(&e)["metadata"]["namespace"], "fleet");
    assert_eq!(
        root(&e)["metadata"]["annotations"][ANNOTATION_SPEC_HASH],
        "sha256:00"
    );
    let m = &vm(&e)["metadata"];
    assert_eq!(m["name"], "web");
    assert_eq!(m["namespace"], "fleet");
    assert_eq!(m["labels"][LABEL_INSTANCE], "web");
    assert_eq!(m["labels"][LABEL_MANAGED_BY], MANAGER);
    assert_eq!(m["annotations"][ANNOTATION_SOURCE], "web.yaml");
    assert_eq!(m["annotations"][ANNOTATION_SPEC_HASH], "sha256:00");
    assert!(e.user_data.contains("LIMA_CIDATA_IID=web.fleet"));
    assert!(check_namespace("Fleet").is_err() && check_namespace("0fleet").is_ok());
    assert!(check_namespace("").is_err());
}

#[test]
fn output_is_deterministic_and_machine_independent() {
    let a = run(base());
    let b = run(base());
    assert_eq!(a, b);
    assert_eq!(a.mac, mac_for(None, "web"));
    assert_ne!(mac_for(Some("a"), "web"), mac_for(Some("b"), "web"));
    assert_eq!(spec_hash(&json!({"a": 1})), spec_hash(&json!({"a": 1})));
    assert_ne!(spec_hash(&json!({"a": 1})), spec_hash(&json!({"a": 2})));
}

#[test]
fn names_kubernetes_refuses_are_errors() {
    let spec = Spec::for_tests(base());
    for bad in ["Web", "my_vm", "1vm", &"a".repeat(60)] {
        let err = export(&Input {
            name: bad,
            spec: &spec,
            spec_hash: "sha256:00",
            source: "x.yaml",
            namespace: None,
            authorized_keys: &[KEY.to_string()],
            host_home: Path::new("/home/u"),
            disk_sizes: &BTreeMap::new(),
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("not a valid Kubernetes object name"), "{err}");
        assert!(err.contains(&format!("`{bad}`")), "{err}");
    }
}
