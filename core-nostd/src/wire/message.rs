//! Messages: one kind byte, then the postcard encoding of the kind's struct.
//!
//! The kind byte is explicit (not postcard's enum index), so kinds are stable
//! and ranges can be reserved. Bodies borrow from the payload. Decoding
//! refuses unknown kinds, truncated and trailing bytes, non-canonical
//! encodings (an overlong varint, say) and out-of-bounds lengths, so a
//! decoded [`Message`] can be trusted and re-encodes to the same bytes.

use core::fmt;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::audit::{AuditProofs, AuditRequest};
use super::fixed::{as_fixed, IdList};
use super::{WireError, ID_LEN, MAX_ERROR_MESSAGE, MAX_IDS_PER_MESSAGE, MAX_OBJECT_DATA, MAX_PAIRING_CODE, NONCE_LEN};
use crate::identity::{NodeId, PublicKey, Signature};
use crate::seal::{ChunkId, MAX_SEALED, MIN_SEALED};

/// The longest [`Need`] bitmap: one bit per id of the largest [`Offer`].
pub const MAX_NEED_BITMAP: usize = MAX_IDS_PER_MESSAGE.div_ceil(8);

/// Session start, client to buddy: who I am, and my half of the challenge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Protocol version spoken, [`PROTOCOL_VERSION`](super::PROTOCOL_VERSION).
    pub version: u16,
    /// The client's Ed25519 public key: its identity and owner name.
    #[serde(with = "as_fixed")]
    pub client_key: PublicKey,
    /// The client's overlay nodeId.
    #[serde(with = "as_fixed")]
    pub client_node: NodeId,
    /// 32 fresh random bytes.
    #[serde(with = "as_fixed")]
    pub client_nonce: [u8; NONCE_LEN],
}

/// Buddy to client, answering [`Hello`]: the buddy's key and its half of the
/// challenge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    /// The buddy's Ed25519 public key, bound into every signature the client
    /// makes for this buddy.
    #[serde(with = "as_fixed")]
    pub buddy_key: PublicKey,
    /// 32 fresh random bytes.
    #[serde(with = "as_fixed")]
    pub buddy_nonce: [u8; NONCE_LEN],
}

/// Client to buddy: proof of possession of the client key, a signature over
/// [`hello_parts`](super::hello_parts) for [`Domain::Hello`](crate::Domain::Hello).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof {
    /// The signature.
    #[serde(with = "as_fixed")]
    pub signature: Signature,
}

/// Client to buddy, in place of [`Proof`] by a client the buddy has not
/// admitted yet: the same proof of key possession, plus a one-time pairing
/// code the buddy's owner handed out. A signature over
/// [`pair_parts`](super::pair_parts) for [`Domain::Pair`](crate::Domain::Pair).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pair<'a> {
    /// The pairing code, 1..=[`MAX_PAIRING_CODE`](super::MAX_PAIRING_CODE) bytes of UTF-8.
    pub code: &'a str,
    /// The signature.
    #[serde(with = "as_fixed")]
    pub signature: Signature,
}

/// Buddy to client: the session is authenticated; the client's account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// Bytes the buddy grants this client.
    pub quota_bytes: u64,
    /// Bytes charged to this client now.
    pub used_bytes: u64,
    /// The client's last committed epoch (0: none yet).
    pub committed_epoch: u64,
    /// An epoch staged but not committed (0: none).
    pub staged_epoch: u64,
}

/// Client to buddy: "which of these chunks do you lack?"
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer<'a> {
    /// chunkIds, at most [`MAX_IDS_PER_MESSAGE`].
    #[serde(borrow)]
    pub ids: IdList<'a>,
}

/// Buddy to client, answering the last [`Offer`]: bit `i` (least significant
/// bit first within each byte) is 1 when the buddy lacks id `i`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Need<'a> {
    /// `ceil(n / 8)` bytes for an offer of `n` ids; bits past `n` are 0.
    #[serde(with = "super::fixed::byte_str", borrow)]
    pub bitmap: &'a [u8],
}

impl<'a> Need<'a> {
    /// Bytes of the bitmap answering an offer of `offered` ids.
    pub const fn bitmap_len(offered: usize) -> usize {
        offered.div_ceil(8)
    }

