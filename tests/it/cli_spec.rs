//! `limactl validate`, `template` and `generate-jsonschema` against a temp
//! LIMA_HOME: bundled templates validate, bad input fails clearly (exit 1,
//! a fatal line naming file, line and field, never a panic).

use std::path::{Path, PathBuf};

use assert_cmd::Command;

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        std::fs::create_dir_all(dir.path().join("lima")).unwrap();
        Env { dir }
    }
    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }
    fn lima_home(&self) -> PathBuf {
        self.dir.path().join("lima")
    }
    fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("limactl").unwrap();
        c.env("LIMA_HOME", self.lima_home())
            .env("HOME", self.home())
            .env_remove("LIMA_TEMPLATES_PATH")
            .current_dir(self.dir.path());
        c
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p
    }
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

const IMAGE: &str = "images:\n- location: /images/x.qcow2\n  arch: x86_64\n";

/// Runs `limactl validate FILE` and returns (exit code, stderr).
fn validate(env: &Env, file: &Path) -> (i32, String) {
    let out = env.cmd().arg("validate").arg(file).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "limactl panicked: {stderr}");
    (out.status.code().unwrap_or(-1), stderr)
}

fn assert_fails(env: &Env, name: &str, text: &str, expect: &[&str]) {
    let f = env.write(name, text);
    let (code, stderr) = validate(env, &f);
    assert_eq!(code, 1, "{name} should fail; stderr: {stderr}");
    assert!(stderr.contains("level=fatal"), "{stderr}");
    for e in expect {
        assert!(stderr.contains(e), "{name}: expected {e:?} in: {stderr}");
    }
}

