//! Group records: the payload codec for a box's own chunks stored together
//! (docs/STORE.md, "Group records").
//!
//! Chunks sealed one by one (SPEC §2a) are compressed alone, about 16 KiB at
//! a time, which costs about 10% more disk than compressing ~1 MiB pieces.
//! SPEC §2a fixes what leaves the box, not how the box keeps its own chunks,
//! so the store keeps a box's own new chunks as groups: their plaintexts,
//! back to back, in one zstd frame, encrypted and authenticated with a key
//! only this box has. A group is re-sealed chunk by chunk when shipped.
//!
//! Shared libraries and executables compress better once their relative
//! branch offsets are made absolute ([`bcj`], xz's x86 filter): a group
//! in which the filter finds branches enough is compressed after it (body
//! kind 2).
//! Groups dense in branches (code) are also where zstd's level 3 costs
//! most, so they use its `fast` strategy: with the filter they come out
//! smaller than level 3 without it, and about 20% faster to compress
//! (docs/BENCHMARKS.md, "The x86 branch filter").
//!
//! The payload is a cleartext header and table (so packs can be scanned and
//! the index rebuilt without the key), then the encrypted body, then a tag
//! over everything before it: version 2 (written) is AES-256-GCM with the
//! header and table as associated data; version 1 (still read) was
//! AES-256-CTR and HMAC-SHA256, which cost six times as much CPU
//! (docs/BENCHMARKS.md). Opening never decodes more than the header's
//! total, which is at most [`MAX_GROUP_PLAIN`]: no input makes it panic or
//! allocate more than about [`MAX_GROUP_PAYLOAD`] + [`MAX_GROUP_PLAIN`] bytes.

use std::cell::RefCell;
use std::fmt;
use std::ops::Range;

use aes::Aes256;
use ctr::cipher::{KeyIvInit, StreamCipher};
use hmac::{Hmac, Mac};
use pastiche_core::{ChunkId, MAX_CHUNK};
use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, AES_256_GCM};
use sha1::{Digest, Sha1};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zstd::bulk::{Compressor, Decompressor};
use zstd::zstd_safe::{self, CParameter};

use crate::sealing::{looks_incompressible, ZSTD_LEVEL};

mod bcj;

type HmacSha256 = Hmac<Sha256>;
type Aes256Ctr = ctr::Ctr128BE<Aes256>;

/// Plaintext a writer gathers before it closes a group.
pub const GROUP_TARGET_PLAIN: usize = 1024 * 1024;
/// Most chunks in one group.
pub const MAX_GROUP_CHUNKS: usize = 1024;
/// Most plaintext in one group: the target plus one maximal chunk (65,536) that crossed it.
pub const MAX_GROUP_PLAIN: usize = GROUP_TARGET_PLAIN + 65_536;
/// Bytes of the fixed header: version, body kind, chunk count, total, nonce.
pub const GROUP_HEADER_LEN: usize = 24;
/// Bytes of one table entry: chunkId (20) and plaintext length (u32).
pub const GROUP_ENTRY_LEN: usize = 24;
/// Bytes of the tag that ends a version 2 payload (AES-256-GCM).
pub const GROUP_TAG_LEN: usize = 16;
/// Bytes of the tag that ends a version 1 payload (HMAC-SHA256).
pub const GROUP_TAG_LEN_V1: usize = 32;
/// Largest payload a group record can have (header, full table, raw body,
/// the longer tag of the versions read).
pub const MAX_GROUP_PAYLOAD: usize =
    GROUP_HEADER_LEN + GROUP_ENTRY_LEN * MAX_GROUP_CHUNKS + MAX_GROUP_PLAIN + GROUP_TAG_LEN_V1;