    /// Builds the bitmap for `lacks` (one flag per offered id, in order) in
    /// `out`: [`WireError::BufferTooSmall`] if `out` is short,
    /// `BadLength` past [`MAX_IDS_PER_MESSAGE`] ids.
    pub fn build(lacks: impl IntoIterator<Item = bool>, out: &'a mut [u8]) -> Result<Need<'a>, WireError> {
        let mut n = 0usize;
        for lack in lacks {
            if n == MAX_IDS_PER_MESSAGE {
                return Err(WireError::BadLength { field: "bitmap", len: MAX_NEED_BITMAP + 1 });
            }
            let byte = out.get_mut(n / 8).ok_or(WireError::BufferTooSmall)?;
            if n.is_multiple_of(8) {
                *byte = 0;
            }
            *byte |= u8::from(lack) << (n % 8);
            n += 1;
        }
        Ok(Need { bitmap: &out[..Need::bitmap_len(n)] })
    }

    /// Whether the buddy lacks id `i` of the offer.
    pub fn lacks(&self, i: usize) -> bool {
        self.bitmap.get(i / 8).is_some_and(|b| b >> (i % 8) & 1 == 1)
    }

    /// How many ids the buddy lacks.
    pub fn count(&self) -> usize {
        self.bitmap.iter().map(|b| b.count_ones() as usize).sum()
    }

    /// Checks that this answers an offer of `offered` ids: the length is
    /// [`Need::bitmap_len`] and bits past `offered` are 0.
    pub fn check_for(&self, offered: usize) -> Result<(), WireError> {
        let len = self.bitmap.len();
        let bad = WireError::BadLength { field: "bitmap", len };
        if len != Need::bitmap_len(offered) {
            return Err(bad);
        }
        if !offered.is_multiple_of(8) && self.bitmap.last().is_some_and(|b| b >> (offered % 8) != 0) {
            return Err(bad);
        }
        Ok(())
    }
}

/// Client to buddy: store a sealed chunk (SPEC §2) under its chunkId, owned
/// (also) by the session's client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutChunk<'a> {
    /// The chunkId.
    #[serde(with = "as_fixed")]
    pub id: ChunkId,
    /// The sealed chunk, [`MIN_SEALED`]..=[`MAX_SEALED`] bytes.
    #[serde(with = "super::fixed::byte_str", borrow)]
    pub sealed: &'a [u8],
}

/// Buddy to client, answering `Flush`: every chunk put so far is durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flushed {
    /// `PutChunk`s received since the previous `Flush` of the session.
    pub stored: u32,
}

/// Client to buddy: send me this chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetChunk {
    /// The chunkId.
    #[serde(with = "as_fixed")]
    pub id: ChunkId,
}

/// Buddy to client, answering [`GetChunk`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk<'a> {
    /// The chunkId asked for.
    #[serde(with = "as_fixed")]
    pub id: ChunkId,
    /// The sealed chunk, [`MIN_SEALED`]..=[`MAX_SEALED`] bytes.
    #[serde(with = "super::fixed::byte_str", borrow)]
    pub sealed: &'a [u8],
}

/// Client to buddy: stage the creation or overwrite of a metadata object for
/// `epoch`. Signed ([`Domain::MetadataPut`](crate::Domain::MetadataPut)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutObject<'a> {
    /// The epoch being staged.
    pub epoch: u64,
    /// The object's 20-byte name.
    #[serde(with = "as_fixed")]
    pub name: [u8; ID_LEN],
    /// The sealed object, at most [`MAX_OBJECT_DATA`] bytes.
    #[serde(with = "super::fixed::byte_str", borrow)]
    pub data: &'a [u8],
    /// The client's signature.
    #[serde(with = "as_fixed")]
    pub signature: Signature,
}

/// Client to buddy: stage the release of the client's references to chunks
/// for `epoch`. Signed ([`Domain::DeleteList`](crate::Domain::DeleteList)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteList<'a> {
    /// The epoch being staged.
    pub epoch: u64,
    /// chunkIds, at most [`MAX_IDS_PER_MESSAGE`].
    #[serde(borrow)]
    pub ids: IdList<'a>,
    /// The client's signature.
    #[serde(with = "as_fixed")]
    pub signature: Signature,
}

