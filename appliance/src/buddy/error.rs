//! The buddy store's error type, with the context of each failure.

use std::path::PathBuf;

use pastiche_core::session::LedgerRefusal;
use pastiche_core::PublicKey;

use crate::store::StoreError;

/// Everything that can go wrong in the buddy store. Each variant says what
/// was being done, for the daemon's log; the peer only sees `Internal`.
#[derive(Debug, thiserror::Error)]
pub enum BuddyError {
    /// `buddy.redb` failed; nothing of the current operation was committed.
    #[error("buddy database ({context}): {source}")]
    Db {
        /// What the store was doing.
        context: &'static str,
        /// The underlying redb error.
        #[source]
        source: Box<redb::Error>,
    },
    /// `buddy.redb` could not be opened or created.
    #[error("cannot open the buddy database {}: {message}", path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// `buddy.redb` was written by an incompatible version.
    #[error("buddy database format version {found} is not supported (this build reads version {supported})")]
    UnsupportedFormat {
        /// The version found.
        found: u64,
        /// The version this build reads and writes.
        supported: u64,
    },
    /// The chunk store failed.
    #[error("chunk store ({context}): {source}")]
    Chunks {
        /// What the buddy store was doing.
        context: &'static str,
        /// The chunk store's error.
        #[source]
        source: StoreError,
    },
    /// A client authenticated with this box's own key: its references would
    /// mix with the box's own backups, so it is refused.
    #[error("client {0} has this box's own key; a box is not its own buddy")]
    OwnKey(PublicKey),
    /// A session handle was used for two clients.
    #[error("this session belongs to client {bound}, not {asked}")]
    WrongClient {
        /// The client the handle was bound to.
        bound: PublicKey,
        /// The client asked for.
        asked: PublicKey,
    },
    /// A client-specific read before any client authenticated.
    #[error("no client has authenticated on this session")]
    NoClient,
    /// The ledger refused a step (another session of the same client
    /// committed or prepared meanwhile, say).
    #[error("client {client}: epoch {epoch}: {}", why.reason())]
    Ledger {
        /// The client.
        client: PublicKey,
        /// The epoch asked for.
        epoch: u64,
        /// The ledger's reason.
        why: LedgerRefusal,
    },
    /// The invitation directory could not be read or written.
    #[error("pairing invitations ({context}): {source}")]
    Invites {
        /// What was being done.
        context: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The free space of the box's disk could not be read.
    #[error("reading the free disk space: {0}")]
    FreeSpace(#[source] std::io::Error),
    /// An operation for a client this buddy never admitted.
    #[error("client {0} is not admitted here")]
    NotAdmitted(PublicKey),
    /// A stored value does not fit the caller's buffer.
    #[error("{what} of {len} bytes does not fit the {cap}-byte buffer")]
    BufferTooSmall {
        /// What was read.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The buffer's length.
        cap: usize,
    },
}

/// Shorthand for this module's results.
pub type Result<T, E = BuddyError> = std::result::Result<T, E>;

pub(super) trait DbContext<T> {
    fn db(self, context: &'static str) -> Result<T>;
}

impl<T, E: Into<redb::Error>> DbContext<T> for std::result::Result<T, E> {
    fn db(self, context: &'static str) -> Result<T> {
        self.map_err(|e| BuddyError::Db { context, source: Box::new(e.into()) })
    }
}

pub(super) trait ChunkContext<T> {
    fn chunks(self, context: &'static str) -> Result<T>;
}

impl<T> ChunkContext<T> for std::result::Result<T, StoreError> {
    fn chunks(self, context: &'static str) -> Result<T> {
        self.map_err(|source| BuddyError::Chunks { context, source })
    }
}
