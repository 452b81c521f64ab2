//! The digest of an epoch's staged set, which a `Commit` signs (protocol
//! version 3).
//!
//! A client signs, in its `Commit`, the digest of everything it staged for
//! the epoch; a buddy computes the same digest over what it holds staged and
//! prepares the epoch only when the two agree
//! ([`Epochs::prepare`](super::Epochs::prepare)). So the signed parts of two
//! attempts at one epoch (say a first attempt cut off, then a second with
//! other objects) can never be committed mixed: the commit of one attempt
//! names exactly that attempt's objects, deletes and root.
//!
//! The digest is over the staged **set**, in a canonical order, not over the
//! order messages arrived in: staging may travel on several connections at
//! once, be buffered by a buddy, or be re-sent (a second `PutObject` of a
//! name replaces the first), and both sides still agree. Byte for byte
//! (`docs/PROTOCOL.md` §4.4):
//!
//! ```text
//! SHA-256( "pastiche/v3/staging" 00
//!          || for each staged object, by name ascending:  01 || name (20) || SHA-256(data) (32)
//!          || for each staged deleted chunkId, ascending: 02 || chunkId (20)
//!          || if a root is staged:                        03 || SHA-256(data) (32) )
//! ```
//!
//! Objects and roots enter by the SHA-256 of their data, so a client need
//! not keep the data until it commits, and a store can hash one object at a
//! time from disk ([`DataDigest`]).

use sha2::{Digest, Sha256};

/// The domain prefix of the digest.
const PREFIX: &[u8] = b"pastiche/v3/staging\0";
/// Section tags, in the order sections must come.
const OBJECT: u8 = 1;
const DELETE: u8 = 2;
const ROOT: u8 = 3;

/// Builds the digest of a staged set. Feed objects by name ascending, then
/// deleted chunkIds ascending, then the root (if any); each name or id once.
#[derive(Clone, Debug)]
pub struct StagingDigest {
    hasher: Sha256,
    /// The last section and key fed, to catch out-of-order input in tests.
    last: (u8, [u8; 20]),
}

impl Default for StagingDigest {
    fn default() -> Self {
        StagingDigest::new()
    }
}

impl StagingDigest {
    /// An empty staged set.
    pub fn new() -> StagingDigest {
        let mut hasher = Sha256::new();
        hasher.update(PREFIX);
        StagingDigest { hasher, last: (0, [0; 20]) }
    }

    fn entry(&mut self, section: u8, key: &[u8; 20]) {
        debug_assert!((section, *key) > self.last, "staged set out of order, or an entry twice");
        self.last = (section, *key);
        self.hasher.update([section]);
    }

    /// A staged object, given the SHA-256 of its data ([`DataDigest`]).
    pub fn object_digest(&mut self, name: &[u8; 20], data_digest: &[u8; 32]) {
        self.entry(OBJECT, name);
        self.hasher.update(name);
        self.hasher.update(data_digest);
    }

    /// A staged object.
    pub fn object(&mut self, name: &[u8; 20], data: &[u8]) {
        self.object_digest(name, &DataDigest::of(data));
    }

    /// A chunkId in the epoch's delete lists.
    pub fn delete(&mut self, id: &[u8; 20]) {
        self.entry(DELETE, id);
        self.hasher.update(id);
    }

    /// The staged root, given the SHA-256 of its data.
    pub fn root_digest(&mut self, data_digest: &[u8; 32]) {
        self.entry(ROOT, &[0xff; 20]);
        self.hasher.update(data_digest);
    }

    /// The staged root.
    pub fn root(&mut self, data: &[u8]) {
        self.root_digest(&DataDigest::of(data));
    }

    /// The digest a `Commit` carries.
    pub fn finish(self) -> [u8; 32] {
        self.hasher.finalize().into()
    }
}

/// The SHA-256 of an object's or root's data, fed in pieces of any size.
#[derive(Clone, Debug, Default)]
pub struct DataDigest(Sha256);

impl DataDigest {
    /// Nothing fed yet.
    pub fn new() -> DataDigest {
        DataDigest(Sha256::new())
    }

    /// Feeds the next piece of the data.
    pub fn update(&mut self, piece: &[u8]) {
        self.0.update(piece);
    }

    /// The digest of everything fed.
    pub fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }

    /// The digest of `data`, whole.
    pub fn of(data: &[u8]) -> [u8; 32] {
        Sha256::digest(data).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout of the doc comment, byte for byte.
    #[test]
    fn the_digest_is_the_documented_bytes() {
        let mut d = StagingDigest::new();
        d.object(&[1; 20], b"one");
        d.object(&[2; 20], b"two");
        d.delete(&[9; 20]);
        d.root(b"root");
        let mut bytes = b"pastiche/v3/staging\0".to_vec();
        for (name, data) in [([1u8; 20], &b"one"[..]), ([2; 20], b"two")] {
            bytes.push(1);
            bytes.extend_from_slice(&name);
            bytes.extend_from_slice(&Sha256::digest(data));
        }
        bytes.push(2);
        bytes.extend_from_slice(&[9; 20]);
        bytes.push(3);
        bytes.extend_from_slice(&Sha256::digest(b"root"));
        assert_eq!(d.finish(), <[u8; 32]>::from(Sha256::digest(&bytes)));
    }

    /// Another object's data, a missing delete or another root each change
    /// the digest; streamed data digests like whole data.
    #[test]
    fn every_part_counts() {
        let build = |obj: &[u8], delete: bool, root: &[u8]| {
            let mut d = StagingDigest::new();
            d.object(&[1; 20], obj);
            if delete {
                d.delete(&[9; 20]);
            }
            d.root(root);
            d.finish()
        };
        let base = build(b"a", true, b"r");
        assert_ne!(base, build(b"b", true, b"r"));
        assert_ne!(base, build(b"a", false, b"r"));
        assert_ne!(base, build(b"a", true, b"s"));
        assert_ne!(StagingDigest::new().finish(), [0; 32], "an empty set is not the all-zero default");
        let mut streamed = DataDigest::new();
        streamed.update(b"ab");
        streamed.update(b"c");
        assert_eq!(streamed.finish(), DataDigest::of(b"abc"));
    }
}
