//! Box identities: Ed25519 keys, domain-separated detached signatures, and
//! overlay nodeIds (SPEC §3).
//!
//! Every signature covers a domain prefix naming the kind of message, so a
//! signature made for one purpose (say, a hello challenge) can never be
//! replayed as another (say, a delete list).

use core::fmt;
use ed25519_compact as ed;
use hmac::{Hmac, Mac};
use sha1::{Digest, Sha1};

use crate::hex::hex_id;

hex_id!(
    /// An Ed25519 public key: a box's identity, and the owner name on every
    /// chunk a buddy stores for it.
    PublicKey,
    32
);
hex_id!(
    /// A detached Ed25519 signature.
    Signature,
    64
);
hex_id!(
    /// A node's overlay identifier: the first 128 bits of `SHA1(fqdn)`.
    NodeId,
    16
);

impl NodeId {
    /// The nodeId of a machine, from its fully-qualified name, so a rebuilt
    /// machine rejoins with the same id.
    pub fn from_name(fqdn: &str) -> NodeId {
        let digest: [u8; 20] = Sha1::digest(fqdn.as_bytes()).into();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        NodeId(id)
    }

    /// The `i`-th base-16 digit (Pastry, b = 4), most significant first.
    pub fn digit(&self, i: usize) -> u8 {
        let byte = self.0[i / 2];
        if i.is_multiple_of(2) {
            byte >> 4
        } else {
            byte & 15
        }
    }
}

/// The kinds of signed message. Each has its own prefix in the signed bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Domain {
    /// Proof of key possession at session start (a fresh challenge).
    Hello,
    /// Removal of the signer's references to a set of chunks.
    DeleteList,
    /// Creation or overwrite of a metadata object.
    MetadataPut,
    /// Replacement of the signer's root object.
    RootPut,
    /// Commit of a staged snapshot.
    Commit,
    /// Drop of a whole snapshot or of all the signer's data.
    Drop,
    /// Proof of key possession with a pairing code (a fresh challenge).
    Pair,
    /// Binding of a box's Noise static key to its identity (the secure
    /// channel's handshake payload, `docs/PROTOCOL.md` §1a).
    ChannelStatic,
    /// A box's root record as its buddies keep it for disaster recovery
    /// (`docs/METADATA.md`, "The root on the buddies"): binds the root epoch.
    RootRecord,
}

impl Domain {
    /// The bytes signed ahead of the payload.
    pub fn prefix(self) -> &'static [u8] {
        match self {
            Domain::Hello => b"pastiche/v1/sig/hello\0",
            Domain::DeleteList => b"pastiche/v1/sig/delete\0",
            Domain::MetadataPut => b"pastiche/v1/sig/metadata\0",
            Domain::RootPut => b"pastiche/v1/sig/root\0",
            Domain::Commit => b"pastiche/v1/sig/commit\0",
            Domain::Drop => b"pastiche/v1/sig/drop\0",
            Domain::Pair => b"pastiche/v1/sig/pair\0",
            Domain::ChannelStatic => b"pastiche/v2/sig/channel-static\0",
            Domain::RootRecord => b"pastiche/v2/sig/root-record\0",
        }
    }
}

/// A signature did not verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureError {
    /// The public key is not a valid curve point.
    BadPublicKey,
    /// The signature is malformed or was made by another key, for another
    /// message, or for another domain.
    Mismatch,
    /// The secret seed is all zeros.
    WeakSeed,
}

impl core::error::Error for SignatureError {}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignatureError::BadPublicKey => f.write_str("invalid public key"),
            SignatureError::Mismatch => f.write_str("signature does not match key, message and purpose"),
            SignatureError::WeakSeed => f.write_str("refusing an all-zero secret seed"),
        }
    }
}

/// A box's secret signing identity.
#[derive(Clone)]
pub struct Identity {
    keys: ed::KeyPair,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({})", self.public_key())
    }
}

impl Identity {
    /// The identity generated from a 32-byte secret seed (which the caller
    /// draws from its entropy source and keeps secret). The all-zero seed is
    /// refused: it is what a wiped or unset key looks like.
    pub fn from_seed(seed: [u8; 32]) -> Result<Identity, SignatureError> {
        if seed == [0; 32] {
            return Err(SignatureError::WeakSeed);
        }
        Ok(Identity { keys: ed::KeyPair::from_seed(ed::Seed::new(seed)) })
    }

