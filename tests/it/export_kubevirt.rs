//! `limactl export kubevirt` through the CLI, without a cluster: every
//! exported object is validated strictly (unknown fields are errors, as
//! `kubectl apply --validate=strict` reports them) against KubeVirt's and
//! CDI's published OpenAPI definitions (`tests/data/kubevirt/`, with their
//! provenance).

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::common::Env;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/kubevirt")
        .join(name)
}

fn repo(p: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(p)
        .display()
        .to_string()
}

/// Every object schema that lists `properties` is closed: Swagger 2.0
/// definitions leave `additionalProperties` open, a strict server does not.
fn close(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if m.contains_key("properties") && !m.contains_key("additionalProperties") {
                m.insert("additionalProperties".into(), Value::Bool(false));
            }
            for (_, child) in m.iter_mut() {
                close(child);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(close),
        _ => {}
    }
}

/// A strict validator for definition `def` of a swagger file: its
/// `definitions` become a draft-07 root (so `#/definitions/…` references
/// resolve), closed by [`close`].
fn validator(file: &str, def: &str) -> jsonschema::Validator {
    let swagger: Value = serde_json::from_slice(&std::fs::read(data(file)).unwrap()).unwrap();
    let mut defs = swagger["definitions"].clone();
    assert!(defs.get(def).is_some(), "{file} has no definition {def}");
    close(&mut defs);
    let root = json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "definitions": defs,
        "allOf": [{ "$ref": format!("#/definitions/{def}") }],
    });
    jsonschema::validator_for(&root).unwrap()
}

struct Schemas {
    vm: jsonschema::Validator,
    dv: jsonschema::Validator,
}

impl Schemas {
    fn new() -> Schemas {
        Schemas {
            vm: validator("kubevirt-swagger.json", "v1.VirtualMachine"),
            dv: validator("cdi-swagger.json", "v1beta1.DataVolume"),
        }
    }

    /// Every error of an object (empty: valid).
    fn errors(&self, obj: &Value) -> Vec<String> {
        let fmt = |v: &jsonschema::Validator, o: &Value| -> Vec<String> {
            v.iter_errors(o)
                .map(|e| format!("{} at {}", e, e.instance_path()))
                .collect()
        };
        match obj["kind"].as_str() {
            Some("VirtualMachine") => {
                let mut errs = fmt(&self.vm, obj);
                // Each template is a DataVolume of CDI's own API too.
                let none = Vec::new();
                let templates = obj["spec"]["dataVolumeTemplates"]
                    .as_array()
                    .unwrap_or(&none);
                for t in templates {
                    let mut dv = t.clone();
                    dv["apiVersion"] = json!("cdi.kubevirt.io/v1beta1");
                    dv["kind"] = json!("DataVolume");
                    errs.extend(fmt(&self.dv, &dv));
                }
                errs
            }
            Some("DataVolume") => fmt(&self.dv, obj),
            Some("Service") => service_errors(obj),
            Some("Secret") => secret_errors(obj),
            other => vec![format!("unexpected kind {other:?}")],
        }
    }
}

/// Neither definition file has core/v1 `Service`: its few fields are checked here.
fn service_errors(obj: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    let top: Vec<&str> = obj
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    if top != ["apiVersion", "kind", "metadata", "spec"] || obj["apiVersion"] != "v1" {
        errs.push(format!("Service fields {top:?}"));
    }
    for p in obj["spec"]["ports"].as_array().unwrap() {
        let keys: Vec<&str> = p.as_object().unwrap().keys().map(String::as_str).collect();
        if keys != ["name", "protocol", "port", "targetPort"] {
            errs.push(format!("Service port fields {keys:?}"));
        }
    }
    errs
}

/// Nor core/v1 `Secret`: the cloud-init one has these fields, and the keys
/// KubeVirt reads.
fn secret_errors(obj: &Value) -> Vec<String> {
    let top: Vec<&str> = obj
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let keys: Vec<&str> = obj["stringData"]
        .as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default();
    if top != ["apiVersion", "kind", "metadata", "type", "stringData"]
        || obj["apiVersion"] != "v1"
        || keys != ["userdata", "networkdata"]
    {
        vec![format!("Secret fields {top:?}, keys {keys:?}")]
    } else {
        Vec::new()
    }
}

