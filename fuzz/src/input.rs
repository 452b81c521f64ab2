//! How the targets cut a fuzz input into pieces, in one place so that the
//! targets, and the seeds written for them, agree on it:
//!
//! - stream targets (`frame_decoder`, `channel_responder`) take
//!   [`CONTROL_LEN`] control bytes, then a byte stream fed in [`slices`] of
//!   the sizes the control bytes choose;
//! - message targets (`buddy_session`, `overlay_node`) take [`records`] of
//!   `[tag u8][len u16 big-endian][payload]`, written by [`push_record`].

/// Control bytes at the start of a stream input: they choose the slice sizes.
pub const CONTROL_LEN: usize = 4;

/// The stream after the control bytes, in slices: each control byte `b`
/// gives a slice of `b % 64 + 1` bytes, cycling; 255 (or no control bytes)
/// means "all that is left". The slices cover the stream exactly.
pub fn slices(data: &[u8]) -> Slices<'_> {
    let (control, stream) = data.split_at(data.len().min(CONTROL_LEN));
    Slices { control, stream, next: 0 }
}

/// The iterator of [`slices`].
pub struct Slices<'a> {
    control: &'a [u8],
    stream: &'a [u8],
    next: usize,
}

impl<'a> Iterator for Slices<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.stream.is_empty() {
            return None;
        }
        let size = match self.control.get(self.next % self.control.len().max(1)) {
            Some(255) | None => self.stream.len(),
            Some(&b) => (b as usize % 64 + 1).min(self.stream.len()),
        };
        self.next += 1;
        let (slice, rest) = self.stream.split_at(size);
        self.stream = rest;
        Some(slice)
    }
}

/// The `(tag, payload)` records of a message input. A length past the end
/// takes what is left; fewer than three bytes left end the input.
pub fn records(data: &[u8]) -> Records<'_> {
    Records { rest: data }
}

/// The iterator of [`records`].
pub struct Records<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Records<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<(u8, &'a [u8])> {
        let [tag, hi, lo, rest @ ..] = self.rest else { return None };
        let len = (u16::from_be_bytes([*hi, *lo]) as usize).min(rest.len());
        let (payload, rest) = rest.split_at(len);
        self.rest = rest;
        Some((*tag, payload))
    }
}

/// Appends one record that [`records`] reads back as `(tag, payload)`.
pub fn push_record(input: &mut Vec<u8>, tag: u8, payload: &[u8]) {
    let len = u16::try_from(payload.len()).expect("a record payload fits a u16 length");
    input.push(tag);
    input.extend_from_slice(&len.to_be_bytes());
    input.extend_from_slice(payload);
}