/// Client to buddy: stage the replacement of the client's root object for
/// `epoch`. Signed ([`Domain::RootPut`](crate::Domain::RootPut)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutRoot<'a> {
    /// The epoch being staged.
    pub epoch: u64,
    /// The sealed root object, at most [`MAX_OBJECT_DATA`] bytes.
    #[serde(with = "super::fixed::byte_str", borrow)]
    pub data: &'a [u8],
    /// The client's signature.
    #[serde(with = "as_fixed")]
    pub signature: Signature,
}

/// Client to buddy: commit `epoch`, which holds exactly `objects` staged
/// object names and `deletes` staged chunkIds, whose staged set digests to
/// `staged` ([`StagingDigest`](crate::session::StagingDigest)). Signed
/// ([`Domain::Commit`](crate::Domain::Commit)), so the signature covers
/// every byte of the epoch: parts of two attempts of one epoch never mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    /// The epoch to commit.
    pub epoch: u64,
    /// Distinct object names staged for the epoch.
    pub objects: u32,
    /// Distinct chunkIds in the epoch's delete lists.
    pub deletes: u32,
    /// The digest of everything staged for the epoch (objects, deletes, root).
    #[serde(with = "as_fixed")]
    pub staged: [u8; 32],
    /// The client's signature.
    #[serde(with = "as_fixed")]
    pub signature: Signature,
}

/// Buddy to client, phase 1 of a commit: everything of `epoch` is durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Staged {
    /// The epoch.
    pub epoch: u64,
}

/// Buddy to client, phase 2 of a commit: `epoch` is applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    /// The epoch.
    pub epoch: u64,
}

/// Client to buddy: discard the staged, uncommitted `epoch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Abort {
    /// The epoch.
    pub epoch: u64,
}

/// Client to buddy: send me this metadata object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetObject {
    /// The object's name.
    #[serde(with = "as_fixed")]
    pub name: [u8; ID_LEN],
}

/// Buddy to client, answering [`GetObject`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Object<'a> {
    /// The object's name.
    #[serde(with = "as_fixed")]
    pub name: [u8; ID_LEN],
    /// The sealed object, at most [`MAX_OBJECT_DATA`] bytes.
    #[serde(with = "super::fixed::byte_str", borrow)]
    pub data: &'a [u8],
}

/// Buddy to client, answering `GetRoot`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Root<'a> {
    /// The epoch that committed this root.
    pub epoch: u64,
    /// The sealed root object, at most [`MAX_OBJECT_DATA`] bytes.
    #[serde(with = "super::fixed::byte_str", borrow)]
    pub data: &'a [u8],
}

/// Client to buddy: drop everything the client stores here, at `epoch`.
/// Signed ([`Domain::Drop`](crate::Domain::Drop)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropAll {
    /// An epoch above the committed one; it becomes the committed epoch.
    pub epoch: u64,
    /// The client's signature.
    #[serde(with = "as_fixed")]
    pub signature: Signature,
}

/// Why a buddy dropped a client's data on its own ([`DropNotice`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropNotice {
    /// Numbers this client's notices on this buddy, from 1, growing with
    /// each drop: a client acts on a notice once, on the first it sees
    /// with a higher `seq` than any it acted on before.
    pub seq: u64,
    /// When the buddy dropped the data (Unix seconds, the buddy's clock).
    pub dropped_at: u64,
    /// Bytes charged to the client that were released.
    pub bytes: u64,
    /// Why: [`DropNotice::SPACE_CRISIS`] or [`DropNotice::DECOMMISSIONED`];
    /// other values are carried as they are (a later version's reasons).
    pub reason: u8,
}

impl DropNotice {
    /// The buddy's free disk fell below its floor and this client was next
    /// by its stated policy (`docs/PROTOCOL.md` §4.9).
    pub const SPACE_CRISIS: u8 = 1;
    /// The client was silent for the buddy's whole grace period.
    pub const DECOMMISSIONED: u8 = 2;
}

/// Either side: a request failed. Unless its code is
/// [`NotFound`](ErrorCode::NotFound) or [`QuotaExceeded`](ErrorCode::QuotaExceeded),
/// the sender closes the session after it (see [`ErrorCode::is_fatal`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorMsg<'a> {
    /// What went wrong.
    pub code: ErrorCode,
    /// Human-readable detail, at most [`MAX_ERROR_MESSAGE`] UTF-8 bytes.
    pub message: &'a str,
}

