//! `provision: [{mode: ansible, playbook: …}]` (deprecated in Lima,
//! reference §1.4.4): the playbooks run on the host against the guest
//! through `ssh.config`, after the guest is otherwise ready, with an
//! inventory written to `<inst>/ansible-inventory.yaml`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::spec::LimaYaml;
use crate::store::paths::files;

pub const ANSIBLE_PLAYBOOK: &str = "ansible-playbook";

/// `(index in provision[], playbook)` of every ansible entry.
pub fn playbooks(config: &LimaYaml) -> Vec<(usize, String)> {
    config
        .provision
        .iter()
        .flatten()
        .enumerate()
        .filter(|(_, p)| p.mode.as_deref() == Some("ansible"))
        .map(|(i, p)| (i, p.playbook.clone().unwrap_or_default()))
        .collect()
}

/// An executable named `name` on `path` (a `PATH` value).
pub fn which(name: &str, path: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path?)
        .map(|d| d.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Refuses a start that has ansible entries without `ansible-playbook` on
/// the host (before anything boots, rather than failing after the boot).
pub fn check(config: &LimaYaml, path: Option<&std::ffi::OsStr>) -> Result<(), String> {
    let books = playbooks(config);
    if books.is_empty() || which(ANSIBLE_PLAYBOOK, path).is_some() {
        return Ok(());
    }
    let idx: Vec<String> = books
        .iter()
        .map(|(i, _)| format!("provision[{i}]"))
        .collect();
    Err(format!(
        "{} (mode: ansible) need `{ANSIBLE_PLAYBOOK}` on the host, and it was not found in PATH: install Ansible, or remove the entries",
        idx.join(", ")
    ))
}

/// Lima's inventory: one host `NAME` reached as `lima-NAME` through the
/// instance's `ssh.config`.
pub fn inventory_yaml(name: &str, instance_dir: &Path) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap();
    format!(
        "lima:\n  hosts:\n    {}:\n      ansible_connection: ssh\n      ansible_host: {}\n      ansible_ssh_common_args: {}\n",
        q(name),
        q(&crate::spec::defaults::hostname_for(name)),
        q(&format!(
            "-F {}",
            instance_dir.join(files::SSH_CONFIG).display()
        ))
    )
}

/// Writes the inventory and runs every playbook in order; returns the errors.
pub fn run(config: &LimaYaml, name: &str, instance_dir: &Path) -> Vec<String> {
    let books = playbooks(config);
    if books.is_empty() {
        return Vec::new();
    }
    let inventory = instance_dir.join(files::ANSIBLE_INVENTORY);
    if let Err(e) = crate::store::atomic::write(
        &inventory,
        inventory_yaml(name, instance_dir).as_bytes(),
        0o644,
    ) {
        return vec![format!("cannot write {}: {e}", inventory.display())];
    }
    let mut errors = Vec::new();
    for (i, playbook) in books {
        crate::info!("Running ansible-playbook {playbook:?} (provision[{i}])");
        let mut c = Command::new(ANSIBLE_PLAYBOOK);
        c.arg("-i").arg(&inventory).arg(&playbook);
        for (k, v) in config.param.iter().flatten() {
            c.env(format!("PARAM_{k}"), v);
        }
        match c.stdin(Stdio::null()).output() {
            Ok(out) if out.status.success() => {
                crate::info!("ansible-playbook {playbook:?} succeeded");
            }
            Ok(out) => {
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                let tail: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
                let tail = tail[tail.len().saturating_sub(5)..].join(" | ");
                errors.push(format!(
                    "provision[{i}] (mode: ansible) failed: `{ANSIBLE_PLAYBOOK} {playbook}` exited with {}; last output: {tail}",
                    out.status.code().map_or("a signal".into(), |c| format!("exit code {c}"))
                ));
            }
            Err(e) => errors.push(format!(
                "provision[{i}] (mode: ansible): cannot run `{ANSIBLE_PLAYBOOK}`: {e}"
            )),
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::types::Provision;

    fn config(modes: &[&str]) -> LimaYaml {
        LimaYaml {
            provision: Some(
                modes
                    .iter()
                    .map(|m| Provision {
                        mode: Some((*m).into()),
                        playbook: (*m == "ansible").then(|| "site.yml".into()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn inventory_matches_lima() {
        assert_eq!(
            inventory_yaml("vm", Path::new("/lh/vm")),
            "lima:\n  hosts:\n    \"vm\":\n      ansible_connection: ssh\n      ansible_host: \"lima-vm\"\n      ansible_ssh_common_args: \"-F /lh/vm/ssh.config\"\n"
        );
        // It is YAML that yq reads back as Lima's structure.
        let node =
            crate::spec::yaml::parse_single("inv", &inventory_yaml("vm", Path::new("/lh/vm")))
                .unwrap()
                .unwrap()
                .to_json();
        assert_eq!(node["lima"]["hosts"]["vm"]["ansible_host"], "lima-vm");
    }

    #[test]
    fn a_missing_ansible_playbook_is_refused_up_front() {
        let d = tempfile::tempdir().unwrap();
        let path = std::ffi::OsString::from(d.path());
        assert_eq!(check(&config(&["system"]), Some(&path)), Ok(()));
        let e = check(&config(&["system", "ansible"]), Some(&path)).unwrap_err();
        assert!(
            e.starts_with("provision[1] (mode: ansible) need `ansible-playbook`"),
            "{e}"
        );
        let fake = d.path().join(ANSIBLE_PLAYBOOK);
        std::fs::write(&fake, "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(check(&config(&["ansible"]), Some(&path)), Ok(()));
        assert_eq!(
            playbooks(&config(&["ansible", "user", "ansible"])),
            vec![(0, "site.yml".into()), (2, "site.yml".into())]
        );
    }
}
