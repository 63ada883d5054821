//! The text form of plans, like `terraform plan`:
//!
//! ```text
//! ~ web: restart
//!       cpus 1 → 2  (restart-required)
//!     → stop: restart required: cpus 1 → 2
//!     → update-config: cpus 1 → 2
//!     → start: restart required: cpus 1 → 2
//! ```

use super::{Kind, Plan};

/// `s` in the colour of `k` when writing to a terminal.
pub fn colour(k: Kind, s: &str, tty: bool) -> String {
    if !tty {
        return s.to_string();
    }
    let code = match k {
        Kind::Create => "32",
        Kind::Update | Kind::Restart => "33",
        Kind::Delete | Kind::Recreate => "31",
        Kind::Refuse => "35",
        Kind::None => "0",
    };
    format!("\x1b[{code}m{s}\x1b[0m")
}

/// A commit id as shown in plans and tables (12 hex digits, as `git log --abbrev=12`).
pub fn short(rev: &str) -> &str {
    &rev[..rev.len().min(12)]
}

impl Plan {
    /// Whether the plan changes the configuration or refuses something: what
    /// imperative verbs show (their power steps speak through log lines).
    pub fn changes_config(&self) -> bool {
        !self.changes.is_empty() || !self.refused.is_empty()
    }

    /// Whether a saved state is resumed or thrown away: a verb that shows
    /// plans only for configuration changes shows this one too, so the user
    /// reads why an instance resumes or boots afresh.
    pub fn touches_saved_state(&self) -> bool {
        self.steps.iter().any(|s| {
            matches!(
                s.action,
                super::Action::Resume | super::Action::DiscardState
            )
        })
    }

    /// The plan's text (empty for a plan with nothing to say).
    pub fn render(&self, tty: bool) -> String {
        let mut out = String::new();
        if self.is_empty() && self.pending_restart.is_empty() {
            return out;
        }
        let mut head = format!(
            "{} {}: {}",
            self.kind.symbol(),
            self.instance,
            self.kind.text()
        );
        if let Some(rev) = &self.revision {
            head.push_str(&format!(" (commit {})", short(rev)));
        }
        out.push_str(&colour(self.kind, &head, tty));
        out.push('\n');
        for c in &self.changes {
            out.push_str(&format!("      {}  ({})\n", c.describe(), c.class.as_str()));
        }
        for s in &self.steps {
            out.push_str(&format!("    → {}: {}\n", s.action.verb(), s.reason));
        }
        for r in &self.refused {
            out.push_str(&format!("    ! {r}\n"));
        }
        if !self.pending_restart.is_empty() {
            out.push_str(&format!(
                "    … restart pending (--restart=never): {}\n",
                self.pending_restart.join(", ")
            ));
        }
        out
    }
}
