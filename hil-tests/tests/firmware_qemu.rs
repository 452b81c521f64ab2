//! The firmware image as a storage buddy, in QEMU, driven by the real
//! `pastiche` binary.
//!
//! Emulated: the board (QEMU `mps2-an386`), its LAN9118 NIC, and its disk (a
//! host file over ARM semihosting). The link is QEMU user-mode networking
//! with a host port forward to the buddy's TCP port. Real: the firmware ELF
//! that would be flashed, smoltcp, the chunk store, the shared protocol code
//! (`BuddySession`) and the `pastiche` client.
//!
//! Skipped, with a printed reason, when qemu-system-arm is not installed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use hil_tests::{assert_same_tree, build_pastiche, free_port, make_tree, require_qemu, Firmware, Qemu, PAIRING_SECRET};

/// `pastiche` with a data directory and test settings. `--threads 2`: the
/// firmware serves three sessions at once and a restore opens one per thread.
fn pastiche(bin: &Path, data: &Path) -> Command {
    let mut c = Command::new(bin);
    c.env("PASTICHE_PASSWORD", "hil-test").env("PASTICHE_KDF_MIB", "8").arg("--data").arg(data);
    c.args(["--threads", "2", "--quiet"]);
    c
}

fn run_ok(c: &mut Command) -> Output {
    run_ok_logged(c, None)
}

