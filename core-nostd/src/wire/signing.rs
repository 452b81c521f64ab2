//! The exact byte parts each signed message covers, so that a client and a
//! buddy cannot disagree about them.
//!
//! Every signature binds the buddy's public key (so a request cannot be
//! replayed to another buddy) and, past the handshake, the epoch (so it
//! cannot be replayed to the same buddy once that epoch is committed).
//! Integers are signed as fixed-width big-endian bytes, not varints.
//! [`Identity::sign`] frames each part with its 32-bit length.

use super::message::{Challenge, Commit, DeleteList, DropAll, Hello, Pair, Proof, PutObject, PutRoot};
use crate::identity::{Domain, Identity, PublicKey, Signature, SignatureError};

/// The parts of the handshake proof, for [`Domain::Hello`]:
/// `[buddy_nonce, client_nonce, buddy_key]`.
pub fn hello_parts<'a>(hello: &'a Hello, challenge: &'a Challenge) -> [&'a [u8]; 3] {
    [&challenge.buddy_nonce, &hello.client_nonce, challenge.buddy_key.as_bytes()]
}

impl Proof {
    /// The client's proof for this handshake.
    pub fn sign(identity: &Identity, hello: &Hello, challenge: &Challenge, entropy: [u8; 16]) -> Proof {
        Proof { signature: identity.sign(Domain::Hello, &hello_parts(hello, challenge), entropy) }
    }

    /// Checks the proof against the key the client announced in `hello`.
    pub fn verify(&self, hello: &Hello, challenge: &Challenge) -> Result<(), SignatureError> {
        hello.client_key.verify(Domain::Hello, &hello_parts(hello, challenge), &self.signature)
    }
}

/// The parts of a pairing proof, for [`Domain::Pair`]:
/// `[buddy_nonce, client_nonce, buddy_key, code]`.
pub fn pair_parts<'a>(hello: &'a Hello, challenge: &'a Challenge, code: &'a str) -> [&'a [u8]; 4] {
    [&challenge.buddy_nonce, &hello.client_nonce, challenge.buddy_key.as_bytes(), code.as_bytes()]
}

impl<'a> Pair<'a> {
    /// The client's pairing proof for this handshake, carrying `code`.
    pub fn sign(
        identity: &Identity,
        hello: &Hello,
        challenge: &Challenge,
        code: &'a str,
        entropy: [u8; 16],
    ) -> Pair<'a> {
        Pair { code, signature: identity.sign(Domain::Pair, &pair_parts(hello, challenge, code), entropy) }
    }

    /// Checks the proof against the key the client announced in `hello`.
    pub fn verify(&self, hello: &Hello, challenge: &Challenge) -> Result<(), SignatureError> {
        hello.client_key.verify(Domain::Pair, &pair_parts(hello, challenge, self.code), &self.signature)
    }
}

/// A message that changes state on a buddy and carries its owner's signature.
pub trait SignedMessage {
    /// The signature's domain.
    const DOMAIN: Domain;

    /// Calls `f` with the parts the signature covers, for the buddy whose
    /// key is `buddy_key`.
    fn with_signed_parts<R>(&self, buddy_key: &PublicKey, f: impl FnOnce(&[&[u8]]) -> R) -> R;

    /// The signature carried.
    fn signature(&self) -> &Signature;

    /// Replaces the signature carried.
    fn set_signature(&mut self, signature: Signature);

    /// Signs the message (every other field set) for the buddy `buddy_key`.
    fn sign(&mut self, identity: &Identity, buddy_key: &PublicKey, entropy: [u8; 16]) {
        let signature = self.with_signed_parts(buddy_key, |parts| identity.sign(Self::DOMAIN, parts, entropy));
        self.set_signature(signature);
    }

    /// Checks the signature: made by `client_key` for the buddy `buddy_key`.
    fn verify(&self, client_key: &PublicKey, buddy_key: &PublicKey) -> Result<(), SignatureError> {
        self.with_signed_parts(buddy_key, |parts| client_key.verify(Self::DOMAIN, parts, self.signature()))
    }
}

macro_rules! signature_field {
    () => {
        fn signature(&self) -> &Signature {
            &self.signature
        }
        fn set_signature(&mut self, signature: Signature) {
            self.signature = signature;
        }
    };
}

/// `[buddy_key, epoch (8 bytes BE), name, data]`.
impl SignedMessage for PutObject<'_> {
    const DOMAIN: Domain = Domain::MetadataPut;
    fn with_signed_parts<R>(&self, buddy_key: &PublicKey, f: impl FnOnce(&[&[u8]]) -> R) -> R {
        f(&[buddy_key.as_bytes(), &self.epoch.to_be_bytes(), &self.name, self.data])
    }
    signature_field!();
}

/// `[buddy_key, epoch (8 bytes BE), ids (packed)]`.
impl SignedMessage for DeleteList<'_> {
    const DOMAIN: Domain = Domain::DeleteList;
    fn with_signed_parts<R>(&self, buddy_key: &PublicKey, f: impl FnOnce(&[&[u8]]) -> R) -> R {
        f(&[buddy_key.as_bytes(), &self.epoch.to_be_bytes(), self.ids.as_bytes()])
    }
    signature_field!();
}

/// `[buddy_key, epoch (8 bytes BE), data]`.
impl SignedMessage for PutRoot<'_> {
    const DOMAIN: Domain = Domain::RootPut;
    fn with_signed_parts<R>(&self, buddy_key: &PublicKey, f: impl FnOnce(&[&[u8]]) -> R) -> R {
        f(&[buddy_key.as_bytes(), &self.epoch.to_be_bytes(), self.data])
    }
    signature_field!();
}

/// `[buddy_key, epoch (8 bytes BE), objects (4 bytes BE), deletes (4 bytes BE), staged (32)]`.
impl SignedMessage for Commit {
    const DOMAIN: Domain = Domain::Commit;
    fn with_signed_parts<R>(&self, buddy_key: &PublicKey, f: impl FnOnce(&[&[u8]]) -> R) -> R {
        f(&[
            buddy_key.as_bytes(),
            &self.epoch.to_be_bytes(),
            &self.objects.to_be_bytes(),
            &self.deletes.to_be_bytes(),
            &self.staged,
        ])
    }
    signature_field!();
}

/// `[buddy_key, epoch (8 bytes BE)]`.
impl SignedMessage for DropAll {
    const DOMAIN: Domain = Domain::Drop;
    fn with_signed_parts<R>(&self, buddy_key: &PublicKey, f: impl FnOnce(&[&[u8]]) -> R) -> R {
        f(&[buddy_key.as_bytes(), &self.epoch.to_be_bytes()])
    }
    signature_field!();
}
