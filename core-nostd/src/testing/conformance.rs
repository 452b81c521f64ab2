//! The conformance suite: what every [`BuddyStore`] must do, checked through
//! a real [`BuddySession`](crate::session::BuddySession) driven by a real
//! [`ClientSession`](crate::session::ClientSession). A store implementation
//! provides a [`Harness`] and calls [`run_all`].

use std::vec;
use std::vec::Vec;

use super::link::{Ev, Link};
use super::MemStaging;
use crate::audit::{AuditNonce, ProofDigest, MAX_AUDIT_IDS};
use crate::identity::Identity;
use crate::seal::ChunkId;
use crate::session::BuddyStore;
use crate::wire::{ErrorCode, IdList};

/// A store under test, with the owner's powers and a power switch.
pub trait Harness {
    /// The store.
    type Store: BuddyStore;
    /// The store, as a session drives it.
    fn store(&mut self) -> &mut Self::Store;
    /// Makes `code` a valid one-time pairing code granting `quota` bytes.
    fn invite(&mut self, code: &str, quota: u64);
    /// A crash and restart: whatever was not flushed may be lost; the
    /// store's start-up recovery runs.
    fn restart(&mut self);
    /// Whether a code admits one key only. The firmware's pairing secret
    /// (from its boot command line) admits every key that presents it while
    /// a client slot is free, so it says `false`.
    const ONE_TIME_CODES: bool = true;
}

/// Runs every check, each on a fresh harness from `fresh`.
pub fn run_all<H: Harness>(mut fresh: impl FnMut() -> H) {
    strangers_are_refused_and_leave_no_record(&mut fresh());
    a_pairing_code_admits_one_key_once(&mut fresh());
    offers_and_reads_answer_from_the_clients_own_chunks(&mut fresh());
    a_forged_upload_never_stands_in_for_honest_bytes(&mut fresh());
    a_staged_epoch_is_applied_whole_after_a_crash(&mut fresh());
    a_commit_that_differs_from_the_staging_is_never_applied(&mut fresh());
    parts_of_two_attempts_at_an_epoch_never_mix(&mut fresh());
    replayed_epochs_are_refused(&mut fresh());
    the_quota_refuses_uploads(&mut fresh());
    staged_metadata_counts_against_the_quota(&mut fresh());
    deletes_release_only_the_signers_reference(&mut fresh());
    deletes_remove_only_the_signers_objects(&mut fresh());
    audits_prove_only_the_clients_own_bytes(&mut fresh());
}

/// Test identities.
pub fn key(n: u8) -> Identity {
    Identity::from_seed([n; 32]).expect("a valid seed")
}

const QUOTA: u64 = 1 << 30;

/// Pairs `me` with a fresh code (each call a new code).
fn pair<H: Harness>(h: &mut H, me: &Identity) {
    let code = std::format!("PAIR-{:02X}", me.public_key().0[0]);
    h.invite(&code, QUOTA);
    let r = Link::connect(h.store(), me, Some(&code), None).expect("not cut");
    assert!(r.is_ok(), "pairing with a fresh code refused: {:?}", r.err());
}

fn sealed(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| seed.wrapping_add(i as u8)).collect()
}

fn put_and_flush<H: Harness>(h: &mut H, me: &Identity, chunks: &[(ChunkId, Vec<u8>)]) -> Vec<Ev> {
    let (mut link, _) = Link::open(h.store(), me, None).expect("not cut");
    let mut events = Vec::new();
    for (id, data) in chunks {
        let n = link.client.put_chunk(*id, data, &mut link.out).expect("put encodes");
        events.extend(link.request(n).expect("not cut"));
    }
    let n = link.client.flush(&mut link.out).expect("flush encodes");
    events.extend(link.request(n).expect("not cut"));
    events
}

fn get<H: Harness>(h: &mut H, me: &Identity, id: ChunkId) -> Ev {
    let (mut link, _) = Link::open(h.store(), me, None).expect("not cut");
    let n = link.client.get_chunk(id, &mut link.out).expect("get encodes");
    link.request(n).expect("not cut").remove(0)
}

