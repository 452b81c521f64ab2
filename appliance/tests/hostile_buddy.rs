//! A hostile buddy sending frames nobody asked for (issue 8: every peer is
//! an adversary), against the real CLI over real TCP on loopback.
//!
//! The hostile buddy is buddy B turned bad: a relay that holds B's
//! identity (so A's pinned key checks, and the channel is the real one),
//! runs the secure channel and the session of `docs/PROTOCOL.md` properly,
//! and forwards A's requests to B's real `pastiche serve` (the relay's own
//! connection there proves A's key, so B answers from A's data), but adds
//! answers to what it sends back: answers for chunks never requested,
//! every answer twice, "not held" refusals nobody asked for, answers
//! before any request, a flood of them, quota refusals without end.
//!
//! Each case shows the command ends (a watchdog fails the test on a hang),
//! its error or log names the buddy, and the box's state is right: a
//! restore with the honest buddy C left is exact; a sync through the
//! hostile buddy records nothing as shipped or committed there; and once
//! the buddy behaves, a sync and a restore through it are exact.

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::buddy::*;
use common::secure::{self, SecureEnd};
use common::*;
use pastiche::repo::{LockMode, Repo};
use pastiche_core::wire::{Chunk, ErrorCode, ErrorMsg, Flushed, Message, Need, Staged};
use pastiche_core::{ChunkId, Identity, PublicKey};
use rand::{Rng, SeedableRng};

/// How long any one command may take before the test calls it a hang.
const WATCHDOG: Duration = Duration::from_secs(120);
/// Unasked frames sent at once by [`Attack::Flood`].
const FLOOD: usize = 20_000;

/// What the hostile buddy adds to the answers it relays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attack {
    /// Nothing: an honest relay.
    None,
    /// Before each `Chunk` or `Need` answer, a `Chunk` for an id never
    /// requested (carrying the real answer's bytes when it is a chunk).
    NeverAsked,
    /// Every answer after the welcome goes out twice.
    Twice,
    /// After each `Chunk` answer, a "not held" refusal nobody asked for
    /// (it carries no id: the client takes it for its next request, whose
    /// real answer then comes unasked).
    ExtraNotHeld,
    /// Right after the welcome, before any request: a chunk, a need, a
    /// flush, a staged epoch and a not-held refusal.
    BeforeRequest,
    /// Right after the welcome, [`FLOOD`] unasked answers of every kind.
    Flood,
    /// Right after the welcome, quota refusals without end (a refused
    /// upload has no answer of its own, so they are not matched to a
    /// request; only their number is bounded: one per upload sent).
    EndlessRefusals,
    /// Staging kept per connection, as a buddy holding one session state
    /// per connection does: a `Commit` counting objects on a connection
    /// that carried none of them is refused (the client staged them on a
    /// second connection), as the session refuses a staged set that is not
    /// what the client signed. Not a breach: the client stages again on one
    /// connection.
    StagingPerConnection,
    /// Every `Commit` refused that way.
    RefuseCommits,
}

/// Buddy B turned hostile (see the module's documentation).
struct HostileBuddy {
    addr: String,
    attack: Arc<Mutex<Attack>>,
    /// Unasked frames sent since the attack was set.
    injected: Arc<AtomicU64>,
}

impl HostileBuddy {
    /// Listens on loopback as `buddy` (B's identity), relaying to B's real
    /// server at `upstream` as `client` (A's identity).
    fn start(buddy: Identity, client: Identity, upstream: String) -> HostileBuddy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let attack = Arc::new(Mutex::new(Attack::None));
        let injected = Arc::new(AtomicU64::new(0));
        let (a, n) = (attack.clone(), injected.clone());
        std::thread::spawn(move || {
            for sock in listener.incoming() {
                let Ok(sock) = sock else { continue };
                let (buddy, client, upstream, a, n) =
                    (buddy.clone(), client.clone(), upstream.clone(), a.clone(), n.clone());
                let attack = *a.lock().unwrap();
                std::thread::spawn(move || relay(sock, &buddy, &client, &upstream, attack, n));
            }
        });
        HostileBuddy { addr, attack, injected }
    }

    /// Makes the connections from now on run `attack`.
    fn set(&self, attack: Attack) {
        *self.attack.lock().unwrap() = attack;
        self.injected.store(0, Ordering::SeqCst);
    }

    fn injected(&self) -> u64 {
        self.injected.load(Ordering::SeqCst)
    }
}

