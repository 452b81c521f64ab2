//! The `buddy_session` target: a buddy session, already past the hello with
//! a known client, fed arbitrary frames. Frames that decode as signed
//! requests are re-signed by the client when the input asks, so fuzzing
//! reaches the store and commit paths, not only signature checks.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use pastiche_core::identity::{Identity, NodeId, PublicKey, Signature};
use pastiche_core::seal::{ChunkId, MAX_SEALED};
use pastiche_core::session::{BuddySession, BuddyStore, Buffers, ClientRecord, PutOutcome, StagedCounts};
use pastiche_core::wire::{
    encode_frame, Challenge, Frame, Hello, IdList, Message, Proof, SignedMessage, DECODER_BUFFER_LEN, PROTOCOL_VERSION,
};

/// A small in-memory store with the trait's semantics.
#[derive(Default)]
struct Mem {
    chunks: HashMap<ChunkId, (Vec<u8>, BTreeSet<PublicKey>)>,
    pending: Vec<(PublicKey, ChunkId, Vec<u8>)>,
    committed: u64,
    staged: Option<(u64, BTreeMap<[u8; 20], Vec<u8>>, BTreeSet<[u8; 20]>, Option<Vec<u8>>, bool)>,
    objects: BTreeMap<[u8; 20], Vec<u8>>,
    root: Option<(u64, Vec<u8>)>,
}

impl Mem {
    fn stage(&mut self, epoch: u64) -> &mut (u64, BTreeMap<[u8; 20], Vec<u8>>, BTreeSet<[u8; 20]>, Option<Vec<u8>>, bool) {
        if self.staged.as_ref().is_none_or(|s| s.0 != epoch) {
            self.staged = Some((epoch, BTreeMap::new(), BTreeSet::new(), None, false));
        }
        self.staged.as_mut().expect("just set")
    }
}

impl BuddyStore for Mem {
    type Error = ();
    fn client(&mut self, _: &PublicKey) -> Result<ClientRecord, ()> {
        Ok(ClientRecord {
            quota_bytes: 1 << 20,
            used_bytes: 0,
            committed_epoch: self.committed,
            staged_epoch: self.staged.as_ref().map_or(0, |s| s.0),
        })
    }
    fn has_chunk(&mut self, id: &ChunkId) -> Result<bool, ()> {
        Ok(self.chunks.contains_key(id))
    }
    fn add_owner(&mut self, c: &PublicKey, id: &ChunkId) -> Result<(), ()> {
        self.chunks.get_mut(id).ok_or(())?.1.insert(*c);
        Ok(())
    }
    fn put_chunk(&mut self, c: &PublicKey, id: &ChunkId, sealed: &[u8]) -> Result<PutOutcome, ()> {
        if self.pending.len() > 64 {
            return Ok(PutOutcome::QuotaExceeded);
        }
        self.pending.push((*c, *id, sealed.to_vec()));
        Ok(PutOutcome::Stored)
    }
    fn flush(&mut self) -> Result<u32, ()> {
        let n = self.pending.len() as u32;
        for (c, id, d) in self.pending.drain(..) {
            self.chunks.entry(id).or_insert_with(|| (d, BTreeSet::new())).1.insert(c);
        }
        Ok(n)
    }
    fn get_chunk(&mut self, id: &ChunkId, out: &mut [u8]) -> Result<Option<usize>, ()> {
        Ok(self.chunks.get(id).map(|(d, _)| {
            out[..d.len()].copy_from_slice(d);
            d.len()
        }))
    }
    fn stage_object(&mut self, _: &PublicKey, epoch: u64, name: &[u8; 20], data: &[u8]) -> Result<(), ()> {
        self.stage(epoch).1.insert(*name, data.to_vec());
        Ok(())
    }
    fn stage_deletes(&mut self, _: &PublicKey, epoch: u64, ids: IdList<'_>) -> Result<(), ()> {
        self.stage(epoch).2.extend(ids.iter());
        Ok(())
    }
    fn stage_root(&mut self, _: &PublicKey, epoch: u64, data: &[u8]) -> Result<(), ()> {
        self.stage(epoch).3 = Some(data.to_vec());
        Ok(())
    }
    fn prepare(&mut self, _: &PublicKey, epoch: u64, expected: StagedCounts) -> Result<StagedCounts, ()> {
        let s = self.stage(epoch);
        let counts = StagedCounts { objects: s.1.len() as u32, deletes: s.2.len() as u32, root: s.3.is_some() };
        s.4 = counts == expected;
        Ok(counts)
    }
    fn apply(&mut self, c: &PublicKey, epoch: u64) -> Result<(), ()> {
        let s = self.staged.take().ok_or(())?;
        assert!(s.4 && s.0 == epoch, "apply of an unprepared or other epoch");
        assert!(epoch > self.committed, "epochs only go forward");
        self.objects.extend(s.1);
        for id in s.2 {
            if let Some(e) = self.chunks.get_mut(&ChunkId(id)) {
                e.1.remove(c);
            }
        }
        self.root = s.3.map(|r| (epoch, r));
        self.committed = epoch;
        Ok(())
    }
    fn abort(&mut self, _: &PublicKey, epoch: u64) -> Result<(), ()> {
        if self.staged.as_ref().is_some_and(|s| s.0 == epoch) {
            self.staged = None;
        }
        Ok(())
    }
    fn get_object(&mut self, _: &PublicKey, name: &[u8; 20], out: &mut [u8]) -> Result<Option<usize>, ()> {
        Ok(self.objects.get(name).map(|d| {
            out[..d.len()].copy_from_slice(d);
            d.len()
        }))
    }
    fn get_root(&mut self, _: &PublicKey, out: &mut [u8]) -> Result<Option<(u64, usize)>, ()> {
        Ok(self.root.as_ref().map(|(e, d)| {
            out[..d.len()].copy_from_slice(d);
            (*e, d.len())
        }))
    }
    fn drop_all(&mut self, _: &PublicKey, epoch: u64) -> Result<(), ()> {
        assert!(epoch > self.committed, "a drop is never replayed");
        *self = Mem { committed: epoch, ..Mem::default() };
        Ok(())
    }
}

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

