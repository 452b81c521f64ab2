//! Writing a restored file's content: consecutive data gathered into
//! writes of [`WRITE_BUFFER`] bytes (one syscall per MiB, not per chunk),
//! holes of a sparse file left unwritten.

use std::fs::File;
use std::os::unix::fs::FileExt;

use anyhow::{Context, Result};

/// Bytes gathered before one write.
const WRITE_BUFFER: usize = 1 << 20;

/// A restored file's content, written in order except for holes.
pub(super) struct ContentWriter<'f> {
    file: &'f File,
    /// Offset in the file where `buf` starts.
    start: u64,
    buf: Vec<u8>,
}

impl<'f> ContentWriter<'f> {
    /// A writer of `file` from its start.
    pub fn new(file: &'f File) -> ContentWriter<'f> {
        ContentWriter { file, start: 0, buf: Vec::with_capacity(WRITE_BUFFER) }
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

    /// Writes what is gathered.
    pub fn flush(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            self.file
                .write_all_at(&self.buf, self.start)
                .with_context(|| format!("cannot write at offset {}", self.start))?;
            self.start += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }
}
