//! Git sources, `git::URL//SUBDIR?ref=REF` (Terraform's module syntax): the
//! desired state is read from one commit at a time, never from a working
//! tree someone edits.
//!
//! Each URL has a bare mirror in `LIMA_HOME/_cache/git/<key>/mirror.git`;
//! [`fetch`] runs `git fetch` into it, resolves REF to a commit, and
//! materialises that commit's whole tree once into the immutable
//! `snapshots/<commit>` (a temp directory renamed into place), so that every
//! plan reads one consistent commit and `base:` paths relative to a file
//! resolve inside the same commit. The `git` command is run, not a library:
//! authentication is then exactly Git's (SSH agent and keys, `https`
//! credential helpers, `~/.gitconfig`). `GIT_TERMINAL_PROMPT=0`, no stdin and
//! a time limit keep a daemon from ever waiting on a prompt or a dead remote.

use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha2::Digest;

use crate::layout::git_files;
use crate::spec::yaml::quote_name;
use crate::store::Home;

/// The prefix that makes a `-f` argument a Git source.
pub const PREFIX: &str = "git::";

/// How long one `git` command (a fetch, a checkout) may take.
pub const GIT_TIMEOUT: Duration = Duration::from_secs(120);

/// Snapshots kept per repository besides the one in use (older ones are removed).
const KEEP_SNAPSHOTS: usize = 8;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GitError {
    /// The `-f` argument is not a valid Git source.
    #[error(
        "invalid Git source {}: {problem} (the form is git::URL//SUBDIR?ref=REF, URL one of file:///PATH, https://HOST/PATH, ssh://[USER@]HOST/PATH or USER@HOST:PATH)",
        quote_name(locator)
    )]
    Locator { locator: String, problem: String },
    #[error("cannot run `git` ({message}); install Git (the `git` command) to use git:: sources")]
    NotInstalled { message: String },
    #[error(
        "cannot fetch {}: {message}; check the URL, the network and your Git credentials (SSH agent/keys, credential helper); nothing was changed",
        quote_name(url)
    )]
    Fetch { url: String, message: String },
    #[error(
        "fetching {} took longer than {}s and was stopped; nothing was changed",
        quote_name(url),
        secs
    )]
    TimedOut { url: String, secs: u64 },
    #[error(
        "{} is neither a branch, a tag nor a commit of {}; nothing was changed",
        quote_name(reference),
        quote_name(url)
    )]
    NoRef { url: String, reference: String },
    #[error(
        "commit {commit} of {} has no directory {}; nothing was changed",
        quote_name(url),
        quote_name(subdir)
    )]
    NoSubdir {
        url: String,
        commit: String,
        subdir: String,
    },
    #[error("{}: {message}", path.display())]
    Io { path: PathBuf, message: String },
    #[error("`git {what}` failed: {message}")]
    Command { what: String, message: String },
}

/// A parsed `git::URL//SUBDIR?ref=REF`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Locator {
    pub url: String,
    /// A relative path inside the repository, `/`-separated, no `..`.
    pub subdir: Option<String>,
    /// A branch, tag or commit; `None`: the remote's default branch.
    pub reference: Option<String>,
}

/// Whether a `-f` argument names a Git source.
pub fn is_git(arg: &str) -> bool {
    arg.starts_with(PREFIX)
}

impl Locator {
    pub fn parse(locator: &str) -> Result<Locator, GitError> {
        let bad = |problem: &str| GitError::Locator {
            locator: locator.to_string(),
            problem: problem.to_string(),
        };
        let rest = locator
            .strip_prefix(PREFIX)
            .ok_or_else(|| bad("it does not start with git::"))?;
        if let Some(c) = rest.chars().find(|c| c.is_control() || c.is_whitespace()) {
            return Err(bad(&format!("it contains the character {c:?}")));
        }
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let mut reference = None;
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            match pair.split_once('=') {
                Some(("ref", r)) if reference.is_none() => {
                    check_ref(r).map_err(|p| bad(&format!("ref {}: {p}", quote_name(r))))?;
                    reference = Some(r.to_string());
                }
                Some(("ref", _)) => return Err(bad("ref is given twice")),
                _ => {
                    return Err(bad(&format!(
                        "unknown parameter {} (only ref=REF is understood)",
                        quote_name(pair)
                    )));
                }
            }
        }
        // `//` after the URL's own `scheme://` separates the subdirectory.
        let after_scheme = rest.find("://").map_or(0, |i| i + 3);
        let (url, subdir) = match rest[after_scheme..].find("//") {
            Some(i) => {
                let (u, s) = rest.split_at(after_scheme + i);
                (u, Some(s[2..].trim_end_matches('/')))
            }
            None => (rest, None),
        };
        check_url(url).map_err(|p| bad(&p))?;
        let subdir = match subdir {
            Some(s) => {
                check_subdir(s)
                    .map_err(|p| bad(&format!("subdirectory {}: {p}", quote_name(s))))?;
                Some(s.to_string())
            }
            None => None,
        };
        Ok(Locator {
            url: url.to_string(),
            subdir,
            reference,
        })
    }

    /// What owns the instances of this source: the URL and the subdirectory
    /// (not the ref, so that moving to another branch keeps them).
    pub fn id(&self) -> String {
        match &self.subdir {
            Some(s) => format!("{PREFIX}{}//{s}", self.url),
            None => format!("{PREFIX}{}", self.url),
        }
    }

    /// The locator as written, normalised.
    pub fn display(&self) -> String {
        match &self.reference {
            Some(r) => format!("{}?ref={r}", self.id()),
            None => self.id(),
        }
    }
}

