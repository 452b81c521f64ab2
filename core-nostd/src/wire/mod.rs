//! The wire protocol every peer speaks (appliance or firmware), byte for byte
//! as `docs/PROTOCOL.md` documents it.
//!
//! Two layers, each with `new_checked`-style parsing before any field access:
//!
//! - [`frame`]: a `u32` big-endian payload length, then the payload, at most
//!   [`MAX_FRAME_PAYLOAD`] bytes. [`FrameDecoder`] reassembles frames from
//!   arbitrary slices of a byte stream into a caller-provided buffer.
//! - [`message`]: a payload is one kind byte ([`Kind`]) followed by the
//!   postcard encoding of that kind's struct. [`Message::decode`] borrows
//!   from the payload, refuses anything out of bounds, trailing or not in its
//!   one canonical encoding, so later code can trust a decoded message.
//!
//! [`signing`] builds the exact byte parts each signed message covers, so a
//! client and a buddy cannot disagree about them. Nothing here allocates or
//! panics on any input.

use core::fmt;

pub mod audit;
pub mod beacon;
pub mod fixed;
pub mod frame;
pub mod message;
pub mod overlay;
pub mod pairing;
pub mod signing;

#[cfg(test)]
mod tests;

pub use audit::{AuditProofs, AuditProofsWriter, AuditRequest};
pub use fixed::{Fixed, IdList, Ids};
pub use frame::{encode_frame, Fed, Frame, FrameDecoder, DECODER_BUFFER_LEN, FRAME_HEADER_LEN, MAX_FRAME_PAYLOAD};
pub use message::{
    Abort, Challenge, Chunk, Commit, Committed, DeleteList, DropAll, DropNotice, ErrorCode, ErrorMsg, Flushed,
    GetChunk, GetObject, Hello, Kind, Message, Need, Object, Offer, Pair, Proof, PutChunk, PutObject, PutRoot, Root,
    Staged, Welcome,
};
pub use signing::{hello_parts, pair_parts, SignedMessage};

/// The protocol version a [`Hello`] carries. Version 2: the frames travel
/// inside the secure channel ([`crate::channel`]), pairing ([`Pair`]) admits
/// clients, and offers and reads are answered from the asking client's own
/// chunks only. Version 3: a [`Commit`] signs the digest of everything
/// staged for its epoch.
pub const PROTOCOL_VERSION: u16 = 3;
/// The longest pairing code a [`Pair`] carries, in UTF-8 bytes.
pub const MAX_PAIRING_CODE: usize = 32;
/// Bytes of a chunkId or metadata object name.
pub const ID_LEN: usize = 20;
/// The most ids one [`Offer`] or [`DeleteList`] carries.
pub const MAX_IDS_PER_MESSAGE: usize = 2048;
/// The largest metadata object or root object in one message (60 KiB).
pub const MAX_OBJECT_DATA: usize = 60 * 1024;
/// The largest text of an [`ErrorMsg`], in UTF-8 bytes.
pub const MAX_ERROR_MESSAGE: usize = 256;
/// Bytes of a handshake nonce.
pub const NONCE_LEN: usize = 32;

/// Why bytes were refused or could not be produced on the wire.
///
/// Any of these, received from a peer, ends the session: the receiver sends
/// [`ErrorMsg`] and closes, and its state is untouched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// A frame header announced a payload above [`MAX_FRAME_PAYLOAD`], or a
    /// message would encode to one.
    FrameTooLarge {
        /// The payload length announced or needed.
        len: usize,
    },
    /// A frame header announced an empty payload (no kind byte).
    EmptyFrame,
    /// The bytes ended inside a frame or inside a message field.
    Truncated,
    /// The payload is not the canonical postcard encoding of its kind's
    /// struct (bad varint, bad UTF-8, trailing bytes, unknown error code, ...).
    Malformed,
    /// The kind byte is unassigned or reserved.
    UnknownKind(u8),
    /// The caller's buffer cannot hold what was asked.
    BufferTooSmall,
    /// A field's length is outside its bounds.
    BadLength {
        /// The field's name, as in `docs/PROTOCOL.md`.
        field: &'static str,
        /// The length found, in bytes.
        len: usize,
    },
}

impl core::error::Error for WireError {}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::FrameTooLarge { len } => {
                write!(f, "frame payload of {len} bytes exceeds the {MAX_FRAME_PAYLOAD}-byte maximum")
            }
            WireError::EmptyFrame => f.write_str("empty frame"),
            WireError::Truncated => f.write_str("truncated frame or message"),
            WireError::Malformed => f.write_str("malformed message"),
            WireError::UnknownKind(k) => write!(f, "unknown or reserved message kind {k}"),
            WireError::BufferTooSmall => f.write_str("buffer too small"),
            WireError::BadLength { field, len } => write!(f, "field `{field}` has a bad length of {len} bytes"),
        }
    }
}

impl From<postcard::Error> for WireError {
    fn from(e: postcard::Error) -> WireError {
        match e {
            postcard::Error::DeserializeUnexpectedEnd => WireError::Truncated,
            postcard::Error::SerializeBufferFull => WireError::BufferTooSmall,
            _ => WireError::Malformed,
        }
    }
}
