//! What goes wrong must be reported with the promised exit code and a clear
//! message, never a panic: wrong passphrase (12), no box (10), a locked box
//! (11), unreadable sources (3), damaged packs, index or metadata (1). And
//! `forget --prune` really gives space back without harming what is kept.

mod common;

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use common::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use tempfile::TempDir;

fn tempdir(tag: &str) -> TempDir {
    tempfile::Builder::new().prefix(&format!("pastiche-faults-{tag}-")).tempdir().unwrap()
}

/// A box with one snapshot of a small tree.
fn box_with_snapshot(tmp: &Path) -> (TestBox, PathBuf) {
    let mut rng = StdRng::seed_from_u64(7);
    let src = tmp.join("src");
    write_random(&src.join("a.bin"), 300_000, &mut rng);
    write_bytes(&src.join("b.txt"), b"hello\n");
    let bx = TestBox::init(tmp.join("box"));
    bx.backup(&src);
    (bx, src)
}

/// Every file under `dir` with its size, to show that nothing was written.
fn disk_state(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    walk(dir, &mut |p, m| {
        if m.is_file() {
            out.push((p.to_path_buf(), m.len()));
        }
    });
    out
}

#[test]
fn wrong_passphrase_exits_12_and_writes_nothing() {
    let tmp = tempdir("pass");
    let (bx, src) = box_with_snapshot(tmp.path());
    let target = tmp.path().join("restore");
    let state = disk_state(&bx.data);
    let cases: Vec<Vec<&OsStr>> = vec![
        vec!["snapshots".as_ref()],
        vec!["backup".as_ref(), src.as_os_str()],
        vec!["restore".as_ref(), "latest".as_ref(), "--target".as_ref(), target.as_os_str()],
        vec!["ls".as_ref(), "latest".as_ref()],
        vec!["check".as_ref(), "--read-data".as_ref()],
        vec!["forget".as_ref(), "--keep-last".as_ref(), "1".as_ref()],
        vec!["prune".as_ref()],
        vec!["stats".as_ref()],
    ];
    for args in cases {
        let r = Run::of(bx.cmd_with_password("not the passphrase", &args)).code_is(12);
        assert!(r.stderr.contains("wrong passphrase"), "a wrong passphrase should be named as such\n{}", r.describe());
        assert!(r.stdout.is_empty(), "nothing should be printed on stdout with a wrong passphrase\n{}", r.describe());
        assert!(!target.exists(), "{args:?} with a wrong passphrase created the restore target");
    }
    assert_eq!(disk_state(&bx.data), state, "commands with a wrong passphrase changed the box's files");
    assert_eq!(bx.snapshots().len(), 1, "the right passphrase still works");
}

#[test]
fn missing_box_exits_10() {
    let tmp = tempdir("nobox");
    let src = tmp.path().join("src");
    write_bytes(&src.join("f"), b"x");
    let target = tmp.path().join("restore");
    for data in [tmp.path().join("nothing-here"), tmp.path().join("empty")] {
        if data.ends_with("empty") {
            fs::create_dir(&data).unwrap();
        }
        let bx = TestBox::at(data.clone());
        let cases: Vec<Vec<&OsStr>> = vec![
            vec!["snapshots".as_ref()],
            vec!["backup".as_ref(), src.as_os_str()],
            vec!["restore".as_ref(), "latest".as_ref(), "--target".as_ref(), target.as_os_str()],
            vec!["check".as_ref()],
            vec!["stats".as_ref()],
            vec!["prune".as_ref()],
        ];
        for args in cases {
            let r = bx.run(&args).code_is(10);
            assert!(
                r.stderr.contains("no box") && r.stderr.contains("init"),
                "a missing box should be named, with the way out (`init`)\n{}",
                r.describe()
            );
        }
        assert!(!target.exists(), "restore without a box created the target");
        if data.ends_with("nothing-here") {
            assert!(!data.exists(), "a command on a missing box created its data directory {}", data.display());
        }
    }
}

#[test]
fn fifo_and_socket_are_skipped_with_a_warning() {
    let tmp = tempdir("fifo");
    let src = tmp.path().join("src");
    write_bytes(&src.join("regular"), b"data\n");
    mkfifo(&src.join("pipe"));
    let _sock = std::os::unix::net::UnixListener::bind(src.join("sock")).unwrap();
    let bx = TestBox::init(tmp.path().join("box"));
    // A FIFO must not be opened (that would block forever) nor fail the backup.
    let r = bx.run([OsStr::new("backup"), src.as_os_str()]).ok();
    for name in ["pipe", "sock"] {
        assert!(
            r.stderr.contains(&*src.join(name).to_string_lossy()),
            "the skipped {name} should be named in a warning\n{}",
            r.describe()
        );
    }
    let ls = bx.run(["ls", "latest"]).ok();
    let listed: Vec<&str> = ls.stdout.lines().collect();
    assert_eq!(
        listed,
        vec![format!("{}/", src.display()), src.join("regular").display().to_string()],
        "only the directory and the regular file should be in the snapshot"
    );
}

