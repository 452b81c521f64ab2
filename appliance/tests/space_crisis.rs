//! A space crisis on a real small disk: the buddy B's data lives on a
//! 64 MiB tmpfs mounted in a private mount namespace (root only; CI runs
//! as root, and the test fails, never skips, when it cannot mount). Two
//! clients ship to B at different times of B's injected clock
//! (`PASTICHE_TEST_CLOCK_OFFSET`); then the disk fills up (a ballast file
//! beside B's data, as the NAS's own files would) below B's free-space
//! floor. B drops the longest-silent client, and only it (the crisis ends
//! once the floor plus a tenth is free), compacts its store so the space
//! is really back, and keeps its own backups restorable. The dropped
//! client sees the notice at its next contact, reports it, and re-homes its
//! data on a spare buddy, from which it restores exactly.
//!
//! The repeated-notice attack: a paired buddy turned hostile hands a drop
//! notice with a new number at every contact while it keeps everything.
//! Each sync costs one full offer and ships only what it lacks; the box and
//! its other buddy are untouched, restores are exact, and from the second
//! drop on the buddy stays marked for replacement whatever it commits.

mod common;

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

use common::buddy::*;
use common::buddy_db::*;
use common::daemon::*;
use common::*;
use pastiche_core::wire::DropNotice;
use pastiche_core::PublicKey;
use rand::SeedableRng;
use redb::{ReadableTableMetadata, TableDefinition};
use serde_json::Value;

const DAY: u64 = 86_400;
const MIB: u64 = 1 << 20;
const OFFSET: &str = "PASTICHE_TEST_CLOCK_OFFSET";
const FLOOR: u64 = 20 * MIB;

/// Set in the copy of this test that runs inside the private mount namespace.
const INSIDE: &str = "PASTICHE_SPACE_CRISIS_NAMESPACE";

/// Runs the test `name` again inside a private mount namespace (`unshare
/// -m`, mounts not propagated): whatever it mounts is gone with it. Returns
/// false in the outer run (after checking that the inner one passed), true
/// inside.
fn in_private_namespace(name: &str) -> bool {
    if std::env::var_os(INSIDE).is_some() {
        return true;
    }
    assert!(is_root(), "the space crisis test mounts a tmpfs: run it as root (CI does)");
    let st = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(INSIDE, "1")
        .status()
        .expect("run unshare (util-linux)");
    assert!(st.success(), "the test inside the private mount namespace failed: {st}");
    false
}

/// Mounts a tmpfs of `size_mib` at `dir` (inside the private namespace).
fn mount_tmpfs(dir: &Path, size_mib: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
        .arg(dir)
        .status()
        .expect("run mount");
    assert!(st.success(), "cannot mount a tmpfs at {}", dir.display());
}

fn free_bytes(dir: &Path) -> u64 {
    let st = rustix::fs::statvfs(dir).unwrap();
    st.f_bavail * st.f_frsize
}

fn tree(root: &Path, seed: u64, files: usize, size: usize) -> std::path::PathBuf {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for i in 0..files {
        write_random(&root.join(format!("f{i}.bin")), size, &mut rng);
    }
    root.to_path_buf()
}

fn clients(b: &TestBox) -> Vec<serde_json::Value> {
    b.run(["--json", "clients", "list"]).ok().json_lines()
}

fn client<'a>(list: &'a [serde_json::Value], key: &str) -> &'a serde_json::Value {
    list.iter().find(|c| c["key"] == key).unwrap_or_else(|| panic!("no client {key} in {list:?}"))
}

fn key_of(b: &TestBox) -> String {
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(b.data.join("box.json")).unwrap()).unwrap();
    cfg["public_key"].as_str().expect("box.json has the public key").to_string()
}

fn start_b(b: &TestBox, addr: &str, offset_days: u64) -> Daemon {
    std::env::set_var(OFFSET, (offset_days * DAY).to_string());
    Daemon::start(b, "B", &["--listen", addr, "--http", "off"])
}

