//! The root record: what a box keeps on each buddy so that passphrase and
//! name alone bring it back (docs/METADATA.md, "The root on the buddies").
//!
//! ```text
//! 0     4  magic "PSR1"
//! 4     8  root epoch, big-endian
//! 12   32  the box's Ed25519 public key
//! 44   16  the box's nodeId
//! 60    n  sealed body: a metadata object (PSO1) under subkey("root-record")
//! 60+n 64  Ed25519 signature by the box, domain RootRecord,
//!          parts [epoch (8 BE), public key, nodeId, sealed body]
//! ```
//!
//! The body (postcard) is a [`RootBody`]: the epoch again, the name, the
//! buddies (address, pinned key, last epoch committed there) and the sealed
//! root object exactly as the box stores it. A buddy cannot read it (the key
//! comes from the passphrase), cannot forge one (the signature), and cannot
//! pass an old one off as new (the epoch is signed and is inside the body);
//! all it can do is keep serving an old one, which a reader that knows a
//! newer epoch refuses ([`RecordError::RolledBack`]).

use pastiche_core::identity::Signature;
use pastiche_core::{Domain, Identity, NodeId, PublicKey};
use serde::{Deserialize, Serialize};

use crate::meta::model::{decode, encode};
use crate::meta::object::{open_object, seal_object, ObjectKey, ROOT_SEQ};

const MAGIC: &[u8; 4] = b"PSR1";
const HEADER: usize = 4 + 8 + 32 + 16;
const SIGNATURE: usize = 64;
/// The sequence number the body is sealed under (one below the root object's).
pub const BODY_SEQ: u64 = ROOT_SEQ - 1;

/// One buddy as the root record names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordBuddy {
    /// `HOST:PORT`.
    pub addr: String,
    /// Its public key, pinned at pairing.
    pub key: [u8; 32],
    /// The last epoch it committed for the box.
    pub epoch: u64,
}

/// The encrypted body of a root record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootBody {
    /// The root epoch (the same as the signed header's).
    pub epoch: u64,
    /// The machine's fully-qualified name.
    pub name: String,
    /// The box's buddies when the record was made.
    pub buddies: Vec<RecordBuddy>,
    /// The sealed root object (docs/METADATA.md), as stored in the object log.
    pub root: Vec<u8>,
}

/// Why a root record was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Not a root record at all (too short, bad magic).
    #[error("not a root record")]
    Malformed,
    /// Made for another box (another key or nodeId in its header).
    #[error("the root record belongs to another box (key {0})")]
    OtherBox(PublicKey),
    /// The signature does not verify: forged or altered.
    #[error("the root record's signature does not verify: forged or altered")]
    BadSignature,
    /// Signed by the box but does not open with this passphrase's key.
    #[error("the root record does not open with this passphrase")]
    DoesNotOpen,
    /// Its body is inconsistent with its header.
    #[error("the root record's body does not match its header")]
    Inconsistent,
    /// Valid, but older than an epoch the reader knows.
    #[error("the root record is from epoch {got}, older than epoch {known} already seen: a rollback")]
    RolledBack {
        /// The record's epoch.
        got: u64,
        /// The epoch the reader knows.
        known: u64,
    },
}

/// Makes the record for `body` (its epoch is the record's), signed by `identity`.
pub fn seal(identity: &Identity, node: &NodeId, key: &ObjectKey, body: &RootBody) -> Vec<u8> {
    let sealed = seal_object(key, node, BODY_SEQ, &encode(body));
    let public = identity.public_key();
    let epoch = body.epoch.to_be_bytes();
    let mut entropy = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut entropy);
    let signature = identity.sign(Domain::RootRecord, &[&epoch, public.as_bytes(), &node.0, &sealed], entropy);
    let mut out = Vec::with_capacity(HEADER + sealed.len() + SIGNATURE);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&epoch);
    out.extend_from_slice(public.as_bytes());
    out.extend_from_slice(&node.0);
    out.extend_from_slice(&sealed);
    out.extend_from_slice(&signature.0);
    out
}

/// The epoch a record claims, before any check (for messages only).
pub fn claimed_epoch(bytes: &[u8]) -> Option<u64> {
    (bytes.len() >= HEADER && &bytes[..4] == MAGIC).then(|| u64::from_be_bytes(bytes[4..12].try_into().expect("8")))
}

