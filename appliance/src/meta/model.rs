//! The metadata model: what is encrypted inside each object (docs/METADATA.md).
//!
//! A snapshot is a tree of content-addressed objects, as in restic: each
//! directory is a [`Tree`] object listing its children (name, attributes,
//! and for a file its chunk handles, for a subdirectory the name of its
//! tree), named by a keyed hash of its plaintext. An unchanged subtree is
//! therefore the same object in every snapshot and under every path that
//! reaches it; a changed file rewrites the trees from its directory up to
//! the snapshot's root entry, which the root object holds with the path.
//! The handles of files with many chunks live in their own content-addressed
//! list objects, so rewriting a directory does not copy them.

use serde::{Deserialize, Serialize};

use super::object::ObjectName;

/// Seconds and nanoseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Timestamp {
    /// Whole seconds (negative before 1970).
    pub secs: i64,
    /// Nanoseconds within the second.
    pub nanos: u32,
}

/// The `lstat` attributes kept for an entry. Access times are not kept
/// (as Borg by default): listing a directory changes its own, which would
/// make every tree above it a new object at each backup. A restore sets
/// them to the modification time.
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
    /// Status-change time (compared to detect changes, not restorable).
    pub ctime: Timestamp,
    /// Inode number (compared to detect replaced files).
    pub inode: u64,
    /// Device number.
    pub dev: u64,
}

/// The chunks of a file, as a tree stores them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Chunks {
    /// At most [`INLINE_HANDLES`] handles, kept in the tree itself.
    Inline(Vec<[u8; 20]>),
    /// More: a content-addressed handle list object (docs/METADATA.md), so
    /// a directory rewritten because one file changed does not copy the
    /// handle lists of the files that did not.
    List {
        /// The list object's name.
        list: ObjectName,
        /// How many handles it holds.
        count: u64,
    },
}

/// Files with at most this many chunks keep their handles in their tree.
pub const INLINE_HANDLES: usize = 4;

/// What an entry holds, by type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Content {
    /// A regular file: the handles of its chunks, in order.
    File {
        /// Chunk handles (SHA-1 of each plaintext chunk).
        chunks: Chunks,
        /// The file had holes (fewer blocks than its size): all-zero chunks
        /// are restored as holes.
        sparse: bool,
        /// Entries with the same group in one snapshot are hard links to
        /// one file (set when the link count is above one).
        link_group: Option<u64>,
    },
    /// A directory: the content-addressed tree of its children.
    Dir {
        /// The tree object's name.
        tree: ObjectName,
    },
    /// A symbolic link.
    Symlink {
        /// The link's target, as raw bytes.
        target: Vec<u8>,
    },
}

/// One entry of a directory (or a snapshot's root).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// File name, raw bytes.
    pub name: Vec<u8>,
    /// Attributes.
    pub attrs: Attrs,
    /// Content.
    pub content: Content,
}

/// A directory's children, sorted by name: the plaintext of a tree object.
/// Trees are content-addressed, so an unchanged subtree is one object
/// however many snapshots or paths reach it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    /// Children, sorted by name.
    pub nodes: Vec<Node>,
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
    /// Sequence number, increasing with each snapshot of the box.
    pub seq: u64,
    /// Random identifier shown to users (hex).
    pub id: [u8; 16],
    /// When the backup started.
    pub time: Timestamp,
    /// Host name.
    pub hostname: String,
    /// Absolute paths backed up, raw bytes.
    pub paths: Vec<Vec<u8>>,
    /// The entry of each path (same order), named by its last component;
    /// a directory's points to its tree.
    pub roots: Vec<Node>,
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
    /// Next snapshot sequence number.
    pub next_snapshot_seq: u64,
    /// Retained snapshots, oldest first.
    pub snapshots: Vec<SnapshotInfo>,
}

/// Serializes with postcard.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_stdvec(value).expect("metadata always serializes")
}

/// Deserializes with postcard, naming what failed.
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8], what: &str) -> anyhow::Result<T> {
    postcard::from_bytes(bytes).map_err(|e| anyhow::anyhow!("malformed {what}: {e}"))
}
