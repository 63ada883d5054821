//! The guest scripts in the shells that run them: busybox ash (Alpine's `/bin/sh`,
//! and its `/bin/bash` once `01-alpine-ash-as-bash.sh` made that a wrapper) and dash
//! (Debian's `/bin/sh`, which runs `boot.sh`). Both come from `hack/install-deps.sh`;
//! without them these tests fail rather than skip.

use std::process::{Command, Output};

use super::*;

/// `busybox ash ARGS…` (`sh` "busybox"), or `SH ARGS…`, with `envs`; the test fails
/// with a pointer to hack/install-deps.sh when the shell is not installed.
fn shell(sh: &str, args: &[&std::ffi::OsStr], envs: &[(&str, &str)]) -> Output {
    let mut cmd = if sh == "busybox" {
        let mut c = Command::new("busybox");
        c.arg("ash");
        c
    } else {
        Command::new(sh)
    };
    cmd.args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    match cmd.output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "`{sh}` is not installed: run hack/install-deps.sh (it installs busybox and dash)"
        ),
        Err(e) => panic!("cannot run {sh}: {e}"),
    }
}

fn ok_stdout(what: &str, out: &Output) -> String {
    assert!(
        out.status.success(),
        "{what}: exit {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn script(path: &str) -> &'static str {
    scripts::GUEST_SCRIPTS
        .iter()
        .find(|(p, _)| *p == path)
        .unwrap_or_else(|| panic!("{path} is not in GUEST_SCRIPTS"))
        .1
}

/// The lines of `text` from the line `# >>> NAME…` to `# <<< NAME`, both included.
fn extract(text: &str, name: &str) -> String {
    let start = text
        .find(&format!("\n# >>> {name}"))
        .unwrap_or_else(|| panic!("no `# >>> {name}` marker"));
    let end_marker = format!("\n# <<< {name}\n");
    let end = start
        + text[start..]
            .find(&end_marker)
            .unwrap_or_else(|| panic!("no `# <<< {name}` marker"))
        + end_marker.len();
    text[start + 1..end].to_string()
}

/// Runs `body` under `sh` after the extract `part` of the script `path`.
fn run_extract(sh: &str, path: &str, parts: &[&str], body: &str, envs: &[(&str, &str)]) -> Output {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("t.sh");
    let mut text = String::from("set -u\n");
    for part in parts {
        text.push_str(&extract(script(path), part));
    }
    text.push_str(body);
    std::fs::write(&p, text).unwrap();
    shell(sh, &[p.as_os_str()], envs)
}

/// Every script the volume carries parses in busybox ash; boot.sh in dash too.
#[test]
fn every_guest_script_parses_in_busybox_ash_and_boot_sh_in_dash() {
    let d = tempfile::tempdir().unwrap();
    for (path, text) in scripts::GUEST_SCRIPTS {
        let p = d.path().join(path.replace('/', "_"));
        std::fs::write(&p, text).unwrap();
        let mut shells = vec!["busybox"];
        if *path == crate::store::paths::cidata_files::BOOT_SH {
            shells.push("dash");
        }
        for sh in shells {
            let out = shell(sh, &["-n".as_ref(), p.as_os_str()], &[]);
            assert!(
                out.status.success(),
                "{path} does not parse in {sh}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// `-n` finds syntax errors only: what busybox ash lacks but parses (or only fails
/// on when it runs) must not appear outside comments either.
#[test]
fn no_guest_script_uses_what_busybox_ash_lacks() {
    const LACKING: &[(&str, &str)] = &[
        ("printf -v", "printf -v"),
        ("%(", "printf's %(...)T"),
        ("%q", "printf's %q"),
        ("compgen", "compgen"),
        ("mapfile", "mapfile"),
        ("readarray", "readarray"),
        ("declare ", "declare"),
        ("typeset ", "typeset"),
        ("shopt", "shopt"),
        ("read -a", "read -a"),
        ("<<<", "here-strings"),
        ("<(", "process substitution"),
        (">(", "process substitution"),
        ("${!", "indirect expansion"),
        ("[@]", "arrays"),
        ("+=", "+="),
        ("=~", "[[ =~ ]]"),
        ("&>", "&>"),
        ("function ", "the function keyword"),
    ];
    // `NAME=(`, outside single quotes (a printf format may hold `flags=(…)`).
    let array = regex::Regex::new(r"(^|[\s;&|(])[A-Za-z_][A-Za-z0-9_]*=\(").unwrap();
    for (path, text) in scripts::GUEST_SCRIPTS {
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with('#') {
                continue;
            }
            let unquoted: Vec<&str> = code.split('\'').step_by(2).collect();
            assert!(
                !array.is_match(&unquoted.join(" ")),
                "{path}:{}: arrays (busybox ash has none): {line}",
                n + 1
            );
            for (needle, what) in LACKING {
                assert!(
                    !code.contains(needle),
                    "{path}:{}: {what} (busybox ash has none): {line}",
                    n + 1
                );
            }
        }
    }
}

/// boot.sh runs as /bin/sh: on Alpine /bin/bash exists only once boot.sh has run
/// the module that makes it.
#[test]
fn boot_sh_is_a_posix_sh_script() {
    let text = script(crate::store::paths::cidata_files::BOOT_SH);
    assert!(text.starts_with("#!/bin/sh\n"), "{}", &text[..40]);
}

/// A `LIMA <date -Iseconds>| msg` line, its time as `date -Iseconds` gives it then.
fn check_log_lines(sh: &str, tz: &str) {
    let out = run_extract(
        sh,
        crate::store::paths::cidata_files::BOOT_SH,
        &["log"],
        "a=$(date -Iseconds)\nlog 'first  line'\nlog \"second: $*\"\nb=$(date -Iseconds)\necho \"$a\"\necho \"$b\"\necho \"$log_clock\"\n",
        &[("TZ", tz)],
    );
    let stdout = ok_stdout(&format!("log under {sh} (TZ={tz})"), &out);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{sh}: {stdout}");
    let re =
        regex::Regex::new(r"^LIMA (\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2})\| (.*)$")
            .unwrap();
    let (before, after) = (lines[2], lines[3]);
    for (line, msg) in [(lines[0], "first  line"), (lines[1], "second: ")] {
        let caps = re
            .captures(line)
            .unwrap_or_else(|| panic!("{sh}: not a log line: {line:?}"));
        assert_eq!(&caps[2], msg, "{sh}: {line}");
        // Same offset as `date -Iseconds`, so the strings compare as times.
        assert_eq!(caps[1][19..], before[19..], "{sh}: {line} vs {before}");
        assert!(
            before <= &caps[1] && &caps[1] <= after,
            "{sh}: {line} not between {before} and {after}"
        );
    }
    // dash has no clock: the uptime path; busybox ash has $EPOCHSECONDS.
    let want = if sh == "dash" { "uptime" } else { "epoch" };
    assert_eq!(lines[4], want, "{sh}: {stdout}");
}

#[test]
fn boot_sh_log_lines_match_date_iseconds_in_busybox_ash_and_dash() {
    for sh in ["busybox", "dash"] {
        // POSIX TZ strings (no tzdata needed): UTC, +05:30 and -03:30.
        for tz in ["UTC0", "LIMA-5:30", "LIMA+3:30"] {
            check_log_lines(sh, tz);
        }
    }
}

/// The calendar arithmetic of boot.sh's log at fixed times (leap days, 2100, before
/// 1970 at a negative offset), against what GNU date printed for them.
#[test]
fn boot_sh_log_format_computes_the_calendar() {
    let cases = [
        (951782400_i64, 19800, "+05:30", "2000-02-29T05:30:00+05:30"),
        (951782400, -12600, "-03:30", "2000-02-28T20:30:00-03:30"),
        (0, -12600, "-03:30", "1969-12-31T20:30:00-03:30"),
        (4107542400, 0, "+00:00", "2100-03-01T00:00:00+00:00"),
        (4107542400, -12600, "-03:30", "2100-02-28T20:30:00-03:30"),
        (1796347744, 0, "+00:00", "2026-12-04T01:29:04+00:00"),
        (1709164799, 0, "+00:00", "2024-02-28T23:59:59+00:00"),
        (1709164799, 19800, "+05:30", "2024-02-29T05:29:59+05:30"),
    ];
    let mut body = String::new();
    let mut want = String::new();
    for (epoch, off, tz, iso) in cases {
        body.push_str(&format!(
            "log_off={off} log_tz={tz}\nlog_format {epoch} 'm {epoch}'\n"
        ));
        want.push_str(&format!("LIMA {iso}| m {epoch}\n"));
    }
    for sh in ["busybox", "dash"] {
        let out = run_extract(
            sh,
            crate::store::paths::cidata_files::BOOT_SH,
            &["log"],
            &body,
            &[],
        );
        assert_eq!(ok_stdout(sh, &out), want, "{sh}");
    }
}

/// load_env_file and load_etc_environment: values as written (blanks, no newline at
/// the end), a key that is no variable name skipped with a warning instead of ending
/// the shell, /etc/environment's quotes, comments and `export `.
#[test]
fn boot_sh_env_files_load_in_busybox_ash_and_dash() {
    let d = tempfile::tempdir().unwrap();
    let env = d.path().join("lima.env");
    std::fs::write(
        &env,
        "LIMA_T_A=1\nLIMA_T_B=x  y *\nBAD-NAME=3\nnoequals\nLIMA_T_C=\nLIMA_T_D=last",
    )
    .unwrap();
    let etc = d.path().join("etc_environment");
    std::fs::write(
        &etc,
        "  export LIMA_T_E=\"quoted  val\"\n# LIMA_T_X=comment\n\nLIMA_T_F='single'\n1X=bad\nLIMA_T_G=a=b\n",
    )
    .unwrap();
    let body = format!(
        "load_env_file '{}'\nload_etc_environment '{}'\nload_env_file /nonexistent\necho after\nenv | grep '^LIMA_T_' | LC_ALL=C sort\n",
        env.display(),
        etc.display()
    );
    for sh in ["busybox", "dash"] {
        let out = run_extract(
            sh,
            crate::store::paths::cidata_files::BOOT_SH,
            &["log", "env"],
            &body,
            &[],
        );
        let stdout = ok_stdout(sh, &out);
        let (warnings, rest) = stdout.split_once("after\n").expect(&stdout);
        assert_eq!(
            rest,
            "LIMA_T_A=1\nLIMA_T_B=x  y *\nLIMA_T_C=\nLIMA_T_D=last\nLIMA_T_E=quoted  val\nLIMA_T_F=single\nLIMA_T_G=a=b\n",
            "{sh}"
        );
        let warnings: Vec<&str> = warnings.lines().collect();
        assert_eq!(warnings.len(), 2, "{sh}: {warnings:?}");
        assert!(
            warnings[0].ends_with("lima.env: not a variable name: BAD-NAME"),
            "{sh}: {warnings:?}"
        );
        assert!(
            warnings[1].ends_with("etc_environment: not a variable name: 1X"),
            "{sh}: {warnings:?}"
        );
    }
}

/// The provision runner under busybox ash: status file, log and exit status.
#[test]
fn provision_runner_works_in_busybox_ash() {
    let d = tempfile::tempdir().unwrap();
    let runner = d.path().join("lima-provision.sh");
    std::fs::write(&runner, script("util/lima-provision.sh")).unwrap();
    let status_dir = d.path().join("status");
    let out = shell(
        "busybox",
        &[
            runner.as_os_str(),
            "system".as_ref(),
            "00000003".as_ref(),
            "sh".as_ref(),
            "-c".as_ref(),
            "echo out; echo err >&2; exit 4".as_ref(),
        ],
        &[
            ("LIMA_PROVISION_DIR", status_dir.to_str().unwrap()),
            ("LIMA_CIDATA_IID", IID),
        ],
    );
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("[system 00000003] out"), "{stdout}");
    let status = std::fs::read_to_string(status_dir.join("00000003.status")).unwrap();
    let re = regex::Regex::new(
        r"^mode=system\nexit=4\niid=iid-1700000000\nstarted=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d\nfinished=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d\n$",
    )
    .unwrap();
    assert!(re.is_match(&status), "{status}");
    assert_eq!(
        std::fs::read_to_string(status_dir.join("00000003.log")).unwrap(),
        "out\nerr\n"
    );
}

/// provision-data.sh's variable lookups (eval, not bash's ${!v}) under busybox ash
/// and bash: the file lands at _PATH with _PERMISSIONS; an unset _PATH is an error.
#[test]
fn provision_data_finds_its_variables_in_busybox_ash_and_bash() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("00000002");
    std::fs::write(&src, "payload\n").unwrap();
    let tool = d.path().join("provision-data.sh");
    std::fs::write(&tool, script("util/provision-data.sh")).unwrap();
    let me = |flag: &str| {
        let out = Command::new("id").arg(flag).output().unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let owner = format!("{}:{}", me("-un"), me("-gn"));
    for sh in ["busybox", "bash"] {
        let dest = d.path().join(format!("out dir/{sh} $(x)"));
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        let envs = [
            ("LIMA_CIDATA_DATAFILE_00000002_PATH", dest.to_str().unwrap()),
            ("LIMA_CIDATA_DATAFILE_00000002_OWNER", owner.as_str()),
            ("LIMA_CIDATA_DATAFILE_00000002_PERMISSIONS", "600"),
            ("LIMA_CIDATA_DATAFILE_00000002_OVERWRITE", "true"),
        ];
        let out = shell(sh, &[tool.as_os_str(), src.as_os_str()], &envs);
        ok_stdout(sh, &out);
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "payload\n", "{sh}");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
            0o600,
            "{sh}"
        );
    }
    let out = shell("busybox", &[tool.as_os_str(), src.as_os_str()], &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no LIMA_CIDATA_DATAFILE_00000002_PATH"),
        "{out:?}"
    );
}

/// 06-etc-hosts.sh (string appends and a case pattern, no bash regex) gives the same
/// /etc/hosts under busybox ash as under bash.
#[test]
fn etc_hosts_module_is_the_same_in_busybox_ash_and_bash() {
    let d = tempfile::tempdir().unwrap();
    let hosts = d.path().join("hosts");
    let text = script("boot.Linux/06-etc-hosts.sh")
        .replace(
            "/etc/.hosts.lima",
            &d.path().join(".hosts").to_string_lossy(),
        )
        .replace("/etc/hosts", &hosts.to_string_lossy());
    let module = d.path().join("06-etc-hosts.sh");
    std::fs::write(&module, text).unwrap();
    let cases = [
        (
            "127.0.0.1 localhost\n::1 ip6\n",
            "127.0.0.1 localhost\n::1 ip6\n10.0.2.2\thost.lima.internal\n",
        ),
        (
            "127.0.0.1 localhost\n1.2.3.4  host.lima.internal  alias\n5.6.7.8 host.lima.internal.example\n9.9.9.9\thost.lima.internal",
            "127.0.0.1 localhost\n5.6.7.8 host.lima.internal.example\n10.0.2.2\thost.lima.internal\n",
        ),
        ("", "10.0.2.2\thost.lima.internal\n"),
    ];
    for sh in ["busybox", "bash"] {
        for (before, after) in cases {
            std::fs::write(&hosts, before).unwrap();
            let envs = [("LIMA_CIDATA_SLIRP_GATEWAY", "10.0.2.2")];
            let out = shell(sh, &[module.as_os_str()], &envs);
            ok_stdout(sh, &out);
            assert_eq!(
                std::fs::read_to_string(&hosts).unwrap(),
                after,
                "{sh}: {before:?}"
            );
        }
    }
}

/// 04-persistent-data-volume.sh's quoting: /proc/mounts escapes decoded, and the
/// single-quoted words of the remount script read back by sh as they were.
#[test]
fn data_volume_remount_quoting_round_trips_in_busybox_ash() {
    let body = r#"for m in '/tmp/a\040b' '/x\134y\011z' plain "/it's here" "''"; do
	case "$m" in *"$bs"*) m=$(unescape "$m") ;; esac
	sq "$m"
	eval "back=$sq"
	[ "$back" = "$m" ] || { echo "mismatch: $m -> $sq" >&2; exit 1; }
	printf '%s\n' "$sq"
done
"#;
    let out = run_extract(
        "busybox",
        "boot.Linux/04-persistent-data-volume.sh",
        &["quoting"],
        body,
        &[],
    );
    assert_eq!(
        ok_stdout("quoting", &out),
        "'/tmp/a b'\n'/x\\y\tz'\n'plain'\n'/it'\\''s here'\n''\\'''\\'''\n"
    );
}

