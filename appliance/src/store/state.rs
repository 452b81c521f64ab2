//! The small tables of the index, kept in RAM: the delta (chunk entries
//! changed since the run was written), packs, per-owner usage, owner
//! numbers and named counters (docs/STORE.md, "Index state and log").
//!
//! On disk they are a snapshot file plus a log of the changes committed
//! since (see [`super::journal`]); both use the encoding of this module: a
//! sequence of operations, each a tag byte and fixed-size fields, so a
//! snapshot is simply the operations that rebuild the tables from nothing.

use std::collections::{BTreeMap, HashMap};

use super::index::{IdKey, OwnerKey, PackEntry, Usage};
use super::run::Group;

/// A delta entry: the chunk's group, or `None` when it was dropped.
const OP_DELTA: u8 = 1;
const OP_PACK: u8 = 2;
const OP_PACK_GONE: u8 = 3;
const OP_USAGE: u8 = 4;
const OP_USAGE_GONE: u8 = 5;
const OP_OWNER: u8 = 6;
const OP_META: u8 = 7;

/// The index's tables as of the last commit.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// chunkId -> its group as changed since the run was written (`None`:
    /// dropped).
    pub delta: HashMap<IdKey, Option<Group>>,
    /// pack number -> committed length and live bytes.
    pub packs: BTreeMap<u32, PackEntry>,
    /// owner -> bytes and chunks it references (each chunk counted once).
    pub usage: BTreeMap<OwnerKey, Usage>,
    /// owner -> its number in the run's rows (numbers are never reused).
    pub owner_numbers: HashMap<OwnerKey, u32>,
    /// owner number -> owner.
    pub owner_keys: BTreeMap<u32, OwnerKey>,
    /// Small named counters (format, next pack, garbage, run generation...).
    pub meta: BTreeMap<String, u64>,
}

/// The changes of one write transaction, not yet committed.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    pub delta: HashMap<IdKey, Option<Group>>,
    pub packs: BTreeMap<u32, Option<PackEntry>>,
    pub usage: BTreeMap<OwnerKey, Option<Usage>>,
    pub owners: Vec<(OwnerKey, u32)>,
    pub meta: BTreeMap<String, u64>,
}

impl Changes {
    /// True when committing would change nothing.
    pub fn is_empty(&self) -> bool {
        self.delta.is_empty()
            && self.packs.is_empty()
            && self.usage.is_empty()
            && self.owners.is_empty()
            && self.meta.is_empty()
    }

    /// The log record of these changes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.delta.len() * 48);
        for (id, g) in &self.delta {
            put_delta(&mut out, id, g.as_ref());
        }
        for (&n, p) in &self.packs {
            put_pack(&mut out, n, p.as_ref());
        }
        for (k, u) in &self.usage {
            put_usage(&mut out, k, u.as_ref());
        }
        for (k, n) in &self.owners {
            put_owner(&mut out, k, *n);
        }
        for (k, v) in &self.meta {
            put_meta(&mut out, k, *v);
        }
        out
    }
}

impl State {
    /// Makes `c` part of the tables.
    pub fn apply(&mut self, c: Changes) {
        self.delta.extend(c.delta);
        for (n, p) in c.packs {
            match p {
                Some(p) => self.packs.insert(n, p),
                None => self.packs.remove(&n),
            };
        }
        for (k, u) in c.usage {
            match u {
                Some(u) => self.usage.insert(k, u),
                None => self.usage.remove(&k),
            };
        }
        for (k, n) in c.owners {
            self.owner_numbers.insert(k, n);
            self.owner_keys.insert(n, k);
        }
        self.meta.extend(c.meta);
    }

    /// A counter (`None` when never set).
    pub fn meta(&self, key: &str) -> Option<u64> {
        self.meta.get(key).copied()
    }