/// The codes of an [`ErrorMsg`], a varint `u16` on the wire. Other values
/// are malformed in version 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ErrorCode {
    /// A frame or message could not be decoded.
    BadFrame = 1,
    /// A valid message, but not one expected in the session's state.
    UnexpectedMessage = 2,
    /// A signature did not verify.
    BadSignature = 3,
    /// An epoch not above the committed one.
    Replayed = 4,
    /// The client's quota would be exceeded.
    QuotaExceeded = 5,
    /// No such chunk, object or root.
    NotFound = 6,
    /// The protocol version is not spoken here.
    VersionMismatch = 7,
    /// Something exceeds a limit (a frame, a field, a count).
    TooLarge = 8,
    /// The peer failed on its own (disk, bug).
    Internal = 9,
    /// A request before the handshake completed.
    NotAuthenticated = 10,
    /// Refused for now: the sender's budget for such requests is spent (a
    /// buddy's per-client audit budget); the session goes on, try later.
    RateLimited = 11,
}

impl ErrorCode {
    /// The code for a `u16`, if it is one.
    pub fn from_u16(code: u16) -> Option<ErrorCode> {
        Some(match code {
            1 => ErrorCode::BadFrame,
            2 => ErrorCode::UnexpectedMessage,
            3 => ErrorCode::BadSignature,
            4 => ErrorCode::Replayed,
            5 => ErrorCode::QuotaExceeded,
            6 => ErrorCode::NotFound,
            7 => ErrorCode::VersionMismatch,
            8 => ErrorCode::TooLarge,
            9 => ErrorCode::Internal,
            10 => ErrorCode::NotAuthenticated,
            11 => ErrorCode::RateLimited,
            _ => return None,
        })
    }

    /// Whether the sender closes the session after sending this code: every
    /// code but [`NotFound`](ErrorCode::NotFound), which answers one
    /// `GetChunk`, `GetObject` or `GetRoot`,
    /// [`QuotaExceeded`](ErrorCode::QuotaExceeded), which refuses one
    /// `PutChunk`, and [`RateLimited`](ErrorCode::RateLimited), which
    /// refuses one `AuditRequest`; all leave the session open.
    pub fn is_fatal(self) -> bool {
        !matches!(self, ErrorCode::NotFound | ErrorCode::QuotaExceeded | ErrorCode::RateLimited)
    }