/// One connection: the channel as B, a connection to B's server as A,
/// requests forwarded as they are (but commits `attack` refuses), answers
/// forwarded with `attack`'s frames added. Ends when either side does.
fn relay(
    mut down_sock: TcpStream,
    buddy: &Identity,
    client: &Identity,
    upstream: &str,
    attack: Attack,
    n: Arc<AtomicU64>,
) {
    let Ok(down) = secure::accept(&mut down_sock, buddy) else { return };
    let down = SecureEnd::new(down_sock, down);
    let Ok(mut up_sock) = TcpStream::connect(upstream) else { return down.shutdown() };
    let Ok(up) = secure::connect(&mut up_sock, client, Some(buddy.public_key())) else { return down.shutdown() };
    let up = SecureEnd::new(up_sock, up);
    let (requests, to_buddy, to_client, refused) = (down.reader(), up.clone(), down.clone(), n.clone());
    let forward = std::thread::spawn(move || {
        let mut requests = requests;
        let mut objects_here = false;
        while let Ok(p) = requests.next_payload() {
            if refuses_commit(attack, &p, &mut objects_here) {
                refused.fetch_add(1, Ordering::SeqCst);
                let refusal = secure::payload(&Message::Error(ErrorMsg {
                    code: ErrorCode::UnexpectedMessage,
                    message: "staged objects missing",
                }));
                if to_client.send_payloads([&refusal[..]]).is_err() {
                    break;
                }
                continue;
            }
            if to_buddy.send_payloads([&p[..]]).is_err() {
                break;
            }
        }
        to_buddy.shutdown();
    });
    let mut answers = up.reader();
    let mut rng = rand::rngs::StdRng::from_entropy();
    let mut welcomed = false;
    while let Ok(p) = answers.next_payload() {
        let (out, added) = with_attack(attack, &p, &mut welcomed, &mut rng);
        n.fetch_add(added as u64, Ordering::SeqCst);
        if down.send_payloads(out.iter().map(Vec::as_slice)).is_err() {
            break;
        }
        if attack == Attack::EndlessRefusals && welcomed {
            let refusal = secure::payload(&Message::Error(ErrorMsg { code: ErrorCode::QuotaExceeded, message: "" }));
            let batch = vec![&refusal[..]; 1000];
            while down.send_payloads(batch.iter().copied()).is_ok() {
                n.fetch_add(batch.len() as u64, Ordering::SeqCst);
            }
            break;
        }
    }
    down.shutdown();
    up.shutdown();
    let _ = forward.join();
}

/// Whether `attack` refuses the client's request `p` (a `Commit`);
/// `objects_here` tracks whether this connection carried objects.
fn refuses_commit(attack: Attack, p: &[u8], objects_here: &mut bool) -> bool {
    if !matches!(attack, Attack::StagingPerConnection | Attack::RefuseCommits) {
        return false;
    }
    match Message::decode(p) {
        Ok(Message::PutObject(_)) => {
            *objects_here = true;
            false
        }
        Ok(Message::Commit(c)) => attack == Attack::RefuseCommits || (c.objects > 0 && !*objects_here),
        _ => false,
    }
}

/// A chunkId nobody asked for.
fn random_id(rng: &mut impl Rng) -> ChunkId {
    ChunkId(rng.gen())
}

