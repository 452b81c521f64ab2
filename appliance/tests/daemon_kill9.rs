//! The daemon's crash promise: `kill -9` of `pastiche daemon` at a random
//! instant of a scheduled backup, of a buddy commit it serves, and of a
//! scheduled prune, 20 rounds each, leaves boxes that `check --read-data`
//! passes, and the final restore is exact.
//!
//! Kill delays are drawn between 0 and 1.2 times the job's measured length,
//! so most kills land inside the job. `PASTICHE_KILL9_SEED=<seed>` replays
//! a run's draws.

mod common;
mod daemon_support;

use std::ffi::OsStr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use daemon_support::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const ROUNDS: usize = 20;

fn rng() -> StdRng {
    let seed: u64 = std::env::var("PASTICHE_KILL9_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    eprintln!("seed {seed} (PASTICHE_KILL9_SEED)");
    StdRng::seed_from_u64(seed)
}

/// A tree of `files` random files of about `size` bytes each.
fn tree(root: &Path, files: usize, size: usize, rng: &mut StdRng) {
    for i in 0..files {
        write_random(&root.join(format!("d{}/f{i}.bin", i % 3)), rng.gen_range(size / 2..size * 3 / 2), rng);
    }
}

/// Changes part of the tree so the next backup has new data to store:
/// enough that the backup lasts several times the 20 ms the test polls the
/// daemon's log at (with 4-8 MB a round's backup took 30 ms, and most
/// kills, aimed from when the test saw it start, came after it was done).
fn churn(root: &Path, round: usize, rng: &mut StdRng) {
    write_random(&root.join(format!("new/round{round}.bin")), rng.gen_range(16_000_000..32_000_000), rng);
    let _ = std::fs::remove_file(root.join(format!("new/round{}.bin", round.wrapping_sub(2))));
}

/// A random delay up to 1.2 times `typical`.
fn delay(typical: Duration, rng: &mut StdRng) -> Duration {
    typical.mul_f64(rng.gen_range(0.0..1.2))
}

/// Restores the latest snapshot of `b` and compares it with `src`.
fn assert_latest_restores(b: &TestBox, src: &Path, target: &Path, what: &str) {
    b.restore("latest", target);
    assert_tree_matches(&manifest(src), &restored_path(target, src), what);
}

#[test]
fn kill9_during_scheduled_backups() {
    let mut rng = rng();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    tree(&src, 12, 1_000_000, &mut rng);
    let a = TestBox::init(tmp.path().join("A"));
    configure(
        &a,
        &format!("[backup]\npaths = [{}]\nschedule = \"every 1s\"\n[serve]\nlisten = [\"127.0.0.1:0\"]\n", q(&src)),
    );
    // One whole scheduled backup of the tree, then one of a round's churn
    // alone, to measure how long a round's backup takes (the first one,
    // of the whole tree, takes several times longer).
    let d = Daemon::start(&a, "A", &["--threads", "1"]);
    Daemon::wait_status(&a, 60, "a scheduled backup", |s| s["last_result"]["backup"]["ok"] == true);
    d.kill9();
    churn(&src, 0, &mut rng);
    let d = Daemon::start(&a, "A", &["--threads", "1"]);
    let s = Daemon::wait_status(&a, 60, "a scheduled backup", |s| s["last_result"]["backup"].is_object());
    assert_eq!(s["last_result"]["backup"]["ok"], true, "{s:#}");
    let typical = Duration::from_secs_f64(s["last_result"]["backup"]["seconds"].as_f64().unwrap().max(0.05));
    d.kill9();
    let mut inside = 0;
    for round in 1..=ROUNDS {
        churn(&src, round, &mut rng);
        let d = Daemon::start(&a, "A", &["--threads", "1"]);
        wait_for(60, "the scheduled backup to start", || d.logged("backup started"));
        std::thread::sleep(delay(typical, &mut rng));
        inside += usize::from(!d.logged("backup done"));
        d.kill9();
        a.check_read_data();
    }
    eprintln!("{inside} of {ROUNDS} kills landed inside a backup");
    assert!(inside >= ROUNDS / 4, "only {inside} of {ROUNDS} kills landed inside a backup");
    let d = Daemon::start(&a, "A", &[]);
    wait_for(60, "a whole backup after the crashes", || d.logged("backup done"));
    d.kill9();
    a.check_read_data();
    assert_latest_restores(&a, &src, &tmp.path().join("restore"), "after 20 kills mid-backup");
}

#[test]
fn kill9_of_a_buddy_daemon_during_commits() {
    let mut rng = rng();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    tree(&src, 12, 1_000_000, &mut rng);
    let a = TestBox::init(tmp.path().join("A"));
    let b = TestBox::init(tmp.path().join("B"));
    let addr = free_addr();
    buddy::pair_offline(&a, &b, &addr);
    let sync = |a: &TestBox| {
        let mut c = a.cmd(["sync"]);
        c.stdout(Stdio::null()).stderr(Stdio::null());
        c.spawn().unwrap()
    };
    // One whole sync, to measure how long one takes.
    churn(&src, 0, &mut rng);
    let _ = a.run([OsStr::new("backup"), src.as_os_str()]);
    let d = Daemon::start(&b, "B", &["--listen", &addr]);
    let t = Instant::now();
    assert!(sync(&a).wait().unwrap().success());
    let typical = t.elapsed();
    d.kill9();
    let mut inside = 0;
    for round in 1..=ROUNDS {
        churn(&src, round, &mut rng);
        // B is down: the backup is saved locally and shipped by the sync below.
        let _ = a.run([OsStr::new("backup"), src.as_os_str()]);
        let d = Daemon::start(&b, "B", &["--listen", &addr]);
        let mut child = sync(&a);
        std::thread::sleep(delay(typical, &mut rng));
        inside += usize::from(child.try_wait().unwrap().is_none());
        d.kill9();
        let _ = child.wait();
        b.check_read_data();
    }
    eprintln!("{inside} of {ROUNDS} kills landed inside a sync");
    assert!(inside >= ROUNDS / 4, "only {inside} of {ROUNDS} kills landed inside a sync");
    let d = Daemon::start(&b, "B", &["--listen", &addr]);
    let r = a.run(["sync"]).ok();
    assert!(r.stdout.contains("synced to"), "{}", r.describe());
    let target = tmp.path().join("restore");
    restore_from_buddy(&a, &addr, &target);
    assert_tree_matches(&manifest(&src), &restored_path(&target, &src), "restored from B after 20 kills");
    d.kill9();
    b.check_read_data();
}

#[test]
fn kill9_during_scheduled_prunes() {
    let mut rng = rng();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    tree(&src, 12, 1_000_000, &mut rng);
    let a = TestBox::init(tmp.path().join("A"));
    configure(&a, "[keep]\nlast = 1\n[prune]\nschedule = \"every 1s\"\n[serve]\nlisten = [\"127.0.0.1:0\"]\n");
    let prepare = |round: usize, rng: &mut StdRng| {
        // Two snapshots with data the older one alone holds: the prune forgets
        // it and compacts packs.
        churn(&src, 2 * round, rng);
        a.backup(&src);
        churn(&src, 2 * round + 1, rng);
        a.backup(&src);
    };
    prepare(0, &mut rng);
    let d = Daemon::start(&a, "A", &[]);
    let s = Daemon::wait_status(&a, 60, "a scheduled prune", |s| s["last_result"]["prune"].is_object());
    assert_eq!(s["last_result"]["prune"]["ok"], true, "{s:#}");
    let typical = Duration::from_secs_f64(s["last_result"]["prune"]["seconds"].as_f64().unwrap().max(0.02));
    d.kill9();
    let mut inside = 0;
    for round in 1..=ROUNDS {
        prepare(round, &mut rng);
        let d = Daemon::start(&a, "A", &[]);
        wait_for(60, "the scheduled prune to start", || d.logged("prune started"));
        std::thread::sleep(delay(typical, &mut rng));
        inside += usize::from(!d.logged("prune done"));
        d.kill9();
        a.check_read_data();
    }
    eprintln!("{inside} of {ROUNDS} kills landed inside a prune");
    assert!(inside >= ROUNDS / 4, "only {inside} of {ROUNDS} kills landed inside a prune");
    let d = Daemon::start(&a, "A", &[]);
    wait_for(60, "a whole prune after the crashes", || d.logged("prune done"));
    d.kill9();
    a.check_read_data();
    assert_latest_restores(&a, &src, &tmp.path().join("restore"), "after 20 kills mid-prune");
}
