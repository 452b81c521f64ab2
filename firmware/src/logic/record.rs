//! The on-disk format of the chunk store: a superblock, then an append-only
//! log of records (documented in `firmware/README.md`, "On-disk format").
//!
//! ```text
//! superblock: two copies of 128 bytes at offsets 0 and 128 (in a page of
//! their own); the valid one with the higher sequence number is current,
//! so switching the log to a compacted copy is one atomic write of the
//! other copy:
//!   magic "PSTFWLG3" | identity seed [32] | head u64 | ring end u64 | seq u32 | gen floor u32
//!   | crc32 of the 64 bytes before (LE) | zero padding
//! index tables (see `table.rs`) and their frozen copies (compaction),
//! then the log region, used as a ring from the head to the ring end:
//! record:
//!   len u32 LE (payload bytes) | gen u32 LE | kind u8 | payload [len] | crc32 LE
//! ```
//!
//! The CRC is keyed: it runs over a 16-byte secret derived from the seed,
//! then the header and payload. A record is never split at the ring's end:
//! a `Wrap` record (or fewer than [`HEADER_LEN`] + [`TRAILER_LEN`] bytes
//! left) says the log goes on at the region's start. The key matters for
//! the ring: after the log's tail lie the bytes of an earlier lap, which
//! may be a client's chunk data crafted to look like records; without the
//! secret it cannot carry a valid CRC.
//!
//! `gen` is the boot generation that wrote the record. A scan accepts a
//! record only if its CRC matches and its generation is not below the
//! previous record's: after a torn write the log is cut there and the next
//! boot writes with a higher generation, so stale records that a shorter
//! new record leaves behind (there is no truncate call on the disk) are
//! never mistaken for new ones.
//!
//! Payloads start with the client slot (a byte naming a [`Kind::Client`]
//! record) and, for staging records, the epoch (u64 LE).

/// Bytes of one superblock copy (two copies share the first table page).
pub const SUPERBLOCK_LEN: u64 = 128;
/// Bytes of a superblock copy covered by its CRC (the CRC follows them).
pub const SUPERBLOCK_BODY: usize = 64;
/// The superblock's magic.
pub const MAGIC: [u8; 8] = *b"PSTFWLG3";
/// Bytes of a record header: `len`, `gen`, `kind`.
pub const HEADER_LEN: usize = 9;
/// Bytes of a record trailer: the CRC.
pub const TRAILER_LEN: usize = 4;
/// The largest payload a record may announce; anything above is a torn or
/// corrupt header (a chunk record is 21 + 65,557 bytes).
pub const MAX_PAYLOAD: u32 = 70 * 1024;

/// What a record says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// `slot, client_key [32]`: a client gets a slot (an owner bit).
    Client = 1,
    /// `slot, id [20], sealed bytes`: a new chunk, owned by the slot.
    Chunk = 2,
    /// `slot, id [20]`: the slot becomes an owner of a stored chunk.
    Ref = 3,
    /// `slot, epoch, name [20], data`: a staged metadata object.
    Object = 4,
    /// `slot, epoch, data`: a staged root object.
    Root = 5,
    /// `slot, epoch, ids [20 * n]`: staged reference removals.
    Deletes = 6,
    /// `slot, epoch`: phase one of a commit; the epoch is applied at boot if
    /// no `Apply` follows.
    Prepare = 7,
    /// `slot, epoch`: phase two: the staged epoch is applied.
    Apply = 8,
    /// `slot, epoch`: the staged epoch is discarded.
    Abort = 9,
    /// `slot, epoch`: everything of the client is dropped.
    Drop = 10,
    /// No payload: the log goes on at the start of the log region.
    Wrap = 11,
    /// `slot, epoch`: the client's committed epoch (compacted logs).
    Committed = 12,
    /// `slot, epoch, data`: the client's committed root (compacted logs).
    LiveRoot = 13,
    /// `owners u8, staged removals u8, id [20], sealed bytes`: a chunk
    /// version with all its owner bits at once (compacted logs).
    LiveChunk = 14,
    /// `slot, staged u8, name [20], data`: an object, committed or staged
    /// (compacted logs).
    LiveObject = 15,
}

