//! The buddy side of a session, sans-IO: the caller decodes frames, hands
//! each payload to [`BuddySession::handle`] with its store and buffers, and
//! sends the frames written to `out`. No sockets, clocks or threads inside.

use crate::identity::PublicKey;
use crate::seal::MAX_SEALED;
use crate::wire::{
    encode_frame, Challenge, Chunk, Committed, ErrorCode, ErrorMsg, Flushed, Hello, Message, Need, Object, Root,
    SignedMessage, Staged, Welcome, WireError, MAX_IDS_PER_MESSAGE, MAX_OBJECT_DATA, PROTOCOL_VERSION,
};

use super::admission::{Gate, PairingLimits};
use super::audit_budget::AuditMeter;
use super::ledger::{mismatch, Reads};
use super::store::{BuddyStore, ClientRecord, PutOutcome, StagedCounts};

/// Why a key without a record is refused at the hello.
const NOT_PAIRED: &str = "not paired with this buddy: pair with a code from its owner (pastiche buddy invite)";
/// Why an audit is refused for now.
const AUDIT_BUDGET_SPENT: &str = "audit budget spent for now: try later";
/// Why a pairing attempt is refused.
const BAD_CODE: &str = "pairing code unknown, used or expired";
/// Why a pairing attempt is refused unchecked: its source guessed too often.
const SOURCE_WAITS: &str =
    "too many wrong pairing codes from this address: wait (up to a minute) and try again; the code was not checked";
/// Why a pairing attempt is refused unchecked: too many wrong codes overall.
const PAIRING_PAUSED: &str =
    "too many wrong pairing codes lately: pairing is paused for a few seconds; try again; the code was not checked";

/// A session with no traffic for this long (in the caller's time unit,
/// milliseconds by convention) may be closed.
pub const IDLE_TIMEOUT_MS: u64 = 120_000;

/// Buffers the caller lends for one call.
pub struct Buffers<'a> {
    /// Where reply frames are written (at least [`crate::wire::DECODER_BUFFER_LEN`] bytes, two
    /// frames' worth for a commit: use twice that).
    pub out: &'a mut [u8],
    /// Scratch space for a chunk or object read from the store (at least
    /// [`MAX_SEALED`] bytes).
    pub scratch: &'a mut [u8],
}

/// What the caller must do after a call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reply {
    /// Bytes of frames written at the start of `out`, to send in order.
    pub len: usize,
    /// Close the connection once they are sent.
    pub close: bool,
    /// Call [`BuddySession::resume`] once they are sent (a commit's second phase).
    pub resume: bool,
    /// A request was refused (logged by the caller).
    pub refused: Option<Refusal>,
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The code sent to the peer.
    pub code: ErrorCode,
    /// A short reason, also sent.
    pub reason: &'static str,
}

#[derive(Clone, Copy, Debug)]
enum State {
    AwaitHello,
    AwaitProof { hello: Hello },
    Ready { client: PublicKey, committed: u64 },
    Applying { client: PublicKey, epoch: u64 },
    Closed,
}

/// One session with one client.
pub struct BuddySession {
    buddy_key: PublicKey,
    nonce: [u8; 32],
    state: State,
    last_activity: u64,
}

/// The store failed; the session reports it and closes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreFailed;

impl BuddySession {
    /// A session for the buddy whose public key is `buddy_key`, with a fresh
    /// random `nonce` for the hello challenge, started at `now`.
    pub fn new(buddy_key: PublicKey, nonce: [u8; 32], now: u64) -> BuddySession {
        BuddySession { buddy_key, nonce, state: State::AwaitHello, last_activity: now }
    }