/// Checks a record made by the box `(public, node)` and opens its body
/// with `key`: the signature first (nothing unsigned is decrypted or
/// parsed), then the body, which must repeat the signed epoch. A record
/// older than `floor` (an epoch the reader knows) is a rollback.
pub fn open(
    bytes: &[u8],
    public: &PublicKey,
    node: &NodeId,
    key: &ObjectKey,
    floor: u64,
) -> Result<RootBody, RecordError> {
    if bytes.len() < HEADER + SIGNATURE || &bytes[..4] != MAGIC {
        return Err(RecordError::Malformed);
    }
    let epoch = &bytes[4..12];
    let signer = PublicKey(bytes[12..44].try_into().expect("32"));
    if signer != *public || bytes[44..60] != node.0 {
        return Err(RecordError::OtherBox(signer));
    }
    let (signed, signature) = bytes.split_at(bytes.len() - SIGNATURE);
    let sealed = &signed[HEADER..];
    let signature = Signature(signature.try_into().expect("64"));
    public
        .verify(Domain::RootRecord, &[epoch, public.as_bytes(), &node.0, sealed], &signature)
        .map_err(|_| RecordError::BadSignature)?;
    let (creator, seq, plain) = open_object(key, sealed).map_err(|_| RecordError::DoesNotOpen)?;
    let body: RootBody = decode(&plain, "root record").map_err(|_| RecordError::Inconsistent)?;
    let epoch = u64::from_be_bytes(epoch.try_into().expect("8"));
    if creator != *node || seq != BODY_SEQ || body.epoch != epoch {
        return Err(RecordError::Inconsistent);
    }
    if epoch < floor {
        return Err(RecordError::RolledBack { got: epoch, known: floor });
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(epoch: u64) -> RootBody {
        RootBody {
            epoch,
            name: "nas.example".into(),
            buddies: vec![RecordBuddy { addr: "10.0.0.2:7467".into(), key: [7; 32], epoch: 3 }],
            root: vec![1, 2, 3],
        }
    }

    #[test]
    fn a_record_opens_for_its_box_and_key_only() {
        let me = Identity::from_seed([1; 32]).unwrap();
        let node = NodeId::from_name("nas.example");
        let key = ObjectKey([9; 32]);
        let rec = seal(&me, &node, &key, &body(5));
        assert_eq!(claimed_epoch(&rec), Some(5));
        assert_eq!(open(&rec, &me.public_key(), &node, &key, 0).unwrap(), body(5));
        assert_eq!(open(&rec, &me.public_key(), &node, &key, 5).unwrap(), body(5));
        assert_eq!(open(&rec, &me.public_key(), &node, &key, 6), Err(RecordError::RolledBack { got: 5, known: 6 }));
        assert_eq!(open(&rec, &me.public_key(), &node, &ObjectKey([8; 32]), 0), Err(RecordError::DoesNotOpen));
        let other = Identity::from_seed([2; 32]).unwrap();
        assert!(matches!(open(&rec, &other.public_key(), &node, &key, 0), Err(RecordError::OtherBox(_))));
        assert!(matches!(
            open(&rec, &me.public_key(), &NodeId::from_name("other"), &key, 0),
            Err(RecordError::OtherBox(_))
        ));
        assert_eq!(open(&rec[..50], &me.public_key(), &node, &key, 0), Err(RecordError::Malformed));
    }

    #[test]
    fn every_flipped_bit_and_a_relabelled_epoch_are_refused() {
        let me = Identity::from_seed([1; 32]).unwrap();
        let node = NodeId::from_name("nas.example");
        let key = ObjectKey([9; 32]);
        let rec = seal(&me, &node, &key, &body(5));
        for i in 0..rec.len() {
            let mut bent = rec.clone();
            bent[i] ^= 0x01;
            assert!(open(&bent, &me.public_key(), &node, &key, 0).is_err(), "flip at byte {i}");
        }
        // An old record relabelled with a newer epoch: the signature fails.
        let mut relabelled = rec.clone();
        relabelled[4..12].copy_from_slice(&9u64.to_be_bytes());
        assert_eq!(open(&relabelled, &me.public_key(), &node, &key, 0), Err(RecordError::BadSignature));
        // A record signed by another key under our header: refused.
        let forger = Identity::from_seed([3; 32]).unwrap();
        let mut forged = seal(&forger, &node, &key, &body(9));
        forged[12..44].copy_from_slice(me.public_key().as_bytes());
        assert_eq!(open(&forged, &me.public_key(), &node, &key, 0), Err(RecordError::BadSignature));
    }

    #[test]
    fn arbitrary_bytes_from_a_holder_are_refused_without_panicking() {
        let me = Identity::from_seed([1; 32]).unwrap();
        let node = NodeId::from_name("nas.example");
        let key = ObjectKey([9; 32]);
        let genuine = seal(&me, &node, &key, &body(5));
        for round in 0..2_000u64 {
            // Random lengths around the header, random bytes; every tenth
            // keeps the genuine header so the later checks run too.
            let mut bytes = crate::sample_tree::noise(round, 400);
            bytes.truncate(bytes[0] as usize + bytes[1] as usize % 145);
            let len = bytes.len();
            if round % 10 == 0 && len > HEADER {
                bytes[..HEADER].copy_from_slice(&genuine[..HEADER]);
            }
            assert!(open(&bytes, &me.public_key(), &node, &key, 0).is_err());
            let _ = claimed_epoch(&bytes);
        }
    }

    #[test]
    fn a_body_that_disagrees_with_its_signed_epoch_is_refused() {
        let me = Identity::from_seed([1; 32]).unwrap();
        let node = NodeId::from_name("nas.example");
        let key = ObjectKey([9; 32]);
        // Signed header says 7, body says 5 (only the box could make this).
        let sealed = seal_object(&key, &node, BODY_SEQ, &encode(&body(5)));
        let epoch = 7u64.to_be_bytes();
        let sig = me.sign(Domain::RootRecord, &[&epoch, me.public_key().as_bytes(), &node.0, &sealed], [0; 16]);
        let mut rec = Vec::new();
        rec.extend_from_slice(MAGIC);
        rec.extend_from_slice(&epoch);
        rec.extend_from_slice(me.public_key().as_bytes());
        rec.extend_from_slice(&node.0);
        rec.extend_from_slice(&sealed);
        rec.extend_from_slice(&sig.0);
        assert_eq!(open(&rec, &me.public_key(), &node, &key, 0), Err(RecordError::Inconsistent));
    }
}
