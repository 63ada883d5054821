//! `limactl apply` with a real VM: a one-file directory converges; changes
//! are applied by class; immutable changes are refused without touching the
//! VM; the power state follows runStrategy; prune deletes.

use crate::common;

use std::path::Path;

use common::{Env, guest_lock, mtimes, require_qemu, skipped, test_template};

fn write(dir: &Path, base: &Path, body: &str) {
    std::fs::write(
        dir.join("vm.yaml"),
        format!("base: {}\n{body}", base.display()),
    )
    .unwrap();
}

#[test]
fn apply_a_directory_through_its_lifecycle() {
    if skipped("apply e2e") {
        return;
    }
    require_qemu();
    let template = test_template(false);
    let env = Env::new();
    let src = env.dir.path().join("gitops");
    std::fs::create_dir_all(&src).unwrap();
    let src_arg = src.to_str().unwrap();
    let _guest = guest_lock();

    const OK_SCRIPTS: &str = "param: {GREETING: hello}\nprovision:\n- mode: system\n  script: |\n    #!/bin/sh\n    echo \"$PARAM_GREETING from {{.User}}\" >/var/tmp/provisioned\n- mode: user\n  script: |\n    #!/bin/sh\n    id -un >\"$HOME/user-provisioned\"\n";
    write(
        &src,
        &template,
        &format!("runStrategy: Always\ncpus: 2\ndisk: 4GiB\n{OK_SCRIPTS}"),
    );
    let out = env.ok(&["apply", "--wait", "-f", src_arg]);
    assert!(out.contains("+ vm: create"), "{out}");
    assert_eq!(env.status("vm"), "Running");
    assert_eq!(env.ok(&["shell", "vm", "nproc"]).trim(), "2");
    // Provisioning ran: as root with the param, and as the user.
    assert_eq!(
        env.ok(&["shell", "vm", "cat", "/var/tmp/provisioned"])
            .trim(),
        "hello from lima"
    );
    assert_eq!(
        env.ok(&["shell", "vm", "sh", "-c", "cat $HOME/user-provisioned"])
            .trim(),
        "lima"
    );
    let status = env.ok(&["status", "--json", "vm"]);
    assert!(
        status.contains("\"type\":\"Ready\",\"status\":\"True\""),
        "{status}"
    );
    let root_kib = |env: &Env| -> u64 {
        env.ok(&["shell", "vm", "df", "-k", "--output=size", "/"])
            .lines()
            .nth(1)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let before = root_kib(&env);

    // cpus (restart-required), disk (grow-only) and a new, failing provision
    // script in one change: one restart, and `--wait` names the failure.
    let failing = format!(
        "{OK_SCRIPTS}- mode: system\n  script: |\n    #!/bin/sh\n    echo about to fail\n    exit 3\n"
    );
    write(
        &src,
        &template,
        &format!("runStrategy: Always\ncpus: 1\ndisk: 6GiB\n{failing}"),
    );
    let (code, out, err) = env.run(&["diff", "-f", src_arg]);
    assert_eq!(code, 1, "{err}");
    assert!(out.contains("~ vm: restart"), "{out}");
    assert!(out.contains("cpus 2 → 1  (restart-required)"), "{out}");
    assert!(out.contains("disk 4GiB → 6GiB  (grow-only)"), "{out}");
    let (code, out, err) = env.run(&["apply", "--wait", "-f", src_arg]);
    assert_eq!(code, 1, "a failed provision script fails the apply: {err}");
    assert!(
        out.contains("→ stop: restart required: cpus 2 → 1"),
        "{out}"
    );
    assert!(
        err.contains("provision[2] (mode: system) failed with exit code 3"),
        "{err}"
    );
    assert!(
        err.contains("about to fail"),
        "the script's output is shown: {err}"
    );
    assert_eq!(env.status("vm"), "Running");
    let status = env.ok(&["status", "--json", "vm"]);
    assert!(
        status.contains("\"type\":\"Degraded\",\"status\":\"True\""),
        "{status}"
    );
    assert_eq!(
        env.ok(&["shell", "vm", "nproc"]).trim(),
        "1",
        "the guest sees the new CPU count"
    );
    let after = root_kib(&env);
    assert!(
        after > before + (1 << 20),
        "the root filesystem grew: {before} KiB → {after} KiB"
    );

    // An immutable change is refused and the VM is left alone.
    let pid = env.list_json("vm")["driverPID"].as_i64().unwrap();
    write(
        &src,
        &template,
        &format!("runStrategy: Always\ncpus: 1\ndisk: 6GiB\narch: aarch64\n{failing}"),
    );
    let (code, out, _) = env.run(&["apply", "-f", src_arg]);
    assert_eq!(code, 1);
    assert!(out.contains("field `arch` is immutable"), "{out}");
    let j = env.list_json("vm");
    assert_eq!(j["status"], "Running");
    assert_eq!(
        j["driverPID"].as_i64().unwrap(),
        pid,
        "QEMU was not touched"
    );

    // Halted: stopped. Applying again changes nothing, not even a file's mtime.
    write(
        &src,
        &template,
        &format!("runStrategy: Halted\ncpus: 1\ndisk: 6GiB\n{failing}"),
    );
    let out = env.ok(&["apply", "-f", src_arg]);
    assert!(
        out.contains("→ stop: desired power state is stopped"),
        "{out}"
    );
    assert_eq!(env.status("vm"), "Stopped");
    let files = mtimes(&env.instance_dir("vm"));
    let out = env.ok(&["apply", "-f", src_arg]);
    assert!(out.contains("1 unchanged"), "{out}");
    assert_eq!(
        mtimes(&env.instance_dir("vm")),
        files,
        "a no-op apply modified a file"
    );

    // The file is removed: --prune deletes the instance.
    std::fs::remove_file(src.join("vm.yaml")).unwrap();
    let out = env.ok(&["apply", "--prune", "-f", src_arg]);
    assert!(out.contains("- vm: delete"), "{out}");
    assert!(!env.instance_dir("vm").exists());
}
