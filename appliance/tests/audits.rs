//! Audits run for real: `pastiche serve` buddies over TCP, one of which
//! silently loses 5% of a client's chunks and another whose stored bytes
//! are damaged behind its back. `pastiche audit` catches each (exit 1, the
//! buddy reported and marked suspect), ships again what was lost, and the
//! box then restores exactly from the faithless buddy alone.

mod common;

use std::path::Path;

use common::buddy::*;
use common::buddy_db::*;
use common::*;
use pastiche::store::ChunkStore;
use pastiche_core::{ChunkId, PublicKey};
use rand::{Rng, SeedableRng};

fn tree(root: &Path) -> std::path::PathBuf {
    let mut rng = rand::rngs::StdRng::seed_from_u64(13);
    let home = root.join("home");
    for i in 0..30 {
        write_random(&home.join(format!("docs/doc{i}.bin")), rng.gen_range(60_000..300_000), &mut rng);
    }
    home
}

/// The key of the one client `b` serves.
fn client_key(b: &TestBox) -> PublicKey {
    let clients = b.run(["--json", "clients", "list"]).ok().json_lines();
    assert_eq!(clients.len(), 1, "{clients:?}");
    clients[0]["key"].as_str().unwrap().parse().unwrap()
}

/// Makes buddy `b` (stopped) silently lose every `nth` chunk it holds for
/// `client`: its record and its reference go, as a faithless buddy's would.
/// Returns how many it lost.
fn lose_chunks(b: &TestBox, client: &PublicKey, nth: usize) -> usize {
    let stored: Vec<ChunkId> = edit_client_chunks(b, client, |table, rows| {
        assert!(rows.len() > 100, "the client's chunks are stored under names: {} rows", rows.len());
        rows.iter()
            .step_by(nth)
            .map(|r| {
                table.remove((client.0, r.id.0)).unwrap();
                r.name
            })
            .collect()
    });
    let chunks = ChunkStore::open(b.data.join("store")).unwrap();
    let released = chunks.release(client, &stored).unwrap();
    assert!(released.missing.is_empty(), "references released: {released:?}");
    stored.len()
}

fn audit_report(r: &Run) -> serde_json::Value {
    let lines = r.json_lines();
    assert_eq!(lines.len(), 1, "{}", r.describe());
    lines[0]["report"].clone()
}

#[test]
fn a_buddy_that_silently_loses_chunks_is_caught_and_the_loss_reshipped() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tree(tmp.path());
    let a = TestBox::init(tmp.path().join("A"));
    let b = TestBox::init(tmp.path().join("B"));
    let sb = Server::start(&b);
    pair(&a, &b, &sb.addr);
    a.run(["backup", home.to_str().unwrap()]).ok();

    // An honest buddy passes, with every shipped chunk challenged.
    let r = a.run(["--json", "audit", "--samples", "100000"]).ok();
    let honest = audit_report(&r);
    assert_eq!(honest["passed"], true, "{}", r.describe());
    assert_eq!(honest["missing"], 0);
    let shipped = honest["shipped"].as_u64().unwrap();
    assert!(shipped > 100 && honest["proven"].as_u64().unwrap() >= shipped, "{honest}");

    // B silently drops 5% of A's chunks.
    let addr = sb.addr.clone();
    sb.kill();
    let key = client_key(&b);
    let lost = lose_chunks(&b, &key, 20);
    let sb = Server::start_at(&b, &addr);

    // Caught: exit 1, B named and marked suspect, the loss found whole by
    // the re-check and shipped again.
    let r = a.run(["--json", "audit", "--buddy", &sb.addr, "--samples", "100000"]).code_is(1);
    let caught = audit_report(&r);
    assert_eq!(caught["addr"], sb.addr.as_str());
    assert_eq!(caught["passed"], false);
    assert_eq!(caught["missing"].as_u64(), Some(lost as u64), "{caught}");
    assert_eq!(caught["lost"].as_u64(), Some(lost as u64), "{caught}");
    assert_eq!(caught["reshipped"].as_u64(), Some(lost as u64), "{caught}");
    let records: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.data.join("audits.json")).unwrap()).unwrap();
    assert_eq!(records[&sb.addr]["suspect"], true, "{records}");
    let listed = a.run(["--json", "buddy", "list"]).ok().json_lines();
    assert_eq!(listed[0]["audit"]["suspect"], true, "buddy list shows the failed audit: {listed:?}");
    let r = a.run(["buddy", "list"]).ok();
    assert!(r.stdout.contains("SUSPECT"), "{}", r.describe());
    // The human form names the buddy too.
    let r = a.run(["audit", "--no-repair", "--samples", "100000"]).ok();
    assert!(r.stdout.contains(&format!("audit of {}: passed", sb.addr)), "{}", r.describe());
    let listed = a.run(["--json", "buddy", "list"]).ok().json_lines();
    assert_eq!(listed[0]["audit"]["suspect"], false, "a passed audit clears the suspicion: {listed:?}");
    assert_eq!(listed[0]["audit"]["failures"], 1, "{listed:?}");

    // A's own copy is gone: the snapshot comes back from B alone, exactly.
    let expected = manifest(&home);
    std::fs::remove_dir_all(a.data.join("store/packs")).unwrap();
    std::fs::create_dir_all(a.data.join("store/packs")).unwrap();
    let target = tmp.path().join("restored");
    a.run(["restore", "latest", "--target", target.to_str().unwrap(), "--from-buddy", &sb.addr]).ok();
    assert_tree_matches(&expected, &restored_path(&target, &home), "restore from the repaired buddy");
}

