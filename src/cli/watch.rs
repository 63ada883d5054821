//! `limactl watch [NAME…] [--json] [--history]`: Lima's event stream (the
//! host agents' `ha.stdout.log`), interleaved with the reconciler's step
//! events (`reconcile.log`). Follows new instances as they appear.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::hostagent::events::Event;
use crate::hostagent::logfollow::LineTail;
use crate::reconcile::journal::ReconcileEvent;
use crate::store::paths::files;
use crate::store::{self, Home};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Instances to watch (default: all, including ones created later).
    pub names: Vec<String>,
    /// One JSON object per line: `{"instance":…,"event":…}` or `{"instance":…,"reconcile":…}`.
    #[arg(long)]
    pub json: bool,
    /// Print the events recorded so far first.
    #[arg(long)]
    pub history: bool,
}

/// A file followed from its start, or from its current end.
fn follow(path: PathBuf, from_start: bool) -> LineTail {
    if from_start {
        LineTail::from_start(&path)
    } else {
        LineTail::from_end(&path)
    }
}

fn describe(ev: &Event) -> String {
    let s = &ev.status;
    let mut parts = Vec::new();
    if s.exiting {
        parts.push("exiting".to_string());
    } else if s.running && s.degraded {
        parts.push("degraded".into());
    } else if s.running {
        parts.push("running".into());
    }
    if !s.errors.is_empty() {
        parts.push(format!("errors: {}", s.errors.join("; ")));
    }
    if let Some(pf) = &s.port_forward {
        parts.push(format!(
            "port forward {} {} {} → {}",
            pf.kind, pf.protocol, pf.guest_addr, pf.host_addr
        ));
    }
    if let Some(ci) = &s.cloud_init_progress
        && !ci.log_line.is_empty()
    {
        parts.push(format!("cloud-init: {}", ci.log_line));
    }
    if parts.is_empty() && s.ssh_local_port != 0 {
        parts.push(format!("ssh port {}", s.ssh_local_port));
    }
    parts.join(", ")
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    let home = Home::from_env();
    let mut followers: BTreeMap<String, (LineTail, LineTail)> = BTreeMap::new();
    let mut first = true;
    let mut out = super::out::stdout();
    loop {
        let names = if a.names.is_empty() {
            store::instance_names(&home)?
        } else {
            a.names.clone()
        };
        for n in names {
            let dir: &Path = &home.instance_dir(&n);
            followers.entry(n.clone()).or_insert_with(|| {
                // Instances seen at start: history only with --history;
                // instances appearing later: everything they wrote.
                let from_start = a.history || !first;
                (
                    follow(dir.join(files::HA_STDOUT_LOG), from_start),
                    follow(dir.join(files::RECONCILE_LOG), from_start),
                )
            });
        }
        first = false;
        for (name, (ha, rec)) in followers.iter_mut() {
            let mut lines: Vec<(String, serde_json::Value)> = Vec::new();
            for l in ha.lines().unwrap_or_default() {
                if let Ok(ev) = serde_json::from_str::<Event>(&l) {
                    let text = if a.json {
                        serde_json::json!({"instance": name, "event": ev}).to_string()
                    } else {
                        format!("{}  {name}  {}", ev.time, describe(&ev))
                    };
                    lines.push((ev.time.clone(), text.into()));
                }
            }
            for l in rec.lines().unwrap_or_default() {
                if let Ok(ev) = serde_json::from_str::<ReconcileEvent>(&l) {
                    let text = if a.json {
                        serde_json::json!({"instance": name, "reconcile": ev}).to_string()
                    } else {
                        format!(
                            "{}  {name}  reconcile {} {}: {}{}",
                            ev.time,
                            ev.phase,
                            ev.step,
                            ev.reason,
                            ev.revision
                                .as_deref()
                                .map(|r| format!(
                                    " (commit {})",
                                    crate::reconcile::plan::render::short(r)
                                ))
                                .unwrap_or_default()
                        )
                    };
                    lines.push((ev.time.clone(), text.into()));
                }
            }
            lines.sort_by(|x, y| x.0.cmp(&y.0));
            for (_, t) in lines {
                writeln!(out, "{}", t.as_str().unwrap_or_default())?;
            }
        }
        out.flush()?;
        std::thread::sleep(Duration::from_millis(200));
    }
}
