//! Client against buddy over an in-memory pipe with a virtual clock, on a
//! store that loses whatever was not made durable when the link is cut.

extern crate std;
use std::vec;
use std::vec::Vec;

use super::*;
use crate::identity::{Identity, NodeId};
use crate::seal::{ChunkId, MAX_SEALED};
use crate::testing::{Ev, Link, LinkCut as Cut, MemStore};
use crate::wire::{ErrorCode, Frame, IdList, DECODER_BUFFER_LEN, MAX_IDS_PER_MESSAGE};

fn buddy_identity() -> Identity {
    crate::testing::conformance::key(42)
}

/// A store where `me()` and `other()` are admitted with `quota` bytes.
fn store(quota: u64) -> MemStore {
    let mut s = MemStore::new();
    s.enroll(me().public_key(), quota);
    s.enroll(other().public_key(), quota);
    s
}

fn other() -> Identity {
    Identity::from_seed([6; 32]).unwrap()
}

/// What a client wants the buddy to hold after a snapshot.
struct Snap {
    chunks: Vec<(ChunkId, Vec<u8>)>,
    objects: Vec<([u8; 20], Vec<u8>)>,
    deletes: Vec<[u8; 20]>,
    root: Vec<u8>,
}

impl Snap {
    /// The digest its commit signs.
    fn digest(&self) -> [u8; 32] {
        let staging = crate::testing::MemStaging {
            objects: self.objects.iter().cloned().collect(),
            deletes: self.deletes.iter().copied().collect(),
            root: Some(self.root.clone()),
        };
        staging.digest()
    }
}

fn snap(seed: u8, n: usize) -> Snap {
    let chunks = (0..n)
        .map(|i| {
            let mut id = [seed; 20];
            id[..8].copy_from_slice(&(i as u64).to_be_bytes());
            (ChunkId(id), vec![seed ^ i as u8; 100 + i * 37 % 5000])
        })
        .collect();
    let objects = (0..5u8).map(|i| ([i + seed; 20], vec![i; 300])).collect();
    Snap { chunks, objects, deletes: Vec::new(), root: vec![seed; 64] }
}

/// Ships `s` as `epoch`, the way the appliance's sync does.
fn sync(store: &mut MemStore, me: &Identity, s: &Snap, epoch: u64, budget: Option<usize>) -> Result<usize, Cut> {
    sync_with(store, me, s, epoch, budget, true)
}

/// [`sync`], with the buddy dying between its `Staged` and its apply when
/// `apply` is false (then the transfer ends in `Err(Cut)`).
fn sync_with(
    store: &mut MemStore,
    me: &Identity,
    s: &Snap,
    epoch: u64,
    budget: Option<usize>,
    apply: bool,
) -> Result<usize, Cut> {
    let (mut link, welcome) = Link::open(store, me, budget)?;
    link.apply_after_staged = apply;
    if welcome.committed_epoch >= epoch {
        return Ok(0);
    }
    let mut packed = vec![0u8; MAX_IDS_PER_MESSAGE * 20];
    for batch in s.chunks.chunks(700) {
        let ids = IdList::pack(batch.iter().map(|(id, _)| id.0), &mut packed).unwrap();
        let n = link.client.offer(ids, &mut link.out).unwrap();
        let Ev::Need(lacks) = link.request(n)?.remove(0) else { panic!("expected need") };
        for (i, (id, data)) in batch.iter().enumerate() {
            if lacks[i] {
                let n = link.client.put_chunk(*id, data, &mut link.out).unwrap();
                assert!(link.request(n)?.is_empty());
            }
        }
        let n = link.client.flush(&mut link.out).unwrap();
        assert!(matches!(link.request(n)?[..], [Ev::Flushed(_)]));
    }
    for (name, data) in &s.objects {
        let n = link.client.put_object(epoch, *name, data, &mut link.out).unwrap();
        assert!(link.request(n)?.is_empty());
    }
    if !s.deletes.is_empty() {
        let ids = IdList::pack(s.deletes.iter().copied(), &mut packed).unwrap();
        let n = link.client.delete_list(epoch, ids, &mut link.out).unwrap();
        assert!(link.request(n)?.is_empty());
    }
    let n = link.client.put_root(epoch, &s.root, &mut link.out).unwrap();
    assert!(link.request(n)?.is_empty());
    let n =
        link.client.commit(epoch, s.objects.len() as u32, s.deletes.len() as u32, s.digest(), &mut link.out).unwrap();
    if !apply {
        assert_eq!(link.request(n)?, vec![Ev::Staged(epoch)]);
        return Err(Cut);
    }
    assert_eq!(link.request(n)?, vec![Ev::Staged(epoch), Ev::Committed(epoch)]);
    Ok(link.puts_sent)
}

