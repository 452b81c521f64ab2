//! The daemon's job queue and scheduler: one worker thread runs the
//! scheduled jobs (backup, shipping, retention and prune) one after the
//! other; "back up now" and friends put a job in the queue.
//!
//! Shipping follows every backup; a failed shipping is retried with
//! exponential backoff ([`SHIP_RETRY_FIRST`] doubling up to
//! [`SHIP_RETRY_MAX`]); at start the daemon ships whatever a previous run
//! left pending.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use jiff::ZonedDateTime;

use super::status::{JobKind, StatusBoard};
use crate::config::LiveConfig;
use crate::engine::{self, ship, snapshots, BackupOptions};
use crate::progress::{human_bytes, Mode, Progress};
use crate::repo::SharedBox;

/// The first retry of a failed shipping waits this long.
pub const SHIP_RETRY_FIRST: Duration = Duration::from_secs(30);
/// Retries of a failed shipping wait at most this long.
pub const SHIP_RETRY_MAX: Duration = Duration::from_secs(3600);
/// The scheduler looks at the clock at least this often (the wall clock may
/// jump).
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// Jobs waiting to run, and the stop request.
#[derive(Debug, Default)]
pub struct JobQueue {
    inner: Mutex<QueueInner>,
    wake: Condvar,
}

#[derive(Debug, Default)]
struct QueueInner {
    queued: VecDeque<JobKind>,
    stopping: bool,
    /// The schedule changed: the worker looks at it again now.
    nudged: bool,
}

/// What waiting on the queue gave.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Job(JobKind),
    Timeout,
    Stop,
}

impl JobQueue {
    fn lock(&self) -> MutexGuard<'_, QueueInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks for `kind` to run; a job already waiting is not queued twice.
    /// Returns whether it was queued.
    pub fn request(&self, kind: JobKind) -> bool {
        let mut q = self.lock();
        if q.stopping || q.queued.contains(&kind) {
            return false;
        }
        q.queued.push_back(kind);
        self.wake.notify_all();
        true
    }

    /// The jobs waiting, in order.
    pub fn queued(&self) -> Vec<JobKind> {
        self.lock().queued.iter().copied().collect()
    }

    /// Asks the worker to stop after the job in hand.
    pub fn stop(&self) {
        self.lock().stopping = true;
        self.wake.notify_all();
    }

    /// Wakes the worker to look at the schedule again (it was reloaded).
    pub fn nudge(&self) {
        self.lock().nudged = true;
        self.wake.notify_all();
    }

    /// Whether a stop was asked for.
    pub fn is_stopping(&self) -> bool {
        self.lock().stopping
    }

    fn next(&self, timeout: Duration) -> Next {
        let deadline = Instant::now() + timeout;
        let mut q = self.lock();
        loop {
            if q.stopping {
                return Next::Stop;
            }
            if let Some(kind) = q.queued.pop_front() {
                return Next::Job(kind);
            }
            if std::mem::take(&mut q.nudged) {
                return Next::Timeout;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Next::Timeout;
            }
            q = self.wake.wait_timeout(q, left).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}

/// Runs the scheduled jobs of one box.
pub struct Scheduler {
    /// The configuration (read again at every turn: a reload applies at
    /// once).
    pub config: Arc<LiveConfig>,
    /// The box.
    pub shared: Arc<SharedBox>,
    /// Where progress and results are shown.
    pub board: Arc<StatusBoard>,
    /// Requests from clients and from the schedule.
    pub queue: Arc<JobQueue>,
    /// Worker threads of a backup.
    pub threads: usize,
}

/// When a failed shipping is retried.
#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
    retry_at: Option<Instant>,
}

impl Backoff {
    fn failed(&mut self) -> Duration {
        let wait = SHIP_RETRY_FIRST.saturating_mul(1 << self.failures.min(16)).min(SHIP_RETRY_MAX);
        self.failures += 1;
        self.retry_at = Some(Instant::now() + wait);
        wait
    }