/// 00-modprobe.sh: one `modprobe -a` for the modules not loaded yet; when it fails,
/// each of those alone, and the ones that still fail are named (a fake modprobe
/// that loads by creating the module's directory, and refuses `tap`).
#[test]
fn modprobe_module_loads_all_in_one_call_and_names_what_fails() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    let sys = d.path().join("sys-module");
    let bin = d.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let calls = d.path().join("calls");
    let fake = format!(
        "#!/bin/sh\necho \"$*\" >>{calls}\n[ \"$1\" = -a ] && shift\nfor m; do\n  [ \"$m\" = tap ] && exit 1\n  mkdir -p {sys}/$m\ndone\n",
        calls = calls.display(),
        sys = sys.display()
    );
    std::fs::write(bin.join("modprobe"), fake).unwrap();
    std::fs::set_permissions(bin.join("modprobe"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let module = d.path().join("00-modprobe.sh");
    let text = script("boot.Linux/00-modprobe.sh").replace("/sys/module", &sys.to_string_lossy());
    std::fs::write(&module, text).unwrap();
    let path = format!("{}:/usr/bin:/bin", bin.display());
    for sh in ["busybox", "bash"] {
        let _ = std::fs::remove_dir_all(&sys);
        let _ = std::fs::remove_file(&calls);
        // Already loaded: not asked for again.
        std::fs::create_dir_all(sys.join("overlay")).unwrap();
        let out = ok_stdout(sh, &shell(sh, &[module.as_os_str()], &[("PATH", &path)]));
        assert_eq!(
            out, "kernel module tap not loaded (fine when built in or unused)\n",
            "{sh}"
        );
        let calls = std::fs::read_to_string(&calls).unwrap();
        let mut lines = calls.lines();
        let first = lines.next().unwrap();
        assert!(
            first.starts_with("-a fuse tun tap bridge "),
            "{sh}: {calls}"
        );
        assert!(!first.contains("overlay"), "{sh}: {calls}");
        // After the failed -a: tap alone, and the ones the -a did not reach.
        let rest: Vec<&str> = lines.collect();
        assert_eq!(rest.first(), Some(&"tap"), "{sh}: {calls}");
        assert!(sys.join("xt_tcpudp").is_dir(), "{sh}");
        // All loaded: no modprobe at all.
        std::fs::create_dir_all(sys.join("tap")).unwrap();
        let before = std::fs::read_to_string(d.path().join("calls")).unwrap();
        ok_stdout(sh, &shell(sh, &[module.as_os_str()], &[("PATH", &path)]));
        assert_eq!(
            std::fs::read_to_string(d.path().join("calls")).unwrap(),
            before,
            "{sh}"
        );
    }
}

/// Fake commands in a `bin` directory: each appends its name and arguments to
/// `calls`, then runs `body` (sh).
fn fake_bin(dir: &std::path::Path, calls: &std::path::Path, fakes: &[(&str, &str)]) -> String {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for (name, body) in fakes {
        let text = format!(
            "#!/bin/sh\necho \"{name} $*\" >>{}\n{body}\n",
            calls.display()
        );
        std::fs::write(bin.join(name), text).unwrap();
        std::fs::set_permissions(bin.join(name), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    format!("{}:/usr/bin:/bin", bin.display())
}

/// 00-systemd-user-group.sh reads /etc/group itself: usermod only when the user is
/// not a member yet (a member list, not a prefix: `limax` is not `lima`), nothing
/// when the group does not exist (getent, for NSS groups, finds none either).
#[test]
fn user_group_module_adds_only_a_missing_membership() {
    let d = tempfile::tempdir().unwrap();
    let calls = d.path().join("calls");
    let path = fake_bin(d.path(), &calls, &[("usermod", ""), ("getent", "exit 2")]);
    let group = d.path().join("group");
    let module = d.path().join("m.sh");
    let text = script("boot.Linux/00-systemd-user-group.sh")
        .replace("/etc/group", &group.to_string_lossy());
    std::fs::write(&module, text).unwrap();
    for sh in ["busybox", "bash"] {
        for (line, usermod) in [
            ("systemd-journal:x:999:", true),
            ("systemd-journal:x:999:limax", true),
            ("systemd-journal:x:999:lima", false),
            ("systemd-journal:x:999:bob,lima,al", false),
            ("other:x:5:lima", false),
        ] {
            std::fs::write(&group, format!("root:x:0:\n{line}\n")).unwrap();
            let _ = std::fs::remove_file(&calls);
            let envs = [
                ("PATH", path.as_str()),
                ("LIMA_CIDATA_UID", "1000"),
                ("LIMA_CIDATA_USER", "lima"),
            ];
            ok_stdout(sh, &shell(sh, &[module.as_os_str()], &envs));
            let called = std::fs::read_to_string(&calls).unwrap_or_default();
            assert_eq!(
                called.contains("usermod -aG systemd-journal lima"),
                usermod,
                "{sh} with {line}: {called}"
            );
        }
    }
}

/// 20-rootless-base.sh's file steps with builtins: the rc files get the block once
/// (one chown for those written), the subordinate IDs once; systemd is asked about
/// a reload only when this run wrote the delegation drop-in, logind is started only
/// when it is not running, and lingering is enabled once.
#[test]
fn rootless_base_module_does_each_step_once() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    let home = root.join("home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(home.join(".bashrc"), "# the user's own\n").unwrap();
    let calls = d.path().join("calls");
    let path = fake_bin(
        d.path(),
        &calls,
        &[
            ("systemctl", "[ \"$1\" = show ] && echo yes; exit 0"),
            ("loginctl", ""),
            ("chown", ""),
            ("sysctl", ""),
        ],
    );
    let r = root.to_string_lossy();
    let text = script("boot.Linux/20-rootless-base.sh")
        .replace("/etc/", &format!("{r}/etc/"))
        .replace("/var/lib/systemd/", &format!("{r}/var/lib/systemd/"))
        .replace("/run/systemd/", &format!("{r}/run/systemd/"))
        .replace("/proc/sys/kernel/unprivileged_userns_clone", "/nonexistent");
    std::fs::create_dir_all(root.join("etc/sysctl.d")).unwrap();
    let module = d.path().join("m.sh");
    std::fs::write(&module, text).unwrap();
    let h = home.to_string_lossy().into_owned();
    let envs = [
        ("PATH", path.as_str()),
        ("LIMA_CIDATA_USER", "lima"),
        ("LIMA_CIDATA_HOME", h.as_str()),
        ("LIMA_USER_UID", "1000"),
    ];
    for sh in ["busybox", "bash"] {
        let _ = std::fs::remove_dir_all(root.join("etc/systemd"));
        let _ = std::fs::remove_file(root.join("etc/subuid"));
        let _ = std::fs::remove_file(&calls);
        std::fs::write(home.join(".bashrc"), "# the user's own\n").unwrap();
        for f in [".profile", ".zshrc"] {
            let _ = std::fs::remove_file(home.join(f));
        }
        // First run: the drop-in is new, systemd says a reload is needed.
        ok_stdout(sh, &shell(sh, &[module.as_os_str()], &envs));
        let first = std::fs::read_to_string(&calls).unwrap();
        assert!(
            first.contains(&format!("chown 1000 {h}/.profile {h}/.bashrc {h}/.zshrc\n")),
            "{sh}: {first}"
        );
        assert!(first.contains("systemctl show -p NeedDaemonReload --value user@1000.service\nsystemctl daemon-reload\n"), "{sh}: {first}");
        assert!(
            first.contains("systemctl start systemd-logind.service\nloginctl enable-linger lima\n"),
            "{sh}: {first}"
        );
        let bashrc = std::fs::read_to_string(home.join(".bashrc")).unwrap();
        assert!(
            bashrc.starts_with("# the user's own\n# Lima BEGIN\n"),
            "{sh}: {bashrc}"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("etc/subuid")).unwrap(),
            "lima:524288:1073741824\n"
        );
        // Second run, lingering on, logind running: nothing to do but the sysctls
        // (already written) — no chown, no systemd call at all.
        std::fs::create_dir_all(root.join("var/lib/systemd/linger")).unwrap();
        std::fs::write(root.join("var/lib/systemd/linger/lima"), "").unwrap();
        std::fs::create_dir_all(root.join("run/systemd/users")).unwrap();
        std::fs::remove_file(&calls).unwrap();
        ok_stdout(sh, &shell(sh, &[module.as_os_str()], &envs));
        let second = std::fs::read_to_string(&calls).unwrap_or_default();
        assert_eq!(second, "", "{sh}");
        assert_eq!(
            std::fs::read_to_string(home.join(".bashrc"))
                .unwrap()
                .matches("# Lima BEGIN")
                .count(),
            1
        );
        assert_eq!(
            std::fs::read_to_string(root.join("etc/subuid")).unwrap(),
            "lima:524288:1073741824\n"
        );
        std::fs::remove_file(root.join("var/lib/systemd/linger/lima")).unwrap();
        std::fs::remove_dir_all(root.join("run/systemd/users")).unwrap();
    }
}