/// The YAML documents of a file or stream, as JSON.
fn documents(text: &str) -> Vec<Value> {
    lima::spec::yaml::parse_documents("export", text)
        .unwrap()
        .iter()
        .map(|n| n.to_json())
        .filter(|v| !v.is_null())
        .collect()
}

fn warnings(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains("level=warning"))
        .collect()
}

#[test]
fn the_fleet_example_exports_cleanly_and_validates_strictly() {
    let env = Env::new();
    let out = env.dir.path().join("out");
    let (code, stdout, stderr) = env.run(&[
        "export",
        "kubevirt",
        "-f",
        &repo("examples/fleet"),
        "-o",
        out.to_str().unwrap(),
        "--namespace",
        "fleet",
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(warnings(&stderr).is_empty(), "{stderr}");
    // Nothing to refuse: --strict passes too.
    env.ok(&[
        "export",
        "kubevirt",
        "--strict",
        "-f",
        &repo("examples/fleet"),
    ]);
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "batch.yaml",
            "db.yaml",
            "kustomization.yaml",
            "scratch.yaml",
            "web.yaml"
        ]
    );
    let k = &documents(&std::fs::read_to_string(out.join("kustomization.yaml")).unwrap())[0];
    assert_eq!(
        k["resources"],
        json!(["batch.yaml", "db.yaml", "scratch.yaml", "web.yaml"])
    );
    assert_eq!(k["namespace"], "fleet");

    let schemas = Schemas::new();
    let mut kinds = Vec::new();
    for n in ["batch", "db", "scratch", "web"] {
        let text = std::fs::read_to_string(out.join(format!("{n}.yaml"))).unwrap();
        for obj in documents(&text) {
            let errs = schemas.errors(&obj);
            assert!(errs.is_empty(), "{n}: {errs:#?}");
            assert_eq!(obj["metadata"]["namespace"], "fleet");
            kinds.push(format!(
                "{} {}",
                obj["kind"].as_str().unwrap(),
                obj["metadata"]["name"].as_str().unwrap()
            ));
        }
    }
    assert_eq!(
        kinds,
        [
            "VirtualMachine batch",
            "DataVolume batch-root",
            "Secret batch-cloudinit",
            "VirtualMachine db",
            "DataVolume db-root",
            "Secret db-cloudinit",
            "VirtualMachine scratch",
            "DataVolume scratch-root",
            "Secret scratch-cloudinit",
            "VirtualMachine web",
            "DataVolume web-root",
            "Secret web-cloudinit",
            "Service web-8080"
        ]
    );
    // What the fleet's files say, in KubeVirt's words.
    let web = documents(&std::fs::read_to_string(out.join("web.yaml")).unwrap());
    assert_eq!(web[0]["spec"]["runStrategy"], "Always");
    assert_eq!(
        web[0]["spec"]["template"]["spec"]["domain"]["memory"]["guest"],
        "2Gi"
    );
    let root = &web[1]["spec"];
    assert_eq!(root["storage"]["resources"]["requests"]["storage"], "10Gi");
    assert!(
        root["source"]["http"]["url"]
            .as_str()
            .unwrap()
            .starts_with("https://"),
        "{root}"
    );
    assert!(
        root["source"]["http"]["checksum"]
            .as_str()
            .unwrap()
            .starts_with("sha512:")
            || root["source"]["http"]["checksum"]
                .as_str()
                .unwrap()
                .starts_with("sha256:"),
        "{root}"
    );
    assert_eq!(web[3]["spec"]["ports"][0]["port"], 8080);
    assert_eq!(web[3]["spec"]["ports"][0]["targetPort"], 80);
    let db = documents(&std::fs::read_to_string(out.join("db.yaml")).unwrap());
    assert_eq!(db[0]["spec"]["runStrategy"], "RerunOnFailure");
    assert_eq!(
        db[0]["spec"]["template"]["spec"]["domain"]["cpu"]["cores"],
        2
    );
}

