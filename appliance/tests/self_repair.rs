//! Self-repair for real: box A backs up to buddies B and C (`pastiche
//! serve` over TCP, paired with invite codes), then its own store is
//! damaged behind its back: payload bytes flipped, a record zeroed, a
//! chunk's index entry deleted, the pack's tail cut off. `check` fails and
//! names the files; `check --repair` fetches every damaged or missing chunk
//! from the buddies, verifies it, and writes it back; `check --read-data`
//! then passes and a restore with every buddy gone is exact.
//!
//! B's store is tampered with too: for some of the damaged chunks it
//! serves another chunk's (well-formed) bytes. With C down, those chunks
//! stay unrepaired and the forged bytes never reach A's store; with C back,
//! they come from C. The daemon does the same on its own after its
//! periodic local check fails.

mod common;

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use common::buddy::*;
use common::buddy_db::*;
use common::daemon::*;
use common::*;
use pastiche::store::group::read_table;
use pastiche::store::pack::{parse_pack_name, scan_pack, RecordKind, ScannedRecord, RECORD_HEADER_LEN};
use pastiche::store::ChunkStore;
use pastiche_core::{ChunkId, PublicKey};
use rand::{Rng, SeedableRng};
use serde_json::Value;

fn tree(root: &Path, seed: u64, files: usize) -> PathBuf {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let home = root.join("home");
    for i in 0..files {
        write_random(&home.join(format!("docs/doc{i}.bin")), rng.gen_range(40_000..200_000), &mut rng);
    }
    home
}

/// The box's one pack and the records in it, in file order.
fn the_pack(b: &TestBox) -> (PathBuf, Vec<ScannedRecord>) {
    let packs = b.packs();
    assert_eq!(packs.len(), 1, "a small backup fills one pack: {packs:?}");
    let name = packs.keys().next().unwrap();
    let path = b.data.join("store/packs").join(name);
    let scan = scan_pack(&File::open(&path).unwrap(), parse_pack_name(name).unwrap(), None).unwrap();
    assert!(scan.stopped.is_none() && scan.records.len() > 40, "{:?}, {} records", scan.stopped, scan.records.len());
    (path, scan.records)
}

/// Overwrites `len` bytes at `offset` of `path` with `f(old byte)`.
fn overwrite(path: &Path, offset: u64, len: usize, f: impl Fn(u8) -> u8) {
    let file = OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, offset).unwrap();
    buf.iter_mut().for_each(|b| *b = f(*b));
    file.write_all_at(&buf, offset).unwrap();
    file.sync_all().unwrap();
}

/// Flips a few payload bytes of a record (its header stays intact).
fn flip_payload(path: &Path, r: &ScannedRecord) {
    overwrite(path, r.offset + RECORD_HEADER_LEN as u64 + 64, 8, |b| b ^ 0x5a);
}

/// Makes buddy `b` (stopped) serve, for each chunk of `forged`, the bytes
/// of another chunk it holds for `client`: well-formed, stored intact, and
/// wrong. Returns how many it forged.
fn forge_chunks(b: &TestBox, client: &PublicKey, forged: &[ChunkId]) -> usize {
    edit_client_chunks(b, client, |table, rows| {
        let decoy = rows.iter().find(|r| !forged.contains(&r.id)).unwrap().name;
        for id in forged {
            assert!(rows.iter().any(|r| r.id == *id), "B holds chunk {id}");
            table.insert((client.0, id.0), decoy.0).unwrap();
        }
        forged.len()
    })
}

fn box_key(b: &TestBox) -> PublicKey {
    let config: Value = serde_json::from_str(&std::fs::read_to_string(b.data.join("box.json")).unwrap()).unwrap();
    config["public_key"].as_str().unwrap().parse().unwrap()
}