fn check_url(url: &str) -> Result<(), String> {
    if url.is_empty() {
        return Err("the URL is empty".into());
    }
    if url.starts_with('-') {
        return Err("the URL starts with `-`".into());
    }
    if url.contains("::") {
        return Err("a remote helper (TRANSPORT::ADDRESS) is not supported".into());
    }
    let host_ok = |host: &str| {
        !host.is_empty()
            && !host.starts_with('-')
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._[]:".contains(c))
    };
    if let Some((scheme, rest)) = url.split_once("://") {
        match scheme {
            "file" => {
                if !rest.starts_with('/') {
                    return Err("a file:// URL needs an absolute path (file:///PATH)".into());
                }
            }
            "https" | "ssh" => {
                let authority = rest.split('/').next().unwrap_or_default();
                let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
                let host = match host.rsplit_once(':') {
                    Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
                    _ => host,
                };
                if !host_ok(host) {
                    return Err(format!("host {} is not a host name", quote_name(host)));
                }
                if rest.len() <= authority.len() + 1 {
                    return Err("the URL has no repository path".into());
                }
            }
            other => {
                return Err(format!(
                    "scheme {} is not supported",
                    quote_name(&format!("{other}://"))
                ));
            }
        }
        return Ok(());
    }
    // scp-like `[user@]host:path`.
    match url.split_once(':') {
        Some((authority, path)) if !authority.contains('/') && !path.is_empty() => {
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            if !host_ok(host) {
                return Err(format!("host {} is not a host name", quote_name(host)));
            }
            Ok(())
        }
        _ => Err("the URL is neither scheme://… nor USER@HOST:PATH".into()),
    }
}

/// Git's rules for ref names (`git check-ref-format`), plus: never an option.
fn check_ref(r: &str) -> Result<(), String> {
    if r.is_empty() {
        return Err("it is empty".into());
    }
    if r.starts_with('-') {
        return Err("it starts with `-`".into());
    }
    if let Some(c) = r.chars().find(|c| " ~^:?*[\\".contains(*c)) {
        return Err(format!("it contains {c:?}"));
    }
    if r.contains("..") || r.contains("@{") || r.contains("//") || r == "@" {
        return Err("it contains `..`, `@{` or `//`".into());
    }
    if r.ends_with('/') || r.ends_with('.') || r.ends_with(".lock") || r.starts_with('/') {
        return Err("it starts or ends with `/`, or ends with `.` or `.lock`".into());
    }
    if r.split('/').any(|c| c.starts_with('.')) {
        return Err("a component starts with `.`".into());
    }
    Ok(())
}

fn check_subdir(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("it is empty".into());
    }
    if s.starts_with('/') {
        return Err("it must be relative to the repository".into());
    }
    if s.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err("it must not contain `.`, `..` or empty components".into());
    }
    Ok(())
}

/// One commit of a Git source, materialised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The full commit id.
    pub commit: String,
    /// The commit's whole tree (immutable).
    pub root: PathBuf,
    /// `root` or its SUBDIR: where the instance files are.
    pub dir: PathBuf,
}

/// Where the mirror and snapshots of `url` live.
pub fn cache_dir(home: &Home, url: &str) -> PathBuf {
    let key = hex::encode(&sha2::Sha256::digest(url.as_bytes())[..12]);
    home.root
        .join(crate::layout::LIMA_CACHE_DIR)
        .join(git_files::GIT_DIR)
        .join(key)
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> GitError + '_ {
    move |e| GitError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn mkdir_private(dir: &Path) -> Result<(), GitError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err(dir))
}

