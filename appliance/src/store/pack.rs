//! Pack files: the byte format of pack headers and chunk records, and the
//! low-level reads that check them (docs/STORE.md, "Pack format").
//!
//! A pack is self-describing: every record carries its chunkId, length and
//! checksums, so a pack can be scanned and verified without the index.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use pastiche_core::ChunkId;

use super::error::Damage;
use super::group::{GROUP_ENTRY_LEN, GROUP_HEADER_LEN, GROUP_TAG_LEN, MAX_GROUP_PAYLOAD};

/// The smallest sealed chunk: an empty plaintext's raw body plus its tag.
pub const MIN_SEALED: usize = pastiche_core::seal::MIN_SEALED;
/// The largest sealed chunk: a maximal plaintext's raw body plus its tag.
pub const MAX_SEALED: usize = pastiche_core::seal::MAX_SEALED;

/// First 8 bytes of every pack file.
pub const PACK_MAGIC: [u8; 8] = *b"PASTPACK";
/// Pack format version, stored after the magic.
pub const PACK_VERSION: u32 = 1;
/// Bytes of the pack file header (magic, version, pack number).
pub const PACK_HEADER_LEN: u64 = 16;

/// First 4 bytes of a record holding one sealed chunk.
pub const RECORD_MAGIC: [u8; 4] = *b"PCHK";
/// First 4 bytes of a record holding a group of the box's own chunks
/// ([`super::group`]).
pub const GROUP_RECORD_MAGIC: [u8; 4] = *b"PGRP";
/// Bytes of a record header.
pub const RECORD_HEADER_LEN: usize = 36;

/// Name of the directory holding the packs, inside the store directory.
pub const PACKS_DIR: &str = "packs";

/// The smallest group payload: header, one table entry, one body byte, tag.
const MIN_GROUP_PAYLOAD: usize = GROUP_HEADER_LEN + GROUP_ENTRY_LEN + 1 + GROUP_TAG_LEN;

/// What a record holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// One sealed chunk (SPEC §2a), named by its chunkId.
    Chunk,
    /// A group of the box's own chunks ([`super::group`]), named by its
    /// first chunk's id; its table lists the others.
    Group,
}

impl RecordKind {
    fn magic(self) -> [u8; 4] {
        match self {
            RecordKind::Chunk => RECORD_MAGIC,
            RecordKind::Group => GROUP_RECORD_MAGIC,
        }
    }

    /// Whether a payload of `len` bytes is possible for this kind: a bound
    /// checked before anything is allocated for it.
    pub fn plausible_len(self, len: u32) -> bool {
        let len = len as usize;
        match self {
            RecordKind::Chunk => (MIN_SEALED..=MAX_SEALED).contains(&len),
            RecordKind::Group => (MIN_GROUP_PAYLOAD..=MAX_GROUP_PAYLOAD).contains(&len),
        }
    }
}

/// The bytes a record of a `payload_len`-byte chunk takes in a pack.
pub fn record_len(payload_len: u32) -> u64 {
    RECORD_HEADER_LEN as u64 + u64::from(payload_len)
}

/// The path of pack `id` under the store directory `dir`.
pub fn pack_path(dir: &Path, id: u32) -> PathBuf {
    dir.join(PACKS_DIR).join(format!("{id:08x}.pack"))
}

/// The pack number of a file name like `0000002a.pack`, if it is one.
pub fn parse_pack_name(name: &str) -> Option<u32> {
    let hex = name.strip_suffix(".pack")?;
    if hex.len() != 8 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(hex, 16).ok()
}

/// The 16-byte header that starts pack `id`.
pub fn encode_pack_header(id: u32) -> [u8; PACK_HEADER_LEN as usize] {
    let mut h = [0u8; PACK_HEADER_LEN as usize];
    h[..8].copy_from_slice(&PACK_MAGIC);
    h[8..12].copy_from_slice(&PACK_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&id.to_le_bytes());
    h
}

