//! The daemon's Git sources: fetched on an interval and on SIGHUP, their
//! status recorded for `limactl status --sources`.

use std::collections::BTreeMap;

use super::Daemon;
use crate::reconcile::controller::When;
use crate::reconcile::source::Sources;
use crate::reconcile::status;
use crate::spec::yaml::quote_name;
use crate::sync::MutexExt;

impl Daemon {
    /// Fetches every Git source; one that moved is replaced by its new
    /// commit and every instance is reconciled. One that cannot be fetched
    /// keeps its commit: the error goes on its status and nothing changes.
    pub(super) fn refresh_git(&self) {
        let current = self.sources();
        let mut moved = Vec::new();
        let mut errors = BTreeMap::new();
        for (i, s) in current.iter().enumerate() {
            if s.git.is_none() {
                continue;
            }
            match s.refresh(&self.ctx.home) {
                Ok(Some(new)) => {
                    crate::info!("Source {} moved: {}", quote_name(&s.id), new.describe());
                    self.metrics.source_synced(&s.id);
                    moved.push((i, new));
                }
                // Fetched, and the ref did not move: the source is as fresh as the remote.
                Ok(None) => self.metrics.source_synced(&s.id),
                Err(e) => {
                    crate::error!("{e}");
                    errors.insert(s.id.clone(), e.to_string());
                }
            }
        }
        let now = {
            let mut sources = self.sources.locked();
            for (i, new) in moved.iter() {
                sources.0[*i] = new.clone();
            }
            sources.clone()
        };
        self.record_sources(&now, &errors);
        if !moved.is_empty() {
            self.enqueue_all(When::Now);
        }
    }

    /// Writes the Git sources' status (`limactl status --sources`).
    pub(super) fn record_sources(&self, sources: &Sources, errors: &BTreeMap<String, String>) {
        let now = crate::logging::now_rfc3339();
        let list: Vec<status::SourceStatus> = sources
            .iter()
            .filter_map(|s| {
                Some(status::SourceStatus {
                    source: s.git.as_ref()?.display(),
                    revision: s.revision.clone(),
                    last_fetch: now.clone(),
                    last_error: errors.get(&s.id).cloned(),
                })
            })
            .collect();
        if let Err(e) = status::write_sources(&self.ctx.home, &list) {
            crate::warn!("cannot record the status of the Git sources: {e}");
        }
    }
}
