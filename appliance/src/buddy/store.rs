//! The appliance's [`BuddyStore`](pastiche_core::session::BuddyStore): other boxes' sealed chunks in the box's
//! own [`ChunkStore`], per-client state in `DATA/buddy.redb`. This file
//! opens it and holds what every session shares; client administration is
//! in `clients.rs`, quotas and usage in `usage.rs`, the epoch commit
//! protocol in `epochs.rs`.
//!
//! Chunks go into the same store as the box's own chunks, with the client's
//! public key as owner, so a chunk held for the box itself or for another
//! client is never stored twice: only the new client's reference is added.
//! A client's references are a **set**: each is added only while the client's
//! count is 0, so a client's count is 0 or 1 and releasing is idempotent
//! (which is what makes `BuddyHandle`'s `apply` safe to repeat after a
//! crash). Every reference change for a client goes through one
//! reference lock, which is what keeps the count at most 1 across concurrent
//! sessions.
//!
//! Only admitted clients are served ([`admission`](super::admission) for
//! pairing codes). A client's upload is stored under its chunkId only when
//! the box itself holds those very bytes there (written by its own backup,
//! which never reads anyone else's bytes); otherwise under a stored name
//! that digests the bytes ([`names`](super::names)), so a forged upload can
//! never stand in for the box's own chunk or another client's, while
//! byte-identical uploads of honest clients are stored once.
//!
//! `buddy.redb` tables:
//!
//! ```text
//! clients          client key -> (quota, quota is custom, committed epoch, staged epoch, prepared)
//! objects          (client key, name) -> sealed object     committed
//! roots            client key -> (epoch, sealed root)        committed
//! staged_objects   (client key, name) -> sealed object     staging of `staged epoch`
//! staged_deletes   (client key, chunkId) -> ()             staging of `staged epoch`
//! staged_roots     client key -> sealed root                staging of `staged epoch`
//! admitted         client key -> (name, admitted at, last seen)   Unix seconds
//! chunk_names      (client key, chunkId) -> stored name            see `names`
//! drop_notices     client key -> (seq, dropped at, bytes, reason, delivered at)   see `notices`
//! meta             "format" -> 2
//! ```
//!
//! Commit protocol: staging is buffered in the session's [`BuddyHandle`]
//! and written at `flush` (unprepared) or at `prepare` together with the
//! prepared flag, in one transaction. `apply` first releases the delete
//! list's references in the chunk store (idempotent), then moves the staging
//! into the committed tables and records the epoch in one transaction. A
//! crash between the two leaves the epoch prepared: [`BuddyStorage::recover`]
//! (and the client's next session) applies it again. Quota: a client's usage
//! is the sealed bytes of the chunks it owns, as the chunk store counts them
//! per owner.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use pastiche_core::session::Recovery;
use pastiche_core::PublicKey;
use redb::{Database, ReadableTable};

use super::error::{BuddyError, DbContext, Result};
pub use super::handle::BuddyHandle;
use super::tables::*;
use super::throttle::{ThrottleStats, WorkThrottle};
use crate::repo::Repo;
use crate::store::ChunkStore;

/// Where the chunk store lives: on its own (tests, tools) or inside an open
/// box, whose lock is then held as long as the buddy store.
enum ChunkSource {
    Store(Arc<ChunkStore>),
    Repo(Arc<Repo>),
}

impl ChunkSource {
    fn get(&self) -> &ChunkStore {
        match self {
            ChunkSource::Store(s) => s,
            ChunkSource::Repo(r) => &r.store,
        }
    }
}

/// State shared by every session of a buddy.
pub(super) struct Shared {
    chunks: ChunkSource,
    pub db: Database,
    pub own_key: PublicKey,
    pub(super) default_quota: u64,
    /// The box's data directory (pairing invitations live there).
    pub(super) dir: PathBuf,
    /// Free bytes the disk keeps for the box's own backups (0: no floor).
    pub(super) min_free: std::sync::atomic::AtomicU64,
    /// Held while a client's references change, so that "add only if the
    /// count is 0" holds across concurrent sessions.
    pub(super) refs: Mutex<()>,
    /// Chunk bytes all sessions' handles buffer (bounded by
    /// [`MAX_BUFFERED_BYTES`]).
    pub(super) buffered: std::sync::atomic::AtomicU64,
    /// What serving clients the box's own grouped chunks may cost.
    pub(super) work: WorkThrottle,
}

/// What [`BuddyStorage::recover`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BuddyRecovery {
    /// Prepared epochs rolled forward: `(client, epoch)`.
    pub applied: Vec<(PublicKey, u64)>,
    /// Unprepared staging thrown away: `(client, epoch)`.
    pub discarded: Vec<(PublicKey, u64)>,
}

/// The buddy side of a box's storage, shared by all its sessions (cheap to
/// clone). Each session takes its own [`BuddyHandle`] from
/// [`BuddyStorage::session`].
#[derive(Clone)]
pub struct BuddyStorage {
    pub(super) shared: Arc<Shared>,
}

impl std::fmt::Debug for BuddyStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuddyStorage").field("own_key", &self.shared.own_key).finish_non_exhaustive()
    }
}

impl BuddyStorage {
    /// Opens (creating if absent) `dir/buddy.redb` over `chunks`, for the
    /// box whose key is `own_key`. Clients without a quota of their own get
    /// `default_quota` bytes. Call [`BuddyStorage::recover`] before serving.
    pub fn open(dir: &Path, chunks: Arc<ChunkStore>, own_key: PublicKey, default_quota: u64) -> Result<BuddyStorage> {
        BuddyStorage::open_source(dir, ChunkSource::Store(chunks), own_key, default_quota)
    }

