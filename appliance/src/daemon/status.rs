//! What the daemon is doing, observable from any thread: the job running
//! now with its live progress, the queue, when each job runs next, how each
//! ended last, and recent events. `pastiche status` and (later) the HTTP
//! status page read [`StatusBoard::report`]; the scheduler writes.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::progress::Progress;

/// Events kept for `status`.
const EVENTS_KEPT: usize = 50;

/// The daemon's own jobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// A backup of the configured paths.
    Backup,
    /// Shipping the newest state to the buddies.
    Ship,
    /// Retention (forget by the keep policy) and prune.
    Prune,
}

impl JobKind {
    /// Its name in status output and logs.
    pub fn name(self) -> &'static str {
        match self {
            JobKind::Backup => "backup",
            JobKind::Ship => "ship",
            JobKind::Prune => "prune",
        }
    }
}

/// The job running now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CurrentJob {
    /// Which.
    pub kind: JobKind,
    /// When it started (RFC 3339).
    pub started: String,
    /// Seconds it has run.
    pub seconds: f64,
    /// Files done so far.
    pub files_done: u64,
    /// Files to do, 0 if not known yet.
    pub total_files: u64,
    /// Bytes done so far.
    pub bytes_done: u64,
    /// Bytes to do, 0 if not known yet.
    pub total_bytes: u64,
    /// 0.0 to 1.0 when a total is known.
    pub fraction_done: Option<f64>,
}

/// How a job ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobResult {
    /// When it ended (RFC 3339).
    pub finished: String,
    /// Whether it did all it should.
    pub ok: bool,
    /// What it did, or why it failed.
    pub message: String,
    /// How long it ran.
    pub seconds: f64,
}

/// Something that happened, for the recent-events list.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// When (RFC 3339).
    pub time: String,
    /// What.
    pub text: String,
}

/// Everything `pastiche status` shows (and the JSON it prints).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    /// The box's name.
    pub name: String,
    /// The box's public key (hex).
    pub public_key: String,
    /// The daemon's process id.
    pub pid: u32,
    /// Seconds since the daemon started.
    pub uptime_seconds: f64,
    /// Addresses the buddy server listens on.
    pub listening: Vec<String>,
    /// The configuration file, if any.
    pub config: Option<String>,
    /// The job running now.
    pub current: Option<CurrentJob>,
    /// Jobs waiting to run, in order.
    pub queued: Vec<JobKind>,
    /// When each scheduled job runs next (RFC 3339).
    pub next_run: BTreeMap<JobKind, String>,
    /// How each job ended last.
    pub last_result: BTreeMap<JobKind, JobResult>,
    /// Buddies that do not hold the newest snapshot yet.
    pub shipping_pending: Vec<String>,
    /// The buddy list: address, pinned key, last epoch and snapshot.
    pub buddies: Vec<crate::sync::BuddyEntry>,
    /// Buddies that dropped our data on their own (a space crisis, a
    /// decommission) and do not hold our full copy again yet, by address.
    #[serde(default)]
    pub dropped_by: BTreeMap<String, crate::sync::notice::NoticeSeen>,
    /// Recent events, oldest first.
    pub events: Vec<Event>,
    /// Whether the daemon is stopping.
    pub stopping: bool,
    /// Is the data safe: the verdict of [`crate::health`], kept current by
    /// the daemon's monitor.
    #[serde(default)]
    pub health: Option<crate::health::Health>,
    /// Where the status page is served (`http://ADDR/`), if it is.
    #[serde(default)]
    pub http: Option<String>,
    /// Each buddy's audit record, by address (`DATA/audits.json`).
    #[serde(default)]
    pub audits: BTreeMap<String, crate::audit::record::AuditRecord>,
    /// The last local check and the repair after it (`DATA/local-check.json`).
    #[serde(default)]
    pub local_check: Option<crate::repair::record::LocalCheckRecord>,
}

struct Running {
    kind: JobKind,
    started: String,
    progress: Progress,
}

struct Inner {
    report: StatusReport,
    running: Option<Running>,
    events: VecDeque<Event>,
}

/// The shared, thread-safe status of a daemon.
pub struct StatusBoard {
    started: Instant,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for StatusBoard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusBoard").finish_non_exhaustive()
    }
}