/// The payloads to send for the buddy's answer `p`, and how many of them
/// were added.
fn with_attack(attack: Attack, p: &[u8], welcomed: &mut bool, rng: &mut impl Rng) -> (Vec<Vec<u8>>, usize) {
    let msg = Message::decode(p).expect("B's server sends well-formed frames");
    let junk = [0x5a; 64];
    let mut out = Vec::new();
    let mut added = Vec::new();
    if !*welcomed {
        out.push(p.to_vec());
        if let Message::Welcome(_) = msg {
            *welcomed = true;
            let unasked = |rng: &mut dyn rand::RngCore, i: usize| -> Vec<u8> {
                let id = ChunkId({
                    let mut id = [0u8; 20];
                    rng.fill_bytes(&mut id);
                    id
                });
                match i % 5 {
                    0 => secure::payload(&Message::Chunk(Chunk { id, sealed: &junk })),
                    1 => secure::payload(&Message::Need(Need { bitmap: &[0] })),
                    2 => secure::payload(&Message::Flushed(Flushed { stored: 1 })),
                    3 => secure::payload(&Message::Staged(Staged { epoch: 7 })),
                    _ => secure::payload(&Message::Error(ErrorMsg { code: ErrorCode::NotFound, message: "" })),
                }
            };
            match attack {
                Attack::BeforeRequest => added.extend((0..5).map(|i| unasked(rng, i))),
                Attack::Flood => added.extend((0..FLOOD).map(|i| unasked(rng, i))),
                _ => {}
            }
        }
        let n = added.len();
        out.extend(added);
        return (out, n);
    }
    match (attack, msg) {
        (Attack::NeverAsked, Message::Chunk(c)) => {
            added.push(secure::payload(&Message::Chunk(Chunk { id: random_id(rng), sealed: c.sealed })));
        }
        (Attack::NeverAsked, Message::Need(_)) => {
            added.push(secure::payload(&Message::Chunk(Chunk { id: random_id(rng), sealed: &junk })));
        }
        _ => {}
    }
    let n = added.len();
    out.extend(added);
    out.push(p.to_vec());
    if let (Attack::ExtraNotHeld, Message::Chunk(_)) = (attack, msg) {
        out.push(secure::payload(&Message::Error(ErrorMsg { code: ErrorCode::NotFound, message: "not held" })));
        return (out, n + 1);
    }
    if attack == Attack::Twice && !matches!(msg, Message::Error(_)) {
        out.push(p.to_vec());
        return (out, n + 1);
    }
    (out, n)
}

/// A box's identity (its data directory is not in use).
fn identity_of(b: &TestBox) -> Identity {
    Repo::open(&b.data, PASSWORD, LockMode::Shared).unwrap().identity.clone()
}

/// What box `a` recorded about buddy `key`: chunks shipped there and the
/// epoch committed there.
fn shipped_to(a: &TestBox, key: &PublicKey) -> (usize, u64) {
    let repo = Repo::open(&a.data, PASSWORD, LockMode::Shared).unwrap();
    let db = repo.meta.database().unwrap();
    let shipped = pastiche::sync::state::shipped_chunks(db, key).unwrap().len();
    let committed = pastiche::sync::floor::load(db, key).unwrap().committed;
    (shipped, committed)
}

/// Files of many sizes (a few hundred chunks), with distinct mtimes.
fn source_tree(root: &Path) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(8);
    for i in 0..24 {
        let len = if i % 4 == 0 { rng.gen_range(150_000..400_000) } else { rng.gen_range(100..30_000) };
        write_random(&root.join(format!("d{}/f{i}.bin", i % 3)), len, &mut rng);
    }
    stamp_distinct_mtimes(root, 1_600_000_000);
}

/// Box A with a source tree, paired with box B (served) through the
/// relay while it is still honest.
struct Scene {
    tmp: tempfile::TempDir,
    home: std::path::PathBuf,
    expected: Manifest,
    a: TestBox,
    b_key: PublicKey,
    hostile: HostileBuddy,
    /// B's server, stopped when the scene ends.
    _b_server: Server,
}

impl Scene {
    fn paired_through_relay() -> Scene {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        source_tree(&home);
        let expected = manifest(&home);
        let a = TestBox::init(tmp.path().join("A"));
        let b = TestBox::init(tmp.path().join("B"));
        let (a_id, b_id) = (identity_of(&a), identity_of(&b));
        let b_key = b_id.public_key();
        let server = Server::start(&b);
        let hostile = HostileBuddy::start(b_id, a_id, server.addr.clone());
        pair(&a, &b, &hostile.addr);
        Scene { tmp, home, expected, a, b_key, hostile, _b_server: server }
    }
}

