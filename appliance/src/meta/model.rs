//! The metadata model: what is encrypted inside each object (docs/METADATA.md).
//!
//! Every file-system entry backed up at a path has one object for its whole
//! life: a log of versions, each valid from the snapshot that introduced it
//! until the next version. An entry that does not change between snapshots
//! costs nothing: its object is not rewritten. Directories list their
//! children by name with each child's object reference, so a directory's
//! object changes only when names come or go or its own attributes change.
//! This is the metadata skeleton: restoring snapshot `s` walks from the
//! snapshot's roots, taking in each object the latest version with
//! `from <= s`.

use serde::{Deserialize, Serialize};

use super::object::ObjectRef;

/// Seconds and nanoseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Timestamp {
    /// Whole seconds (negative before 1970).
    pub secs: i64,
    /// Nanoseconds within the second.
    pub nanos: u32,
}

/// The `lstat` attributes kept for an entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attrs {
    /// `st_mode`: type and permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes (apparent size for files, target length for symlinks).
    pub size: u64,
    /// Modification time.
    pub mtime: Timestamp,
    /// Access time (restored, never compared).
    pub atime: Timestamp,
    /// Status-change time (compared to detect changes, not restorable).
    pub ctime: Timestamp,
    /// Inode number (compared to detect replaced files).
    pub inode: u64,
    /// Device number.
    pub dev: u64,
}

impl Attrs {
    /// True when nothing restorable or change-revealing differs (access
    /// times are ignored: reading a file changes them).
    pub fn same_as(&self, other: &Attrs) -> bool {
        Attrs { atime: other.atime, ..self.clone() } == *other
    }
}

/// What an entry holds, by type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Content {
    /// A regular file: the handles of its chunks, in order.
    File {
        /// Chunk handles (SHA-1 of each plaintext chunk).
        handles: Vec<[u8; 20]>,
        /// The file had holes (fewer blocks than its size): all-zero chunks
        /// are restored as holes.
        sparse: bool,
        /// Entries with the same group in one snapshot are hard links to
        /// one file (set when the link count is above one).
        link_group: Option<u64>,
    },
    /// A directory: its children, sorted by name.
    Dir {
        /// Children.
        entries: Vec<DirEntry>,
    },
    /// A symbolic link.
    Symlink {
        /// The link's target, as raw bytes.
        target: Vec<u8>,
    },
}

/// One child of a directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirEntry {
    /// File name, raw bytes.
    pub name: Vec<u8>,
    /// The child's object.
    pub object: ObjectRef,
}

/// One version of an entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    /// The snapshot sequence number from which this version holds.
    pub from: u64,
    /// Attributes.
    pub attrs: Attrs,
    /// Content.
    pub content: Content,
}

impl Version {
    /// True when `other` would restore the same thing and shows no sign of
    /// change (see [`Attrs::same_as`]).
    pub fn same_as(&self, other: &Version) -> bool {
        self.attrs.same_as(&other.attrs) && self.content == other.content
    }
}

/// The decrypted body of an entry's object: its version log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeObject {
    /// Versions, oldest first (`from` strictly increasing).
    pub versions: Vec<Version>,
}

impl NodeObject {
    /// The version in force at snapshot `seq`.
    pub fn at(&self, seq: u64) -> Option<&Version> {
        self.versions.iter().rev().find(|v| v.from <= seq)
    }

    /// The newest version.
    pub fn latest(&self) -> Option<&Version> {
        self.versions.last()
    }
}

/// What a snapshot did, for `snapshots` and the JSON summary.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Regular files in the snapshot.
    pub files: u64,
    /// Directories in the snapshot.
    pub dirs: u64,
    /// Other entries (symlinks).
    pub others: u64,
    /// Files not seen before.
    pub files_new: u64,
    /// Files read again because they changed.
    pub files_changed: u64,
    /// Files taken from the previous snapshot without reading.
    pub files_unmodified: u64,
    /// Total size of the files.
    pub bytes: u64,
    /// Bytes read from disk.
    pub bytes_read: u64,
    /// Chunks the store did not have.
    pub chunks_new: u64,
    /// Sealed bytes added to the store.
    pub bytes_added: u64,
    /// Entries that could not be read (skipped).
    pub errors: u64,
    /// Wall-clock time in milliseconds.
    pub duration_ms: u64,
}

/// One snapshot, as listed in the root object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// Sequence number: versions with `from <= seq` are candidates.
    pub seq: u64,
    /// Random identifier shown to users (hex).
    pub id: [u8; 16],
    /// When the backup started.
    pub time: Timestamp,
    /// Host name.
    pub hostname: String,
    /// Absolute paths backed up, raw bytes.
    pub paths: Vec<Vec<u8>>,
    /// The object of each path (same order).
    pub roots: Vec<ObjectRef>,
    /// Statistics.
    pub summary: Summary,
}

impl SnapshotInfo {
    /// The id in hex.
    pub fn id_hex(&self) -> String {
        hex::encode(self.id)
    }
}

/// The root object: everything needed to find every snapshot, encrypted
/// under a key derived from the passphrase and machine name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootObject {
    /// The machine's fully-qualified name.
    pub name: String,
    /// The box's Ed25519 secret seed, so a rebuilt box has its identity back.
    pub identity_seed: [u8; 32],
    /// Next free object sequence number.
    pub next_object_seq: u64,
    /// Next snapshot sequence number.
    pub next_snapshot_seq: u64,
    /// Retained snapshots, oldest first.
    pub snapshots: Vec<SnapshotInfo>,
    /// The persistent object of each path ever backed up.
    pub path_roots: Vec<(Vec<u8>, ObjectRef)>,
}

/// Serializes with postcard.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_stdvec(value).expect("metadata always serializes")
}

/// Deserializes with postcard, naming what failed.
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8], what: &str) -> anyhow::Result<T> {
    postcard::from_bytes(bytes).map_err(|e| anyhow::anyhow!("malformed {what}: {e}"))
}