/// Exit 3: a file and a directory that cannot be read. Root reads
/// everything, so as root the box is used as `nobody` through `setpriv`.
#[test]
fn unreadable_sources_exit_3_and_the_rest_is_kept() {
    let wrapper: Vec<std::ffi::OsString> = if is_root() {
        if !Path::new("/usr/bin/setpriv").exists() && !Path::new("/bin/setpriv").exists() {
            println!("note: running as root without setpriv: cannot make a file unreadable; skipped");
            return;
        }
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"].iter().map(Into::into).collect()
    } else {
        Vec::new()
    };
    let tmp = tempdir("unreadable");
    chmod(tmp.path(), 0o777);
    let src = tmp.path().join("src");
    write_bytes(&src.join("readable.txt"), b"fine\n");
    write_bytes(&src.join("sub/also-readable.txt"), b"also fine\n");
    write_bytes(&src.join("locked.txt"), b"secret\n");
    write_bytes(&src.join("locked-dir/hidden.txt"), b"hidden\n");
    chmod(&src.join("locked.txt"), 0o000);
    chmod(&src.join("locked-dir"), 0o000);
    let work = tmp.path().join("work");
    fs::create_dir(&work).unwrap();
    chmod(&work, 0o777);
    let mut bx = TestBox::at(work.join("box"));
    bx.wrapper = wrapper;
    bx.run(["init", "--name", "test.example.org"]).ok();

    let r = bx.run([OsStr::new("--json"), OsStr::new("backup"), src.as_os_str()]).code_is(3);
    let s = r.json_summary();
    assert_eq!(s["errors"], 2, "two entries could not be read: {s}");
    for p in ["locked.txt", "locked-dir"] {
        assert!(
            r.stderr.contains(&*src.join(p).to_string_lossy()),
            "the unreadable {p} should be named on stderr\n{}",
            r.describe()
        );
    }
    assert_eq!(bx.snapshots().len(), 1, "the partial snapshot must be saved");
    let ls = bx.run(["ls", "latest"]).ok();
    let listed: Vec<&str> = ls.stdout.lines().collect();
    for want in ["readable.txt", "sub/also-readable.txt"] {
        let p = src.join(want).display().to_string();
        assert!(listed.contains(&p.as_str()), "{p} missing from the partial snapshot\n{}", ls.describe());
    }
    assert!(
        !listed.iter().any(|l| l.contains("locked.txt") || l.contains("hidden.txt")),
        "unreadable entries must not appear as if backed up\n{}",
        ls.describe()
    );
    let target = work.join("restore");
    bx.restore("latest", &target);
    let out = restored_path(&target, &src);
    assert_eq!(fs::read(out.join("readable.txt")).unwrap(), b"fine\n");
    assert_eq!(fs::read(out.join("sub/also-readable.txt")).unwrap(), b"also fine\n");
    bx.check_read_data();
}

#[test]
fn corrupt_pack_byte_is_found_by_read_data_and_names_the_file() {
    let tmp = tempdir("corrupt");
    let mut rng = StdRng::seed_from_u64(11);
    let src = tmp.path().join("src");
    let a = src.join("victim.bin");
    let b = src.join("bystander.bin");
    write_random(&a, 1_000_000, &mut rng);
    let bx = TestBox::init(tmp.path().join("box"));
    bx.backup(&src);
    // Only the victim's records are in the packs so far.
    let packs = bx.packs();
    let (first_pack, first_len) = packs.iter().next().map(|(n, l)| (n.clone(), *l)).unwrap();
    write_random(&b, 1_000_000, &mut rng);
    let b_manifest = manifest(&b);
    bx.backup(&src);

    bx.run(["check"]).ok();
    bx.check_read_data();

    // Flip one byte in the middle of the victim's records.
    let pack = bx.data.join("store/packs").join(&first_pack);
    let f = OpenOptions::new().read(true).write(true).open(&pack).unwrap();
    let at = first_len / 2;
    let mut byte = [0u8];
    f.read_exact_at(&mut byte, at).unwrap();
    f.write_all_at(&[byte[0] ^ 0x5a], at).unwrap();
    drop(f);

    let r = bx.run(["check", "--read-data"]).code_is(1);
    let a_name = a.display().to_string();
    let b_name = b.display().to_string();
    assert!(
        r.stdout.lines().any(|l| l.starts_with("affected file:") && l.ends_with(&a_name)),
        "check --read-data should name {a_name} as affected\n{}",
        r.describe()
    );
    assert!(!r.stdout.contains(&b_name), "check --read-data names {b_name}, whose chunks are intact\n{}", r.describe());
    let j = bx.run(["--json", "check", "--read-data"]).code_is(1);
    let s = j.json_summary();
    assert_eq!(s["ok"], false, "check --json on a damaged pack: {s}");
    let affected = s["result"]["affected_files"].to_string();
    assert!(affected.contains(&a_name), "JSON affected_files lacks {a_name}: {s}");

    // A restore fails loudly for the victim and still restores the rest.
    let target = tmp.path().join("restore");
    let r =
        bx.run([OsStr::new("restore"), OsStr::new("latest"), OsStr::new("--target"), target.as_os_str()]).code_is(1);
    assert!(r.stderr.contains("victim.bin"), "the restore error should name the damaged file\n{}", r.describe());
    assert_tree_matches(&b_manifest, &restored_path(&target, &b), "intact file beside a damaged one");
}