/// Restores A's latest snapshot from the relay alone into `target` and
/// checks it is exactly `home` as `expected` lists it.
fn assert_restores_from(
    a: &TestBox,
    hostile: &HostileBuddy,
    target: &Path,
    home: &Path,
    expected: &Manifest,
    what: &str,
) {
    Run::watched(
        a.cmd(["restore", "latest", "--target", target.to_str().unwrap(), "--from-buddy", &hostile.addr]),
        WATCHDOG,
    )
    .ok();
    assert_tree_matches(expected, &restored_path(target, home), what);
}

/// Asserts a failed run's output names the buddy at `addr` and the
/// protocol breach.
fn assert_names_breach(r: &Run, addr: &str, what: &str) {
    let out = format!("{}{}", r.stdout, r.stderr);
    assert!(out.contains(addr), "{what}: the error does not name the buddy {addr}\n{}", r.describe());
    assert!(out.contains("not asked for"), "{what}: the error does not say what the buddy did\n{}", r.describe());
}

#[test]
fn a_restore_with_a_buddy_answering_unasked_fails_over_to_the_honest_one_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    source_tree(&home);
    // Two files of a few hundred chunks each: the restore then keeps more
    // requests waiting than the honest buddy's pipelines take, so the
    // hostile one is always asked for several chunks at once and reads past
    // its own extra answers. With small files alone, a loaded machine could
    // let the honest buddy take all but one or two requests, and a breach
    // sent after the last answer was never read (nor is it a breach then).
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    for i in 0..2 {
        write_random(&home.join(format!("big{i}.bin")), 4 << 20, &mut rng);
    }
    stamp_distinct_mtimes(&home, 1_600_000_000);
    let expected = manifest(&home);
    let a = TestBox::init(tmp.path().join("A"));
    let (b, c) = (TestBox::init(tmp.path().join("B")), TestBox::init(tmp.path().join("C")));
    let (a_id, b_id) = (identity_of(&a), identity_of(&b));
    let (sb, sc) = (Server::start(&b), Server::start(&c));
    pair(&a, &b, &sb.addr);
    pair(&a, &c, &sc.addr);
    let r = a.run(["backup", home.to_str().unwrap()]).ok();
    assert_eq!(r.stdout.matches("synced to").count(), 2, "{}", r.describe());

    // A is lost and recovered through C: every chunk comes from buddies.
    std::fs::remove_dir_all(&a.data).unwrap();
    a.run(["recover", "--name", &TestBox::name_for(&a.data), "--via", &sc.addr]).ok();
    let hostile = HostileBuddy::start(b_id, a_id, sb.addr.clone());
    let list = a.data.join("buddies.json");
    let text = std::fs::read_to_string(&list).unwrap();
    std::fs::write(&list, text.replace(&sb.addr, &hostile.addr)).unwrap();

    for attack in [Attack::NeverAsked, Attack::Twice, Attack::ExtraNotHeld, Attack::BeforeRequest, Attack::Flood] {
        hostile.set(attack);
        let target = tmp.path().join(format!("restored-{attack:?}"));
        let r = Run::watched(a.cmd(["restore", "latest", "--target", target.to_str().unwrap()]), WATCHDOG);
        assert_eq!(r.code, Some(0), "{attack:?}: the restore did not complete from C\n{}", r.describe());
        assert!(hostile.injected() > 0, "{attack:?}: the hostile buddy was never asked\n{}", r.describe());
        assert_names_breach(&r, &hostile.addr, &format!("{attack:?}"));
        assert_tree_matches(&expected, &restored_path(&target, &home), &format!("restore under {attack:?}"));
    }

    // From the hostile buddy alone there is nowhere to fail over to: the
    // restore stops with the buddy named.
    hostile.set(Attack::Twice);
    let target = tmp.path().join("restored-from-hostile");
    let r = Run::watched(
        a.cmd(["restore", "latest", "--target", target.to_str().unwrap(), "--from-buddy", &hostile.addr]),
        WATCHDOG,
    );
    assert_ne!(r.code, Some(0), "a restore from a buddy breaking the protocol succeeded\n{}", r.describe());
    assert_names_breach(&r, &hostile.addr, "restore --from-buddy");
}

