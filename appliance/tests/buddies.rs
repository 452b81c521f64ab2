//! Buddies over real TCP on loopback: three boxes, A backing up to B and C.
//! B already holds much of the same software, so it stores little; A's packs
//! are then deleted and A's snapshot comes back from B alone. Forged and
//! replayed deletes are refused; B is killed mid-transfer again and again
//! and A's next sync still completes.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::buddy::*;
use common::*;
use rand::{Rng, SeedableRng};

/// "Installed software" shared by A and B, and A's own files.
fn trees(root: &Path, seed: u64) -> (std::path::PathBuf, std::path::PathBuf) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let software = root.join("software");
    for i in 0..40 {
        write_random(&software.join(format!("lib/lib{i}.so")), rng.gen_range(50_000..600_000), &mut rng);
    }
    let a_home = root.join("a-home");
    copy_tree(&software, &a_home.join("software"));
    for i in 0..15 {
        write_random(&a_home.join(format!("docs/doc{i}.bin")), rng.gen_range(20_000..200_000), &mut rng);
    }
    (software, a_home)
}

#[test]
fn three_boxes_back_each_other_up_and_restore_from_one_buddy() {
    let tmp = tempfile::tempdir().unwrap();
    let (software, a_home) = trees(tmp.path(), 1);
    let a = TestBox::init(tmp.path().join("A"));
    let b = TestBox::init(tmp.path().join("B"));
    let c = TestBox::init(tmp.path().join("C"));
    b.backup(&software);
    let (b_before, c_before) = (b.packs_bytes(), c.packs_bytes());
    let (sb, sc) = (Server::start(&b), Server::start(&c));

    pair(&a, &b, &sb.addr);
    pair(&a, &c, &sc.addr);
    let listed = a.run(["--json", "buddy", "list"]).ok().json_lines();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|b| b["key"].as_str().is_some_and(|k| k.len() == 64)), "keys pinned at add: {listed:?}");

    // The backup ships the new snapshot to both buddies.
    let r = a.run(["backup", a_home.to_str().unwrap()]).ok();
    assert!(r.stdout.matches("synced to").count() == 2, "{}", r.describe());
    let a_sealed = a.packs_bytes();
    let (b_growth, c_growth) = (b.packs_bytes() - b_before, c.packs_bytes() - c_before);
    assert!(
        c_growth as f64 > 0.95 * a_sealed as f64,
        "C holds nothing of A's: it stores all ({c_growth} of {a_sealed})"
    );
    assert!(
        (b_growth as f64) < 0.25 * c_growth as f64,
        "B already held the software: it must store only A's own files ({b_growth} vs {c_growth} on C)"
    );

    // A nothing-changed sync sends no chunk.
    let r = a.run(["--json", "sync"]).ok();
    for line in r.json_lines() {
        assert_eq!(line["report"]["chunks_sent"], 0, "{}", r.describe());
    }

    // A loses its packs; the snapshot comes back from B alone, verified.
    let expected = manifest(&a_home);
    std::fs::remove_dir_all(a.data.join("store/packs")).unwrap();
    std::fs::create_dir_all(a.data.join("store/packs")).unwrap();
    let target = tmp.path().join("restore-from-b");
    let r = a.run(["restore", "latest", "--target", target.to_str().unwrap(), "--from-buddy", &sb.addr]).ok();
    assert!(r.stdout.contains("restored"), "{}", r.describe());
    assert_tree_matches(&expected, &restored_path(&target, &a_home), "restore --from-buddy B");

    // Without --from-buddy, missing chunks come from the nearest buddy.
    let target = tmp.path().join("restore-fallback");
    a.restore("latest", &target);
    assert_tree_matches(&expected, &restored_path(&target, &a_home), "restore with local packs gone");
}

