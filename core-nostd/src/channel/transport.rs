//! The established channel: a byte stream cut into encrypted records.

use clatter::crypto::cipher::ChaChaPoly;
use clatter::crypto::hash::Blake2s;
use clatter::traits::Cipher;
use clatter::transportstate::TransportState;

use super::{ChannelError, HASH_LEN, RECORD_HEADER_LEN, TAG_LEN};
use crate::identity::PublicKey;

/// An established channel: the peer's proven identity, the handshake hash,
/// and the two cipher states. Any failure poisons it. `C` is the
/// ChaCha20-Poly1305 implementation (see [`super::Handshake`]).
pub struct Channel<C: Cipher = ChaChaPoly> {
    transport: TransportState<C, Blake2s>,
    peer: PublicKey,
    hash: [u8; HASH_LEN],
    /// The largest record message the peer accepts.
    send_limit: usize,
    /// The largest record message we accept.
    recv_limit: usize,
    failed: bool,
}

impl<C: Cipher> core::fmt::Debug for Channel<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Channel").field("peer", &self.peer).finish_non_exhaustive()
    }
}

impl<C: Cipher> Channel<C> {
    pub(super) fn new(
        transport: TransportState<C, Blake2s>,
        peer: PublicKey,
        hash: [u8; HASH_LEN],
        send_limit: usize,
        recv_limit: usize,
    ) -> Self {
        Channel { transport, peer, hash, send_limit, recv_limit, failed: false }
    }

    /// The peer's Ed25519 identity, proven by the handshake.
    pub fn peer(&self) -> PublicKey {
        self.peer
    }

    /// The Noise handshake hash: unique to this session, for channel binding.
    pub fn handshake_hash(&self) -> [u8; HASH_LEN] {
        self.hash
    }

    /// The largest record message this side accepts (for its record reader).
    pub fn recv_limit(&self) -> usize {
        self.recv_limit
    }

    /// Plaintext bytes per record this side sends (at most).
    pub fn max_plaintext(&self) -> usize {
        self.send_limit - TAG_LEN
    }

    /// Bytes on the wire for `n` bytes of plaintext sent with [`Channel::seal`].
    pub fn sealed_len(&self, n: usize) -> usize {
        n + n.div_ceil(self.max_plaintext()) * (RECORD_HEADER_LEN + TAG_LEN)
    }

    /// Encrypts `plaintext` into as many records as the peer's limit needs,
    /// at the start of `out` (at least [`Channel::sealed_len`] bytes);
    /// returns the bytes written.
    pub fn seal(&mut self, plaintext: &[u8], out: &mut [u8]) -> Result<usize, ChannelError> {
        if self.failed {
            return Err(ChannelError::Poisoned);
        }
        if out.len() < self.sealed_len(plaintext.len()) {
            return Err(ChannelError::BufferTooSmall);
        }
        let mut at = 0;
        for part in plaintext.chunks(self.max_plaintext()) {
            at += self.seal_record(part, &mut out[at..])?;
        }
        Ok(at)
    }

    /// Encrypts `plaintext` (1..=[`Channel::max_plaintext`] bytes) as one
    /// record at the start of `out`; returns the record's length.
    pub fn seal_record(&mut self, plaintext: &[u8], out: &mut [u8]) -> Result<usize, ChannelError> {
        if self.failed {
            return Err(ChannelError::Poisoned);
        }
        if plaintext.is_empty() || plaintext.len() > self.max_plaintext() {
            return Err(ChannelError::RecordTooLarge { len: plaintext.len() + TAG_LEN, limit: self.send_limit });
        }
        let len = plaintext.len() + TAG_LEN;
        let Some(record) = out.get_mut(..RECORD_HEADER_LEN + len) else {
            return Err(ChannelError::BufferTooSmall);
        };
        let (header, body) = record.split_at_mut(RECORD_HEADER_LEN);
        header.copy_from_slice(&(len as u16).to_be_bytes());
        if self.transport.send(plaintext, body).is_err() {
            self.failed = true;
            return Err(ChannelError::Poisoned);
        }
        Ok(RECORD_HEADER_LEN + len)
    }

    /// Decrypts one record's message (its body, without the header) in
    /// place and returns the plaintext. A record that fails authentication
    /// poisons the channel.
    pub fn open<'r>(&mut self, body: &'r mut [u8]) -> Result<&'r [u8], ChannelError> {
        if self.failed {
            return Err(ChannelError::Poisoned);
        }
        let len = body.len();
        if len <= TAG_LEN {
            self.failed = true;
            return Err(ChannelError::RecordTooShort { len });
        }
        if len > self.recv_limit {
            self.failed = true;
            return Err(ChannelError::RecordTooLarge { len, limit: self.recv_limit });
        }
        match self.transport.receive_in_place(body, len) {
            Ok(n) => Ok(body.get(..n).unwrap_or(&[])),
            Err(_) => {
                self.failed = true;
                Err(ChannelError::Decrypt)
            }
        }
    }
}