/// The damage to apply to a copy of a good box.
enum Damage {
    TruncateIndex(fn(u64) -> u64),
    TruncateMeta(fn(u64) -> u64),
    DeleteMeta,
    GarbleIndexHeader,
}

fn damaged_box_reports_clearly(tag: &str, damage: Damage, must_mention: &[&str]) {
    let tmp = tempdir(tag);
    let (bx, src) = box_with_snapshot(tmp.path());
    let cut = |p: &Path, f: fn(u64) -> u64| {
        let len = fs::metadata(p).unwrap().len();
        OpenOptions::new().write(true).open(p).unwrap().set_len(f(len)).unwrap();
    };
    let index = bx.data.join("store/index.state");
    let meta = bx.data.join("objects.log");
    match damage {
        Damage::TruncateIndex(f) => cut(&index, f),
        Damage::TruncateMeta(f) => cut(&meta, f),
        Damage::DeleteMeta => fs::remove_file(&meta).unwrap(),
        Damage::GarbleIndexHeader => {
            let f = OpenOptions::new().write(true).open(&index).unwrap();
            f.write_all_at(&[0xa5; 64], 0).unwrap();
        }
    }
    let target = tmp.path().join("restore");
    let cases: Vec<Vec<&OsStr>> = vec![
        vec!["snapshots".as_ref()],
        vec!["check".as_ref(), "--read-data".as_ref()],
        vec!["backup".as_ref(), src.as_os_str()],
        vec!["restore".as_ref(), "latest".as_ref(), "--target".as_ref(), target.as_os_str()],
    ];
    for args in cases {
        // Run::of fails the test on any panic.
        let r = bx.run(&args).code_is(1);
        assert!(
            r.stderr.starts_with("pastiche: "),
            "the error should be one `pastiche: ...` message\n{}",
            r.describe()
        );
        assert!(
            must_mention.iter().any(|m| r.stderr.contains(m)),
            "the error should mention one of {must_mention:?}\n{}",
            r.describe()
        );
    }
}

#[test]
fn index_truncated_to_zero_is_a_clear_error() {
    damaged_box_reports_clearly("idx0", Damage::TruncateIndex(|_| 0), &["index"]);
}

#[test]
fn index_truncated_to_half_is_a_clear_error() {
    damaged_box_reports_clearly("idxhalf", Damage::TruncateIndex(|n| n / 2), &["index"]);
}

#[test]
fn index_with_garbled_header_is_a_clear_error() {
    damaged_box_reports_clearly("idxgarble", Damage::GarbleIndexHeader, &["index"]);
}

#[test]
fn metadata_deleted_is_a_clear_error() {
    damaged_box_reports_clearly("metadel", Damage::DeleteMeta, &["metadata", "damaged", "objects.log"]);
}

#[test]
fn metadata_truncated_to_half_is_a_clear_error() {
    damaged_box_reports_clearly("metahalf", Damage::TruncateMeta(|n| n / 2), &["metadata", "damaged", "objects.log"]);
}

/// Takes `flock(DATA/lock, op | LOCK_NB)` for as long as the file lives.
fn hold_lock(data: &Path, op: libc::c_int) -> File {
    let f = OpenOptions::new().create(true).truncate(false).write(true).open(data.join("lock")).unwrap();
    // SAFETY: flock on a descriptor we own.
    let rc = unsafe { libc::flock(f.as_raw_fd(), op | libc::LOCK_NB) };
    assert_eq!(rc, 0, "the test could not take the lock: {}", std::io::Error::last_os_error());
    f
}