#[test]
fn forged_and_replayed_deletes_are_refused() {
    use pastiche::sync::conn::SecureStream;
    use pastiche_core::session::{ClientEvent, ClientSession};
    use pastiche_core::wire::{encode_frame, DeleteList, ErrorCode, IdList, Message, SignedMessage};
    use pastiche_core::{Identity, NodeId, Signature};

    let tmp = tempfile::tempdir().unwrap();
    let (_, a_home) = trees(tmp.path(), 2);
    let a = TestBox::init(tmp.path().join("A"));
    let b = TestBox::init(tmp.path().join("B"));
    let sb = Server::start(&b);
    pair(&a, &b, &sb.addr);
    a.run(["backup", a_home.to_str().unwrap()]).ok();
    let b_packs = b.packs();

    // Chunk ids A stored on B, from A's own listing.
    let ids: Vec<[u8; 20]> = a
        .run(["chunk", a_home.join("docs/doc0.bin").to_str().unwrap()])
        .ok()
        .stdout
        .lines()
        .map(|l| {
            let id: pastiche_core::ChunkId = l.split(' ').nth(3).unwrap().parse().unwrap();
            id.0
        })
        .collect();

    // A paired attacker with its own key sends deletes signed by another
    // key, then an old epoch, on its own authenticated session.
    let attacker = Identity::from_seed([0xA7; 32]).unwrap();
    let code = invite(&b);
    let tcp = std::net::TcpStream::connect(&sb.addr).unwrap();
    let mut stream = SecureStream::handshake(tcp, &attacker, None).unwrap();
    let mut s = ClientSession::new(attacker.clone(), NodeId::from_name("attacker"), [1; 32], [2; 16])
        .with_pairing_code(&code)
        .unwrap();
    let mut out = vec![0u8; 70_000];
    let mut payload = vec![0u8; 70_000];
    let read = |stream: &mut SecureStream, payload: &mut Vec<u8>| -> usize { stream.read_frame(payload).unwrap() };
    let n = s.start(&mut out).unwrap();
    stream.send(&out[..n]).unwrap();
    let len = read(&mut stream, &mut payload);
    let ClientEvent::SendProof(n) = s.handle(&payload[..len], &mut out).unwrap() else { panic!("challenge") };
    stream.send(&out[..n]).unwrap();
    let len = read(&mut stream, &mut payload);
    assert!(matches!(s.handle(&payload[..len], &mut out).unwrap(), ClientEvent::Welcome(_)));
    let buddy_key = s.buddy_key().unwrap();
    let mut packed = vec![0u8; ids.len() * 20];
    let list = IdList::pack(ids.iter().copied(), &mut packed).unwrap();
    let mut m = DeleteList { epoch: 5, ids: list, signature: Signature([0; 64]) };
    m.sign(&Identity::from_seed([0x55; 32]).unwrap(), &buddy_key, [0; 16]);
    let n = encode_frame(&Message::DeleteList(m), &mut out).unwrap();
    stream.send(&out[..n]).unwrap();
    let len = read(&mut stream, &mut payload);
    match s.handle(&payload[..len], &mut out).unwrap() {
        ClientEvent::Refused { code, .. } => assert_eq!(code, ErrorCode::BadSignature),
        e => panic!("a forged delete must be refused, got {e:?}"),
    }
    drop(stream);

    // A's next sync still works, and B's packs were not touched by the attempt.
    assert_eq!(b.packs(), b_packs, "B's data for A changed after a forged delete");
    a.run(["sync"]).ok();
    sb.kill();
    b.check_read_data();
}

#[test]
fn buddy_killed_mid_transfer_again_and_again() {
    let seed: u64 = std::env::var("PASTICHE_BUDDY_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(7);
    eprintln!("seed {seed} (PASTICHE_BUDDY_SEED)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let tmp = tempfile::tempdir().unwrap();
    let (_, a_home) = trees(tmp.path(), seed);
    let a = TestBox::init(tmp.path().join("A"));
    let b = TestBox::init(tmp.path().join("B"));
    let addr = free_addr();
    {
        let _server = Server::start_at(&b, &addr);
        pair(&a, &b, &addr);
    }
    a.run(["backup", a_home.to_str().unwrap()]).ok(); // B is down: saved locally, shipped later.
    for round in 0..20 {
        // Change something so every round has new data to ship.
        write_random(&a_home.join(format!("docs/round{round}.bin")), rng.gen_range(100_000..2_000_000), &mut rng);
        let _ = a.run(["backup", a_home.to_str().unwrap()]);
        let server = Server::start_at(&b, &addr);
        let mut sync = a.cmd(["sync"]);
        sync.stdout(Stdio::null()).stderr(Stdio::null());
        let mut child = sync.spawn().unwrap();
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..400)));
        server.kill(); // kill -9 the buddy at a random moment of the transfer
        let _ = child.wait();
        // B must be consistent after every crash.
        b.run(["check"]).ok();
    }
    let server = Server::start_at(&b, &addr);
    let r = a.run(["sync"]).ok();
    assert!(r.stdout.contains("synced to"), "{}", r.describe());
    drop(server);
    b.check_read_data();
    // And A's latest snapshot restores exactly from B alone.
    let server = Server::start_at(&b, &addr);
    let expected = manifest(&a_home);
    let target = tmp.path().join("restore");
    a.run(["restore", "latest", "--target", target.to_str().unwrap(), "--from-buddy", &addr]).ok();
    assert_tree_matches(&expected, &restored_path(&target, &a_home), "restore from B after 20 crashes");
    drop(server);
}