fn offer<H: Harness>(h: &mut H, me: &Identity, ids: &[ChunkId]) -> Vec<bool> {
    let (mut link, _) = Link::open(h.store(), me, None).expect("not cut");
    let mut packed = vec![0u8; ids.len() * 20];
    let list = IdList::pack(ids.iter().map(|id| id.0), &mut packed).expect("fits");
    let n = link.client.offer(list, &mut link.out).expect("offer encodes");
    match link.request(n).expect("not cut").remove(0) {
        Ev::Need(mut lacks) => {
            lacks.truncate(ids.len());
            lacks
        }
        e => panic!("expected need, got {e:?}"),
    }
}

/// Stages `objects` objects and a root for `epoch`, then commits announcing
/// `announced` objects; returns the commit's answers.
fn stage_and_commit<H: Harness>(
    h: &mut H,
    me: &Identity,
    epoch: u64,
    objects: u8,
    announced: u32,
    deletes: &[ChunkId],
    apply: bool,
) -> Vec<Ev> {
    let (mut link, _) = Link::open(h.store(), me, None).expect("not cut");
    link.apply_after_staged = apply;
    let mut staged = MemStaging::default();
    for i in 0..objects {
        let n = link.client.put_object(epoch, [i; 20], &sealed(i, 100), &mut link.out).expect("encodes");
        assert_eq!(link.request(n).expect("not cut"), vec![]);
        staged.objects.insert([i; 20], sealed(i, 100));
    }
    if !deletes.is_empty() {
        let mut packed = vec![0u8; deletes.len() * 20];
        let list = IdList::pack(deletes.iter().map(|id| id.0), &mut packed).expect("fits");
        let n = link.client.delete_list(epoch, list, &mut link.out).expect("encodes");
        assert_eq!(link.request(n).expect("not cut"), vec![]);
        staged.deletes.extend(deletes.iter().map(|id| id.0));
    }
    let n = link.client.put_root(epoch, &sealed(epoch as u8, 64), &mut link.out).expect("encodes");
    assert_eq!(link.request(n).expect("not cut"), vec![]);
    staged.root = Some(sealed(epoch as u8, 64));
    let digest = staged.digest();
    let n = link.client.commit(epoch, announced, deletes.len() as u32, digest, &mut link.out).expect("encodes");
    link.request(n).expect("not cut")
}

fn root<H: Harness>(h: &mut H, me: &Identity) -> Ev {
    let (mut link, _) = Link::open(h.store(), me, None).expect("not cut");
    let n = link.client.get_root(&mut link.out).expect("encodes");
    link.request(n).expect("not cut").remove(0)
}

/// A key that was never admitted is refused `NotAuthenticated`, with or
/// without a made-up code, and the store keeps no record of it.
pub fn strangers_are_refused_and_leave_no_record<H: Harness>(h: &mut H) {
    let stranger = key(200);
    for code in [None, Some("NOT-A-CODE")] {
        let r = Link::connect(h.store(), &stranger, code, None).expect("not cut");
        assert_eq!(r.err(), Some(ErrorCode::NotAuthenticated), "code {code:?}");
        assert_eq!(h.store().client(&stranger.public_key()).ok().flatten(), None, "a stranger got a record");
    }
    h.restart();
    assert_eq!(h.store().client(&stranger.public_key()).ok().flatten(), None);
}