#[test]
fn locked_box_exits_11() {
    let tmp = tempdir("lock");
    let (bx, src) = box_with_snapshot(tmp.path());
    let target = tmp.path().join("restore");
    let restore: Vec<&OsStr> = vec!["restore".as_ref(), "latest".as_ref(), "--target".as_ref(), target.as_os_str()];
    let backup: Vec<&OsStr> = vec!["backup".as_ref(), src.as_os_str()];
    let locked = |args: &[&OsStr], holder: &str| {
        let r = bx.run(args).code_is(11);
        assert!(
            r.stderr.contains("in use"),
            "{args:?} while another process holds {holder}: the message should say the box is in use\n{}",
            r.describe()
        );
    };

    // A writer holds the box: nobody else gets in.
    let lock = hold_lock(&bx.data, libc::LOCK_EX);
    locked(&backup, "the exclusive lock");
    locked(&["snapshots".as_ref()], "the exclusive lock");
    locked(&["check".as_ref()], "the exclusive lock");
    locked(&["forget".as_ref(), "--keep-last".as_ref(), "1".as_ref()], "the exclusive lock");
    locked(&restore, "the exclusive lock");
    assert!(!target.exists(), "a restore refused for the lock created its target");
    drop(lock);
    bx.run(["snapshots"]).ok();

    // A reader holds the box: other readers run, writers do not.
    let lock = hold_lock(&bx.data, libc::LOCK_SH);
    bx.run(["snapshots"]).ok();
    bx.run(["check", "--read-data"]).ok();
    bx.run(&restore).ok();
    locked(&backup, "a shared lock");
    locked(&["prune".as_ref()], "a shared lock");
    locked(&["forget".as_ref(), "--keep-last".as_ref(), "1".as_ref()], "a shared lock");
    drop(lock);
    bx.run(&backup).ok();
    assert_eq!(bx.snapshots().len(), 2, "refused commands must not have changed the box");
}

#[test]
fn forget_keep_last_prune_frees_space_and_keeps_the_last() {
    let tmp = tempdir("forget");
    let mut rng = StdRng::seed_from_u64(99);
    let src = tmp.path().join("src");
    write_random(&src.join("stable.bin"), 2_000_000, &mut rng);
    let bx = TestBox::init(tmp.path().join("box"));
    let mut ids = Vec::new();
    for round in 0..3 {
        // A 4 MB file with new content every time.
        write_random(&src.join("rotating.bin"), 4_000_000, &mut rng);
        write_bytes(&src.join("round.txt"), format!("round {round}\n").as_bytes());
        ids.push(bx.backup(&src)["snapshot_id"].as_str().unwrap().to_string());
    }
    let last = manifest(&src);
    assert_eq!(bx.snapshots().len(), 3);
    let packs_before = bx.packs_bytes();

    // A dry run changes nothing.
    bx.run(["forget", "--keep-last", "1", "--prune", "--dry-run"]).ok();
    assert_eq!(bx.snapshots().len(), 3, "forget --dry-run removed snapshots");
    assert_eq!(bx.packs_bytes(), packs_before, "forget --dry-run changed the packs");

    // No policy: refuse rather than forget everything.
    let r = bx.run(["forget"]).code_is(1);
    assert!(r.stderr.contains("--keep"), "forget without a policy should say why\n{}", r.describe());

    bx.run(["forget", "--keep-last", "1", "--prune"]).ok();
    let snaps = bx.snapshots();
    assert_eq!(snaps.len(), 1, "forget --keep-last 1 left {snaps:?}");
    assert_eq!(snaps[0]["id"], ids[2].as_str(), "the newest snapshot must be the one kept");
    let packs_after = bx.packs_bytes();
    // Two 4 MB versions of rotating.bin are no longer needed.
    assert!(
        packs_after + 7_000_000 < packs_before,
        "prune should free the two old 4 MB versions: packs took {packs_before} bytes before, {packs_after} after"
    );
    assert!(packs_after >= 6_000_000, "the packs ({packs_after} bytes) cannot hold the 6 MB the kept snapshot needs");
    let stats = bx.run(["--json", "stats"]).ok().json_lines();
    assert_eq!(stats[0]["snapshots"], 1, "stats after forget: {:?}", stats);

    let target = tmp.path().join("restore");
    bx.restore("latest", &target);
    assert_tree_matches(&last, &restored_path(&target, &src), "restore after forget --prune");
    bx.check_read_data();
    // And the box still works: a new backup adds only what is new.
    write_bytes(&src.join("after.txt"), b"after prune\n");
    let s = bx.backup(&src);
    assert_eq!(s["files_new"], 1, "backup after prune: {s}");
    bx.check_read_data();
}
