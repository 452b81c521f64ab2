//! Framing: a `u32` big-endian payload length, then the payload.
//!
//! A payload is 1..=[`MAX_FRAME_PAYLOAD`] bytes; a header announcing 0 or
//! more is refused as soon as its four bytes are in, before any payload is
//! read, so a peer cannot make us buffer more than one maximum frame.

use super::message::Message;
use super::WireError;

/// Bytes of a frame header (the big-endian payload length).
pub const FRAME_HEADER_LEN: usize = 4;
/// The largest frame payload: 66 KiB, so that one sealed chunk of
/// [`MAX_SEALED`](crate::seal::MAX_SEALED) bytes plus its message envelope fits.
pub const MAX_FRAME_PAYLOAD: usize = 66 * 1024;
/// The smallest buffer a [`FrameDecoder`] accepts: one header plus one
/// maximum payload.
pub const DECODER_BUFFER_LEN: usize = FRAME_HEADER_LEN + MAX_FRAME_PAYLOAD;

/// Checks a frame header and returns the payload length it announces.
fn payload_len(header: [u8; FRAME_HEADER_LEN]) -> Result<usize, WireError> {
    let len = u32::from_be_bytes(header) as usize;
    if len == 0 {
        Err(WireError::EmptyFrame)
    } else if len > MAX_FRAME_PAYLOAD {
        Err(WireError::FrameTooLarge { len })
    } else {
        Ok(len)
    }
}

/// One whole frame at the start of a byte slice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    bytes: &'a [u8],
}

impl<'a> Frame<'a> {
    /// The frame at the start of `bytes`, checked: its header must announce
    /// 1..=[`MAX_FRAME_PAYLOAD`] bytes ([`WireError::EmptyFrame`],
    /// [`WireError::FrameTooLarge`]) and the whole payload must be present
    /// ([`WireError::Truncated`]). Bytes after the frame are ignored: see
    /// [`Frame::total_len`].
    pub fn new_checked(bytes: &'a [u8]) -> Result<Frame<'a>, WireError> {
        let header = bytes.get(..FRAME_HEADER_LEN).ok_or(WireError::Truncated)?;
        let mut h = [0u8; FRAME_HEADER_LEN];
        h.copy_from_slice(header);
        let len = payload_len(h)?;
        let bytes = bytes.get(..FRAME_HEADER_LEN + len).ok_or(WireError::Truncated)?;
        Ok(Frame { bytes })
    }

    /// The payload: a kind byte and a message body.
    pub fn payload(&self) -> &'a [u8] {
        self.bytes.get(FRAME_HEADER_LEN..).unwrap_or(&[])
    }

    /// Header plus payload: where the next frame starts.
    pub fn total_len(&self) -> usize {
        self.bytes.len()
    }
}

/// Writes `msg` as one frame (header and payload) at the start of `out`, and
/// returns the frame's length. `msg` is checked as [`Message::encode`] does.
pub fn encode_frame(msg: &Message<'_>, out: &mut [u8]) -> Result<usize, WireError> {
    if out.len() < FRAME_HEADER_LEN {
        return Err(WireError::BufferTooSmall);
    }
    let (header, payload) = out.split_at_mut(FRAME_HEADER_LEN);
    let len = msg.encode(payload)?;
    if len > MAX_FRAME_PAYLOAD {
        return Err(WireError::FrameTooLarge { len });
    }
    header.copy_from_slice(&(len as u32).to_be_bytes());
    Ok(FRAME_HEADER_LEN + len)
}

/// What one [`FrameDecoder::feed`] did.
#[derive(Debug, PartialEq, Eq)]
pub struct Fed<'s> {
    /// Bytes of the input taken. Feed the rest again: a call stops after the
    /// first frame it completes.
    pub consumed: usize,
    /// The payload of the frame completed by this call, if any. It lives in
    /// the decoder's buffer until the next call.
    pub frame: Option<&'s [u8]>,
}

/// Reassembles frames from a byte stream fed in slices of any size.
///
/// Frames are assembled in a buffer the caller lends (at least
/// [`DECODER_BUFFER_LEN`] bytes); payloads are handed out borrowed from it.
/// After a bad header the decoder is poisoned: every later call returns the
/// same error, since the stream has lost its framing and the session must
/// end.
///
/// ```
/// use pastiche_core::wire::{encode_frame, FrameDecoder, Message, DECODER_BUFFER_LEN};
/// let mut wire = [0u8; 16];
/// let n = encode_frame(&Message::Flush, &mut wire).unwrap();
/// let mut buf = [0u8; DECODER_BUFFER_LEN];
/// let mut decoder = FrameDecoder::new(&mut buf).unwrap();
/// let mut got = 0;
/// for byte in wire[..n].chunks(1) {
///     let fed = decoder.feed(byte).unwrap();
///     if let Some(payload) = fed.frame {
///         assert_eq!(Message::decode(payload), Ok(Message::Flush));
///         got += 1;
///     }
/// }
/// assert_eq!(got, 1);
/// assert_eq!(decoder.finish(), Ok(()));
/// ```
#[derive(Debug)]
pub struct FrameDecoder<'b> {
    buf: &'b mut [u8],
    /// Bytes of the current frame (header first) in `buf`.
    have: usize,
    /// Bytes the current frame needs: the header's, then the whole frame's.
    want: usize,
    /// The current frame is complete and was handed out.
    ready: bool,
    /// The stream's framing was lost.
    poisoned: Option<WireError>,
}

