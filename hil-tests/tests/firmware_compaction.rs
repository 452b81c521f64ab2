//! Log compaction on the firmware buddy, in QEMU, under power cuts: two
//! boxes back up to the buddy, one of them leaves and has its data dropped
//! (`pastiche buddy remove --drop`), which leaves its chunks as garbage in
//! the buddy's log. Booted with compaction on, the buddy compacts; QEMU is
//! killed (SIGKILL: nothing flushed after it) at a random point of that
//! compaction, each time on a fresh copy of the prepared disk, until 20
//! cuts have landed inside a compaction.
//! After every cut the buddy boots again, compacts to the end, the log is
//! smaller by at least the dropped box's data, and the box that stayed
//! restores its tree from the buddy byte for byte.
//!
//! The compaction is paced (`compact_kib=4`: 4 KiB of copying per
//! millisecond) so that it lasts seconds and the cuts spread over it; a
//! first, uncut run measures how long it takes.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use hil_tests::{
    assert_same_tree, build_pastiche, free_port, make_tree, pastiche, require_qemu, run_ok, Firmware, Qemu,
    PAIRING_SECRET,
};

/// Cuts during compaction.
const RUNS: usize = 20;
/// Boot settings for the runs: compaction on, slow enough to be cut.
const PACED: &str = "quota_mib=512 compact=on compact_kib=4";

/// The number after `name` in the first log line containing `needle`.
fn logged(qemu: &Qemu, needle: &str, name: &str) -> Option<u64> {
    let line = qemu.lines().into_iter().find(|l| l.contains(needle))?;
    line.split(name).nth(1)?.split(' ').next()?.parse().ok()
}

/// [`logged`] in a log file of a QEMU that is gone.
fn logged_in(log: &Path, fw: &Firmware, needle: &str, name: &str) -> u64 {
    let lines = hil_tests::decode_log(&fw.elf, &fs::read(log).unwrap()).unwrap();
    let line = lines.into_iter().find(|l| l.contains(needle)).expect(needle);
    line.split(name).nth(1).and_then(|v| v.split(' ').next()?.parse().ok()).expect(name)
}

/// Restores box `data`'s latest snapshot from the buddy and compares it
/// with `tree`.
fn restore_exactly(bin: &Path, data: &Path, tree: &Path, target: &Path, qemu: &Qemu) {
    let _ = fs::remove_dir_all(target);
    run_ok(
        pastiche(bin, data)
            .args(["restore", "latest", "--target"])
            .arg(target)
            .args(["--from-buddy", &format!("127.0.0.1:{}", qemu.port)]),
        qemu,
    );
    assert_same_tree(tree, &target.join(tree.strip_prefix("/").unwrap()));
}

/// Boots `disk` paced and lets the compaction (if the log still needs one)
/// run to its end; then `check` runs. Returns the ring bytes the log takes
/// in the end.
fn boot_and_compact(
    fw: &Firmware,
    disk: &Path,
    log: &Path,
    port: u16,
    check: &dyn Fn(&Qemu),
    report_stack: bool,
) -> u64 {
    let mut qemu = Qemu::start_with(fw, disk, log, port, PACED).expect("boots");
    // The first compaction step comes with the main loop's first
    // millisecond, long before DHCP answers.
    qemu.wait_for("net: ", Duration::from_secs(60)).expect("serves");
    let mut used = logged(&qemu, "store: ", "log_used=").expect("boot line");
    if qemu.lines().iter().any(|l| l.contains("compaction: started")) {
        qemu.wait_for("compaction: done", Duration::from_secs(300)).expect("compaction ends");
        used = logged(&qemu, "compaction: done", "after=").unwrap();
    }
    check(&qemu);
    if report_stack {
        // The stack high-water mark, with a compaction and a restore in it.
        let before = qemu.lines().len();
        let t = Instant::now();
        let status = loop {
            if let Some(l) = qemu.lines().into_iter().skip(before).find(|l| l.contains("status: ")) {
                break l;
            }
            assert!(t.elapsed() < Duration::from_secs(30), "no status line");
            std::thread::sleep(Duration::from_millis(200));
        };
        eprintln!("firmware after a compaction and a restore: {status}");
    }
    let lines = qemu.lines();
    assert!(!lines.iter().any(|l| l.contains("panic") || l.contains("halted")), "{}", lines.join("\n"));
    used
}