fn assert_holds(store: &MemStore, me: &Identity, s: &Snap, epoch: u64) {
    let c = &store.clients[&me.public_key()];
    assert_eq!(c.epochs.committed, epoch);
    assert_eq!(c.root.as_ref().unwrap(), &(epoch, s.root.clone()));
    for (name, data) in &s.objects {
        assert_eq!(&c.objects[name], data);
    }
    for (id, data) in &s.chunks {
        assert_eq!(store.version_of(&me.public_key(), id), Some(data));
    }
}

fn me() -> Identity {
    Identity::from_seed([5; 32]).unwrap()
}

#[test]
fn snapshot_transfer_and_restore() {
    let mut store = store(u64::MAX);
    let s = snap(1, 1500);
    let puts = sync(&mut store, &me(), &s, 1, None).unwrap();
    assert_eq!(puts, 1500);
    assert_holds(&store, &me(), &s, 1);

    // Restore: root, objects and chunks come back.
    let (mut link, welcome) = Link::open(&mut store, &me(), None).unwrap();
    assert_eq!(welcome.committed_epoch, 1);
    let n = link.client.get_root(&mut link.out).unwrap();
    assert_eq!(link.request(n).unwrap(), vec![Ev::Root(1, s.root.clone())]);
    let n = link.client.get_object(s.objects[2].0, &mut link.out).unwrap();
    assert_eq!(link.request(n).unwrap(), vec![Ev::Object(s.objects[2].1.clone())]);
    let n = link.client.get_chunk(s.chunks[77].0, &mut link.out).unwrap();
    assert_eq!(link.request(n).unwrap(), vec![Ev::Chunk(s.chunks[77].1.clone())]);
    let n = link.client.get_chunk(ChunkId([0xEE; 20]), &mut link.out).unwrap();
    assert_eq!(link.request(n).unwrap(), vec![Ev::Refused(ErrorCode::NotFound)]);
}

#[test]
fn second_client_deduplicates_against_the_first() {
    let mut store = store(u64::MAX);
    sync(&mut store, &me(), &snap(1, 300), 1, None).unwrap();
    let written = store.chunks_written;
    // The buddy answers offers from the asker's own chunks (no oracle), so
    // the second client sends its chunks; identical bytes are stored once.
    let puts = sync(&mut store, &other(), &snap(1, 300), 1, None).unwrap();
    assert_eq!(puts, 300);
    assert_eq!(store.chunks_written, written, "identical chunks were stored twice");
    assert!(store.chunks.values().all(|v| v.len() == 1 && v[0].owners.len() == 2));
}

#[test]
fn cut_at_every_message_boundary_then_resume() {
    let s = snap(3, 1500);
    // Frames of a full uncut transfer: hello, proof, 3 offers, puts, 3 flushes, 5 objects, root, commit.
    let total = 2 + 3 + 1500 + 3 + 5 + 1 + 1;
    let mut resent_max = 0;
    for cut in 0..total {
        let mut store = store(u64::MAX);
        let first = sync(&mut store, &me(), &s, 1, Some(cut));
        assert!(first.is_err(), "cut at {cut} must interrupt");
        store.crash();
        let durable_before = store.chunks.len();
        let resent = sync(&mut store, &me(), &s, 1, None).unwrap();
        assert_eq!(resent, 1500 - durable_before, "cut at {cut}: chunks already stored were sent again");
        resent_max = resent_max.max(resent);
        assert_holds(&store, &me(), &s, 1);
        assert_eq!(store.chunks_written, 1500, "cut at {cut}: a chunk was written twice");
    }
    assert_eq!(resent_max, 1500);
}

