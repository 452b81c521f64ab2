//! The header of a zstd frame (RFC 8878 §3.1.1), read without decoding it.
//!
//! A compressed body (SPEC §2a) must be one zstd frame that declares its
//! content size, at most [`MAX_CHUNK`] bytes. Checking the header here, before
//! any decoder runs, means a frame that could expand without bound is refused
//! by the core on every platform; the decoder (the appliance's, with an
//! allocator) then only has to decode into a buffer of exactly the declared
//! size.

use core::fmt;

use crate::chunker::MAX_CHUNK;

/// The magic number every zstd frame starts with (little-endian on the wire).
pub const ZSTD_MAGIC: u32 = 0xFD2F_B528;

/// Why a compressed body was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The body does not start with a zstd frame header: wrong magic number
    /// (skippable and legacy frames included) or a header cut short.
    NotZstd,
    /// A reserved bit of the frame header descriptor is set.
    ReservedBit,
    /// The frame needs a dictionary; chunks are compressed without one.
    Dictionary,
    /// The header does not carry the content size, which §2a requires.
    NoContentSize,
    /// The declared content size exceeds [`MAX_CHUNK`] (a decompression bomb,
    /// or garbage).
    TooLarge {
        /// Content size the header declares.
        declared: u64,
    },
    /// The frame ends before its last block.
    Incomplete,
    /// Bytes follow the end of the frame.
    TrailingBytes {
        /// How many.
        extra: usize,
    },
    /// The decoder refused the frame's blocks, or they decode to more bytes
    /// than the header declares.
    Corrupt,
    /// The frame decoded to fewer bytes than its header declares.
    SizeMismatch {
        /// Content size the header declares.
        declared: usize,
        /// Bytes the frame produced.
        produced: usize,
    },
    /// A writer's frame is not smaller than the plaintext: §2a stores such a
    /// chunk raw.
    NotSmaller {
        /// Frame bytes.
        frame: usize,
        /// Plaintext bytes.
        plain: usize,
    },
}

impl core::error::Error for FrameError {}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::NotZstd => f.write_str("compressed body is not a zstd frame"),
            FrameError::ReservedBit => f.write_str("zstd frame header sets a reserved bit"),
            FrameError::Dictionary => f.write_str("zstd frame needs a dictionary"),
            FrameError::NoContentSize => f.write_str("zstd frame does not declare its content size"),
            FrameError::TooLarge { declared } => {
                write!(f, "zstd frame declares {declared} bytes, more than the {MAX_CHUNK}-byte maximum chunk")
            }
            FrameError::Incomplete => f.write_str("zstd frame is truncated"),
            FrameError::TrailingBytes { extra } => write!(f, "{extra} bytes follow the zstd frame"),
            FrameError::Corrupt => f.write_str("zstd frame is corrupt or decodes past its declared size"),
            FrameError::SizeMismatch { declared, produced } => {
                write!(f, "zstd frame declares {declared} bytes but decodes to {produced}")
            }
            FrameError::NotSmaller { frame, plain } => {
                write!(f, "a {frame}-byte frame does not shrink a {plain}-byte chunk")
            }
        }
    }
}

/// Reads the content size a zstd frame header declares, refusing frames
/// that are not plain single frames of at most [`MAX_CHUNK`] bytes.
///
/// Only the header is read: whether the blocks after it are whole and decode
/// to exactly that size is the decoder's to check.
pub fn declared_content_size(frame: &[u8]) -> Result<usize, FrameError> {
    let magic = frame.get(..4).ok_or(FrameError::NotZstd)?;
    if u32::from_le_bytes([magic[0], magic[1], magic[2], magic[3]]) != ZSTD_MAGIC {
        return Err(FrameError::NotZstd);
    }
    let descriptor = *frame.get(4).ok_or(FrameError::NotZstd)?;
    let size_flag = descriptor >> 6;
    let single_segment = descriptor & 0x20 != 0;
    let dictionary_flag = descriptor & 0x03;
    if descriptor & 0x08 != 0 {
        return Err(FrameError::ReservedBit);
    }
    if dictionary_flag != 0 {
        return Err(FrameError::Dictionary);
    }
    // Frame_Content_Size: 0, 1, 2, 4 or 8 bytes (RFC 8878 §3.1.1.1.4).
    let size_len = match (size_flag, single_segment) {
        (0, false) => return Err(FrameError::NoContentSize),
        (0, true) => 1,
        (1, _) => 2,
        (2, _) => 4,
        _ => 8,
    };
    let window_len = usize::from(!single_segment);
    let start = 5 + window_len;
    let field = frame.get(start..start + size_len).ok_or(FrameError::NotZstd)?;
    let mut le = [0u8; 8];
    le[..size_len].copy_from_slice(field);
    let mut declared = u64::from_le_bytes(le);
    if size_len == 2 {
        declared += 256;
    }
    if declared > MAX_CHUNK as u64 {
        return Err(FrameError::TooLarge { declared });
    }
    Ok(declared as usize)
}