/// Runs `c`; on failure the panic message includes the firmware's log.
fn run_ok_logged(c: &mut Command, qemu: Option<&Qemu>) -> Output {
    let out = c.output().expect("run pastiche");
    let log = qemu.map(|q| q.lines().join("\n")).unwrap_or_default();
    assert!(
        out.status.success(),
        "{c:?} failed ({}):\nstdout: {}\nstderr: {}\nfirmware log:\n{log}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    out
}

/// Where a restore puts the tree: restore keeps the absolute path under the target.
fn restored(target: &Path, tree: &Path) -> PathBuf {
    target.join(tree.strip_prefix("/").unwrap())
}

fn stack_high_water(lines: &[String]) -> Option<usize> {
    lines.iter().filter_map(|l| l.split("stack high-water ").nth(1)?.split(' ').next()?.parse().ok()).max()
}

#[test]
fn a_tree_backs_up_to_the_firmware_buddy_and_restores_from_it_alone() {
    require_qemu!();
    let fw = Firmware::build().expect("firmware builds");
    let bin = build_pastiche().expect("pastiche builds");
    let tmp = tempfile::tempdir().unwrap();
    let (tree, data, target) = (tmp.path().join("tree"), tmp.path().join("box"), tmp.path().join("out"));
    // 3 MiB: the firmware's RAM index holds 240 chunks (firmware/MEMORY.md).
    make_tree(&tree, 3, 0x5eed);

    let port = free_port();
    let qemu = Qemu::boot(&fw, &tmp.path().join("disk.img"), &tmp.path().join("fw.defmt"), port).expect("boots");
    run_ok(pastiche(&bin, &data).args(["init", "--name", "hil-a.example"]));
    run_ok(pastiche(&bin, &data).args(["buddy", "add", &format!("127.0.0.1:{port}"), "--code", PAIRING_SECRET]));
    let t = Instant::now();
    let out = run_ok_logged(pastiche(&bin, &data).arg("backup").arg(&tree), Some(&qemu));
    eprintln!("backup + sync of 3 MiB to the firmware buddy: {:?}", t.elapsed());
    let _ = out;
    let t = Instant::now();
    run_ok_logged(
        pastiche(&bin, &data)
            .args(["restore", "latest", "--target"])
            .arg(&target)
            .args(["--from-buddy", &format!("127.0.0.1:{port}")]),
        Some(&qemu),
    );
    eprintln!("restore of 3 MiB from the firmware buddy: {:?}", t.elapsed());
    assert_same_tree(&tree, &restored(&target, &tree));

    let lines = qemu.lines();
    assert!(!lines.iter().any(|l| l.contains("panic") || l.contains("halted")), "{}", lines.join("\n"));
    assert!(lines.iter().any(|l| l.contains("store: formatted=true")));
    if let Some(hw) = stack_high_water(&lines) {
        eprintln!("firmware stack high-water mark after the traffic: {hw} bytes");
    }
}

#[test]
fn power_cut_mid_transfer_then_sync_completes_and_restore_is_exact() {
    require_qemu!();
    let fw = Firmware::build().expect("firmware builds");
    let bin = build_pastiche().expect("pastiche builds");
    let tmp = tempfile::tempdir().unwrap();
    let (tree, data, target) = (tmp.path().join("tree"), tmp.path().join("box"), tmp.path().join("out"));
    let disk = tmp.path().join("disk.img");
    // 3 MiB: the firmware's RAM index holds 240 chunks (firmware/MEMORY.md).
    make_tree(&tree, 3, 0xc0ffee);

    let port = free_port();
    let mut qemu = Qemu::boot(&fw, &disk, &tmp.path().join("boot1.defmt"), port).expect("boots");
    run_ok(pastiche(&bin, &data).args(["init", "--name", "hil-b.example"]));
    run_ok(pastiche(&bin, &data).args(["buddy", "add", &format!("127.0.0.1:{port}"), "--code", PAIRING_SECRET]));

    // Back up, and pull the plug once a MiB of log has reached the disk
    // (the log starts after the on-disk index tables: `log_end` at boot).
    let boot = qemu.lines().into_iter().find(|l| l.contains("store: ")).unwrap();
    let log_start: u64 = boot.split("log_end=").nth(1).and_then(|v| v.split(' ').next()?.parse().ok()).unwrap();
    let mut backup =
        pastiche(&bin, &data).arg("backup").arg(&tree).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let start = Instant::now();
    let cut_at = loop {
        let len = fs::metadata(&disk).map(|m| m.len()).unwrap_or(0);
        if len > log_start + (1 << 20) {
            qemu.kill();
            break len;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "the transfer never got going");
        std::thread::sleep(Duration::from_millis(5));
    };
    let status = backup.wait().unwrap();
    eprintln!("QEMU killed with {cut_at} bytes on disk; the backup exited with {status}");
    drop(qemu);
    // SIGKILL lands between two semihosting writes, which may or may not be
    // inside a record. Make sure the torn-record path runs: append the first
    // 700 bytes of a record (a header announcing 60 kB, then junk), as a
    // power cut in the middle of a chunk write leaves it.
    {
        use std::io::Write;
        let mut f = fs::OpenOptions::new().append(true).open(&disk).unwrap();
        let mut torn = Vec::from(60_000u32.to_le_bytes());
        torn.extend_from_slice(&u32::MAX.to_le_bytes()); // generation
        torn.push(2); // a chunk record
        torn.extend((0..691).map(|i| (i * 7) as u8));
        f.write_all(&torn).unwrap();
    }

    // Same disk, same port: the buddy comes back with its identity and data.
    let qemu = Qemu::boot(&fw, &disk, &tmp.path().join("boot2.defmt"), port).expect("reboots");
    let boot = qemu.lines().into_iter().find(|l| l.contains("store: ")).unwrap();
    eprintln!("second boot: {boot}");
    assert!(boot.contains("formatted=false"), "{boot}");
    assert!(boot.contains("cut=true"), "the torn tail must be detected: {boot}");
    run_ok_logged(pastiche(&bin, &data).arg("sync"), Some(&qemu));
    run_ok_logged(
        pastiche(&bin, &data)
            .args(["restore", "latest", "--target"])
            .arg(&target)
            .args(["--from-buddy", &format!("127.0.0.1:{port}")]),
        Some(&qemu),
    );
    assert_same_tree(&tree, &restored(&target, &tree));
    let lines = qemu.lines();
    assert!(!lines.iter().any(|l| l.contains("panic") || l.contains("halted")), "{}", lines.join("\n"));
}
