//! Content-addressed metadata objects: directory trees and handle lists
//! (docs/METADATA.md, "Content-addressed objects").
//!
//! An object's name is a keyed hash of its plaintext, and its key and IV
//! derive from that name, so the same directory listing (or handle list)
//! is the same object, byte for byte, every time this box writes it: an
//! unchanged subtree costs nothing in a new snapshot, under a new path too.
//! The keys come from the box's root key (never from public values), so
//! names reveal nothing to a buddy beyond equality within this box. The
//! plaintext is compressed with zstd when that makes it smaller.
//!
//! Sealed like every object (`PSO1`, [`super::object`]), with the sequence
//! number [`CONTENT_SEQ`]; the ciphertext encrypts a body `0x00 || plain`
//! or `0x01 || zstd frame` (content size in its header, as SPEC §2a).

use std::cell::RefCell;

use hmac::{Hmac, Mac};
use pastiche_core::NodeId;
use sha1::Sha1;
use sha2::Sha256;
use zstd::bulk::Compressor;
use zstd::zstd_safe;

use super::object::{open_object, seal_object_with_iv, ObjectKey, ObjectName};

/// The sequence number in the header of every content-addressed object.
pub const CONTENT_SEQ: u64 = u64::MAX - 2;
/// The largest plaintext a reader accepts (a directory of about a million
/// entries); a frame declaring more is refused before anything is allocated.
pub const MAX_PLAIN: usize = 256 << 20;
/// The zstd level of metadata (the chunks' level, SPEC §2a).
const ZSTD_LEVEL: i32 = crate::sealing::ZSTD_LEVEL;
/// Plaintexts shorter than this are stored raw: a frame header costs more
/// than zstd could save.
const MIN_COMPRESS: usize = 64;

const RAW: u8 = 0x00;
const ZSTD: u8 = 0x01;

/// What a content-addressed object holds: part of its name's input, so a
/// tree and a list can never be taken for one another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A directory's [`Tree`](super::model::Tree).
    Tree,
    /// A file's handle list (postcard `Vec<[u8; 20]>`).
    List,
}

impl Kind {
    fn label(self) -> &'static [u8] {
        match self {
            Kind::Tree => b"pastiche/v1/tree",
            Kind::List => b"pastiche/v1/list",
        }
    }
}

/// Why a content-addressed object was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ContentError {
    /// The seal did not open (wrong key, damaged, or another object).
    #[error(transparent)]
    Object(#[from] super::object::ObjectError),
    /// The header's sequence number is not [`CONTENT_SEQ`].
    #[error("not a content-addressed object (sequence number {0})")]
    NotContent(u64),
    /// The body's first byte is neither raw nor zstd.
    #[error("unknown metadata body tag {0:#04x}")]
    BadTag(u8),
    /// The zstd frame is damaged, incomplete, followed by bytes, or does not
    /// produce the size it declares.
    #[error("damaged zstd frame in a metadata object")]
    BadFrame,
    /// The frame declares more than [`MAX_PLAIN`] bytes.
    #[error("metadata object declares {0} bytes, more than allowed")]
    TooLarge(u64),
    /// The plaintext does not hash to the name it was stored under.
    #[error("metadata object does not match its name")]
    WrongName,
}

/// The secrets of this box's content-addressed objects.
#[derive(Clone)]
pub struct ContentKeys {
    name_key: [u8; 32],
    enc_key: [u8; 32],
}

impl ContentKeys {
    /// Keys from two secret subkeys of the box's root key.
    pub fn new(name_key: [u8; 32], enc_key: [u8; 32]) -> ContentKeys {
        ContentKeys { name_key, enc_key }
    }

    /// The name of the object holding `plain`:
    /// `HMAC-SHA1(name key, label || plain)`.
    pub fn name_of(&self, kind: Kind, plain: &[u8]) -> ObjectName {
        let mut mac = Hmac::<Sha1>::new_from_slice(&self.name_key).expect("any key length");
        mac.update(kind.label());
        mac.update(plain);
        ObjectName(mac.finalize().into_bytes().into())
    }

