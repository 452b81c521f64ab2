//! A client session and a buddy session over an in-memory pipe with a
//! virtual clock, optionally cut after a number of client frames.

use std::vec;
use std::vec::Vec;

use crate::audit::ProofDigest;
use crate::identity::{Identity, NodeId, PublicKey};
use crate::seal::MAX_SEALED as SCRATCH_LEN;
use crate::session::{AuditBudget, BuddySession, BuddyStore, Buffers, ClientEvent, ClientSession, PairingGuard};
use crate::wire::{ErrorCode, Frame, Welcome, DECODER_BUFFER_LEN};

/// The link was cut (its frame budget ran out).
#[derive(Debug, PartialEq, Eq)]
pub struct LinkCut;

/// Owned copy of a client event, for assertions.
#[derive(Debug, PartialEq, Eq)]
pub enum Ev {
    /// Which offered ids the buddy lacks.
    Need(Vec<bool>),
    /// A flush's count.
    Flushed(u32),
    /// A chunk's sealed bytes.
    Chunk(Vec<u8>),
    /// Phase one of a commit.
    Staged(u64),
    /// Phase two of a commit.
    Committed(u64),
    /// An object's bytes.
    Object(Vec<u8>),
    /// The root and its epoch.
    Root(u64, Vec<u8>),
    /// A refusal.
    Refused(ErrorCode),
    /// An audit's answers, one per id asked (`None`: not held).
    Proofs(Vec<Option<ProofDigest>>),
    /// Anything else.
    Other,
}

impl From<ClientEvent<'_>> for Ev {
    fn from(e: ClientEvent<'_>) -> Ev {
        match e {
            ClientEvent::Need(n) => Ev::Need((0..n.bitmap.len() * 8).map(|i| n.lacks(i)).collect()),
            ClientEvent::Flushed(n) => Ev::Flushed(n),
            ClientEvent::Chunk { sealed, .. } => Ev::Chunk(sealed.to_vec()),
            ClientEvent::Staged(e) => Ev::Staged(e),
            ClientEvent::Committed(e) => Ev::Committed(e),
            ClientEvent::Object { data, .. } => Ev::Object(data.to_vec()),
            ClientEvent::Root { epoch, data } => Ev::Root(epoch, data.to_vec()),
            ClientEvent::Refused { code, .. } => Ev::Refused(code),
            ClientEvent::AuditProofs(p) => Ev::Proofs((0..p.len()).map(|i| p.answer(i)).collect()),
            _ => Ev::Other,
        }
    }
}

/// The identity of the buddy every link talks to.
pub fn buddy_identity() -> Identity {
    Identity::from_seed([42; 32]).expect("a valid seed")
}

/// A connection: a client and a buddy session joined by an in-memory pipe.
pub struct Link<'s, S: BuddyStore> {
    /// The buddy's store.
    pub store: &'s mut S,
    /// The buddy's session.
    pub buddy: BuddySession,
    /// The client's session.
    pub client: ClientSession,
    /// The buddy's key.
    pub buddy_key: PublicKey,
    /// Client frames left before the cut (None: never cut).
    pub budget: Option<usize>,
    /// When false, the buddy "dies" after sending `Staged`: phase two never runs.
    pub apply_after_staged: bool,
    /// `PutChunk` frames delivered.
    pub puts_sent: usize,
    /// The buddy's limits on guessing pairing codes (this link's own: the
    /// limits across connections are tested in `session::tests`).
    pub pairing: PairingGuard<4>,
    /// The client's output buffer (requests are written here).
    pub out: Vec<u8>,
    /// The buddy's audit budget (the default one, for this link alone).
    pub audits: AuditBudget<8>,
    now: u64,
    reply: Vec<u8>,
    scratch: Vec<u8>,
}