/// Reads and checks the header of pack file `file`, expected to be pack `id`.
pub fn check_pack_header(file: &File, id: u32) -> io::Result<Result<(), String>> {
    let mut h = [0u8; PACK_HEADER_LEN as usize];
    match file.read_exact_at(&mut h, 0) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            return Ok(Err("file is shorter than a pack header".into()))
        }
        Err(e) => return Err(e),
    }
    if h != encode_pack_header(id) {
        return Ok(Err(format!(
            "pack header is not that of pack {id:08x} (magic {:?})",
            String::from_utf8_lossy(&h[..8])
        )));
    }
    Ok(Ok(()))
}

/// The header of one record, as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// What the record holds.
    pub kind: RecordKind,
    /// The chunk the record holds (for a group, its first chunk).
    pub id: ChunkId,
    /// Payload length in bytes.
    pub len: u32,
    /// CRC-32 (IEEE) of the payload.
    pub crc: u32,
}

impl RecordHeader {
    /// The header for `payload` named `id`.
    pub fn for_payload(id: ChunkId, payload: &[u8]) -> RecordHeader {
        RecordHeader {
            kind: RecordKind::Chunk,
            id,
            // Callers have checked payload.len() <= MAX_SEALED.
            len: payload.len() as u32,
            crc: crc32fast::hash(payload),
        }
    }

    /// The header for a group `payload` whose first chunk is `first`.
    pub fn for_group(first: ChunkId, payload: &[u8]) -> RecordHeader {
        RecordHeader { kind: RecordKind::Group, ..RecordHeader::for_payload(first, payload) }
    }

    /// The 36 header bytes: magic, length, chunkId, payload CRC, header CRC.
    pub fn encode(&self) -> [u8; RECORD_HEADER_LEN] {
        let mut h = [0u8; RECORD_HEADER_LEN];
        h[0..4].copy_from_slice(&self.kind.magic());
        h[4..8].copy_from_slice(&self.len.to_le_bytes());
        h[8..28].copy_from_slice(&self.id.0);
        h[28..32].copy_from_slice(&self.crc.to_le_bytes());
        let hcrc = crc32fast::hash(&h[0..32]);
        h[32..36].copy_from_slice(&hcrc.to_le_bytes());
        h
    }

    /// Parses and checks header bytes (magic, header CRC, plausible length).
    pub fn decode(h: &[u8; RECORD_HEADER_LEN]) -> Result<RecordHeader, Damage> {
        let kind = match [h[0], h[1], h[2], h[3]] {
            RECORD_MAGIC => RecordKind::Chunk,
            GROUP_RECORD_MAGIC => RecordKind::Group,
            _ => return Err(Damage::BadMagic),
        };
        if crc32fast::hash(&h[0..32]) != le32(&h[32..36]) {
            return Err(Damage::BadHeaderChecksum);
        }
        let mut id = [0u8; 20];
        id.copy_from_slice(&h[8..28]);
        Ok(RecordHeader { kind, id: ChunkId(id), len: le32(&h[4..8]), crc: le32(&h[28..32]) })
    }
}

/// Reads and parses the record header at `offset` of `file` alone: a
/// group's length is in its header, not in the index entries pointing at it.
pub fn read_record_header(file: &File, offset: u64) -> Result<RecordHeader, Damage> {
    let mut h = [0u8; RECORD_HEADER_LEN];
    file.read_exact_at(&mut h, offset).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            Damage::Truncated { file_len: file.metadata().map(|m| m.len()).unwrap_or(0) }
        } else {
            Damage::Io(e.to_string())
        }
    })?;
    RecordHeader::decode(&h)
}

fn le32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(b);
    u32::from_le_bytes(a)
}

/// Reads the record at `offset` of `file` and checks it against what the
/// index expects (`want`); on success `buf` holds exactly the payload.
///
/// One `pread` fetches header and payload together; the header is then
/// dropped from the front of `buf` (a small memmove, cheaper than a second
/// system call).
pub fn read_record(file: &File, offset: u64, want: &RecordHeader, buf: &mut Vec<u8>) -> Result<(), Damage> {
    buf.clear();
    if !want.kind.plausible_len(want.len) {
        // A damaged index entry must not make us allocate gigabytes.
        return Err(Damage::WrongLength { header: want.len, index: want.len });
    }
    let total = RECORD_HEADER_LEN + want.len as usize;
    buf.resize(total, 0);
    if let Err(e) = file.read_exact_at(buf, offset) {
        buf.clear();
        return Err(if e.kind() == io::ErrorKind::UnexpectedEof {
            Damage::Truncated { file_len: file.metadata().map(|m| m.len()).unwrap_or(0) }
        } else {
            Damage::Io(e.to_string())
        });
    }
    let mut h = [0u8; RECORD_HEADER_LEN];
    h.copy_from_slice(&buf[..RECORD_HEADER_LEN]);
    let check = verify(&h, &buf[RECORD_HEADER_LEN..], want);
    buf.drain(..RECORD_HEADER_LEN);
    if check.is_err() {
        buf.clear();
    }
    check
}

