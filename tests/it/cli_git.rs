//! Git sources (`-f git::URL//SUBDIR?ref=REF`) against local bare
//! repositories made with the real `git`, `file://` URLs, and
//! `runStrategy: Halted` instances from a tiny image (no guest boots).

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::Env;

/// A bare "remote" (`origin.git`, default branch `main`) and a working
/// repository that pushes to it.
pub struct Repo {
    pub origin: PathBuf,
    pub work: PathBuf,
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

impl Repo {
    pub fn new(root: &Path) -> Repo {
        let origin = root.join("origin.git");
        let work = root.join("work");
        std::fs::create_dir_all(&origin).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        git(&origin, &["init", "--quiet", "--bare", "-b", "main"]);
        git(&work, &["init", "--quiet", "-b", "main"]);
        Repo { origin, work }
    }

    /// Writes (`Some`) or removes (`None`) files, commits, pushes `main`;
    /// returns the commit.
    pub fn commit(&self, files: &[(&str, Option<&str>)]) -> String {
        for (path, text) in files {
            let p = self.work.join(path);
            match text {
                Some(t) => {
                    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                    std::fs::write(&p, t).unwrap();
                }
                None => std::fs::remove_file(&p).unwrap(),
            }
        }
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "--quiet", "-m", "change"]);
        self.push();
        git(&self.work, &["rev-parse", "HEAD"])
    }

    /// Moves `main` (locally and on the remote) to `commit`.
    pub fn reset(&self, commit: &str) {
        git(&self.work, &["reset", "--quiet", "--hard", commit]);
        self.push();
    }

    fn push(&self) {
        git(
            &self.work,
            &[
                "push",
                "--quiet",
                "--force",
                self.origin.to_str().unwrap(),
                "HEAD:main",
            ],
        );
    }

    pub fn delete_branch(&self) {
        git(&self.origin, &["update-ref", "-d", "refs/heads/main"]);
    }

    /// `git::file://ORIGIN//SUBDIR?ref=REF`.
    pub fn locator(&self, subdir: &str, reference: &str) -> String {
        format!(
            "git::file://{}//{subdir}?ref={reference}",
            self.origin.display()
        )
    }
}

/// The shared part every instance file uses through a relative `base:`.
fn base(image: &Path) -> String {
    format!(
        "images:\n- location: {}\n  arch: x86_64\nrunStrategy: Halted\nmemory: 1GiB\ndisk: 1GiB\nmounts: []\ncontainerd: {{user: false, system: false}}\n",
        image.display()
    )
}

fn vm(cpus: u32) -> String {
    format!("base: ../shared/base.yaml\ncpus: {cpus}\n")
}

fn status_json(env: &Env, name: &str) -> serde_json::Value {
    let out = env.ok(&["status", "--json", name]);
    serde_json::from_str(out.lines().next().unwrap()).unwrap()
}

fn revision(env: &Env, name: &str) -> Option<String> {
    status_json(env, name)["observedRevision"]
        .as_str()
        .map(str::to_string)
}

fn cpus(env: &Env, name: &str) -> u64 {
    env.list_json(name)["cpus"].as_u64().unwrap()
}

