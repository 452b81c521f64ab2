//! Convergent encryption of data chunks, exactly as SPEC §2 and §2a define it.
//!
//! The key of a chunk is derived from its own content, so the same chunk
//! sealed on two boxes gives the same name (chunkId), and a buddy stores it
//! once. What is encrypted is a body (§2a): a tag byte, then the plaintext
//! ([`BODY_RAW`]) or one zstd frame of it ([`BODY_ZSTD`]).
//!
//! The core needs no allocator: it seals raw bodies itself, seals a frame a
//! caller compressed ([`seal_frame`]), and on opening checks the tag, decrypts,
//! reads the body tag byte and a frame's header ([`Body`]). Decoding a frame
//! is the caller's (the appliance's), followed by [`check_plain`].
//! Everything works in caller buffers.

use aes::Aes128;
use core::fmt;
use ctr::cipher::{KeyIvInit, StreamCipher};
use hmac::{Hmac, Mac};
use sha1::{Digest, Sha1};

use crate::chunker::MAX_CHUNK;
use crate::hex::hex_id;

mod frame;
pub use frame::{declared_content_size, FrameError, ZSTD_MAGIC};

type HmacSha1 = Hmac<Sha1>;
type Aes128Ctr = ctr::Ctr128BE<Aes128>;

/// Bytes of the authentication tag appended to every sealed chunk.
pub const TAG_LEN: usize = 20;
/// Body tag byte (SPEC §2a): the plaintext follows as is.
pub const BODY_RAW: u8 = 0x00;
/// Body tag byte (SPEC §2a): one zstd frame of the plaintext follows.
pub const BODY_ZSTD: u8 = 0x01;
/// The largest body: its tag byte and a maximal raw plaintext.
pub const MAX_BODY: usize = 1 + MAX_CHUNK;
/// The smallest sealed chunk: an empty plaintext stored raw, and the tag.
pub const MIN_SEALED: usize = 1 + TAG_LEN;
/// The largest sealed chunk: a maximal plaintext stored raw, and the tag.
pub const MAX_SEALED: usize = MAX_BODY + TAG_LEN;

const ENC_LABEL: &[u8] = b"pastiche/v1/enc";
const MAC_LABEL: &[u8] = b"pastiche/v1/mac";

hex_id!(
    /// `SHA1(plaintext)`: the secret that opens a chunk. Kept only in its
    /// owner's encrypted metadata.
    Handle,
    20
);
hex_id!(
    /// `SHA1(handle)`: the public name of a sealed chunk.
    ChunkId,
    20
);

impl Handle {
    /// The handle of a plaintext chunk.
    pub fn of(plain: &[u8]) -> Handle {
        Handle(Sha1::digest(plain).into())
    }

    /// The chunkId that names the sealed chunk.
    pub fn chunk_id(&self) -> ChunkId {
        ChunkId(Sha1::digest(self.0).into())
    }

    fn hmac(&self, label: &[u8]) -> [u8; 20] {
        let mut mac = HmacSha1::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(label);
        mac.finalize().into_bytes().into()
    }

    fn cipher(&self) -> Aes128Ctr {
        let full = self.hmac(ENC_LABEL);
        let mut key = [0u8; 16];
        key.copy_from_slice(&full[..16]);
        Aes128Ctr::new(&key.into(), &[0u8; 16].into())
    }

    fn tagger(&self) -> HmacSha1 {
        HmacSha1::new_from_slice(&self.hmac(MAC_LABEL)).expect("HMAC takes any key length")
    }
}

/// Why a chunk could not be sealed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SealError {
    /// The plaintext is longer than [`MAX_CHUNK`].
    TooLarge {
        /// Plaintext length given.
        len: usize,
    },
    /// The output buffer cannot hold the body and the tag.
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
    },
    /// The compressed body given is not one §2a accepts for this plaintext.
    BadFrame(FrameError),
}

impl core::error::Error for SealError {}

impl fmt::Display for SealError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SealError::TooLarge { len } => {
                write!(f, "chunk of {len} bytes is larger than the {MAX_CHUNK}-byte maximum")
            }
            SealError::BufferTooSmall { needed } => write!(f, "output buffer needs {needed} bytes"),
            SealError::BadFrame(e) => write!(f, "cannot seal the compressed chunk: {e}"),
        }
    }
}

/// Why a sealed chunk was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenError {
    /// Shorter than a body tag byte and a tag: not a sealed chunk at all.
    Truncated {
        /// Length given.
        len: usize,
    },
    /// Longer than the largest sealed chunk.
    TooLarge {
        /// Length given.
        len: usize,
    },
    /// The tag does not match: the bytes were altered, or this handle is not
    /// the one the chunk was sealed with.
    BadTag,
    /// The tag matched but the body starts with a byte that is neither
    /// [`BODY_RAW`] nor [`BODY_ZSTD`].
    UnknownBody {
        /// The body tag byte found.
        tag: u8,
    },
    /// The tag matched but the compressed body is refused.
    BadFrame(FrameError),
    /// The tag matched but the plaintext's SHA-1 is not the handle.
    WrongHandle,
    /// The output buffer cannot hold the body.
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
    },
}

