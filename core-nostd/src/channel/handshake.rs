//! The Noise XX handshake with each side's static key bound to its Ed25519
//! identity.
//!
//! ```text
//! -> e                                        (32 bytes, empty payload)
//! <- e, ee, s, es, payload(responder)          (32 + 48 + 98 + 16 = 194)
//! -> s, se, payload(initiator)                 (48 + 98 + 16 = 162)
//! payload = ed25519_key[32] || signature[64] || record_limit u16 BE
//! signature = Ed25519(identity, ChannelStatic, [noise static public key])
//! ```
//!
//! The initiator checks the responder's identity (and the pinned key, if
//! it has one) on reading the second message, before it writes the third:
//! a wrong buddy never sees the client's identity or any data.

use clatter::crypto::cipher::ChaChaPoly;
use clatter::crypto::dh::X25519;
use clatter::crypto::hash::Blake2s;
use clatter::handshakepattern::noise_xx;
use clatter::rand_core::{CryptoRng, Error as RngError, RngCore};
use clatter::traits::{Cipher, CryptoComponent, Dh, Handshaker};
use clatter::{KeyPair, NqHandshakeCore};

use super::transport::Channel;
use super::{
    ChannelError, HASH_LEN, MAX_HANDSHAKE_MESSAGE, MAX_NOISE_MESSAGE, MIN_RECORD_LIMIT, PAYLOAD_LEN, PROLOGUE,
    RECORD_HEADER_LEN,
};
use crate::identity::{Domain, Identity, PublicKey, Signature};

/// Domain label hashed with the identity seed into the Noise static key.
const STATIC_KEY_LABEL: &[u8] = b"pastiche/v2/noise-static\0";

/// Stands in for clatter's random generator, which is never used: the
/// caller passes the ephemeral key's randomness in (sans-IO), and the
/// handshake is always given its ephemeral key pair up front. Should clatter
/// ever ask, it gets an error or an all-ones stream rather than a silent
/// fallback, and the `ephemeral_key_is_the_callers` test would fail.
#[derive(Clone, Default)]
pub struct NoRng;

impl RngCore for NoRng {
    fn next_u32(&mut self) -> u32 {
        u32::MAX
    }
    fn next_u64(&mut self) -> u64 {
        u64::MAX
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        dest.fill(0xff);
    }
    fn try_fill_bytes(&mut self, _dest: &mut [u8]) -> Result<(), RngError> {
        Err(RngError::from(core::num::NonZeroU32::new(RngError::CUSTOM_START).unwrap_or(core::num::NonZeroU32::MIN)))
    }
}

impl CryptoRng for NoRng {}

type Noise<C> = NqHandshakeCore<X25519, C, Blake2s, NoRng>;
type X25519Pair = KeyPair<<X25519 as Dh>::PubKey, <X25519 as Dh>::PrivateKey>;

/// Which end of the connection: the client initiates, the buddy responds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The side that connected (the client); it speaks first.
    Initiator,
    /// The side that accepted (the buddy).
    Responder,
}

/// The X25519 static secret of an identity: BLAKE2s of a label and the
/// Ed25519 seed, so a box has one stable channel key and needs no second
/// secret; the handshake payload's signature is what binds them publicly.
pub fn static_secret(identity: &Identity) -> [u8; 32] {
    use blake2::{Blake2s256, Digest};
    let mut h = Blake2s256::new();
    h.update(STATIC_KEY_LABEL);
    h.update(identity.seed());
    h.finalize().into()
}

fn key_pair(secret: [u8; 32]) -> X25519Pair {
    let secret = <X25519 as Dh>::PrivateKey::new(secret);
    KeyPair { public: X25519::pubkey(&secret), secret }
}