    /// The snapshot body: every table as operations.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.delta.len() * 48 + self.packs.len() * 21);
        for (id, g) in &self.delta {
            put_delta(&mut out, id, g.as_ref());
        }
        for (&n, p) in &self.packs {
            put_pack(&mut out, n, Some(p));
        }
        for (k, u) in &self.usage {
            put_usage(&mut out, k, Some(u));
        }
        for (&n, k) in &self.owner_keys {
            put_owner(&mut out, k, n);
        }
        for (k, v) in &self.meta {
            put_meta(&mut out, k, *v);
        }
        out
    }

    /// Applies encoded operations (a snapshot body or a log record).
    /// `None` when the bytes are malformed; the tables may then be half
    /// changed, so the caller gives up on them.
    pub fn apply_encoded(&mut self, mut b: &[u8]) -> Option<()> {
        while let Some((&op, rest)) = b.split_first() {
            b = rest;
            match op {
                OP_DELTA => {
                    let id: IdKey = take(&mut b, 20)?.try_into().ok()?;
                    let len = u32_of(take(&mut b, 4)?) as usize;
                    let g = if len == 0 { None } else { Some(Group::decode(take(&mut b, len)?)?) };
                    self.delta.insert(id, g);
                }
                OP_PACK => {
                    let n = u32_of(take(&mut b, 4)?);
                    let committed = u64_of(take(&mut b, 8)?);
                    let live = u64_of(take(&mut b, 8)?);
                    self.packs.insert(n, PackEntry { committed, live });
                }
                OP_PACK_GONE => {
                    self.packs.remove(&u32_of(take(&mut b, 4)?));
                }
                OP_USAGE => {
                    let k: OwnerKey = take(&mut b, 32)?.try_into().ok()?;
                    let bytes = u64_of(take(&mut b, 8)?);
                    let chunks = u64_of(take(&mut b, 8)?);
                    self.usage.insert(k, Usage { bytes, chunks });
                }
                OP_USAGE_GONE => {
                    let k: OwnerKey = take(&mut b, 32)?.try_into().ok()?;
                    self.usage.remove(&k);
                }
                OP_OWNER => {
                    let k: OwnerKey = take(&mut b, 32)?.try_into().ok()?;
                    let n = u32_of(take(&mut b, 4)?);
                    self.owner_numbers.insert(k, n);
                    self.owner_keys.insert(n, k);
                }
                OP_META => {
                    let len = usize::from(*take(&mut b, 1)?.first()?);
                    let key = std::str::from_utf8(take(&mut b, len)?).ok()?.to_string();
                    let v = u64_of(take(&mut b, 8)?);
                    self.meta.insert(key, v);
                }
                _ => return None,
            }
        }
        Some(())
    }
}

fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if b.len() < n {
        return None;
    }
    let (head, rest) = b.split_at(n);
    *b = rest;
    Some(head)
}

fn u32_of(b: &[u8]) -> u32 {
    u32::from_le_bytes(b.try_into().expect("4 bytes"))
}

fn u64_of(b: &[u8]) -> u64 {
    u64::from_le_bytes(b.try_into().expect("8 bytes"))
}

fn put_delta(out: &mut Vec<u8>, id: &IdKey, g: Option<&Group>) {
    out.push(OP_DELTA);
    out.extend_from_slice(id);
    let bytes = g.map(Group::encode).unwrap_or_default();
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(&bytes);
}

fn put_pack(out: &mut Vec<u8>, n: u32, p: Option<&PackEntry>) {
    match p {
        Some(p) => {
            out.push(OP_PACK);
            out.extend_from_slice(&n.to_le_bytes());
            out.extend_from_slice(&p.committed.to_le_bytes());
            out.extend_from_slice(&p.live.to_le_bytes());
        }
        None => {
            out.push(OP_PACK_GONE);
            out.extend_from_slice(&n.to_le_bytes());
        }
    }
}

fn put_usage(out: &mut Vec<u8>, k: &OwnerKey, u: Option<&Usage>) {
    match u {
        Some(u) => {
            out.push(OP_USAGE);
            out.extend_from_slice(k);
            out.extend_from_slice(&u.bytes.to_le_bytes());
            out.extend_from_slice(&u.chunks.to_le_bytes());
        }
        None => {
            out.push(OP_USAGE_GONE);
            out.extend_from_slice(k);
        }
    }
}

fn put_owner(out: &mut Vec<u8>, k: &OwnerKey, n: u32) {
    out.push(OP_OWNER);
    out.extend_from_slice(k);
    out.extend_from_slice(&n.to_le_bytes());
}

fn put_meta(out: &mut Vec<u8>, k: &str, v: u64) {
    out.push(OP_META);
    // Keys are this crate's constants, all far below 256 bytes.
    out.push(k.len() as u8);
    out.extend_from_slice(k.as_bytes());
    out.extend_from_slice(&v.to_le_bytes());
}