impl<'b> FrameDecoder<'b> {
    /// A decoder assembling frames in `buf`; [`WireError::BufferTooSmall`]
    /// if it is shorter than [`DECODER_BUFFER_LEN`].
    pub fn new(buf: &'b mut [u8]) -> Result<FrameDecoder<'b>, WireError> {
        if buf.len() < DECODER_BUFFER_LEN {
            return Err(WireError::BufferTooSmall);
        }
        Ok(FrameDecoder { buf, have: 0, want: FRAME_HEADER_LEN, ready: false, poisoned: None })
    }

    /// Takes bytes from `input` until it ends or a frame is complete.
    ///
    /// Returns how many bytes were taken and the completed payload, if any;
    /// call again with the rest of the input (an empty rest is fine). A
    /// header announcing an empty or oversized payload is an error, and
    /// poisons the decoder.
    pub fn feed(&mut self, input: &[u8]) -> Result<Fed<'_>, WireError> {
        if let Some(e) = self.poisoned {
            return Err(e);
        }
        if self.ready {
            self.ready = false;
            self.have = 0;
            self.want = FRAME_HEADER_LEN;
        }
        let mut consumed = 0;
        loop {
            let rest = input.get(consumed..).unwrap_or(&[]);
            let take = rest.len().min(self.want - self.have);
            let slot = self.buf.get_mut(self.have..self.have + take).ok_or(WireError::BufferTooSmall)?;
            slot.copy_from_slice(&rest[..take]);
            self.have += take;
            consumed += take;
            if self.have < self.want {
                return Ok(Fed { consumed, frame: None });
            }
            if self.want == FRAME_HEADER_LEN {
                let mut header = [0u8; FRAME_HEADER_LEN];
                header.copy_from_slice(&self.buf[..FRAME_HEADER_LEN]);
                match payload_len(header) {
                    Ok(len) => self.want = FRAME_HEADER_LEN + len,
                    Err(e) => {
                        self.poisoned = Some(e);
                        return Err(e);
                    }
                }
                continue;
            }
            self.ready = true;
            let frame = self.buf.get(FRAME_HEADER_LEN..self.want).ok_or(WireError::BufferTooSmall)?;
            return Ok(Fed { consumed, frame: Some(frame) });
        }
    }

    /// Feeds all of `input`, calling `on_payload` for each frame completed,
    /// in order. Stops at the first error, the decoder's or the handler's.
    pub fn feed_all<E: From<WireError>>(
        &mut self,
        mut input: &[u8],
        mut on_payload: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        while !input.is_empty() {
            let fed = self.feed(input)?;
            input = input.get(fed.consumed..).unwrap_or(&[]);
            if let Some(payload) = fed.frame {
                on_payload(payload)?;
            }
        }
        Ok(())
    }

    /// Forgets any partial frame and a lost framing: the decoder starts
    /// over, as new, for another stream.
    pub fn reset(&mut self) {
        self.have = 0;
        self.want = FRAME_HEADER_LEN;
        self.ready = false;
        self.poisoned = None;
    }

    /// Lends the decoder's buffer while it holds no partial frame (the
    /// frame last handed out is forgotten), so a small device can use the
    /// one large buffer for other work between frames; `None` mid-frame or
    /// once poisoned.
    pub fn idle_buffer(&mut self) -> Option<&mut [u8]> {
        if !self.is_idle() {
            return None;
        }
        self.reset();
        Some(&mut *self.buf)
    }

    /// Whether no partial frame is buffered (the stream may end here).
    pub fn is_idle(&self) -> bool {
        self.poisoned.is_none() && (self.ready || self.have == 0)
    }

    /// Bytes of the partial frame buffered so far (0 between frames).
    pub fn buffered(&self) -> usize {
        if self.ready {
            0
        } else {
            self.have
        }
    }

    /// Call at the end of the stream: [`WireError::Truncated`] if it ended
    /// inside a frame, the poisoning error if framing was lost.
    pub fn finish(&self) -> Result<(), WireError> {
        match self.poisoned {
            Some(e) => Err(e),
            None if self.is_idle() => Ok(()),
            None => Err(WireError::Truncated),
        }
    }
}
