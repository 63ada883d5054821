//! `limactl status [NAME…] [--json]`: the reconciler's conditions of instances.

use std::io::Write;

use crate::reconcile::status::{self, ConditionType};
use crate::spec::yaml::quote_name;
use crate::store::{self, Home};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Instances (default: all).
    pub names: Vec<String>,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
    /// Show the watch daemon's Git sources (commit, last fetch, last error) instead.
    #[arg(long)]
    pub sources: bool,
}

/// `limactl status --sources`.
fn sources(home: &Home, json: bool) -> anyhow::Result<i32> {
    let list = status::read_sources(home);
    let mut out = super::out::stdout();
    if json {
        for s in &list {
            writeln!(out, "{}", serde_json::to_string(s)?)?;
        }
        return Ok(0);
    }
    let mut rows = vec![
        ["SOURCE", "REVISION", "LAST-FETCH", "LAST-ERROR"]
            .map(String::from)
            .to_vec(),
    ];
    for s in &list {
        rows.push(vec![
            s.source.clone(),
            s.revision.clone().unwrap_or_else(|| "-".into()),
            s.last_fetch.clone(),
            s.last_error.clone().unwrap_or_default(),
        ]);
    }
    write!(out, "{}", super::list::tabwrite(&rows))?;
    Ok(0)
}

fn cond(s: &status::InstanceStatus, kind: ConditionType) -> String {
    s.status_of(kind).as_str().to_string()
}

/// `-`, or the failures in a row and when the daemon tries again.
fn backoff_cell(b: Option<&status::Backoff>) -> String {
    match b {
        Some(b) if b.failures > 0 => match b.next_attempt.split_once('T') {
            Some((_, time)) => format!("{} (next {})", b.failures, &time[..time.len().min(8)]),
            None => b.failures.to_string(),
        },
        _ => "-".into(),
    }
}

/// `-`, or when the watch daemon deletes the instance (its file is gone).
fn pending_deletion_cell(p: Option<&status::PendingDeletion>) -> String {
    match p {
        Some(p) => match p.delete_after.split_once('T') {
            Some((_, time)) => format!("at {}", &time[..time.len().min(8)]),
            None => "pending".into(),
        },
        None => "-".into(),
    }
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    let home = Home::from_env();
    let env = crate::spec::LoadEnv::new(&home.root);
    if a.sources {
        return sources(&home, a.json);
    }
    let names = if a.names.is_empty() {
        store::instance_names(&home)?
    } else {
        a.names.clone()
    };
    let mut out = super::out::stdout();
    let mut rows = vec![
        [
            "NAME",
            "STATUS",
            "READY",
            "RESTART-REQUIRED",
            "DEGRADED",
            "GENERATION",
            "BACKOFF",
            "PENDING-DELETION",
            "REVISION",
            "LAST-ERROR",
        ]
        .map(String::from)
        .to_vec(),
    ];
    let mut missing = false;
    for n in &names {
        let Some((inst, s)) = status::current(&home, &env, n) else {
            crate::warn!("No instance matching {n} found.");
            missing = true;
            continue;
        };
        if a.json {
            let mut j = serde_json::to_value(&s)?;
            if let Some(m) = j.as_object_mut() {
                m.insert("name".into(), n.clone().into());
                m.insert("status".into(), inst.status.as_str().into());
                m.insert("owner".into(), inst.owner.clone().into());
            }
            writeln!(out, "{j}")?;
        } else {
            let pending = if s.pending_restart.is_empty() {
                cond(&s, ConditionType::RestartRequired)
            } else {
                format!("True ({})", s.pending_restart.join(", "))
            };
            rows.push(vec![
                n.clone(),
                inst.status.as_str().to_string(),
                cond(&s, ConditionType::Ready),
                pending,
                cond(&s, ConditionType::Degraded),
                format!("{}/{}", s.observed_generation, s.generation),
                backoff_cell(s.backoff.as_ref()),
                pending_deletion_cell(s.pending_deletion.as_ref()),
                s.observed_revision
                    .as_deref()
                    .map_or("-", crate::reconcile::plan::render::short)
                    .to_string(),
                s.last_error
                    .clone()
                    .unwrap_or_default()
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string(),
            ]);
        }
    }
    if !a.json {
        write!(out, "{}", super::list::tabwrite(&rows))?;
    }
    if missing {
        anyhow::bail!(
            "unmatched instances: {}",
            a.names
                .iter()
                .map(|n| quote_name(n))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_column() {
        assert_eq!(backoff_cell(None), "-");
        let b = status::Backoff {
            failures: 3,
            next_attempt: "2026-11-27T22:41:07.123456Z".into(),
            ..Default::default()
        };
        assert_eq!(backoff_cell(Some(&b)), "3 (next 22:41:07)");
        let cleared = status::Backoff::default();
        assert_eq!(backoff_cell(Some(&cleared)), "-");
    }

    #[test]
    fn pending_deletion_column() {
        assert_eq!(pending_deletion_cell(None), "-");
        let p = status::PendingDeletion {
            since: "2026-11-27T22:41:07.123+01:00".into(),
            delete_after: "2026-11-27T22:41:37.123+01:00".into(),
            reason: "its file is gone".into(),
        };
        assert_eq!(pending_deletion_cell(Some(&p)), "at 22:41:37");
    }
}
