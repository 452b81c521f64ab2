//! The `buddy_session` target: a buddy session, already past the hello with
//! a known client, fed arbitrary frames. Frames that decode as signed
//! requests are re-signed by the client when the input asks, so fuzzing
//! reaches the store and commit paths, not only signature checks. Every
//! audit is checked against the store: a proof for exactly the bytes the
//! client stored, "not held" otherwise (never another owner's bytes).

use crate::records;
use pastiche_core::audit::ProofDigest;
use pastiche_core::identity::{Identity, NodeId, PublicKey};
use pastiche_core::seal::ChunkId;
use pastiche_core::seal::MAX_SEALED;
use pastiche_core::session::{AuditBudget, BuddySession, BuddyStore, Buffers, PairingGuard};
use pastiche_core::testing::MemStore;
use pastiche_core::wire::{
    encode_frame, Challenge, Frame, Hello, Message, Proof, SignedMessage, DECODER_BUFFER_LEN, PROTOCOL_VERSION,
};

fn resign(msg: &mut Message<'_>, me: &Identity, buddy: &PublicKey) {
    match msg {
        Message::PutObject(m) => m.sign(me, buddy, [0; 16]),
        Message::DeleteList(m) => m.sign(me, buddy, [0; 16]),
        Message::PutRoot(m) => m.sign(me, buddy, [0; 16]),
        Message::Commit(m) => m.sign(me, buddy, [0; 16]),
        Message::DropAll(m) => m.sign(me, buddy, [0; 16]),
        _ => {}
    }
}

/// The `buddy_session` target. The input is a sequence of [`records`]
/// whose tag holds flags: bit 0 re-signs
/// a signed request with the client's key before it is delivered.
pub fn buddy_session(data: &[u8]) {
    let me = Identity::from_seed([5; 32]).expect("fixed seed");
    let buddy_key = Identity::from_seed([42; 32]).expect("fixed seed").public_key();
    // The core's in-memory store: it persists the ledger's decisions, so
    // the fuzzer exercises the same epoch and ownership rules as every store.
    let mut store = MemStore::new();
    store.enroll(me.public_key(), 1 << 20);
    // Another owner's chunk, which no audit of ours may prove.
    let other = Identity::from_seed([6; 32]).expect("fixed seed").public_key();
    store.enroll(other, 1 << 20);
    store.put_chunk(&other, &ChunkId([0x11; 20]), &[0xee; 300]).expect("in memory");
    store.flush().expect("in memory");
    let mut committed = 0;
    let mut session = BuddySession::new(buddy_key, [7; 32], 0);
    // A small audit budget, so a few audit requests reach the refusal path.
    let mut audits = AuditBudget::<2>::new(128, 1000);
    let mut guard = PairingGuard::<4>::new();
    let mut out = vec![0u8; 2 * DECODER_BUFFER_LEN];
    let mut scratch = vec![0u8; MAX_SEALED];
    let mut frame = vec![0u8; DECODER_BUFFER_LEN];

    // Hello and proof, so the inputs reach an authenticated session.
    let hello = Hello {
        version: PROTOCOL_VERSION,
        client_key: me.public_key(),
        client_node: NodeId::from_name("fuzz"),
        client_nonce: [1; 32],
    };
    let challenge = Challenge { buddy_key, buddy_nonce: [7; 32] };
    for msg in [Message::Hello(hello), Message::Proof(Proof::sign(&me, &hello, &challenge, [0; 16]))] {
        let n = encode_frame(&msg, &mut frame).expect("fits");
        let bufs = Buffers { out: &mut out, scratch: &mut scratch };
        let r = session.handle(&frame[4..n], &mut store, &mut audits, &mut guard.from_source([0; 16]), bufs, 0);
        assert!(!r.close);
    }

    let mut now = 1;
    // Chunk reads answered by audits, held to the budget whatever the input.
    let mut audited: u64 = 0;
    for (flags, payload) in records(data) {
        if session.is_closed() {
            break;
        }
        let mut payload = payload.to_vec();
        if flags & 1 == 1 {
            if let Ok(mut msg) = Message::decode(&payload) {
                resign(&mut msg, &me, &buddy_key);
                let n = encode_frame(&msg, &mut frame).expect("a decoded message encodes");
                payload = frame[4..n].to_vec();
            }
        }
        now += 1;
        let bufs = Buffers { out: &mut out, scratch: &mut scratch };
        let mut r = session.handle(&payload, &mut store, &mut audits, &mut guard.from_source([0; 16]), bufs, now);
        let audit = match Message::decode(&payload) {
            Ok(Message::AuditRequest(req)) => Some(req),
            _ => None,
        };
        loop {
            // Every reply is a well-formed sequence of frames.
            let mut replies = &out[..r.len];
            while !replies.is_empty() {
                let f = Frame::new_checked(replies).expect("the buddy writes whole frames");
                let reply = Message::decode(f.payload()).expect("the buddy writes valid messages");
                if let (Some(req), Message::AuditProofs(proofs)) = (audit, reply) {
                    check_audit(&store, &me.public_key(), &req, &proofs);
                    audited += proofs.len() as u64;
                    let windows = now / audits.window() + 1;
                    assert!(audited <= u64::from(audits.reads_per_window()) * windows, "audit budget exceeded");
                }
                replies = &replies[f.total_len()..];
            }
            if !r.resume {
                break;
            }
            r = session.resume(&mut store, Buffers { out: &mut out, scratch: &mut scratch });
        }
        // Epochs only go forward, whatever the input.
        let now_committed = store.clients[&me.public_key()].epochs.committed;
        assert!(now_committed >= committed, "the committed epoch went backwards");
        committed = now_committed;
    }
}

/// An audit's answer proves exactly the bytes the client references.
fn check_audit(
    store: &MemStore,
    me: &PublicKey,
    req: &pastiche_core::wire::AuditRequest<'_>,
    proofs: &pastiche_core::wire::AuditProofs<'_>,
) {
    assert_eq!(proofs.len(), req.ids.len(), "one answer per id asked");
    for (i, id) in req.ids.iter().enumerate() {
        let id = ChunkId(id);
        let want = store.version_of(me, &id).map(|bytes| ProofDigest::of(&req.nonce, &id, bytes));
        assert_eq!(proofs.answer(i), want, "audit answer {i} for {id}");
    }
}