    /// The key of the object named `name`: `HMAC-SHA256(enc key, name)`.
    fn key_of(&self, name: &ObjectName) -> ObjectKey {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.enc_key).expect("any key length");
        mac.update(&name.0);
        ObjectKey(mac.finalize().into_bytes().into())
    }

    /// Seals `plain` as an object of `kind` created by `node`: its name and
    /// sealed bytes (always the same for the same plaintext).
    pub fn seal(&self, node: &NodeId, kind: Kind, plain: &[u8]) -> (ObjectName, Vec<u8>) {
        let name = self.name_of(kind, plain);
        (name, self.seal_named(node, &name, plain))
    }

    /// Seals `plain` under `name`, which must be its [`ContentKeys::name_of`]:
    /// for a caller that needs the name first, to see whether the object
    /// is new, and seals only new ones.
    pub fn seal_named(&self, node: &NodeId, name: &ObjectName, plain: &[u8]) -> Vec<u8> {
        let iv: [u8; 16] = name.0[..16].try_into().expect("20 bytes");
        seal_object_with_iv(&self.key_of(name), node, CONTENT_SEQ, &iv, &body_of(plain))
    }

    /// Opens the object stored as `name`, checking that it is of `kind` and
    /// holds exactly what its name says.
    pub fn open(&self, kind: Kind, name: &ObjectName, sealed: &[u8]) -> Result<Vec<u8>, ContentError> {
        let (_, seq, body) = open_object(&self.key_of(name), sealed)?;
        if seq != CONTENT_SEQ {
            return Err(ContentError::NotContent(seq));
        }
        let plain = plain_of(&body, MAX_PLAIN)?;
        if self.name_of(kind, &plain) != *name {
            return Err(ContentError::WrongName);
        }
        Ok(plain)
    }
}

thread_local! {
    // A context costs hundreds of KiB to set up, and a backup seals a tree
    // object for every directory: one per thread, used over and over. The
    // frame is the same as from a fresh context.
    static COMPRESSOR: RefCell<Option<Compressor<'static>>> = const { RefCell::new(None) };
}

/// The body of `plain`: compressed when that is smaller, raw otherwise.
fn body_of(plain: &[u8]) -> Vec<u8> {
    if plain.len() >= MIN_COMPRESS {
        let frame = COMPRESSOR.with_borrow_mut(|c| match c {
            Some(c) => c.compress(plain),
            None => Compressor::new(ZSTD_LEVEL).and_then(|fresh| c.insert(fresh).compress(plain)),
        });
        if let Ok(frame) = frame {
            if frame.len() < plain.len() {
                let mut body = Vec::with_capacity(1 + frame.len());
                body.push(ZSTD);
                body.extend_from_slice(&frame);
                return body;
            }
        }
    }
    let mut body = Vec::with_capacity(1 + plain.len());
    body.push(RAW);
    body.extend_from_slice(plain);
    body
}