    /// Opens the buddy store of an open box: `DATA/buddy.redb` over the
    /// box's chunk store. The box (and its lock) stays open as long as any
    /// clone of the storage or any handle.
    pub fn for_repo(repo: Arc<Repo>, default_quota: u64) -> Result<BuddyStorage> {
        let own_key = repo.identity.public_key();
        let dir = repo.dir.clone();
        BuddyStorage::open_source(&dir, ChunkSource::Repo(repo), own_key, default_quota)
    }

    fn open_source(dir: &Path, chunks: ChunkSource, own_key: PublicKey, default_quota: u64) -> Result<BuddyStorage> {
        let path = dir.join(BUDDY_DB_FILE);
        let open = || Database::builder().set_cache_size(CACHE_BYTES).create(&path);
        let db = crate::redb_guard::open_guarded(&path, open)
            .map_err(|message| BuddyError::Open { path: path.clone(), message })?
            .map_err(|e| BuddyError::Open { path: path.clone(), message: e.to_string() })?;
        let txn = begin_write(&db, "initialising")?;
        {
            const C: &str = "initialising";
            txn.open_table(CLIENTS).db(C)?;
            txn.open_table(OBJECTS).db(C)?;
            txn.open_table(ROOTS).db(C)?;
            txn.open_table(STAGED_OBJECTS).db(C)?;
            txn.open_table(STAGED_DELETES).db(C)?;
            txn.open_table(STAGED_ROOTS).db(C)?;
            txn.open_table(ADMITTED).db(C)?;
            txn.open_table(CHUNK_NAMES).db(C)?;
            let mut meta = txn.open_table(META).db(C)?;
            let found = meta.get("format").db(C)?.map(|g| g.value());
            match found {
                // Version 1 admitted every key: its clients must pair again
                // (nobody is in the new `admitted` table).
                None | Some(1) => {
                    meta.insert("format", FORMAT_VERSION).db(C)?;
                }
                Some(FORMAT_VERSION) => {}
                Some(found) => return Err(BuddyError::UnsupportedFormat { found, supported: FORMAT_VERSION }),
            }
        }
        txn.commit().db("initialising")?;
        let shared = Shared {
            chunks,
            db,
            own_key,
            default_quota,
            dir: dir.to_path_buf(),
            min_free: std::sync::atomic::AtomicU64::new(0),
            refs: Mutex::new(()),
            buffered: std::sync::atomic::AtomicU64::new(0),
            work: WorkThrottle::default(),
        };
        Ok(BuddyStorage { shared: Arc::new(shared) })
    }

    pub(super) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// A handle for one session.
    pub fn session(&self) -> BuddyHandle {
        BuddyHandle::new(self.shared.clone())
    }

    /// Keeps `bytes` free on the disk of the box's data for its own backups:
    /// uploads and staging that would go below are refused `QuotaExceeded`
    /// (0, the default: no floor).
    pub fn set_min_free(&self, bytes: u64) {
        self.shared.min_free.store(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    /// Work bytes per second (groups opened, chunks sealed) all clients
    /// together may cost the box ([`super::throttle`]).
    pub fn set_work_rate(&self, per_sec: u64) {
        self.shared.work.set_rate(per_sec);
    }

    /// What serving clients has cost so far, and how often it was throttled.
    pub fn work_stats(&self) -> ThrottleStats {
        self.shared.work.stats()
    }

    /// Bytes free for unprivileged writers on the disk of the box's data.
    pub fn free_disk(&self) -> Result<u64> {
        self.shared.free_disk()
    }

    /// The chunk store the chunks go to.
    pub fn chunks(&self) -> &ChunkStore {
        self.shared.chunks.get()
    }

    /// The box's identity, when this storage belongs to a repository: the
    /// buddy server's channel key.
    pub fn identity(&self) -> Option<&pastiche_core::Identity> {
        match &self.shared.chunks {
            ChunkSource::Repo(r) => Some(&r.identity),
            ChunkSource::Store(_) => None,
        }
    }

    /// The key of the box this storage belongs to (refused as a client).
    pub fn own_key(&self) -> PublicKey {
        self.shared.own_key
    }

    /// Run at start, before serving: applies every epoch prepared but not
    /// applied (a buddy stopped between `Staged` and `Committed` comes back
    /// with the new snapshot whole) and discards unprepared staging.
    pub fn recover(&self) -> Result<BuddyRecovery> {
        let mut report = BuddyRecovery::default();
        for (client, rec) in self.shared.records()? {
            match rec.epochs().recover() {
                Recovery::Clean => {}
                Recovery::RollForward(epoch) => {
                    self.shared.apply(&client, epoch)?;
                    report.applied.push((client, epoch));
                }
                Recovery::Discard(epoch) => {
                    if self.shared.abort(&client, epoch)? {
                        report.discarded.push((client, epoch));
                    }
                }
            }
        }
        Ok(report)
    }
}

impl Shared {
    pub(super) fn chunks(&self) -> &ChunkStore {
        self.chunks.get()
    }

    pub(super) fn lock_refs(&self) -> MutexGuard<'_, ()> {
        // The guarded state lives in the stores; a panic elsewhere leaves it valid.
        self.refs.lock().unwrap_or_else(|e| e.into_inner())
    }
}
