//! Cutting a byte stream from any reader into chunks: in place with one
//! reusable buffer ([`ChunkStream`]), or on a thread of its own for a large
//! file ([`cut_elsewhere`]).

use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

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

/// Bytes a [`cut_elsewhere`] block holds before it is handed over.
const BLOCK: usize = 1 << 20;

/// Blocks cut but not yet taken, besides the one being cut and the one
/// being hashed.
const BLOCKS_AHEAD: usize = 2;

/// Read bytes and where their whole chunks end (bytes past the last end
/// are not the stream's).
struct Block {
    data: Vec<u8>,
    ends: Vec<usize>,
}

/// The chunks of `reader` (SPEC §1, the same as [`ChunkStream`] gives),
/// handed to `each` in order on the calling thread while another thread of
/// the process reads and cuts the ones after them.
///
/// For a large file that one thread reads alone: the cutting is about half
/// of what a thread does per byte, so a backup of a changed large file
/// hashes and looks up its chunks while the next ones are read and cut.
/// Blocks of about 1 MiB go between the threads, at most
/// [`BLOCKS_AHEAD`] waiting, and no byte is copied but the unfinished
/// chunk at the end of a block, which moves to the next.
///
/// A read error ends it with [`CutError::Read`] (chunks of the block being
/// read when it came are not handed over); an error from `each` ends it at
/// once with [`CutError::Each`].
pub fn cut_elsewhere<R, E>(reader: R, mut each: impl FnMut(&[u8]) -> Result<(), E>) -> Result<(), CutError<E>>
where
    R: Read + Send,
{
    std::thread::scope(|scope| {
        let (full, cut) = sync_channel::<io::Result<Block>>(BLOCKS_AHEAD);
        let (give_back, spare) = sync_channel::<Vec<u8>>(BLOCKS_AHEAD + 2);
        scope.spawn(move || cut_blocks(reader, &full, &spare));
        for block in cut {
            let block = block.map_err(CutError::Read)?;
            let mut start = 0;
            for &end in &block.ends {
                each(&block.data[start..end]).map_err(CutError::Each)?;
                start = end;
            }
            // The cutter may have buffers enough; then this one is freed.
            let _ = give_back.try_send(block.data);
        }
        // Returning drops the receiving end, which stops a cutter still
        // sending after an error here.
        Ok(())
    })
}

/// Why [`cut_elsewhere`] stopped.
#[derive(Debug)]
pub enum CutError<E> {
    /// Reading the stream failed.
    Read(io::Error),
    /// The caller's function failed.
    Each(E),
}

/// The cutting thread of [`cut_elsewhere`]: reads `reader` into blocks,
/// finds their chunks and sends them on `full` until the end of the stream,
/// a read error (sent too) or the receiver is gone.
fn cut_blocks<R: Read>(mut reader: R, full: &SyncSender<io::Result<Block>>, spare: &Receiver<Vec<u8>>) {
    // Room for a block after the unfinished chunk carried over (shorter
    // than a maximal chunk, which is always cut).
    const BUFFER: usize = BLOCK + MAX_CHUNK;
    let mut chunker = Chunker::new();
    let mut data = vec![0u8; BUFFER];
    // Bytes at the front of `data` carried over from the last block.
    let mut carried = 0;
    // How far the chunker has looked into `data`.
    let mut scanned = 0;
    loop {
        let mut eof = false;
        let mut end = carried;
        while end < data.len() {
            match reader.read(&mut data[end..]) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let _ = full.send(Err(e));
                    return;
                }
            }
        }
        let mut ends = Vec::with_capacity(end / 8192 + 1);
        let mut start = 0;
        while scanned < end {
            match chunker.find_cut(&data[scanned..end]) {
                Some(n) => {
                    scanned += n;
                    ends.push(scanned);
                    start = scanned;
                }
                None => scanned = end,
            }
        }
        if eof && start < end {
            ends.push(end);
            start = end;
        }
        // The unfinished chunk moves to the front of the next block.
        let mut next = spare.try_recv().ok().filter(|b| b.len() == BUFFER).unwrap_or_else(|| vec![0u8; BUFFER]);
        carried = end - start;
        next[..carried].copy_from_slice(&data[start..end]);
        scanned -= start;
        let block = Block { data: std::mem::replace(&mut data, next), ends };
        if (!block.ends.is_empty() && full.send(Ok(block)).is_err()) || eof {
            return;
        }
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

    /// Chunks of `reader` as [`cut_elsewhere`] hands them over.
    fn cut_here(reader: impl Read + Send) -> Result<Vec<Vec<u8>>, CutError<()>> {
        let mut got = Vec::new();
        cut_elsewhere(reader, |c| {
            got.push(c.to_vec());
            Ok::<(), ()>(())
        })?;
        Ok(got)
    }

    #[test]
    fn cutting_on_another_thread_equals_in_memory_chunking() {
        // Random data, a run of zeros (maximal chunks, cut by length) and
        // sizes around a block's: every way a block can end.
        let mut data = vec![0u8; 5_000_000];
        rand::rngs::StdRng::seed_from_u64(9).fill_bytes(&mut data);
        data[1_500_000..2_600_000].fill(0);
        for len in [0, 1, 5000, BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK + MAX_CHUNK, data.len()] {
            let data = &data[..len];
            let expected: Vec<&[u8]> = chunks(data).map(|(o, n)| &data[o..o + n]).collect();
            for step in [1 << 20, 777, 65_536] {
                let got = cut_here(Trickle { data, step }).unwrap();
                assert_eq!(got.len(), expected.len(), "length {len}, step {step}");
                assert!(got.iter().zip(&expected).all(|(a, b)| a == b), "length {len}, step {step}");
            }
        }
    }

    /// Fails once `ok` bytes are read.
    struct FailsAfter {
        ok: usize,
    }

    impl Read for FailsAfter {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.ok == 0 {
                return Err(io::Error::other("disk error"));
            }
            let n = self.ok.min(out.len()).min(4096);
            out[..n].fill(7);
            self.ok -= n;
            Ok(n)
        }
    }

    #[test]
    fn a_read_error_or_a_refusal_ends_the_cutting() {
        match cut_here(FailsAfter { ok: 3 * BLOCK }) {
            Err(CutError::Read(e)) => assert_eq!(e.to_string(), "disk error"),
            other => panic!("a read error must end it: {other:?}"),
        }
        // The caller refuses the third chunk: nothing after it is handed
        // over, and the cutting thread (blocked sending) is released.
        let mut seen = 0;
        let data = vec![5u8; 8 * BLOCK];
        let refused = cut_elsewhere(&data[..], |_| {
            seen += 1;
            if seen == 3 {
                Err("no room")
            } else {
                Ok(())
            }
        });
        assert!(matches!(refused, Err(CutError::Each("no room"))));
        assert_eq!(seen, 3);
    }
}