#[test]
fn apply_and_diff_follow_one_commit_at_a_time() {
    let env = Env::new();
    let image = common::tiny_image(env.dir.path());
    let repo = Repo::new(&env.dir.path().join("repo"));
    let c1 = repo.commit(&[
        ("shared/base.yaml", Some(&base(&image))),
        ("vms/a.yaml", Some(&vm(1))),
        ("vms/b.yaml", Some(&vm(1))),
        ("README.md", Some("not an instance\n")),
    ]);
    let src = repo.locator("vms", "main");

    // Applied from the ref; `base:` resolved inside the same commit.
    let out = env.ok(&["apply", "-f", &src]);
    assert!(out.contains(&format!("commit {c1}")), "{out}");
    assert_eq!((cpus(&env, "a"), cpus(&env, "b")), (1, 1));
    for n in ["a", "b"] {
        assert_eq!(revision(&env, n).as_deref(), Some(c1.as_str()));
        let owner = std::fs::read_to_string(env.instance_dir(n).join("owner")).unwrap();
        assert_eq!(
            owner.trim(),
            format!("git::file://{}//vms", repo.origin.display()),
            "ownership is the URL and the subdirectory, not the ref"
        );
    }
    let status = env.ok(&["status", "a"]);
    assert!(
        status.contains("REVISION") && status.contains(&c1[..12]),
        "{status}"
    );
    assert_eq!(env.run(&["diff", "-f", &src]).0, 0, "converged");

    // Another source's instance, and an unowned one: never pruned by the Git source.
    let dir = env.dir.path().join("local");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("other.yaml"), base(&image)).unwrap();
    env.ok(&["apply", "-f", dir.to_str().unwrap()]);

    // A commit changes a: the plan shows it with the new revision.
    let c2 = repo.commit(&[("vms/a.yaml", Some(&vm(2)))]);
    let (code, out, _) = env.run(&["diff", "-f", &src]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("~ a: update (commit {})", &c2[..12]))
            && out.contains("cpus 1 → 2")
            && out.contains(&format!("commit {c2}")),
        "{out}"
    );
    assert!(!out.contains("b: update"), "{out}");
    env.ok(&["apply", "-f", &src]);
    assert_eq!(cpus(&env, "a"), 2);
    for n in ["a", "b"] {
        assert_eq!(
            revision(&env, n).as_deref(),
            Some(c2.as_str()),
            "{n} is converged from the new commit (b without a change)"
        );
    }
    let events = std::fs::read_to_string(env.instance_dir("a").join("reconcile.log")).unwrap();
    assert!(
        events.contains(&format!("\"revision\":\"{c2}\"")),
        "{events}"
    );

    // A commit deletes b: kept without --prune, deleted with it; nothing else.
    let c3 = repo.commit(&[("vms/b.yaml", None)]);
    let out = env.ok(&["apply", "-f", &src]);
    assert!(
        out.contains("b (its file is gone; --prune deletes it)"),
        "{out}"
    );
    assert!(env.instance_dir("b").join("lima.yaml").exists());
    let out = env.ok(&["apply", "--prune", "-f", &src]);
    assert!(out.contains("- b: delete"), "{out}");
    assert!(!env.instance_dir("b").exists(), "b is pruned");
    assert!(env.instance_dir("other").join("lima.yaml").exists());
    assert_eq!(revision(&env, "a").as_deref(), Some(c3.as_str()));

    // The branch moved back: everything converges back to c1.
    repo.reset(&c1);
    let out = env.ok(&["apply", "--prune", "-f", &src]);
    assert!(out.contains(&format!("commit {c1}")), "{out}");
    assert_eq!((cpus(&env, "a"), cpus(&env, "b")), (1, 1));
    for n in ["a", "b"] {
        assert_eq!(revision(&env, n).as_deref(), Some(c1.as_str()));
    }

    // A missing ref, or a remote that is not there: an error, nothing changed.
    let before = common::mtimes(&env.instance_dir("a"));
    for bad in [
        repo.locator("vms", "no-such-branch"),
        format!(
            "git::file://{}/gone.git//vms?ref=main",
            env.dir.path().display()
        ),
        repo.locator("no-such-dir", "main"),
    ] {
        let (code, out, err) = env.run(&["apply", "--prune", "-f", &bad]);
        assert_ne!(code, 0, "{out}{err}");
        assert!(err.contains("nothing was changed"), "{err}");
    }
    let (_, out, err) = env.run(&[
        "apply",
        "--prune",
        "-f",
        &repo.locator("vms", "no-such-branch"),
    ]);
    assert!(
        err.contains("`no-such-branch` is neither a branch, a tag nor a commit"),
        "{err}"
    );
    assert!(
        out.contains("a: not pruned: its source could not be read"),
        "what the source owns is reported as such: {out}"
    );
    assert!(env.instance_dir("b").exists() && env.instance_dir("other").exists());
    assert_eq!(common::mtimes(&env.instance_dir("a")), before);
    assert_eq!(revision(&env, "a").as_deref(), Some(c1.as_str()));

    // A tag and a commit id work as refs too.
    git(&repo.work, &["tag", "v1", &c2]);
    git(
        &repo.work,
        &["push", "--quiet", repo.origin.to_str().unwrap(), "v1"],
    );
    let (code, out, _) = env.run(&["diff", "-f", &repo.locator("vms", "v1")]);
    assert!(code == 1 && out.contains("cpus 1 → 2"), "{out}");
    let (code, out, _) = env.run(&["diff", "-f", &repo.locator("vms", &c2[..10])]);
    assert!(code == 1 && out.contains(&format!("commit {c2}")), "{out}");

    // A commit with an invalid file: that instance errors, the others converge.
    let c5 = repo.commit(&[
        ("vms/a.yaml", Some("cpus: [[ not yaml\n")),
        ("vms/b.yaml", Some(&vm(2))),
    ]);
    let (code, _, err) = env.run(&["apply", "-f", &src]);
    assert_ne!(code, 0);
    assert!(err.contains("a.yaml"), "{err}");
    assert_eq!((cpus(&env, "a"), cpus(&env, "b")), (1, 2));
    assert_eq!(
        revision(&env, "a").as_deref(),
        Some(c1.as_str()),
        "a is not at c5"
    );
    assert_eq!(revision(&env, "b").as_deref(), Some(c5.as_str()));

    // Option injection never reaches git.
    let (code, _, err) = env.run(&[
        "apply",
        "-f",
        &format!(
            "git::file://{}?ref=--upload-pack=touch",
            repo.origin.display()
        ),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("starts with `-`"), "{err}");
}

