//! The client side of a session, sans-IO: every request method writes one
//! frame into the caller's buffer; every frame received goes through
//! [`ClientSession::handle`], which checks it against what was asked and
//! turns it into a [`ClientEvent`].

use crate::audit::AuditNonce;
use crate::identity::{Identity, NodeId, PublicKey};
use crate::seal::ChunkId;
use crate::wire::{
    encode_frame, Abort, AuditProofs, AuditRequest, Challenge, Commit, DeleteList, DropAll, DropNotice, ErrorCode,
    GetChunk, GetObject, Hello, IdList, Message, Need, Offer, Pair, Proof, PutChunk, PutObject, PutRoot, SignedMessage,
    Welcome, WireError, ID_LEN, MAX_PAIRING_CODE, PROTOCOL_VERSION,
};

/// What a received frame meant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientEvent<'a> {
    /// The buddy challenged us; the proof was written to `out` (this many bytes).
    SendProof(usize),
    /// The session is authenticated.
    Welcome(Welcome),
    /// Which of the last offered ids the buddy lacks.
    Need(Need<'a>),
    /// Chunks put so far are durable; this many were new.
    Flushed(u32),
    /// A chunk asked for.
    Chunk {
        /// Its id (the one asked for).
        id: ChunkId,
        /// Sealed bytes, to be checked with the handle by the caller.
        sealed: &'a [u8],
    },
    /// Phase one of the commit is durable on the buddy.
    Staged(u64),
    /// The epoch is applied.
    Committed(u64),
    /// A metadata object asked for.
    Object {
        /// Its name.
        name: [u8; ID_LEN],
        /// Its sealed bytes.
        data: &'a [u8],
    },
    /// The client's root object on this buddy.
    Root {
        /// Epoch it was committed at.
        epoch: u64,
        /// Its sealed bytes.
        data: &'a [u8],
    },
    /// Everything of ours is gone from the buddy.
    Dropped,
    /// The buddy's last drop of our data on its own (answers `GetNotice`;
    /// a buddy that never dropped us answers `Refused NotFound`).
    Notice(DropNotice),
    /// A request without a specific answer succeeded.
    Ok,
    /// The answer to an audit, checked to answer exactly the ids asked.
    AuditProofs(AuditProofs<'a>),
    /// The buddy refused a request.
    Refused {
        /// Why, as a code.
        code: ErrorCode,
        /// Why, in words.
        message: &'a str,
    },
}

/// Why the client gave up on the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionError {
    /// A frame did not decode.
    Wire(WireError),
    /// The buddy sent something we did not ask for, or broke the protocol.
    Protocol(&'static str),
    /// A request before the session is authenticated, or after it closed.
    NotReady,
}

impl From<WireError> for SessionError {
    fn from(e: WireError) -> Self {
        SessionError::Wire(e)
    }
}

impl core::fmt::Display for SessionError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SessionError::Wire(e) => write!(f, "bad frame from the buddy: {e}"),
            SessionError::Protocol(what) => write!(f, "the buddy broke the protocol: {what}"),
            SessionError::NotReady => f.write_str("the session is not ready for requests"),
        }
    }
}

impl core::error::Error for SessionError {}

#[derive(Clone, Copy, Debug)]
enum State {
    Start,
    AwaitChallenge { hello: Hello },
    AwaitWelcome { challenge: Challenge },
    Ready { buddy_key: PublicKey },
}

/// What answer the last request expects (at most one request with an
/// answer is outstanding; puts and staging have none unless refused).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Nothing,
    Need {
        offered: usize,
    },
    Flushed,
    /// `GetChunk` answers, oldest first (requests may be pipelined).
    Chunks,
    Staged,
    Committed,
    Object([u8; ID_LEN]),
    Root,
    Dropped,
    Notice,
    Ok,
    AuditProofs {
        asked: usize,
    },
}

/// `GetChunk` requests that may be outstanding at once on one session.
pub const MAX_PIPELINED_GETS: usize = 32;

/// One session with one buddy.
pub struct ClientSession {
    identity: Identity,
    node: NodeId,
    nonce: [u8; 32],
    entropy: [u8; 16],
    state: State,
    expect: Expect,
    /// Ids of outstanding `GetChunk` requests, oldest first.
    gets: heapless::Deque<ChunkId, MAX_PIPELINED_GETS>,
    /// A pairing code to present instead of a plain proof.
    pairing_code: Option<heapless::String<MAX_PAIRING_CODE>>,
    /// Uploads (chunks, objects, roots) sent and not refused: each may be
    /// refused once, with `QuotaExceeded`, which has no request of its
    /// own to match. More refusals than that were not asked for (a buddy
    /// sending them endlessly kept a client waiting for an answer forever).
    refusable: u32,
}