/// A code admits the first key that presents it, and only that one; the
/// admitted key then connects without it, across a restart.
pub fn a_pairing_code_admits_one_key_once<H: Harness>(h: &mut H) {
    h.invite("ABCD-EFGH", 5000);
    let (a, b) = (key(1), key(2));
    let r = Link::connect(h.store(), &a, Some("ABCD-EFGH"), None).expect("not cut");
    let (_, welcome) = r.expect("a valid code admits");
    assert_eq!(welcome.quota_bytes, 5000, "the code's quota");
    if H::ONE_TIME_CODES {
        let r = Link::connect(h.store(), &b, Some("ABCD-EFGH"), None).expect("not cut");
        assert_eq!(r.err(), Some(ErrorCode::NotAuthenticated), "a used code admitted a second key");
        assert_eq!(h.store().client(&b.public_key()).ok().flatten(), None);
        h.restart();
        let r = Link::connect(h.store(), &b, Some("ABCD-EFGH"), None).expect("not cut");
        assert_eq!(r.err(), Some(ErrorCode::NotAuthenticated), "a used code admitted a key after a restart");
    } else {
        h.restart();
    }
    assert!(Link::connect(h.store(), &a, None, None).expect("not cut").is_ok(), "admission lasts");
}

/// No oracle: another owner's chunk is "lacking" to an offer and
/// `NotFound` to a get.
pub fn offers_and_reads_answer_from_the_clients_own_chunks<H: Harness>(h: &mut H) {
    let (a, b) = (key(3), key(4));
    pair(h, &a);
    pair(h, &b);
    let id = ChunkId([0x33; 20]);
    let data = sealed(3, 500);
    assert!(put_and_flush(h, &a, &[(id, data.clone())]).iter().all(|e| matches!(e, Ev::Flushed(_))));
    assert_eq!(offer(h, &b, &[id]), vec![true], "an offer revealed another owner's chunk");
    assert_eq!(get(h, &b, id), Ev::Refused(ErrorCode::NotFound), "a get served another owner's chunk");
    assert_eq!(offer(h, &a, &[id]), vec![false]);
    assert_eq!(get(h, &a, id), Ev::Chunk(data));
}

/// No poisoning: bytes uploaded first under an id by one client never
/// answer for another client that uploads different bytes under it, and
/// byte-identical uploads are shared.
pub fn a_forged_upload_never_stands_in_for_honest_bytes<H: Harness>(h: &mut H) {
    let (attacker, honest, other) = (key(5), key(6), key(7));
    pair(h, &attacker);
    pair(h, &honest);
    pair(h, &other);
    let id = ChunkId([0x55; 20]);
    let forged = vec![0u8; 300];
    let real = sealed(55, 300);
    put_and_flush(h, &attacker, &[(id, forged.clone())]);
    assert_eq!(offer(h, &honest, &[id]), vec![true], "the forged upload answered the honest offer");
    put_and_flush(h, &honest, &[(id, real.clone())]);
    put_and_flush(h, &other, &[(id, real.clone())]);
    for _ in 0..2 {
        assert_eq!(get(h, &honest, id), Ev::Chunk(real.clone()));
        assert_eq!(get(h, &other, id), Ev::Chunk(real.clone()));
        assert_eq!(get(h, &attacker, id), Ev::Chunk(forged.clone()));
        h.restart();
    }
}

/// A commit whose buddy dies after `Staged` is applied whole at restart.
pub fn a_staged_epoch_is_applied_whole_after_a_crash<H: Harness>(h: &mut H) {
    let a = key(8);
    pair(h, &a);
    assert_eq!(stage_and_commit(h, &a, 1, 3, 3, &[], false), vec![Ev::Staged(1)]);
    h.restart();
    let rec = h.store().client(&a.public_key()).ok().flatten().expect("admitted");
    assert_eq!(rec.committed_epoch, 1, "the prepared epoch was not rolled forward");
    assert_eq!(root(h, &a), Ev::Root(1, sealed(1, 64)));
    let (mut link, _) = Link::open(h.store(), &a, None).expect("not cut");
    let n = link.client.get_object([2; 20], &mut link.out).expect("encodes");
    assert_eq!(link.request(n).expect("not cut"), vec![Ev::Object(sealed(2, 100))]);
}

