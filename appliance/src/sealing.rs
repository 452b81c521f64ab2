//! Compression inside the seal (SPEC §2a) for the appliance: the core seals
//! and opens bodies; this module adds zstd, which needs an allocator.
//!
//! Writing: zstd at the fixed level [`ZSTD_LEVEL`], with the content size in
//! the frame header and no checksum (the seal's tag and the handle already
//! authenticate every byte). The chunk is stored raw when the frame is not
//! smaller, or when a cheap probe says it would not be ([`looks_incompressible`]).
//! The same chunk sealed twice by the same build gives the same bytes.
//!
//! Reading: the core has checked the tag, the body tag byte and that the
//! frame header declares at most 65,536 bytes. Here the frame must be exactly
//! one complete frame (no trailing bytes), is decoded into a buffer of exactly
//! the declared size (so a frame that produces more fails instead of
//! allocating), must produce exactly that many bytes, and the plaintext must
//! hash to the handle.

use std::cell::RefCell;

use pastiche_core::seal::{self, check_plain, Body, FrameError, OpenError, Sealed, MAX_BODY};
use pastiche_core::{Handle, MAX_CHUNK};
use zstd::bulk::{Compressor, Decompressor};
use zstd::zstd_safe::{self, CParameter};

/// The zstd level every chunk is compressed with (§2a's default).
pub const ZSTD_LEVEL: i32 = 3;

/// Bytes of the probe: one sample from the middle of the chunk. Chunks at
/// least this long are probed before being compressed; shorter ones (few:
/// the chunker cuts at 2 KiB at the earliest) are always tried.
const PROBE_LEN: usize = 4 * 1024;

/// One thread's compressor and its frame buffer.
pub struct Sealer {
    compressor: Compressor<'static>,
    frame: Vec<u8>,
}

impl Default for Sealer {
    fn default() -> Sealer {
        Sealer::new()
    }
}

impl Sealer {
    /// A sealer with its zstd context set up for §2a.
    pub fn new() -> Sealer {
        let mut compressor = Compressor::new(ZSTD_LEVEL).expect("zstd can allocate a compression context");
        for p in [CParameter::ContentSizeFlag(true), CParameter::ChecksumFlag(false), CParameter::DictIdFlag(false)] {
            compressor.set_parameter(p).expect("zstd accepts its own frame parameters");
        }
        Sealer { compressor, frame: vec![0u8; MAX_CHUNK] }
    }

    /// Seals `plain`, whose handle is `handle`, into `out` (at least
    /// [`seal::raw_sealed_len`]`(plain.len())` bytes): compressed when that
    /// makes it smaller, raw otherwise. The sealed chunk is `out[..len]`.
    ///
    /// Panics if `plain` is longer than a chunk or `out` too small: callers
    /// hold chunks the chunker cut and buffers sized for them.
    pub fn seal(&mut self, plain: &[u8], handle: &Handle, out: &mut [u8]) -> Sealed {
        match self.compress(plain) {
            Some(n) => seal::seal_frame(handle, plain.len(), &self.frame[..n], out),
            None => seal::seal_with_handle(plain, handle, out),
        }
        .expect("chunks fit a chunk and callers size the output for a raw body")
    }

    /// Compresses `plain` into `self.frame`, returning the frame's length if
    /// it is smaller than `plain`.
    fn compress(&mut self, plain: &[u8]) -> Option<usize> {
        if looks_incompressible(plain) {
            return None;
        }
        // A frame that does not fit in one byte less than the plaintext is
        // no use: zstd stops with an error instead of finishing it.
        let room = &mut self.frame[..plain.len().saturating_sub(1)];
        self.compressor.compress_to_buffer(plain, room).ok()
    }
}

/// Whether a chunk is almost surely incompressible (already compressed
/// media, archives, encrypted data), judged from a 4 KiB sample from the
/// middle of chunks of 4 KiB or more: its bytes are spread nearly evenly
/// (sum of squared byte counts at most 1.25 times what uniform bytes give,
/// a Rényi entropy of at least 7.68 bits per byte). Counting costs about
/// 1% of sealing, where compressing such a chunk only to store it raw costs
/// about 40% (docs/BENCHMARKS.md). Integer arithmetic, so sealing stays the
/// same function of the plaintext on every machine.
pub fn looks_incompressible(plain: &[u8]) -> bool {
    if plain.len() < PROBE_LEN {
        return false;
    }
    let start = (plain.len() - PROBE_LEN) / 2;
    let mut counts = [0u32; 256];
    for &b in &plain[start..start + PROBE_LEN] {
        counts[usize::from(b)] += 1;
    }
    let squares: u64 = counts.iter().map(|&c| u64::from(c) * u64::from(c)).sum();
    let uniform = (PROBE_LEN * PROBE_LEN / 256) as u64;
    squares * 4 <= uniform * 5
}

/// One thread's decompressor and its body buffer.
pub struct Opener {
    decompressor: Decompressor<'static>,
    body: Vec<u8>,
}