impl ClientSession {
    /// A session for `identity` (on node `node`) with a fresh random `nonce`
    /// and `entropy` for signatures.
    pub fn new(identity: Identity, node: NodeId, nonce: [u8; 32], entropy: [u8; 16]) -> ClientSession {
        ClientSession {
            identity,
            node,
            nonce,
            entropy,
            state: State::Start,
            expect: Expect::Nothing,
            gets: heapless::Deque::new(),
            pairing_code: None,
            refusable: 0,
        }
    }

    /// Presents `code` (from the buddy's owner) at the hello, so a buddy
    /// that has not admitted this key yet admits it. `SessionError::Protocol`
    /// if the code is empty or longer than [`MAX_PAIRING_CODE`] bytes.
    pub fn with_pairing_code(mut self, code: &str) -> Result<ClientSession, SessionError> {
        let mut s = heapless::String::new();
        if code.is_empty() || s.push_str(code).is_err() {
            return Err(SessionError::Protocol("a pairing code has 1 to 32 bytes"));
        }
        self.pairing_code = Some(s);
        Ok(self)
    }

    /// The buddy's key, once authenticated.
    pub fn buddy_key(&self) -> Option<PublicKey> {
        match self.state {
            State::Ready { buddy_key } => Some(buddy_key),
            _ => None,
        }
    }

    /// Writes the hello.
    pub fn start(&mut self, out: &mut [u8]) -> Result<usize, SessionError> {
        let hello = Hello {
            version: PROTOCOL_VERSION,
            client_key: self.identity.public_key(),
            client_node: self.node,
            client_nonce: self.nonce,
        };
        self.state = State::AwaitChallenge { hello };
        Ok(encode_frame(&Message::Hello(hello), out)?)
    }