/// The payload format version written, its first byte: AES-256-GCM.
pub const GROUP_VERSION: u8 = 2;
/// The first version, still read: AES-256-CTR, then HMAC-SHA256.
pub const GROUP_VERSION_V1: u8 = 1;
/// zstd's match tables for groups, as log2 of their entries (see `Codec::new`).
const GROUP_HASH_LOG: u8 = 15;
const GROUP_CHAIN_LOG: u8 = 15;
/// zstd's shortest match for groups: level 3's, kept for the `fast` strategy.
const GROUP_MIN_MATCH: u8 = 5;
/// A group is compressed after the branch filter when the filter converts
/// at least one branch per this many bytes (128 per MiB). Text has none;
/// compressed or random data a few dozen per MiB, which gain nothing and
/// would only cost the reader a pass.
const BYTES_PER_BRANCH_TO_FILTER: usize = 8192;
/// A filtered group with at least one branch per this many bytes (4,096 per
/// MiB: shared libraries and executables; their median here is 8,000) is
/// compressed with zstd's `fast` strategy.
const BYTES_PER_BRANCH_FOR_FAST: usize = 256;
/// Body kind: the plaintexts back to back, as they are.
pub const BODY_RAW: u8 = 0;
/// Body kind: one zstd frame of the plaintexts back to back.
pub const BODY_ZSTD: u8 = 1;
/// Body kind: one zstd frame of the plaintexts back to back after the x86
/// branch filter ([`bcj`]); written by version 2 only.
pub const BODY_ZSTD_X86: u8 = 2;

/// The zstd settings a body was compressed with, as the nonce records them:
/// level, hash log, chain log, strategy (zstd's number), minimum match.
type Settings = [u8; 5];
/// Level 3 (strategy `dfast`, 2), its tables capped (see `Codec::new`).
const LEVEL_3: Settings =
    [ZSTD_LEVEL as u8, GROUP_HASH_LOG, GROUP_CHAIN_LOG, zstd_safe::Strategy::ZSTD_dfast as u8, GROUP_MIN_MATCH];
/// Level 3 switched to the `fast` strategy (1), for code.
const FAST: Settings =
    [ZSTD_LEVEL as u8, GROUP_HASH_LOG, GROUP_CHAIN_LOG, zstd_safe::Strategy::ZSTD_fast as u8, GROUP_MIN_MATCH];

const NONCE_LEN: usize = 16;
const ENC_ROOT_LABEL: &[u8] = b"pastiche/v1/group-enc-root";
const MAC_LABEL: &[u8] = b"pastiche/v1/group-mac";
const ENC_LABEL: &[u8] = b"pastiche/v1/group-enc";
const GCM_LABEL: &[u8] = b"pastiche/v2/group-gcm";
const NONCE_LABEL_V2: &[u8] = b"pastiche/v2/group-nonce";

/// The box's key for its groups, derived from its 32-byte identity seed.
#[derive(Clone)]
pub struct GroupKey {
    /// Root of the per-group encryption keys (one per nonce).
    enc_root: [u8; 32],
    /// Key of the tag and of the nonce derivation.
    mac_key: [u8; 32],
}

impl fmt::Debug for GroupKey {
    // Keys must never reach a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GroupKey(..)")
    }
}

impl GroupKey {
    /// The group key of the box whose identity seed is `identity_seed`:
    /// `enc_root = HMAC-SHA256(seed, "pastiche/v1/group-enc-root")`,
    /// `mac_key = HMAC-SHA256(seed, "pastiche/v1/group-mac")`. Labels keep
    /// these keys independent of every other key drawn from the seed.
    pub fn derive(identity_seed: &[u8; 32]) -> GroupKey {
        GroupKey { enc_root: hmac(identity_seed, &[ENC_ROOT_LABEL]), mac_key: hmac(identity_seed, &[MAC_LABEL]) }
    }

    /// The AEAD of the version 2 group whose nonce is `nonce`: a fresh
    /// AES-256-GCM key per nonce, used with the all-zero IV. A nonce names
    /// one body (see [`nonce`]), so no key ever seals two different bodies.
    fn aead(&self, nonce: &[u8]) -> LessSafeKey {
        let key = hmac(&self.enc_root, &[GCM_LABEL, nonce]);
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).expect("AES-256 takes a 32-byte key"))
    }

    /// The cipher of the body of the version 1 group whose nonce is `nonce`.
    fn cipher_v1(&self, nonce: &[u8]) -> Aes256Ctr {
        let key = hmac(&self.enc_root, &[ENC_LABEL, nonce]);
        Aes256Ctr::new(&key.into(), &[0u8; 16].into())
    }

    /// The version 1 tag of `covered`, every payload byte before the tag.
    fn tag_v1(&self, covered: &[u8]) -> [u8; 32] {
        hmac(&self.mac_key, &[covered])
    }
}

