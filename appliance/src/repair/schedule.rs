//! The daemon's own local checks, per `[check]` ([`CheckConfig`]): every
//! `interval_seconds` the store's index is checked whole and a random
//! `read_data_percent` of the chunks opened end to end; a failed check is
//! followed by a repair from the buddies ([`super::run`], reading every
//! chunk, since the sample only proves that something is wrong). The
//! outcome is logged, kept in `DATA/local-check.json` and shown on the
//! status board. One thread, asleep between checks; it ends when the daemon
//! stops.

use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::record::{self, LocalCheckRecord, RepairRecord};
use crate::check::{self, ReadData};
use crate::config::check::CheckConfig;
use crate::daemon::status::StatusBoard;
use crate::progress::{Mode, Progress};
use crate::repo::SharedBox;

/// Starts the checking thread of a daemon.
pub fn spawn(
    shared: Arc<SharedBox>,
    board: Arc<StatusBoard>,
    config: CheckConfig,
    threads: usize,
) -> std::io::Result<JoinHandle<()>> {
    thread::Builder::new().name("pastiche-check".into()).spawn(move || run(&shared, &board, &config, threads))
}

/// Puts the last record on the status board.
fn show(shared: &SharedBox, board: &StatusBoard) {
    if let Ok(record) = record::load(&shared.repo().dir) {
        board.update(|r| r.local_check = record);
    }
}

fn run(shared: &SharedBox, board: &StatusBoard, config: &CheckConfig, threads: usize) {
    show(shared, board);
    if !config.enabled {
        return;
    }
    let interval = Duration::from_secs(config.interval_seconds.max(1));
    let mut next = Instant::now() + interval;
    loop {
        if !board.sleep_until(next) {
            return;
        }
        next = Instant::now() + interval;
        let previous = record::load(&shared.repo().dir).ok().flatten();
        let rec = check_and_repair(shared, board, config, threads, previous);
        if let Err(e) = record::save(&shared.repo().dir, &rec) {
            board.event(format!("cannot keep the local check's record: {e:#}"));
        }
        show(shared, board);
    }
}

/// One local check, and the repair after it if it failed; every step is
/// an event on the board. `previous` is the last record.
pub fn check_and_repair(
    shared: &SharedBox,
    board: &StatusBoard,
    config: &CheckConfig,
    threads: usize,
    previous: Option<LocalCheckRecord>,
) -> LocalCheckRecord {
    let read = match config.read_data_percent {
        p if p <= 0.0 => ReadData::None,
        p if p >= 100.0 => ReadData::All,
        p => ReadData::Subset(p),
    };
    let progress = Progress::start(Mode::Quiet, "check");
    let checked = check::run(&shared.read(), read, threads, &progress);
    progress.finish();
    let found = match checked {
        Ok(c) if c.problems.is_empty() => return LocalCheckRecord::after(previous, 0),
        Ok(c) => c,
        Err(e) => {
            board.event(format!("local check could not run: {e:#}"));
            return LocalCheckRecord::after(previous, 1)
                .with_repair(RepairRecord::failed(format!("the check could not run: {e:#}")));
        }
    };
    let rec = LocalCheckRecord::after(previous, found.problems.len() as u64);
    board.event(format!(
        "local check FAILED: {} problems, {} files affected{}",
        found.problems.len(),
        found.affected_files.len(),
        if config.repair { "; repairing from the buddies" } else { "" }
    ));
    if !config.repair {
        return rec;
    }
    let progress = Progress::start(Mode::Quiet, "repair");
    let repaired = super::run(&shared.write(), ReadData::All, threads, &progress);
    progress.finish();
    let repair = match repaired {
        Ok(outcome) => RepairRecord::of(&outcome),
        Err(e) => RepairRecord::failed(format!("{e:#}")),
    };
    board.event(format!("local repair: {}", repair.summary()));
    rec.with_repair(repair)
}