/// The `buddy_session` target. The input is a sequence of
/// `[flags: u8][len: u16 big-endian][payload]` records; flag bit 0 re-signs
/// a signed request with the client's key before it is delivered.
pub fn buddy_session(data: &[u8]) {
    let me = Identity::from_seed([5; 32]).expect("fixed seed");
    let buddy_key = Identity::from_seed([42; 32]).expect("fixed seed").public_key();
    let mut store = Mem::default();
    let mut session = BuddySession::new(buddy_key, [7; 32], 0);
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
        let r = session.handle(&frame[4..n], &mut store, bufs, 0);
        assert!(!r.close);
    }

    let mut rest = data;
    let mut now = 1;
    while rest.len() >= 3 && !session.is_closed() {
        let flags = rest[0];
        let len = (u16::from_be_bytes([rest[1], rest[2]]) as usize).min(rest.len() - 3);
        let mut payload = rest[3..3 + len].to_vec();
        rest = &rest[3 + len..];
        if flags & 1 == 1 {
            if let Ok(mut msg) = Message::decode(&payload) {
                resign(&mut msg, &me, &buddy_key);
                let n = encode_frame(&msg, &mut frame).expect("a decoded message encodes");
                payload = frame[4..n].to_vec();
            }
        }
        now += 1;
        let mut r = session.handle(&payload, &mut store, Buffers { out: &mut out, scratch: &mut scratch }, now);
        loop {
            // Every reply is a well-formed sequence of frames.
            let mut replies = &out[..r.len];
            while !replies.is_empty() {
                let f = Frame::new_checked(replies).expect("the buddy writes whole frames");
                Message::decode(f.payload()).expect("the buddy writes valid messages");
                replies = &replies[f.total_len()..];
            }
            if !r.resume {
                break;
            }
            r = session.resume(&mut store, Buffers { out: &mut out, scratch: &mut scratch });
        }
        let _ = Signature([0; 64]);
    }
}