/// The IV of every version 2 body: each key seals one body only.
fn zero_iv() -> Nonce {
    Nonce::assume_unique_for_key([0u8; 12])
}

/// HMAC-SHA256 of the concatenation of `parts` under `key`.
fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// One chunk of a group, as listed in its cleartext table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupEntry {
    /// The chunk's id (SPEC §2: `SHA1(SHA1(plaintext))`).
    pub id: ChunkId,
    /// Its plaintext length, 1..=65,536.
    pub len: u32,
}

/// Why a payload is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// The payload ends before its header, table and tag do.
    #[error("group payload of {len} bytes is too short: its header, table and tag need {need}")]
    Short {
        /// Bytes of the payload.
        len: usize,
        /// Bytes the header, the table it declares and the tag take.
        need: usize,
    },
    /// The first byte is not a version this build reads.
    #[error("group payload version {0} is not supported (this build reads versions 1 and 2)")]
    Version(u8),
    /// The body kind byte is not raw (0), zstd (1) or, in version 2, zstd
    /// after the branch filter (2).
    #[error("group body kind {0} is unknown (0 is raw, 1 zstd, 2 zstd after the x86 branch filter, version 2 only)")]
    BodyKind(u8),
    /// The chunk count is 0 or above [`MAX_GROUP_CHUNKS`].
    #[error("group of {0} chunks: a group holds 1..=1024")]
    ChunkCount(usize),
    /// The header's total plaintext length is above [`MAX_GROUP_PLAIN`].
    #[error("group declares {0} bytes of plaintext, more than the 1,114,112 a group may hold")]
    PlainTooLarge(u64),
    /// A table entry's length is 0 or above a chunk's 65,536.
    #[error("group table entry {index} has length {len}: a chunk has 1..=65,536 bytes")]
    ChunkLength {
        /// Position of the entry in the table.
        index: usize,
        /// Its length.
        len: u32,
    },
    /// The header's total is not the sum of the table's lengths.
    #[error("group header declares {header} bytes of plaintext but its table's lengths sum to {table}")]
    LengthsMismatch {
        /// The header's total.
        header: u64,
        /// The sum of the table's lengths.
        table: u64,
    },
    /// The tag does not match: damaged, forged, or sealed under another key.
    #[error("group tag does not match (damaged payload or another box's key)")]
    BadTag,
    /// A raw body's length is not the header's total.
    #[error("raw group body has {body} bytes but the header declares {total}")]
    RawLength {
        /// Bytes of the body.
        body: usize,
        /// The header's total.
        total: u64,
    },
    /// The zstd body does not start with a frame header that declares its
    /// content size.
    #[error("group zstd body does not start with a frame header that declares its content size")]
    NoContentSize,
    /// The zstd frame's header declares another size than the header's total.
    #[error("group zstd frame declares {declared} bytes of content but the group header declares {total}")]
    WrongContentSize {
        /// What the frame declares.
        declared: u64,
        /// The header's total.
        total: u64,
    },
    /// A zstd body is not smaller than the plaintext it holds (the writer
    /// stores such a group raw).
    #[error("group zstd frame of {frame} bytes is not smaller than the {total} bytes of plaintext it declares")]
    FrameNotSmaller {
        /// Bytes of the frame.
        frame: usize,
        /// The header's total.
        total: u64,
    },
    /// Bytes follow the body's one zstd frame.
    #[error("{extra} bytes follow the group's zstd frame")]
    TrailingBytes {
        /// How many.
        extra: usize,
    },
    /// The frame is cut short, corrupt, or decodes to another size.
    #[error("group zstd frame does not decode: {0}")]
    Decompress(String),
}