/// A commit announcing another staged set is refused, and the staging is
/// never applied, not even by recovery.
pub fn a_commit_that_differs_from_the_staging_is_never_applied<H: Harness>(h: &mut H) {
    let a = key(9);
    pair(h, &a);
    assert_eq!(stage_and_commit(h, &a, 1, 2, 3, &[], true), vec![Ev::Refused(ErrorCode::UnexpectedMessage)]);
    h.restart();
    assert_eq!(h.store().client(&a.public_key()).ok().flatten().map(|r| r.committed_epoch), Some(0));
    assert_eq!(root(h, &a), Ev::Refused(ErrorCode::NotFound));
}

/// Freshness: the signed parts of two attempts at one epoch cannot be
/// committed mixed. A first attempt stages objects A and B and is cut off;
/// in a second attempt at the same epoch, B's new version is replaced by
/// the first attempt's signed B (a replay of its frame). The counts match,
/// but the commit signs the second attempt's digest: refused, nothing of
/// either attempt applied, even after a restart; a clean attempt commits.
pub fn parts_of_two_attempts_at_an_epoch_never_mix<H: Harness>(h: &mut H) {
    let a = key(15);
    pair(h, &a);
    let (first_a, first_b, second_a, second_b) = (sealed(1, 90), sealed(2, 90), sealed(3, 90), sealed(4, 90));
    // First attempt: A and B staged and flushed, then the connection drops.
    let old_b_frame = {
        let (mut link, _) = Link::open(h.store(), &a, None).expect("not cut");
        let n = link.client.put_object(1, [0xa; 20], &first_a, &mut link.out).expect("encodes");
        assert_eq!(link.request(n).expect("not cut"), vec![]);
        let n = link.client.put_object(1, [0xb; 20], &first_b, &mut link.out).expect("encodes");
        let frame = link.out[..n].to_vec();
        assert_eq!(link.request(n).expect("not cut"), vec![]);
        let n = link.client.flush(&mut link.out).expect("encodes");
        link.request(n).expect("not cut");
        frame
    };
    // Second attempt: new A, the first attempt's signed B, a root; the
    // commit announces the second attempt (A, B and root as it meant them).
    let (mut link, welcome) = Link::open(h.store(), &a, None).expect("not cut");
    assert_eq!(welcome.staged_epoch, 1, "the first attempt's staging is still there");
    let n = link.client.put_object(1, [0xa; 20], &second_a, &mut link.out).expect("encodes");
    assert_eq!(link.request(n).expect("not cut"), vec![]);
    link.out[..old_b_frame.len()].copy_from_slice(&old_b_frame);
    assert_eq!(link.request(old_b_frame.len()).expect("not cut"), vec![], "a validly signed part of epoch 1");
    let n = link.client.put_root(1, &sealed(5, 64), &mut link.out).expect("encodes");
    assert_eq!(link.request(n).expect("not cut"), vec![]);
    let mut meant = MemStaging::default();
    meant.objects.insert([0xa; 20], second_a.clone());
    meant.objects.insert([0xb; 20], second_b.clone());
    meant.root = Some(sealed(5, 64));
    let n = link.client.commit(1, 2, 0, meant.digest(), &mut link.out).expect("encodes");
    assert_eq!(link.request(n).expect("not cut"), vec![Ev::Refused(ErrorCode::UnexpectedMessage)]);
    h.restart();
    assert_eq!(h.store().client(&a.public_key()).ok().flatten().map(|r| r.committed_epoch), Some(0));
    assert_eq!(root(h, &a), Ev::Refused(ErrorCode::NotFound), "a mixed epoch was applied");
    // A clean third attempt (a fresh epoch) commits exactly what it signed.
    let (mut link, _) = Link::open(h.store(), &a, None).expect("not cut");
    for (name, data) in [([0xa; 20], &second_a), ([0xb; 20], &second_b)] {
        let n = link.client.put_object(2, name, data, &mut link.out).expect("encodes");
        assert_eq!(link.request(n).expect("not cut"), vec![]);
    }
    let n = link.client.put_root(2, &sealed(5, 64), &mut link.out).expect("encodes");
    assert_eq!(link.request(n).expect("not cut"), vec![]);
    let n = link.client.commit(2, 2, 0, meant.digest(), &mut link.out).expect("encodes");
    assert_eq!(link.request(n).expect("not cut"), vec![Ev::Staged(2), Ev::Committed(2)]);
    let n = link.client.get_object([0xb; 20], &mut link.out).expect("encodes");
    assert_eq!(link.request(n).expect("not cut"), vec![Ev::Object(second_b)]);
}