#[test]
fn compaction_cut_at_random_points_loses_nothing_and_reclaims_the_space() {
    require_qemu!();
    let fw = Firmware::build().expect("firmware builds");
    let bin = build_pastiche().expect("pastiche builds");
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let prepared = tmp.path().join("prepared.img");
    let (tree_a, box_a) = (tmp.path().join("tree-a"), tmp.path().join("box-a"));
    let (tree_b, box_b) = (tmp.path().join("tree-b"), tmp.path().join("box-b"));
    make_tree(&tree_a, 3, 0xa11ce);
    make_tree(&tree_b, 6, 0xb0b);

    // Prepare, with compaction off: A and B back up, B leaves with a drop.
    {
        let qemu = Qemu::boot_with(&fw, &prepared, &tmp.path().join("prep.defmt"), port, "quota_mib=512 compact=off")
            .expect("boots");
        let buddy = format!("127.0.0.1:{port}");
        for (tree, data, name) in [(&tree_a, &box_a, "keep.example"), (&tree_b, &box_b, "leave.example")] {
            run_ok(pastiche(&bin, data).args(["init", "--name", name]), &qemu);
            run_ok(pastiche(&bin, data).args(["buddy", "add", &buddy, "--code", PAIRING_SECRET]), &qemu);
            run_ok(pastiche(&bin, data).arg("backup").arg(tree), &qemu);
        }
        run_ok(pastiche(&bin, &box_b).args(["buddy", "remove", &buddy, "--drop"]), &qemu);
        assert!(!qemu.lines().iter().any(|l| l.contains("compaction: ")), "compact=off compacted");
    }

    let target = tmp.path().join("out");
    let restores = |qemu: &Qemu| restore_exactly(&bin, &box_a, &tree_a, &target, qemu);
    // An uncut run: how long a compaction takes (from when the host sees
    // it start, as for the cuts below), and what it leaves.
    let disk = tmp.path().join("disk.img");
    fs::copy(&prepared, &disk).unwrap();
    let full = {
        let mut qemu = Qemu::start_with(&fw, &disk, &tmp.path().join("full.defmt"), port, PACED).expect("boots");
        qemu.wait_for("compaction: started", Duration::from_secs(60)).expect("compaction starts");
        let t = Instant::now();
        qemu.wait_for("compaction: done", Duration::from_secs(300)).expect("compaction ends");
        t.elapsed()
    };
    let before = logged_in(&tmp.path().join("full.defmt"), &fw, "compaction: started", "used=");
    let compacted = logged_in(&tmp.path().join("full.defmt"), &fw, "compaction: done", "after=");
    let longest = logged_in(&tmp.path().join("full.defmt"), &fw, "compaction: done", "longest_step_ms=");
    eprintln!(
        "an uncut compaction (paced at 4 KiB/ms) took {full:?}: log {before} -> {compacted} bytes; \
         its longest step held the main loop {longest} ms"
    );
    // The dropped box had 6 MiB of chunks.
    assert!(compacted + (5 << 20) < before, "compaction left {compacted} of {before} bytes");
    assert_eq!(boot_and_compact(&fw, &disk, &tmp.path().join("full2.defmt"), port, &restores, true), compacted);

    let seed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
    eprintln!("cut points from seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut cuts, mut attempts) = (0, 0);
    // Cuts at random points of the measured duration until RUNS landed
    // inside a compaction (one landing after the switch proves less).
    while cuts < RUNS {
        attempts += 1;
        assert!(attempts <= 2 * RUNS, "only {cuts} of {attempts} cuts landed inside a compaction");
        let delay = Duration::from_millis(rng.gen_range(0..full.as_millis().max(1) as u64));
        fs::copy(&prepared, &disk).unwrap();
        let log = tmp.path().join(format!("cut{attempts}.defmt"));
        let mut qemu = Qemu::start_with(&fw, &disk, &log, port, PACED).expect("boots");
        qemu.wait_for("compaction: started", Duration::from_secs(60)).expect("compaction starts");
        std::thread::sleep(delay);
        qemu.kill();
        let finished = qemu.lines().iter().any(|l| l.contains("compaction: done"));
        cuts += usize::from(!finished);
        let how = if finished { "after it finished" } else { "inside it" };
        eprintln!("cut {attempts}: power cut {delay:?} after the compaction started: {how}");
        drop(qemu);
        let log = tmp.path().join(format!("after{attempts}.defmt"));
        let used = boot_and_compact(&fw, &disk, &log, port, &restores, false);
        assert!(used + (5 << 20) < before, "cut {attempts}: the log takes {used} of {before} bytes");
    }
}