/// A payload's header fields and where its parts lie.
struct Layout {
    version: u8,
    kind: u8,
    n: usize,
    total: u64,
    /// End of the table, start of the body.
    body_start: usize,
    /// End of the body, start of the tag.
    tag_start: usize,
}

/// Reads and bounds-checks the header, and that the table and the tag fit.
fn layout(payload: &[u8]) -> Result<Layout, GroupError> {
    let min = GROUP_HEADER_LEN + GROUP_ENTRY_LEN + GROUP_TAG_LEN;
    let header = payload.get(..GROUP_HEADER_LEN).ok_or(GroupError::Short { len: payload.len(), need: min })?;
    let version = header[0];
    let tag_len = match version {
        GROUP_VERSION => GROUP_TAG_LEN,
        GROUP_VERSION_V1 => GROUP_TAG_LEN_V1,
        other => return Err(GroupError::Version(other)),
    };
    let kind = header[1];
    let filtered_ok = version == GROUP_VERSION && kind == BODY_ZSTD_X86;
    if kind != BODY_RAW && kind != BODY_ZSTD && !filtered_ok {
        return Err(GroupError::BodyKind(kind));
    }
    let n = usize::from(u16::from_le_bytes([header[2], header[3]]));
    if n == 0 || n > MAX_GROUP_CHUNKS {
        return Err(GroupError::ChunkCount(n));
    }
    let total = u64::from(u32::from_le_bytes([header[4], header[5], header[6], header[7]]));
    if total > MAX_GROUP_PLAIN as u64 {
        return Err(GroupError::PlainTooLarge(total));
    }
    // n is at most 1024, so none of this can overflow.
    let body_start = GROUP_HEADER_LEN + GROUP_ENTRY_LEN * n;
    let need = body_start + tag_len;
    if payload.len() < need {
        return Err(GroupError::Short { len: payload.len(), need });
    }
    Ok(Layout { version, kind, n, total, body_start, tag_start: payload.len() - tag_len })
}

/// Parses the table `layout` found and checks its lengths against the total.
fn parse_table(payload: &[u8], layout: &Layout) -> Result<Vec<GroupEntry>, GroupError> {
    let bytes = &payload[GROUP_HEADER_LEN..layout.body_start];
    let mut table = Vec::with_capacity(layout.n);
    let mut sum = 0u64;
    for (index, row) in bytes.chunks_exact(GROUP_ENTRY_LEN).enumerate() {
        let mut id = [0u8; 20];
        id.copy_from_slice(&row[..20]);
        let len = u32::from_le_bytes([row[20], row[21], row[22], row[23]]);
        if len == 0 || len as usize > MAX_CHUNK {
            return Err(GroupError::ChunkLength { index, len });
        }
        sum += u64::from(len);
        table.push(GroupEntry { id: ChunkId(id), len });
    }
    if sum != layout.total {
        return Err(GroupError::LengthsMismatch { header: layout.total, table: sum });
    }
    Ok(table)
}

/// The table of a payload, read and bounds-checked without the key (for scanning packs and rebuilding an index).
///
/// Checks the version, body kind, chunk count, total, that every length is
/// 1..=65,536 and sums to the total, and that the payload is long enough for
/// the table and a tag. Nothing here is authenticated: a caller that needs
/// the table to be the one written checks it with [`open_group`].
pub fn read_table(payload: &[u8]) -> Result<Vec<GroupEntry>, GroupError> {
    let layout = layout(payload)?;
    parse_table(payload, &layout)
}

/// One thread's zstd contexts and scratch buffer.
struct Codec {
    /// [`LEVEL_3`].
    compressor: Compressor<'static>,
    /// [`FAST`].
    fast: Compressor<'static>,
    decompressor: Decompressor<'static>,
    /// Sealing filters a copy of the group's plaintext here; opening
    /// decrypts its frame here.
    plain: Vec<u8>,
    /// Sealing compresses into this.
    frame: Vec<u8>,
}

impl Codec {
    fn new() -> Codec {
        let compressor = Self::compressor(LEVEL_3);
        let fast = Self::compressor(FAST);
        let decompressor = Decompressor::new().expect("zstd can allocate a decompression context");
        Codec { compressor, fast, decompressor, plain: Vec::new(), frame: Vec::new() }
    }

