//! Reloading the configuration of a running daemon (SIGHUP, or `pastiche
//! config reload` through the control socket): `DATA/pastiche.toml` is read
//! again and, if valid, applied at once: the schedules, backup paths and
//! excludes, the keep policy, the alerts, the configured buddies, the
//! per-client quotas and the free-disk floor. The listen addresses, the
//! default quota, the session cap and the status page are bound at start:
//! a change there is reported and waits for a restart. An invalid file
//! changes nothing: the old configuration stays, and the error (its line
//! and the reason) goes to the log and to the command's output.

use std::sync::Arc;

use super::jobs::JobQueue;
use super::status::StatusBoard;
use super::{add_configured_buddies, load_config, DaemonOptions};
use crate::buddy::BuddyStorage;
use crate::config::{Config, LiveConfig};
use crate::repo::SharedBox;

/// Everything a reload touches.
pub struct Reloader {
    /// How the daemon was started (file and command-line overrides).
    pub opts: DaemonOptions,
    /// The configuration in use.
    pub live: Arc<LiveConfig>,
    /// The box (for the configured buddies).
    pub shared: Arc<SharedBox>,
    /// The buddy storage served (quotas, free-disk floor).
    pub storage: BuddyStorage,
    /// Where reloads are reported.
    pub board: Arc<StatusBoard>,
    /// The scheduler, woken to look at the new schedules.
    pub queue: Arc<JobQueue>,
}

impl Reloader {
    /// Reads the file again and applies it. Returns what changed, one line
    /// each; an invalid file is an error naming its line, and nothing
    /// changes.
    pub fn reload(&self) -> Result<Vec<String>, String> {
        let mut new = match load_config(&self.opts) {
            Ok(c) => c,
            Err(e) => {
                let why = format!("configuration not reloaded, the previous one stays: {e:#}");
                tracing::warn!("{why}");
                self.board.event(why.clone());
                return Err(why);
            }
        };
        let old = self.live.get();
        let mut lines = changes(&old, &new);
        // Bound at start: shown as waiting, the running values kept.
        let mut later = Vec::new();
        if new.serve.listen != old.serve.listen {
            later.push("serve.listen");
        }
        if new.serve.quota != old.serve.quota {
            later.push("serve.quota");
        }
        if new.serve.max_sessions != old.serve.max_sessions {
            later.push("serve.max_sessions");
        }
        if new.http != old.http {
            later.push("http");
        }
        new.serve.listen = old.serve.listen.clone();
        new.serve.quota = old.serve.quota;
        new.serve.max_sessions = old.serve.max_sessions;
        new.http = old.http.clone();
        if !later.is_empty() {
            lines.push(format!("{} changed in the file: applied at the next start", later.join(", ")));
        }

        self.storage.set_min_free(new.serve.min_free);
        self.storage.set_work_rate(new.serve.group_work_per_sec);
        for (key, quota) in &new.serve.client_quotas {
            if old.serve.client_quotas.get(key) == Some(quota) {
                continue;
            }
            let applied = key
                .parse()
                .map_err(|_| "not a key".to_string())
                .and_then(|k| self.storage.set_quota(&k, Some(*quota)).map_err(|e| e.to_string()));
            if let Err(e) = applied {
                lines.push(format!("quota of client {key} not set: {e}"));
            }
        }
        if let Err(e) = add_configured_buddies(&self.shared, &new, &self.board) {
            lines.push(format!("configured buddies not added: {e:#}"));
        }
        self.live.set(new);
        self.queue.nudge();
        if lines.is_empty() {
            lines.push("nothing changed".into());
        }
        let summary = format!("configuration reloaded: {}", lines.join("; "));
        tracing::info!("{summary}");
        self.board.event(summary);
        Ok(lines)
    }
}

/// What differs between two configurations, in words.
fn changes(old: &Config, new: &Config) -> Vec<String> {
    let mut lines = Vec::new();
    if old.backup.schedule != new.backup.schedule {
        lines.push(format!("backup schedule {} (was {})", new.backup.schedule, old.backup.schedule));
    }
    if old.backup.paths != new.backup.paths
        || old.backup.exclude != new.backup.exclude
        || old.backup.one_file_system != new.backup.one_file_system
    {
        let paths: Vec<String> = new.backup.paths.iter().map(|p| p.display().to_string()).collect();
        lines.push(format!("backup paths {}", if paths.is_empty() { "(none)".into() } else { paths.join(" ") }));
    }
    if old.keep != new.keep {
        lines.push("keep policy changed".into());
    }
    if old.prune.schedule != new.prune.schedule {
        lines.push(format!("prune schedule {} (was {})", new.prune.schedule, old.prune.schedule));
    }
    if old.alerts != new.alerts {
        lines.push("alerts changed".into());
    }
    if old.buddies != new.buddies {
        lines.push(format!("configured buddies {}", new.buddies.join(" ")));
    }
    if old.serve.client_quotas != new.serve.client_quotas || old.serve.min_free != new.serve.min_free {
        lines.push("client quotas or free-disk floor changed".into());
    }
    if old.serve.group_work_per_sec != new.serve.group_work_per_sec {
        lines.push(format!("clients' group work limited to {} bytes a second", new.serve.group_work_per_sec));
    }
    lines
}
