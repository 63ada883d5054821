//! Scripts written for Lima keep working (issue 16): `limactl yq` and the
//! yq expressions of `list --yq/--filter`, with yq's flags, output, equality
//! and messages; against a temporary LIMA_HOME, no VM.

use crate::common::Env;

const YAML: &str =
    "images:\n- location: /images/x.qcow2\n  arch: x86_64\ncpus: 2\nmemory: 2GiB\ndisk: 10GiB\n";

fn instance(env: &Env, name: &str) {
    let d = env.instance_dir(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("lima.yaml"), YAML).unwrap();
}

fn file(env: &Env, name: &str, text: &str) -> String {
    let p = env.dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

/// Runs limactl with `vars` set; (exit code, stdout, stderr).
fn run_env(env: &Env, vars: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let mut c = env.cmd();
    for (k, v) in vars {
        c.env(k, v);
    }
    let out = c.args(args).output().unwrap();
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    eprintln!("$ limactl {}\n{o}{e}", args.join(" "));
    (out.status.code().unwrap_or(-1), o, e)
}

#[test]
fn yq_version_and_lima_bats_examples() {
    let env = Env::new();
    let out = env.ok(&["yq", "--version"]);
    let re = regex_lite_match(&out);
    assert!(re, "{out}");
    assert_eq!(env.ok(&["yq", "-n", ".foo=42"]), "foo: 42\n");
    assert_eq!(
        env.ok(&["yq", "-n", "-o", "json", "-I", "0", ".foo=42"]),
        "{\"foo\":42}\n"
    );
    assert_eq!(env.ok(&["yq", "eval", "-n", ".a = 1"]), "a: 1\n");
}

/// `^yq .*mikefarah.* version v` (Lima's bats test), without a regex crate.
fn regex_lite_match(out: &str) -> bool {
    out.starts_with("yq ")
        && out
            .find("mikefarah")
            .is_some_and(|i| out[i..].contains(" version v"))
}

#[test]
fn yq_unwrap_input_format_pretty_and_docs_flags() {
    let env = Env::new();
    let y = file(&env, "d.yaml", "s: x\nn: 1\n---\ns: y\n");
    assert_eq!(env.ok(&["yq", ".s", &y]), "x\n---\ny\n");
    assert_eq!(env.ok(&["yq", "-N", ".s", &y]), "x\ny\n");
    assert_eq!(env.ok(&["yq", "-o", "json", ".s", &y]), "\"x\"\n\"y\"\n");
    assert_eq!(env.ok(&["yq", "-o", "json", "-r", ".s", &y]), "x\ny\n");
    assert_eq!(
        env.ok(&["yq", "--unwrapScalar=false", "-o", "json", ".s", &y]),
        "\"x\"\n\"y\"\n"
    );
    assert_eq!(
        env.ok(&["yq", "-P", ".n", &y]),
        "1\nnull\n".replace("\nnull", "\n---\nnull")
    );
    let j = file(&env, "d.json", "{\"a\": {\"b\": [1, 2]}}");
    assert_eq!(env.ok(&["yq", "-p", "json", ".a.b[1]", &j]), "2\n");
    assert_eq!(env.ok(&["yq", "-p", "auto", ".a.b[0]", &j]), "1\n");
    let (code, _, err) = env.run(&["yq", "-p", "xml", ".", &j]);
    assert_eq!(code, 1);
    assert!(err.starts_with("Error: unknown input format xml"), "{err}");
}

#[test]
fn yq_exit_status_flag() {
    let env = Env::new();
    let y = file(&env, "d.yaml", "a: 1\nf: false\n");
    assert_eq!(env.run(&["yq", "-e", ".a", &y]).0, 0);
    for expr in [".missing", ".f", "select(.a == 2)"] {
        let (code, _, err) = env.run(&["yq", "-e", expr, &y]);
        assert_eq!(
            (code, err.as_str()),
            (1, "Error: no matches found\n"),
            "{expr}"
        );
    }
}

#[test]
fn yq_colours_forced_and_disabled() {
    let env = Env::new();
    let y = file(&env, "d.yaml", "a: x\n");
    let coloured = env.ok(&["yq", "-C", ".", &y]);
    assert!(coloured.contains("\x1b[36ma\x1b[0m"), "{coloured:?}");
    assert_eq!(env.ok(&["yq", "-M", ".", &y]), "a: x\n");
    let cj = env.ok(&["yq", "-C", "-o", "json", ".", &y]);
    assert!(cj.contains("\x1b[32m\"x\"\x1b[0m"), "{cj:?}");
}

#[test]
fn yq_eval_all_merges_documents() {
    let env = Env::new();
    let a = file(&env, "a.yaml", "a: 1\nm: {x: 1}\n");
    let b = file(&env, "b.yaml", "b: 2\nm: {w: 2}\n");
    for verb in ["eval-all", "ea"] {
        assert_eq!(
            env.ok(&["yq", verb, ". as $item ireduce ({}; . * $item)", &a, &b]),
            "a: 1\nm:\n  x: 1\n  w: 2\nb: 2\n"
        );
    }
    assert_eq!(env.ok(&["yq", "ea", ".a", &a]), "1\n");
}

#[test]
fn yq_multiple_results_print_one_per_line() {
    let env = Env::new();
    let y = file(&env, "d.yaml", "{a: 1}\n");
    assert_eq!(env.ok(&["yq", ".a, .a", &y]), "1\n1\n");
    assert_eq!(
        env.ok(&["yq", "-o", "json", "-I", "0", ".a, .a", &y]),
        "1\n1\n"
    );
}

#[test]
fn yq_equality_compares_scalars_by_text() {
    let env = Env::new();
    assert_eq!(env.ok(&["yq", "-n", "1 == \"1\""]), "true\n");
    assert_eq!(env.ok(&["yq", "-n", "\"1\" != 1"]), "false\n");
    assert_eq!(env.ok(&["yq", "-n", "\"cat\" == \"c*\""]), "true\n");
    assert_eq!(env.ok(&["yq", "-n", "null == null"]), "true\n");
    assert_eq!(env.ok(&["yq", "-n", "{\"a\": 1} == {\"a\": 1}"]), "true\n");
    instance(&env, "one");
    instance(&env, "two");
    // disk is 10GiB in bytes; yq compares it with a string by its text.
    let out = env.ok(&[
        "list",
        "--filter",
        ".disk == \"10737418240\"",
        "--format",
        "{{.Name}}",
    ]);
    assert_eq!(out, "one\ntwo\n");
}

#[test]
fn yq_errors_have_no_parser_internals() {
    let env = Env::new();
    let (code, out, err) = env.run(&["yq", "-n", "foo"]);
    assert_eq!(code, 1);
    assert!(format!("{out}{err}").contains("invalid input"), "{err}");
    assert!(err.starts_with("Error: "), "{err}");
    for internal in ["Filter(", "[(", "Lex(", "Parse("] {
        assert!(!err.contains(internal), "{err}");
    }
}

#[test]
fn yq_env_allowed_in_limactl_yq_and_refused_with_yqs_messages_elsewhere() {
    let env = Env::new();
    let foo = [("FOO", "bar"), ("N", "3")];
    assert_eq!(run_env(&env, &foo, &["yq", "-n", "env(FOO)"]).1, "bar\n");
    assert_eq!(
        run_env(&env, &foo, &["yq", "-n", "-o", "json", "env(N) + 1"]).1,
        "4\n"
    );
    assert_eq!(
        run_env(&env, &foo, &["yq", "-n", "-o", "json", "strenv(N)"]).1,
        "\"3\"\n"
    );
    let (code, _, err) = run_env(
        &env,
        &foo,
        &["yq", "-n", "--security-disable-env-ops", "env(FOO)"],
    );
    assert_eq!(
        (code, err.as_str()),
        (1, "Error: env operations have been disabled\n")
    );
    instance(&env, "one");
    for (flag, expr, msg) in [
        ("--yq", "env(FOO)", "env operations have been disabled"),
        (
            "--filter",
            "strenv(FOO) == \"bar\"",
            "env operations have been disabled",
        ),
        (
            "--yq",
            "load(\"/etc/passwd\")",
            "file operations have been disabled",
        ),
        (
            "--yq",
            ".x = system(\"id\")",
            "system operations are disabled",
        ),
    ] {
        let (code, out, err) = run_env(&env, &foo, &["list", flag, expr]);
        assert_eq!(code, 1, "{flag} {expr}: {out}");
        assert!(err.contains(msg), "{flag} {expr}: {err}");
        assert!(!out.contains("bar"), "{out}");
    }
}

#[test]
fn list_yq_prints_scalars_unquoted_and_quiet_yq_works() {
    let env = Env::new();
    instance(&env, "one");
    instance(&env, "two");
    assert_eq!(env.ok(&["ls", "--yq", ".name"]), "one\ntwo\n");
    assert_eq!(env.ok(&["ls", "--yq", ".cpus"]), "2\n2\n");
    assert_eq!(
        env.ok(&["ls", "--quiet", "--yq", "select(.name == \"two\")"]),
        "two\n"
    );
}

#[test]
fn yq_only_operators() {
    let env = Env::new();
    let y = file(
        &env,
        "d.yaml",
        "a: 1\nb: x\nc: [1, 2]\nd: {e: f}\nz: 0\nv: 1\n",
    );
    let q = |expr: &str| env.ok(&["yq", "-o", "json", "-I", "0", expr, &y]);
    assert_eq!(
        q("[.a, .b, .c, .d, .nope, 1.5] | map(tag)"),
        "[\"!!int\",\"!!str\",\"!!seq\",\"!!map\",\"!!null\",\"!!float\"]\n"
    );
    assert_eq!(
        q("with(.d; .e = \"g\" | .h = 1) | .d"),
        "{\"e\":\"g\",\"h\":1}\n"
    );
    assert_eq!(q(".d | to_json(0)"), "\"{\\\"e\\\":\\\"f\\\"}\"\n");
    assert_eq!(q(".d | to_json"), "\"{\\n  \\\"e\\\": \\\"f\\\"\\n}\\n\"\n");
    assert_eq!(q(".b | upcase"), "\"X\"\n");
    assert_eq!(q("\"AbC\" | downcase"), "\"abc\"\n");
    assert_eq!(q(".d | key"), "\"d\"\n");
    assert_eq!(q("[.c[] | key]"), "[0,1]\n");
    assert_eq!(q(".b | line"), "2\n");
    assert_eq!(q(".d.e | line"), "4\n");
    assert_eq!(q("explode(.) | .a"), "1\n");
    assert_eq!(
        run_env(
            &env,
            &[("V", "w")],
            &["yq", "-o", "json", "-I", "0", ".b = strenv(V) | .b", &y]
        )
        .1,
        "\"w\"\n"
    );
    // del keeps the order of the other keys.
    assert_eq!(
        q("del(.a) | keys_unsorted"),
        "[\"b\",\"c\",\"d\",\"z\",\"v\"]\n"
    );
    assert_eq!(
        env.ok(&["yq", "del(.b)", &y]),
        "a: 1\nc:\n- 1\n- 2\nd:\n  e: f\nz: 0\nv: 1\n"
    );
}

#[test]
fn boolean_flags_take_go_values_and_bare_tty() {
    let env = Env::new();
    instance(&env, "one");
    assert_eq!(env.ok(&["list", "--quiet=true"]), "one\n");
    assert_eq!(env.ok(&["list", "--quiet=false"]).lines().count(), 2);
    assert_eq!(env.ok(&["list", "-q", "--quiet=false"]).lines().count(), 2);
    assert_eq!(env.ok(&["list", "--quiet=false", "-q"]), "one\n");
    assert_eq!(env.ok(&["list", "--json=T", "--yq", ".name"]), "one\n");
    assert_eq!(env.ok(&["--tty", "list", "-q"]), "one\n");
    assert_eq!(env.ok(&["--tty=false", "list", "-q"]), "one\n");
    let (code, _, err) = env.run(&["-y", "--tty=false", "list"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("level=fatal msg=\"cannot use both --tty and --yes flags at the same time\""),
        "{err}"
    );
}

#[test]
fn log_level_wins_over_debug() {
    let env = Env::new();
    let (code, _, err) = env.run(&["--debug", "--log-level=error", "list"]);
    assert_eq!(code, 0);
    assert!(
        !err.contains("No instance found"),
        "warning shown at error level: {err}"
    );
    let (_, _, err) = env.run(&["--debug", "list"]);
    assert!(err.contains("No instance found"), "{err}");
}

#[test]
fn unknown_flags_are_fatal_in_cobras_words() {
    let env = Env::new();
    let (code, out, err) = env.run(&["list", "--x"]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(
        err.contains("level=fatal msg=\"unknown flag: --x\""),
        "{err}"
    );
    assert!(!err.contains("tip:"), "{err}");
    let (code, _, err) = env.run(&["frobnicate"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("msg=\"unknown command \\\"frobnicate\\\" for \\\"limactl\\\"\""),
        "{err}"
    );
    let (code, _, err) = env.run(&["list", "--x=1"]);
    assert_eq!(code, 1);
    assert!(err.contains("msg=\"unknown flag: --x\""), "{err}");
}

/// Lima wraps cobra's argument-count errors (`WrapArgsError`): the command,
/// cobra's words, where to look, the usage line and the summary.
#[test]
fn wrong_argument_counts_in_limas_words() {
    let env = Env::new();
    for (args, first, path) in [
        (
            &["start", "a", "b"][..],
            r#"\"limactl start\" accepts at most 1 arg(s), received 2."#,
            "limactl start",
        ),
        (
            &["start", "--name", "x", "--cpus", "2", "a", "b"][..],
            r#"\"limactl start\" accepts at most 1 arg(s), received 2."#,
            "limactl start",
        ),
        (
            &["delete"][..],
            r#"\"limactl delete\" requires at least 1 arg(s), only received 0."#,
            "limactl delete",
        ),
        (
            &["info", "x"][..],
            r#"\"limactl info\" accepts 0 arg(s), received 1."#,
            "limactl info",
        ),
    ] {
        let (code, out, err) = env.run(args);
        assert_eq!((code, out.as_str()), (1, ""), "{args:?}");
        assert!(
            err.contains(&format!("level=fatal msg=\"{first}")),
            "{args:?}: {err}"
        );
        assert!(
            err.contains(&format!("\\nSee '{path} --help'.\\n\\nUsage:  {path}")),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn lima_wording_for_stop_protected_delete_param_and_shell() {
    let env = Env::new();
    instance(&env, "one");
    let (code, _, err) = env.run(&["stop", "one"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("expected status `Running`, got `Stopped` (maybe use `limactl stop -f`?)"),
        "{err}"
    );
    env.ok(&["protect", "one"]);
    let (code, _, err) = env.run(&["delete", "one"]);
    assert_eq!(code, 1);
    assert!(
        err.contains(
            "failed to delete instance `one`: instance is protected to prohibit accidental removal (Hint: use `limactl unprotect`)"
        ),
        "{err}"
    );
    let t = file(&env, "t.yaml", YAML);
    let (code, _, err) = env.run(&["create", "--name", "p", "--param", "FOO=1", &t]);
    assert_eq!(code, 1);
    assert!(
        err.contains("error while processing flag `param`: template does not define param `FOO`"),
        "{err}"
    );
    let (code, _, err) = env.run(&["shell"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("requires instance name as first argument"),
        "{err}"
    );
}

#[test]
fn disk_list_header_and_fs_type() {
    let env = Env::new();
    let (code, out, err) = env.run(&["disk", "list"]);
    assert_eq!(code, 0);
    assert_eq!(out, "NAME    SIZE    FORMAT    DIR    IN-USE-BY\n");
    assert!(err.contains("No disk found"), "{err}");
    assert_eq!(env.run(&["disk", "list", "--json"]).1, "");
    env.ok(&["disk", "create", "data", "--size", "1MiB"]);
    let j: serde_json::Value = serde_json::from_str(&env.ok(&["disk", "list", "--json"])).unwrap();
    assert!(j.get("fsType").is_none(), "omitted when empty: {j}");
    let d = env.instance_dir("one");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("lima.yaml"),
        format!("{YAML}additionalDisks:\n- name: data\n  fsType: xfs\n"),
    )
    .unwrap();
    std::os::unix::fs::symlink(&d, env.lima_home().join("_disk/data/in_use_by")).unwrap();
    let j: serde_json::Value = serde_json::from_str(&env.ok(&["disk", "list", "--json"])).unwrap();
    assert_eq!(j["fsType"], "xfs", "{j}");
}

/// Provision `mode: yq` runs the boot script's provision-yq.sh, which runs
/// `lima-guestagent yq` from the cidata volume: here the real script and
/// the real guest agent binary, without a VM.
#[test]
fn guest_agent_yq_runs_provision_yq_scripts() {
    let env = Env::new();
    let mnt = env.dir.path().join("cidata");
    std::fs::create_dir_all(mnt.join("provision.yq")).unwrap();
    std::os::unix::fs::symlink(
        assert_cmd::cargo::cargo_bin("lima-guestagent"),
        mnt.join("lima-guestagent"),
    )
    .unwrap();
    let target = env.dir.path().join("etc/app/conf.yaml");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/cidata/guest/util/provision-yq.sh"
    );
    let me = nix_ids();
    let run = |expr: &str| {
        std::fs::write(mnt.join("provision.yq/0"), expr).unwrap();
        let out = std::process::Command::new("bash")
            .arg(script)
            .arg(mnt.join("provision.yq/0"))
            .env("LIMA_CIDATA_MNT", &mnt)
            .env("LIMA_CIDATA_YQ_PROVISION_0_PATH", &target)
            .env("LIMA_CIDATA_YQ_PROVISION_0_OWNER", &me)
            .env("LIMA_CIDATA_YQ_PROVISION_0_PERMISSIONS", "600")
            .env("LIMA_CIDATA_YQ_PROVISION_0_FORMAT", "auto")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "provision-yq.sh failed: {err}");
    };
    run(".a = 1 | .list = [\"x\"]");
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        "a: 1\nlist:\n- x\n"
    );
    run(".b = \"two\" | del(.a)");
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        "list:\n- x\nb: two\n"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // And directly, as yq.
    let out = std::process::Command::new(mnt.join("lima-guestagent"))
        .args(["yq", "-n", "-o", "json", "-I", "0", ".foo = 42"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "{\"foo\":42}\n");
}

/// `user:group` of this process, for chown.
fn nix_ids() -> String {
    let id = |flag: &str| {
        let o = std::process::Command::new("id").arg(flag).output().unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    format!("{}:{}", id("-u"), id("-g"))
}

#[test]
fn list_go_templates_use_limas_field_names_and_messages() {
    let env = Env::new();
    instance(&env, "one");
    let f = |t: &str| env.ok(&["ls", "--format", t]);
    assert_eq!(
        f(
            "{{.Config.CPUs}} {{.Config.VMType}} {{len .Config.Mounts}} {{(index .Config.Images 0).Location}}"
        ),
        "2 qemu 0 /images/x.qcow2\n"
    );
    assert_eq!(f("{{.Config.SSH.LocalPort}}"), "0\n");
    // {{json .}} is the object --format json prints (before yq drops empty maps).
    let tmpl: serde_json::Value = serde_json::from_str(&f("{{json .}}")).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&env.ok(&["ls", "--format", "json"])).unwrap();
    assert_eq!(tmpl["name"], "one");
    assert_eq!(tmpl["config"]["cpus"], 2);
    assert_eq!(tmpl["config"]["images"], json["config"]["images"]);
    assert_eq!(
        f("{{json .Config.Images}}"),
        "[{\"location\":\"/images/x.qcow2\",\"arch\":\"x86_64\"}]\n"
    );
    assert_eq!(
        f("{{printf \"%q\" .Name}} {{printf \"%s=%d\" .Name .CPUs}}"),
        "\"one\" one=2\n"
    );
    assert_eq!(
        f("{{.Errors}} {{.AdditionalDisks}} {{len .Param}} {{if .Networks}}x{{else}}none{{end}}"),
        "[] [] 0 none\n"
    );
    for (t, msg) in [
        (
            "{{.Foo}}",
            "can't evaluate field Foo in type store.FormatData",
        ),
        (
            "{{.Config.Foo}}",
            "can't evaluate field Foo in type limatype.LimaYAML",
        ),
        ("{{.Name.X}}", "can't evaluate field X in type string"),
    ] {
        let (code, out, err) = env.run(&["ls", "--format", t]);
        assert_eq!((code, out.as_str()), (1, ""), "{t}");
        assert!(err.contains(msg), "{t}: {err}");
    }
}

#[test]
fn list_json_drops_empty_maps_and_colours_for_a_terminal() {
    let env = Env::new();
    let d = env.instance_dir("one");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("lima.yaml"),
        format!("{YAML}env: {{}}\nparam: {{}}\n"),
    )
    .unwrap();
    let out = env.ok(&["ls", "--json"]);
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(j["config"].get("env").is_none(), "{out}");
    assert!(j["config"].get("param").is_none(), "{out}");
    assert!(!out.contains("\x1b["), "no colour in a pipe");
    let (_, coloured, _) = run_env(&env, &[("_LIMA_OUTPUT_IS_TTY", "1")], &["ls", "--json"]);
    assert!(
        coloured.starts_with("{\n    \x1b[36m\"name\"\x1b[0m: \x1b[32m\"one\"\x1b[0m"),
        "{coloured:?}"
    );
    let (_, yaml, _) = run_env(
        &env,
        &[("_LIMA_OUTPUT_IS_TTY", "1")],
        &["ls", "--format", "yaml"],
    );
    assert!(
        yaml.contains("\x1b[36mname\x1b[0m: \x1b[32mone\x1b[0m"),
        "{yaml:?}"
    );
}

#[test]
fn template_yq_queries_the_embedded_template() {
    let env = Env::new();
    let out = env.ok(&["template", "yq", "template:default", ".images[0].location"]);
    assert!(
        out.starts_with("https://") && out.ends_with(".img\n"),
        "{out}"
    );
    let t = file(&env, "t.yaml", YAML);
    assert_eq!(env.ok(&["tmpl", "yq", &t, ".cpus"]), "2\n");
    assert_eq!(
        env.ok(&["tmpl", "yq", &t, ".images[0]"]),
        "location: /images/x.qcow2\narch: x86_64\n"
    );
}

#[test]
fn unused_param_check_reads_the_playbook_file() {
    let env = Env::new();
    let uses = file(
        &env,
        "uses.yml",
        "- hosts: all\n  tasks:\n  - debug: msg=\"{{.Param.FOO}}\"\n",
    );
    let not = file(&env, "not.yml", "- hosts: all\n");
    let t = |pb: &str| {
        file(
            &env,
            "p.yaml",
            &format!("{YAML}param:\n  FOO: x\nprovision:\n- mode: ansible\n  playbook: {pb}\n"),
        )
    };
    let (code, _, err) = env.run(&["validate", &t(&uses)]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = env.run(&["validate", &t(&not)]);
    assert_eq!(code, 1);
    assert!(err.contains("key `FOO` is not used"), "{err}");
}

#[test]
fn plugins_run_and_info_lists_them() {
    let env = Env::new();
    let bin = env.dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let plugin = bin.join("limactl-hello");
    std::fs::write(&plugin, "#!/bin/sh\necho \"hello $*\"\nexit 3\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let (code, out, _) = run_env(&env, &[("PATH", &path)], &["hello", "a", "--b"]);
    assert_eq!((code, out.as_str()), (3, "hello a --b\n"));
    // A command of our own is never shadowed.
    std::fs::copy(&plugin, bin.join("limactl-list")).unwrap();
    let (code, _, _) = run_env(&env, &[("PATH", &path)], &["list"]);
    assert_eq!(code, 0);
    let (_, out, _) = run_env(&env, &[("PATH", &path)], &["info"]);
    let info: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        info["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "hello" && p["path"] == plugin.display().to_string()),
        "{info}"
    );
    assert!(
        info["libexecPaths"][0]
            .as_str()
            .unwrap()
            .ends_with("libexec/lima"),
        "{info}"
    );
    assert!(
        info["sharePaths"][0]
            .as_str()
            .unwrap()
            .ends_with("share/lima"),
        "{info}"
    );
    let ga = env.dir.path().join("ga");
    std::fs::write(&ga, "").unwrap();
    let (_, out, _) = run_env(
        &env,
        &[("LIMA_GUESTAGENT", ga.to_str().unwrap())],
        &["info"],
    );
    let info: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        info["guestAgents"]["x86_64"]["location"],
        ga.display().to_string(),
        "{info}"
    );
}

#[test]
fn template_copy_embed_keeps_the_bytes_it_does_not_change() {
    let env = Env::new();
    file(&env, "base.yaml", "memory: 4GiB\nmounts:\n- location: /b\n");
    let t = file(
        &env,
        "t.yaml",
        "# my header\n# keep me\nbase: base.yaml\ncpus: 2 # two\nenv: {\"A\": \"x\", B: y}\nmounts: [{location: \"/a\"}]\n",
    );
    assert_eq!(
        env.ok(&["template", "copy", "--embed", &t, "-"]),
        "# my header\n# keep me\ncpus: 2 # two\nenv: {\"A\": \"x\", B: y}\nmounts:\n- location: /a\n- location: /b\nmemory: 4GiB\n"
    );
}

#[test]
fn help_groups_commands_like_lima() {
    let env = Env::new();
    let help = env.ok(&["--help"]);
    let basic = help.find("Basic Commands:\n  create").expect("basic group");
    let advanced = help
        .find("Advanced Commands:\n  copy")
        .expect("advanced group");
    let other = help.find("Additional Commands:").expect("the rest");
    assert!(basic < advanced && advanced < other, "{help}");
    assert!(help[basic..advanced].contains("\n  restart "), "{help}");
    assert!(help[advanced..other].contains("\n  template "), "{help}");
    assert!(help[other..].contains("\n  apply "), "{help}");
    assert!(
        !help.contains("hostagent"),
        "hidden commands stay hidden: {help}"
    );
}
