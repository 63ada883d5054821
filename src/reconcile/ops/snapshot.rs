//! `limactl snapshot create|apply|delete|list` (reference §2.12, §8.8):
//! internal qcow2 snapshots of the instance's root disk. A running VM is
//! snapshotted through QMP (HMP `savevm`/`loadvm`/`delvm`/`info snapshots`,
//! which also save the RAM and device state); a stopped one with `qemu-img
//! snapshot` on `diffdisk`. Both under the instance's mutation lock, so a
//! start cannot begin between the liveness check and the disk access.

use std::path::Path;
use std::time::Duration;

use super::{Ctx, OpsError, existing};
use crate::driver::qemu::qmp::Qmp;
use crate::reconcile::execute;
use crate::spec::yaml::quote_name;
use crate::store::paths::files;
use crate::store::{instance, qemu_img};

/// What to do with a tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotAction {
    Create,
    Apply,
    Delete,
}

#[derive(Clone, Debug)]
pub struct SnapshotOptions {
    pub name: String,
    pub lock_timeout: Duration,
}

/// How long a `savevm`/`loadvm` may take: it writes or reads the guest's
/// whole RAM (slow under TCG), so QMP's usual reply timeout is too short.
const HMP_SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(600);

/// Where a snapshot operation runs.
enum Target {
    Online(Box<Qmp>),
    Offline(std::path::PathBuf),
}

fn failed(name: &str, what: &str, e: impl std::fmt::Display) -> OpsError {
    OpsError::Failed {
        name: name.into(),
        what: what.into(),
        message: e.to_string(),
    }
}

/// A tag is one word of an HMP command line and a qcow2 snapshot name:
/// no blanks or control characters, no leading `-` (qemu-img would read
/// an option), at most 128 bytes.
pub fn validate_tag(tag: &str) -> Result<(), OpsError> {
    if tag.is_empty() {
        return Err(OpsError::Usage("expected tag".into()));
    }
    if tag.len() > 128
        || tag.starts_with('-')
        || tag.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(OpsError::Usage(format!(
            "invalid snapshot tag {}: use at most 128 characters without blanks or control characters, not starting with `-`",
            quote_name(tag)
        )));
    }
    Ok(())
}

fn target(name: &str, dir: &Path) -> Result<Target, OpsError> {
    if instance::Liveness::probe(dir).qemu {
        let qmp = Qmp::connect(&dir.join(files::QMP_SOCK), Duration::from_secs(5))
            .map_err(|e| failed(name, "connect to QMP", e))?;
        return Ok(Target::Online(Box::new(qmp)));
    }
    let disk = instance::root_disk(dir).ok_or_else(|| {
        OpsError::Usage(format!(
            "instance {} has no disk yet (start it once first)",
            quote_name(name)
        ))
    })?;
    Ok(Target::Offline(disk))
}

/// `snapshot create|apply|delete NAME --tag TAG`. Returns non-error output
/// QEMU printed (Lima logs it as a warning).
pub fn snapshot(
    ctx: &Ctx,
    action: SnapshotAction,
    tag: &str,
    opts: &SnapshotOptions,
) -> Result<String, OpsError> {
    validate_tag(tag)?;
    let inst = existing(&ctx.home, &ctx.env, &opts.name)?;
    let _lock = execute::lock(&inst.dir, opts.lock_timeout)?;
    match target(&opts.name, &inst.dir)? {
        Target::Online(mut qmp) => {
            qmp.set_timeout(HMP_SNAPSHOT_TIMEOUT);
            let verb = match action {
                SnapshotAction::Create => "savevm",
                SnapshotAction::Apply => "loadvm",
                SnapshotAction::Delete => "delvm",
            };
            let said = qmp
                .hmp_checked(&format!("{verb} {tag}"))
                .map(|o| o.trim().to_string())
                .map_err(|e| failed(&opts.name, &format!("{verb} {tag}"), e))?;
            if action == SnapshotAction::Apply {
                // The guest's TCP state is now the snapshot's: the SSH
                // master's connection is dead but would hang every session
                // multiplexed over it. Ending it makes the next one reconnect.
                if let Ok(t) = crate::ssh::SshTarget::for_instance(&ctx.home, &inst) {
                    t.exit_master();
                }
            }
            Ok(said)
        }
        Target::Offline(disk) => {
            let flag = match action {
                SnapshotAction::Create => "-c",
                SnapshotAction::Apply => "-a",
                SnapshotAction::Delete => "-d",
            };
            let file = disk.display().to_string();
            qemu_img::run(&inst.dir, &["snapshot", flag, tag, &file])
                .map(|o| o.trim().to_string())
                .map_err(|e| failed(&opts.name, "change snapshots", e))
        }
    }
}

/// `snapshot list NAME`: the snapshot table as QEMU prints it, its title
/// line removed (empty when there are none), as Lima shows it.
pub fn list(ctx: &Ctx, opts: &SnapshotOptions) -> Result<String, OpsError> {
    let inst = existing(&ctx.home, &ctx.env, &opts.name)?;
    let _lock = execute::lock(&inst.dir, opts.lock_timeout)?;
    let out = match target(&opts.name, &inst.dir)? {
        Target::Online(mut qmp) => qmp
            .hmp_checked("info snapshots")
            .map_err(|e| failed(&opts.name, "info snapshots", e))?,
        Target::Offline(disk) => {
            let file = disk.display().to_string();
            qemu_img::run(&inst.dir, &["snapshot", "-l", &file])
                .map_err(|e| failed(&opts.name, "list snapshots", e))?
        }
    };
    Ok(table(&out))
}

/// The table without QEMU's title lines (`Snapshot list:`, `List of
/// snapshots present on all disks:`, `There is no snapshot available.`).
pub fn table(out: &str) -> String {
    let mut s = String::new();
    for line in out.replace('\r', "").lines() {
        let t = line.trim();
        if t == "Snapshot list:"
            || t == "List of snapshots present on all disks:"
            || t == "There is no snapshot available."
        {
            continue;
        }
        s.push_str(line);
        s.push('\n');
    }
    s
}

/// The tags of a [`table`] (`list --quiet`): the second column of each row
/// after the header, whose second column must be `TAG`.
pub fn tags(table: &str) -> Result<Vec<String>, OpsError> {
    let mut lines = table.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else {
        return Ok(Vec::new());
    };
    if header.split_whitespace().nth(1) != Some("TAG") {
        return Err(OpsError::Usage(format!("unknown header: {header}")));
    }
    Ok(lines
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_lose_their_titles_and_tags_are_the_second_column() {
        let hmp = "List of snapshots present on all disks:\r\nID        TAG               VM SIZE                DATE     VM CLOCK     ICOUNT\r\n--        s1                 22 MiB 2026-12-03 17:40:00 00:00:10.000           \r\n";
        let t = table(hmp);
        assert!(t.starts_with("ID        TAG"), "{t:?}");
        assert!(!t.contains('\r'));
        assert_eq!(tags(&t).unwrap(), ["s1"]);
        assert_eq!(table("There is no snapshot available.\r\n"), "");
        assert!(tags("").unwrap().is_empty());
        assert!(tags("ID NAME\n1 x\n").is_err());
    }

    #[test]
    fn tags_are_single_safe_words() {
        assert_eq!(validate_tag("").unwrap_err().to_string(), "expected tag");
        for bad in ["a b", "-c", "x\ny", &"t".repeat(129)] {
            assert!(validate_tag(bad).is_err(), "{bad:?}");
        }
        validate_tag("before-upgrade_2.0").unwrap();
    }
}