    /// The secret seed, for storing the identity.
    pub fn seed(&self) -> [u8; 32] {
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&self.keys.sk.seed()[..]);
        seed
    }

    /// The public half.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(*self.keys.pk)
    }

    /// Signs the concatenation of `parts` for `domain`.
    ///
    /// The signing nonce is derived from the key, `entropy` and the message,
    /// so it is unique per message even if `entropy` is constant, and
    /// unpredictable when `entropy` is fresh (which hardens against faults).
    pub fn sign(&self, domain: Domain, parts: &[&[u8]], entropy: [u8; 16]) -> Signature {
        let seed = self.seed();
        let mut nonce_mac = Hmac::<Sha1>::new_from_slice(&seed).expect("HMAC takes any key length");
        nonce_mac.update(&entropy);
        absorb_message(|b| nonce_mac.update(b), domain, parts);
        let digest: [u8; 20] = nonce_mac.finalize().into_bytes().into();
        let mut noise = [0u8; ed::Noise::BYTES];
        noise.copy_from_slice(&digest[..ed::Noise::BYTES]);
        let mut state = self.keys.sk.sign_incremental(ed::Noise::new(noise));
        absorb_message(|b| state.absorb(b), domain, parts);
        Signature(*state.sign())
    }
}

impl PublicKey {
    /// Verifies `signature` over the concatenation of `parts` for `domain`.
    pub fn verify(&self, domain: Domain, parts: &[&[u8]], signature: &Signature) -> Result<(), SignatureError> {
        let pk = ed::PublicKey::new(self.0);
        let sig = ed::Signature::new(signature.0);
        let mut state = pk.verify_incremental(&sig).map_err(|e| match e {
            ed::Error::InvalidPublicKey | ed::Error::WeakPublicKey => SignatureError::BadPublicKey,
            _ => SignatureError::Mismatch,
        })?;
        absorb_message(|b| state.absorb(b), domain, parts);
        state.verify().map_err(|_| SignatureError::Mismatch)
    }
}

/// Feeds the signed bytes: the domain prefix, then each part behind its
/// 32-bit big-endian length, so part boundaries are unambiguous.
fn absorb_message(mut absorb: impl FnMut(&[u8]), domain: Domain, parts: &[&[u8]]) {
    absorb(domain.prefix());
    for part in parts {
        absorb(&(part.len() as u32).to_be_bytes());
        absorb(part);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> Identity {
        Identity::from_seed([n; 32]).unwrap()
    }

    #[test]
    fn all_zero_seed_is_refused() {
        assert_eq!(Identity::from_seed([0; 32]).unwrap_err(), SignatureError::WeakSeed);
    }

    #[test]
    fn signature_round_trip() {
        let me = id(1);
        let sig = me.sign(Domain::DeleteList, &[b"abc", b"def"], [0; 16]);
        assert_eq!(me.public_key().verify(Domain::DeleteList, &[b"abc", b"def"], &sig), Ok(()));
    }

    #[test]
    fn signature_refused_for_other_domain_key_or_message() {
        let me = id(1);
        let sig = me.sign(Domain::DeleteList, &[b"abc"], [9; 16]);
        let pk = me.public_key();
        assert!(pk.verify(Domain::MetadataPut, &[b"abc"], &sig).is_err());
        assert!(pk.verify(Domain::DeleteList, &[b"abd"], &sig).is_err());
        assert!(pk.verify(Domain::DeleteList, &[b"ab", b"c"], &sig).is_err());
        assert!(id(2).public_key().verify(Domain::DeleteList, &[b"abc"], &sig).is_err());
        let mut bent = sig;
        bent.0[10] ^= 1;
        assert!(pk.verify(Domain::DeleteList, &[b"abc"], &bent).is_err());
    }

    #[test]
    fn seed_round_trip() {
        let me = id(7);
        assert_eq!(Identity::from_seed(me.seed()).unwrap().public_key(), me.public_key());
    }

    #[test]
    fn node_id_is_sha1_prefix() {
        // SHA1("abc") = a9993e364706816aba3e25717850c26c9cd0d89d
        let n = NodeId::from_name("abc");
        extern crate std;
        assert_eq!(std::format!("{n}"), "a9993e364706816aba3e25717850c26c");
        assert_eq!(n.digit(0), 0xa);
        assert_eq!(n.digit(1), 0x9);
    }
}
