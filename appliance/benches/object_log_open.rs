//! How long opening a box's object log takes when it is large: reading it
//! whole, against reading its index checkpoint and the log after it.
//!
//! Writes `OBJECT_LOG_MB` MB (default 512) of 16 KiB objects, 256 per
//! transaction, to a log in `OBJECT_LOG_DIR` (default a temporary
//! directory), saves its checkpoint, then opens it five times each way
//! and prints the medians: with the files in the page cache, and with
//! them dropped from it before each open (as after a reboot, or on a NAS
//! whose cache holds other things).
//!
//! `cargo bench -p pastiche-appliance --bench object_log_open`

use std::time::{Duration, Instant};

use pastiche::meta::log::ObjectLog;
use pastiche::meta::object::ObjectName;

const OBJECT: usize = 16 * 1024;
const PER_TRANSACTION: usize = 256;

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// Asks the kernel to drop the cached pages of `path`, if it exists.
fn uncache(path: &std::path::Path) {
    if let Ok(file) = std::fs::File::open(path) {
        let _ = rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed);
    }
}

fn opens(path: &std::path::Path, cold: bool) -> Duration {
    median(
        (0..5)
            .map(|_| {
                if cold {
                    uncache(path);
                    uncache(&path.with_extension("idx"));
                }
                let started = Instant::now();
                let log = ObjectLog::open(path).expect("the log opens");
                let took = started.elapsed();
                drop(log);
                took
            })
            .collect(),
    )
}

fn main() {
    let mb: usize = std::env::var("OBJECT_LOG_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(512);
    let base = std::env::var_os("OBJECT_LOG_DIR").map_or_else(std::env::temp_dir, Into::into);
    let dir = tempfile::tempdir_in(base).expect("a scratch directory");
    let path = dir.path().join("objects.log");
    let objects = mb * 1_000_000 / OBJECT;
    let log = ObjectLog::create(&path).expect("a new log");
    let mut n = 0u64;
    while (n as usize) < objects {
        let puts: Vec<_> = (0..PER_TRANSACTION)
            .map(|_| {
                n += 1;
                let mut name = [0u8; 20];
                name[..8].copy_from_slice(&n.to_le_bytes());
                let body: Vec<u8> = n.to_le_bytes().iter().cycle().take(OBJECT).copied().collect();
                (ObjectName(name), body)
            })
            .collect();
        log.apply_if(&puts, &[], false, None).expect("a write");
    }
    assert!(log.checkpoint_if_stale().expect("a checkpoint"), "a log this large gets a checkpoint");
    drop(log);
    let checkpoint = path.with_extension("idx");
    let log_bytes = std::fs::metadata(&path).expect("the log").len();
    let checkpoint_bytes = std::fs::metadata(&checkpoint).expect("the checkpoint").len();
    let from_checkpoint = [opens(&path, false), opens(&path, true)];
    std::fs::remove_file(&checkpoint).expect("the checkpoint removed");
    let whole = [opens(&path, false), opens(&path, true)];
    println!("{n} objects, log {:.1} MB, checkpoint {:.2} MB", log_bytes as f64 / 1e6, checkpoint_bytes as f64 / 1e6);
    for (i, cache) in ["cached", "uncached"].iter().enumerate() {
        println!(
            "  {cache}: open reading the whole log {:.1} ms, from the checkpoint {:.2} ms ({:.0}x)",
            whole[i].as_secs_f64() * 1e3,
            from_checkpoint[i].as_secs_f64() * 1e3,
            whole[i].as_secs_f64() / from_checkpoint[i].as_secs_f64(),
        );
    }
}
