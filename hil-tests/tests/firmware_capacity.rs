//! Capacity set by the disk: two boxes back up to one firmware buddy far
//! more chunks than its RAM could index, then each restores its tree from
//! the buddy alone, byte for byte.
//!
//! The chunk and object indexes live on the buddy's disk (a host file over
//! semihosting; `firmware/src/logic/table.rs`), so what bounds the amount is
//! the disk. The default, `PASTICHE_HIL_CAPACITY_MIB=64` (32 MiB per box,
//! about 3,800 chunks: 15 times what the old RAM index held), keeps CI
//! short; the 1 GiB run (about 60,000 such chunks) is a benchmark, with its
//! command and figures in `docs/BENCHMARKS.md`:
//!
//! ```text
//! PASTICHE_HIL_CAPACITY_MIB=1024 cargo test --release -p hil-tests --test firmware_capacity -- --nocapture
//! ```

use std::path::{Path, PathBuf};
use std::time::Instant;

use hil_tests::{
    assert_same_tree, build_pastiche, free_port, make_tree, pastiche, require_qemu, run_ok, Firmware, Qemu,
    PAIRING_SECRET,
};

fn restored(target: &Path, tree: &Path) -> PathBuf {
    target.join(tree.strip_prefix("/").unwrap())
}

/// The last `chunks=N` the firmware logged.
fn logged_chunks(qemu: &Qemu) -> usize {
    qemu.lines()
        .iter()
        .filter_map(|l| l.split(" chunks=").nth(1)?.split(' ').next()?.parse().ok())
        .next_back()
        .unwrap_or(0)
}

#[test]
fn two_boxes_fill_the_buddy_past_any_ram_index_and_restore_exactly() {
    require_qemu!();
    let total_mib: usize =
        std::env::var("PASTICHE_HIL_CAPACITY_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(64).max(8);
    let per_box = total_mib / 2;
    let fw = Firmware::build().expect("firmware builds");
    let bin = build_pastiche().expect("pastiche builds");
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let quota = format!("quota_mib={}", per_box * 2);
    let mut qemu =
        Qemu::boot_with(&fw, &tmp.path().join("disk.img"), &tmp.path().join("fw.defmt"), port, &quota).expect("boots");
    let buddy = format!("127.0.0.1:{port}");

    let boxes: Vec<(PathBuf, PathBuf)> =
        (0..2).map(|i| (tmp.path().join(format!("tree{i}")), tmp.path().join(format!("box{i}")))).collect();
    for (i, (tree, data)) in boxes.iter().enumerate() {
        make_tree(tree, per_box, 0x1000 * (i as u64 + 1));
        run_ok(pastiche(&bin, data).args(["init", "--name", &format!("cap-{i}.example")]), &qemu);
        run_ok(pastiche(&bin, data).args(["buddy", "add", &buddy, "--code", PAIRING_SECRET]), &qemu);
        let t = Instant::now();
        run_ok(pastiche(&bin, data).arg("backup").arg(tree), &qemu);
        eprintln!("box {i}: backup + sync of {per_box} MiB to the firmware buddy: {:?}", t.elapsed());
    }
    // The status line comes every 10 s: wait for one after the transfers.
    let before = qemu.lines().len();
    let mut status = String::new();
    while status.is_empty() {
        qemu.wait_for("status: ", std::time::Duration::from_secs(30)).unwrap();
        status = qemu.lines().into_iter().skip(before).find(|l| l.contains("status: ")).unwrap_or_default();
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let chunks = logged_chunks(&qemu);
    eprintln!("firmware: {status}");
    // make_tree's bytes never repeat (and the two trees differ): every
    // chunk is distinct, and none is over 64 KiB.
    let at_least = total_mib * 1024 / 64;
    assert!(chunks >= at_least, "{chunks} chunks indexed; expected at least {at_least}: {status}");

    for (i, (tree, data)) in boxes.iter().enumerate() {
        let target = tmp.path().join(format!("out{i}"));
        let t = Instant::now();
        run_ok(
            pastiche(&bin, data).args(["restore", "latest", "--target"]).arg(&target).args(["--from-buddy", &buddy]),
            &qemu,
        );
        eprintln!("box {i}: restore of {per_box} MiB from the firmware buddy: {:?}", t.elapsed());
        assert_same_tree(tree, &restored(&target, tree));
    }
    let lines = qemu.lines();
    assert!(!lines.iter().any(|l| l.contains("panic") || l.contains("halted")), "{}", lines.join("\n"));
}