    fn compressor(settings: Settings) -> Compressor<'static> {
        let [level, hash_log, chain_log, strategy, min_match] = settings;
        // The byte the nonce records and the strategy used are one value.
        let strategy = match strategy {
            s if s == zstd_safe::Strategy::ZSTD_fast as u8 => zstd_safe::Strategy::ZSTD_fast,
            s if s == zstd_safe::Strategy::ZSTD_dfast as u8 => zstd_safe::Strategy::ZSTD_dfast,
            other => unreachable!("groups use only the fast and dfast strategies, not {other}"),
        };
        let mut compressor = Compressor::new(level.into()).expect("zstd can allocate a compression context");
        // The same frame parameters as single chunks (sealing.rs): the
        // reader needs the content size to bound its output, and the tag
        // already authenticates every byte, so a zstd checksum adds nothing.
        //
        // Level 3 sizes its match tables for the input: for 1 MiB, tables
        // larger than the caches. Capped at 2^15 entries they compress a
        // group about 14% faster for about 1% more bytes (measured on the
        // benchmark tree: 394.6 against 390.0 MB, 3.8 against 4.4 s on one
        // core), which keeps a first backup as fast as sealing chunk by chunk.
        for p in [
            CParameter::ContentSizeFlag(true),
            CParameter::ChecksumFlag(false),
            CParameter::DictIdFlag(false),
            CParameter::HashLog(hash_log.into()),
            CParameter::ChainLog(chain_log.into()),
            CParameter::Strategy(strategy),
            CParameter::MinMatch(min_match.into()),
        ] {
            compressor.set_parameter(p).expect("zstd accepts its own frame parameters");
        }
        compressor
    }
}

thread_local! {
    // Contexts cost hundreds of KiB to set up; a writer or reader thread
    // seals and opens many groups.
    static CODEC: RefCell<Codec> = RefCell::new(Codec::new());
}

/// Builds the payload of a group of `chunks` (id, plaintext) into `out` (cleared first).
///
/// The body is one zstd frame when that is smaller than the plaintext, and
/// raw otherwise. As for single chunks, zstd is not even tried when every
/// chunk looks incompressible to [`looks_incompressible`] (chunks under
/// 4 KiB never do, so one of those is enough to try). The result is a function
/// of the key, the chunks and the zstd version: sealing the same chunks twice
/// gives the same bytes.
///
/// Panics if `chunks` is empty, has more than [`MAX_GROUP_CHUNKS`] entries
/// or more than [`MAX_GROUP_PLAIN`] bytes, or holds a chunk of 0 or more
/// than 65,536 bytes: callers bound these. An id that is not its chunk's
/// is not caught here (hashing every chunk again would double the cost):
/// [`first_mismatch`] checks that on demand.
pub fn seal_group(key: &GroupKey, chunks: &[(ChunkId, &[u8])], out: &mut Vec<u8>) {
    let table: Vec<GroupEntry> = chunks.iter().map(|(id, p)| GroupEntry { id: *id, len: p.len() as u32 }).collect();
    assert!(chunks.iter().all(|(_, p)| p.len() <= MAX_CHUNK), "a chunk has 1..=65,536 bytes");
    let plain: Vec<u8> = chunks.iter().flat_map(|(_, p)| p.iter().copied()).collect();
    seal_group_plain(key, &table, &plain, out);
}

