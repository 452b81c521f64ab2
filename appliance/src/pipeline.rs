//! The parallel chunk-and-seal pipeline: one thread reads and cuts a stream,
//! worker threads hash and seal the chunks, and the caller receives them in
//! stream order. `benches/pipeline.rs` measures it; `backup` reads files
//! with `backup::read`, whose threads each cut, hash and seal whole files.
//!
//! Cutting is serial by nature (each cut depends on the previous one) but is
//! over twice as fast as sealing, so one cutter keeps several sealers busy.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::thread;

use crossbeam_channel::bounded;
use pastiche_core::seal::raw_sealed_len;
use pastiche_core::{ChunkId, Handle};

use crate::chunk_stream::ChunkStream;
use crate::sealing::seal_into;

/// A sealed chunk and its names, as the pipeline delivers it.
#[derive(Debug)]
pub struct SealedChunk {
    /// Position of the chunk in the stream (0, 1, 2, ...).
    pub seq: u64,
    /// The secret handle.
    pub handle: Handle,
    /// The public name.
    pub id: ChunkId,
    /// Plaintext length.
    pub plain_len: usize,
    /// The sealed chunk (SPEC §2a, compressed when that helps).
    pub sealed: Vec<u8>,
}

/// Chunks in flight between stages, per worker: enough to ride out a slow
/// chunk without holding much memory (each is at most 64 KiB).
const QUEUE_PER_WORKER: usize = 32;

fn seal_chunk(seq: u64, plain: &[u8]) -> SealedChunk {
    let handle = Handle::of(plain);
    let mut sealed = vec![0u8; raw_sealed_len(plain.len())];
    let s = seal_into(plain, &handle, &mut sealed);
    sealed.truncate(s.len);
    SealedChunk { seq, handle: s.handle, id: s.id, plain_len: plain.len(), sealed }
}

/// Cuts `reader` into chunks, seals each on `workers` threads (0: all on the
/// calling thread), and calls `sink` with every chunk in stream order.
/// Returns the number of plaintext bytes.
pub fn chunk_and_seal<R, F>(reader: R, workers: usize, mut sink: F) -> io::Result<u64>
where
    R: Read + Send,
    F: FnMut(SealedChunk),
{
    if workers == 0 {
        let mut stream = ChunkStream::new(reader);
        let (mut seq, mut total) = (0u64, 0u64);
        while let Some(chunk) = stream.next_chunk()? {
            total += chunk.len() as u64;
            sink(seal_chunk(seq, chunk));
            seq += 1;
        }
        return Ok(total);
    }
    let (job_tx, job_rx) = bounded::<(u64, Vec<u8>)>(QUEUE_PER_WORKER * workers);
    let (done_tx, done_rx) = bounded::<SealedChunk>(QUEUE_PER_WORKER * workers);
    thread::scope(|scope| {
        let cutter = scope.spawn(move || -> io::Result<u64> {
            let mut stream = ChunkStream::new(reader);
            let (mut seq, mut total) = (0u64, 0u64);
            while let Some(chunk) = stream.next_chunk()? {
                total += chunk.len() as u64;
                if job_tx.send((seq, chunk.to_vec())).is_err() {
                    break;
                }
                seq += 1;
            }
            Ok(total)
        });
        for _ in 0..workers {
            let (jobs, done) = (job_rx.clone(), done_tx.clone());
            scope.spawn(move || {
                for (seq, plain) in jobs {
                    if done.send(seal_chunk(seq, &plain)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(done_tx);
        drop(job_rx);
        // Workers finish out of order; hold early arrivals until their turn.
        let mut next = 0u64;
        let mut early = BTreeMap::new();
        for chunk in done_rx {
            early.insert(chunk.seq, chunk);
            while let Some(chunk) = early.remove(&next) {
                sink(chunk);
                next += 1;
            }
        }
        cutter.join().expect("cutter thread panicked")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sealing::open_into;
    use pastiche_core::chunker::chunks;
    use rand::{RngCore, SeedableRng};

    #[test]
    fn parallel_output_equals_serial_in_order() {
        let mut data = vec![0u8; 2_000_000];
        rand::rngs::StdRng::seed_from_u64(9).fill_bytes(&mut data);
        let expected: Vec<(usize, usize)> = chunks(&data).collect();
        for workers in [0, 1, 3] {
            let mut got = Vec::new();
            let total = chunk_and_seal(&data[..], workers, |c| got.push(c)).unwrap();
            assert_eq!(total, data.len() as u64);
            assert_eq!(got.len(), expected.len());
            for (i, (c, &(off, len))) in got.iter().zip(&expected).enumerate() {
                assert_eq!(c.seq, i as u64);
                let mut plain = vec![0u8; len];
                assert_eq!(open_into(&c.sealed, &c.handle, &mut plain), Ok(len));
                assert_eq!(plain, &data[off..off + len]);
            }
        }
    }

    #[test]
    fn read_errors_surface() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk on fire"))
            }
        }
        for workers in [0, 2] {
            let err = chunk_and_seal(Broken, workers, |_| {}).unwrap_err();
            assert!(err.to_string().contains("disk on fire"));
        }
    }
}
