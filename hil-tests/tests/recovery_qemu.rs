//! Disaster recovery of a box whose two buddies are an appliance
//! (`pastiche serve`, a real process on loopback) and the firmware image in
//! QEMU, driven by the real `pastiche` binary.
//!
//! Emulated: the firmware's board, NIC and disk (see `firmware_qemu.rs`).
//! Real: everything else, including TCP between the processes.
//!
//! The box backs up to both buddies; the firmware buddy is down for the
//! second backup, so it keeps an older root. The box's data directory and
//! source are wiped. `pastiche recover` with the passphrase, the name and
//! the firmware buddy's address alone finds the appliance buddy from the
//! firmware's root, takes the appliance's newer root and says the firmware
//! served an older one. The restore is exact (content, mode, mtime,
//! symlinks), and the next backup ships only the new chunks.

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use hil_tests::{build_pastiche, free_port, noise, pastiche, require_qemu, run_ok, Firmware, Qemu, PAIRING_SECRET};
use serde_json::Value;

const NAME: &str = "recover-me.example.org";

fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
}

/// `pastiche serve` of an appliance buddy, killed on drop.
struct Serve(Child);

impl Serve {
    fn start(bin: &Path, data: &Path, addr: &str) -> Serve {
        let mut child = pastiche(bin, data)
            .args(["serve", "--listen", addr, "--http", "off"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start pastiche serve");
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[serve] {line}");
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "pastiche serve did not listen on {addr}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Serve(child)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Every entry under `root`: (relative path, kind, permission bits, mtime
/// of files and links, content or link target).
fn describe(root: &Path) -> Vec<(PathBuf, &'static str, u32, i64, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, &'static str, u32, i64, Vec<u8>)>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            let mode = m.permissions().mode() & 0o7777;
            if m.file_type().is_symlink() {
                out.push((rel, "link", 0, 0, fs::read_link(&p).unwrap().into_os_string().into_encoded_bytes()));
            } else if m.is_dir() {
                out.push((rel, "dir", mode, 0, Vec::new()));
                walk(root, &p, out);
            } else {
                out.push((rel, "file", mode, m.mtime(), fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

fn sync_report<'v>(lines: &'v [Value], addr: &str) -> &'v Value {
    lines
        .iter()
        .find(|l| l["message_type"] == "sync" && l["report"]["addr"] == addr)
        .map(|l| &l["report"])
        .unwrap_or_else(|| panic!("no sync report for {addr} in {lines:?}"))
}

#[test]
fn a_wiped_box_comes_back_from_passphrase_name_and_one_buddy() {
    require_qemu!();
    let fw = Firmware::build().expect("firmware builds");
    let bin = build_pastiche().expect("pastiche builds");
    let tmp = tempfile::tempdir().unwrap();
    let (tree, data, target) = (tmp.path().join("tree"), tmp.path().join("box"), tmp.path().join("out"));
    make_small_tree(&tree);
    // The buddies: the firmware in QEMU and an appliance.
    let fw_port = free_port();
    let fw_addr = format!("127.0.0.1:{fw_port}");
    let disk = tmp.path().join("disk.img");
    let mut qemu = Qemu::boot(&fw, &disk, &tmp.path().join("boot1.defmt"), fw_port).expect("boots");
    let appliance_data = tmp.path().join("appliance");
    let appliance_addr = format!("127.0.0.1:{}", free_port());
    run_ok(pastiche(&bin, &appliance_data).args(["init", "--name", "buddy.example.org"]), &qemu);
    let _serve = Serve::start(&bin, &appliance_data, &appliance_addr);
    let invite = run_ok(pastiche(&bin, &appliance_data).args(["buddy", "invite"]), &qemu);
    let code = String::from_utf8_lossy(&invite.stdout).lines().last().unwrap().trim().to_string();

    // The box: two buddies, a first backup to both.
    run_ok(pastiche(&bin, &data).args(["init", "--name", NAME]), &qemu);
    run_ok(pastiche(&bin, &data).args(["buddy", "add", &appliance_addr, "--code", &code]), &qemu);
    run_ok(pastiche(&bin, &data).args(["buddy", "add", &fw_addr, "--code", PAIRING_SECRET]), &qemu);
    let first = run_ok(pastiche(&bin, &data).arg("--json").arg("backup").arg(&tree), &qemu);
    let first = json_lines(&first);
    assert_eq!(sync_report(&first, &fw_addr)["epoch"], 1);
    let public_key = serde_json::from_str::<Value>(&fs::read_to_string(data.join("box.json")).unwrap()).unwrap()
        ["public_key"]
        .clone();

    // The firmware buddy is down for the second backup: it keeps the older root.
    qemu.kill();
    fs::write(tree.join("docs/added-while-fw-down.bin"), noise(7, 40_000)).unwrap();
    let second = run_ok(pastiche(&bin, &data).arg("--json").arg("backup").arg(&tree), &qemu);
    assert_eq!(sync_report(&json_lines(&second), &appliance_addr)["epoch"], 2);
    drop(qemu);
    let qemu = Qemu::boot(&fw, &disk, &tmp.path().join("boot2.defmt"), fw_port).expect("reboots");

    // Disaster: the box's data and its source are gone. Keep a copy to compare.
    let expected = describe(&tree);
    fs::remove_dir_all(&data).unwrap();
    fs::remove_dir_all(&tree).unwrap();

    // Recovery from the passphrase, the name and the firmware buddy alone.
    let t = Instant::now();
    let out = run_ok(pastiche(&bin, &data).args(["--json", "recover", "--name", NAME, "--via", &fw_addr]), &qemu);
    eprintln!("recover: {:?}", t.elapsed());
    let lines = json_lines(&out);
    let report = &lines.last().unwrap()["report"];
    assert_eq!(report["public_key"], public_key, "the same identity");
    assert_eq!(report["snapshots"], 2, "the newer root, from the appliance: {report}");
    let outcome = |addr: &str| {
        report["holders"].as_array().unwrap().iter().find(|h| h["addr"] == addr).expect("asked")["outcome"].clone()
    };
    assert_eq!(outcome(&fw_addr), "older", "{report}");
    assert_eq!(outcome(&appliance_addr), "newest", "found from the firmware's root: {report}");
    // Without --json the older holder is named on stderr.
    let text =
        run_ok(pastiche(&bin, &tmp.path().join("again")).args(["recover", "--name", NAME, "--via", &fw_addr]), &qemu);
    let stderr = String::from_utf8_lossy(&text.stderr);
    assert!(stderr.contains(&fw_addr) && stderr.contains("older root"), "{stderr}");

    // The restore pulls everything from the buddies and is exact.
    let t = Instant::now();
    run_ok(pastiche(&bin, &data).args(["restore", "latest", "--target"]).arg(&target), &qemu);
    eprintln!("restore of 2 MiB from the two buddies: {:?}", t.elapsed());
    let restored = target.join(tree.strip_prefix("/").unwrap());
    assert_eq!(describe(&restored), expected, "the restore differs from the lost source");

    // The recovered box goes on with the same buddies: put the tree back,
    // add a file, back up. Only the new file's chunk goes to the appliance;
    // the firmware also gets what it missed while down.
    fs::rename(&restored, &tree).unwrap();
    fs::write(tree.join("new-after-recovery.txt"), noise(9, 1_500)).unwrap();
    let next = json_lines(&run_ok(pastiche(&bin, &data).arg("--json").arg("backup").arg(&tree), &qemu));
    let to_appliance = sync_report(&next, &appliance_addr);
    assert_eq!(to_appliance["chunks_sent"], 1, "only the new chunk: {to_appliance}");
    assert_eq!(to_appliance["went_back"], false);
    let to_fw = sync_report(&next, &fw_addr);
    let missed = to_fw["chunks_sent"].as_u64().unwrap();
    assert!((2..=6).contains(&missed), "the new chunk and the ones missed while down: {to_fw}");

    let log = qemu.lines();
    assert!(!log.iter().any(|l| l.contains("panic") || l.contains("halted")), "{}", log.join("\n"));
}

/// A 2 MiB tree of ten entries with a file of mode 0640, a directory of
/// mode 0750, an old mtime, a symlink, a dangling symlink and an empty file.
/// Small, because the firmware's RAM index holds 240 chunks and 32 objects,
/// staged and committed together (firmware/MEMORY.md).
fn make_small_tree(tree: &Path) {
    fs::create_dir_all(tree.join("docs/deep")).unwrap();
    fs::write(tree.join("big.bin"), noise(1, 2 << 20)).unwrap();
    fs::write(tree.join("docs/private.dat"), noise(2, 30_000)).unwrap();
    fs::write(tree.join("docs/old.dat"), noise(3, 20_000)).unwrap();
    fs::write(tree.join("docs/deep/notes.txt"), b"a small text file\n").unwrap();
    fs::write(tree.join("empty"), b"").unwrap();
    fs::set_permissions(tree.join("docs/private.dat"), fs::Permissions::from_mode(0o640)).unwrap();
    fs::set_permissions(tree.join("docs/deep"), fs::Permissions::from_mode(0o750)).unwrap();
    let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_500_000_000);
    fs::File::options().write(true).open(tree.join("docs/old.dat")).unwrap().set_modified(old).unwrap();
    std::os::unix::fs::symlink("private.dat", tree.join("docs/link")).unwrap();
    std::os::unix::fs::symlink("/nowhere/at/all", tree.join("dangling")).unwrap();
}