#[test]
fn restart_between_staged_and_applied_applies_the_new_snapshot_whole() {
    let mut store = store(u64::MAX);
    let old = snap(4, 50);
    sync(&mut store, &me(), &old, 1, None).unwrap();
    let mut new = snap(5, 50);
    new.deletes = old.chunks.iter().take(10).map(|(id, _)| id.0).collect();
    // The real session runs epoch 2 until the buddy sent Staged; it dies
    // before phase two, and its restart rolls the epoch forward whole.
    let mut staged_store = store.clone();
    assert!(sync_with(&mut staged_store, &me(), &new, 2, None, false).is_err());
    assert_eq!(staged_store.clients[&me().public_key()].epochs.committed, 1, "not applied before the restart");
    staged_store.crash();
    assert_holds(&staged_store, &me(), &new, 2);
    for id in &new.deletes {
        assert!(staged_store.version_of(&me().public_key(), &ChunkId(*id)).is_none(), "deletes applied with the rest");
    }
    // The client's next session sees the epoch committed and has nothing to do.
    assert_eq!(sync(&mut staged_store, &me(), &new, 2, None).unwrap(), 0);
    // Cut before the commit (everything staged, nothing prepared): the
    // epoch vanishes whole and the old snapshot stays.
    let mut unprepared = store.clone();
    let frames_before_commit = 2 + 1 + 50 + 1 + 5 + 1 + 1;
    assert!(sync(&mut unprepared, &me(), &new, 2, Some(frames_before_commit)).is_err());
    unprepared.crash();
    assert_holds(&unprepared, &me(), &old, 1);
}

#[test]
fn forged_replayed_and_altered_deletes_are_refused() {
    let mut store = store(u64::MAX);
    let s = snap(6, 20);
    sync(&mut store, &me(), &s, 1, None).unwrap();
    let before = store.chunks.len();
    let mut packed = vec![0u8; 400];

    // Replay: a correctly signed delete list for an epoch already committed.
    let (mut link, _) = Link::open(&mut store, &me(), None).unwrap();
    let ids = IdList::pack(s.chunks.iter().map(|(id, _)| id.0), &mut packed).unwrap();
    let n = link.client.delete_list(1, ids, &mut link.out).unwrap();
    assert_eq!(link.request(n).unwrap(), vec![Ev::Refused(ErrorCode::Replayed)]);
    assert!(link.buddy.is_closed());

    // Altered: signed for other ids than it carries.
    let (mut link, _) = Link::open(&mut store, &me(), None).unwrap();
    let ids = IdList::pack(s.chunks.iter().take(3).map(|(id, _)| id.0), &mut packed).unwrap();
    let n = link.client.delete_list(2, ids, &mut link.out).unwrap();
    let mut frame = link.out[..n].to_vec();
    let id_at = frame.windows(20).position(|w| w == s.chunks[0].0 .0).unwrap();
    frame[id_at] ^= 1;
    link.out[..n].copy_from_slice(&frame);
    assert_eq!(link.request(n).unwrap(), vec![Ev::Refused(ErrorCode::BadSignature)]);

    // Forged: signed by another key, sent on this client's session.
    let (mut link, _) = Link::open(&mut store, &me(), None).unwrap();
    let mut m = crate::wire::DeleteList { epoch: 2, ids, signature: crate::identity::Signature([0; 64]) };
    crate::wire::SignedMessage::sign(&mut m, &Identity::from_seed([99; 32]).unwrap(), &link.buddy_key, [0; 16]);
    let n = crate::wire::encode_frame(&crate::wire::Message::DeleteList(m), &mut link.out).unwrap();
    assert_eq!(link.request(n).unwrap(), vec![Ev::Refused(ErrorCode::BadSignature)]);

    // Signed for another buddy: refused here.
    let (mut link, _) = Link::open(&mut store, &me(), None).unwrap();
    let mut m = crate::wire::DeleteList { epoch: 2, ids, signature: crate::identity::Signature([0; 64]) };
    let elsewhere = Identity::from_seed([77; 32]).unwrap().public_key();
    crate::wire::SignedMessage::sign(&mut m, &me(), &elsewhere, [0; 16]);
    let n = crate::wire::encode_frame(&crate::wire::Message::DeleteList(m), &mut link.out).unwrap();
    assert_eq!(link.request(n).unwrap(), vec![Ev::Refused(ErrorCode::BadSignature)]);

    assert_eq!(store.chunks.len(), before);
    assert_eq!(store.clients[&me().public_key()].epochs.staged, 0);
    assert_holds(&store, &me(), &s, 1);
}