#[test]
fn every_bundled_template_validates() {
    let env = Env::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("templates"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "{files:?}");
    let out = env.cmd().arg("validate").args(&files).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for f in &files {
        assert!(
            stderr.contains(&format!("`{}`: OK", f.display())),
            "{stderr}"
        );
    }
    // And by name, through template: locators (bundled in the binary).
    for name in [
        "default",
        "debian-12",
        "ubuntu-24.04",
        "fedora",
        "alpine",
        "archlinux",
        // The container-engine family.
        "docker",
        "docker-rootful",
        "podman",
        "podman-rootful",
        "k3s",
        "k8s",
        "buildkit",
        "apptainer",
        "apptainer-rootful",
    ] {
        let out = env
            .cmd()
            .args(["validate", &format!("template:{name}")])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn bundled_images_have_digests_for_both_arches() {
    let env = Env::new();
    for entry in std::fs::read_dir(repo().join("templates/_images")).unwrap() {
        let p = entry.unwrap().path();
        let out = env
            .cmd()
            .args(["template", "copy", "--fill"])
            .arg(&p)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            p.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(&p).unwrap();
        let node = lima::spec::yaml::parse_single("t", &text).unwrap().unwrap();
        let images = node.to_json()["images"].as_array().unwrap().clone();
        for arch in ["x86_64", "aarch64"] {
            assert!(
                images.iter().any(|i| i["arch"] == arch
                    && i["digest"].as_str().is_some_and(|d| d.starts_with("sha"))),
                "{}: no pinned {arch} image",
                p.display()
            );
        }
    }
}

#[test]
fn wrong_types_name_field_and_line() {
    let env = Env::new();
    assert_fails(
        &env,
        "types.yaml",
        &format!("{IMAGE}cpus: four\n"),
        &["types.yaml:4:1: field `cpus`", "invalid type: string"],
    );
    assert_fails(
        &env,
        "types2.yaml",
        &format!("{IMAGE}mounts:\n- location: /tmp\n  writable: maybe\n"),
        &["types2.yaml:6:3: field `mounts[0].writable`"],
    );
}

#[test]
fn bad_scalar_values() {
    let env = Env::new();
    assert_fails(
        &env,
        "c0.yaml",
        &format!("{IMAGE}cpus: 0\n"),
        &["c0.yaml:4:1: field `cpus` must be a positive number of CPUs, got 0"],
    );
    assert_fails(
        &env,
        "cn.yaml",
        &format!("{IMAGE}cpus: -3\n"),
        &["field `cpus`", "got -3"],
    );
    assert_fails(
        &env,
        "arch.yaml",
        &format!("{IMAGE}arch: sparc\n"),
        &["arch.yaml:4:1: field `arch` must be one of"],
    );
    assert_fails(
        &env,
        "vm.yaml",
        &format!("{IMAGE}vmType: virtualbox\n"),
        &["field `vmType` must be one of", "virtualbox"],
    );
    assert_fails(
        &env,
        "mem.yaml",
        &format!("{IMAGE}memory: 4 gigs\n"),
        &[
            "mem.yaml:4:1: field `memory` has an invalid value",
            "invalid size",
        ],
    );
    assert_fails(
        &env,
        "disk.yaml",
        &format!("{IMAGE}disk: -5GiB\n"),
        &["field `disk` has an invalid value"],
    );
    assert_fails(
        &env,
        "etc.yaml",
        &format!("{IMAGE}mounts:\n- location: /tmp\n  mountPoint: /etc\n"),
        &["etc.yaml:6:3: field `mounts[0].mountPoint` must not be `/etc`"],
    );
    assert_fails(
        &env,
        "noimg.yaml",
        "cpus: 2\n",
        &["field `images` must be set"],
    );
}

/// Issue 13 row 5: a newline in a value that becomes a line of `lima.env`
/// (or of fstab, `/etc/environment`, a boot script) fails validation naming
/// the field, instead of adding `PATH=/tmp/evil` to the guest's environment.
#[test]
fn control_characters_in_guest_values_are_refused() {
    let env = Env::new();
    assert_fails(
        &env,
        "mp.yaml",
        &format!("{IMAGE}mounts:\n- location: /tmp\n  mountPoint: \"/mnt/a\\nPATH=/tmp/evil\"\n"),
        &[
            "mp.yaml:6:3: field `mounts[0].mountPoint` must not contain control characters",
            // Quoted, so the log line stays one line (logfmt escapes it again).
            r#"got \"/mnt/a\\nPATH=/tmp/evil\""#,
        ],
    );
    assert_fails(
        &env,
        "user.yaml",
        &format!("{IMAGE}user:\n  home: \"/home/x\\rPATH=/tmp/evil\"\n  shell: \"/bin/sh\\0\"\n"),
        &[
            "field `user.home` must not contain control characters",
            "field `user.shell` must not contain control characters",
        ],
    );
    assert_fails(
        &env,
        "prov.yaml",
        &format!(
            "{IMAGE}provision:\n- mode: data\n  path: \"/etc/x\\nPATH=/tmp/evil\"\n  owner: \"root\\x1b\"\n  content: x\nadditionalDisks:\n- name: d\n  fsArgs: [\"-m\\n0\"]\n  fsType: \"ext4\\n\"\n"
        ),
        &[
            "field `provision[0].path` must not contain control characters",
            "field `provision[0].owner` must not contain control characters",
            "field `additionalDisks[0].fsType` must not contain control characters",
            "field `additionalDisks[0].fsArgs[0]` must not contain control characters",
        ],
    );
    assert_fails(
        &env,
        "envs.yaml",
        &format!(
            "{IMAGE}env:\n  A: \"x\\ny\"\n  a.b: c\nparam:\n  P: \"x\\ny\"\nprovision:\n- script: \"#!/bin/sh\\necho $PARAM_P\"\n"
        ),
        &[
            "field `env.A` must not contain control characters",
            "field `env.a.b` is not a valid environment variable name",
            "field `param.P` must not contain control characters",
        ],
    );
    // A tab in an env or param value stays legitimate, as in Lima.
    let ok = env.write(
        "tab.yaml",
        &format!("{IMAGE}env:\n  A: \"x\\ty\"\nparam:\n  P: \"x\\ty\"\nprovision:\n- script: \"#!/bin/sh\\necho $PARAM_P\"\n"),
    );
    let (code, stderr) = validate(&env, &ok);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn structural_problems() {
    let env = Env::new();
    assert_fails(&env, "empty.yaml", "", &["empty.yaml` is empty"]);
    assert_fails(&env, "blank.yaml", "# only a comment\n\n", &["is empty"]);
    assert_fails(
        &env,
        "list.yaml",
        "- a\n- b\n",
        &["list.yaml:1:1: expected a mapping", "found a list"],
    );
    assert_fails(
        &env,
        "scalar.yaml",
        "hello\n",
        &["expected a mapping", "found a string"],
    );
    assert_fails(&env, "syntax.yaml", "images: [\n", &["syntax.yaml:"]);
    assert_fails(
        &env,
        "dup.yaml",
        &format!("{IMAGE}cpus: 1\ncpus: 2\n"),
        &["dup.yaml:5:1: mapping key `cpus` already defined"],
    );
}

#[test]
fn huge_file_and_alias_bomb_are_refused() {
    let env = Env::new();
    let mut big = String::from(IMAGE);
    big.push_str("message: |\n");
    let line = format!("  {}\n", "x".repeat(99));
    while big.len() < 20 << 20 {
        big.push_str(&line);
    }
    assert_fails(&env, "big.yaml", &big, &["is larger than 4194304 bytes"]);

    let mut bomb = String::from(IMAGE);
    bomb.push_str("x0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..12 {
        let p = i - 1;
        bomb.push_str(&format!(
            "x{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let start = std::time::Instant::now();
    assert_fails(&env, "bomb.yaml", &bomb, &["alias bomb"]);
    // Not a timing assertion on the product: a guard that the test itself ended.
    assert!(start.elapsed().as_secs() < 60);
}

#[test]
fn aliases_of_one_large_string_are_refused_by_expanded_bytes() {
    // 3 MB, one string, 2000 aliases of it: 6 GB once expanded.
    let env = Env::new();
    let mut text = format!("{IMAGE}message: &m \"{}\"\ncopies:\n", "x".repeat(3 << 20));
    for _ in 0..2000 {
        text.push_str("- *m\n");
    }
    let limit = lima::spec::yaml::alias_byte_limit(text.len());
    assert_fails(
        &env,
        "strings.yaml",
        &text,
        &[&format!(
            "strings.yaml: YAML aliases expand to more than {limit} bytes"
        )],
    );
}

#[test]
fn runaway_set_expressions_fail_cleanly_and_errors_are_readable() {
    let env = Env::new();
    let f = env.write("vm.yaml", IMAGE);
    let expr = "def f: 1+f; .cpus=f";
    let (code, err) = run_bounded(
        &env,
        &["create", "--tty=false", "--set", expr, f.to_str().unwrap()],
    );
    assert_eq!(code, 1, "{err}");
    assert!(!err.contains("overflowed its stack"), "{err}");
    // Depth is what this expression exhausts; the 5 s deadline is accepted
    // too, so that a very slow machine cannot fail the test.
    assert!(
        err.contains(&format!("expression `{expr}` recursed too deeply"))
            || err.contains(&format!("expression `{expr}` did not finish within")),
        "{err}"
    );
    assert!(!env.lima_home().join("vm").exists(), "nothing is created");

    let (code, err) = run_bounded(&env, &["yq", "-n", ".a | {b:}"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("Error: expected a term, found `}` at column 9"),
        "{err}"
    );
    assert!(!err.contains("Parse("), "{err}");
}

/// Runs limactl with a deadline; a run that would block for ever (the bug
/// this guards against) is killed and fails the test instead of hanging it.
/// Returns the exit code and stdout followed by stderr.
fn run_bounded(env: &Env, args: &[&str]) -> (i32, String) {
    let out = env
        .cmd()
        .args(args)
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .unwrap();
    let stderr =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code().is_some(),
        "limactl {} did not finish within 60 s (killed: {:?}); stderr: {stderr}",
        args.join(" "),
        out.status
    );
    assert!(!stderr.contains("panicked"), "limactl panicked: {stderr}");
    (out.status.code().unwrap(), stderr)
}

#[test]
fn fifos_devices_and_directories_are_refused_without_blocking() {
    let env = Env::new();
    let fifo = env.dir.path().join("fifo.yaml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let fifo_s = fifo.to_str().unwrap();
    let fifo_err = format!("cannot read `{fifo_s}`: it is a FIFO (named pipe), not a regular file");

    // The desired-state file itself, and a single-file `apply` source.
    let (code, err) = run_bounded(&env, &["validate", fifo_s]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&fifo_err), "{err}");
    let (code, err) = run_bounded(&env, &["apply", "--dry-run", "-f", fifo_s]);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains(&fifo_err), "{err}");

    // `base:` and provision `file:` targets.
    let f = env.write(
        "base.yaml",
        &format!(
            "base: {fifo_s}
"
        ),
    );
    let (code, err) = run_bounded(&env, &["validate", f.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&fifo_err), "{err}");
    let f = env.write(
        "prov.yaml",
        &format!("{IMAGE}provision:\n- mode: system\n  file: {fifo_s}\n"),
    );
    let (code, err) = run_bounded(&env, &["validate", f.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&fifo_err), "{err}");

    // A directory and a character device.
    let f = env.write("dirbase.yaml", "base: ./home\n");
    let (code, err) = run_bounded(&env, &["validate", f.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("it is a directory, not a regular file"),
        "{err}"
    );
    let f = env.write("dev.yaml", "base: /dev/zero\n");
    let (code, err) = run_bounded(&env, &["validate", f.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("`/dev/zero`: it is a character device, not a regular file"),
        "{err}"
    );

    // `_config/default.yaml`, read on every load.
    let ok = env.write("ok.yaml", IMAGE);
    assert_eq!(validate(&env, &ok).0, 0);
    let cfg = env.lima_home().join("_config");
    std::fs::create_dir_all(&cfg).unwrap();
    let cfg_fifo = cfg.join("default.yaml");
    nix::unistd::mkfifo(&cfg_fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let (code, err) = run_bounded(&env, &["validate", ok.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("default.yaml`: it is a FIFO"), "{err}");
    std::fs::remove_file(&cfg_fifo).unwrap();
    // `_config/base.yaml`, and a `template:NAME` in `_templates`.
    std::fs::create_dir_all(cfg.join("base.yaml")).unwrap();
    let (code, err) = run_bounded(&env, &["apply", "--dry-run", "-f", ok.to_str().unwrap()]);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("base.yaml`: it is a directory"), "{err}");
    std::fs::remove_dir(cfg.join("base.yaml")).unwrap();
    let templates = env.lima_home().join("_templates");
    std::fs::create_dir_all(&templates).unwrap();
    nix::unistd::mkfifo(
        &templates.join("piped.yaml"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let f = env.write("tmpl.yaml", "base: template:piped\n");
    let (code, err) = run_bounded(&env, &["validate", f.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("piped.yaml`: it is a FIFO"), "{err}");

    // An instance whose lima.yaml is a FIFO is listed with the error.
    let inst = env.lima_home().join("pipe");
    std::fs::create_dir_all(&inst).unwrap();
    nix::unistd::mkfifo(
        &inst.join("lima.yaml"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let (code, err) = run_bounded(&env, &["list", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("lima.yaml`: it is a FIFO"), "{err}");
}

#[test]
fn base_templates_resolve_and_loops_are_caught() {
    let env = Env::new();
    env.write("parts/img.yaml", IMAGE);
    env.write("parts/common.yaml", "base: img.yaml\ncpus: 3\n");
    let f = env.write("vm.yaml", "base:\n- ./parts/common.yaml\nmemory: 2GiB\n");
    let out = env
        .cmd()
        .args(["validate", "--fill"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let filled = String::from_utf8(out.stdout).unwrap();
    assert!(filled.contains("cpus: 3"), "{filled}");
    assert!(filled.contains("memory: 2GiB"), "{filled}");
    assert!(filled.contains("location: /images/x.qcow2"), "{filled}");

    env.write("loop/a.yaml", "base: b.yaml\n");
    env.write("loop/b.yaml", "base: c.yaml\n");
    env.write("loop/c.yaml", "base: a.yaml\n");
    let (code, stderr) = validate(&env, &env.dir.path().join("loop/a.yaml"));
    assert_eq!(code, 1);
    assert!(stderr.contains("base template loop detected"), "{stderr}");
    assert!(stderr.contains("a.yaml` → `"), "{stderr}");

    assert_fails(
        &env,
        "missing.yaml",
        "base: template:no-such-template\n",
        &["template `no-such-template` not found"],
    );
    assert_fails(
        &env,
        "missingfile.yaml",
        "base: ./nope.yaml\n",
        &["nope.yaml", "no such file"],
    );
}

#[test]
fn base_digests_are_verified() {
    use sha2::Digest;
    let env = Env::new();
    env.write("b.yaml", IMAGE);
    let sum = hex::encode(sha2::Sha256::digest(IMAGE.as_bytes()));
    let ok = env.write(
        "ok.yaml",
        &format!("base:\n- url: ./b.yaml\n  digest: sha256:{sum}\n"),
    );
    assert_eq!(validate(&env, &ok).0, 0);
    assert_fails(
        &env,
        "bad.yaml",
        &format!(
            "base:\n- url: ./b.yaml\n  digest: sha256:{}\n",
            "0".repeat(64)
        ),
        &["expected digest", &sum],
    );
}

#[test]
fn unknown_keys_warn_with_suggestions_but_load() {
    let env = Env::new();
    let f = env.write(
        "typo.yaml",
        &format!("{IMAGE}memroy: 4GiB\nfutureLimaField: 1\n"),
    );
    let (code, stderr) = validate(&env, &f);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("level=warning msg=\""), "{stderr}");
    assert!(
        stderr.contains("typo.yaml:4:1: unknown field `memroy` (did you mean `memory`?)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("unknown field `futureLimaField`"),
        "{stderr}"
    );
}

#[test]
fn config_default_and_override_are_layered() {
    let env = Env::new();
    let cfg = env.lima_home().join("_config");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(
        cfg.join("default.yaml"),
        "cpus: 3\nmemory: 3GiB\nenv: {A: d, B: d}\n",
    )
    .unwrap();
    std::fs::write(cfg.join("override.yaml"), "memory: 5GiB\nenv: {B: o}\n").unwrap();
    let f = env.write("vm.yaml", &format!("{IMAGE}cpus: 1\nmemory: 1GiB\n"));
    let out = env
        .cmd()
        .args(["validate", "--fill"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(out.status.success());
    let y = lima::spec::yaml::parse_single("o", &String::from_utf8(out.stdout).unwrap())
        .unwrap()
        .unwrap()
        .to_json();
    assert_eq!(y["cpus"], 1);
    assert_eq!(y["memory"], "5GiB");
    assert_eq!(y["env"], serde_json::json!({"A": "d", "B": "o"}));
}

#[test]
fn fill_expands_template_variables() {
    let env = Env::new();
    let f = env.write(
        "tv.yaml",
        &format!(
            "{IMAGE}param: {{GREETING: hi}}\nmounts:\n- location: \"~/share\"\n  mountPoint: \"/mnt/{{{{.User}}}}\"\nprovision:\n- script: \"echo {{{{.Param.GREETING}}}} {{{{.Home}}}}\"\n"
        ),
    );
    let out = env
        .cmd()
        .args(["validate", "--fill"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let y = lima::spec::yaml::parse_single("o", &String::from_utf8(out.stdout).unwrap())
        .unwrap()
        .unwrap()
        .to_json();
    let user = y["user"]["name"].as_str().unwrap().to_string();
    assert_eq!(
        y["mounts"][0]["location"],
        env.home().join("share").to_string_lossy().as_ref()
    );
    assert_eq!(y["mounts"][0]["mountPoint"], format!("/mnt/{user}"));
    assert_eq!(
        y["provision"][0]["script"],
        format!("echo hi /home/{user}.guest")
    );
    assert_eq!(y["provision"][0]["mode"], "system");

    assert_fails(
        &env,
        "unused.yaml",
        &format!("{IMAGE}param: {{UNUSED: x}}\n"),
        &["unused.yaml:4:9: field `param` key `UNUSED` is not used"],
    );
}

#[test]
fn template_commands() {
    let env = Env::new();
    let out = env.cmd().args(["template", "list"]).output().unwrap();
    let list = String::from_utf8(out.stdout).unwrap();
    for n in [
        "default",
        "debian-12",
        "ubuntu-24.04",
        "fedora",
        "alpine",
        "archlinux",
        "rocky-9",
    ] {
        assert!(list.lines().any(|l| l == n), "{n} missing from {list}");
    }
    assert!(!list.contains("_images"), "{list}");

    let out = env
        .cmd()
        .args(["template", "copy", "--verbatim", "template:debian-12", "-"])
        .output()
        .unwrap();
    let verbatim = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        verbatim,
        std::fs::read_to_string(repo().join("templates/debian-12.yaml")).unwrap()
    );

    let dest = env.dir.path().join("copy.yaml");
    let out = env
        .cmd()
        .args(["template", "copy", "--embed", "template:debian-12"])
        .arg(&dest)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let embedded = std::fs::read_to_string(&dest).unwrap();
    assert!(!embedded.contains("base:"), "{embedded}");
    assert!(embedded.contains("cloud.debian.org"), "{embedded}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
        0o644
    );
    // The embedded copy validates on its own.
    assert_eq!(validate(&env, &dest).0, 0);

    // User templates in $LIMA_HOME/_templates win over bundled ones.
    std::fs::create_dir_all(env.lima_home().join("_templates")).unwrap();
    std::fs::write(env.lima_home().join("_templates/mine.yaml"), IMAGE).unwrap();
    let out = env
        .cmd()
        .args(["validate", "template:mine"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = env
        .cmd()
        .args(["validate", "template://mine"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("should be written `template:mine`"));
}

#[test]
fn checked_in_schema_is_current() {
    let env = Env::new();
    let out = env.cmd().arg("generate-jsonschema").output().unwrap();
    assert!(out.status.success());
    let generated = String::from_utf8(out.stdout).unwrap();
    let checked_in = std::fs::read_to_string(repo().join("schemas/lima.schema.json")).unwrap();
    assert!(
        generated == checked_in,
        "schemas/lima.schema.json is stale: run `cargo run -- generate-jsonschema > schemas/lima.schema.json`"
    );
    let v: serde_json::Value = serde_json::from_str(&generated).unwrap();
    for field in [
        "images",
        "mounts",
        "portForwards",
        "provision",
        "runStrategy",
        "user",
        "vmOpts",
    ] {
        assert!(v["properties"].get(field).is_some(), "schema lacks {field}");
    }
}

#[test]
fn version_and_log_format() {
    let env = Env::new();
    let out = env.cmd().arg("--version").output().unwrap();
    let s = String::from_utf8(out.stdout).unwrap();
    assert!(s.starts_with("limactl version 2.0.0"), "{s}");
    let f = env.write("ok.yaml", IMAGE);
    let out = env
        .cmd()
        .args(["--log-format", "json", "validate"])
        .arg(&f)
        .output()
        .unwrap();
    let line = String::from_utf8(out.stderr).unwrap();
    let v: serde_json::Value = serde_json::from_str(line.lines().last().unwrap()).unwrap();
    assert_eq!(v["level"], "info");
    assert!(v["msg"].as_str().unwrap().ends_with(": OK"));
    let out = env
        .cmd()
        .args(["--log-level", "error", "validate"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(out.stderr.is_empty());
}