/// Fetches `loc` and returns the snapshot of the commit its ref names now.
/// An unreachable remote, a missing ref or subdirectory is an error, and
/// nothing else changes (the mirror keeps what it had).
pub fn fetch(home: &Home, loc: &Locator, timeout: Duration) -> Result<Snapshot, GitError> {
    let dir = cache_dir(home, &loc.url);
    mkdir_private(&dir)?;
    let lock_path = dir.join(git_files::LOCK);
    // One fetch per mirror at a time (the daemon and a one-shot `apply`).
    let _lock = crate::store::lock::exclusive(&lock_path, timeout).map_err(io_err(&lock_path))?;
    let _ = crate::store::atomic::write(
        &dir.join(git_files::URL),
        format!("{}\n", loc.url).as_bytes(),
        0o600,
    );
    let mirror = dir.join(git_files::MIRROR);
    if !mirror.join("HEAD").is_file() {
        // Made under a temp name: an interrupted `git init` leaves no half mirror.
        let tmp = dir.join(format!("{}.tmp", git_files::MIRROR));
        let _ = std::fs::remove_dir_all(&tmp);
        git(
            None,
            &["init", "--quiet", "--bare"],
            &[tmp.as_os_str()],
            timeout,
        )
        .map_err(|e| e.command("init"))?;
        std::fs::rename(&tmp, &mirror).map_err(io_err(&mirror))?;
    }
    let mut refspecs = vec![
        "+refs/heads/*:refs/heads/*".to_string(),
        "+refs/tags/*:refs/tags/*".to_string(),
    ];
    if loc.reference.is_none() {
        refspecs.push(format!("+HEAD:{}", git_files::REMOTE_HEAD));
    }
    let fetch_err = |e: RunError| match e {
        RunError::TimedOut => GitError::TimedOut {
            url: loc.url.clone(),
            secs: timeout.as_secs(),
        },
        RunError::Spawn(message) => GitError::NotInstalled { message },
        RunError::Failed(message) => GitError::Fetch {
            url: loc.url.clone(),
            message,
        },
    };
    let mut args: Vec<&OsStr> = vec![OsStr::new(&loc.url)];
    args.extend(refspecs.iter().map(OsStr::new));
    git(
        Some(&mirror),
        &[
            "fetch",
            "--quiet",
            "--prune",
            "--force",
            "--no-tags",
            "--no-write-fetch-head",
            "--end-of-options",
        ],
        &args,
        timeout,
    )
    .map_err(fetch_err)?;
    let commit = match resolve(&mirror, loc.reference.as_deref(), timeout)? {
        Some(c) => c,
        None => {
            let r = loc.reference.clone().unwrap_or_default();
            // A commit not on any branch or tag: ask for it by id.
            if is_commit_id(&r) {
                let _ = git(
                    Some(&mirror),
                    &[
                        "fetch",
                        "--quiet",
                        "--no-write-fetch-head",
                        "--end-of-options",
                    ],
                    &[OsStr::new(&loc.url), OsStr::new(&r)],
                    timeout,
                );
            }
            resolve(&mirror, Some(&r), timeout)?.ok_or_else(|| GitError::NoRef {
                url: loc.url.clone(),
                reference: r.clone(),
            })?
        }
    };
    let root = materialise(&dir, &mirror, &commit, timeout)?;
    let subdir_dir = match &loc.subdir {
        Some(s) => {
            let d = root.join(s);
            // A symlinked SUBDIR must not lead out of the commit.
            let inside = std::fs::canonicalize(&d)
                .ok()
                .filter(|c| c.starts_with(&root) && c.is_dir());
            inside.ok_or_else(|| GitError::NoSubdir {
                url: loc.url.clone(),
                commit: commit.clone(),
                subdir: s.clone(),
            })?
        }
        None => root.clone(),
    };
    Ok(Snapshot {
        commit,
        root,
        dir: subdir_dir,
    })
}

fn is_commit_id(r: &str) -> bool {
    (7..=64).contains(&r.len()) && r.chars().all(|c| c.is_ascii_hexdigit())
}