#[test]
fn a_sync_to_a_buddy_answering_offers_unasked_records_nothing_there() {
    let Scene { tmp, home, expected, a, b_key, hostile, _b_server } = Scene::paired_through_relay();

    hostile.set(Attack::Twice);
    let r = Run::watched(a.cmd(["backup", home.to_str().unwrap()]), WATCHDOG);
    assert!(!r.stdout.contains("synced to"), "Twice: the sync went through\n{}", r.describe());
    assert!(hostile.injected() > 0, "Twice: nothing was sent twice\n{}", r.describe());
    assert_names_breach(&r, &hostile.addr, "backup under Twice");
    assert_eq!(shipped_to(&a, &b_key), (0, 0), "Twice: recorded as shipped or committed");

    for attack in [Attack::NeverAsked, Attack::BeforeRequest, Attack::Flood, Attack::EndlessRefusals] {
        hostile.set(attack);
        let r = Run::watched(a.cmd(["sync"]), WATCHDOG);
        assert_ne!(r.code, Some(0), "{attack:?}: the sync succeeded\n{}", r.describe());
        assert!(hostile.injected() > 0, "{attack:?}: nothing unasked was sent\n{}", r.describe());
        assert_names_breach(&r, &hostile.addr, &format!("sync under {attack:?}"));
        assert_eq!(shipped_to(&a, &b_key), (0, 0), "{attack:?}: recorded as shipped or committed");
    }
    let entries = std::fs::read_to_string(a.data.join("buddies.json")).unwrap();
    assert!(entries.contains("\"epoch\": 0"), "an epoch was recorded as committed: {entries}");

    // Once B behaves, a sync ships everything and a restore from it alone is exact.
    hostile.set(Attack::None);
    Run::watched(a.cmd(["sync"]), WATCHDOG).ok();
    let (shipped, committed) = shipped_to(&a, &b_key);
    assert!(shipped > 0 && committed > 0, "nothing recorded after an honest sync: {shipped} chunks, epoch {committed}");
    assert_restores_from(&a, &hostile, &tmp.path().join("restored"), &home, &expected, "restore after the attacks");
}

/// A buddy that keeps staging per connection refuses the commit of a sync
/// that staged its objects on a second connection; the client stages
/// everything again on one connection and the epoch commits there. When
/// that commit is refused too, the sync fails and says what failed first.
#[test]
fn a_sync_to_a_buddy_staging_per_connection_commits_on_one_connection() {
    let Scene { tmp, home, expected, a, b_key, hostile, _b_server } = Scene::paired_through_relay();

    hostile.set(Attack::StagingPerConnection);
    let r = Run::watched(a.cmd(["backup", home.to_str().unwrap()]), WATCHDOG);
    assert_eq!(r.code, Some(0), "the backup or its sync failed\n{}", r.describe());
    assert!(r.stdout.contains("synced to"), "the sync did not go through\n{}", r.describe());
    assert_eq!(hostile.injected(), 1, "exactly the first commit is refused\n{}", r.describe());
    let (shipped, committed) = shipped_to(&a, &b_key);
    assert!(shipped > 0 && committed > 0, "nothing recorded: {shipped} chunks, epoch {committed}");
    hostile.set(Attack::None);
    let what = "restore after a commit on one connection";
    assert_restores_from(&a, &hostile, &tmp.path().join("restored"), &home, &expected, what);

    // A new snapshot with new objects, every commit refused: the sync fails
    // naming both attempts, and the epoch is not recorded as committed.
    write_random(&home.join("d0/new.bin"), 50_000, &mut rand::rngs::StdRng::seed_from_u64(9));
    hostile.set(Attack::RefuseCommits);
    let r = Run::watched(a.cmd(["backup", home.to_str().unwrap()]), WATCHDOG);
    let out = format!("{}{}", r.stdout, r.stderr);
    assert!(!r.stdout.contains("synced to"), "a refused commit counted as synced\n{}", r.describe());
    assert!(out.contains("staging again on one connection"), "the fallback is not named\n{}", r.describe());
    assert_eq!(out.matches("staged objects missing").count(), 2, "both refusals are not given\n{}", r.describe());
    assert_eq!(shipped_to(&a, &b_key).1, committed, "a refused epoch was recorded as committed");
}