#[test]
fn quota_is_enforced_and_reported() {
    let mut store = store(1000);
    let (mut link, w) = Link::open(&mut store, &me(), None).unwrap();
    assert_eq!(w.quota_bytes, 1000);
    let n = link.client.put_chunk(ChunkId([1; 20]), &[0u8; 800], &mut link.out).unwrap();
    assert!(link.request(n).unwrap().is_empty());
    let n = link.client.put_chunk(ChunkId([2; 20]), &[0u8; 800], &mut link.out).unwrap();
    assert_eq!(link.request(n).unwrap(), vec![Ev::Refused(ErrorCode::QuotaExceeded)]);
    let n = link.client.flush(&mut link.out).unwrap();
    assert_eq!(link.request(n).unwrap(), vec![Ev::Flushed(1)]);
}

#[test]
fn requests_before_the_hello_and_bad_proofs_are_refused() {
    let mut store = store(u64::MAX);
    let mut guard = PairingGuard::<4>::new();
    let mut buddy = BuddySession::new(buddy_identity().public_key(), [7; 32], 0);
    let mut out = vec![0u8; 2 * DECODER_BUFFER_LEN];
    let mut scratch = vec![0u8; MAX_SEALED];
    let mut frame = vec![0u8; 64];
    let n = crate::wire::encode_frame(&crate::wire::Message::Flush, &mut frame).unwrap();
    let r = buddy.handle(
        Frame::new_checked(&frame[..n]).unwrap().payload(),
        &mut store,
        &mut Unmetered,
        &mut guard.from_source([0; 16]),
        Buffers { out: &mut out, scratch: &mut scratch },
        1,
    );
    assert!(r.close);
    assert_eq!(r.refused.unwrap().code, ErrorCode::NotAuthenticated);

    // A proof signed by a key other than the one in the hello.
    let mut buddy = BuddySession::new(buddy_identity().public_key(), [7; 32], 0);
    let hello = crate::wire::Hello {
        version: crate::wire::PROTOCOL_VERSION,
        client_key: me().public_key(),
        client_node: NodeId::from_name("x"),
        client_nonce: [3; 32],
    };
    let mut f = vec![0u8; 256];
    let n = crate::wire::encode_frame(&crate::wire::Message::Hello(hello), &mut f).unwrap();
    let r = buddy.handle(
        Frame::new_checked(&f[..n]).unwrap().payload(),
        &mut store,
        &mut Unmetered,
        &mut guard.from_source([0; 16]),
        Buffers { out: &mut out, scratch: &mut scratch },
        1,
    );
    assert!(!r.close);
    let challenge = crate::wire::Challenge { buddy_key: buddy_identity().public_key(), buddy_nonce: [7; 32] };
    let proof = crate::wire::Proof::sign(&Identity::from_seed([8; 32]).unwrap(), &hello, &challenge, [0; 16]);
    let n = crate::wire::encode_frame(&crate::wire::Message::Proof(proof), &mut f).unwrap();
    let r = buddy.handle(
        Frame::new_checked(&f[..n]).unwrap().payload(),
        &mut store,
        &mut Unmetered,
        &mut guard.from_source([0; 16]),
        Buffers { out: &mut out, scratch: &mut scratch },
        2,
    );
    assert!(r.close);
    assert_eq!(r.refused.unwrap().code, ErrorCode::BadSignature);
    assert!(store.clients.values().all(|c| c.epochs.committed == 0));

    // An Error from the client is never answered with an Error: the
    // session closes without a word.
    let mut buddy = BuddySession::new(buddy_identity().public_key(), [7; 32], 0);
    let error = crate::wire::Message::Error(crate::wire::ErrorMsg { code: ErrorCode::Internal, message: "gone" });
    let n = crate::wire::encode_frame(&error, &mut f).unwrap();
    let r = buddy.handle(
        Frame::new_checked(&f[..n]).unwrap().payload(),
        &mut store,
        &mut Unmetered,
        &mut guard.from_source([0; 16]),
        Buffers { out: &mut out, scratch: &mut scratch },
        1,
    );
    assert!(r.close && r.len == 0 && r.refused.is_none(), "an Error answered: {r:?}");

    // Garbage payloads close the session without touching the store.
    let mut buddy = BuddySession::new(buddy_identity().public_key(), [7; 32], 0);
    let r = buddy.handle(
        &[200, 1, 2, 3],
        &mut store,
        &mut Unmetered,
        &mut guard.from_source([0; 16]),
        Buffers { out: &mut out, scratch: &mut scratch },
        1,
    );
    assert!(r.close);
}