/// Flips one byte every `step` bytes of each pack in `packs` (the pack files
/// a client's sync wrote on the buddy), behind the running buddy's back.
fn damage(b: &TestBox, packs: &[String], step: u64) {
    use std::os::unix::fs::FileExt;
    for name in packs {
        let f = std::fs::OpenOptions::new().read(true).write(true).open(b.data.join("store/packs").join(name)).unwrap();
        let len = f.metadata().unwrap().len();
        let mut at = step / 2;
        while at < len {
            let mut byte = [0u8; 1];
            f.read_exact_at(&mut byte, at).unwrap();
            f.write_all_at(&[byte[0] ^ 0x40], at).unwrap();
            at += step;
        }
    }
}

#[test]
fn a_buddy_whose_bytes_are_damaged_is_caught_and_the_damage_reshipped() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tree(tmp.path());
    let a = TestBox::init(tmp.path().join("A"));
    let b = TestBox::init(tmp.path().join("B"));
    let sb = Server::start(&b);
    pair(&a, &b, &sb.addr);
    let before = b.packs();
    a.run(["backup", home.to_str().unwrap()]).ok();
    let new_packs: Vec<String> = b.packs().into_keys().filter(|p| !before.contains_key(p)).collect();
    assert!(!new_packs.is_empty(), "the sync wrote packs on B");

    // Rot in B's packs: some of A's chunks no longer read back.
    damage(&b, &new_packs, 200_000);
    let r = a.run(["--json", "audit", "--samples", "100000"]).code_is(1);
    let caught = audit_report(&r);
    assert_eq!(caught["addr"], sb.addr.as_str());
    assert_eq!(caught["passed"], false);
    let bad = caught["missing"].as_u64().unwrap() + caught["corrupt"].as_u64().unwrap();
    assert!(bad >= 3, "damaged chunks found: {caught}");
    assert_eq!(caught["lost"].as_u64(), Some(bad), "{caught}");
    assert_eq!(caught["reshipped"].as_u64(), Some(bad), "the damaged chunks were sent again: {caught}");

    // The buddy now serves good copies: a full audit passes and the box
    // restores exactly from B alone.
    let r = a.run(["--json", "audit", "--samples", "100000"]).ok();
    assert_eq!(audit_report(&r)["passed"], true, "{}", r.describe());
    let expected = manifest(&home);
    std::fs::remove_dir_all(a.data.join("store/packs")).unwrap();
    std::fs::create_dir_all(a.data.join("store/packs")).unwrap();
    let target = tmp.path().join("restored");
    a.run(["restore", "latest", "--target", target.to_str().unwrap(), "--from-buddy", &sb.addr]).ok();
    assert_tree_matches(&expected, &restored_path(&target, &home), "restore from the repaired buddy");
}