/// Staging at or below the committed epoch is refused `Replayed`.
pub fn replayed_epochs_are_refused<H: Harness>(h: &mut H) {
    let a = key(10);
    pair(h, &a);
    assert_eq!(stage_and_commit(h, &a, 2, 1, 1, &[], true), vec![Ev::Staged(2), Ev::Committed(2)]);
    let (mut link, _) = Link::open(h.store(), &a, None).expect("not cut");
    let n = link.client.put_root(2, &[1; 10], &mut link.out).expect("encodes");
    assert_eq!(link.request(n).expect("not cut"), vec![Ev::Refused(ErrorCode::Replayed)]);
    assert_eq!(root(h, &a), Ev::Root(2, sealed(2, 64)));
}

/// Uploads past the client's quota are refused, without ending the session.
pub fn the_quota_refuses_uploads<H: Harness>(h: &mut H) {
    let a = key(11);
    h.invite("SMALL", 1000);
    assert!(Link::connect(h.store(), &a, Some("SMALL"), None).expect("not cut").is_ok());
    let events = put_and_flush(h, &a, &[(ChunkId([1; 20]), sealed(1, 800)), (ChunkId([2; 20]), sealed(2, 800))]);
    assert_eq!(events, vec![Ev::Refused(ErrorCode::QuotaExceeded), Ev::Flushed(1)]);
    assert_eq!(get(h, &a, ChunkId([1; 20])), Ev::Chunk(sealed(1, 800)));
    assert_eq!(get(h, &a, ChunkId([2; 20])), Ev::Refused(ErrorCode::NotFound));
}

/// Staged objects and roots are charged to the quota: staging past it is
/// refused `QuotaExceeded`, and an epoch missing them cannot commit.
pub fn staged_metadata_counts_against_the_quota<H: Harness>(h: &mut H) {
    let a = key(14);
    h.invite("META", 1000);
    assert!(Link::connect(h.store(), &a, Some("META"), None).expect("not cut").is_ok());
    put_and_flush(h, &a, &[(ChunkId([1; 20]), sealed(1, 600))]);
    let (mut link, welcome) = Link::open(h.store(), &a, None).expect("not cut");
    assert_eq!(welcome.used_bytes, 600);
    let n = link.client.put_object(1, [1; 20], &sealed(1, 300), &mut link.out).expect("encodes");
    assert_eq!(link.request(n).expect("not cut"), vec![], "within the quota");
    let n = link.client.put_object(1, [2; 20], &sealed(2, 300), &mut link.out).expect("encodes");
    assert_eq!(link.request(n).expect("not cut"), vec![Ev::Refused(ErrorCode::QuotaExceeded)]);
    let n = link.client.put_root(1, &sealed(3, 200), &mut link.out).expect("encodes");
    assert_eq!(link.request(n).expect("not cut"), vec![Ev::Refused(ErrorCode::QuotaExceeded)]);
    let mut intended = MemStaging::default();
    intended.objects.insert([1; 20], sealed(1, 300));
    intended.objects.insert([2; 20], sealed(2, 300));
    intended.root = Some(sealed(3, 200));
    let n = link.client.commit(1, 2, 0, intended.digest(), &mut link.out).expect("encodes");
    assert_eq!(link.request(n).expect("not cut"), vec![Ev::Refused(ErrorCode::UnexpectedMessage)]);
    assert_eq!(root(h, &a), Ev::Refused(ErrorCode::NotFound));
}