/// `check --repair --json`: its exit code and summary's result.
fn repair(b: &TestBox, code: i32) -> Value {
    let r = b.run(["--json", "check", "--repair"]).code_is(code);
    let s = r.json_summary();
    assert_eq!(s["ok"], code == 0, "{}", r.describe());
    s["result"].clone()
}

#[test]
fn damaged_and_missing_chunks_are_repaired_from_buddies_and_forged_copies_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tree(tmp.path(), 21, 24);
    let expected = manifest(&home);
    let a = TestBox::init(tmp.path().join("A")).sealing_alone();
    let b = TestBox::init(tmp.path().join("B"));
    let c = TestBox::init(tmp.path().join("C"));
    let (sb, sc) = (Server::start(&b), Server::start(&c));
    let (addr_b, addr_c) = (sb.addr.clone(), sc.addr.clone());
    pair(&a, &b, &addr_b);
    pair(&a, &c, &addr_c);
    let r = a.run([OsStr::new("backup"), home.as_os_str()]).ok();
    assert!(r.stdout.contains(&format!("synced to {addr_b}")) || r.stdout.contains("synced to"), "{}", r.describe());
    a.check_read_data();
    sb.kill();
    sc.kill();

    let (pack, records) = the_pack(&a);
    let n = records.len();
    let id = |r: &ScannedRecord| r.header.id;
    // B serves forged bytes for three chunks whose copies A damages.
    let forged: Vec<ChunkId> = [5, 9, 13].iter().map(|&i| id(&records[i])).collect();
    assert_eq!(forge_chunks(&b, &box_key(&a), &forged), 3);
    // A's damage: flipped payloads, a zeroed record, an index entry
    // deleted, and the pack's last four records cut off.
    for i in [5, 9, 13, 20, 21] {
        flip_payload(&pack, &records[i]);
    }
    let zeroed = &records[30];
    overwrite(&pack, zeroed.offset, RECORD_HEADER_LEN + zeroed.header.len as usize, |_| 0);
    let unindexed = id(&records[35]);
    {
        let store = ChunkStore::open(a.data.join("store")).unwrap();
        let owners = store.owners(&unindexed).unwrap();
        assert_eq!(owners, [(box_key(&a), 1)]);
        store.release(&box_key(&a), &[unindexed]).unwrap();
        assert_eq!(store.compact(0.0).unwrap().garbage_removed, 1);
        assert!(!store.contains(&unindexed).unwrap(), "the chunk's index entry is gone");
    }
    let cut_from = records[n - 4].offset;
    OpenOptions::new().write(true).open(&pack).unwrap().set_len(cut_from + 10).unwrap();
    let damaged = 5 + 1 + 1 + 4;

    // `check` sees the short pack and the lost entry without reading; with
    // --read-data it names every damaged chunk and the files.
    let r = a.run(["check"]).code_is(1);
    assert!(r.stdout.contains("Short") && r.stdout.contains("missing from the store"), "{}", r.describe());
    let r = a.run(["--json", "check", "--read-data"]).code_is(1);
    let found = r.json_summary()["result"].clone();
    assert!(found["affected_files"].as_array().unwrap().len() >= 3, "{found:#}");
    for bad in forged.iter().chain([&unindexed]) {
        assert!(r.stdout.contains(&bad.to_string()), "chunk {bad} named: {}", r.describe());
    }

    // Only B is up: the chunks B forged stay unrepaired (never written),
    // everything else comes from B.
    let sb = Server::start_at(&b, &addr_b);
    let first = repair(&a, 1);
    assert_eq!(first["chunks_damaged"], damaged, "{first:#}");
    assert_eq!(first["chunks_repaired"], damaged - 3, "{first:#}");
    assert_eq!(first["repaired_from"][&addr_b], damaged - 3, "{first:#}");
    let unrepaired = first["unrepaired"].as_array().unwrap();
    assert_eq!(unrepaired.len(), 3, "{first:#}");
    for f in &forged {
        let why = unrepaired.iter().find(|u| u.as_str().unwrap().contains(&f.to_string())).expect("named");
        assert!(why.as_str().unwrap().contains("damaged"), "B's forgery was refused as damaged: {why}");
    }
    assert_eq!(first["packs_kept"].as_array().unwrap().len(), 1, "the cut pack still holds damaged records");
    let still = first["after"]["affected_files"].as_array().unwrap();
    assert!(!still.is_empty(), "the files of the unrepaired chunks are named: {first:#}");
    let r = a.run(["--json", "check", "--read-data"]).code_is(1);
    let problems = r.json_summary()["result"]["problems"].clone();
    let problems: Vec<&str> = problems.as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    let chunk_problems: Vec<&&str> = problems.iter().filter(|p| p.starts_with("chunk ")).collect();
    assert_eq!(chunk_problems.len(), 3, "only the forged chunks are still damaged: {problems:#?}");
    for f in &forged {
        assert!(chunk_problems.iter().any(|p| p.contains(&f.to_string())), "{problems:#?}");
    }

    // C back: the rest comes from C, the cut pack is emptied and dropped.
    let sc = Server::start_at(&c, &addr_c);
    let second = repair(&a, 0);
    assert_eq!(second["chunks_damaged"], 3, "{second:#}");
    assert_eq!(second["repaired_from"][&addr_c], 3, "{second:#}");
    assert_eq!(second["packs_retired"].as_array().unwrap().len(), 1, "{second:#}");
    assert!(second["after"]["problems"].as_array().unwrap().is_empty(), "{second:#}");
    sb.kill();
    sc.kill();
    a.check_read_data();
    assert!(!pack.exists(), "the damaged pack is gone");

    // Every buddy gone: the local store alone restores exactly.
    let target = tmp.path().join("restore");
    a.restore("latest", &target);
    assert_tree_matches(&expected, &restored_path(&target, &home), "local restore after repair");
}