// The daemon, killed (SIGKILL) when dropped; its stderr goes to a file.
use common::DaemonGuard as Daemon;

impl Daemon {
    fn start(env: &Env, src: &str, interval: &str) -> Daemon {
        let log = env.dir.path().join("daemon.log");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("limactl"))
            .env("LIMA_HOME", env.lima_home())
            .env("HOME", env.dir.path().join("home"))
            .args(["apply", "--watch", "--prune", "--resync", "2s"])
            .args([
                "--prune-grace",
                "100ms",
                "--git-interval",
                interval,
                "-f",
                src,
            ])
            .stdout(Stdio::null())
            .stderr(f)
            .spawn()
            .unwrap();
        Daemon(child, log)
    }

    fn hup(&self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGHUP,
        )
        .unwrap();
    }
}

fn sources_status(env: &Env) -> Vec<serde_json::Value> {
    env.ok(&["status", "--sources", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn wait(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn exists(env: &Env, name: &str) -> bool {
    env.instance_dir(name).join("lima.yaml").exists()
}

#[test]
fn the_daemon_fetches_on_an_interval_and_on_sighup() {
    let env = Env::new();
    let image = common::tiny_image(env.dir.path());
    let repo = Repo::new(&env.dir.path().join("repo"));
    let c1 = repo.commit(&[
        ("shared/base.yaml", Some(&base(&image))),
        ("vms/a.yaml", Some(&vm(1))),
        ("vms/b.yaml", Some(&vm(1))),
    ]);
    let src = repo.locator("vms", "main");
    let d = Daemon::start(&env, &src, "300ms");
    wait("a and b from c1", || {
        exists(&env, "a") && exists(&env, "b") && revision(&env, "b").as_deref() == Some(&c1)
    });
    let s = sources_status(&env);
    assert_eq!(s[0]["source"], src.as_str());
    assert_eq!(s[0]["revision"], c1.as_str());

    // A new commit is fetched on the interval and converged.
    let c2 = repo.commit(&[("vms/a.yaml", Some(&vm(2))), ("vms/b.yaml", None)]);
    wait("a at c2 and b pruned", || {
        revision(&env, "a").as_deref() == Some(&c2) && !env.instance_dir("b").exists()
    });
    assert_eq!(cpus(&env, "a"), 2);
    // The event `limactl watch` shows.
    let events = std::fs::read_to_string(env.instance_dir("a").join("reconcile.log")).unwrap();
    assert!(
        events.contains(&format!("\"phase\":\"converged\",\"step\":\"revision\",\"reason\":\"converged from commit {c2}\"")),
        "{events}"
    );

    // The remote is unreachable: an error on the source's status, nothing changes.
    let before = common::mtimes(&env.instance_dir("a"));
    let away = repo.origin.with_extension("away");
    std::fs::rename(&repo.origin, &away).unwrap();
    wait("the unreachable remote on the source's status", || {
        sources_status(&env)[0]["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("cannot fetch") && e.contains("nothing was changed"))
    });
    assert!(exists(&env, "a"));
    std::fs::rename(&away, &repo.origin).unwrap();
    wait("the error cleared by a good fetch", || {
        sources_status(&env)[0]["lastError"].is_null()
    });

    // The branch is gone: an error on the source's status, nothing changes.
    repo.delete_branch();
    wait("the fetch error on the source's status", || {
        sources_status(&env)[0]["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("`main` is neither a branch"))
    });
    // Two more failed fetches (each with a new time), and resyncs meanwhile.
    for _ in 0..2 {
        let t = sources_status(&env)[0]["lastFetch"].clone();
        wait("another fetch", || {
            sources_status(&env)[0]["lastFetch"] != t
        });
    }
    assert!(exists(&env, "a"), "a fetch error never prunes");
    assert_eq!(sources_status(&env)[0]["revision"], c2.as_str());
    assert_eq!(common::mtimes(&env.instance_dir("a")), before);
    drop(d);

    // A daemon cannot start without a commit to read.
    let mut d = Daemon::start(&env, &repo.locator("vms", "nope"), "1h");
    assert!(!d.0.wait().unwrap().success());
    let log = std::fs::read_to_string(&d.1).unwrap();
    assert!(log.contains("`nope` is neither a branch"), "{log}");
    drop(d);

    // The branch returns; with a long interval, SIGHUP fetches at once.
    let c3 = repo.commit(&[("vms/a.yaml", Some(&vm(4)))]);
    let d = Daemon::start(&env, &src, "1h");
    wait("a at the new commit", || {
        revision(&env, "a").as_deref() == Some(&c3)
    });
    let c4 = repo.commit(&[("vms/a.yaml", Some(&vm(3)))]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        cpus(&env, "a"),
        4,
        "not fetched before the interval or a SIGHUP"
    );
    d.hup();
    wait("a at c4 after SIGHUP", || {
        revision(&env, "a").as_deref() == Some(&c4)
    });
    assert_eq!(cpus(&env, "a"), 3);
}

#[test]
fn the_systemd_unit_passes_the_git_source_on() {
    let env = Env::new();
    let src = "git::https://example.com/org/vms%2Dx.git//prod?ref=main";
    let unit = env.ok(&[
        "apply",
        "--watch",
        "--git-interval",
        "5s",
        "--systemd-unit",
        "-f",
        src,
    ]);
    assert!(
        unit.contains("-f git::https://example.com/org/vms%%2Dx.git//prod?ref=main")
            && unit.contains("--git-interval 5000ms")
            && unit.contains("ExecReload=/bin/kill -HUP $MAINPID"),
        "the locator as given (`%` escaped for systemd), SIGHUP on reload: {unit}"
    );
}

/// `export kubevirt` reads a Git source through the same layer as `apply`:
/// the exported VM follows the commit the ref points at.
#[test]
fn export_kubevirt_reads_the_commit_a_ref_points_at() {
    let env = Env::new();
    let image = common::tiny_image(env.dir.path());
    let repo = Repo::new(&env.dir.path().join("repo"));
    repo.commit(&[
        ("shared/base.yaml", Some(&base(&image))),
        ("vms/a.yaml", Some(&vm(1))),
    ]);
    let src = repo.locator("vms", "main");
    let cores = |env: &Env| -> Vec<u64> {
        let out = env.ok(&["export", "kubevirt", "-f", &src]);
        lima::spec::yaml::parse_documents("export", &out)
            .unwrap()
            .iter()
            .map(|n| n.to_json())
            .filter(|v| v["kind"] == "VirtualMachine")
            .map(|v| {
                v["spec"]["template"]["spec"]["domain"]["cpu"]["cores"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    };
    assert_eq!(cores(&env), vec![1]);
    repo.commit(&[("vms/a.yaml", Some(&vm(2)))]);
    assert_eq!(cores(&env), vec![2]);
}
