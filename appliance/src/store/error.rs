//! The store's error type, and the reasons a stored record can be damaged.

use std::fmt;
use std::io;
use std::path::PathBuf;

use pastiche_core::ChunkId;

use super::pack::{MAX_SEALED, MIN_SEALED};

/// Everything that can go wrong in the chunk store.
///
/// Every variant names what it was doing or which chunk, pack and offset it
/// concerns, so a message is actionable without a backtrace.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An operation on a store file failed (a full disk shows up here as
    /// [`io::ErrorKind::StorageFull`]; see [`StoreError::is_storage_full`]).
    #[error("{context}: {source}")]
    Io {
        /// What the store was doing, including the file's path.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The index database failed; nothing of the current operation was
    /// committed.
    #[error("chunk index ({context}): {source}")]
    Index {
        /// What the store was doing.
        context: &'static str,
        /// The underlying redb error.
        #[source]
        source: Box<redb::Error>,
    },
    /// Another process (or another `ChunkStore` in this one) has the store open.
    #[error("chunk store {} is already open by another process", path.display())]
    Locked {
        /// The index file that is locked.
        path: PathBuf,
    },
    /// Pack files exist but the index does not: opening would throw them all
    /// away, so the store refuses.
    #[error(
        "{}: pack files exist but the index {} is missing or uninitialised; \
         refusing to open (opening would discard every pack)",
        dir.display(),
        index.display()
    )]
    IndexMissing {
        /// The store directory.
        dir: PathBuf,
        /// The missing index file.
        index: PathBuf,
    },
    /// The index was written by an incompatible version of the store.
    #[error(
        "chunk store format version {found} is not supported (this build reads version {supported} and upgrades versions 2 to 4; version 1 \
         stores hold chunks sealed before compression and cannot be migrated)"
    )]
    UnsupportedFormat {
        /// The version found in the index.
        found: u64,
        /// The version this build reads and writes.
        supported: u64,
    },
    /// The chunk is not in the store.
    #[error("chunk {0} is not in the store")]
    NotFound(ChunkId),
    /// The chunk is indexed but its stored record is damaged.
    #[error("chunk {id} in pack {} at offset {offset} is damaged: {damage}", pack.display())]
    Damaged {
        /// The damaged chunk.
        id: ChunkId,
        /// The pack file holding it.
        pack: PathBuf,
        /// Byte offset of its record header in the pack.
        offset: u64,
        /// What is wrong.
        damage: Damage,
    },
    /// A chunk given to the store has an impossible size for a sealed chunk.
    #[error("chunk {id} is {len} bytes; a sealed chunk is {MIN_SEALED}..={MAX_SEALED} bytes")]
    BadChunkLen {
        /// The chunk.
        id: ChunkId,
        /// Its length.
        len: usize,
    },
    /// A chunk kept in one of the box's own groups was read before the
    /// store was given the box's group key.
    #[error("chunk {0} is kept in a group and the store has no group key to open it")]
    NoGroupKey(ChunkId),
    /// A writer's batch could not be queued: the thread committing the
    /// queue stopped after an error, which it returns itself.
    #[error("the thread committing this backup's batches has stopped after an error")]
    CommitStopped,
    /// The configuration passed to `open_with` is unusable.
    #[error("invalid chunk store configuration: {0}")]
    Config(String),
}

impl StoreError {
    /// True when the operation failed because a disk is full (the store
    /// stays consistent; free space and retry).
    pub fn is_storage_full(&self) -> bool {
        match self {
            StoreError::Io { source, .. } => is_full(source),
            StoreError::Index { source, .. } => match &**source {
                redb::Error::Io(e) => is_full(e),
                _ => false,
            },
            _ => false,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> StoreError {
        StoreError::Io { context: context.into(), source }
    }

    pub(crate) fn index(context: &'static str, source: impl Into<redb::Error>) -> StoreError {
        StoreError::Index { context, source: Box::new(source.into()) }
    }
}

fn is_full(e: &io::Error) -> bool {
    // ENOSPC is StorageFull; EDQUOT (quota) is QuotaExceeded; both mean "no room".
    matches!(e.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded)
}

/// Shorthand used throughout the store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Attaches "what were we doing" context to redb errors.
pub(crate) trait IndexContext<T> {
    /// Maps the error into [`StoreError::Index`] with `context`.
    fn ctx(self, context: &'static str) -> Result<T>;
}

impl<T, E: Into<redb::Error>> IndexContext<T> for std::result::Result<T, E> {
    fn ctx(self, context: &'static str) -> Result<T> {
        self.map_err(|e| StoreError::index(context, e))
    }
}

/// Why a stored record does not give back the chunk the index promises.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Damage {
    /// The pack file the index points to does not exist.
    MissingPack,
    /// The index points into a pack the index itself does not list.
    UnknownPack,
    /// The record lies (partly) past the pack's committed length.
    OutsideCommitted {
        /// End of the record according to the index.
        end: u64,
        /// The pack's committed length.
        committed: u64,
    },
    /// The pack file ends before the record does.
    Truncated {
        /// The pack file's length on disk.
        file_len: u64,
    },
    /// The record header does not start with the record magic.
    BadMagic,
    /// The record header's own checksum does not match.
    BadHeaderChecksum,
    /// The record header names another chunk.
    WrongId(ChunkId),
    /// The record header's length differs from the index's.
    WrongLength {
        /// Length in the record header.
        header: u32,
        /// Length in the index.
        index: u32,
    },
    /// The payload's CRC-32 is not the one recorded.
    PayloadChecksum {
        /// CRC-32 recorded in the index.
        expected: u32,
        /// CRC-32 of the bytes read.
        actual: u32,
    },
    /// Reading the record failed.
    Io(String),
    /// The group record is refused when opened (tag, format, compression).
    Group(String),
    /// The group record does not list the chunk.
    NotInGroup,
    /// The chunk's plaintext in its group does not hash to its chunkId.
    WrongContent,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Damage::MissingPack => f.write_str("its pack file is missing"),
            Damage::UnknownPack => f.write_str("its pack is not listed in the index"),
            Damage::OutsideCommitted { end, committed } => {
                write!(f, "record ends at byte {end}, past the pack's committed length {committed}")
            }
            Damage::Truncated { file_len } => {
                write!(f, "pack file is only {file_len} bytes long")
            }
            Damage::BadMagic => f.write_str("record header magic is wrong"),
            Damage::BadHeaderChecksum => f.write_str("record header checksum mismatch"),
            Damage::WrongId(other) => write!(f, "record header names chunk {other}"),
            Damage::WrongLength { header, index } => {
                write!(f, "record header says {header} bytes, the index says {index}")
            }
            Damage::PayloadChecksum { expected, actual } => {
                write!(f, "payload CRC-32 is {actual:08x}, expected {expected:08x}")
            }
            Damage::Io(e) => write!(f, "read failed: {e}"),
            Damage::Group(why) => write!(f, "its group record is refused: {why}"),
            Damage::NotInGroup => f.write_str("its group record does not list it"),
            Damage::WrongContent => f.write_str("its plaintext in its group does not hash to its chunkId"),
        }
    }
}
