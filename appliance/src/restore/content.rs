//! Writing a restored file's content: consecutive data gathered into
//! writes of [`WRITE_BUFFER`] bytes, and for a large file those writes made
//! on a thread of their own.
//!
//! Restoring one large file otherwise runs on one core: the kernel's copy
//! of the data into the page cache took about 36% of a 1 GB file's restore,
//! and opening, decompressing and checking its chunks the rest
//! (docs/BENCHMARKS.md). With the writes on a second thread the two
//! overlap. A tree of many files keeps every core busy anyway; for its
//! small files the extra thread would cost more than it saves.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::{Scope, ScopedJoinHandle};

use anyhow::{anyhow, Context, Result};

/// Bytes gathered before one write.
const WRITE_BUFFER: usize = 1 << 20;

/// Files at least this large are written on a thread of their own.
pub(super) const WRITE_ON_A_THREAD_FROM: u64 = 16 << 20;

/// Full buffers waiting for the writing thread besides the one it writes.
const WAITING_WRITES: usize = 2;

/// Where gathered data goes.
enum Sink<'scope> {
    /// Written by the calling thread.
    Here(&'scope File),
    /// Handed to a writing thread, which sends each buffer back once written.
    Thread {
        full: SyncSender<(u64, Vec<u8>)>,
        written: Receiver<Vec<u8>>,
        worker: ScopedJoinHandle<'scope, Result<()>>,
    },
}

/// A restored file's content, written in order except for holes.
pub(super) struct ContentWriter<'scope> {
    sink: Sink<'scope>,
    /// Offset in the file where `buf` starts.
    start: u64,
    buf: Vec<u8>,
}

impl<'scope> ContentWriter<'scope> {
    /// A writer into `file` whose content will be `size` bytes; from
    /// [`WRITE_ON_A_THREAD_FROM`] on, its writes run on a thread of `scope`.
    pub fn new<'env>(scope: &'scope Scope<'scope, 'env>, file: &'scope File, size: u64) -> ContentWriter<'scope> {
        let sink = if size >= WRITE_ON_A_THREAD_FROM {
            let (full, to_write) = sync_channel::<(u64, Vec<u8>)>(WAITING_WRITES);
            let (give_back, written) = sync_channel(WAITING_WRITES + 2);
            let worker = scope.spawn(move || -> Result<()> {
                for (at, mut buf) in to_write {
                    file.write_all_at(&buf, at).with_context(|| format!("cannot write at offset {at}"))?;
                    buf.clear();
                    // The reader may be gone or have buffers enough: then the
                    // buffer is simply freed.
                    let _ = give_back.try_send(buf);
                }
                Ok(())
            });
            Sink::Thread { full, written, worker }
        } else {
            Sink::Here(file)
        };
        ContentWriter { sink, start: 0, buf: Vec::with_capacity(WRITE_BUFFER) }
    }

    /// Appends `data` to the content.
    pub fn push(&mut self, data: &[u8]) -> Result<()> {
        if self.buf.len() + data.len() > WRITE_BUFFER {
            self.flush()?;
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    /// Leaves `len` bytes unwritten (a hole of a sparse file) after what
    /// was pushed.
    pub fn skip(&mut self, len: u64) -> Result<()> {
        self.flush()?;
        self.start += len;
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let len = self.buf.len() as u64;
        match &self.sink {
            Sink::Here(file) => {
                file.write_all_at(&self.buf, self.start)
                    .with_context(|| format!("cannot write at offset {}", self.start))?;
                self.buf.clear();
            }
            Sink::Thread { full, written, .. } => {
                let next = written.try_recv().unwrap_or_else(|_| Vec::with_capacity(WRITE_BUFFER));
                let buf = std::mem::replace(&mut self.buf, next);
                // It stops only after a failed write, which `finish` reports.
                full.send((self.start, buf)).map_err(|_| anyhow!("the writing thread stopped"))?;
            }
        }
        self.start += len;
        Ok(())
    }

    /// Writes what is gathered and waits for every write. A failed write
    /// is the error returned, whatever happened since.
    pub fn finish(mut self) -> Result<()> {
        let flushed = self.flush();
        match self.sink {
            Sink::Here(_) => flushed,
            Sink::Thread { full, worker, .. } => {
                drop(full);
                let written = worker.join().map_err(|_| anyhow!("the writing thread panicked"))?;
                written.and(flushed)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `parts` (data, or `Err(len)` for a hole) through a writer
    /// for a file of `size` bytes and returns the file's content.
    fn written(size: u64, parts: &[std::result::Result<Vec<u8>, u64>]) -> Vec<u8> {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        let file = File::create(&path).unwrap();
        let mut end = 0;
        std::thread::scope(|s| {
            let mut w = ContentWriter::new(s, &file, size);
            for p in parts {
                match p {
                    Ok(data) => {
                        w.push(data).unwrap();
                        end += data.len() as u64;
                    }
                    Err(len) => {
                        w.skip(*len).unwrap();
                        end += len;
                    }
                }
            }
            w.finish().unwrap();
        });
        file.set_len(end).unwrap();
        std::fs::read(path).unwrap()
    }

    #[test]
    fn a_large_file_written_on_a_thread_is_the_same_as_one_written_here() {
        let parts: Vec<_> = (0..200u32)
            .map(|i| if i % 37 == 5 { Err(70_000) } else { Ok(vec![(i % 251) as u8 + 1; 10_000 + i as usize * 97]) })
            .collect();
        let here = written(1, &parts);
        let threaded = written(WRITE_ON_A_THREAD_FROM, &parts);
        assert!(here.len() > 3 * WRITE_BUFFER, "several buffers are written");
        assert!(here == threaded, "the two ways wrote different files");
        assert!(here[..10_000].iter().all(|&b| b == 1));
    }

    #[test]
    fn a_failed_write_on_the_thread_is_the_error_returned() {
        let tmp = tempfile::tempdir().unwrap();
        // Opened read-only: every write fails.
        let path = tmp.path().join("f");
        std::fs::write(&path, b"").unwrap();
        let file = File::open(&path).unwrap();
        std::thread::scope(|s| {
            let mut w = ContentWriter::new(s, &file, WRITE_ON_A_THREAD_FROM);
            // The pushes may or may not see the thread stop; finish must.
            let pushed: Result<()> = (0..8).try_for_each(|_| w.push(&vec![7u8; WRITE_BUFFER]));
            let err = w.finish().unwrap_err();
            assert!(format!("{err:#}").contains("cannot write at offset 0"), "{err:#}");
            drop(pushed);
        });
    }
}