/// An instance using most of lima.yaml: it validates, says what it cannot
/// export, and `--strict` then fails without writing anything.
#[test]
fn a_rich_instance_validates_and_strict_refuses_its_warnings() {
    let env = Env::new();
    let src = env.dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(
        src.join("rich.yaml"),
        r##"
images:
- location: https://example.com/x86_64.qcow2
  arch: x86_64
  digest: sha256:0000000000000000000000000000000000000000000000000000000000000000
- location: https://example.com/aarch64.qcow2
  arch: aarch64
arch: x86_64
cpus: 2
memory: 3GiB
disk: 12GiB
firmware:
  legacyBIOS: true
tpm: true
containerd:
  system: false
  user: false
video:
  display: vnc
mounts:
- location: /opt/data
env:
  GREETING: hello
param:
  COLOUR: blue
timezone: UTC
provision:
- mode: system
  script: "#!/bin/sh\necho $PARAM_COLOUR\n"
- mode: user
  script: "#!/bin/sh\necho hi\n"
- mode: data
  path: /etc/x
  content: "x\n"
portForwards:
- guestPort: 443
  hostPort: 8443
  proto: any
- guestSocket: /run/x.sock
  hostSocket: x.sock
"##,
    )
    .unwrap();
    let out = env.dir.path().join("out");
    let args = [
        "export",
        "kubevirt",
        "-f",
        src.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ];
    let (code, stdout, stderr) = env.run(&args);
    assert_eq!(code, 0, "{stdout}{stderr}");
    // (The loader's own warnings, e.g. "`video.display: vnc` is experimental", are apply's too.)
    let w: Vec<&str> = warnings(&stderr)
        .into_iter()
        .filter(|l| l.contains("msg=\"instance `"))
        .collect();
    assert_eq!(w.len(), 2, "{stderr}");
    assert!(
        w[0].contains("instance `rich`: field `mounts[0]`"),
        "{stderr}"
    );
    assert!(
        w[1].contains("instance `rich`: field `portForwards[1].guestSocket`"),
        "{stderr}"
    );
    let docs = documents(&std::fs::read_to_string(out.join("rich.yaml")).unwrap());
    let schemas = Schemas::new();
    for d in &docs {
        let errs = schemas.errors(d);
        assert!(errs.is_empty(), "{errs:#?}");
    }
    let devices = &docs[0]["spec"]["template"]["spec"]["domain"]["devices"];
    assert_eq!(devices["tpm"], json!({}));
    assert!(devices.get("autoattachGraphicsDevice").is_none());
    assert_eq!(
        docs[0]["spec"]["template"]["spec"]["domain"]["firmware"]["bootloader"],
        json!({"bios": {}})
    );
    assert_eq!(docs[3]["spec"]["ports"].as_array().unwrap().len(), 2);

    let out2 = env.dir.path().join("out2");
    let mut strict = args.to_vec();
    strict[5] = out2.to_str().unwrap();
    strict.push("--strict");
    let (code, _, stderr) = env.run(&strict);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("--strict: 2 field(s) cannot be exported"),
        "{stderr}"
    );
    assert!(!out2.exists(), "--strict wrote {}", out2.display());
}

/// The validator is strict: an unknown field anywhere is an error naming it.
#[test]
fn the_strict_check_catches_unknown_fields() {
    let env = Env::new();
    let stdout = env.ok(&["export", "kubevirt", "-f", &repo("examples/fleet/web.yaml")]);
    let docs = documents(&stdout);
    let schemas = Schemas::new();
    let errs = schemas.errors(&docs[0]);
    assert!(errs.is_empty(), "{errs:#?}");

    let mut vm = docs[0].clone();
    vm["spec"]["template"]["spec"]["domain"]["cpu"]["coers"] = json!(2);
    let errs = schemas.errors(&vm);
    assert!(
        errs.iter()
            .any(|e| e.contains("coers") && e.contains("/spec/template/spec/domain/cpu")),
        "{errs:#?}"
    );
    // In the root DataVolume, against CDI's definitions.
    let mut dv = docs[1].clone();
    let errs = schemas.errors(&dv);
    assert!(errs.is_empty(), "{errs:#?}");
    dv["spec"]["source"]["http"]["sha256"] = json!("x");
    let errs = schemas.errors(&dv);
    assert!(errs.iter().any(|e| e.contains("sha256")), "{errs:#?}");
    // Why the root disk is not a dataVolumeTemplates entry: KubeVirt's own
    // VirtualMachine API does not know CDI's `checksum`, strictly.
    let mut vm = docs[0].clone();
    vm["spec"]["dataVolumeTemplates"] =
        json!([{"metadata": {"name": "t"}, "spec": docs[1]["spec"].clone()}]);
    let errs = schemas.errors(&vm);
    assert!(
        errs.iter().any(|e| e.contains("checksum")
            && e.contains("/spec/dataVolumeTemplates/0/spec/source/http")),
        "{errs:#?}"
    );
    // A wrong type, too.
    let mut vm = docs[0].clone();
    vm["spec"]["runStrategy"] = json!(1);
    assert!(!schemas.errors(&vm).is_empty());
}