#[test]
fn a_full_disk_drops_the_longest_silent_client_which_notices_and_re_homes_on_a_spare() {
    if !in_private_namespace("a_full_disk_drops_the_longest_silent_client_which_notices_and_re_homes_on_a_spare") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let disk = tmp.path().join("disk");
    mount_tmpfs(&disk, 64);
    let b = TestBox::init(disk.join("B"));
    std::fs::write(
        b.data.join("pastiche.toml"),
        format!("[serve]\nmin_free = \"{} MiB\"\n[audit]\nenabled = false\n", FLOOR / MIB),
    )
    .unwrap();
    let (a1, a2, s) = (
        TestBox::init(tmp.path().join("A1")),
        TestBox::init(tmp.path().join("A2")),
        TestBox::init(tmp.path().join("S")),
    );
    let (k1, k2) = (key_of(&a1), key_of(&a2));
    let home1 = tree(&tmp.path().join("home1"), 1, 4, 4 << 20);
    let home2 = tree(&tmp.path().join("home2"), 2, 3, 2 << 20);
    let home_b = tree(&tmp.path().join("homeB"), 3, 2, 1 << 20);
    let expected1 = manifest(&home1);
    let addr = free_addr();

    // A1 ships on day 0, A2 on day 3 (B's clock); B backs itself up too.
    let mut daemon = start_b(&b, &addr, 0);
    pair(&a1, &b, &addr);
    let r = a1.run([OsStr::new("backup"), home1.as_os_str()]).ok();
    assert!(r.stdout.contains("synced to"), "{}", r.describe());
    daemon.stop();
    let mut daemon = start_b(&b, &addr, 3);
    pair(&a2, &b, &addr);
    a2.run([OsStr::new("backup"), home2.as_os_str()]).ok();
    b.run([OsStr::new("backup"), home_b.as_os_str()]).ok();
    daemon.stop();

    // Day 5: A1 silent 5 days, A2 2 days: A1 goes first.
    let mut daemon = start_b(&b, &addr, 5);
    let before = clients(&b);
    let used2 = client(&before, &k2)["used_bytes"].as_u64().unwrap();
    assert!(client(&before, &k1)["used_bytes"].as_u64().unwrap() > 15 * MIB, "{before:?}");
    assert!(used2 > 5 * MIB, "{before:?}");
    assert_eq!(client(&before, &k1)["crisis_rank"], 1, "the longest silent first: {before:?}");
    assert_eq!(client(&before, &k2)["crisis_rank"], 2, "{before:?}");
    let text = b.run(["clients", "list"]).ok().stdout;
    assert!(text.contains("space crisis policy"), "the policy is stated: {text}");

    // The disk fills up: 14 MiB free, below the 20 MiB floor.
    let free = free_bytes(&disk);
    assert!(free > FLOOR + 4 * MIB, "room before the ballast: {free}");
    let ballast = vec![0x5au8; (free - 14 * MIB) as usize];
    std::fs::write(disk.join("ballast"), &ballast).unwrap();
    drop(ballast);
    assert!(free_bytes(&disk) < FLOOR);
    wait_for(60, "A1's data to be dropped", || client(&clients(&b), &k1)["used_bytes"] == 0);
    wait_for(30, "the crisis to end", || daemon.logged("space crisis over"));
    let after = clients(&b);
    assert_eq!(client(&after, &k2)["used_bytes"], used2, "A2 was not needed to get back above the floor: {after:?}");
    let dropped = &client(&after, &k1)["dropped"];
    assert_eq!(dropped["reason"], "space_crisis", "{after:?}");
    assert_eq!(dropped["seq"], 1);
    assert!(dropped["delivered_at"].is_null(), "not told yet: {dropped}");
    assert!(client(&after, &k2)["dropped"].is_null());
    daemon.wait_logged(20, &format!("space crisis: dropped client {k1}"));
    assert!(!daemon.logged(&format!("space crisis: dropped client {k2}")), "A2 stays");
    assert!(free_bytes(&disk) >= FLOOR + FLOOR / 10, "the space is really back (compacted): {}", free_bytes(&disk));

    // B's own backups are whole.
    let target = tmp.path().join("restoredB");
    b.restore("latest", &target).ok();
    assert_tree_matches(&manifest(&home_b), &restored_path(&target, &home_b), "B's own backup after the crisis");

    // A1's next contact: it is told, reports it and forgets what it shipped
    // there (B has room for part of it only: that sync fails, nothing is
    // committed, and the floor holds).
    let r = a1.run(["sync"]);
    assert!(r.stderr.contains("dropped our data"), "{}", r.describe());
    assert!(r.stderr.contains("space crisis"), "{}", r.describe());
    let listed = a1.run(["--json", "buddy", "list"]).ok().json_lines();
    assert_eq!(listed[0]["dropped"]["seq"], 1, "{listed:?}");
    assert_eq!(listed[0]["dropped"]["settled"], false, "{listed:?}");
    assert!(a1.run(["buddy", "list"]).ok().stdout.contains("DROPPED"));
    assert!(!client(&clients(&b), &k1)["dropped"]["delivered_at"].is_null(), "B saw the notice delivered");
    // Told again at every contact, acted on once.
    let again = a1.run(["sync"]);
    assert!(!again.stderr.contains("dropped our data"), "{}", again.describe());

    // Re-homed on a spare: it gets a full copy, and A1 restores from it alone.
    let spare = Server::start(&s);
    pair(&a1, &s, &spare.addr);
    let r = a1.run(["sync"]);
    assert!(r.stdout.contains(&spare.addr) || r.stderr.contains(&spare.addr), "{}", r.describe());
    daemon.stop();
    std::fs::remove_dir_all(&a1.data).unwrap();
    let name = TestBox::name_for(&a1.data);
    a1.run(["recover", "--name", &name, "--via", &spare.addr]).ok();
    let target = tmp.path().join("restored1");
    a1.restore("latest", &target).ok();
    assert_tree_matches(&expected1, &restored_path(&target, &home1), "A1 restored from the spare");
    std::env::remove_var(OFFSET);
}