impl Default for Opener {
    fn default() -> Opener {
        Opener::new()
    }
}

impl Opener {
    /// An opener with its own zstd context.
    pub fn new() -> Opener {
        let decompressor = Decompressor::new().expect("zstd can allocate a decompression context");
        Opener { decompressor, body: vec![0u8; MAX_BODY] }
    }

    /// Opens `sealed` with `handle` into `plain`, returning the plaintext
    /// length; every check of §2a is made before anything is returned.
    pub fn open(&mut self, sealed: &[u8], handle: &Handle, plain: &mut [u8]) -> Result<usize, OpenError> {
        match seal::open_into(sealed, handle, &mut self.body)? {
            Body::Raw(p) => {
                let out = plain.get_mut(..p.len()).ok_or(OpenError::BufferTooSmall { needed: p.len() })?;
                out.copy_from_slice(p);
                Ok(p.len())
            }
            Body::Zstd { frame, content_size } => {
                let out = plain.get_mut(..content_size).ok_or(OpenError::BufferTooSmall { needed: content_size })?;
                decode(&mut self.decompressor, frame, out, content_size)?;
                check_plain(handle, out)?;
                Ok(content_size)
            }
        }
    }

    /// [`Opener::open`] into `plain`, replaced by exactly the plaintext:
    /// allocated at its size and written once (no buffer to zero, no copy
    /// out of one), for callers that keep each chunk.
    pub fn open_to_vec(&mut self, sealed: &[u8], handle: &Handle, plain: &mut Vec<u8>) -> Result<(), OpenError> {
        plain.clear();
        match seal::open_into(sealed, handle, &mut self.body)? {
            Body::Raw(p) => plain.extend_from_slice(p),
            Body::Zstd { frame, content_size } => {
                plain.reserve_exact(content_size);
                // The frame is decoded into the spare capacity, so one that
                // produces more than it declared fails instead of growing it.
                decode(&mut self.decompressor, frame, plain, content_size)?;
                check_plain(handle, plain)?;
            }
        }
        Ok(())
    }
}

/// Decodes `frame`, which must be exactly one complete zstd frame, into
/// `out` (room for exactly the `declared` bytes its header declares), and
/// checks that it produced exactly that many.
fn decode<C: zstd_safe::WriteBuf + ?Sized>(
    decompressor: &mut Decompressor<'static>,
    frame: &[u8],
    out: &mut C,
    declared: usize,
) -> Result<(), FrameError> {
    match zstd_safe::find_frame_compressed_size(frame) {
        Ok(n) if n == frame.len() => {}
        Ok(n) => return Err(FrameError::TrailingBytes { extra: frame.len().saturating_sub(n) }),
        Err(code) if zstd_safe::get_error_name(code) == SRC_SIZE_WRONG => return Err(FrameError::Incomplete),
        Err(_) => return Err(FrameError::Corrupt),
    }
    let produced = decompressor.decompress_to_buffer(frame, out).map_err(|_| FrameError::Corrupt)?;
    if produced != declared {
        return Err(FrameError::SizeMismatch { declared, produced });
    }
    Ok(())
}

/// zstd's name for `srcSize_wrong`: what measuring a frame cut short gives.
const SRC_SIZE_WRONG: &str = "Src size is incorrect";

thread_local! {
    static SEALER: RefCell<Sealer> = RefCell::new(Sealer::new());
    static OPENER: RefCell<Opener> = RefCell::new(Opener::new());
}

/// [`Sealer::seal`] with this thread's sealer.
pub fn seal_into(plain: &[u8], handle: &Handle, out: &mut [u8]) -> Sealed {
    SEALER.with(|s| s.borrow_mut().seal(plain, handle, out))
}

/// [`seal_into`] into a vector of exactly the sealed chunk's length: the
/// box's own chunk sealed alone, as it leaves the box.
pub fn seal_to_vec(plain: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    seal_into_vec(plain, &mut out);
    out
}

/// [`seal_to_vec`] into `out` (replacing its contents), reusing its
/// allocation: for readers that seal chunk after chunk into one buffer.
pub fn seal_into_vec(plain: &[u8], out: &mut Vec<u8>) {
    out.resize(seal::raw_sealed_len(plain.len()), 0);
    let sealed = seal_into(plain, &Handle::of(plain), out);
    out.truncate(sealed.len);
}

/// [`Opener::open`] with this thread's opener.
pub fn open_into(sealed: &[u8], handle: &Handle, plain: &mut [u8]) -> Result<usize, OpenError> {
    OPENER.with(|o| o.borrow_mut().open(sealed, handle, plain))
}

/// [`Opener::open_to_vec`] with this thread's opener.
pub fn open_to_vec(sealed: &[u8], handle: &Handle, plain: &mut Vec<u8>) -> Result<(), OpenError> {
    OPENER.with(|o| o.borrow_mut().open_to_vec(sealed, handle, plain))
}

#[cfg(test)]
mod tests;