impl<'s, S: BuddyStore> Link<'s, S> {
    /// Connects as `me`, presenting `code` if given; the buddy's refusal
    /// (as its error code) if the hello does not end in `Welcome`.
    pub fn connect(
        store: &'s mut S,
        me: &Identity,
        code: Option<&str>,
        budget: Option<usize>,
    ) -> Result<Result<(Link<'s, S>, Welcome), ErrorCode>, LinkCut> {
        let buddy_key = buddy_identity().public_key();
        let mut client = ClientSession::new(me.clone(), NodeId::from_name("client.example"), [9; 32], [1; 16]);
        if let Some(code) = code {
            client = client.with_pairing_code(code).expect("a code of 1..=32 bytes");
        }
        let mut link = Link {
            store,
            buddy: BuddySession::new(buddy_key, [7; 32], 0),
            client,
            buddy_key,
            budget,
            apply_after_staged: true,
            puts_sent: 0,
            pairing: PairingGuard::new(),
            out: vec![0; DECODER_BUFFER_LEN],
            audits: AuditBudget::default(),
            now: 0,
            reply: vec![0; 2 * DECODER_BUFFER_LEN],
            scratch: vec![0; SCRATCH_LEN],
        };
        let n = link.client.start(&mut link.out).expect("hello encodes");
        let replies = link.deliver(n)?;
        let payload = Frame::new_checked(&replies[0]).expect("a frame").payload().to_vec();
        let n = match link.client.handle(&payload, &mut link.out).expect("a valid challenge") {
            ClientEvent::SendProof(n) => n,
            ClientEvent::Refused { code, .. } => return Ok(Err(code)),
            e => panic!("expected a challenge, got {e:?}"),
        };
        let replies = link.deliver(n)?;
        let payload = Frame::new_checked(&replies[0]).expect("a frame").payload().to_vec();
        match link.client.handle(&payload, &mut link.out).expect("a valid answer") {
            ClientEvent::Welcome(w) => Ok(Ok((link, w))),
            ClientEvent::Refused { code, .. } => Ok(Err(code)),
            e => panic!("expected welcome, got {e:?}"),
        }
    }

    /// Connects as an admitted client; panics if refused.
    pub fn open(store: &'s mut S, me: &Identity, budget: Option<usize>) -> Result<(Link<'s, S>, Welcome), LinkCut> {
        Ok(Link::connect(store, me, None, budget)?.expect("an admitted client"))
    }

    /// Sends the client frame in `out[..n]`; returns the buddy's reply frames.
    pub fn deliver(&mut self, n: usize) -> Result<Vec<Vec<u8>>, LinkCut> {
        if let Some(b) = self.budget.as_mut() {
            if *b == 0 {
                return Err(LinkCut);
            }
            *b -= 1;
        }
        self.now += 1;
        let payload = Frame::new_checked(&self.out[..n]).expect("a frame").payload().to_vec();
        if payload[0] == crate::wire::Kind::PutChunk as u8 {
            self.puts_sent += 1;
        }
        let bufs = Buffers { out: &mut self.reply, scratch: &mut self.scratch };
        let mut pairing = self.pairing.from_source([0; 16]);
        let mut r = self.buddy.handle(&payload, self.store, &mut self.audits, &mut pairing, bufs, self.now);
        let mut frames = split(&self.reply[..r.len]);
        while r.resume && self.apply_after_staged {
            let bufs = Buffers { out: &mut self.reply, scratch: &mut self.scratch };
            r = self.buddy.resume(self.store, bufs);
            frames.extend(split(&self.reply[..r.len]));
        }
        Ok(frames)
    }

    /// Sends the request in `out[..n]` and returns the events of the replies.
    pub fn request(&mut self, n: usize) -> Result<Vec<Ev>, LinkCut> {
        let frames = self.deliver(n)?;
        Ok(frames
            .iter()
            .map(|f| {
                let payload = Frame::new_checked(f).expect("a frame").payload();
                Ev::from(self.client.handle(payload, &mut self.out).expect("a valid answer"))
            })
            .collect())
    }
}

/// Splits bytes into whole frames.
pub fn split(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let f = Frame::new_checked(bytes).expect("a frame");
        out.push(bytes[..f.total_len()].to_vec());
        bytes = &bytes[f.total_len()..];
    }
    out
}
