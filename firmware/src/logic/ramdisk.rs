//! A block device in RAM: a borrowed byte slice behind `embedded-io`
//! `Read + Write + Seek`. The firmware uses it when no host disk is given
//! (nothing survives a reset); the host tests use it with a copy taken
//! mid-write to simulate a power cut.

use embedded_io::{ErrorKind, ErrorType, Read, Seek, SeekFrom, Write};

/// A fixed-size disk over `buf`; writes past its end fail with `OutOfMemory`.
pub struct RamDisk<'a> {
    buf: &'a mut [u8],
    pos: usize,
    /// Writes allowed before the disk "loses power" (tests): `None` is unlimited.
    write_budget: Option<usize>,
    /// Only bytes written at or past this offset count against
    /// `write_budget` (0: every byte counts).
    budget_from: usize,
    /// Write calls allowed before the disk "loses power" in the middle of
    /// the next one (tests): `None` is unlimited.
    write_calls: Option<usize>,
    /// Write calls so far.
    writes: usize,
}

impl<'a> RamDisk<'a> {
    /// A disk over `buf`, positioned at 0.
    pub fn new(buf: &'a mut [u8]) -> RamDisk<'a> {
        RamDisk { buf, pos: 0, write_budget: None, budget_from: 0, write_calls: None, writes: 0 }
    }

    /// After `calls` more write calls, the next one writes only its first
    /// half and every later write fails: a power cut at a chosen write
    /// (for crash tests).
    pub fn cut_power_after_writes(&mut self, calls: usize) {
        self.write_calls = Some(calls);
    }

    /// Write calls so far (to count the writes of an operation).
    pub fn writes(&self) -> usize {
        self.writes
    }

    /// After `bytes` more bytes are written, every write fails: a power cut
    /// in the middle of a record (for crash tests).
    pub fn cut_power_after(&mut self, bytes: usize) {
        self.cut_power_after_from(0, bytes);
    }

    /// After `bytes` more bytes are written at or past disk offset `from`,
    /// every write fails; writes below `from` until then land whole. A
    /// power cut at a chosen byte of the log, wherever the writes of the
    /// index pages (which depend on the page cache's size) fall.
    pub fn cut_power_after_from(&mut self, from: u64, bytes: usize) {
        self.budget_from = from as usize;
        self.write_budget = Some(bytes);
    }

    /// The disk's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.buf
    }
}

impl ErrorType for RamDisk<'_> {
    type Error = ErrorKind;
}

impl Read for RamDisk<'_> {
    fn read(&mut self, out: &mut [u8]) -> Result<usize, ErrorKind> {
        let rest = self.buf.get(self.pos..).unwrap_or(&[]);
        let n = rest.len().min(out.len());
        out[..n].copy_from_slice(&rest[..n]);
        self.pos += n;
        Ok(n)
    }
}

impl Write for RamDisk<'_> {
    fn write(&mut self, data: &[u8]) -> Result<usize, ErrorKind> {
        let room = self.buf.len().saturating_sub(self.pos);
        let mut n = data.len().min(room);
        self.writes += 1;
        match self.write_calls.as_mut() {
            Some(0) => {
                // The cut: half of this write lands, nothing after it.
                n = n.div_ceil(2).min(n);
                self.write_budget = Some(n);
                self.budget_from = 0;
                self.write_calls = None;
            }
            Some(calls) => *calls -= 1,
            None => {}
        }
        if let Some(budget) = self.write_budget.as_mut() {
            if *budget == 0 {
                n = 0;
            } else {
                // Bytes of this write below `budget_from` do not count.
                let free = self.budget_from.saturating_sub(self.pos).min(n);
                n = n.min(free + *budget);
                *budget -= n - free;
            }
        }
        if n == 0 && !data.is_empty() {
            return Err(ErrorKind::OutOfMemory);
        }
        self.buf[self.pos..self.pos + n].copy_from_slice(&data[..n]);
        self.pos += n;
        Ok(n)
    }

    fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

impl Seek for RamDisk<'_> {
    fn seek(&mut self, pos: SeekFrom) -> Result<u64, ErrorKind> {
        let base = match pos {
            SeekFrom::Start(p) => Some(p as i64),
            SeekFrom::End(d) => (self.buf.len() as i64).checked_add(d),
            SeekFrom::Current(d) => (self.pos as i64).checked_add(d),
        };
        match base {
            Some(p) if p >= 0 => {
                self.pos = p as usize;
                Ok(p as u64)
            }
            _ => Err(ErrorKind::InvalidInput),
        }
    }
}