/// A delete list releases the signer's reference only: a co-owner still
/// reads the chunk.
pub fn deletes_release_only_the_signers_reference<H: Harness>(h: &mut H) {
    let (a, b) = (key(12), key(13));
    pair(h, &a);
    pair(h, &b);
    let id = ChunkId([0x77; 20]);
    let data = sealed(77, 400);
    put_and_flush(h, &a, &[(id, data.clone())]);
    put_and_flush(h, &b, &[(id, data.clone())]);
    assert_eq!(stage_and_commit(h, &a, 1, 1, 1, &[id], true), vec![Ev::Staged(1), Ev::Committed(1)]);
    assert_eq!(get(h, &a, id), Ev::Refused(ErrorCode::NotFound));
    assert_eq!(get(h, &b, id), Ev::Chunk(data));
}

fn object<H: Harness>(h: &mut H, me: &Identity, name: u8) -> Ev {
    let (mut link, _) = Link::open(h.store(), me, None).expect("not cut");
    let n = link.client.get_object([name; 20], &mut link.out).expect("encodes");
    link.request(n).expect("not cut").remove(0)
}

fn used_bytes<H: Harness>(h: &mut H, me: &Identity) -> u64 {
    Link::open(h.store(), me, None).expect("not cut").1.used_bytes
}

/// A delete list naming objects the client no longer references deletes
/// them when the epoch applies (also when a restart rolls it forward), and
/// frees their bytes; another client's objects of the same names stay. A
/// delete list signed by another key, or a staging discarded by a commit
/// that differs from it, deletes nothing.
pub fn deletes_remove_only_the_signers_objects<H: Harness>(h: &mut H) {
    let (a, b) = (key(16), key(17));
    pair(h, &a);
    pair(h, &b);
    assert_eq!(stage_and_commit(h, &a, 1, 4, 4, &[], true), vec![Ev::Staged(1), Ev::Committed(1)]);
    assert_eq!(stage_and_commit(h, &b, 1, 4, 4, &[], true), vec![Ev::Staged(1), Ev::Committed(1)]);
    let before = used_bytes(h, &a);
    let gone = [ChunkId([1; 20]), ChunkId([2; 20])];
    assert_eq!(stage_and_commit(h, &a, 2, 0, 0, &gone, true), vec![Ev::Staged(2), Ev::Committed(2)]);
    assert_eq!(object(h, &a, 1), Ev::Refused(ErrorCode::NotFound));
    assert_eq!(object(h, &a, 2), Ev::Refused(ErrorCode::NotFound));
    assert_eq!(object(h, &a, 0), Ev::Object(sealed(0, 100)));
    assert_eq!(object(h, &b, 1), Ev::Object(sealed(1, 100)), "another client's object was deleted");
    // The root was replaced by one of the same size: only the objects went.
    assert_eq!(used_bytes(h, &a), before - 200);

    // Forged: a delete list naming object 3, signed by b on a's session.
    let (mut link, _) = Link::open(h.store(), &a, None).expect("not cut");
    let mut packed = [0u8; 20];
    let ids = IdList::pack([[3; 20]], &mut packed).expect("fits");
    let mut m = crate::wire::DeleteList { epoch: 3, ids, signature: crate::identity::Signature([0; 64]) };
    crate::wire::SignedMessage::sign(&mut m, &b, &link.buddy_key, [0; 16]);
    let n = crate::wire::encode_frame(&crate::wire::Message::DeleteList(m), &mut link.out).expect("encodes");
    assert_eq!(link.request(n).expect("not cut"), vec![Ev::Refused(ErrorCode::BadSignature)]);
    drop(link);
    // A staging that differs from its commit (5 objects announced, none
    // staged) is discarded: object 3 stays, also after a restart.
    let refused = stage_and_commit(h, &a, 3, 0, 5, &[ChunkId([3; 20])], true);
    assert_eq!(refused, vec![Ev::Refused(ErrorCode::UnexpectedMessage)]);
    h.restart();
    assert_eq!(object(h, &a, 3), Ev::Object(sealed(3, 100)), "a refused delete removed the object");

    // Prepared, then a crash before phase two: the restart rolls it forward.
    assert_eq!(stage_and_commit(h, &a, 4, 0, 0, &[ChunkId([3; 20])], false), vec![Ev::Staged(4)]);
    h.restart();
    assert_eq!(object(h, &a, 3), Ev::Refused(ErrorCode::NotFound));
    assert_eq!(object(h, &a, 0), Ev::Object(sealed(0, 100)));
}