    /// The code a receiver sends back for a decoding failure.
    pub fn for_wire_error(e: WireError) -> ErrorCode {
        match e {
            WireError::FrameTooLarge { .. } | WireError::BadLength { .. } => ErrorCode::TooLarge,
            _ => ErrorCode::BadFrame,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u16(*self as u16)
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = u16::deserialize(deserializer)?;
        ErrorCode::from_u16(code).ok_or_else(|| D::Error::custom("unknown error code"))
    }
}

/// Declares the kinds: the [`Kind`] byte enum, the [`Message`] enum and the
/// hand-written dispatch between them.
macro_rules! kinds {
    (
        $( $(#[$sdoc:meta])* $sname:ident = $sval:literal ($sty:ty), )*
        ;
        $( $(#[$udoc:meta])* $uname:ident = $uval:literal, )*
    ) => {
        /// The first byte of every payload. Values 66..=79 are reserved for
        /// audits, 80..=95 (but 88 and 89) for the buddy lifecycle and
        /// 96..=127 for the overlay; they and every other value not listed
        /// decode as [`WireError::UnknownKind`].
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum Kind {
            $( $(#[$sdoc])* $sname = $sval, )*
            $( $(#[$udoc])* $uname = $uval, )*
        }

        impl Kind {
            /// The kind for a byte, if it is an assigned one.
            pub fn from_u8(byte: u8) -> Option<Kind> {
                match byte {
                    $( $sval => Some(Kind::$sname), )*
                    $( $uval => Some(Kind::$uname), )*
                    _ => None,
                }
            }
        }

        /// A protocol message, borrowing its variable-length fields from the
        /// payload it was decoded from.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Message<'a> {
            $( $(#[$sdoc])* $sname($sty), )*
            $( $(#[$udoc])* $uname, )*
        }

        impl<'a> Message<'a> {
            /// The message's kind.
            pub fn kind(&self) -> Kind {
                match self {
                    $( Message::$sname(_) => Kind::$sname, )*
                    $( Message::$uname => Kind::$uname, )*
                }
            }

            /// Decodes a frame payload: kind byte, then the kind's body,
            /// which must be consumed exactly, be canonical and respect every
            /// bound.
            pub fn decode(payload: &'a [u8]) -> Result<Message<'a>, WireError> {
                let (&byte, body) = payload.split_first().ok_or(WireError::EmptyFrame)?;
                let kind = Kind::from_u8(byte).ok_or(WireError::UnknownKind(byte))?;
                let msg = match kind {
                    $( Kind::$sname => Message::$sname(decode_body(body)?), )*
                    $( Kind::$uname => {
                        if !body.is_empty() {
                            return Err(WireError::Malformed);
                        }
                        Message::$uname
                    } )*
                };
                msg.check()?;
                Ok(msg)
            }

            /// Writes the payload (kind byte and body) at the start of `out`
            /// and returns its length. The message is checked first, as a
            /// decoder would check it: `BadLength` if a field is out of bounds.
            pub fn encode(&self, out: &mut [u8]) -> Result<usize, WireError> {
                self.check()?;
                let (kind, body) = out.split_first_mut().ok_or(WireError::BufferTooSmall)?;
                *kind = self.kind() as u8;
                let len = match self {
                    $( Message::$sname(m) => postcard::to_slice(m, body)?.len(), )*
                    $( Message::$uname => 0, )*
                };
                Ok(1 + len)
            }

            /// Bytes of the payload [`Message::encode`] writes.
            pub fn encoded_len(&self) -> usize {
                let body = match self {
                    $( Message::$sname(m) => postcard::serialize_with_flavor(m, Size(0)).unwrap_or(0), )*
                    $( Message::$uname => 0, )*
                };
                1 + body
            }
        }
    };
}

kinds! {
    /// 1, client to buddy: session start.
    Hello = 1 (Hello),
    /// 2, buddy to client: the buddy's key and nonce.
    Challenge = 2 (Challenge),
    /// 3, client to buddy: proof of key possession.
    Proof = 3 (Proof),
    /// 4, buddy to client: authenticated; the client's account.
    Welcome = 4 (Welcome),
    /// 5, client to buddy: proof of key possession with a pairing code.
    Pair = 5 (Pair<'a>),
    /// 10, client to buddy: which of these chunks do you lack?
    Offer = 10 (Offer<'a>),
    /// 11, buddy to client: the lacking ones of the last offer.
    Need = 11 (Need<'a>),
    /// 12, client to buddy: store a sealed chunk.
    PutChunk = 12 (PutChunk<'a>),
    /// 14, buddy to client: every chunk put so far is durable.
    Flushed = 14 (Flushed),
    /// 15, client to buddy: send a chunk.
    GetChunk = 15 (GetChunk),
    /// 16, buddy to client: a chunk.
    Chunk = 16 (Chunk<'a>),
    /// 20, client to buddy: stage a metadata object (signed).
    PutObject = 20 (PutObject<'a>),
    /// 21, client to buddy: stage chunk releases (signed).
    DeleteList = 21 (DeleteList<'a>),
    /// 22, client to buddy: stage the root object (signed).
    PutRoot = 22 (PutRoot<'a>),
    /// 23, client to buddy: commit an epoch (signed).
    Commit = 23 (Commit),
    /// 24, buddy to client: the epoch is durable (phase 1).
    Staged = 24 (Staged),
    /// 25, buddy to client: the epoch is applied (phase 2).
    Committed = 25 (Committed),
    /// 26, client to buddy: discard a staged epoch.
    Abort = 26 (Abort),
    /// 27, client to buddy: send a metadata object.
    GetObject = 27 (GetObject),
    /// 28, buddy to client: a metadata object.
    Object = 28 (Object<'a>),
    /// 30, buddy to client: the root object.
    Root = 30 (Root<'a>),
    /// 31, client to buddy: drop all the client's data (signed).
    DropAll = 31 (DropAll),
    /// 61, either side: a failure; the session ends unless it is `NotFound`.
    Error = 61 (ErrorMsg<'a>),
    /// 64, client to buddy: prove you hold these chunks of mine, under a nonce.
    AuditRequest = 64 (AuditRequest<'a>),
    /// 65, buddy to client: one proof per challenged chunk, or "not held".
    AuditProofs = 65 (AuditProofs<'a>),
    /// 89, buddy to client: the last time the buddy dropped the client's
    /// data on its own (answers `GetNotice`).
    Notice = 89 (DropNotice),
    ;
    /// 13, client to buddy: make every chunk put so far durable.
    Flush = 13,
    /// 29, client to buddy: send my root object.
    GetRoot = 29,
    /// 32, buddy to client: everything of the client is dropped.
    Dropped = 32,
    /// 60, buddy to client: success, for requests with nothing else to say (`Abort`).
    Ok = 60,
    /// 88, client to buddy: did you drop my data on your own? Answered by
    /// `Notice`, or `Error NotFound` when it never did.
    GetNotice = 88,
}

impl Kind {
    /// Whether `byte` is in a range reserved for a later version: 66..=95
    /// (audits and the buddy lifecycle, but the assigned 88 and 89) and
    /// 96..=127 (overlay: routing, fingerprints, LAN pairing).
    pub fn is_reserved(byte: u8) -> bool {
        (66..=127).contains(&byte) && Kind::from_u8(byte).is_none()
    }
}

impl Message<'_> {
    /// Checks every length and bound a decoder checks.
    fn check(&self) -> Result<(), WireError> {
        match self {
            Message::Offer(m) => m.ids.check(),
            Message::DeleteList(m) => m.ids.check(),
            Message::Need(m) => at_most("bitmap", m.bitmap.len(), MAX_NEED_BITMAP),
            Message::PutChunk(PutChunk { sealed, .. }) | Message::Chunk(Chunk { sealed, .. }) => {
                if (MIN_SEALED..=MAX_SEALED).contains(&sealed.len()) {
                    Ok(())
                } else {
                    Err(WireError::BadLength { field: "sealed", len: sealed.len() })
                }
            }
            Message::PutObject(PutObject { data, .. })
            | Message::PutRoot(PutRoot { data, .. })
            | Message::Object(Object { data, .. })
            | Message::Root(Root { data, .. }) => at_most("data", data.len(), MAX_OBJECT_DATA),
            Message::Error(m) => at_most("message", m.message.len(), MAX_ERROR_MESSAGE),
            Message::Pair(m) if m.code.is_empty() => Err(WireError::BadLength { field: "code", len: 0 }),
            Message::Pair(m) => at_most("code", m.code.len(), MAX_PAIRING_CODE),
            Message::AuditRequest(m) => m.check(),
            Message::AuditProofs(m) => m.check(),
            _ => Ok(()),
        }
    }
}

fn at_most(field: &'static str, len: usize, max: usize) -> Result<(), WireError> {
    if len <= max {
        Ok(())
    } else {
        Err(WireError::BadLength { field, len })
    }
}

/// Decodes `body` as exactly one canonical postcard `T`.
pub(super) fn decode_body<'a, T: Deserialize<'a> + Serialize>(body: &'a [u8]) -> Result<T, WireError> {
    let (value, rest) = postcard::take_from_bytes::<T>(body)?;
    if !rest.is_empty() {
        return Err(WireError::Malformed);
    }
    // Postcard accepts overlong varints; refuse them, so that every message
    // has exactly one encoding.
    match postcard::serialize_with_flavor(&value, Canonical { expected: body, pos: 0 }) {
        Ok(len) if len == body.len() => Ok(value),
        _ => Err(WireError::Malformed),
    }
}

/// A serialization sink that only compares with `expected`.
struct Canonical<'e> {
    expected: &'e [u8],
    pos: usize,
}

impl postcard::ser_flavors::Flavor for Canonical<'_> {
    type Output = usize;

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        let end = self.pos.checked_add(data.len()).ok_or(postcard::Error::SerializeBufferFull)?;
        if self.expected.get(self.pos..end) == Some(data) {
            self.pos = end;
            Ok(())
        } else {
            Err(postcard::Error::SerializeBufferFull)
        }
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.try_extend(&[data])
    }

    fn finalize(self) -> postcard::Result<usize> {
        Ok(self.pos)
    }
}

/// A serialization sink that only counts.
struct Size(usize);

impl postcard::ser_flavors::Flavor for Size {
    type Output = usize;

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0 += data.len();
        Ok(())
    }

    fn try_push(&mut self, _: u8) -> postcard::Result<()> {
        self.0 += 1;
        Ok(())
    }

    fn finalize(self) -> postcard::Result<usize> {
        Ok(self.0)
    }
}