/// Now, as RFC 3339 in the box's time zone.
pub fn now_text() -> String {
    jiff::ZonedDateTime::now().timestamp().to_string()
}

impl StatusBoard {
    /// A board for the daemon of box `name`.
    pub fn new(name: &str, public_key: &str) -> StatusBoard {
        let report = StatusReport {
            name: name.to_string(),
            public_key: public_key.to_string(),
            pid: std::process::id(),
            ..StatusReport::default()
        };
        StatusBoard {
            started: Instant::now(),
            inner: Mutex::new(Inner { report, running: None, events: VecDeque::new() }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking job must not take the status page down with it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the static parts (listen addresses, config file, pending
    /// shipping, queue, next runs).
    pub fn update(&self, f: impl FnOnce(&mut StatusReport)) {
        f(&mut self.lock().report);
    }

    /// Records an event (and logs it).
    pub fn event(&self, text: impl Into<String>) {
        let text = text.into();
        tracing::info!("{text}");
        let mut inner = self.lock();
        if inner.events.len() == EVENTS_KEPT {
            inner.events.pop_front();
        }
        inner.events.push_back(Event { time: now_text(), text });
    }

    /// A job starts; `progress` is its live counters.
    pub fn job_started(&self, kind: JobKind, progress: &Progress) {
        self.event(format!("{} started", kind.name()));
        self.lock().running = Some(Running { kind, started: now_text(), progress: progress.clone() });
    }

    /// The running job ended.
    pub fn job_finished(&self, kind: JobKind, ok: bool, message: String, seconds: f64) {
        self.event(format!("{} {}: {message}", kind.name(), if ok { "done" } else { "failed" }));
        let mut inner = self.lock();
        inner.running = None;
        inner.report.last_result.insert(kind, JobResult { finished: now_text(), ok, message, seconds });
    }

    /// Whether the daemon is stopping (without building a whole report).
    pub fn is_stopping(&self) -> bool {
        self.lock().report.stopping
    }

    /// Sleeps until `deadline`, waking each second to see whether the
    /// daemon is stopping; returns false if it is.
    pub fn sleep_until(&self, deadline: std::time::Instant) -> bool {
        loop {
            if self.is_stopping() {
                return false;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return true;
            }
            std::thread::sleep(left.min(std::time::Duration::from_secs(1)));
        }
    }

    /// The status now.
    pub fn report(&self) -> StatusReport {
        let inner = self.lock();
        let mut r = inner.report.clone();
        r.uptime_seconds = self.started.elapsed().as_secs_f64();
        r.events = inner.events.iter().cloned().collect();
        r.current = inner.running.as_ref().map(|run| {
            let s = run.progress.status();
            CurrentJob {
                kind: run.kind,
                started: run.started.clone(),
                seconds: s.elapsed.as_secs_f64(),
                files_done: s.files_done,
                total_files: s.total_files,
                bytes_done: s.bytes_done,
                total_bytes: s.total_bytes,
                fraction_done: s.fraction_done(),
            }
        });
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Mode;

    #[test]
    fn a_job_is_seen_with_its_progress_then_its_result() {
        let board = StatusBoard::new("a.example.org", "00");
        let p = Progress::start(Mode::Quiet, "backup");
        board.job_started(JobKind::Backup, &p);
        p.set_totals(10, 1000);
        p.bytes_done(250);
        let now = board.report();
        let cur = now.current.expect("a current job");
        assert_eq!((cur.kind, cur.bytes_done, cur.total_bytes), (JobKind::Backup, 250, 1000));
        assert_eq!(cur.fraction_done, Some(0.25));
        board.job_finished(JobKind::Backup, true, "snapshot 1234abcd".into(), 1.5);
        let after = board.report();
        assert!(after.current.is_none());
        assert!(after.last_result[&JobKind::Backup].ok);
        assert_eq!(after.events.len(), 2);
        // The report travels as JSON (control socket, HTTP API).
        let back: StatusReport = serde_json::from_str(&serde_json::to_string(&after).unwrap()).unwrap();
        assert_eq!(back.last_result, after.last_result);
        for i in 0..(EVENTS_KEPT + 10) {
            board.event(format!("event {i}"));
        }
        assert_eq!(board.report().events.len(), EVENTS_KEPT);
    }
}
