//! Cutting a byte stream from any reader into chunks, with one reusable buffer.

use std::io::{self, Read};

use pastiche_core::chunker::{Chunker, MAX_CHUNK};

/// Default read buffer. It must hold at least one whole maximal chunk; at
/// 1 MiB it still keeps syscalls rare and stays in a core's L2 cache, so the
/// kernel's copy into it and the chunker and SHA-1 passes over it hit the
/// cache (a first backup of shared libraries: 6% faster than with 4 MiB,
/// docs/BENCHMARKS.md).
pub const DEFAULT_BUFFER: usize = 1 << 20;

/// Reads a stream and hands out its chunks (SPEC §1) as slices of an
/// internal buffer, in order.
pub struct ChunkStream<R> {
    reader: R,
    buf: Vec<u8>,
    /// Start of the current chunk in `buf`.
    start: usize,
    /// How far the chunker has looked.
    scanned: usize,
    /// End of valid data in `buf`.
    end: usize,
    chunker: Chunker,
    eof: bool,
}

impl<R: Read> ChunkStream<R> {
    /// A chunk stream over `reader` with the default buffer size.
    pub fn new(reader: R) -> Self {
        Self::with_buffer(reader, DEFAULT_BUFFER)
    }

    /// A chunk stream whose buffer holds `capacity` bytes (at least two
    /// maximal chunks, whatever is asked).
    pub fn with_buffer(reader: R, capacity: usize) -> Self {
        Self::with_reused_buffer(reader, vec![0; capacity.max(2 * MAX_CHUNK)])
    }

    /// A chunk stream that reads into `buf` (from [`into_buffer`] of an
    /// earlier stream), so a thread reading many small files allocates and
    /// clears its buffer once, not once per file.
    ///
    /// [`into_buffer`]: ChunkStream::into_buffer
    pub fn with_reused_buffer(reader: R, mut buf: Vec<u8>) -> Self {
        if buf.len() < 2 * MAX_CHUNK {
            buf.resize(2 * MAX_CHUNK, 0);
        }
        ChunkStream { reader, buf, start: 0, scanned: 0, end: 0, chunker: Chunker::new(), eof: false }
    }

    /// Gives the buffer back for reuse.
    pub fn into_buffer(self) -> Vec<u8> {
        self.buf
    }

    /// The next chunk, or `None` at the end of the stream.
    pub fn next_chunk(&mut self) -> io::Result<Option<&[u8]>> {
        loop {
            if self.scanned < self.end {
                match self.chunker.find_cut(&self.buf[self.scanned..self.end]) {
                    Some(n) => {
                        let chunk_start = self.start;
                        self.scanned += n;
                        self.start = self.scanned;
                        return Ok(Some(&self.buf[chunk_start..self.scanned]));
                    }
                    None => self.scanned = self.end,
                }
            }
            if self.eof {
                if self.start < self.end {
                    let chunk_start = self.start;
                    self.start = self.end;
                    self.chunker.reset();
                    return Ok(Some(&self.buf[chunk_start..self.end]));
                }
                return Ok(None);
            }
            self.refill()?;
        }
    }

    /// Moves the unfinished chunk to the front if needed and reads more.
    fn refill(&mut self) -> io::Result<()> {
        if self.buf.len() - self.end < MAX_CHUNK {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.scanned -= self.start;
            self.start = 0;
        }
        while self.end < self.buf.len() {
            match self.reader.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pastiche_core::chunker::chunks;
    use rand::{RngCore, SeedableRng};

    /// A reader that returns at most `step` bytes per call.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(out.len()).min(self.data.len());
            out[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn stream_equals_in_memory_chunking() {
        let mut data = vec![0u8; 3_000_000];
        rand::rngs::StdRng::seed_from_u64(5).fill_bytes(&mut data);
        let expected: Vec<&[u8]> = chunks(&data).map(|(o, n)| &data[o..o + n]).collect();
        for (step, cap) in [(1 << 20, 0), (777, 200_000), (65536, 131_072)] {
            let mut s = ChunkStream::with_buffer(Trickle { data: &data, step }, cap);
            let mut got = Vec::new();
            while let Some(c) = s.next_chunk().unwrap() {
                got.push(c.to_vec());
            }
            assert_eq!(got.len(), expected.len(), "step {step}");
            assert!(got.iter().zip(&expected).all(|(a, b)| a == b));
        }
    }

    #[test]
    fn reused_buffer_gives_the_same_chunks() {
        let mut data = vec![0u8; 500_000];
        rand::rngs::StdRng::seed_from_u64(6).fill_bytes(&mut data);
        let expected: Vec<usize> = chunks(&data).map(|(_, n)| n).collect();
        let mut buf = vec![0xAA; 300_000];
        for _ in 0..3 {
            let mut s = ChunkStream::with_reused_buffer(&data[..], buf);
            let mut got = Vec::new();
            while let Some(c) = s.next_chunk().unwrap() {
                got.push(c.len());
            }
            assert_eq!(got, expected);
            buf = s.into_buffer();
        }
    }

    #[test]
    fn empty_stream_has_no_chunks() {
        let mut s = ChunkStream::new(&[][..]);
        assert!(s.next_chunk().unwrap().is_none());
    }
}