    /// Handles one frame payload from the buddy; may write a reply to `out`
    /// (reported as [`ClientEvent::SendProof`]).
    pub fn handle<'p>(&mut self, payload: &'p [u8], out: &mut [u8]) -> Result<ClientEvent<'p>, SessionError> {
        let msg = Message::decode(payload)?;
        if let Message::Error(e) = msg {
            // A refused upload has no answer of its own: it arrives ahead of
            // the answer still expected (say, to a flush). Any other refusal
            // is the answer to the outstanding request.
            if e.code == ErrorCode::QuotaExceeded {
                if !matches!(self.state, State::Ready { .. }) || self.refusable == 0 {
                    return Err(SessionError::Protocol(
                        "a refusal that was not asked for: more quota refusals than uploads sent",
                    ));
                }
                self.refusable -= 1;
            } else if self.expect == Expect::Chunks && e.code == ErrorCode::NotFound {
                // The oldest outstanding get was for a chunk the buddy lacks.
                self.gets.pop_front();
                if self.gets.is_empty() {
                    self.expect = Expect::Nothing;
                }
            } else {
                self.expect = Expect::Nothing;
                self.gets.clear();
            }
            return Ok(ClientEvent::Refused { code: e.code, message: e.message });
        }
        match (self.state, msg) {
            (State::AwaitChallenge { hello }, Message::Challenge(challenge)) => {
                let msg = match &self.pairing_code {
                    Some(code) => Message::Pair(Pair::sign(&self.identity, &hello, &challenge, code, self.entropy)),
                    None => Message::Proof(Proof::sign(&self.identity, &hello, &challenge, self.entropy)),
                };
                self.state = State::AwaitWelcome { challenge };
                let n = encode_frame(&msg, out)?;
                Ok(ClientEvent::SendProof(n))
            }
            (State::AwaitWelcome { challenge }, Message::Welcome(w)) => {
                self.state = State::Ready { buddy_key: challenge.buddy_key };
                Ok(ClientEvent::Welcome(w))
            }
            (State::Ready { .. }, msg) => self.answer(msg),
            _ => Err(SessionError::Protocol("unexpected message before the session is ready")),
        }
    }

    fn answer<'p>(&mut self, msg: Message<'p>) -> Result<ClientEvent<'p>, SessionError> {
        let expect = self.expect;
        let event = match (expect, msg) {
            (Expect::Need { offered }, Message::Need(need)) => {
                need.check_for(offered)?;
                ClientEvent::Need(need)
            }
            (Expect::Flushed, Message::Flushed(f)) => ClientEvent::Flushed(f.stored),
            (Expect::Chunks, Message::Chunk(c)) if self.gets.front() == Some(&c.id) => {
                self.gets.pop_front();
                ClientEvent::Chunk { id: c.id, sealed: c.sealed }
            }
            (Expect::Staged, Message::Staged(s)) => ClientEvent::Staged(s.epoch),
            (Expect::Committed, Message::Committed(c)) => ClientEvent::Committed(c.epoch),
            (Expect::Object(name), Message::Object(o)) if o.name == name => ClientEvent::Object { name, data: o.data },
            (Expect::Root, Message::Root(r)) => ClientEvent::Root { epoch: r.epoch, data: r.data },
            (Expect::Dropped, Message::Dropped) => ClientEvent::Dropped,
            (Expect::Notice, Message::Notice(n)) => ClientEvent::Notice(n),
            (Expect::Ok, Message::Ok) => ClientEvent::Ok,
            (Expect::AuditProofs { asked }, Message::AuditProofs(p)) if p.len() == asked => ClientEvent::AuditProofs(p),
            _ => return Err(SessionError::Protocol("an answer that was not asked for")),
        };
        // What is still owed: the second phase of a commit, or the rest of
        // the pipelined gets.
        self.expect = match event {
            ClientEvent::Staged(_) => Expect::Committed,
            ClientEvent::Chunk { .. } if !self.gets.is_empty() => Expect::Chunks,
            _ => Expect::Nothing,
        };
        Ok(event)
    }

    fn ready(&self) -> Result<PublicKey, SessionError> {
        match self.state {
            State::Ready { buddy_key } if self.expect == Expect::Nothing => Ok(buddy_key),
            _ => Err(SessionError::NotReady),
        }
    }

    fn send(&mut self, msg: &Message<'_>, expect: Expect, out: &mut [u8]) -> Result<usize, SessionError> {
        self.ready()?;
        let n = encode_frame(msg, out)?;
        self.expect = expect;
        Ok(n)
    }

    fn sign<M: SignedMessage>(&mut self, m: &mut M) -> Result<(), SessionError> {
        let buddy_key = self.ready()?;
        m.sign(&self.identity, &buddy_key, self.entropy);
        Ok(())
    }

    /// Asks which of `ids` (packed, at most 2048) the buddy lacks.
    pub fn offer(&mut self, ids: IdList<'_>, out: &mut [u8]) -> Result<usize, SessionError> {
        self.send(&Message::Offer(Offer { ids }), Expect::Need { offered: ids.len() }, out)
    }

    /// Uploads a sealed chunk (no answer unless refused).
    pub fn put_chunk(&mut self, id: ChunkId, sealed: &[u8], out: &mut [u8]) -> Result<usize, SessionError> {
        let n = self.send(&Message::PutChunk(PutChunk { id, sealed }), Expect::Nothing, out)?;
        self.refusable = self.refusable.saturating_add(1);
        Ok(n)
    }

    /// Asks the buddy to make every put durable.
    pub fn flush(&mut self, out: &mut [u8]) -> Result<usize, SessionError> {
        self.send(&Message::Flush, Expect::Flushed, out)
    }

    /// Asks for a chunk. Up to [`MAX_PIPELINED_GETS`] gets may be
    /// outstanding; their answers come in order.
    pub fn get_chunk(&mut self, id: ChunkId, out: &mut [u8]) -> Result<usize, SessionError> {
        let State::Ready { .. } = self.state else { return Err(SessionError::NotReady) };
        if !matches!(self.expect, Expect::Nothing | Expect::Chunks) || self.gets.is_full() {
            return Err(SessionError::NotReady);
        }
        let n = encode_frame(&Message::GetChunk(GetChunk { id }), out)?;
        self.gets.push_back(id).map_err(|_| SessionError::NotReady)?;
        self.expect = Expect::Chunks;
        Ok(n)
    }

    /// How many gets are outstanding.
    pub fn gets_in_flight(&self) -> usize {
        self.gets.len()
    }

    /// The chunk the next answer to a get is about, if any is in flight.
    pub fn oldest_get(&self) -> Option<ChunkId> {
        self.gets.front().copied()
    }

    /// Stages a metadata object for `epoch` (signed).
    pub fn put_object(
        &mut self,
        epoch: u64,
        name: [u8; ID_LEN],
        data: &[u8],
        out: &mut [u8],
    ) -> Result<usize, SessionError> {
        let mut m = PutObject { epoch, name, data, signature: crate::identity::Signature([0; 64]) };
        self.sign(&mut m)?;
        let n = self.send(&Message::PutObject(m), Expect::Nothing, out)?;
        self.refusable = self.refusable.saturating_add(1);
        Ok(n)
    }

    /// Stages the removal of our references to `ids` at `epoch` (signed).
    pub fn delete_list(&mut self, epoch: u64, ids: IdList<'_>, out: &mut [u8]) -> Result<usize, SessionError> {
        let mut m = DeleteList { epoch, ids, signature: crate::identity::Signature([0; 64]) };
        self.sign(&mut m)?;
        self.send(&Message::DeleteList(m), Expect::Nothing, out)
    }

    /// Stages our root object for `epoch` (signed).
    pub fn put_root(&mut self, epoch: u64, data: &[u8], out: &mut [u8]) -> Result<usize, SessionError> {
        let mut m = PutRoot { epoch, data, signature: crate::identity::Signature([0; 64]) };
        self.sign(&mut m)?;
        let n = self.send(&Message::PutRoot(m), Expect::Nothing, out)?;
        self.refusable = self.refusable.saturating_add(1);
        Ok(n)
    }

    /// Commits `epoch`: `objects` distinct objects and `deletes` distinct ids
    /// were staged, and the staged set digests to `staged`
    /// ([`StagingDigest`](super::StagingDigest)) (signed). Answered by
    /// `Staged`, then `Committed`.
    pub fn commit(
        &mut self,
        epoch: u64,
        objects: u32,
        deletes: u32,
        staged: [u8; 32],
        out: &mut [u8],
    ) -> Result<usize, SessionError> {
        let mut m = Commit { epoch, objects, deletes, staged, signature: crate::identity::Signature([0; 64]) };
        self.sign(&mut m)?;
        self.send(&Message::Commit(m), Expect::Staged, out)
    }

    /// Discards what is staged for `epoch`.
    pub fn abort(&mut self, epoch: u64, out: &mut [u8]) -> Result<usize, SessionError> {
        self.send(&Message::Abort(Abort { epoch }), Expect::Ok, out)
    }

    /// Asks for one of our committed objects.
    pub fn get_object(&mut self, name: [u8; ID_LEN], out: &mut [u8]) -> Result<usize, SessionError> {
        self.send(&Message::GetObject(GetObject { name }), Expect::Object(name), out)
    }

    /// Asks for our root object.
    pub fn get_root(&mut self, out: &mut [u8]) -> Result<usize, SessionError> {
        self.send(&Message::GetRoot, Expect::Root, out)
    }

    /// Challenges the buddy to prove, under a fresh `nonce`, that it holds
    /// `ids` (at most [`MAX_AUDIT_IDS`](crate::audit::MAX_AUDIT_IDS)) for us.
    /// Answered by [`ClientEvent::AuditProofs`].
    pub fn audit(&mut self, nonce: AuditNonce, ids: IdList<'_>, out: &mut [u8]) -> Result<usize, SessionError> {
        let asked = ids.len();
        self.send(&Message::AuditRequest(AuditRequest { nonce, ids }), Expect::AuditProofs { asked }, out)
    }

    /// Asks whether the buddy dropped our data on its own: answered by
    /// [`ClientEvent::Notice`], or `Refused NotFound` when it never did.
    /// The notice comes inside the channel from the buddy the session
    /// authenticated, so nobody else can make a client act on one.
    pub fn get_notice(&mut self, out: &mut [u8]) -> Result<usize, SessionError> {
        self.send(&Message::GetNotice, Expect::Notice, out)
    }

    /// Removes everything of ours from the buddy (signed).
    pub fn drop_all(&mut self, epoch: u64, out: &mut [u8]) -> Result<usize, SessionError> {
        let mut m = DropAll { epoch, signature: crate::identity::Signature([0; 64]) };
        self.sign(&mut m)?;
        self.send(&Message::DropAll(m), Expect::Dropped, out)
    }
}
