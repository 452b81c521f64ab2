//! The buddy's per-client audit budget, against a real `pastiche serve`
//! over TCP: a paired client flooding it with audits of 64 chunks each
//! (about 1.3 KB asking the buddy to read about 1 MiB here) gets at most
//! the budget's worth answered (4,096 chunk reads an hour), over any
//! number of connections; the rest are refused `RateLimited`, reading
//! nothing, and the session goes on. Meanwhile another client backs up,
//! ships and audits as usual.

mod common;

use std::path::Path;

use common::buddy::*;
use common::*;
use pastiche::repo::{LockMode, Repo};
use pastiche::sync::conn::BuddyRefused;
use pastiche::sync::{self, load_buddies, state};
use pastiche_core::audit::{AuditNonce, MAX_AUDIT_IDS};
use pastiche_core::session::DEFAULT_AUDIT_READS_PER_WINDOW;
use pastiche_core::wire::ErrorCode;
use pastiche_core::ChunkId;
use rand::{Rng, SeedableRng};

fn tree(root: &Path, seed: u64) -> std::path::PathBuf {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let home = root.join(format!("home{seed}"));
    for i in 0..8 {
        write_random(&home.join(format!("f{i}.bin")), rng.gen_range(60_000..200_000), &mut rng);
    }
    home
}

#[test]
fn a_client_flooding_a_buddy_with_audits_is_held_to_its_budget_while_others_are_served() {
    let tmp = tempfile::tempdir().unwrap();
    let flooder = TestBox::init(tmp.path().join("A"));
    let honest = TestBox::init(tmp.path().join("C"));
    let buddy = TestBox::init(tmp.path().join("B"));
    let server = Server::start(&buddy);
    pair(&flooder, &buddy, &server.addr);
    pair(&honest, &buddy, &server.addr);
    // A backup ships to the box's buddies on its own.
    flooder.run([std::ffi::OsStr::new("backup"), tree(tmp.path(), 1).as_os_str()]).ok();

    // The flooder: the paired box A itself, driven in-process, auditing
    // what it really shipped (so each answered id is a real chunk read).
    let repo = Repo::open(&flooder.data, PASSWORD, LockMode::Shared).unwrap();
    let mut entry = load_buddies(&repo.dir).unwrap().remove(0);
    let mut conn = sync::connect(&repo, &mut entry).unwrap();
    let shipped: Vec<ChunkId> =
        state::shipped_chunks(repo.meta.database().unwrap(), &conn.buddy_key).unwrap().into_iter().collect();
    assert!(shipped.len() >= 16, "enough chunks shipped: {}", shipped.len());
    let ids: Vec<ChunkId> = shipped.iter().cycle().take(MAX_AUDIT_IDS).copied().collect();

    // The honest client works alongside the flood.
    let honest_tree = tree(tmp.path(), 2);
    let honest_run = std::thread::spawn(move || {
        honest.run([std::ffi::OsStr::new("backup"), honest_tree.as_os_str()]).ok();
        honest.run(["sync"]).ok();
        honest
    });

    let budget = (DEFAULT_AUDIT_READS_PER_WINDOW as usize) / MAX_AUDIT_IDS;
    let (mut answered, mut refused) = (0, 0);
    for round in 0..2 * budget as u32 {
        // Half-way through, a fresh connection: the budget is the client's,
        // not the session's.
        if round == budget as u32 {
            conn = sync::connect(&repo, &mut entry).unwrap();
        }
        let nonce = AuditNonce([round as u8; 32]);
        match conn.audit(nonce, &ids) {
            Ok(proofs) => {
                assert!(proofs.iter().all(Option::is_some), "every chunk proven");
                answered += 1;
            }
            Err(e) => {
                let r = e.downcast_ref::<BuddyRefused>().unwrap_or_else(|| panic!("refused, not {e:#}"));
                assert_eq!(r.code, ErrorCode::RateLimited, "{r:?}");
                refused += 1;
            }
        }
    }
    assert_eq!(answered, budget, "reads bounded: {answered} audits of {MAX_AUDIT_IDS} answered");
    assert_eq!(refused, budget);
    // The session is still open and serves the client's own reads.
    let mut sealed = Vec::new();
    conn.get_chunk(ids[0], &mut sealed).unwrap();
    drop(conn);
    drop(repo);

    // The other client was served throughout: its sync went through, and
    // its audits have a budget of their own.
    let honest = honest_run.join().unwrap();
    let r = honest.run(["--json", "audit", "--samples", "100000"]).ok();
    let report = &r.json_lines()[0]["report"];
    assert_eq!(report["passed"], true, "{}", r.describe());
    // And the flooder's own `pastiche audit` reports the refusal plainly.
    let r = flooder.run(["audit", "--no-repair"]).code_is(1);
    assert!(r.stdout.contains("RateLimited") || r.stderr.contains("RateLimited"), "{}", r.describe());
}