#[test]
fn without_buddies_a_repair_reports_what_it_could_not_do() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tree(tmp.path(), 22, 6);
    let a = TestBox::init(tmp.path().join("A")).sealing_alone();
    a.backup(&home);
    let (pack, records) = the_pack(&a);
    flip_payload(&pack, &records[3]);
    let result = repair(&a, 1);
    assert_eq!((result["chunks_damaged"].as_u64(), result["chunks_repaired"].as_u64()), (Some(1), Some(0)));
    assert!(result["unrepaired"][0].as_str().unwrap().contains("no buddies"), "{result:#}");
    assert_eq!(result["after"]["affected_files"].as_array().unwrap().len(), 1, "{result:#}");
    let r = a.run(["check", "--repair"]).code_is(1);
    assert!(r.stdout.contains("affected file: ") && r.stdout.contains("not repaired"), "{}", r.describe());
}

#[test]
fn the_daemon_repairs_after_its_own_local_check_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tree(tmp.path(), 23, 8);
    let a = TestBox::init(tmp.path().join("A")).sealing_alone();
    let b = TestBox::init(tmp.path().join("B"));
    let server = Server::start(&b);
    pair(&a, &b, &server.addr);
    a.run([OsStr::new("backup"), home.as_os_str()]).ok();
    std::fs::write(a.data.join("pastiche.toml"), "[check]\ninterval_seconds = 1\nread_data_percent = 100.0\n").unwrap();
    let shown = a.run(["config"]).ok();
    assert!(
        shown.stdout.contains("[check]") && shown.stdout.contains("read_data_percent = 100.0"),
        "{}",
        shown.describe()
    );

    let mut daemon = Daemon::start(&a, "A", &["--listen", &free_addr(), "--http", "off"]);
    Daemon::wait_status(&a, 60, "a passed local check", |s| s["local_check"]["passed"] == true);
    // Damage behind the running daemon's back.
    let (pack, records) = the_pack(&a);
    for i in [2, 7, 11] {
        flip_payload(&pack, &records[i]);
    }
    // A check that runs while the bytes are being flipped may see only
    // some: the next one finds the rest, so the total is what counts.
    let s = Daemon::wait_status(&a, 60, "repairs after failed checks", |s| {
        s["local_check"]["repair"]["whole"] == true && s["local_check"]["repaired_total"] == 3
    });
    let rec = &s["local_check"];
    assert!(rec["repair"]["repaired"].as_u64() >= Some(1), "{rec:#}");
    // Whole again: no `store_damaged` alert (the health follows within a
    // monitor tick).
    Daemon::wait_status(&a, 10, "no store_damaged alert", |s| {
        !s["health"]["alerts"].as_array().unwrap().iter().any(|x| x["code"] == "store_damaged")
    });
    let human = a.run(["status"]).ok();
    assert!(
        human.stdout.contains("check      last check") && human.stdout.contains("from buddies; the store is whole"),
        "{}",
        human.describe()
    );
    daemon.wait_logged(20, "local check FAILED");
    daemon.wait_logged(20, "local repair: repaired");
    a.run(["check", "--read-data"]).ok();
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(a.data.join("local-check.json")).unwrap()).unwrap();
    assert!(saved["repair"].is_object(), "the record is kept for the next start: {saved:#}");
    daemon.stop();
    server.kill();
    // The flipped records are dead space now, which compaction gives back.
    {
        let store = ChunkStore::open(a.data.join("store")).unwrap();
        assert!(store.compact(1.0).unwrap().bytes_freed > 0, "the damaged records are no longer referenced");
    }
    a.check_read_data();
    let target = tmp.path().join("restore");
    a.restore("latest", &target);
    assert_tree_matches(&manifest(&home), &restored_path(&target, &home), "restore after the daemon's repair");
}