/// The plaintext of a body, decompressing at most `max` bytes.
fn plain_of(body: &[u8], max: usize) -> Result<Vec<u8>, ContentError> {
    match body.split_first() {
        Some((&RAW, plain)) => Ok(plain.to_vec()),
        Some((&ZSTD, frame)) => {
            if zstd_safe::find_frame_compressed_size(frame) != Ok(frame.len()) {
                return Err(ContentError::BadFrame);
            }
            let size = match zstd_safe::get_frame_content_size(frame) {
                Ok(Some(n)) => n,
                _ => return Err(ContentError::BadFrame),
            };
            if size > max as u64 {
                return Err(ContentError::TooLarge(size));
            }
            let mut out = vec![0u8; size as usize];
            let produced = zstd::bulk::decompress_to_buffer(frame, &mut out).map_err(|_| ContentError::BadFrame)?;
            if produced != out.len() {
                return Err(ContentError::BadFrame);
            }
            Ok(out)
        }
        Some((&tag, _)) => Err(ContentError::BadTag(tag)),
        None => Err(ContentError::BadFrame),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::object::ObjectError;

    fn keys() -> ContentKeys {
        ContentKeys::new([1; 32], [2; 32])
    }

    fn node() -> NodeId {
        NodeId::from_name("nas.example")
    }

    #[test]
    fn same_plaintext_same_object_and_round_trip() {
        let text = b"a directory listing ".repeat(50);
        let (name, a) = keys().seal(&node(), Kind::Tree, &text);
        let (again, b) = keys().seal(&node(), Kind::Tree, &text);
        assert_eq!((name, &a), (again, &b), "content-addressed: identical bytes");
        assert!(a.len() < text.len() / 4, "compressed: {} bytes", a.len());
        assert_eq!(keys().open(Kind::Tree, &name, &a).unwrap(), text);
        let (short_name, short) = keys().seal(&node(), Kind::List, b"tiny");
        assert_eq!(keys().open(Kind::List, &short_name, &short).unwrap(), b"tiny");
    }

    #[test]
    fn a_reused_context_writes_what_a_fresh_one_writes() {
        // Object bytes must not depend on what the thread sealed before.
        let listing: Vec<u8> = (0..4000u32).flat_map(|i| format!("entry-{} ", i % 700).into_bytes()).collect();
        let fresh = std::thread::scope(|s| s.spawn(|| keys().seal(&node(), Kind::Tree, &listing)).join().unwrap());
        for other in [b"x".repeat(1 << 20), (0..=255u8).cycle().take(300_000).collect(), b"short listing".repeat(9)] {
            keys().seal(&node(), Kind::List, &other);
        }
        assert_eq!(keys().seal(&node(), Kind::Tree, &listing), fresh);
    }

    #[test]
    fn another_box_kind_or_name_is_refused() {
        let (name, sealed) = keys().seal(&node(), Kind::Tree, b"listing");
        let other = ContentKeys::new([1; 32], [3; 32]);
        assert_eq!(other.open(Kind::Tree, &name, &sealed), Err(ContentError::Object(ObjectError::BadTag)));
        assert_eq!(keys().open(Kind::List, &name, &sealed), Err(ContentError::WrongName));
        let (other_name, _) = keys().seal(&node(), Kind::Tree, b"other listing");
        assert!(keys().open(Kind::Tree, &other_name, &sealed).is_err(), "stored under another name");
        assert_ne!(keys().name_of(Kind::Tree, b"x"), other.name_of(Kind::Tree, b"y"));
    }

    #[test]
    fn bad_bodies_and_bombs_are_refused() {
        assert_eq!(plain_of(&[7, 1, 2], MAX_PLAIN), Err(ContentError::BadTag(7)));
        assert_eq!(plain_of(&[], MAX_PLAIN), Err(ContentError::BadFrame));
        let frame = zstd::bulk::compress(&vec![0u8; 1 << 20], 3).unwrap();
        let mut body = vec![ZSTD];
        body.extend_from_slice(&frame);
        assert_eq!(plain_of(&body, MAX_PLAIN).unwrap().len(), 1 << 20);
        let mut trailing = body.clone();
        trailing.push(0);
        assert_eq!(plain_of(&trailing, MAX_PLAIN), Err(ContentError::BadFrame));
        assert_eq!(plain_of(&body[..body.len() - 1], MAX_PLAIN), Err(ContentError::BadFrame));
        // A bomb: a few dozen bytes declaring 1 MiB, refused by a reader
        // allowing less before anything is allocated.
        assert!(body.len() < 200);
        assert_eq!(plain_of(&body, 1 << 19), Err(ContentError::TooLarge(1 << 20)));
    }
}