    fn succeeded(&mut self) {
        *self = Backoff::default();
    }
}

fn millis_until(from: &ZonedDateTime, to: &ZonedDateTime) -> u64 {
    u64::try_from(to.timestamp().as_millisecond() - from.timestamp().as_millisecond()).unwrap_or(0)
}

impl Scheduler {
    /// Runs until the queue is stopped; the job in hand is finished first.
    pub fn run(self) {
        let started = ZonedDateTime::now();
        let mut last_backup = started.clone();
        let mut last_prune = started;
        let mut backoff = Backoff::default();
        self.refresh_buddies();
        let pending = ship::pending(&self.shared.read());
        match pending {
            Ok(p) if !p.is_empty() => {
                self.board.event(format!("shipping pending to {} from an earlier run: resuming", p.join(", ")));
                self.queue.request(JobKind::Ship);
            }
            Ok(_) => {}
            Err(e) => self.board.event(format!("cannot tell what shipping is pending: {e:#}")),
        }
        loop {
            let config = self.config.get();
            let now = ZonedDateTime::now();
            let next_backup = config.backup.schedule.next_run(&last_backup, &now);
            let next_prune = config.prune.schedule.next_run(&last_prune, &now);
            if next_backup.as_ref().is_some_and(|t| *t <= now) {
                self.queue.request(JobKind::Backup);
                last_backup = now.clone();
            }
            if next_prune.as_ref().is_some_and(|t| *t <= now) {
                self.queue.request(JobKind::Prune);
                last_prune = now.clone();
            }
            if backoff.retry_at.is_some_and(|t| t <= Instant::now()) {
                backoff.retry_at = None;
                self.queue.request(JobKind::Ship);
            }
            let mut sleep = MAX_SLEEP;
            let next_backup = config.backup.schedule.next_run(&last_backup, &now);
            let next_prune = config.prune.schedule.next_run(&last_prune, &now);
            self.board.update(|r| {
                r.next_run.clear();
                for (kind, at) in [(JobKind::Backup, &next_backup), (JobKind::Prune, &next_prune)] {
                    if let Some(at) = at {
                        r.next_run.insert(kind, at.timestamp().to_string());
                        sleep = sleep.min(Duration::from_millis(millis_until(&now, at)));
                    }
                }
                if let Some(at) = backoff.retry_at {
                    let wait = at.saturating_duration_since(Instant::now());
                    sleep = sleep.min(wait);
                    if let Ok(t) = now.checked_add(wait) {
                        r.next_run.insert(JobKind::Ship, t.timestamp().to_string());
                    }
                }
                r.queued = self.queue.queued();
            });
            match self.queue.next(sleep) {
                Next::Stop => break,
                Next::Timeout => {}
                Next::Job(kind) => {
                    self.board.update(|r| r.queued = self.queue.queued());
                    let ok = self.run_job(kind);
                    match kind {
                        JobKind::Backup if ok && self.has_buddies() => {
                            self.queue.request(JobKind::Ship);
                        }
                        JobKind::Ship if ok => backoff.succeeded(),
                        JobKind::Ship => {
                            let wait = backoff.failed();
                            self.board.event(format!("shipping is retried in {}s", wait.as_secs()));
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    fn has_buddies(&self) -> bool {
        crate::sync::load_buddies(&self.shared.repo().dir).is_ok_and(|b| !b.is_empty())
    }

    /// Runs one job; returns whether it fully succeeded.
    fn run_job(&self, kind: JobKind) -> bool {
        let progress = Progress::start(Mode::Quiet, kind.name());
        self.board.job_started(kind, &progress);
        let t = Instant::now();
        let outcome = match kind {
            JobKind::Backup => self.backup(&progress),
            JobKind::Ship => self.ship(&progress),
            JobKind::Prune => self.prune(),
        };
        progress.finish();
        if matches!(kind, JobKind::Backup | JobKind::Prune) {
            // The box stays open: the checkpoint its closing would save is
            // saved now, so a crash does not cost the next open a whole log.
            if let Err(e) = self.shared.read().meta.checkpoint_if_stale() {
                self.board.event(format!("cannot save the metadata log's checkpoint: {e:#}"));
            }
        }
        let (ok, message) = match outcome {
            Ok(r) => r,
            Err(e) => (false, format!("{e:#}")),
        };
        self.board.job_finished(kind, ok, message, t.elapsed().as_secs_f64());
        self.refresh_buddies();
        ok
    }

    /// Puts the buddy list and what is pending on the status board.
    fn refresh_buddies(&self) {
        let repo = self.shared.read();
        let (pending, buddies) = (ship::pending(&repo), crate::sync::load_buddies(&repo.dir));
        let dropped = buddies.as_ref().map_err(|_| ()).and_then(|b| match repo.meta.existing_database() {
            Ok(Some(db)) => crate::sync::notice::unsettled_by_addr(db, b).map_err(|_| ()),
            Ok(None) => Ok(Default::default()),
            Err(_) => Err(()),
        });
        self.board.update(|r| {
            if let Ok(p) = pending {
                r.shipping_pending = p;
            }
            if let Ok(d) = dropped {
                r.dropped_by = d;
            }
            if let Ok(b) = buddies {
                r.buddies = b;
            }
        });
    }

    fn backup(&self, progress: &Progress) -> anyhow::Result<(bool, String)> {
        let config = self.config.get();
        let b = &config.backup;
        let opts = BackupOptions {
            paths: b.paths.clone(),
            excludes: b.exclude.clone(),
            one_file_system: b.one_file_system,
            threads: self.threads,
        };
        let result = engine::backup::run(&self.shared.write(), &opts, progress)?;
        let s = &result.snapshot.summary;
        let mut msg = format!(
            "snapshot {}: {} files, {} new, {} changed; added {}",
            &result.snapshot.id_hex()[..8],
            s.files,
            s.files_new,
            s.files_changed,
            human_bytes(s.bytes_added)
        );
        if !result.warnings.is_empty() {
            msg.push_str(&format!("; {} entries could not be read", result.warnings.len()));
        }
        Ok((result.warnings.is_empty(), msg))
    }

    fn ship(&self, progress: &Progress) -> anyhow::Result<(bool, String)> {
        let report = ship::ship_all(&self.shared.write(), |_| progress.clone())?;
        let parts: Vec<String> = report
            .buddies
            .iter()
            .map(|b| match (&b.report, &b.error) {
                (Some(r), _) => format!("{}: epoch {}, {} sent", b.addr, r.epoch, human_bytes(r.bytes_sent)),
                (_, Some(e)) => format!("{}: {e}", b.addr),
                _ => b.addr.clone(),
            })
            .collect();
        let text = if parts.is_empty() { "no buddies".to_string() } else { parts.join("; ") };
        Ok((report.all_ok(), text))
    }

    fn prune(&self) -> anyhow::Result<(bool, String)> {
        let mut msg = String::new();
        let keep = self.config.get().keep.clone();
        if !keep.is_empty() {
            let forgot = snapshots::forget(&self.shared.write(), &keep, false)?;
            msg = format!("forgot {} snapshots; ", forgot.removed);
        }
        let s = engine::prune::run(&self.shared.reclaim())?;
        msg.push_str(&format!(
            "pruned {} objects, released {} chunks, freed {}",
            s.objects_deleted,
            s.chunks_released,
            human_bytes(s.bytes_freed)
        ));
        Ok((true, msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_dedups_and_stops() {
        let q = JobQueue::default();
        assert!(q.request(JobKind::Backup));
        assert!(!q.request(JobKind::Backup), "a waiting job is not queued twice");
        assert!(q.request(JobKind::Ship));
        assert_eq!(q.queued(), [JobKind::Backup, JobKind::Ship]);
        assert_eq!(q.next(Duration::ZERO), Next::Job(JobKind::Backup));
        assert_eq!(q.next(Duration::ZERO), Next::Job(JobKind::Ship));
        assert_eq!(q.next(Duration::from_millis(10)), Next::Timeout);
        q.nudge();
        assert_eq!(q.next(Duration::from_secs(60)), Next::Timeout, "a nudge wakes the worker at once");
        q.stop();
        assert_eq!(q.next(Duration::from_secs(60)), Next::Stop);
        assert!(!q.request(JobKind::Prune));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let mut b = Backoff::default();
        let waits: Vec<u64> = (0..10).map(|_| b.failed().as_secs()).collect();
        assert_eq!(waits, [30, 60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]);
        b.succeeded();
        assert_eq!(b.failed(), SHIP_RETRY_FIRST);
    }
}