impl core::error::Error for OpenError {}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Truncated { len } => {
                write!(f, "sealed chunk truncated: {len} bytes is less than the {MIN_SEALED}-byte minimum")
            }
            OpenError::TooLarge { len } => {
                write!(f, "sealed chunk of {len} bytes exceeds the {MAX_SEALED}-byte maximum")
            }
            OpenError::BadTag => f.write_str("sealed chunk failed authentication (corrupt, or wrong handle)"),
            OpenError::UnknownBody { tag } => write!(f, "sealed chunk has unknown body tag byte {tag:#04x}"),
            OpenError::BadFrame(e) => write!(f, "sealed chunk refused: {e}"),
            OpenError::WrongHandle => f.write_str("opened chunk does not hash to its handle"),
            OpenError::BufferTooSmall { needed } => write!(f, "output buffer needs {needed} bytes"),
        }
    }
}

impl From<FrameError> for OpenError {
    fn from(e: FrameError) -> OpenError {
        OpenError::BadFrame(e)
    }
}

/// The names of a freshly sealed chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sealed {
    /// The secret handle (`SHA1(plaintext)`).
    pub handle: Handle,
    /// The public chunkId (`SHA1(handle)`).
    pub id: ChunkId,
    /// Bytes of sealed output (`1 + body payload + TAG_LEN`).
    pub len: usize,
}

/// Bytes a chunk of `plain_len` bytes takes sealed raw: the most it can
/// take, so the size of a buffer any sealing of it fits in.
pub const fn raw_sealed_len(plain_len: usize) -> usize {
    plain_len + MIN_SEALED
}

/// Seals `buf[..plain_len]` raw, in place: the body is shifted one byte up
/// for its tag byte and the tag is written after it, so `buf` must hold
/// [`raw_sealed_len`]`(plain_len)` bytes.
pub fn seal_in_place(buf: &mut [u8], plain_len: usize) -> Result<Sealed, SealError> {
    if plain_len > MAX_CHUNK {
        return Err(SealError::TooLarge { len: plain_len });
    }
    let needed = raw_sealed_len(plain_len);
    if buf.len() < needed {
        return Err(SealError::BufferTooSmall { needed });
    }
    let handle = Handle::of(&buf[..plain_len]);
    buf.copy_within(..plain_len, 1);
    buf[0] = BODY_RAW;
    let (body, rest) = buf.split_at_mut(1 + plain_len);
    handle.cipher().apply_keystream(body);
    rest[..TAG_LEN].copy_from_slice(&tag_of(&handle, body));
    Ok(Sealed { handle, id: handle.chunk_id(), len: needed })
}

/// Seals `plain` raw into `out` (which needs [`raw_sealed_len`] bytes),
/// leaving the plaintext untouched. Needs no allocator: what a `no_std`
/// writer uses.
pub fn seal_into(plain: &[u8], out: &mut [u8]) -> Result<Sealed, SealError> {
    if plain.len() > MAX_CHUNK {
        return Err(SealError::TooLarge { len: plain.len() });
    }
    seal_with_handle(plain, &Handle::of(plain), out)
}

/// Like [`seal_into`], for a caller that already hashed the chunk (to look
/// its chunkId up before deciding to seal it): saves one SHA-1 pass.
/// `handle` must be `Handle::of(plain)`; any other value seals a chunk that
/// every owner's open will refuse.
pub fn seal_with_handle(plain: &[u8], handle: &Handle, out: &mut [u8]) -> Result<Sealed, SealError> {
    if plain.len() > MAX_CHUNK {
        return Err(SealError::TooLarge { len: plain.len() });
    }
    seal_body(handle, BODY_RAW, plain, out)
}

/// Seals a compressed body: `frame` must be one zstd frame of the chunk whose
/// handle is `handle`, declaring its content size `plain_len`, and smaller
/// than it (§2a stores anything else raw). `out` needs `frame.len() +`
/// [`MIN_SEALED`] bytes.
///
/// Only the frame's header is checked here (the core has no decoder); the
/// writer that produced the frame vouches for its blocks.
pub fn seal_frame(handle: &Handle, plain_len: usize, frame: &[u8], out: &mut [u8]) -> Result<Sealed, SealError> {
    if plain_len > MAX_CHUNK {
        return Err(SealError::TooLarge { len: plain_len });
    }
    if frame.len() >= plain_len {
        return Err(SealError::BadFrame(FrameError::NotSmaller { frame: frame.len(), plain: plain_len }));
    }
    let declared = declared_content_size(frame).map_err(SealError::BadFrame)?;
    if declared != plain_len {
        return Err(SealError::BadFrame(FrameError::SizeMismatch { declared, produced: plain_len }));
    }
    seal_body(handle, BODY_ZSTD, frame, out)
}