/// A handshake in progress: write and read handshake messages in turn
/// until [`Handshake::is_finished`], then [`Handshake::finish`].
///
/// `C` is the ChaCha20-Poly1305 implementation: the protocol
/// ([`super::NOISE_NAME`]) fixes the cipher, but a host may bring a faster
/// implementation of it (the appliance's uses the CPU's vector units); the
/// bytes on the wire are the same. A `C` naming another cipher is refused.
pub struct Handshake<C: Cipher = ChaChaPoly> {
    noise: Noise<C>,
    role: Role,
    /// Our payload: key, signature over our static key, record limit.
    pub(super) payload: [u8; PAYLOAD_LEN],
    /// The largest record we accept.
    own_limit: usize,
    pinned: Option<PublicKey>,
    /// The peer's proven identity and record limit.
    peer: Option<(PublicKey, usize)>,
    failed: bool,
}

impl<C: Cipher> core::fmt::Debug for Handshake<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Handshake").field("role", &self.role).field("peer", &self.peer).finish_non_exhaustive()
    }
}

impl<C: Cipher> Handshake<C> {
    /// The client's side. `ephemeral` is 32 fresh random bytes; `pinned`
    /// the buddy's key if known (the handshake fails with
    /// [`ChannelError::WrongPeer`] before our identity is sent otherwise);
    /// `record_limit` the largest record message we accept
    /// ([`MIN_RECORD_LIMIT`]`..=`[`MAX_NOISE_MESSAGE`]).
    pub fn initiator(
        identity: &Identity,
        ephemeral: [u8; 32],
        pinned: Option<PublicKey>,
        record_limit: usize,
    ) -> Result<Self, ChannelError> {
        Self::new(Role::Initiator, identity, ephemeral, pinned, record_limit)
    }

    /// The buddy's side; see [`Handshake::initiator`].
    pub fn responder(identity: &Identity, ephemeral: [u8; 32], record_limit: usize) -> Result<Self, ChannelError> {
        Self::new(Role::Responder, identity, ephemeral, None, record_limit)
    }

    fn new(
        role: Role,
        identity: &Identity,
        ephemeral: [u8; 32],
        pinned: Option<PublicKey>,
        record_limit: usize,
    ) -> Result<Self, ChannelError> {
        if C::name() != ChaChaPoly::name() {
            return Err(ChannelError::Handshake("the channel's cipher is ChaCha20-Poly1305"));
        }
        if !(MIN_RECORD_LIMIT..=MAX_NOISE_MESSAGE).contains(&record_limit) {
            return Err(ChannelError::LimitTooSmall { limit: record_limit });
        }
        let statics = key_pair(static_secret(identity));
        let mut payload = [0u8; PAYLOAD_LEN];
        let sig = identity.sign(Domain::ChannelStatic, &[&statics.public[..]], [0; 16]);
        payload[..32].copy_from_slice(&identity.public_key().0);
        payload[32..96].copy_from_slice(&sig.0);
        payload[96..].copy_from_slice(&(record_limit as u16).to_be_bytes());
        let noise = Noise::new(
            noise_xx(),
            PROLOGUE,
            role == Role::Initiator,
            Some(statics),
            Some(key_pair(ephemeral)),
            None,
            None,
        )
        .map_err(|_| ChannelError::Handshake("cannot set up the handshake"))?;
        Ok(Handshake { noise, role, payload, own_limit: record_limit, pinned, peer: None, failed: false })
    }

    /// Our role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether the next step is ours to write (else we wait for a message).
    pub fn is_write_turn(&self) -> bool {
        !self.failed && !self.noise.is_finished() && self.noise.is_write_turn()
    }

    /// Whether all three messages have passed.
    pub fn is_finished(&self) -> bool {
        !self.failed && self.noise.is_finished()
    }

    /// The peer's identity, once its payload was checked (the responder's
    /// after message 2, the initiator's after message 3).
    pub fn peer(&self) -> Option<PublicKey> {
        self.peer.map(|(k, _)| k)
    }