/// Nobody but the pinned buddy can hand a client a notice: another box at
/// its address is refused at the channel handshake, before any request,
/// and the client forgets nothing of what it shipped.
#[test]
fn a_box_posing_as_the_buddy_cannot_make_the_client_forget_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) =
        (TestBox::init(tmp.path().join("A")), TestBox::init(tmp.path().join("B")), TestBox::init(tmp.path().join("C")));
    let home = tree(&tmp.path().join("home"), 7, 2, 300_000);
    let addr = free_addr();
    let server = Server::start_at(&b, &addr);
    pair(&a, &b, &addr);
    a.run([OsStr::new("backup"), home.as_os_str()]).ok();
    server.kill();

    // C, another box, takes B's address.
    let impostor = Server::start_at(&c, &addr);
    let r = a.run(["sync"]);
    assert_ne!(r.code, Some(0), "{}", r.describe());
    assert!(r.stderr.contains("key") && !r.stderr.contains("dropped our data"), "{}", r.describe());
    impostor.kill();
    let listed = a.run(["--json", "buddy", "list"]).ok().json_lines();
    assert!(listed[0]["dropped"].is_null(), "{listed:?}");

    // Back with B: nothing to offer again, nothing went back.
    let _server = Server::start_at(&b, &addr);
    let r = a.run(["--json", "sync"]).ok();
    let lines = r.json_lines();
    let report = &lines.iter().find(|l| l["message_type"] == "sync").expect("a sync report")["report"];
    assert_eq!(report["chunks_offered"], 0, "the shipped state is intact: {report}");
    assert_eq!(report["went_back"], false);
}

/// The sync report of each buddy in the JSON output of `sync` or `backup`,
/// by address.
fn sync_reports(r: &Run) -> std::collections::BTreeMap<String, Value> {
    let reports: std::collections::BTreeMap<String, Value> = r
        .json_lines()
        .into_iter()
        .filter(|l| l["message_type"] == "sync")
        .map(|l| (l["report"]["addr"].as_str().unwrap().to_string(), l["report"].clone()))
        .collect();
    assert_eq!(reports.len(), 2, "both buddies synced: {}", r.describe());
    reports
}

/// `buddy list --json`, by address.
fn buddy_list(a: &TestBox) -> std::collections::BTreeMap<String, Value> {
    let lines = a.run(["--json", "buddy", "list"]).ok().json_lines();
    lines.into_iter().map(|l| (l["addr"].as_str().unwrap().to_string(), l)).collect()
}

/// The client's record of what it shipped to each buddy and of the drop
/// notices it acted on (`appliance/src/sync/state.rs`, `sync/notice.rs`).
const SHIPPED_CHUNKS: TableDefinition<&[u8], ()> = TableDefinition::new("sync_chunks");
const NOTICES_SEEN: TableDefinition<[u8; 32], NoticeSeenRow> = TableDefinition::new("sync_drop_notices");
/// (seq, dropped at, bytes, reason, seen at, state).
type NoticeSeenRow = (u64, u64, u64, u8, u64, u8);

/// How many chunks box `a` records as shipped to `buddy`, and how many
/// notice rows it keeps in all.
fn client_records(a: &TestBox, buddy: &PublicKey) -> (usize, u64) {
    let db = redb::Database::open(a.data.join("meta.redb")).unwrap();
    let txn = db.begin_read().unwrap();
    let shipped = txn.open_table(SHIPPED_CHUNKS).unwrap();
    let chunks = shipped
        .range(&buddy.0[..]..)
        .unwrap()
        .map(|r| r.unwrap())
        .take_while(|(k, _)| k.value()[..32] == buddy.0)
        .count();
    let notices = txn.open_table(NOTICES_SEEN).unwrap().len().unwrap();
    (chunks, notices)
}