/// [`seal_group`] for chunks already back to back in `plain`, listed in
/// order by `table`: what a writer gathering a group has, sealed without
/// copying it again.
pub fn seal_group_plain(key: &GroupKey, table: &[GroupEntry], plain: &[u8], out: &mut Vec<u8>) {
    assert!(!table.is_empty() && table.len() <= MAX_GROUP_CHUNKS, "a group has 1..=1024 chunks");
    let total: usize = table.iter().map(|c| c.len as usize).sum();
    assert!(total == plain.len(), "the table lists exactly the plaintext");
    assert!(total <= MAX_GROUP_PLAIN, "a group holds at most {MAX_GROUP_PLAIN} bytes of plaintext");
    assert!(table.iter().all(|c| c.len != 0 && c.len as usize <= MAX_CHUNK), "a chunk has 1..=65,536 bytes");

    out.clear();
    out.reserve(GROUP_HEADER_LEN + GROUP_ENTRY_LEN * table.len());
    // Header with the kind and nonce filled in below.
    out.extend_from_slice(&[GROUP_VERSION, BODY_RAW]);
    out.extend_from_slice(&(table.len() as u16).to_le_bytes());
    out.extend_from_slice(&(total as u32).to_le_bytes());
    out.extend_from_slice(&[0u8; NONCE_LEN]);
    for c in table {
        out.extend_from_slice(&c.id.0);
        out.extend_from_slice(&c.len.to_le_bytes());
    }
    let body_start = out.len();

    let (kind, settings) = CODEC.with(|codec| {
        let Codec { compressor, fast, plain: filtered, frame, .. } = &mut *codec.borrow_mut();
        let mut at = 0;
        let skip = table.iter().all(|c| {
            let chunk = &plain[at..at + c.len as usize];
            at += c.len as usize;
            looks_incompressible(chunk)
        });
        // The frame goes to the thread's buffer, and only its bytes to `out`:
        // a payload waiting for its commit holds no more memory than it
        // needs. A frame that does not fit in one byte less than the
        // plaintext is no use: zstd stops with an error instead of finishing it.
        if frame.len() < total {
            frame.resize(total, 0);
        }
        let mut framed = None;
        if !skip {
            filtered.clear();
            filtered.extend_from_slice(plain);
            let (kind, input, settings, compressor) = match bcj::encode(filtered) {
                n if n * BYTES_PER_BRANCH_FOR_FAST >= total => (BODY_ZSTD_X86, &filtered[..], FAST, fast),
                n if n * BYTES_PER_BRANCH_TO_FILTER >= total => (BODY_ZSTD_X86, &filtered[..], LEVEL_3, compressor),
                _ => (BODY_ZSTD, plain, LEVEL_3, compressor),
            };
            framed = compressor.compress_to_buffer(input, &mut frame[..total - 1]).ok().map(|n| (kind, settings, n));
        }
        let (kind, settings, body) = match framed {
            Some((kind, settings, len)) => (kind, settings, &frame[..len]),
            None => (BODY_RAW, LEVEL_3, plain),
        };
        out.reserve_exact(body.len() + GROUP_TAG_LEN);
        out.extend_from_slice(body);
        (kind, settings)
    });
    out[1] = kind;

    let nonce = nonce(key, kind, settings, &out[GROUP_HEADER_LEN..body_start]);
    out[8..GROUP_HEADER_LEN].copy_from_slice(&nonce);
    let (head, body) = out.split_at_mut(body_start);
    let tag = key
        .aead(&nonce)
        .seal_in_place_separate_tag(zero_iv(), Aad::from(&*head), body)
        .expect("a group body is far below GCM's limit");
    out.extend_from_slice(tag.as_ref());
}

/// The nonce of a version 2 group: the first 16 bytes of
/// `HMAC-SHA256(mac_key, "pastiche/v2/group-nonce" || kind || zstd version (u32)
/// || level || hash log || chain log || strategy || minimum match || table)`
/// (the settings of [`Settings`]; before the branch filter, builds wrote
/// only level, hash log and chain log).
///
/// Deterministic, so the same chunks give the same payload without a random
/// source. The table names the plaintext (its ids are hashes of it); the
/// body kind, the zstd version and the compression parameters are in too
/// because they decide the body bytes: two builds that frame the same
/// plaintext differently must never seal two different bodies under one GCM
/// key, which would reveal their XOR and let the tag be forged. Readers take
/// the nonce from the header and never recompute it. (Version 1 derived it
/// the same way under `"pastiche/v1/group-nonce"`, without the parameters.)
fn nonce(key: &GroupKey, kind: u8, settings: Settings, table: &[u8]) -> [u8; NONCE_LEN] {
    let version = zstd_safe::version_number().to_le_bytes();
    let full = hmac(&key.mac_key, &[NONCE_LABEL_V2, &[kind], &version, &settings, table]);
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&full[..NONCE_LEN]);
    nonce
}

