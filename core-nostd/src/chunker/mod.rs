//! Content-defined chunking exactly as SPEC §1 defines it.
//!
//! [`Chunker`] is a streaming cutter: feed it slices of any size and it
//! reports the same cut points as if it had seen the whole stream at once. It
//! owns no buffers and never allocates; its whole state is a few words plus
//! the last 48 bytes of the stream.
//!
//! Speed comes from two facts the SPEC leaves room for. First, no cut can be
//! decided in the first `2048 - 48` bytes of a chunk, so they are skipped
//! without fingerprinting. Second, the fingerprint at a position depends only
//! on the 48 bytes ending there, so a long stretch can be split into lanes that
//! each start their own window; the lanes' rolling updates are independent and
//! the CPU overlaps them (see [`scan`]).

pub mod rabin;
mod scan;

use rabin::{MAGIC, MASK, WINDOW};

/// The smallest chunk (except the last chunk of a stream).
pub const MIN_CHUNK: usize = 2048;
/// The largest chunk: a chunk is cut here whatever the fingerprint says.
pub const MAX_CHUNK: usize = 65536;
/// Chunk offset of the first byte whose fingerprint matters.
const FP_START: usize = MIN_CHUNK - WINDOW;

/// The rolling state used throughout: `g = fingerprint ^ MAGIC`, so that the
/// boundary test is a single `g & MASK == 0`.
pub(crate) type State = u64;

/// The state of a fresh window (fingerprint 0).
pub(crate) const FRESH: State = MAGIC;

/// Out-going byte contributions, pre-adjusted for the `^ MAGIC` offset so the
/// rolling step stays a plain XOR chain: `g' = (g << 8) ^ SHIFT[g >> 55] ^ in ^ OUT[out]`.
pub(crate) static OUT_G: [u64; 256] = {
    let mut t = [0u64; 256];
    let mut j = 0;
    while j < 256 {
        t[j] = rabin::OUT_TABLE[j] ^ (MAGIC << 8) ^ MAGIC;
        j += 1;
    }
    t
};

/// The reduction table, as a static so every lane reads one copy. It has 512
/// entries (the upper half never read, as `g < 2^63`) so that indexing with
/// `g >> 55` needs no bounds check on the hot path.
pub(crate) static SHIFT: [u64; 512] = {
    let mut t = [0u64; 512];
    let mut j = 0;
    while j < 256 {
        t[j] = rabin::SHIFT_TABLE[j];
        t[j + 256] = rabin::SHIFT_TABLE[j];
        j += 1;
    }
    t
};

/// One rolling step: byte `inb` enters the window and `out` leaves it
/// (`out` is 0 while the window is still filling).
#[inline(always)]
pub(crate) fn roll(g: State, inb: u8, out: u8) -> State {
    (g << 8) ^ SHIFT[(g >> 55) as usize] ^ (inb as u64) ^ OUT_G[out as usize]
}

/// True when the fingerprint of state `g` marks a boundary.
#[inline(always)]
pub(crate) fn is_boundary(g: State) -> bool {
    g & MASK == 0
}

/// A streaming content-defined chunker.
///
/// ```
/// use pastiche_core::chunker::Chunker;
/// let data = [7u8; 100_000];
/// let mut chunker = Chunker::new();
/// let mut rest = &data[..];
/// let mut lengths = [0usize; 4];
/// let mut n = 0;
/// while let Some(cut) = chunker.find_cut(rest) {
///     lengths[n] = cut;
///     n += 1;
///     rest = &rest[cut..];
/// }
/// // A run of equal bytes never matches the boundary, so chunks are maximal.
/// assert_eq!(&lengths[..n], &[65536]);
/// assert_eq!(chunker.pending(), 100_000 - 65536);
/// ```
#[derive(Clone, Debug)]
pub struct Chunker {
    /// Bytes of the current chunk consumed so far.
    len: usize,
    /// Rolling state; meaningful once `len >= FP_START`.
    g: State,
    /// The chunk's last 48 bytes, byte at chunk offset `o` in slot `o % 48`,
    /// so a window can continue into the next slice.
    ring: [u8; WINDOW],
}

impl Default for Chunker {
    fn default() -> Self {
        Self::new()
    }
}

impl Chunker {
    /// A chunker at the start of a stream.
    pub const fn new() -> Self {
        Chunker { len: 0, g: FRESH, ring: [0; WINDOW] }
    }

    /// Bytes consumed since the last cut: the length the final chunk would
    /// have if the stream ended now.
    pub fn pending(&self) -> usize {
        self.len
    }

    /// Forget the current chunk (start of a new stream).
    pub fn reset(&mut self) {
        self.len = 0;
        self.g = FRESH;
    }

    /// Consumes bytes of `data` up to the next cut.
    ///
    /// Returns `Some(n)` when the current chunk ends after `data[n - 1]`; the
    /// caller continues with `&data[n..]`. Returns `None` when all of `data`
    /// was consumed without a cut. At the end of the stream, [`pending`] bytes
    /// form the final chunk.
    ///
    /// [`pending`]: Chunker::pending
    pub fn find_cut(&mut self, data: &[u8]) -> Option<usize> {
        let n = data.len();
        let mut i = 0;
        if self.len < FP_START {
            let skip = core::cmp::min(FP_START - self.len, n);
            i = skip;
            self.len += skip;
            if self.len < FP_START {
                return None;
            }
            self.g = FRESH;
        }
        // Byte by byte while the window is filling or its oldest byte lies in
        // an earlier slice (kept in the ring).
        while i < n && (i < WINDOW || self.len < MIN_CHUNK) {
            let b = data[i];
            let slot = self.len % WINDOW;
            let out = if self.len >= MIN_CHUNK { self.ring[slot] } else { 0 };
            self.ring[slot] = b;
            self.g = roll(self.g, b, out);
            self.len += 1;
            i += 1;
            if (self.len >= MIN_CHUNK && is_boundary(self.g)) || self.len == MAX_CHUNK {
                self.reset();
                return Some(i);
            }
        }
        if i == n {
            return None;
        }
        // The whole window now lies inside `data`: the fast path.
        let end = core::cmp::min(n, i + (MAX_CHUNK - self.len));
        match scan::first_boundary(data, i, end, self.g) {
            Ok(hit) => {
                self.reset();
                Some(hit + 1)
            }
            Err(g) => {
                self.g = g;
                self.len += end - i;
                if self.len == MAX_CHUNK {
                    self.reset();
                    return Some(end);
                }
                for (back, &b) in data[end - WINDOW..end].iter().rev().enumerate() {
                    self.ring[(self.len - 1 - back) % WINDOW] = b;
                }
                None
            }
        }
    }
}

/// The chunks of an in-memory buffer, as `(offset, length)` pairs.
pub fn chunks(data: &[u8]) -> Chunks<'_> {
    Chunks { data, offset: 0, chunker: Chunker::new() }
}

/// Iterator returned by [`chunks`].
#[derive(Clone, Debug)]
pub struct Chunks<'a> {
    data: &'a [u8],
    offset: usize,
    chunker: Chunker,
}

impl Iterator for Chunks<'_> {
    type Item = (usize, usize);

    fn next(&mut self) -> Option<(usize, usize)> {
        let rest = &self.data[self.offset..];
        if rest.is_empty() {
            return None;
        }
        let start = self.offset;
        let len = self.chunker.find_cut(rest).unwrap_or(rest.len());
        self.chunker.reset();
        self.offset += len;
        Some((start, len))
    }
}

#[cfg(test)]
pub(crate) mod tests;