/// Encrypts `body_tag || payload` under `handle`'s key into `out` and
/// appends the tag.
fn seal_body(handle: &Handle, body_tag: u8, payload: &[u8], out: &mut [u8]) -> Result<Sealed, SealError> {
    let needed = payload.len() + MIN_SEALED;
    if out.len() < needed {
        return Err(SealError::BufferTooSmall { needed });
    }
    let (body, rest) = out[..needed].split_at_mut(1 + payload.len());
    let mut cipher = handle.cipher();
    body[0] = body_tag;
    cipher.apply_keystream(&mut body[..1]);
    cipher.apply_keystream_b2b(payload, &mut body[1..]).expect("buffers have equal length");
    rest.copy_from_slice(&tag_of(handle, body));
    Ok(Sealed { handle: *handle, id: handle.chunk_id(), len: needed })
}

fn tag_of(handle: &Handle, ciphertext: &[u8]) -> [u8; TAG_LEN] {
    let mut mac = handle.tagger();
    mac.update(ciphertext);
    mac.finalize().into_bytes().into()
}

/// Checks the tag of `sealed` against `handle` without decrypting.
///
/// A buddy cannot do this (it has no handle); an owner auditing its own data
/// can, at the cost of one hash pass.
pub fn verify_tag(sealed: &[u8], handle: &Handle) -> Result<(), OpenError> {
    let body_len = sealed_body_len(sealed.len())?;
    let (body, tag) = sealed.split_at(body_len);
    let mut mac = handle.tagger();
    mac.update(body);
    mac.verify_slice(tag).map_err(|_| OpenError::BadTag)
}

/// Checks that `plain` is the chunk of `handle`: the last step of opening,
/// which a caller that decompressed a [`Body::Zstd`] must take itself.
pub fn check_plain(handle: &Handle, plain: &[u8]) -> Result<(), OpenError> {
    if Handle::of(plain) == *handle {
        Ok(())
    } else {
        Err(OpenError::WrongHandle)
    }
}

/// A decrypted body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body<'a> {
    /// The plaintext, already checked against the handle.
    Raw(&'a [u8]),
    /// A zstd frame whose header declares `content_size` (at most
    /// [`MAX_CHUNK`]) bytes. The caller decodes it into exactly that many
    /// bytes, refuses trailing bytes, and calls [`check_plain`].
    Zstd {
        /// The frame.
        frame: &'a [u8],
        /// The content size its header declares.
        content_size: usize,
    },
}

/// Opens a sealed chunk in place: checks the tag, decrypts the body in
/// `sealed` and reads its tag byte. On failure the buffer may hold garbage
/// but nothing is returned as plaintext.
pub fn open_in_place<'a>(sealed: &'a mut [u8], handle: &Handle) -> Result<Body<'a>, OpenError> {
    verify_tag(sealed, handle)?;
    let body_len = sealed.len() - TAG_LEN;
    let body = &mut sealed[..body_len];
    handle.cipher().apply_keystream(body);
    parse_body(body, handle)
}

/// Opens `sealed` into `out` (which needs `sealed.len() - TAG_LEN` bytes):
/// checks the tag, decrypts the body into `out` and reads its tag byte.
pub fn open_into<'o>(sealed: &[u8], handle: &Handle, out: &'o mut [u8]) -> Result<Body<'o>, OpenError> {
    verify_tag(sealed, handle)?;
    let body_len = sealed.len() - TAG_LEN;
    let body = out.get_mut(..body_len).ok_or(OpenError::BufferTooSmall { needed: body_len })?;
    handle.cipher().apply_keystream_b2b(&sealed[..body_len], body).expect("buffers have equal length");
    parse_body(body, handle)
}

fn parse_body<'a>(body: &'a [u8], handle: &Handle) -> Result<Body<'a>, OpenError> {
    let (&tag, payload) = body.split_first().expect("a checked sealed chunk has a body tag byte");
    match tag {
        BODY_RAW => {
            check_plain(handle, payload)?;
            Ok(Body::Raw(payload))
        }
        BODY_ZSTD => Ok(Body::Zstd { frame: payload, content_size: declared_content_size(payload)? }),
        tag => Err(OpenError::UnknownBody { tag }),
    }
}

fn sealed_body_len(len: usize) -> Result<usize, OpenError> {
    if len < MIN_SEALED {
        Err(OpenError::Truncated { len })
    } else if len > MAX_SEALED {
        Err(OpenError::TooLarge { len })
    } else {
        Ok(len - TAG_LEN)
    }
}

#[cfg(test)]
mod tests;