#[test]
fn pipelined_gets_are_answered_in_order() {
    let mut store = store(u64::MAX);
    let s = snap(8, 40);
    sync(&mut store, &me(), &s, 1, None).unwrap();
    let (mut link, _) = Link::open(&mut store, &me(), None).unwrap();
    let mut ids: Vec<ChunkId> = s.chunks.iter().take(MAX_PIPELINED_GETS - 1).map(|(id, _)| *id).collect();
    ids.insert(5, ChunkId([0xEE; 20]));
    // All requests go out before any answer is read.
    let mut frames = Vec::new();
    for id in &ids {
        let n = link.client.get_chunk(*id, &mut link.out).unwrap();
        frames.push(link.out[..n].to_vec());
    }
    assert_eq!(link.client.get_chunk(ids[0], &mut link.out), Err(SessionError::NotReady), "window is full");
    let mut answers = Vec::new();
    for f in frames {
        link.out[..f.len()].copy_from_slice(&f);
        answers.extend(link.deliver(f.len()).unwrap());
    }
    for (i, a) in answers.iter().enumerate() {
        let ev = Ev::from(link.client.handle(Frame::new_checked(a).unwrap().payload(), &mut link.out).unwrap());
        if i == 5 {
            assert_eq!(ev, Ev::Refused(ErrorCode::NotFound));
        } else {
            let want = &s.chunks.iter().find(|(id, _)| *id == ids[i]).unwrap().1;
            assert_eq!(ev, Ev::Chunk(want.clone()), "answer {i}");
        }
    }
    assert_eq!(link.client.gets_in_flight(), 0);
    let n = link.client.flush(&mut link.out).unwrap();
    assert_eq!(link.request(n).unwrap(), vec![Ev::Flushed(0)]);
}

