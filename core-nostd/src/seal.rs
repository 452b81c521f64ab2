//! Convergent encryption of data chunks, exactly as SPEC §2 defines it.
//!
//! The key of a chunk is derived from its own content, so the same chunk
//! sealed on two boxes gives the same bytes and the same name (chunkId), and a
//! buddy stores it once. Everything works in place in caller buffers.

use aes::Aes128;
use core::fmt;
use ctr::cipher::{KeyIvInit, StreamCipher};
use hmac::{Hmac, Mac};
use sha1::{Digest, Sha1};

use crate::chunker::MAX_CHUNK;
use crate::hex::hex_id;

type HmacSha1 = Hmac<Sha1>;
type Aes128Ctr = ctr::Ctr128BE<Aes128>;

/// Bytes of the authentication tag appended to every sealed chunk.
pub const TAG_LEN: usize = 20;
/// The largest sealed chunk.
pub const MAX_SEALED: usize = MAX_CHUNK + TAG_LEN;

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
    /// The output buffer cannot hold the plaintext and the tag.
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
    },
}

impl core::error::Error for SealError {}

impl fmt::Display for SealError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SealError::TooLarge { len } => {
                write!(f, "chunk of {len} bytes is larger than the {MAX_CHUNK}-byte maximum")
            }
            SealError::BufferTooSmall { needed } => write!(f, "output buffer needs {needed} bytes"),
        }
    }
}

/// Why a sealed chunk was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenError {
    /// Shorter than a tag: not a sealed chunk at all.
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
    /// The tag matched but the plaintext's SHA-1 is not the handle.
    WrongHandle,
    /// The output buffer cannot hold the plaintext.
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
                write!(f, "sealed chunk truncated: {len} bytes is less than the {TAG_LEN}-byte tag")
            }
            OpenError::TooLarge { len } => {
                write!(f, "sealed chunk of {len} bytes exceeds the {MAX_SEALED}-byte maximum")
            }
            OpenError::BadTag => f.write_str("sealed chunk failed authentication (corrupt, or wrong handle)"),
            OpenError::WrongHandle => f.write_str("opened chunk does not hash to its handle"),
            OpenError::BufferTooSmall { needed } => write!(f, "output buffer needs {needed} bytes"),
        }
    }
}

/// The names of a freshly sealed chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sealed {
    /// The secret handle (`SHA1(plaintext)`).
    pub handle: Handle,
    /// The public chunkId (`SHA1(handle)`).
    pub id: ChunkId,
    /// Bytes of sealed output (`plaintext + TAG_LEN`).
    pub len: usize,
}

/// Seals `buf[..plain_len]` in place; the tag is written after it, so `buf`
/// must hold `plain_len + TAG_LEN` bytes.
pub fn seal_in_place(buf: &mut [u8], plain_len: usize) -> Result<Sealed, SealError> {
    if plain_len > MAX_CHUNK {
        return Err(SealError::TooLarge { len: plain_len });
    }
    let needed = plain_len + TAG_LEN;
    if buf.len() < needed {
        return Err(SealError::BufferTooSmall { needed });
    }
    let (body, rest) = buf.split_at_mut(plain_len);
    let handle = Handle::of(body);
    handle.cipher().apply_keystream(body);
    let tag = tag_of(&handle, body);
    rest[..TAG_LEN].copy_from_slice(&tag);
    Ok(Sealed { handle, id: handle.chunk_id(), len: needed })
}

/// Seals `plain` into `out` (which needs `plain.len() + TAG_LEN` bytes),
/// leaving the plaintext untouched.
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
    let needed = plain.len() + TAG_LEN;
    if out.len() < needed {
        return Err(SealError::BufferTooSmall { needed });
    }
    let (body, rest) = out.split_at_mut(plain.len());
    handle.cipher().apply_keystream_b2b(plain, body).expect("buffers have equal length");
    let tag = tag_of(handle, body);
    rest[..TAG_LEN].copy_from_slice(&tag);
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
    let plain_len = sealed_plain_len(sealed.len())?;
    let (body, tag) = sealed.split_at(plain_len);
    let mut mac = handle.tagger();
    mac.update(body);
    mac.verify_slice(tag).map_err(|_| OpenError::BadTag)
}

/// Opens a sealed chunk in place. On success the plaintext is
/// `sealed[..n]` for the returned `n`; on failure the buffer may hold garbage
/// but nothing is returned as plaintext.
pub fn open_in_place(sealed: &mut [u8], handle: &Handle) -> Result<usize, OpenError> {
    verify_tag(sealed, handle)?;
    let plain_len = sealed.len() - TAG_LEN;
    let body = &mut sealed[..plain_len];
    handle.cipher().apply_keystream(body);
    if Handle::of(body) != *handle {
        return Err(OpenError::WrongHandle);
    }
    Ok(plain_len)
}

/// Opens `sealed` into `out`, returning the plaintext length.
pub fn open_into(sealed: &[u8], handle: &Handle, out: &mut [u8]) -> Result<usize, OpenError> {
    verify_tag(sealed, handle)?;
    let plain_len = sealed.len() - TAG_LEN;
    if out.len() < plain_len {
        return Err(OpenError::BufferTooSmall { needed: plain_len });
    }
    let body = &mut out[..plain_len];
    handle.cipher().apply_keystream_b2b(&sealed[..plain_len], body).expect("buffers have equal length");
    if Handle::of(body) != *handle {
        return Err(OpenError::WrongHandle);
    }
    Ok(plain_len)
}

fn sealed_plain_len(len: usize) -> Result<usize, OpenError> {
    if len < TAG_LEN {
        Err(OpenError::Truncated { len })
    } else if len > MAX_SEALED {
        Err(OpenError::TooLarge { len })
    } else {
        Ok(len - TAG_LEN)
    }
}

#[cfg(test)]
mod tests;