/// Audits `ids` as `me` under `nonce`: the buddy's answers.
pub fn audit<H: Harness>(h: &mut H, me: &Identity, nonce: AuditNonce, ids: &[ChunkId]) -> Vec<Option<ProofDigest>> {
    let (mut link, _) = Link::open(h.store(), me, None).expect("not cut");
    let mut packed = vec![0u8; ids.len() * 20];
    let list = IdList::pack(ids.iter().map(|id| id.0), &mut packed).expect("fits");
    let n = link.client.audit(nonce, list, &mut link.out).expect("audit encodes");
    match link.request(n).expect("not cut").remove(0) {
        Ev::Proofs(p) => p,
        e => panic!("expected proofs, got {e:?}"),
    }
}

/// Audits prove the bytes the asking client stored, under this nonce only:
/// another owner's chunk, a forged upload under the client's id, a chunk
/// never stored and a released one are "not held"; a proof does not carry
/// over to another nonce; held chunks stay proven across a restart.
pub fn audits_prove_only_the_clients_own_bytes<H: Harness>(h: &mut H) {
    let (a, b, attacker) = (key(15), key(16), key(17));
    pair(h, &a);
    pair(h, &b);
    pair(h, &attacker);
    let (mine, theirs, forged_id, never, released) =
        (ChunkId([0x91; 20]), ChunkId([0x92; 20]), ChunkId([0x93; 20]), ChunkId([0x94; 20]), ChunkId([0x95; 20]));
    let real = sealed(91, 700);
    put_and_flush(h, &a, &[(mine, real.clone()), (released, sealed(95, 50))]);
    put_and_flush(h, &b, &[(theirs, sealed(92, 300))]);
    put_and_flush(h, &attacker, &[(forged_id, vec![0; 300])]);
    assert_eq!(stage_and_commit(h, &a, 1, 1, 1, &[released], true), vec![Ev::Staged(1), Ev::Committed(1)]);
    let nonce = AuditNonce([0x5e; 32]);
    let asked = [mine, theirs, forged_id, never, released];
    let want = vec![Some(ProofDigest::of(&nonce, &mine, &real)), None, None, None, None];
    assert_eq!(audit(h, &a, nonce, &asked), want);
    let other = AuditNonce([0x5f; 32]);
    assert_ne!(audit(h, &a, other, &[mine]), vec![want[0]], "a proof carried over to another nonce");
    h.restart();
    assert_eq!(audit(h, &a, nonce, &asked), want, "after a restart");
    // The attacker's own forged bytes prove as its own, and only to it.
    assert_eq!(audit(h, &attacker, nonce, &[forged_id]), vec![Some(ProofDigest::of(&nonce, &forged_id, &[0; 300]))]);
    // A full challenge is answered in one frame.
    let many: Vec<ChunkId> = (0..MAX_AUDIT_IDS).map(|i| if i % 2 == 0 { mine } else { never }).collect();
    let answers = audit(h, &a, nonce, &many);
    assert_eq!(answers.len(), MAX_AUDIT_IDS);
    assert!(answers.iter().enumerate().all(|(i, p)| p.is_some() == (i % 2 == 0)));
}

/// The conformance suite on [`MemStore`](super::MemStore).
#[cfg(test)]
mod mem_store {
    use super::super::MemStore;
    use super::Harness;

    impl Harness for MemStore {
        type Store = MemStore;
        fn store(&mut self) -> &mut MemStore {
            self
        }
        fn invite(&mut self, code: &str, quota: u64) {
            MemStore::invite(self, code, quota);
        }
        fn restart(&mut self) {
            self.crash();
        }
    }

    #[test]
    fn mem_store_conforms() {
        super::run_all(MemStore::new);
    }
}