fn verify(h: &[u8; RECORD_HEADER_LEN], payload: &[u8], want: &RecordHeader) -> Result<(), Damage> {
    let got = RecordHeader::decode(h)?;
    if got.kind != want.kind {
        return Err(Damage::BadMagic);
    }
    // A group's header names its first chunk; which chunks it holds is its
    // table's to say, checked by the reader.
    if got.kind == RecordKind::Chunk && got.id != want.id {
        return Err(Damage::WrongId(got.id));
    }
    if got.len != want.len {
        return Err(Damage::WrongLength { header: got.len, index: want.len });
    }
    let actual = crc32fast::hash(payload);
    if actual != want.crc || got.crc != want.crc {
        return Err(Damage::PayloadChecksum { expected: want.crc, actual });
    }
    Ok(())
}

/// One record found by [`scan_pack`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScannedRecord {
    /// Offset of the record header in the pack.
    pub offset: u64,
    /// The record's header.
    pub header: RecordHeader,
    /// Whether the payload matched its CRC-32.
    pub payload_ok: bool,
}

/// What [`scan_pack`] found in a pack, without any help from the index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PackScan {
    /// Records in file order.
    pub records: Vec<ScannedRecord>,
    /// Offset just past the last well-formed record: where a rebuilt index
    /// would put the committed length.
    pub valid_len: u64,
    /// Why scanning stopped before `end`, if it did (a torn or damaged tail).
    pub stopped: Option<String>,
}

/// Walks pack `id` record by record up to `end` bytes (or the file's end),
/// checking every header and payload CRC. This is how a pack is verified or
/// an index rebuilt without the index; it stops at the first header that
/// does not parse, since lengths past it cannot be trusted.
pub fn scan_pack(file: &File, id: u32, end: Option<u64>) -> io::Result<PackScan> {
    let file_len = file.metadata()?.len();
    let end = end.map_or(file_len, |e| e.min(file_len));
    let mut scan = PackScan::default();
    if let Err(why) = check_pack_header(file, id)? {
        scan.stopped = Some(why);
        return Ok(scan);
    }
    let mut offset = PACK_HEADER_LEN;
    scan.valid_len = offset;
    let mut payload = Vec::new();
    while offset < end {
        let mut h = [0u8; RECORD_HEADER_LEN];
        if end - offset < RECORD_HEADER_LEN as u64 {
            scan.stopped = Some(format!("partial record header at offset {offset}"));
            break;
        }
        file.read_exact_at(&mut h, offset)?;
        let header = match RecordHeader::decode(&h) {
            Ok(header) if header.kind.plausible_len(header.len) => header,
            Ok(header) => {
                scan.stopped = Some(format!("record at offset {offset} has impossible length {}", header.len));
                break;
            }
            Err(d) => {
                scan.stopped = Some(format!("record at offset {offset}: {d}"));
                break;
            }
        };
        let next = offset + record_len(header.len);
        if next > end {
            scan.stopped = Some(format!("record at offset {offset} is cut short"));
            break;
        }
        payload.resize(header.len as usize, 0);
        file.read_exact_at(&mut payload, offset + RECORD_HEADER_LEN as u64)?;
        scan.records.push(ScannedRecord { offset, header, payload_ok: crc32fast::hash(&payload) == header.crc });
        offset = next;
        scan.valid_len = offset;
    }
    Ok(scan)
}

/// Makes a directory entry change (a file created or removed in `dir`)
/// durable. Without it a new pack could vanish after a power cut even though
/// its contents were fsync'd.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
