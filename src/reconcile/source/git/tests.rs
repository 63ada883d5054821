use super::*;

#[test]
fn locators_parse_like_terraform() {
    let l = Locator::parse("git::file:///srv/vms.git//prod/eu?ref=v1.2").unwrap();
    assert_eq!(l.url, "file:///srv/vms.git");
    assert_eq!(l.subdir.as_deref(), Some("prod/eu"));
    assert_eq!(l.reference.as_deref(), Some("v1.2"));
    assert_eq!(l.id(), "git::file:///srv/vms.git//prod/eu");
    assert_eq!(l.display(), "git::file:///srv/vms.git//prod/eu?ref=v1.2");

    let l = Locator::parse("git::https://example.com/org/vms.git").unwrap();
    assert_eq!((l.subdir, l.reference), (None, None));
    let l = Locator::parse("git::ssh://git@example.com:2222/org/vms.git//x?ref=main").unwrap();
    assert_eq!(l.url, "ssh://git@example.com:2222/org/vms.git");
    let l = Locator::parse("git::git@github.com:org/vms.git//vms?ref=0123abcd").unwrap();
    assert_eq!(l.url, "git@github.com:org/vms.git");
    assert_eq!(l.subdir.as_deref(), Some("vms"));
    assert_eq!(l.reference.as_deref(), Some("0123abcd"));
}

#[test]
fn locators_that_could_inject_options_or_escape_are_refused() {
    for (bad, why) in [
        (
            "git::file:///r.git?ref=--upload-pack=touch",
            "starts with `-`",
        ),
        ("git::file:///r.git?ref=a..b", "`..`"),
        ("git::file:///r.git?ref=a b", "character ' '"),
        ("git::file:///r.git//../etc", "`..`"),
        ("git::file:///r.git///abs", "relative"),
        ("git::ssh://-oProxyCommand=x/r.git", "not a host name"),
        ("git::-oProxyCommand=x:r.git", "starts with `-`"),
        ("git::ext::sh -c x", "character ' '"),
        ("git::ext::sh", "remote helper"),
        ("git::relative/path", "neither"),
        ("git::http://example.com/r.git", "not supported"),
        ("git::file://relative/r.git", "absolute path"),
        ("git::file:///r.git?depth=1", "unknown parameter"),
        ("git::file:///r.git?ref=a&ref=b", "twice"),
    ] {
        let err = Locator::parse(bad).unwrap_err().to_string();
        assert!(err.contains(why), "{bad}: {err}");
        assert!(err.contains("git::URL//SUBDIR?ref=REF"), "{err}");
    }
}

fn sh(dir: &Path, script: &str) {
    let ok = Command::new("sh")
        .args(["-c", script])
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .status()
        .unwrap();
    assert!(ok.success(), "{script}");
}

#[test]
fn a_fetch_gives_one_immutable_snapshot_per_commit() {
    let d = tempfile::tempdir().unwrap();
    let home = Home::new(d.path().join("home"));
    sh(
        d.path(),
        "git init -q -b main w && cd w && mkdir vms && echo 'cpus: 1' > vms/a.yaml \
         && ln -s /etc out && git add -A && git commit -qm1",
    );
    let url = format!("file://{}/w", d.path().display());
    let loc = |s: &str| Locator::parse(&format!("git::{url}//{s}?ref=main")).unwrap();
    let s1 = fetch(&home, &loc("vms"), GIT_TIMEOUT).unwrap();
    assert_eq!(s1.dir, s1.root.join("vms"));
    assert!(s1.root.ends_with(&s1.commit));
    assert_eq!(
        std::fs::read_to_string(s1.dir.join("a.yaml")).unwrap(),
        "cpus: 1\n"
    );
    // The same commit again: the same snapshot, untouched.
    let mtime = std::fs::metadata(&s1.root).unwrap().modified().unwrap();
    assert_eq!(fetch(&home, &loc("vms"), GIT_TIMEOUT).unwrap(), s1);
    assert_eq!(
        std::fs::metadata(&s1.root).unwrap().modified().unwrap(),
        mtime
    );
    // A new commit: a new snapshot; the old one is still whole.
    sh(
        &d.path().join("w"),
        "echo 'cpus: 2' > vms/a.yaml && git commit -qam2",
    );
    let s2 = fetch(&home, &loc("vms"), GIT_TIMEOUT).unwrap();
    assert_ne!(s2.commit, s1.commit);
    assert_eq!(
        std::fs::read_to_string(s1.dir.join("a.yaml")).unwrap(),
        "cpus: 1\n"
    );
    assert_eq!(
        std::fs::read_to_string(s2.dir.join("a.yaml")).unwrap(),
        "cpus: 2\n"
    );
    // A SUBDIR that is missing, or a symlink out of the commit.
    for sub in ["nope", "out"] {
        let err = fetch(&home, &loc(sub), GIT_TIMEOUT).unwrap_err();
        assert!(matches!(err, GitError::NoSubdir { .. }), "{err}");
    }
    // Nothing in the cache is readable by others.
    let mode = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o077
    };
    let cache = cache_dir(&home, &url);
    assert_eq!(mode(&cache), 0);
    assert_eq!(mode(&cache.join(git_files::SNAPSHOTS)), 0);
}

#[test]
fn a_command_that_outlives_its_time_is_killed() {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "sleep 30 & wait"]);
    assert!(matches!(
        run(cmd, Duration::from_millis(200)),
        Err(RunError::TimedOut)
    ));
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "echo fatal: no such thing >&2; exit 3"]);
    assert!(matches!(
        run(cmd, Duration::from_secs(60)),
        Err(RunError::Failed(m)) if m == "no such thing"
    ));
}