/// What decrypts a payload's body, by version.
enum BodyKey {
    /// Version 1: the tag was already checked; the body is only decrypted.
    /// (Both keys are boxed: their expanded schedules are large and uneven.)
    Ctr(Box<Aes256Ctr>),
    /// Version 2: decrypting checks the tag over the header, table and body.
    Gcm(Box<LessSafeKey>, Tag),
}

impl BodyKey {
    /// The key of `payload`'s body; for version 1, after checking its tag in constant time.
    fn of(key: &GroupKey, payload: &[u8], layout: &Layout) -> Result<BodyKey, GroupError> {
        let nonce = &payload[8..GROUP_HEADER_LEN];
        let tag = &payload[layout.tag_start..];
        if layout.version == GROUP_VERSION_V1 {
            if !bool::from(key.tag_v1(&payload[..layout.tag_start]).ct_eq(tag)) {
                return Err(GroupError::BadTag);
            }
            return Ok(BodyKey::Ctr(Box::new(key.cipher_v1(nonce))));
        }
        let tag = Tag::try_from(tag).map_err(|_| GroupError::BadTag)?;
        Ok(BodyKey::Gcm(Box::new(key.aead(nonce)), tag))
    }

    /// Decrypts `body`, a copy of the payload's body, in place. A version 2
    /// tag that does not match the header and table before the body
    /// (`head`) and the body is refused, and `body` is then zeroed.
    fn open(self, head: &[u8], body: &mut [u8]) -> Result<(), GroupError> {
        match self {
            BodyKey::Ctr(mut cipher) => cipher.apply_keystream(body),
            BodyKey::Gcm(aead, tag) => {
                if aead.open_in_place_separate_tag(zero_iv(), Aad::from(head), tag, body, 0..).is_err() {
                    body.fill(0);
                    return Err(GroupError::BadTag);
                }
            }
        }
        Ok(())
    }
}

/// Checks the tag, decrypts and decompresses; `plain` (cleared first) gets the chunks back to back in table order. Returns the table.
///
/// In this order: the header and table are checked as [`read_table`] does;
/// a raw body must be exactly the total long; a zstd body must be shorter
/// than the total (the writer frames only what shrinks); the tag is checked
/// (version 1: compared in constant time before anything is decrypted;
/// version 2: by GCM while decrypting, nothing decrypted is used if it
/// fails); a zstd body must be exactly one frame, whose header declares
/// exactly the total and which decodes to exactly that, into at most the
/// total bytes of `plain` (a frame that would produce more fails instead of
/// growing it); a filtered body (kind 2) is then unfiltered in place. The
/// ids are not checked against the plaintext: the tag
/// proves this box wrote the payload; callers who want more call
/// [`first_mismatch`]. On error `plain` holds nothing meaningful.
pub fn open_group(key: &GroupKey, payload: &[u8], plain: &mut Vec<u8>) -> Result<Vec<GroupEntry>, GroupError> {
    plain.clear();
    let layout = layout(payload)?;
    let table = parse_table(payload, &layout)?;
    let body_key = BodyKey::of(key, payload, &layout)?;
    let total = layout.total as usize;
    let head = &payload[..layout.body_start];
    let body = &payload[layout.body_start..layout.tag_start];
    if layout.kind == BODY_RAW {
        if body.len() != total {
            return Err(GroupError::RawLength { body: body.len(), total: layout.total });
        }
        plain.extend_from_slice(body);
        if let Err(e) = body_key.open(head, plain) {
            plain.clear();
            return Err(e);
        }
        return Ok(table);
    }
    // The writer frames a body only when that makes it smaller; refusing
    // longer frames also bounds the buffer they are decrypted into.
    if body.len() >= total {
        return Err(GroupError::FrameNotSmaller { frame: body.len(), total: layout.total });
    }
    CODEC.with(|codec| {
        let codec = &mut *codec.borrow_mut();
        let frame = &mut codec.plain;
        frame.clear();
        frame.extend_from_slice(body);
        body_key.open(head, frame)?;
        let declared = zstd_safe::get_frame_content_size(frame).ok().flatten().ok_or(GroupError::NoContentSize)?;
        if declared != layout.total {
            return Err(GroupError::WrongContentSize { declared, total: layout.total });
        }
        match zstd_safe::find_frame_compressed_size(frame) {
            Ok(n) if n == frame.len() => {}
            Ok(n) => return Err(GroupError::TrailingBytes { extra: frame.len().saturating_sub(n) }),
            Err(code) => return Err(GroupError::Decompress(zstd_safe::get_error_name(code).to_string())),
        }
        // Room for exactly the total, at most MAX_GROUP_PLAIN (checked by
        // `layout`), whatever capacity `plain` had: a frame that would
        // produce more fails as soon as it fills it. (Zeroing it first costs
        // far less than decoding.)
        plain.resize(total, 0);
        let produced = codec.decompressor.decompress_to_buffer(frame, plain.as_mut_slice()).map_err(|e| {
            plain.clear();
            GroupError::Decompress(e.to_string())
        })?;
        if produced != total {
            plain.clear();
            return Err(GroupError::Decompress(format!(
                "frame produced {produced} bytes, not the {total} it declares"
            )));
        }
        if layout.kind == BODY_ZSTD_X86 {
            bcj::decode(plain);
        }
        Ok(())
    })?;
    Ok(table)
}