/// A quota refusal answers an upload: the client takes at most one per
/// upload sent, so a buddy cannot keep it waiting with endless refusals.
#[test]
fn a_client_refuses_quota_refusals_beyond_its_uploads() {
    use crate::wire::{encode_frame, ErrorMsg, Message};
    let mut store = store(1000);
    let refusal = Message::Error(ErrorMsg { code: ErrorCode::QuotaExceeded, message: "quota exceeded" });
    let mut frame = vec![0u8; DECODER_BUFFER_LEN];
    let n = encode_frame(&refusal, &mut frame).unwrap();
    let mut out = vec![0u8; DECODER_BUFFER_LEN];
    {
        let (mut link, _) = Link::open(&mut store, &me(), None).unwrap();
        assert!(link.client.handle(&frame[4..n], &mut out).is_err(), "a refusal before any upload was taken");
    }
    let (mut link, _) = Link::open(&mut store, &me(), None).unwrap();
    for id in 1..=2u8 {
        let m = link.client.put_chunk(ChunkId([id; 20]), &[0u8; 800], &mut link.out).unwrap();
        link.request(m).unwrap();
    }
    // The second upload was refused for real; one more refusal may come
    // (for the first), a second one was never asked for.
    let ev = link.client.handle(&frame[4..n], &mut out).unwrap();
    assert_eq!(ev, ClientEvent::Refused { code: ErrorCode::QuotaExceeded, message: "quota exceeded" });
    assert!(link.client.handle(&frame[4..n], &mut out).is_err(), "more refusals than uploads were taken");
}

/// The client takes an audit answer only when it answers exactly the ids
/// asked, and only while an audit is outstanding.
#[test]
fn a_client_refuses_audit_answers_it_did_not_ask_for() {
    use crate::audit::AuditNonce;
    use crate::wire::{encode_frame, AuditProofs, Message};
    let mut store = store(1 << 20);
    let (mut link, _) = Link::open(&mut store, &me(), None).unwrap();
    let proofs = [0u8; 64];
    let two = Message::AuditProofs(AuditProofs { held: &[0], proofs: &proofs });
    let mut frame = vec![0u8; DECODER_BUFFER_LEN];
    let n = encode_frame(&two, &mut frame).unwrap();
    let mut out = vec![0u8; DECODER_BUFFER_LEN];
    assert!(link.client.handle(&frame[4..n], &mut out).is_err(), "unasked proofs were taken");
    let ids = [1u8; 60];
    link.client.audit(AuditNonce([1; 32]), IdList::new(&ids).unwrap(), &mut link.out).unwrap();
    let m = encode_frame(&two, &mut frame).unwrap();
    assert!(link.client.handle(&frame[4..m], &mut out).is_err(), "two answers taken for three ids");
}