/// A box keeps its own chunks in compressed groups: one flipped byte
/// damages every chunk of a group, `check --read-data` names them, and
/// `check --repair` brings each back from the buddy as a sealed copy.
#[test]
fn a_damaged_group_is_repaired_chunk_by_chunk_from_a_buddy() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tree(tmp.path(), 24, 30);
    let expected = manifest(&home);
    let a = TestBox::init(tmp.path().join("A")).grouping_chunks();
    let b = TestBox::init(tmp.path().join("B"));
    let server = Server::start(&b);
    pair(&a, &b, &server.addr);
    a.run([OsStr::new("backup"), home.as_os_str()]).ok();
    a.check_read_data();

    let packs = a.packs();
    let name = packs.keys().next().unwrap();
    let pack = a.data.join("store/packs").join(name);
    let file = File::open(&pack).unwrap();
    let scan = scan_pack(&file, parse_pack_name(name).unwrap(), None).unwrap();
    let group = scan.records.iter().find(|r| r.header.kind == RecordKind::Group).expect("the backup wrote groups");
    let mut payload = vec![0u8; group.header.len as usize];
    file.read_exact_at(&mut payload, group.offset + RECORD_HEADER_LEN as u64).unwrap();
    let members: Vec<ChunkId> = read_table(&payload).unwrap().iter().map(|c| c.id).collect();
    assert!(members.len() > 1, "a group of several chunks");
    flip_payload(&pack, group);

    let r = a.run(["--json", "check", "--read-data"]).code_is(1);
    for id in &members {
        assert!(r.stdout.contains(&id.to_string()), "chunk {id} of the damaged group is named: {}", r.describe());
    }
    let result = repair(&a, 0);
    assert_eq!(result["chunks_damaged"], members.len(), "{result:#}");
    assert_eq!(result["chunks_repaired"], members.len(), "{result:#}");
    server.kill();
    a.check_read_data();
    let target = tmp.path().join("restore");
    a.restore("latest", &target);
    assert_tree_matches(&expected, &restored_path(&target, &home), "local restore after a group's repair");
}
