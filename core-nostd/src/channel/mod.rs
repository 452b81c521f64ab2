//! The secure channel under the peer protocol (`docs/PROTOCOL.md` §1a):
//! a Noise handshake, then an encrypted, authenticated byte pipe.
//!
//! - Pattern `Noise_XX_25519_ChaChaPoly_BLAKE2s` ([`NOISE_NAME`]) with the
//!   prologue [`PROLOGUE`]. XX because at first contact (pairing with an
//!   invite code) the client does not know the buddy's key yet; the client
//!   still checks a pinned key as soon as the buddy's second message proves
//!   it, before it sends its own identity or any data.
//! - Each side's Noise static key is derived from its Ed25519 identity seed
//!   ([`static_secret`]) and bound to the identity by an Ed25519 signature in
//!   the handshake payload ([`Domain::ChannelStatic`](crate::Domain)), so the
//!   channel yields the peer's authenticated box key
//!   ([`Channel::peer`]) and a 32-byte handshake hash for channel binding.
//! - After the handshake, bytes travel in **records**: a `u16` big-endian
//!   length, then one Noise transport message of that many bytes (ciphertext
//!   and a 16-byte tag). A record carries any slice of the byte stream (part
//!   of a frame, or several frames): [`Channel::seal`] and [`Channel::open`].
//!   Each side announces in its handshake payload the largest record it
//!   accepts, so a small device bounds its own buffers.
//!
//! Noise nonces are implicit counters, so a replayed, reordered, dropped,
//! injected, truncated or altered record fails authentication; any error
//! poisons the channel and the session must end.
//!
//! Everything here is sans-IO: records in, records out; the caller owns the
//! socket, the buffers, the clock and the randomness.

use core::fmt;

pub mod handshake;
pub mod record;
pub mod transport;

#[cfg(test)]
mod tests;

/// The portable ChaCha20-Poly1305 (RustCrypto): the default cipher of
/// [`Handshake`] and [`Channel`], the one the firmware runs.
pub use clatter::crypto::cipher::ChaChaPoly;
/// What a host's own ChaCha20-Poly1305 implements to replace the default
/// (checked by `testing::cipher`).
pub use clatter::traits::Cipher;
pub use handshake::{static_secret, Handshake, Role};
pub use record::{record_len, RecordRead, RecordReader};
pub use transport::Channel;

/// The Noise protocol name (it is hashed into every handshake).
pub const NOISE_NAME: &str = "Noise_XX_25519_ChaChaPoly_BLAKE2s";
/// The Noise prologue: both sides must agree on it, so a peer speaking
/// another version of this protocol fails the handshake.
pub const PROLOGUE: &[u8] = b"pastiche/v2/channel\0";
/// Bytes of a record header (the big-endian length of the Noise message).
pub const RECORD_HEADER_LEN: usize = 2;
/// Bytes of the authentication tag ending every encrypted Noise message.
pub const TAG_LEN: usize = 16;
/// The largest Noise message (the Noise specification's limit).
pub const MAX_NOISE_MESSAGE: usize = 65_535;
/// The smallest record limit a peer may announce: below this the overhead
/// of records would dominate, and tiny limits are a resource attack.
pub const MIN_RECORD_LIMIT: usize = 512;
/// The largest handshake message (the second, 194 bytes, has some room).
pub const MAX_HANDSHAKE_MESSAGE: usize = 256;
/// A buffer for one handshake record (header and message).
pub const HANDSHAKE_RECORD_LEN: usize = RECORD_HEADER_LEN + MAX_HANDSHAKE_MESSAGE;
/// Bytes of the handshake payload: Ed25519 key, signature, record limit.
pub const PAYLOAD_LEN: usize = 32 + 64 + 2;
/// Bytes of the handshake hash.
pub const HASH_LEN: usize = 32;

/// Why the channel (handshake or transport) refused something. Every one
/// ends the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelError {
    /// A record header announced a message above the receiver's limit.
    RecordTooLarge {
        /// The length announced.
        len: usize,
        /// The most this receiver accepts.
        limit: usize,
    },
    /// A record is shorter than its tag (or empty).
    RecordTooShort {
        /// The length announced.
        len: usize,
    },
    /// The stream ended inside a record.
    Truncated,
    /// A transport record failed authentication: altered, injected,
    /// replayed, reordered or from another session.
    Decrypt,
    /// A handshake message could not be processed (wrong length, bad
    /// ephemeral key, failed authentication, wrong turn).
    Handshake(&'static str),
    /// The peer's identity payload is malformed or its signature does not
    /// bind its Noise static key to the Ed25519 key it claims.
    BadIdentity,
    /// The peer proved another key than the one pinned for it.
    WrongPeer {
        /// The key the peer proved.
        got: crate::PublicKey,
    },
    /// The peer announced a record limit below [`MIN_RECORD_LIMIT`].
    LimitTooSmall {
        /// The limit announced.
        limit: usize,
    },
    /// The caller's buffer cannot hold what was asked.
    BufferTooSmall,
    /// The channel failed earlier and refuses everything.
    Poisoned,
}

impl core::error::Error for ChannelError {}

impl fmt::Display for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChannelError::RecordTooLarge { len, limit } => {
                write!(f, "record of {len} bytes exceeds the {limit}-byte limit")
            }
            ChannelError::RecordTooShort { len } => write!(f, "record of {len} bytes is too short"),
            ChannelError::Truncated => f.write_str("the stream ended inside a record"),
            ChannelError::Decrypt => f.write_str("record failed authentication (altered, replayed or injected)"),
            ChannelError::Handshake(why) => write!(f, "handshake failed: {why}"),
            ChannelError::BadIdentity => f.write_str("the peer's identity does not match its channel key"),
            ChannelError::WrongPeer { got } => write!(f, "the peer proved key {got}, not the pinned one"),
            ChannelError::LimitTooSmall { limit } => write!(f, "the peer's record limit of {limit} bytes is too small"),
            ChannelError::BufferTooSmall => f.write_str("buffer too small"),
            ChannelError::Poisoned => f.write_str("the channel failed earlier"),
        }
    }
}