impl Kind {
    /// The kind for a byte, if known.
    pub fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Client,
            2 => Kind::Chunk,
            3 => Kind::Ref,
            4 => Kind::Object,
            5 => Kind::Root,
            6 => Kind::Deletes,
            7 => Kind::Prepare,
            8 => Kind::Apply,
            9 => Kind::Abort,
            10 => Kind::Drop,
            11 => Kind::Wrap,
            12 => Kind::Committed,
            13 => Kind::LiveRoot,
            14 => Kind::LiveChunk,
            15 => Kind::LiveObject,
            _ => return None,
        })
    }

    /// Bytes of the fixed part of the payload (what a scan parses; the rest
    /// is data it only checksums).
    pub fn fixed_len(self) -> usize {
        match self {
            Kind::Client => 1 + 32,
            Kind::Chunk | Kind::Ref => 1 + 20,
            Kind::Object => 1 + 8 + 20,
            Kind::Root
            | Kind::Deletes
            | Kind::Prepare
            | Kind::Apply
            | Kind::Abort
            | Kind::Drop
            | Kind::Committed
            | Kind::LiveRoot => 1 + 8,
            Kind::Wrap => 0,
            Kind::LiveChunk | Kind::LiveObject => 1 + 1 + 20,
        }
    }

    /// Whether a payload of `len` bytes is well-formed for this kind.
    pub fn len_ok(self, len: usize) -> bool {
        let fixed = self.fixed_len();
        match self {
            Kind::Chunk | Kind::Object | Kind::Root | Kind::LiveRoot | Kind::LiveChunk | Kind::LiveObject => {
                len >= fixed
            }
            Kind::Deletes => len >= fixed && (len - fixed).is_multiple_of(20),
            _ => len == fixed,
        }
    }
}

/// A record header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Payload bytes.
    pub len: u32,
    /// Boot generation that wrote it.
    pub gen: u32,
    /// Raw kind byte.
    pub kind: u8,
}

impl Header {
    /// The header's bytes.
    pub fn to_bytes(self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[..4].copy_from_slice(&self.len.to_le_bytes());
        b[4..8].copy_from_slice(&self.gen.to_le_bytes());
        b[8] = self.kind;
        b
    }

    /// A header from its bytes (not yet checked).
    pub fn from_bytes(b: &[u8; HEADER_LEN]) -> Header {
        Header {
            len: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            gen: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            kind: b[8],
        }
    }

    /// Bytes of the whole record: header, payload, CRC.
    pub fn record_len(self) -> u64 {
        (HEADER_LEN + TRAILER_LEN) as u64 + self.len as u64
    }
}

/// The fixed fields of a payload, parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fixed {
    /// Client slot (the owner bits for [`Kind::LiveChunk`]).
    pub slot: u8,
    /// The second byte of [`Kind::LiveChunk`] (staged-removal bits) and
    /// [`Kind::LiveObject`] (1: staged); 0 for other kinds.
    pub flags: u8,
    /// Epoch (0 for kinds without one).
    pub epoch: u64,
    /// Chunk id or object name (zeros for kinds without one).
    pub name: [u8; 20],
    /// The client key (`Client` records only; zeros otherwise).
    pub key: [u8; 32],
}

impl Fixed {
    /// Parses the fixed part `b` (exactly [`Kind::fixed_len`] bytes) of a `kind` payload.
    pub fn parse(kind: Kind, b: &[u8]) -> Fixed {
        let mut f = Fixed { slot: b.first().copied().unwrap_or(0), flags: 0, epoch: 0, name: [0; 20], key: [0; 32] };
        match kind {
            Kind::Wrap => {}
            Kind::LiveChunk | Kind::LiveObject => {
                f.flags = b[1];
                f.name.copy_from_slice(&b[2..22]);
            }
            Kind::Client => f.key.copy_from_slice(&b[1..33]),
            Kind::Chunk | Kind::Ref => f.name.copy_from_slice(&b[1..21]),
            Kind::Object => {
                f.epoch = u64_at(b, 1);
                f.name.copy_from_slice(&b[9..29]);
            }
            _ => f.epoch = u64_at(b, 1),
        }
        f
    }

    /// Writes the fixed part for `kind` into `out`; returns its length.
    pub fn write(&self, kind: Kind, out: &mut [u8; 64]) -> usize {
        out[0] = self.slot;
        match kind {
            Kind::Wrap => {}
            Kind::LiveChunk | Kind::LiveObject => {
                out[1] = self.flags;
                out[2..22].copy_from_slice(&self.name);
            }
            Kind::Client => out[1..33].copy_from_slice(&self.key),
            Kind::Chunk | Kind::Ref => out[1..21].copy_from_slice(&self.name),
            Kind::Object => {
                out[1..9].copy_from_slice(&self.epoch.to_le_bytes());
                out[9..29].copy_from_slice(&self.name);
            }
            _ => out[1..9].copy_from_slice(&self.epoch.to_le_bytes()),
        }
        kind.fixed_len()
    }
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}