#[test]
fn a_buddy_that_numbers_a_new_drop_notice_at_every_contact_costs_one_offer_per_sync_and_is_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) =
        (TestBox::init(tmp.path().join("A")), TestBox::init(tmp.path().join("B")), TestBox::init(tmp.path().join("C")));
    let (key_a, key_b, key_c): (PublicKey, PublicKey, PublicKey) =
        (key_of(&a).parse().unwrap(), key_of(&b).parse().unwrap(), key_of(&c).parse().unwrap());
    let home = tree(&tmp.path().join("home"), 11, 8, 150_000);
    let addr_b = free_addr();
    let mut server_b = Server::start_at(&b, &addr_b);
    let server_c = Server::start(&c);
    let addr_c = server_c.addr.clone();
    pair(&a, &b, &addr_b);
    pair(&a, &c, &addr_c);
    let first = sync_reports(&a.run([OsStr::new("--json"), OsStr::new("backup"), home.as_os_str()]).ok());
    // Every chunk of the box, as offered to each buddy once.
    let mut chunks = first[&addr_c]["chunks_offered"].as_u64().unwrap();
    assert!(chunks >= 8, "{first:?}");
    assert_eq!(first[&addr_b]["chunks_offered"], chunks);
    let mut epoch_b = first[&addr_b]["epoch"].as_u64().unwrap();

    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    for seq in 1..=3u64 {
        // B, stopped, numbers a new notice; it keeps all it holds. A has
        // new data meanwhile.
        server_b.kill();
        let notice =
            DropNotice { seq, dropped_at: 1_700_000_000 + seq, bytes: 1 << 30, reason: DropNotice::SPACE_CRISIS };
        set_drop_notice(&b, &key_a, &notice);
        server_b = Server::start_at(&b, &addr_b);
        write_random(&home.join(format!("new{seq}.bin")), 120_000, &mut rng);

        let r = a.run([OsStr::new("--json"), OsStr::new("backup"), home.as_os_str()]).ok();
        assert!(r.stderr.contains("dropped our data"), "the notice is reported: {}", r.describe());
        let reports = sync_reports(&r);
        let (to_b, to_c) = (&reports[&addr_b], &reports[&addr_c]);
        // C, untouched, is offered the new chunks only; its shipped state holds.
        assert!(to_c["dropped"].is_null() && to_c["went_back"] == false, "{to_c}");
        let new = to_c["chunks_offered"].as_u64().unwrap();
        assert!(new >= 1 && to_c["chunks_sent"] == new, "{to_c}");
        chunks += new;
        // B: the notice acted on, one full offer (each chunk once), and only
        // what it lacks shipped; the commit went through.
        assert_eq!(to_b["dropped"]["seq"], seq, "{to_b}");
        assert_eq!(to_b["chunks_offered"], chunks, "one offer of every chunk, no more: {to_b}");
        assert_eq!(to_b["chunks_sent"], new, "B lacked only the new chunks: {to_b}");
        let epoch = to_b["epoch"].as_u64().unwrap();
        assert!(epoch > epoch_b, "committed at a new epoch: {to_b}");
        epoch_b = epoch;

        // The rule: a first drop is settled by the commit that followed it;
        // a drop again soon after stays unsettled (the daemon replaces the
        // buddy) whatever B commits.
        let listed = buddy_list(&a);
        let dropped = &listed[&addr_b]["dropped"];
        assert_eq!(dropped["seq"], seq, "{dropped}");
        assert_eq!(dropped["settled"], seq == 1, "{dropped}");
        assert_eq!(dropped["repeated"], seq > 1, "{dropped}");
        assert!(listed[&addr_c]["dropped"].is_null());

        // Told the same notice again: acted on once, nothing offered again.
        let again = sync_reports(&a.run(["--json", "sync"]).ok());
        for (addr, report) in &again {
            assert!(report["dropped"].is_null(), "{addr}: {report}");
            assert_eq!(report["chunks_offered"], 0, "{addr}: nothing to offer again: {report}");
        }
    }
    let text = a.run(["buddy", "list"]).ok().stdout;
    assert!(text.contains("being replaced"), "{text}");

    // What A keeps is bounded by its own data, whatever B says: one notice
    // row, each chunk recorded once per buddy.
    assert_eq!(client_records(&a, &key_b), (chunks as usize, 1));
    assert_eq!(client_records(&a, &key_c).0, chunks as usize);
    a.check_read_data();
    let expected = manifest(&home);
    let target = tmp.path().join("restored-local");
    a.restore("latest", &target);
    assert_tree_matches(&expected, &restored_path(&target, &home), "A's own store");

    // B, for all its lies, holds everything: A recovers and restores from
    // it alone; then from C alone.
    drop(server_c);
    std::fs::remove_dir_all(&a.data).unwrap();
    let name = TestBox::name_for(&a.data);
    a.run(["recover", "--name", &name, "--via", &addr_b]).ok();
    let target = tmp.path().join("restored-b");
    a.restore("latest", &target);
    assert_tree_matches(&expected, &restored_path(&target, &home), "restored from B alone");
    server_b.kill();
    let _server_c = Server::start_at(&c, &addr_c);
    let target = tmp.path().join("restored-c");
    a.restore("latest", &target);
    assert_tree_matches(&expected, &restored_path(&target, &home), "restored from C alone");
}