    /// Writes our next handshake message as one record (header included)
    /// at the start of `out` (at least [`super::HANDSHAKE_RECORD_LEN`]
    /// bytes); returns its length.
    pub fn write(&mut self, out: &mut [u8]) -> Result<usize, ChannelError> {
        if !self.is_write_turn() {
            return Err(self.fail("not our turn to write"));
        }
        // The first message (the initiator's ephemeral key) carries nothing.
        let payload: &[u8] = if self.role == Role::Initiator && self.peer.is_none() { &[] } else { &self.payload };
        let (header, body) = match out.split_at_mut_checked(RECORD_HEADER_LEN) {
            Some(parts) => parts,
            None => return Err(ChannelError::BufferTooSmall),
        };
        let body_len = body.len().min(MAX_HANDSHAKE_MESSAGE);
        let n = match self.noise.write_message(payload, &mut body[..body_len]) {
            Ok(n) => n,
            Err(clatter::error::HandshakeError::BufferTooSmall) => return Err(ChannelError::BufferTooSmall),
            Err(_) => return Err(self.fail("cannot write the handshake message")),
        };
        header.copy_from_slice(&(n as u16).to_be_bytes());
        Ok(RECORD_HEADER_LEN + n)
    }

    /// Reads the peer's next handshake message (a record's body, without
    /// its header). Checks the peer's identity binding and, on the client,
    /// the pinned key.
    pub fn read(&mut self, message: &[u8]) -> Result<(), ChannelError> {
        if self.failed {
            return Err(ChannelError::Poisoned);
        }
        if self.noise.is_finished() || self.noise.is_write_turn() {
            return Err(self.fail("a handshake message out of turn"));
        }
        if message.len() > MAX_HANDSHAKE_MESSAGE {
            return Err(self.fail("oversized handshake message"));
        }
        let first = self.role == Role::Responder && self.noise.get_remote_ephemeral().is_none();
        let mut payload = [0u8; MAX_HANDSHAKE_MESSAGE];
        let n = match self.noise.read_message(message, &mut payload) {
            Ok(n) => n,
            Err(_) => return Err(self.fail("message failed authentication or is malformed")),
        };
        if first {
            // The initiator's first message is its ephemeral key alone.
            return if n == 0 { Ok(()) } else { Err(self.fail("unexpected payload in the first message")) };
        }
        match self.check_peer(&payload[..n]) {
            Ok(peer) => {
                self.peer = Some(peer);
                Ok(())
            }
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }

    /// Checks a peer's payload against the Noise static key it proved.
    fn check_peer(&self, payload: &[u8]) -> Result<(PublicKey, usize), ChannelError> {
        let payload: &[u8; PAYLOAD_LEN] = payload.try_into().map_err(|_| ChannelError::BadIdentity)?;
        let remote_static = self.noise.get_remote_static().ok_or(ChannelError::BadIdentity)?;
        let mut key = [0u8; 32];
        key.copy_from_slice(&payload[..32]);
        let mut sig = [0u8; 64];
        sig.copy_from_slice(&payload[32..96]);
        let key = PublicKey(key);
        key.verify(Domain::ChannelStatic, &[&remote_static[..]], &Signature(sig))
            .map_err(|_| ChannelError::BadIdentity)?;
        let limit = usize::from(u16::from_be_bytes([payload[96], payload[97]]));
        if limit < MIN_RECORD_LIMIT {
            return Err(ChannelError::LimitTooSmall { limit });
        }
        if let Some(pinned) = self.pinned {
            if pinned != key {
                return Err(ChannelError::WrongPeer { got: key });
            }
        }
        Ok((key, limit))
    }

    fn fail(&mut self, why: &'static str) -> ChannelError {
        self.failed = true;
        ChannelError::Handshake(why)
    }

    /// The established channel, once [`Handshake::is_finished`].
    pub fn finish(self) -> Result<Channel<C>, ChannelError> {
        let Some((peer, send_limit)) = self.peer.filter(|_| self.is_finished()) else {
            return Err(ChannelError::Handshake("the handshake is not finished"));
        };
        let transport = self.noise.finalize().map_err(|_| ChannelError::Handshake("cannot split the handshake"))?;
        let mut hash = [0u8; HASH_LEN];
        hash.copy_from_slice(&transport.get_handshake_hash()[..]);
        Ok(Channel::new(transport, peer, hash, send_limit, self.own_limit))
    }
}
