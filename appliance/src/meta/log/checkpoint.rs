//! The object log's index, saved beside it (`objects.idx`) so that opening
//! a large log reads the index and the transactions after it instead of
//! the whole file (docs/METADATA.md, "The index checkpoint").
//!
//! A checkpoint is a cache: it names the commit record it describes the log
//! up to, and one that does not match the log in every check below is
//! ignored and the log scanned whole. It never makes the log say more than
//! its committed transactions: each object it lists lies inside them, and
//! every read checks the object's own CRC-32.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{unstamp, Index, Span, COMMIT_LEN, COMMIT_MAGIC, HEADER_LEN, PUT_HEADER, STAMP_LEN};
use crate::meta::object::ObjectName;

/// The first bytes of a checkpoint.
const MAGIC: &[u8; 8] = b"PSTOBJX1";
/// Magic, the log's end it describes, the entry count, the mark, and the
/// commit record that ends the log there.
const HEAD_LEN: usize = 8 + 8 + 8 + 1 + STAMP_LEN as usize;
/// An entry: name, body offset (u64), length and CRC-32 (u32 each).
const ENTRY_LEN: usize = 20 + 8 + 4 + 4;

/// Where the checkpoint of the log at `log` is kept.
pub(super) fn path_for(log: &Path) -> PathBuf {
    log.with_extension("idx")
}

/// Saves `index`, which describes the log `file` up to `end`, replacing
/// any older checkpoint. Not synced: a torn or lost checkpoint is ignored.
/// The bytes a checkpoint of `index` takes.
pub(super) fn len_for(index: &Index) -> u64 {
    (HEAD_LEN + ENTRY_LEN * index.spans.len() + 4) as u64
}

pub(super) fn write(log: &Path, file: &File, index: &Index, end: u64) -> Result<()> {
    let path = path_for(log);
    if end < HEADER_LEN + COMMIT_LEN {
        // An empty log: nothing to save.
        return Ok(());
    }
    let mut commit = [0u8; STAMP_LEN as usize];
    file.read_exact_at(&mut commit, end - COMMIT_LEN)
        .with_context(|| format!("cannot read {} at offset {}", log.display(), end - COMMIT_LEN))?;
    let mut out = Vec::with_capacity(len_for(index) as usize);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&end.to_le_bytes());
    out.extend_from_slice(&(index.spans.len() as u64).to_le_bytes());
    out.push(u8::from(index.marked));
    out.extend_from_slice(&commit);
    for (name, span) in &index.spans {
        out.extend_from_slice(&name.0);
        out.extend_from_slice(&span.offset.to_le_bytes());
        out.extend_from_slice(&span.len.to_le_bytes());
        out.extend_from_slice(&span.crc.to_le_bytes());
    }
    out.extend_from_slice(&crc32fast::hash(&out).to_le_bytes());
    let tmp = path.with_extension("idx.new");
    std::fs::write(&tmp, &out).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot move {} into place", tmp.display()))
}

/// Removes the checkpoint of `log`, if any (before the log is replaced).
pub(super) fn remove(log: &Path) -> Result<()> {
    match std::fs::remove_file(path_for(log)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", path_for(log).display()))
        }
        _ => Ok(()),
    }
}

/// The index and end a checkpoint of the log `file` (of `len` bytes) holds,
/// if there is one and it matches the log.
pub(super) fn read(log: &Path, file: &File, len: u64) -> Option<(Index, u64)> {
    let bytes = std::fs::read(path_for(log)).ok()?;
    parse(&bytes, file, len)
}

fn parse(bytes: &[u8], file: &File, len: u64) -> Option<(Index, u64)> {
    let (body, crc) = bytes.split_last_chunk::<4>()?;
    if body.len() < HEAD_LEN || &body[..8] != MAGIC || crc32fast::hash(body).to_le_bytes() != *crc {
        return None;
    }
    let u64_at = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().expect("8 bytes"));
    let (end, count) = (u64_at(8), u64_at(16));
    let marked = match body[24] {
        0 => false,
        1 => true,
        _ => return None,
    };
    let commit: &[u8; STAMP_LEN as usize] = body[25..HEAD_LEN].try_into().expect("a stamp");
    let entries = &body[HEAD_LEN..];
    if end < HEADER_LEN + COMMIT_LEN || end > len || entries.len() as u64 != count.checked_mul(ENTRY_LEN as u64)? {
        return None;
    }
    // The log must still end a transaction at `end` with this very commit.
    unstamp(COMMIT_MAGIC, commit)?;
    let mut found = [0u8; STAMP_LEN as usize];
    file.read_exact_at(&mut found, end - COMMIT_LEN).ok()?;
    if found != *commit {
        return None;
    }
    let mut index = Index { spans: HashMap::with_capacity(count as usize), marked, ..Index::default() };
    for entry in entries.chunks_exact(ENTRY_LEN) {
        let name = ObjectName(entry[..20].try_into().expect("20 bytes"));
        let offset = u64::from_le_bytes(entry[20..28].try_into().expect("8 bytes"));
        let len = u32::from_le_bytes(entry[28..32].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(entry[32..].try_into().expect("4 bytes"));
        let inside = offset >= HEADER_LEN + PUT_HEADER && offset.checked_add(len.into())? <= end - COMMIT_LEN;
        if !inside || index.spans.contains_key(&name) {
            return None;
        }
        index.put(name, Span { offset, len, crc });
    }
    Some((index, end))
}

#[cfg(test)]
mod tests;
