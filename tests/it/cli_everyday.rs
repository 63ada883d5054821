//! Lima's everyday commands without a guest (issue 15): `shell`'s strict
//! argument handling and its checks, the `lima` wrapper's variables, shell
//! completion loaded in a real bash, `http(s)://` template locators on a
//! loopback server (through the download cache), `template url`.

use crate::common::Env;

use std::path::{Path, PathBuf};

fn limactl() -> PathBuf {
    assert_cmd::cargo::cargo_bin("limactl")
}

#[test]
fn shell_flags_end_at_the_instance_name() {
    let env = Env::new();
    // Before the instance name an unknown flag is an error, as in cobra.
    let (code, _, err) = env.run(&["shell", "--no-such-flag", "vm", "ls"]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown flag: --no-such-flag"), "{err}");
    // After it, everything is the command: the instance is looked up.
    for args in [
        &["shell", "vm", "--no-such-flag"][..],
        &["shell", "--workdir", "/tmp", "vm", "--", "ls", "-l"],
        &["shell", "--reconnect", "--preserve-env", "vm", "env"],
    ] {
        let (code, _, err) = env.run(args);
        assert_eq!(code, 1);
        assert!(
            err.contains("instance `vm` does not exist, run `limactl create vm`"),
            "{err}"
        );
    }
    // Checks that need no instance come first.
    let (code, _, err) = env.run(&["shell", "--sync", ".", "--workdir", "/x", "vm"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("cannot use `--workdir` and `--sync` together"),
        "{err}"
    );
    let out = env
        .cmd()
        .env("LIMA_SHELLENV_BLOCK", "+FOO,BAR-BAZ")
        .args(["shell", "--preserve-env", "vm", "true"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains("Invalid LIMA_SHELLENV_BLOCK pattern") && err.contains("BAR-BAZ"),
        "{err}"
    );
}

#[test]
fn the_lima_wrapper_passes_instance_shell_and_workdir() {
    let env = Env::new();
    // A stand-in limactl that prints its arguments, one a line.
    let fake = env.dir.path().join("fake-limactl");
    std::fs::write(&fake, "#!/bin/sh\nprintf '%s\\n' \"$@\"\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("lima"))
        .env("LIMACTL", &fake)
        .env("LIMA_INSTANCE", "dev")
        .env("LIMA_SHELL", "/bin/zsh")
        .env("LIMA_WORKDIR", "/srv/app")
        .args(["make", "-j2"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "shell\n--workdir\n/srv/app\n--shell\n/bin/zsh\n--instance\ndev\nmake\n-j2\n"
    );
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("lima"))
        .env("LIMACTL", &fake)
        .env_remove("LIMA_INSTANCE")
        .env_remove("LIMA_SHELL")
        .env_remove("LIMA_WORKDIR")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "shell\n--instance\ndefault\n"
    );
}

/// Completions bash offers for `words` (the last one being completed), with
/// the script of `limactl completion bash` loaded as a user loads it and the
/// function called with the arguments `complete -F` passes.
fn bash_complete(lima_home: &Path, templates: &Path, words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let script = format!(
        "source <(limactl completion bash) || exit 9\nCOMP_WORDS=({})\nCOMP_CWORD={}\n_limactl limactl \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        quoted.join(" "),
        words.len() - 1
    );
    shell_lines(
        "bash",
        &["--norc", "--noprofile", "-c"],
        &script,
        &[("LIMA_HOME", lima_home), ("LIMA_TEMPLATES_PATH", templates)],
    )
}

#[test]
fn bash_completes_instance_template_and_disk_names() {
    let env = Env::new();
    for name in ["alpha", "beta"] {
        std::fs::create_dir_all(env.instance_dir(name)).unwrap();
    }
    let templates = env.dir.path().join("templates");
    std::fs::create_dir_all(&templates).unwrap();
    std::fs::write(templates.join("mytmpl.yaml"), "images: []\n").unwrap();
    env.ok(&["disk", "create", "data1", "--size", "1MiB"]);
    let home = env.lima_home();

    assert_eq!(
        bash_complete(&home, &templates, &["limactl", "shell", ""]),
        ["alpha", "beta"]
    );
    assert_eq!(
        bash_complete(
            &home,
            &templates,
            &["limactl", "shell", "--workdir", "/x", "a"]
        ),
        ["alpha"]
    );
    assert_eq!(
        bash_complete(&home, &templates, &["limactl", "stop", "alpha", ""]),
        ["alpha", "beta"]
    );
    let create = bash_complete(&home, &templates, &["limactl", "create", ""]);
    assert!(
        create.contains(&"template:mytmpl".to_string()),
        "{create:?}"
    );
    assert!(!create.contains(&"alpha".to_string()), "{create:?}");
    let start = bash_complete(&home, &templates, &["limactl", "start", ""]);
    assert!(
        start.contains(&"alpha".to_string()) && start.contains(&"template:mytmpl".to_string()),
        "{start:?}"
    );
    assert_eq!(
        bash_complete(&home, &templates, &["limactl", "disk", "delete", ""]),
        ["data1"]
    );
    // Elsewhere clap's completion answers: subcommands and flags.
    let subs = bash_complete(&home, &templates, &["limactl", "sh"]);
    assert!(subs.contains(&"shell".to_string()), "{subs:?}");
    let flags = bash_complete(&home, &templates, &["limactl", "shell", "--pre"]);
    assert_eq!(flags, ["--preserve-env"]);
}

/// Runs `script` in `shell` (bash, zsh or fish: hack/install-deps.sh) with
/// this build's limactl first on PATH and `envs` set; its output lines, sorted.
fn shell_lines(shell: &str, args: &[&str], script: &str, envs: &[(&str, &Path)]) -> Vec<String> {
    let bin_dir = limactl().parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = std::process::Command::new(shell)
        .args(args)
        .arg(script)
        .env("PATH", path)
        .envs(envs.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("{shell} (hack/install-deps.sh installs it): {e}"));
    assert!(
        out.status.success(),
        "{shell}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    v.sort();
    v
}

#[test]
fn fish_and_zsh_complete_instance_names_too() {
    let env = Env::new();
    for name in ["alpha", "beta"] {
        std::fs::create_dir_all(env.instance_dir(name)).unwrap();
    }
    let home = env.lima_home();
    // fish: the real completion engine, asked with `complete -C`.
    let fish = |line: &str| {
        shell_lines(
            "fish",
            &["--no-config", "-c"],
            &format!("limactl completion fish | source; or exit 9; complete -C '{line}'"),
            &[("LIMA_HOME", &home)],
        )
    };
    assert_eq!(fish("limactl shell "), ["alpha", "beta"]);
    assert_eq!(fish("limactl clone a"), ["alpha"]);
    let subs = fish("limactl sh");
    assert!(subs.iter().any(|l| l.starts_with("shell\t")), "{subs:?}");
    let flags = fish("limactl shell --pre");
    assert!(
        flags.len() == 1 && flags[0].starts_with("--preserve-env"),
        "{flags:?}"
    );
    // zsh: no completion engine runs outside its line editor, so `compadd`
    // (what the script hands names to) is replaced by one that prints them.
    let zsh = |words: &str, current: usize| {
        shell_lines(
            "zsh",
            &["-f", "-c"],
            &format!(
                "autoload -Uz compinit && compinit -u -D; source <(limactl completion zsh) || exit 9\n\
                 compadd() {{ [[ $1 == -a ]] && print -l -- ${{(P)2}}; }}\n\
                 words=({words}); CURRENT={current}; _limactl"
            ),
            &[("LIMA_HOME", &home)],
        )
    };
    assert_eq!(zsh("limactl shell ''", 3), ["alpha", "beta"]);
    assert_eq!(zsh("limactl stop alpha ''", 4), ["alpha", "beta"]);
}

/// Serves `files` (URL path → body) over HTTP/1.1 on 127.0.0.1; counts GETs.
fn serve(
    files: Vec<(&'static str, String)>,
) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{BufRead, BufReader, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let gets = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = gets.clone();
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            let mut r = BufReader::new(&conn);
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let mut w = &conn;
            match files.iter().find(|(p, _)| *p == path) {
                Some((_, body)) => {
                    if line.starts_with("GET ") {
                        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    let _ = write!(
                        w,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Mon, 01 Jan 2024 00:00:00 GMT\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    if line.starts_with("GET ") {
                        let _ = w.write_all(body.as_bytes());
                    }
                }
                None => {
                    let _ = write!(
                        w,
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                }
            }
        }
    });
    (port, gets)
}

#[test]
fn http_templates_come_through_the_download_cache() {
    let env = Env::new();
    let image = crate::common::tiny_image(env.dir.path());
    let base = format!(
        "images:\n- location: {}\n  arch: x86_64\ncpus: 3\n",
        image.display()
    );
    let main = "base: parts/base.yaml\nmemory: 1GiB\n".to_string();
    let (port, gets) = serve(vec![("/t/web.yaml", main), ("/t/parts/base.yaml", base)]);
    let url = format!("http://127.0.0.1:{port}/t/web.yaml");
    let cache = env.dir.path().join("cache");
    let run = |args: &[&str]| {
        let out = env
            .cmd()
            .env("XDG_CACHE_HOME", &cache)
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "limactl {args:?}: {err}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // The relative base resolves next to the template's URL.
    let filled = run(&["template", "copy", "--embed", &url, "-"]);
    assert!(filled.contains("cpus: 3"), "{filled}");
    assert!(filled.contains("memory: 1GiB"), "{filled}");
    let entries = std::fs::read_dir(cache.join("lima/download/by-url-sha256"))
        .unwrap()
        .count();
    assert_eq!(entries, 2, "both templates are cache entries");
    // The instance name comes from the URL's file name.
    run(&["create", &url]);
    let j = env.list_json("web");
    assert_eq!(j["cpus"], 3, "{j}");
    assert!(gets.load(std::sync::atomic::Ordering::SeqCst) >= 2);
    // A missing template names the URL.
    let out = env
        .cmd()
        .env("XDG_CACHE_HOME", &cache)
        .args([
            "template",
            "copy",
            &format!("http://127.0.0.1:{port}/nope.yaml"),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("nope.yaml"), "{err}");
}

#[test]
fn template_url_shows_what_a_locator_stands_for() {
    let env = Env::new();
    assert_eq!(
        env.ok(&[
            "template",
            "url",
            "github:lima-vm/lima/templates/docker@v2.0.0"
        ]),
        "https://raw.githubusercontent.com/lima-vm/lima/v2.0.0/templates/docker.yaml\n"
    );
    assert_eq!(
        env.ok(&["template", "url", "https://example.com/x.yaml"]),
        "https://example.com/x.yaml\n"
    );
    // Other schemes ask a `limactl-url-SCHEME` plugin.
    let bin = env.dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let plugin = bin.join("limactl-url-demo");
    std::fs::write(
        &plugin,
        "#!/bin/sh\necho \"https://templates.example/$1.yaml\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = env
        .cmd()
        .env(
            "PATH",
            format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
        )
        .args(["template", "url", "demo:fedora"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "https://templates.example/fedora.yaml\n"
    );
    let (code, _, err) = env.run(&["template", "url", "nosuchscheme:x"]);
    assert_eq!(code, 1);
    assert!(err.contains("limactl-url-nosuchscheme"), "{err}");
}

#[test]
fn start_lists_templates_and_drivers() {
    let env = Env::new();
    let templates = env.ok(&["start", "--list-templates"]);
    assert!(templates.lines().any(|l| l == "default"), "{templates}");
    assert!(
        !templates.lines().any(|l| l.starts_with('_')),
        "{templates}"
    );
    assert_eq!(
        templates,
        env.ok(&["create", "--list-templates"]),
        "start and create list alike"
    );
    assert_eq!(env.ok(&["start", "--list-drivers"]), "qemu\n");
}

#[test]
fn image_and_arch_variants_pick_the_images() {
    let env = Env::new();
    let image = crate::common::tiny_image(env.dir.path());
    // Only the desktop image exists: creating succeeds only when it alone is picked.
    let desktop = env.dir.path().join("desktop.qcow2");
    std::fs::copy(&image, &desktop).unwrap();
    let t = env.dir.path().join("variants.yaml");
    std::fs::write(
        &t,
        format!(
            "images:\n- location: {}\n  arch: x86_64\n  variant: server\n- location: {}\n  arch: x86_64\n  variant: desktop\n  archVariant: v3\n",
            env.dir.path().join("missing-server.qcow2").display(),
            desktop.display()
        ),
    )
    .unwrap();
    let t = t.to_str().unwrap();
    env.ok(&["create", "--name", "desk", "--image-variant", "desktop", t]);
    let y = std::fs::read_to_string(env.instance_dir("desk").join("lima.yaml")).unwrap();
    assert!(
        y.contains("variant: desktop") && !y.contains("variant: server"),
        "{y}"
    );
    env.ok(&["create", "--name", "v3", "--arch-variant", "v3", t]);
    let y = std::fs::read_to_string(env.instance_dir("v3").join("lima.yaml")).unwrap();
    assert!(
        y.contains("archVariant: v3") && !y.contains("server"),
        "{y}"
    );
    // A variant the template lacks leaves no image, and says why.
    let (code, _, err) = env.run(&["create", "--name", "none", "--image-variant", "nope", t]);
    assert_eq!(code, 1);
    assert!(err.contains("--image-variant"), "{err}");
    assert!(!env.instance_dir("none").join("lima.yaml").exists());
}

#[test]
fn edit_changes_a_yaml_file_in_place_once_valid() {
    let env = Env::new();
    let image = crate::common::tiny_image(env.dir.path());
    let f = env.dir.path().join("my.yaml");
    let original = format!(
        "images:\n- location: {}\n  arch: x86_64\ncpus: 1\n",
        image.display()
    );
    std::fs::write(&f, &original).unwrap();
    let path = f.to_str().unwrap();
    env.ok(&["edit", path, "--cpus", "3"]);
    let edited = std::fs::read_to_string(&f).unwrap();
    assert!(edited.contains("cpus: 3"), "{edited}");
    assert!(edited.contains(&image.display().to_string()), "{edited}");
    // An edit that makes it invalid leaves the file as it was.
    let (code, _, err) = env.run(&["edit", path, "--set", ".cpus = \"many\""]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is invalid; nothing was changed"), "{err}");
    assert_eq!(std::fs::read_to_string(&f).unwrap(), edited);
    let (code, _, err) = env.run(&["edit", path, "--start"]);
    assert_eq!(code, 1);
    assert!(err.contains("--start is for instances"), "{err}");
}

#[test]
fn shell_asks_to_start_a_stopped_instance_on_a_terminal() {
    let env = Env::new();
    let image = crate::common::tiny_image(env.dir.path());
    let t = env.dir.path().join("t.yaml");
    std::fs::write(
        &t,
        format!("images:\n- location: {}\n  arch: x86_64\n", image.display()),
    )
    .unwrap();
    env.ok(&["create", "--name", "vm", t.to_str().unwrap()]);
    // A pseudo-terminal (util-linux `script`); the answer "n" keeps it stopped.
    let mut child = std::process::Command::new("script")
        .args([
            "-qec",
            &format!("{} shell vm true", limactl().display()),
            "/dev/null",
        ])
        .env("LIMA_HOME", env.lima_home())
        .env("HOME", env.dir.path().join("home"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("script(1) from bsdutils (hack/install-deps.sh)");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"n\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Do you want to start the instance now?"),
        "{text}"
    );
    assert!(text.contains("instance `vm` is stopped"), "{text}");
    assert_eq!(env.status("vm"), "Stopped");
    // Without a terminal there is no question, only the error.
    let (code, _, err) = env.run(&["shell", "vm", "true"]);
    assert_eq!(code, 1);
    assert!(!err.contains("Do you want"), "{err}");
}