/// The commit `reference` names in the mirror: a branch, then a tag, then
/// a full ref name, then a commit id.
fn resolve(
    mirror: &Path,
    reference: Option<&str>,
    timeout: Duration,
) -> Result<Option<String>, GitError> {
    let candidates: Vec<String> = match reference {
        None => vec![git_files::REMOTE_HEAD.to_string()],
        Some(r) => {
            let mut c = vec![format!("refs/heads/{r}"), format!("refs/tags/{r}")];
            if r.starts_with("refs/") {
                c.push(r.to_string());
            }
            if is_commit_id(r) {
                c.push(r.to_string());
            }
            c
        }
    };
    for c in candidates {
        let spec = format!("{c}^{{commit}}");
        match git(
            Some(mirror),
            &["rev-parse", "--verify", "--quiet", "--end-of-options"],
            &[OsStr::new(&spec)],
            timeout,
        ) {
            Ok(out) => return Ok(Some(out.trim().to_string())),
            Err(RunError::Failed(_)) => continue,
            Err(e) => return Err(e.command("rev-parse")),
        }
    }
    Ok(None)
}

/// `snapshots/<commit>`, checked out once (temp directory + rename).
fn materialise(
    dir: &Path,
    mirror: &Path,
    commit: &str,
    timeout: Duration,
) -> Result<PathBuf, GitError> {
    let snapshots = dir.join(git_files::SNAPSHOTS);
    mkdir_private(&snapshots)?;
    let target = snapshots.join(commit);
    if target.is_dir() {
        return Ok(target);
    }
    let tmp = snapshots.join(format!(".tmp.{commit}.{}", std::process::id()));
    let index = snapshots.join(format!(".tmp.{commit}.{}.index", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    mkdir_private(&tmp)?;
    let mut cmd = base_command(Some(mirror));
    cmd.arg("--work-tree")
        .arg(&tmp)
        .args(["read-tree", "--reset", "-u", "--end-of-options", commit])
        .env("GIT_INDEX_FILE", &index);
    let result = run(cmd, timeout);
    let _ = std::fs::remove_file(&index);
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e.command("read-tree"));
    }
    std::fs::rename(&tmp, &target).map_err(io_err(&target))?;
    prune_snapshots(&snapshots, &target);
    Ok(target)
}

/// Removes all but the newest snapshots (and never `keep`).
fn prune_snapshots(snapshots: &Path, keep: &Path) {
    let Ok(rd) = std::fs::read_dir(snapshots) else {
        return;
    };
    let mut all: Vec<(std::time::SystemTime, PathBuf)> = rd
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    all.sort();
    let excess = all.len().saturating_sub(KEEP_SNAPSHOTS + 1);
    for (_, p) in all.into_iter().take(excess) {
        if p != keep {
            let _ = std::fs::remove_dir_all(&p);
        }
    }
}

#[derive(Debug)]
enum RunError {
    Spawn(String),
    Failed(String),
    TimedOut,
}

impl RunError {
    fn command(self, what: &str) -> GitError {
        match self {
            RunError::Spawn(message) => GitError::NotInstalled { message },
            RunError::Failed(message) => GitError::Command {
                what: what.into(),
                message,
            },
            RunError::TimedOut => GitError::Command {
                what: what.into(),
                message: "timed out".into(),
            },
        }
    }
}

/// `git` with an environment that never prompts and ignores the caller's
/// repository variables and hooks.
fn base_command(git_dir: Option<&Path>) -> Command {
    let mut cmd = Command::new("git");
    for v in [
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_OBJECT_DIRECTORY",
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_NAMESPACE",
    ] {
        cmd.env_remove(v);
    }
    cmd.env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C")
        .args([
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "protocol.ext.allow=never",
        ]);
    if let Some(d) = git_dir {
        cmd.arg("--git-dir").arg(d);
    }
    cmd
}

fn git(
    git_dir: Option<&Path>,
    args: &[&str],
    more: &[&OsStr],
    timeout: Duration,
) -> Result<String, RunError> {
    let mut cmd = base_command(git_dir);
    cmd.args(args).args(more);
    run(cmd, timeout)
}

/// Runs a command in its own process group with no stdin; kills the group
/// (git and its ssh or remote helper) when it outlives `timeout`.
fn run(mut cmd: Command, timeout: Duration) -> Result<String, RunError> {
    use std::os::unix::process::CommandExt;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn().map_err(|e| RunError::Spawn(e.to_string()))?;
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut r) = r {
                let _ = r.read_to_string(&mut s);
            }
            s
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() >= deadline => {
                let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
                let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
                let _ = child.wait();
                return Err(RunError::TimedOut);
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(RunError::Failed(e.to_string())),
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    if status.success() {
        Ok(stdout)
    } else {
        let msg = stderr
            .lines()
            .map(|l| l.trim().trim_start_matches("fatal: ").to_string())
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        Err(RunError::Failed(if msg.is_empty() {
            status.to_string()
        } else {
            msg
        }))
    }
}

#[cfg(test)]
mod tests;