#[test]
fn output_is_deterministic_and_stale_files_are_removed() {
    let env = Env::new();
    let src = env.dir.path().join("fleet");
    std::fs::create_dir(&src).unwrap();
    for f in std::fs::read_dir(repo("examples/fleet")).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), src.join(f.file_name())).unwrap();
    }
    let export_to = |dir: &Path| {
        env.ok(&[
            "export",
            "kubevirt",
            "-f",
            src.to_str().unwrap(),
            "-o",
            dir.to_str().unwrap(),
        ]);
    };
    let (a, b) = (env.dir.path().join("a"), env.dir.path().join("b"));
    export_to(&a);
    export_to(&b);
    let read = |d: &Path| -> Vec<(String, Vec<u8>)> {
        let mut v: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(read(&a), read(&b));
    // The same files elsewhere (another checkout) give the same bytes.
    let moved = env.dir.path().join("elsewhere/deeper/fleet");
    std::fs::create_dir_all(&moved).unwrap();
    for f in std::fs::read_dir(&src).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), moved.join(f.file_name())).unwrap();
    }
    let c = env.dir.path().join("c");
    env.ok(&[
        "export",
        "kubevirt",
        "-f",
        moved.to_str().unwrap(),
        "-o",
        c.to_str().unwrap(),
    ]);
    assert_eq!(read(&a), read(&c));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(a.join("web.yaml"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "{mode:o}");
    // The stream is the same documents.
    let stream = env.ok(&["export", "kubevirt", "-f", src.to_str().unwrap()]);
    assert_eq!(documents(&stream).len(), 13);

    // An instance removed from the source disappears from the output;
    // a file the export did not write stays.
    std::fs::remove_file(src.join("scratch.yaml")).unwrap();
    std::fs::write(a.join("notes.yaml"), "mine: true\n").unwrap();
    export_to(&a);
    let names: Vec<String> = read(&a).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "batch.yaml",
            "db.yaml",
            "kustomization.yaml",
            "notes.yaml",
            "web.yaml"
        ]
    );
}

#[test]
fn arch_selects_the_image_and_bad_input_is_named() {
    let env = Env::new();
    let stdout = env.ok(&[
        "export",
        "kubevirt",
        "-f",
        &repo("examples/fleet/web.yaml"),
        "--arch",
        "aarch64",
    ]);
    let docs = documents(&stdout);
    let vm = &docs[0];
    assert_eq!(vm["spec"]["template"]["spec"]["architecture"], "arm64");
    let url = docs[1]["spec"]["source"]["http"]["url"].as_str().unwrap();
    assert!(url.contains("arm64") || url.contains("aarch64"), "{url}");

    let (code, _, stderr) = env.run(&[
        "export",
        "kubevirt",
        "-f",
        &repo("examples/fleet"),
        "--arch",
        "sparc",
    ]);
    assert_ne!(code, 0);
    assert!(stderr.contains("sparc"), "{stderr}");

    let (code, _, stderr) = env.run(&[
        "export",
        "kubevirt",
        "-f",
        &repo("examples/fleet"),
        "--namespace",
        "Not_A_Namespace",
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("--namespace `Not_A_Namespace`: not a valid Kubernetes namespace"),
        "{stderr}"
    );

    let bad = env.dir.path().join("Bad_Name.yaml");
    std::fs::write(&bad, "base: template:_images/debian-12\n").unwrap();
    let (code, _, stderr) = env.run(&["export", "kubevirt", "-f", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("Bad_Name.yaml") && stderr.contains("not a valid Kubernetes object name"),
        "{stderr}"
    );
    let broken = env.dir.path().join("broken.yaml");
    std::fs::write(&broken, "cpus: [\n").unwrap();
    let (code, stdout, stderr) = env.run(&["export", "kubevirt", "-f", broken.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("broken.yaml"), "{stderr}");
}
