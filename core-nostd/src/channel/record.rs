//! Records on the wire: a `u16` big-endian length, then that many bytes of
//! one Noise message.

use super::{ChannelError, RECORD_HEADER_LEN, TAG_LEN};

/// Checks a record header against the receiver's `limit` and returns the
/// message length it announces. A message must hold at least its tag
/// ([`ChannelError::RecordTooShort`]); handshake messages, which may be
/// shorter, are checked with `min = 1` by the handshake itself.
pub fn record_len(header: [u8; RECORD_HEADER_LEN], min: usize, limit: usize) -> Result<usize, ChannelError> {
    let len = usize::from(u16::from_be_bytes(header));
    if len < min.max(1) {
        Err(ChannelError::RecordTooShort { len })
    } else if len > limit {
        Err(ChannelError::RecordTooLarge { len, limit })
    } else {
        Ok(len)
    }
}

/// What one [`RecordReader::feed`] did.
#[derive(Debug, PartialEq, Eq)]
pub struct RecordRead<'s> {
    /// Bytes of the input taken; feed the rest again.
    pub consumed: usize,
    /// The message of the record completed by this call (without its
    /// header), lent mutably so it can be decrypted in place. It lives in
    /// the reader's buffer until the next call.
    pub record: Option<&'s mut [u8]>,
}

/// Reassembles records from a byte stream fed in slices of any size, into
/// a buffer the caller lends. A header announcing more than the current
/// limit is refused as soon as its two bytes are in, so a peer can never
/// make the reader buffer more than the limit; after an error the reader
/// is poisoned.
#[derive(Debug)]
pub struct RecordReader<'b> {
    buf: &'b mut [u8],
    have: usize,
    want: usize,
    ready: bool,
    min: usize,
    limit: usize,
    poisoned: Option<ChannelError>,
}

impl<'b> RecordReader<'b> {
    /// A reader of records of `min..=limit` message bytes into `buf`
    /// ([`ChannelError::BufferTooSmall`] unless `buf` holds a header and
    /// `limit` bytes).
    pub fn new(buf: &'b mut [u8], min: usize, limit: usize) -> Result<RecordReader<'b>, ChannelError> {
        if buf.len() < RECORD_HEADER_LEN + limit {
            return Err(ChannelError::BufferTooSmall);
        }
        Ok(RecordReader { buf, have: 0, want: RECORD_HEADER_LEN, ready: false, min, limit, poisoned: None })
    }

    /// Changes the accepted record sizes for the records after the current
    /// one (after the handshake: transport records, at least a tag long).
    pub fn set_limits(&mut self, min: usize, limit: usize) -> Result<(), ChannelError> {
        if self.buf.len() < RECORD_HEADER_LEN + limit {
            return Err(ChannelError::BufferTooSmall);
        }
        self.min = min;
        self.limit = limit;
        Ok(())
    }

    /// The limits for transport records: `TAG_LEN + 1 ..= limit`.
    pub fn set_transport_limit(&mut self, limit: usize) -> Result<(), ChannelError> {
        self.set_limits(TAG_LEN + 1, limit)
    }

    /// Takes bytes from `input` until it ends or a record is complete.
    pub fn feed(&mut self, input: &[u8]) -> Result<RecordRead<'_>, ChannelError> {
        if let Some(e) = self.poisoned {
            return Err(e);
        }
        if self.ready {
            self.ready = false;
            self.have = 0;
            self.want = RECORD_HEADER_LEN;
        }
        let mut consumed = 0;
        loop {
            let rest = input.get(consumed..).unwrap_or(&[]);
            let take = rest.len().min(self.want - self.have);
            let slot = self.buf.get_mut(self.have..self.have + take).ok_or(ChannelError::BufferTooSmall)?;
            slot.copy_from_slice(&rest[..take]);
            self.have += take;
            consumed += take;
            if self.have < self.want {
                return Ok(RecordRead { consumed, record: None });
            }
            if self.want == RECORD_HEADER_LEN {
                let header = [self.buf[0], self.buf[1]];
                match record_len(header, self.min, self.limit) {
                    Ok(len) => self.want = RECORD_HEADER_LEN + len,
                    Err(e) => {
                        self.poisoned = Some(e);
                        return Err(e);
                    }
                }
                continue;
            }
            self.ready = true;
            let record = self.buf.get_mut(RECORD_HEADER_LEN..self.want).ok_or(ChannelError::BufferTooSmall)?;
            return Ok(RecordRead { consumed, record: Some(record) });
        }
    }

    /// Whether a record has started but not completed (the stream may not
    /// end here, and the record deadline runs).
    pub fn in_record(&self) -> bool {
        !self.ready && self.have > 0
    }

    /// Call at the end of the stream: [`ChannelError::Truncated`] if it
    /// ended inside a record, the poisoning error if one was refused.
    pub fn finish(&self) -> Result<(), ChannelError> {
        match self.poisoned {
            Some(e) => Err(e),
            None if self.in_record() => Err(ChannelError::Truncated),
            None => Ok(()),
        }
    }
}