    /// The authenticated client, once the hello is done.
    pub fn client(&self) -> Option<PublicKey> {
        match self.state {
            State::Ready { client, .. } | State::Applying { client, .. } => Some(client),
            _ => None,
        }
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// When the session may be closed for idleness.
    pub fn deadline(&self) -> u64 {
        self.last_activity.saturating_add(IDLE_TIMEOUT_MS)
    }

    /// The bytes received did not form a frame (oversized, say): reply with
    /// an error and close. Nothing in the store changes.
    pub fn on_wire_error(&mut self, error: WireError, bufs: Buffers<'_>) -> Reply {
        let code = ErrorCode::for_wire_error(error);
        self.refuse(bufs.out, Refusal { code, reason: "malformed frame" }, true)
    }

    /// Handles one frame payload received at `now`. `audits` is the buddy's
    /// per-client audit budget, shared by all its sessions
    /// ([`AuditBudget`](super::AuditBudget)). A pairing code is checked only
    /// if `pairing` (the buddy's limits on guessing codes, as this
    /// connection's source sees them) lets it.
    pub fn handle<S: BuddyStore, M: AuditMeter>(
        &mut self,
        payload: &[u8],
        store: &mut S,
        audits: &mut M,
        pairing: &mut dyn PairingLimits,
        bufs: Buffers<'_>,
        now: u64,
    ) -> Reply {
        self.last_activity = now;
        let msg = match Message::decode(payload) {
            Ok(m) => m,
            Err(e) => return self.on_wire_error(e, bufs),
        };
        let lent = Buffers { out: &mut *bufs.out, scratch: &mut *bufs.scratch };
        match self.dispatch(msg, store, audits, pairing, lent, now) {
            Ok(reply) => reply,
            Err(StoreFailed) => {
                self.refuse(bufs.out, Refusal { code: ErrorCode::Internal, reason: "storage failure" }, true)
            }
        }
    }

    /// The second phase of a commit, after its `Staged` reply was sent.
    pub fn resume<S: BuddyStore>(&mut self, store: &mut S, bufs: Buffers<'_>) -> Reply {
        let State::Applying { client, epoch } = self.state else {
            return Reply::default();
        };
        if store.apply(&client, epoch).is_err() {
            return self.refuse(bufs.out, Refusal { code: ErrorCode::Internal, reason: "storage failure" }, true);
        }
        self.state = State::Ready { client, committed: epoch };
        self.reply(bufs.out, &Message::Committed(Committed { epoch }))
    }

    fn dispatch<S: BuddyStore, M: AuditMeter>(
        &mut self,
        msg: Message<'_>,
        store: &mut S,
        audits: &mut M,
        pairing: &mut dyn PairingLimits,
        bufs: Buffers<'_>,
        now: u64,
    ) -> Result<Reply, StoreFailed> {
        let Buffers { out, scratch } = bufs;
        if let Message::Error(_) = msg {
            // Never an `Error` in answer to an `Error` (PROTOCOL.md §6): a
            // client that gives up is let go without a word, so two peers
            // can never trade errors.
            self.state = State::Closed;
            return Ok(Reply { close: true, ..Reply::default() });
        }
        let (client, committed) = match (self.state, msg) {
            (State::Closed, _) => return Ok(Reply { close: true, ..Reply::default() }),
            (State::AwaitHello, Message::Hello(hello)) => {
                if hello.version != PROTOCOL_VERSION {
                    return Ok(self.refuse(
                        out,
                        refusal(ErrorCode::VersionMismatch, "unsupported protocol version"),
                        true,
                    ));
                }
                self.state = State::AwaitProof { hello };
                let challenge = Challenge { buddy_key: self.buddy_key, buddy_nonce: self.nonce };
                return Ok(self.reply(out, &Message::Challenge(challenge)));
            }
            (State::AwaitProof { hello }, Message::Proof(proof)) => {
                let challenge = Challenge { buddy_key: self.buddy_key, buddy_nonce: self.nonce };
                if proof.verify(&hello, &challenge).is_err() {
                    return Ok(self.refuse(out, refusal(ErrorCode::BadSignature, "hello proof does not verify"), true));
                }
                // Only admitted keys are served; a stranger leaves no record.
                return Ok(match store.client(&hello.client_key).map_err(|_| StoreFailed)? {
                    Some(rec) => self.welcome(out, hello.client_key, rec),
                    None => self.refuse(out, refusal(ErrorCode::NotAuthenticated, NOT_PAIRED), true),
                });
            }
            (State::AwaitProof { hello }, Message::Pair(pair)) => {
                let challenge = Challenge { buddy_key: self.buddy_key, buddy_nonce: self.nonce };
                if pair.verify(&hello, &challenge).is_err() {
                    return Ok(self.refuse(
                        out,
                        refusal(ErrorCode::BadSignature, "pairing proof does not verify"),
                        true,
                    ));
                }
                // An admitted client pairing again keeps its record; the
                // code is only spent on a new key, and only checked within
                // the limits on guessing.
                let rec = match store.client(&hello.client_key).map_err(|_| StoreFailed)? {
                    Some(rec) => Some(rec),
                    None => match pairing.begin(now) {
                        Gate::SourceWait { .. } => {
                            return Ok(self.refuse(out, refusal(ErrorCode::NotAuthenticated, SOURCE_WAITS), true))
                        }
                        Gate::Paused { .. } => {
                            return Ok(self.refuse(out, refusal(ErrorCode::NotAuthenticated, PAIRING_PAUSED), true))
                        }
                        Gate::Check => {
                            let admitted = store.admit(&hello.client_key, pair.code);
                            pairing.end(matches!(admitted, Ok(Some(_))));
                            admitted.map_err(|_| StoreFailed)?
                        }
                    },
                };
                return Ok(match rec {
                    Some(rec) => self.welcome(out, hello.client_key, rec),
                    None => self.refuse(out, refusal(ErrorCode::NotAuthenticated, BAD_CODE), true),
                });
            }
            (State::AwaitHello | State::AwaitProof { .. }, _) => {
                return Ok(self.refuse(out, refusal(ErrorCode::NotAuthenticated, "hello first"), true));
            }
            (State::Applying { .. }, _) => {
                return Ok(self.refuse(out, refusal(ErrorCode::UnexpectedMessage, "commit in progress"), true));
            }
            (State::Ready { client, committed }, _) => (client, committed),
        };
        let reply = match msg {
            Message::Offer(offer) => {
                // Answered from the client's own references only: the buddy
                // is no oracle for what other owners store.
                let mut lacks = [false; MAX_IDS_PER_MESSAGE];
                for (i, id) in offer.ids.iter().enumerate() {
                    let id = crate::seal::ChunkId(id);
                    let holds = store.holds_chunk(&client, &id).map_err(|_| StoreFailed)?;
                    lacks[i] = Reads::offer_lacks(holds);
                }
                let n = offer.ids.len();
                let mut bitmap = [0u8; MAX_IDS_PER_MESSAGE / 8];
                let need = Need::build(lacks[..n].iter().copied(), &mut bitmap).expect("bounded by the offer");
                self.reply(out, &Message::Need(need))
            }
            Message::PutChunk(put) => {
                let outcome = store.put_chunk(&client, &put.id, put.sealed).map_err(|_| StoreFailed)?;
                self.outcome(out, outcome)
            }
            Message::Flush => {
                let stored = store.flush().map_err(|_| StoreFailed)?;
                self.reply(out, &Message::Flushed(Flushed { stored }))
            }
            Message::GetChunk(get) => {
                let limit = MAX_SEALED.min(scratch.len());
                let scratch = &mut scratch[..limit];
                match store.get_chunk(&client, &get.id, scratch).map_err(|_| StoreFailed)? {
                    Some(n) => self.reply(out, &Message::Chunk(Chunk { id: get.id, sealed: &scratch[..n] })),
                    None => self.refuse(out, refusal(ErrorCode::NotFound, "no such chunk"), false),
                }
            }
            Message::PutObject(m) => match self.check_signed(&m, client, committed, m.epoch) {
                Some(r) => self.refuse(out, r, true),
                None => {
                    let outcome = store.stage_object(&client, m.epoch, &m.name, m.data).map_err(|_| StoreFailed)?;
                    self.outcome(out, outcome)
                }
            },
            Message::DeleteList(m) => match self.check_signed(&m, client, committed, m.epoch) {
                Some(r) => self.refuse(out, r, true),
                None => {
                    store.stage_deletes(&client, m.epoch, m.ids).map_err(|_| StoreFailed)?;
                    Reply::default()
                }
            },
            Message::PutRoot(m) => match self.check_signed(&m, client, committed, m.epoch) {
                Some(r) => self.refuse(out, r, true),
                None => {
                    let outcome = store.stage_root(&client, m.epoch, m.data).map_err(|_| StoreFailed)?;
                    self.outcome(out, outcome)
                }
            },
            Message::Commit(m) => match self.check_signed(&m, client, committed, m.epoch) {
                Some(r) => self.refuse(out, r, true),
                None => {
                    let expected =
                        StagedCounts { objects: m.objects, deletes: m.deletes, root: true, digest: m.staged };
                    let counts = store.prepare(&client, m.epoch, expected).map_err(|_| StoreFailed)?;
                    if let Some(why) = mismatch(counts, expected) {
                        // Something sent for the epoch was lost, or what is
                        // staged is not what the client signed (parts of
                        // another attempt); it was not prepared, so dropping
                        // it is safe. The client stages a fresh attempt.
                        store.abort(&client, m.epoch).map_err(|_| StoreFailed)?;
                        return Ok(self.refuse(out, refusal(ErrorCode::UnexpectedMessage, why), true));
                    }
                    self.state = State::Applying { client, epoch: m.epoch };
                    let mut r = self.reply(out, &Message::Staged(Staged { epoch: m.epoch }));
                    r.resume = true;
                    r
                }
            },
            Message::Abort(m) => {
                store.abort(&client, m.epoch).map_err(|_| StoreFailed)?;
                self.reply(out, &Message::Ok)
            }
            Message::GetObject(get) => {
                let limit = MAX_OBJECT_DATA.min(scratch.len());
                let scratch = &mut scratch[..limit];
                match store.get_object(&client, &get.name, scratch).map_err(|_| StoreFailed)? {
                    Some(n) => self.reply(out, &Message::Object(Object { name: get.name, data: &scratch[..n] })),
                    None => self.refuse(out, refusal(ErrorCode::NotFound, "no such object"), false),
                }
            }
            Message::GetRoot => {
                let limit = MAX_OBJECT_DATA.min(scratch.len());
                let scratch = &mut scratch[..limit];
                match store.get_root(&client, scratch).map_err(|_| StoreFailed)? {
                    Some((epoch, n)) => self.reply(out, &Message::Root(Root { epoch, data: &scratch[..n] })),
                    None => self.refuse(out, refusal(ErrorCode::NotFound, "no root object"), false),
                }
            }
            Message::DropAll(m) => match self.check_signed(&m, client, committed, m.epoch) {
                Some(r) => self.refuse(out, r, true),
                None => {
                    store.drop_all(&client, m.epoch).map_err(|_| StoreFailed)?;
                    self.state = State::Ready { client, committed: m.epoch };
                    self.reply(out, &Message::Dropped)
                }
            },
            Message::GetNotice => match store.drop_notice(&client).map_err(|_| StoreFailed)? {
                Some(notice) => self.reply(out, &Message::Notice(notice)),
                None => self.refuse(out, refusal(ErrorCode::NotFound, "no drop notice"), false),
            },
            // Charged before anything is read: a request past the client's
            // budget reads nothing.
            Message::AuditRequest(req) if !audits.charge(&client, req.ids.len() as u32, now) => {
                self.refuse(out, refusal(ErrorCode::RateLimited, AUDIT_BUDGET_SPENT), false)
            }
            Message::AuditRequest(req) => match super::audit::answer(store, &client, &req, out, scratch) {
                Ok(len) => Reply { len, ..Reply::default() },
                Err(super::audit::BufferTooSmall) => {
                    self.state = State::Closed;
                    Reply { close: true, ..Reply::default() }
                }
            },
            _ => self.refuse(out, refusal(ErrorCode::UnexpectedMessage, "not a request a buddy serves"), true),
        };
        Ok(reply)
    }

    /// The answer to an upload or a staging message: none, or a
    /// `QuotaExceeded` refusal that leaves the session open.
    fn outcome(&mut self, out: &mut [u8], outcome: PutOutcome) -> Reply {
        match outcome {
            PutOutcome::Stored => Reply::default(),
            PutOutcome::QuotaExceeded => self.refuse(out, refusal(ErrorCode::QuotaExceeded, "quota exceeded"), false),
        }
    }

    fn welcome(&mut self, out: &mut [u8], client: PublicKey, rec: ClientRecord) -> Reply {
        self.state = State::Ready { client, committed: rec.committed_epoch };
        let welcome = Welcome {
            quota_bytes: rec.quota_bytes,
            used_bytes: rec.used_bytes,
            committed_epoch: rec.committed_epoch,
            staged_epoch: rec.staged_epoch,
        };
        self.reply(out, &Message::Welcome(welcome))
    }

    /// Refuses a state-changing request unless the client signed it, for
    /// this buddy, with an epoch above the last one applied.
    fn check_signed<M: SignedMessage>(&self, m: &M, client: PublicKey, committed: u64, epoch: u64) -> Option<Refusal> {
        if m.verify(&client, &self.buddy_key).is_err() {
            return Some(refusal(ErrorCode::BadSignature, "signature does not verify"));
        }
        if epoch <= committed {
            return Some(refusal(ErrorCode::Replayed, "epoch not above the committed one"));
        }
        None
    }

    fn reply(&mut self, out: &mut [u8], msg: &Message<'_>) -> Reply {
        match encode_frame(msg, out) {
            Ok(len) => Reply { len, ..Reply::default() },
            // Only a caller buffer below the documented size gets here.
            Err(_) => {
                self.state = State::Closed;
                Reply { close: true, ..Reply::default() }
            }
        }
    }

    fn refuse(&mut self, out: &mut [u8], why: Refusal, close: bool) -> Reply {
        let msg = Message::Error(ErrorMsg { code: why.code, message: why.reason });
        let mut r = self.reply(out, &msg);
        if close {
            self.state = State::Closed;
            r.close = true;
        }
        r.refused = Some(why);
        r
    }
}

fn refusal(code: ErrorCode, reason: &'static str) -> Refusal {
    Refusal { code, reason }
}
