//! `apply`, `diff`, `status` and `edit` without booting a guest: instances
//! are `runStrategy: Halted` (created, never started) from a tiny local image.

use crate::common;

use std::path::{Path, PathBuf};

use common::{Env, mtimes};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

struct Src {
    dir: PathBuf,
    image: PathBuf,
}

impl Src {
    fn new(env: &Env, name: &str) -> Src {
        let dir = env.dir.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let image = common::tiny_image(env.dir.path());
        Src { dir, image }
    }

    /// Writes `<name>.yaml`: a Halted instance, plus `extra` lines.
    fn write(&self, name: &str, extra: &str) -> PathBuf {
        let p = self.dir.join(format!("{name}.yaml"));
        let text = format!(
            "images:\n- location: {}\n  arch: x86_64\nrunStrategy: Halted\ncpus: 1\nmemory: 1GiB\ndisk: 1GiB\nmounts: []\ncontainerd: {{user: false, system: false}}\n{extra}",
            self.image.display()
        );
        std::fs::write(&p, text).unwrap();
        p
    }

    fn arg(&self) -> &str {
        self.dir.to_str().unwrap()
    }
}

#[test]
fn diff_and_dry_run_over_the_examples() {
    let env = Env::new();
    let fleet = repo().join("examples/fleet");
    let (code, out, err) = env.run(&["diff", "-f", fleet.to_str().unwrap()]);
    assert_eq!(code, 1, "changes → exit 1: {err}");
    for n in ["web", "db", "batch", "scratch"] {
        assert!(out.contains(&format!("+ {n}: create")), "{out}");
    }
    assert!(!out.contains("_common"), "parts are not instances: {out}");
    assert!(out.contains("Plan: 4 to create"), "{out}");
    // Halted and Manual instances are created but not started.
    let batch = out
        .split("+ batch: create")
        .nth(1)
        .unwrap()
        .split("\n+ ")
        .next()
        .unwrap();
    assert!(!batch.contains("→ start"), "{batch}");
    let web = out.split("+ web: create").nth(1).unwrap();
    assert!(
        web.contains("→ start: desired power state is running"),
        "{web}"
    );

    let (code, out, _) = env.run(&[
        "apply",
        "--dry-run",
        "-o",
        "json",
        "-f",
        repo().join("examples/dev-vm").to_str().unwrap(),
    ]);
    assert_eq!(code, 0);
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["instances"][0]["instance"], "dev");
    assert_eq!(j["instances"][0]["kind"], "create");
    assert_eq!(j["summary"]["create"], 1);
    assert!(
        std::fs::read_dir(env.lima_home()).unwrap().next().is_none(),
        "a dry run changes nothing"
    );

    let (code, _, err) = env.run(&["diff", "-f", "/nonexistent/dir"]);
    assert_eq!(code, 2, "errors → exit 2: {err}");
}