/// A client flooding a buddy with audits is held to its budget: requests
/// past it read nothing and are refused `RateLimited`, the session goes on
/// (its uploads and reads still served), another client's budget is its
/// own, and the budget comes back with the next window.
#[test]
fn audits_past_the_budget_are_refused_without_reading_and_the_session_goes_on() {
    use crate::audit::AuditNonce;
    let mut store = store(1 << 20);
    let s = snap(3, 4);
    sync(&mut store, &me(), &s, 1, None).unwrap();
    let mut packed = vec![0u8; 64 * 20];
    let ids = IdList::pack((0..64).map(|i| s.chunks[i % 4].0 .0), &mut packed).unwrap();
    let (mut link, _) = Link::open(&mut store, &me(), None).unwrap();
    link.audits = AuditBudget::new(128, 1_000_000);
    let mut answered = 0;
    for i in 0..10u8 {
        let n = link.client.audit(AuditNonce([i; 32]), ids, &mut link.out).unwrap();
        match link.request(n).unwrap().as_slice() {
            [Ev::Proofs(p)] => {
                assert!(p.iter().all(Option::is_some), "every id held");
                answered += 1;
            }
            [Ev::Refused(ErrorCode::RateLimited)] => {}
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(answered, 2, "128 reads: two requests of 64");
    assert_eq!(link.audits.remaining(&me().public_key(), 100), 0);
    // The session is still open and serves its client.
    let n = link.client.get_chunk(s.chunks[0].0, &mut link.out).unwrap();
    assert_eq!(link.request(n).unwrap(), vec![Ev::Chunk(s.chunks[0].1.clone())]);
    // The budget is per client, and comes back with the next window.
    assert_eq!(link.audits.remaining(&other().public_key(), 100), 128);
    assert_eq!(link.audits.remaining(&me().public_key(), 1_000_100), 128);
}

/// One pairing attempt by `me` presenting `code` from `source` at `now`,
/// through a real client session, with the buddy's shared `guard`: `Ok` on
/// `Welcome`, else the refusal's message.
fn pair_attempt(
    store: &mut MemStore,
    guard: &mut PairingGuard<8>,
    source: [u8; 16],
    me: &Identity,
    code: &str,
    now: u64,
) -> Result<(), std::string::String> {
    let mut client =
        ClientSession::new(me.clone(), NodeId::from_name("guesser"), [9; 32], [1; 16]).with_pairing_code(code).unwrap();
    let mut buddy = BuddySession::new(buddy_identity().public_key(), [7; 32], now);
    let (mut c_out, mut b_out, mut scratch) = (vec![0u8; 4096], vec![0u8; 4096], vec![0u8; MAX_SEALED]);
    let mut n = client.start(&mut c_out).unwrap();
    loop {
        let payload = Frame::new_checked(&c_out[..n]).unwrap().payload().to_vec();
        let bufs = Buffers { out: &mut b_out, scratch: &mut scratch };
        let r = buddy.handle(&payload, store, &mut Unmetered, &mut guard.from_source(source), bufs, now);
        let reply = Frame::new_checked(&b_out[..r.len]).unwrap().payload().to_vec();
        match client.handle(&reply, &mut c_out).unwrap() {
            ClientEvent::SendProof(m) => n = m,
            ClientEvent::Welcome(_) => return Ok(()),
            ClientEvent::Refused { message, .. } => return Err(message.into()),
            e => panic!("unexpected {e:?}"),
        }
    }
}

/// Guessing codes: a source that keeps guessing is refused unchecked (the
/// right code included) until its wait ends, whatever keys it uses; many
/// sources together pause pairing for everyone; no guess leaves a record;
/// the right code still pairs once the waits are over.
#[test]
fn guessed_pairing_codes_are_throttled_per_source_and_overall() {
    let mut store = MemStore::new();
    let mut guard = PairingGuard::<8>::new();
    store.invite("RIGHT-CODE1", 1 << 20);
    let attacker = source_v4([203, 0, 113, 7]);
    let honest = source_v4([192, 168, 1, 20]);
    let mut now = 1_000;
    for i in 0..=FREE_WRONG_PER_SOURCE {
        let key = Identity::from_seed([100 + i as u8; 32]).unwrap();
        let e = pair_attempt(&mut store, &mut guard, attacker, &key, "WRONG-CODE1", now).unwrap_err();
        assert!(e.contains("pairing code unknown"), "{e}");
    }
    // Waiting now: fresh keys and even the right code are refused unchecked.
    for i in 0..5u8 {
        let key = Identity::from_seed([150 + i; 32]).unwrap();
        let e = pair_attempt(&mut store, &mut guard, attacker, &key, "RIGHT-CODE1", now).unwrap_err();
        assert!(e.contains("from this address"), "{e}");
    }
    assert!(store.clients.is_empty(), "a guess left a record");
    // Other addresses guess until the bucket is dry: then everyone waits.
    for i in 0..GLOBAL_BURST - FREE_WRONG_PER_SOURCE - 1 {
        let key = Identity::from_seed([200 + i as u8; 32]).unwrap();
        let e = pair_attempt(&mut store, &mut guard, source_v4([198, 51, 100, i as u8]), &key, "BAD", now);
        assert!(e.unwrap_err().contains("pairing code unknown"));
    }
    let e = pair_attempt(&mut store, &mut guard, honest, &me(), "RIGHT-CODE1", now).unwrap_err();
    assert!(e.contains("pairing is paused"), "{e}");
    assert!(store.clients.is_empty(), "a guess left a record");
    // After the refill the honest box pairs with its code, which was never spent.
    now += GLOBAL_REFILL_MS;
    pair_attempt(&mut store, &mut guard, honest, &me(), "RIGHT-CODE1", now).unwrap();
    assert_eq!(store.clients.len(), 1);
}
