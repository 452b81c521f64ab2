//! Encrypted metadata objects (SPEC §3).
//!
//! A metadata object is named by its creator's nodeId and a sequence number,
//! and encrypted under a random 32-byte key kept in its parent (or, for the
//! root object, derived from the passphrase). Objects are mutable: each
//! rewrite keeps the key and name but draws a fresh IV, so a keystream is
//! never reused. Layout (docs/METADATA.md):
//!
//! ```text
//! 0   4  magic "PSO1"
//! 4  16  creator nodeId
//! 20  8  sequence number, big-endian
//! 28 16  IV
//! 44  n  AES-128-CTR ciphertext
//! 44+n 20 HMAC-SHA1 tag over bytes 0..44+n
//! ```

use aes::Aes128;
use ctr::cipher::{KeyIvInit, StreamCipher};
use hmac::{Hmac, Mac};
use pastiche_core::NodeId;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};
use thiserror::Error;

type HmacSha1 = Hmac<Sha1>;

const MAGIC: &[u8; 4] = b"PSO1";
const HEADER: usize = 4 + 16 + 8 + 16;
const TAG: usize = 20;
/// Sequence number of a node's root object.
pub const ROOT_SEQ: u64 = u64::MAX;

/// The 20-byte name under which an object is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectName(pub [u8; 20]);

impl ObjectName {
    /// The name of object `seq` created by `node`.
    pub fn new(node: &NodeId, seq: u64) -> ObjectName {
        let mut h = Sha1::new();
        h.update(b"pastiche/v1/object");
        h.update(node.0);
        h.update(seq.to_be_bytes());
        ObjectName(h.finalize().into())
    }

    /// The name of `node`'s root object.
    pub fn root(node: &NodeId) -> ObjectName {
        ObjectName::new(node, ROOT_SEQ)
    }
}

impl std::fmt::Display for ObjectName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// The secret key of one object.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectKey(pub [u8; 32]);

impl std::fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ObjectKey(..)")
    }
}

impl ObjectKey {
    /// A fresh random key.
    pub fn random() -> ObjectKey {
        let mut k = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut k);
        ObjectKey(k)
    }

    fn label(&self, label: &[u8]) -> [u8; 20] {
        let mut mac = HmacSha1::new_from_slice(&self.0).expect("any key length");
        mac.update(label);
        mac.finalize().into_bytes().into()
    }
}

/// Where an object lives and how to open it: what a parent keeps per child.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    /// Storage name.
    pub name: ObjectName,
    /// The creator's sequence number of this object (in its header too).
    pub seq: u64,
    /// Secret key.
    pub key: ObjectKey,
}

/// Why an object could not be opened.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ObjectError {
    /// Too short to be an object.
    #[error("metadata object truncated ({0} bytes)")]
    Truncated(usize),
    /// Not an object of this format.
    #[error("not a metadata object (bad magic)")]
    BadMagic,
    /// The tag does not match: wrong key (or passphrase), or damaged bytes.
    #[error("metadata object failed authentication: wrong key or damaged")]
    BadTag,
}

/// Encrypts `plaintext` as object `seq` of `node` under `key`.
pub fn seal_object(key: &ObjectKey, node: &NodeId, seq: u64, plaintext: &[u8]) -> Vec<u8> {
    let mut iv = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut iv);
    seal_object_with_iv(key, node, seq, &iv, plaintext)
}

/// [`seal_object`] with a given IV. Only for objects whose key and IV are
/// both functions of their plaintext (content-addressed objects,
/// [`super::tree`]): the same key then never encrypts two plaintexts.
pub fn seal_object_with_iv(key: &ObjectKey, node: &NodeId, seq: u64, iv: &[u8; 16], plaintext: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + plaintext.len() + TAG);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&node.0);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(iv);
    out.extend_from_slice(plaintext);
    cipher(key, iv).apply_keystream(&mut out[HEADER..]);
    let tag = tag(key, &out);
    out.extend_from_slice(&tag);
    out
}

/// Checks and decrypts an object: `(creator, seq, plaintext)`.
pub fn open_object(key: &ObjectKey, bytes: &[u8]) -> Result<(NodeId, u64, Vec<u8>), ObjectError> {
    if bytes.len() < HEADER + TAG {
        return Err(ObjectError::Truncated(bytes.len()));
    }
    if &bytes[..4] != MAGIC {
        return Err(ObjectError::BadMagic);
    }
    let (body, given) = bytes.split_at(bytes.len() - TAG);
    let mut mac = HmacSha1::new_from_slice(&key.label(b"pastiche/v1/obj-mac")).expect("any key length");
    mac.update(body);
    mac.verify_slice(given).map_err(|_| ObjectError::BadTag)?;
    let mut node = [0u8; 16];
    node.copy_from_slice(&body[4..20]);
    let seq = u64::from_be_bytes(body[20..28].try_into().expect("8 bytes"));
    let iv: [u8; 16] = body[28..44].try_into().expect("16 bytes");
    let mut plain = body[HEADER..].to_vec();
    cipher(key, &iv).apply_keystream(&mut plain);
    Ok((NodeId(node), seq, plain))
}

fn cipher(key: &ObjectKey, iv: &[u8; 16]) -> ctr::Ctr128BE<Aes128> {
    let k = key.label(b"pastiche/v1/obj-enc");
    let mut enc = [0u8; 16];
    enc.copy_from_slice(&k[..16]);
    ctr::Ctr128BE::<Aes128>::new(&enc.into(), iv.into())
}

fn tag(key: &ObjectKey, body: &[u8]) -> [u8; TAG] {
    let mut mac = HmacSha1::new_from_slice(&key.label(b"pastiche/v1/obj-mac")).expect("any key length");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_fresh_iv_per_write() {
        let key = ObjectKey::random();
        let node = NodeId::from_name("nas.example");
        let a = seal_object(&key, &node, 7, b"metadata");
        let b = seal_object(&key, &node, 7, b"metadata");
        assert_ne!(a, b, "each write draws a new IV");
        assert_eq!(open_object(&key, &a).unwrap(), (node, 7, b"metadata".to_vec()));
    }

    #[test]
    fn wrong_key_truncation_and_bit_flips_are_refused() {
        let key = ObjectKey::random();
        let node = NodeId::from_name("nas.example");
        let sealed = seal_object(&key, &node, 1, b"some metadata");
        assert_eq!(open_object(&ObjectKey::random(), &sealed), Err(ObjectError::BadTag));
        assert_eq!(open_object(&key, &sealed[..10]), Err(ObjectError::Truncated(10)));
        for i in 0..sealed.len() {
            let mut bent = sealed.clone();
            bent[i] ^= 0x10;
            assert!(open_object(&key, &bent).is_err(), "flip at {i}");
        }
    }

    #[test]
    fn names_separate_nodes_and_sequence_numbers() {
        let a = NodeId::from_name("a");
        let b = NodeId::from_name("b");
        assert_ne!(ObjectName::new(&a, 1), ObjectName::new(&a, 2));
        assert_ne!(ObjectName::new(&a, 1), ObjectName::new(&b, 1));
        assert_eq!(ObjectName::root(&a), ObjectName::new(&a, ROOT_SEQ));
    }
}