#[test]
fn apply_converges_and_a_second_apply_changes_nothing() {
    let env = Env::new();
    let src = Src::new(&env, "src");
    src.write("a", "");
    src.write("b", "");
    let (code, out, err) = env.run(&["apply", "-f", src.arg()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Plan: 2 to create"), "{out}");
    for n in ["a", "b"] {
        let dir = env.instance_dir(n);
        assert!(dir.join("diffdisk").exists());
        let owner = std::fs::read_to_string(dir.join("owner")).unwrap();
        assert_eq!(
            owner.trim(),
            std::fs::canonicalize(&src.dir).unwrap().to_str().unwrap()
        );
        assert_eq!(env.status(n), "Stopped");
    }
    let before = mtimes(&env.instance_dir("a"));
    let (code, out, err) = env.run(&["apply", "-f", src.arg()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("0 to create, 0 to update, 0 to restart, 0 to recreate, 0 to delete, 0 refused, 2 unchanged"), "{out}");
    assert_eq!(
        mtimes(&env.instance_dir("a")),
        before,
        "a no-op apply modified files"
    );
    let (code, _, _) = env.run(&["diff", "-f", src.arg()]);
    assert_eq!(code, 0, "no changes → exit 0");

    // The status of a created, halted instance.
    let out = env.ok(&["status", "--json", "a"]);
    let s: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    let cond = |t: &str| {
        s["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == t)
            .unwrap()["status"]
            .clone()
    };
    assert_eq!(cond("Created"), "True");
    assert_eq!(cond("Running"), "False");
    assert_eq!(cond("RestartRequired"), "False");
    assert_eq!(
        s["owner"],
        std::fs::canonicalize(&src.dir).unwrap().to_str().unwrap()
    );
}

#[test]
fn changes_are_classified_applied_or_refused() {
    let env = Env::new();
    let src = Src::new(&env, "src");
    src.write("vm", "");
    env.ok(&["apply", "-f", src.arg()]);

    // Restart-required + grow-only on a stopped instance: file updated, disk grown.
    src.write("vm", "").to_str().unwrap().to_string();
    let text = std::fs::read_to_string(src.dir.join("vm.yaml"))
        .unwrap()
        .replace("cpus: 1", "cpus: 2")
        .replace("disk: 1GiB", "disk: 3GiB");
    std::fs::write(src.dir.join("vm.yaml"), text).unwrap();
    let (code, out, err) = env.run(&["apply", "-f", src.arg()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("~ vm: update"), "{out}");
    assert!(out.contains("cpus 1 → 2  (restart-required)"), "{out}");
    assert!(out.contains("disk 1GiB → 3GiB  (grow-only)"), "{out}");
    assert!(out.contains("→ grow-disk: disk 1GiB → 3GiB"), "{out}");
    let j = env.list_json("vm");
    assert_eq!(j["cpus"], 2);
    let info = std::process::Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(env.instance_dir("vm").join("diffdisk"))
        .output()
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["virtual-size"], 3u64 << 30);

    // Shrinking and immutable fields are refused; nothing changes.
    let yaml_before = std::fs::read_to_string(env.instance_dir("vm").join("lima.yaml")).unwrap();
    let text = std::fs::read_to_string(src.dir.join("vm.yaml")).unwrap();
    std::fs::write(
        src.dir.join("vm.yaml"),
        text.replace("disk: 3GiB", "disk: 2GiB"),
    )
    .unwrap();
    let (code, out, _) = env.run(&["apply", "-f", src.arg()]);
    assert_eq!(code, 1);
    assert!(out.contains("! vm: refused"), "{out}");
    assert!(
        out.contains("field `disk` cannot shrink (3GiB → 2GiB)"),
        "{out}"
    );
    std::fs::write(
        src.dir.join("vm.yaml"),
        text.replace("arch: x86_64", "arch: aarch64") + "arch: aarch64\n",
    )
    .unwrap();
    let (code, out, err) = env.run(&["apply", "-f", src.arg()]);
    assert_eq!(code, 1, "{err}");
    assert!(
        out.contains("field `arch` is immutable (arch x86_64 → aarch64)"),
        "{out}"
    );
    assert!(out.contains("--recreate"), "{out}");
    assert!(err.contains("apply failed"), "{err}");
    assert_eq!(
        std::fs::read_to_string(env.instance_dir("vm").join("lima.yaml")).unwrap(),
        yaml_before
    );
    // --recreate of a protected instance is refused too.
    env.ok(&["protect", "vm"]);
    let (code, out, _) = env.run(&["apply", "--recreate", "-f", src.arg()]);
    assert_eq!(code, 1);
    assert!(out.contains("protected"), "{out}");
    assert!(env.instance_dir("vm").join("diffdisk").exists());
}

#[test]
fn ownership_prune_and_protection() {
    let env = Env::new();
    let src = Src::new(&env, "src");
    let other = Src::new(&env, "other");
    src.write("keep", "");
    src.write("gone", "");
    src.write("guarded", "");
    env.ok(&["apply", "-f", src.arg()]);
    env.ok(&["protect", "guarded"]);
    // An instance created by hand is not managed by the source.
    let manual = src.dir.parent().unwrap().join("manual.yaml");
    std::fs::copy(src.dir.join("keep.yaml"), &manual).unwrap();
    env.ok(&["create", manual.to_str().unwrap()]);

    std::fs::remove_file(src.dir.join("gone.yaml")).unwrap();
    std::fs::remove_file(src.dir.join("guarded.yaml")).unwrap();
    // Without --prune nothing is deleted.
    let (code, out, _) = env.run(&["apply", "-f", src.arg()]);
    assert_eq!(code, 0);
    assert!(
        out.contains(
            "gone (its file is gone; --prune deletes it): not managed by this source; left alone"
        ),
        "{out}"
    );
    assert!(env.instance_dir("gone").exists());
    // With --prune: the owned one goes, the protected one and the manual one stay.
    let (code, out, _) = env.run(&["apply", "--prune", "-f", src.arg()]);
    assert_eq!(code, 1, "the protected instance is a refusal: {out}");
    assert!(out.contains("- gone: delete"), "{out}");
    assert!(
        out.contains("→ delete: its file is gone from the source (--prune)"),
        "{out}"
    );
    assert!(out.contains("! guarded: refused"), "{out}");
    assert!(
        out.contains("manual: not managed by this source; left alone"),
        "{out}"
    );
    assert!(!env.instance_dir("gone").exists());
    assert!(env.instance_dir("guarded").join("diffdisk").exists());
    assert!(env.instance_dir("manual").join("diffdisk").exists());
    assert!(env.instance_dir("keep").exists());

    // Another source declaring an instance this source owns is refused.
    other.write("keep", "");
    let (code, out, _) = env.run(&["apply", "-f", other.arg()]);
    assert_eq!(code, 1);
    assert!(
        out.contains("instance `keep` is managed by another source"),
        "{out}"
    );
    // An empty directory with --prune deletes nothing it does not own.
    let empty = Src::new(&env, "empty");
    let (code, out, err) = env.run(&["apply", "--prune", "-f", empty.arg()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("0 to delete"), "{out}");
    for n in ["keep", "guarded", "manual"] {
        assert!(
            env.instance_dir(n).exists(),
            "{n} was deleted by an unrelated source"
        );
    }
    // A file named like the manual instance adopts it.
    src.write("manual", "");
    let (code, out, _) = env.run(&["apply", "-f", src.arg()]);
    assert_eq!(code, 0);
    assert!(
        out.contains("→ adopt: instance exists but no source manages it"),
        "{out}"
    );
}

#[test]
fn an_invalid_file_among_valid_ones_changes_nothing_of_its_own() {
    let env = Env::new();
    let src = Src::new(&env, "src");
    src.write("good", "");
    src.write("victim", "");
    env.ok(&["apply", "-f", src.arg()]);
    // victim's file breaks; bad names and duplicates are errors of their files only.
    std::fs::write(src.dir.join("victim.yaml"), "cpus: [\n").unwrap();
    std::fs::write(src.dir.join("Bad Name.yaml"), "cpus: 1\n").unwrap();
    src.write("newone", "");
    let (code, out, err) = env.run(&["apply", "--prune", "-f", src.arg()]);
    assert_eq!(code, 1, "{err}");
    assert!(
        out.contains("+ newone: create"),
        "the valid files still apply: {out}"
    );
    assert!(out.contains("victim.yaml:2:1"), "{out}");
    assert!(out.contains("invalid instance name `Bad Name`"), "{out}");
    assert!(env.instance_dir("newone").join("diffdisk").exists());
    assert!(
        env.instance_dir("victim").join("diffdisk").exists(),
        "an invalid file never deletes its instance"
    );
    assert!(!out.contains("- victim"), "{out}");
}

#[test]
fn edit_goes_through_the_plan() {
    let env = Env::new();
    let src = Src::new(&env, "src");
    let t = src.write("vm", "");
    env.ok(&["create", t.to_str().unwrap()]);
    let (code, out, err) = env.run(&["edit", "vm", "--cpus", "3", "--set", ".message = \"hi\""]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("cpus 1 → 3  (restart-required)") || out.contains("cpus 1 → 3"),
        "{err}{out}"
    );
    assert!(
        err.contains("message (unset) → hi") || err.contains("message  → hi"),
        "{err}"
    );
    assert_eq!(env.list_json("vm")["cpus"], 3);
    let (code, _, err) = env.run(&["edit", "vm", "--set", ".arch = \"aarch64\""]);
    assert_eq!(code, 1);
    assert!(err.contains("field `arch` is immutable"), "{err}");
    let (code, _, err) = env.run(&["edit", "vm", "--set", ".cpus = -1"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("field `cpus` must be a positive number"),
        "{err}"
    );
    assert_eq!(
        env.list_json("vm")["cpus"],
        3,
        "an invalid edit changed nothing"
    );
}

#[test]
fn concurrent_applies_of_one_source_serialise_per_instance() {
    let env = Env::new();
    let src = Src::new(&env, "src");
    for n in ["p1", "p2", "p3"] {
        src.write(n, "");
    }
    // Create them first, then race two applies that both want a change.
    env.ok(&["apply", "-f", src.arg()]);
    for n in ["p1", "p2", "p3"] {
        let t = std::fs::read_to_string(src.dir.join(format!("{n}.yaml"))).unwrap();
        std::fs::write(
            src.dir.join(format!("{n}.yaml")),
            t.replace("disk: 1GiB", "disk: 2GiB"),
        )
        .unwrap();
    }
    let children: Vec<_> = (0..2)
        .map(|_| {
            std::process::Command::new(assert_cmd::cargo::cargo_bin("limactl"))
                .env("LIMA_HOME", env.lima_home())
                .env("HOME", env.dir.path().join("home"))
                .args(["apply", "--parallel", "3", "-f", src.arg()])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for n in ["p1", "p2", "p3"] {
        assert_eq!(env.list_json(n)["disk"], 2u64 << 30);
    }
    let (code, _, _) = env.run(&["diff", "-f", src.arg()]);
    assert_eq!(code, 0);
}

/// An entry that exists but cannot be read is an error of its instance,
/// never its absence: `--prune` deletes none of them.
#[test]
fn prune_never_deletes_an_instance_whose_file_cannot_be_read() {
    let env = Env::new();
    let src = Src::new(&env, "src");
    for n in ["dangling", "looping", "dir", "fifo", "keep"] {
        src.write(n, "");
    }
    env.ok(&["apply", "-f", src.arg()]);
    let file = |n: &str| src.dir.join(format!("{n}.yaml"));
    for n in ["dangling", "looping", "dir", "fifo"] {
        std::fs::remove_file(file(n)).unwrap();
    }
    std::os::unix::fs::symlink("/nonexistent", file("dangling")).unwrap();
    std::os::unix::fs::symlink(file("looping"), file("looping")).unwrap();
    std::fs::create_dir(file("dir")).unwrap();
    nix::unistd::mkfifo(&file("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();

    for verb in ["diff", "apply"] {
        let (code, out, err) = env.run(&[verb, "--prune", "-f", src.arg()]);
        assert_ne!(code, 0, "{verb}: unreadable files are errors: {out}{err}");
        assert!(out.contains("0 to delete"), "{verb}: {out}");
        for (n, what) in [
            ("dangling", "dangling symlink (to /nonexistent)"),
            (
                "looping",
                "too many levels of symbolic links (a symlink loop)",
            ),
            ("dir", "it is a directory, not a regular file"),
            ("fifo", "it is a FIFO (named pipe), not a regular file"),
        ] {
            assert!(
                out.contains(&format!("{n}.yaml`: {what}"))
                    && out.contains(&format!("instance `{n}` is left alone")),
                "{verb}: {n}: {out}"
            );
            assert!(!out.contains(&format!("- {n}: delete")), "{verb}: {out}");
        }
    }
    for n in ["dangling", "looping", "dir", "fifo", "keep"] {
        assert!(
            env.instance_dir(n).join("diffdisk").exists(),
            "{n} was deleted"
        );
    }
}

/// `apply` applies the name checks of `create`: a name whose socket paths
/// would not fit makes no instance that could never start.
#[test]
fn apply_refuses_a_name_create_refuses() {
    let env = Env::new();
    let src = Src::new(&env, "src");
    let long = "a".repeat(70);
    assert!(
        env.instance_dir(&long)
            .join("ssh.sock.1234567890123456")
            .as_os_str()
            .len()
            >= 108,
        "LIMA_HOME is long enough for the socket paths of a 70-character name not to fit"
    );
    let file = src.write(&long, "");
    src.write("short", "");
    let (code, out, err) = env.run(&["apply", "-f", src.arg()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains(&format!("{long}.yaml: instance name `{long}` too long"))
            && out.contains("108-byte unix socket path limit"),
        "{out}"
    );
    assert!(
        out.contains("+ short: create"),
        "the other file applies: {out}"
    );
    assert!(!env.instance_dir(&long).exists());
    let (code, _, err) = env.run(&["create", "--name", &long, file.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("108-byte unix socket path limit"), "{err}");
}