/// Where chunk `id` lies in the plaintext `open_group` produced, if it is in the table.
///
/// A linear scan (at most 1,024 entries, summing lengths as it goes). If an
/// id were listed twice, the first is found; writers never do that, since a
/// chunk already stored is never written again.
pub fn locate(table: &[GroupEntry], id: &ChunkId) -> Option<Range<usize>> {
    let mut start = 0usize;
    for entry in table {
        let end = start + entry.len as usize;
        if entry.id == *id {
            return Some(start..end);
        }
        start = end;
    }
    None
}

/// Whether every chunk's plaintext hashes to its id (chunkId = SHA1(SHA1(plaintext)), SPEC §2). Returns the first id that does not, if any.
///
/// `plain` is what [`open_group`] produced for `table`. If it is shorter
/// than the table says, the first chunk it does not hold whole is the
/// mismatch; bytes after the table's total are ignored.
pub fn first_mismatch(table: &[GroupEntry], plain: &[u8]) -> Option<ChunkId> {
    let mut start = 0usize;
    for entry in table {
        let end = start + entry.len as usize;
        let Some(chunk) = plain.get(start..end) else { return Some(entry.id) };
        let handle = Sha1::digest(chunk);
        if Sha1::digest(handle).as_slice() != entry.id.0 {
            return Some(entry.id);
        }
        start = end;
    }
    None
}

/// Splits `total` bytes among chunks in proportion to `lens` so the shares sum to exactly `total` (integer arithmetic, deterministic: share_i = floor(total*cum_{i+1}/sum) - floor(total*cum_i/sum), u128 math). Used to charge each chunk its part of a record.
///
/// `cum_i` is the sum of the first `i` lengths. If every length is 0 (or
/// `lens` is empty) there is nothing to be proportional to: the shares are
/// all 0 except the last, which takes `total`, so they still sum to it (an
/// empty `lens` gives no shares at all).
pub fn shares(total: u64, lens: &[u32]) -> Vec<u64> {
    let sum: u128 = lens.iter().map(|&l| u128::from(l)).sum();
    if sum == 0 {
        let mut out = vec![0u64; lens.len()];
        if let Some(last) = out.last_mut() {
            *last = total;
        }
        return out;
    }
    let total = u128::from(total);
    let mut cum = 0u128;
    let mut before = 0u128;
    lens.iter()
        .map(|&l| {
            cum += u128::from(l);
            // total * cum <= 2^64 * 2^32 * 2^32: fits u128.
            let upto = total * cum / sum;
            let share = upto - before;
            before = upto;
            // A share is at most total, so it fits u64.
            share as u64
        })
        .collect()
}

#[cfg(test)]
mod tests;
