//! `/metrics`: the overview in the Prometheus text exposition format
//! (version 0.0.4), for alerting on staleness from outside the box.

use std::fmt::Write;

use super::overview::Overview;
use crate::daemon::status::JobKind;

/// The content type Prometheus scrapes.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Escapes a label value (backslash, double quote, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", label(v))).collect();
            let _ = write!(self.0, "{{{}}}", l.join(","));
        }
        let _ = writeln!(self.0, " {value}");
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

/// Renders the overview as metrics.
pub fn render(o: &Overview) -> String {
    let mut m = Out(String::new());
    m.one(
        "pastiche_health",
        "gauge",
        "The health verdict: 0 ok, 1 warning, 2 critical.",
        f64::from(o.health.verdict.exit_code()),
    );
    m.family("pastiche_alerts", "gauge", "Alerts raised now, by code.");
    let mut codes: Vec<&str> = o.health.alerts.iter().map(|a| a.code.as_str()).collect();
    codes.dedup();
    for code in codes {
        let n = o.health.alerts.iter().filter(|a| a.code == code).count();
        m.sample("pastiche_alerts", &[("code", code)], n as f64);
    }
    if let Some(last) = o.snapshots.last().and_then(|s| s["time"].as_str()) {
        if let Ok(t) = last.parse::<jiff::Timestamp>() {
            m.one(
                "pastiche_last_backup_timestamp_seconds",
                "gauge",
                "When the newest snapshot was taken (Unix seconds).",
                t.as_second() as f64,
            );
        }
    }
    m.one("pastiche_snapshots", "gauge", "Snapshots kept.", o.stats.snapshots as f64);
    m.one("pastiche_stored_bytes", "gauge", "Bytes the chunk store's packs take.", o.stats.stored_bytes as f64);
    m.one("pastiche_live_bytes", "gauge", "Bytes of referenced chunks.", o.stats.live_bytes as f64);
    m.one("pastiche_chunks", "gauge", "Chunks in the store.", o.stats.chunks as f64);
    if let Some(free) = o.box_info.disk_free {
        m.one("pastiche_disk_free_bytes", "gauge", "Free bytes on the data directory's file system.", free as f64);
    }
    m.family("pastiche_job_running", "gauge", "1 while a job of this kind runs.");
    for kind in [JobKind::Backup, JobKind::Ship, JobKind::Prune] {
        let running = o.status.current.as_ref().is_some_and(|c| c.kind == kind);
        m.sample("pastiche_job_running", &[("kind", kind.name())], if running { 1.0 } else { 0.0 });
    }

    m.family("pastiche_buddy_up", "gauge", "1 if the buddy answered the last probe or sync.");
    for b in &o.buddies {
        m.sample("pastiche_buddy_up", &[("buddy", &b.addr)], if b.contact.reachable == Some(true) { 1.0 } else { 0.0 });
    }
    m.family("pastiche_buddy_last_contact_timestamp_seconds", "gauge", "When the buddy last answered (Unix seconds).");
    for b in &o.buddies {
        if let Some(t) = b.contact.last_contact {
            m.sample("pastiche_buddy_last_contact_timestamp_seconds", &[("buddy", &b.addr)], t as f64);
        }
    }
    m.family(
        "pastiche_buddy_last_sync_timestamp_seconds",
        "gauge",
        "When the last successful sync to the buddy ended (Unix seconds).",
    );
    for b in &o.buddies {
        if let Some(t) = b.contact.last_sync {
            m.sample("pastiche_buddy_last_sync_timestamp_seconds", &[("buddy", &b.addr)], t as f64);
        }
    }
    m.family("pastiche_buddy_sync_failures_total", "counter", "Failed syncs to the buddy.");
    for b in &o.buddies {
        m.sample("pastiche_buddy_sync_failures_total", &[("buddy", &b.addr)], b.contact.total_failures as f64);
    }
    m.family("pastiche_buddy_held_bytes", "gauge", "Bytes the buddy holds for this box, as it last said.");
    for b in &o.buddies {
        if let Some(n) = b.contact.bytes_held {
            m.sample("pastiche_buddy_held_bytes", &[("buddy", &b.addr)], n as f64);
        }
    }
    m.family("pastiche_buddy_audit_suspect", "gauge", "1 if the buddy's last audit failed (lost or damaged data).");
    for b in &o.buddies {
        if let Some(a) = &b.audit {
            m.sample("pastiche_buddy_audit_suspect", &[("buddy", &b.addr)], if a.suspect { 1.0 } else { 0.0 });
        }
    }
    m.family("pastiche_buddy_audit_failures_total", "counter", "Failed audits of the buddy.");
    for b in &o.buddies {
        if let Some(a) = &b.audit {
            m.sample("pastiche_buddy_audit_failures_total", &[("buddy", &b.addr)], a.failures as f64);
        }
    }
    m.family("pastiche_buddy_last_audit_timestamp_seconds", "gauge", "When the buddy was last audited (Unix seconds).");
    for b in &o.buddies {
        if let Some(a) = &b.audit {
            m.sample("pastiche_buddy_last_audit_timestamp_seconds", &[("buddy", &b.addr)], a.last_audit as f64);
        }
    }
    m.family("pastiche_client_used_bytes", "gauge", "Bytes a client box stores here.");
    for c in &o.clients {
        m.sample("pastiche_client_used_bytes", &[("client", &c.key)], c.used_bytes as f64);
    }
    m.family("pastiche_client_quota_bytes", "gauge", "Bytes a client box may store here.");
    for c in &o.clients {
        m.sample("pastiche_client_quota_bytes", &[("client", &c.key)], c.quota_bytes as f64);
    }
    m.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
