//! The appliance's [`BuddyStore`]: other boxes' sealed chunks in the box's
//! own [`ChunkStore`], per-client state in `DATA/buddy.redb`.
//!
//! Chunks go into the same store as the box's own chunks, with the client's
//! public key as owner, so a chunk held for the box itself or for another
//! client is never stored twice: only the new client's reference is added.
//! A client's references are a **set**: each is added only while the client's
//! count is 0, so a client's count is 0 or 1 and releasing is idempotent
//! (which is what makes [`BuddyHandle::apply`] safe to repeat after a
//! crash). Every reference change for a client goes through one
//! reference lock, which is what keeps the count at most 1 across concurrent
//! sessions.
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
//! meta             "format" -> 1
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

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use pastiche_core::session::{BuddyStore, ClientRecord, PutOutcome, StagedCounts};
use pastiche_core::wire::IdList;
use pastiche_core::{ChunkId, PublicKey};
use redb::{Database, ReadableTable, TableDefinition, WriteTransaction};

use crate::repo::Repo;
use crate::store::pack::{MAX_SEALED, MIN_SEALED};
use crate::store::{ChunkStore, StoreError};

/// The per-client database's file name in the box's data directory.
pub const BUDDY_DB_FILE: &str = "buddy.redb";

/// Chunks a session may buffer before they are written without waiting for
/// a `Flush` (bounds a session's memory).
const MAX_PENDING_BYTES: u64 = 128 << 20;
/// Offered ids a session may buffer before their references are written.
const MAX_PENDING_REFS: usize = 16 * 1024;
/// Staged bytes a session may buffer before they are written (unprepared).
const MAX_STAGE_BYTES: usize = 4 << 20;
/// redb page cache for `buddy.redb`.
const CACHE_BYTES: usize = 16 << 20;
/// The on-disk format of `buddy.redb`.
const FORMAT_VERSION: u64 = 1;

type Key = [u8; 32];
type Name = [u8; 20];
type ObjKey = (Key, Name);
/// `(quota, quota is custom, committed epoch, staged epoch, prepared)`.
type RecVal = (u64, u8, u64, u64, u8);

const CLIENTS: TableDefinition<Key, RecVal> = TableDefinition::new("clients");
const OBJECTS: TableDefinition<ObjKey, &[u8]> = TableDefinition::new("objects");
const ROOTS: TableDefinition<Key, (u64, &[u8])> = TableDefinition::new("roots");
const STAGED_OBJECTS: TableDefinition<ObjKey, &[u8]> = TableDefinition::new("staged_objects");
const STAGED_DELETES: TableDefinition<ObjKey, ()> = TableDefinition::new("staged_deletes");
const STAGED_ROOTS: TableDefinition<Key, &[u8]> = TableDefinition::new("staged_roots");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

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
    /// A chunk reported present disappeared before the client's reference
    /// was added (compacted in between); the client offers it again.
    #[error("chunk {0} vanished before the client's reference was added")]
    Vanished(ChunkId),
    /// `apply` for an epoch that is not prepared (and not already applied).
    #[error("client {client}: epoch {epoch} is not prepared (staged epoch {staged}, prepared: {prepared})")]
    NotPrepared {
        /// The client.
        client: PublicKey,
        /// The epoch asked for.
        epoch: u64,
        /// The epoch staged.
        staged: u64,
        /// Whether it is prepared.
        prepared: bool,
    },
    /// An epoch at or below the committed one (another session of the same
    /// client committed meanwhile).
    #[error("client {client}: epoch {epoch} is not above the committed epoch {committed}")]
    Stale {
        /// The client.
        client: PublicKey,
        /// The epoch asked for.
        epoch: u64,
        /// The committed epoch.
        committed: u64,
    },
    /// Staging for a new epoch while another is prepared but not applied.
    #[error("client {client}: epoch {prepared} is prepared and must be applied before epoch {epoch} is staged")]
    PreparedPending {
        /// The client.
        client: PublicKey,
        /// The prepared epoch.
        prepared: u64,
        /// The epoch asked for.
        epoch: u64,
    },
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

trait DbContext<T> {
    fn db(self, context: &'static str) -> Result<T>;
}

impl<T, E: Into<redb::Error>> DbContext<T> for std::result::Result<T, E> {
    fn db(self, context: &'static str) -> Result<T> {
        self.map_err(|e| BuddyError::Db { context, source: Box::new(e.into()) })
    }
}

trait ChunkContext<T> {
    fn chunks(self, context: &'static str) -> Result<T>;
}

impl<T> ChunkContext<T> for std::result::Result<T, StoreError> {
    fn chunks(self, context: &'static str) -> Result<T> {
        self.map_err(|source| BuddyError::Chunks { context, source })
    }
}

/// A client's row in `clients`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Rec {
    /// A quota set for this client; `None` follows the daemon's default.
    quota: Option<u64>,
    committed: u64,
    staged: u64,
    prepared: bool,
}

impl Rec {
    fn from_val((quota, custom, committed, staged, prepared): RecVal) -> Rec {
        Rec { quota: (custom != 0).then_some(quota), committed, staged, prepared: prepared != 0 }
    }

    fn to_val(self) -> RecVal {
        (self.quota.unwrap_or(0), u8::from(self.quota.is_some()), self.committed, self.staged, u8::from(self.prepared))
    }
}

fn read_rec(t: &impl ReadableTable<Key, RecVal>, client: &PublicKey) -> Result<Option<Rec>> {
    Ok(t.get(&client.0).db("reading a client record")?.map(|g| Rec::from_val(g.value())))
}

fn obj_range(client: &PublicKey) -> std::ops::RangeInclusive<ObjKey> {
    (client.0, [0u8; 20])..=(client.0, [0xffu8; 20])
}

/// Removes every row of `client` from a `(client, name)`-keyed table.
fn clear_range<V: redb::Value + 'static>(
    t: &mut redb::Table<'_, ObjKey, V>,
    client: &PublicKey,
    what: &'static str,
) -> Result<u64> {
    let mut keys = Vec::new();
    for row in t.range(obj_range(client)).db(what)? {
        let (k, _) = row.db(what)?;
        keys.push(k.value());
    }
    for k in &keys {
        t.remove(k).db(what)?;
    }
    Ok(keys.len() as u64)
}

fn count_range<V: redb::Value + 'static>(
    t: &impl ReadableTable<ObjKey, V>,
    client: &PublicKey,
    what: &'static str,
) -> Result<u32> {
    let mut n = 0u32;
    for row in t.range(obj_range(client)).db(what)? {
        row.db(what)?;
        n = n.saturating_add(1);
    }
    Ok(n)
}

/// Starts a write the way every buddy write must: fsync'd at commit, with
/// two-phase commit (a torn commit is never mistaken for a valid one) and
/// quick repair (a restart after a crash does not walk the whole file).
fn begin_write(db: &Database, what: &'static str) -> Result<WriteTransaction> {
    let mut txn = db.begin_write().db(what)?;
    txn.set_two_phase_commit(true);
    txn.set_quick_repair(true);
    Ok(txn)
}

/// Deletes the client's staging (objects, deletes, root) in `txn`.
fn clear_staging(txn: &WriteTransaction, client: &PublicKey) -> Result<()> {
    const C: &str = "clearing staging";
    clear_range(&mut txn.open_table(STAGED_OBJECTS).db(C)?, client, C)?;
    clear_range(&mut txn.open_table(STAGED_DELETES).db(C)?, client, C)?;
    txn.open_table(STAGED_ROOTS).db(C)?.remove(&client.0).db(C)?;
    Ok(())
}

/// Staging of one epoch buffered in a session.
#[derive(Debug, Default)]
struct StageBuf {
    epoch: u64,
    objects: BTreeMap<Name, Vec<u8>>,
    deletes: BTreeSet<Name>,
    root: Option<Vec<u8>>,
    /// Bytes buffered (replaced values included: a bound, not an exact count).
    bytes: usize,
}

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
struct Shared {
    chunks: ChunkSource,
    db: Database,
    own_key: PublicKey,
    default_quota: u64,
    /// Held while a client's references change, so that "add only if the
    /// count is 0" holds across concurrent sessions.
    refs: Mutex<()>,
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
    shared: Arc<Shared>,
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
            let mut meta = txn.open_table(META).db(C)?;
            let found = meta.get("format").db(C)?.map(|g| g.value());
            match found {
                None => {
                    meta.insert("format", FORMAT_VERSION).db(C)?;
                }
                Some(FORMAT_VERSION) => {}
                Some(found) => return Err(BuddyError::UnsupportedFormat { found, supported: FORMAT_VERSION }),
            }
        }
        txn.commit().db("initialising")?;
        let shared = Shared { chunks, db, own_key, default_quota, refs: Mutex::new(()) };
        Ok(BuddyStorage { shared: Arc::new(shared) })
    }

    /// A handle for one session.
    pub fn session(&self) -> BuddyHandle {
        BuddyHandle {
            shared: self.shared.clone(),
            client: None,
            quota: 0,
            usage_base: None,
            pending: Vec::new(),
            pending_ids: HashSet::new(),
            pending_bytes: 0,
            adds: BTreeSet::new(),
            puts: 0,
            stage: None,
            prepared_here: None,
            read_buf: Vec::new(),
            last_error: None,
        }
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
            if rec.staged == 0 {
                continue;
            }
            if rec.prepared {
                self.shared.apply(&client, rec.staged)?;
                report.applied.push((client, rec.staged));
            } else if self.shared.abort(&client, rec.staged, false)? {
                report.discarded.push((client, rec.staged));
            }
        }
        Ok(report)
    }

    /// A client's account as a new session would see it, without changing
    /// anything; `None` for a client never seen.
    pub fn client_record(&self, client: &PublicKey) -> Result<Option<ClientRecord>> {
        let txn = self.shared.db.begin_read().db("starting a read")?;
        let rec = read_rec(&txn.open_table(CLIENTS).db("opening clients")?, client)?;
        rec.map(|rec| self.shared.account(client, &rec)).transpose()
    }

    /// Every known client with its account, in key order.
    pub fn clients(&self) -> Result<Vec<(PublicKey, ClientRecord)>> {
        self.shared.records()?.into_iter().map(|(k, rec)| Ok((k, self.shared.account(&k, &rec)?))).collect()
    }

    /// Sets a client's own quota (`None`: back to the daemon's default).
    /// Chunks already stored stay even if over the new quota.
    pub fn set_quota(&self, client: &PublicKey, quota: Option<u64>) -> Result<()> {
        let txn = begin_write(&self.shared.db, "setting a quota")?;
        {
            let mut t = txn.open_table(CLIENTS).db("setting a quota")?;
            let mut rec = read_rec(&t, client)?.unwrap_or_default();
            rec.quota = quota;
            t.insert(&client.0, rec.to_val()).db("setting a quota")?;
        }
        txn.commit().db("setting a quota")
    }
}

impl Shared {
    fn chunks(&self) -> &ChunkStore {
        self.chunks.get()
    }

    fn lock_refs(&self) -> MutexGuard<'_, ()> {
        // The guarded state lives in the stores; a panic elsewhere leaves it valid.
        self.refs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn quota(&self, rec: &Rec) -> u64 {
        rec.quota.unwrap_or(self.default_quota)
    }

    /// Sealed bytes of the chunks `client` owns.
    fn usage(&self, client: &PublicKey) -> Result<u64> {
        let stats = self.chunks().stats().chunks("reading usage")?;
        Ok(stats.owners.iter().find(|o| o.owner == *client).map_or(0, |o| o.bytes))
    }

    fn account(&self, client: &PublicKey, rec: &Rec) -> Result<ClientRecord> {
        Ok(ClientRecord {
            quota_bytes: self.quota(rec),
            used_bytes: self.usage(client)?,
            committed_epoch: rec.committed,
            staged_epoch: rec.staged,
        })
    }

    fn read_rec(&self, client: &PublicKey) -> Result<Rec> {
        let txn = self.db.begin_read().db("starting a read")?;
        Ok(read_rec(&txn.open_table(CLIENTS).db("opening clients")?, client)?.unwrap_or_default())
    }

    fn records(&self) -> Result<Vec<(PublicKey, Rec)>> {
        let txn = self.db.begin_read().db("starting a read")?;
        let t = txn.open_table(CLIENTS).db("opening clients")?;
        let mut out = Vec::new();
        for row in t.iter().db("listing clients")? {
            let (k, v) = row.db("listing clients")?;
            out.push((PublicKey(k.value()), Rec::from_val(v.value())));
        }
        Ok(out)
    }

    /// Writes `buf` (if any) as the staging of `epoch` in one transaction,
    /// replacing the staging of any other unprepared epoch; with `prepare`,
    /// also marks the epoch prepared (only if a root is staged: the session
    /// aborts a commit without one). Returns what is staged.
    fn write_staging(
        &self,
        client: &PublicKey,
        epoch: u64,
        buf: Option<&StageBuf>,
        prepare: Option<StagedCounts>,
    ) -> Result<StagedCounts> {
        const C: &str = "writing staging";
        let txn = begin_write(&self.db, C)?;
        let counts = {
            let mut clients = txn.open_table(CLIENTS).db(C)?;
            let mut rec = read_rec(&clients, client)?.unwrap_or_default();
            if epoch <= rec.committed {
                return Err(BuddyError::Stale { client: *client, epoch, committed: rec.committed });
            }
            if rec.prepared && rec.staged != epoch {
                return Err(BuddyError::PreparedPending { client: *client, prepared: rec.staged, epoch });
            }
            if rec.staged != epoch {
                clear_staging(&txn, client)?;
            }
            let mut objects = txn.open_table(STAGED_OBJECTS).db(C)?;
            let mut deletes = txn.open_table(STAGED_DELETES).db(C)?;
            let mut roots = txn.open_table(STAGED_ROOTS).db(C)?;
            if let Some(buf) = buf {
                for (name, data) in &buf.objects {
                    objects.insert((client.0, *name), data.as_slice()).db(C)?;
                }
                for id in &buf.deletes {
                    deletes.insert((client.0, *id), ()).db(C)?;
                }
                if let Some(root) = &buf.root {
                    roots.insert(&client.0, root.as_slice()).db(C)?;
                }
            }
            let counts = StagedCounts {
                objects: count_range(&objects, client, C)?,
                deletes: count_range(&deletes, client, C)?,
                root: roots.get(&client.0).db(C)?.is_some(),
            };
            rec.staged = epoch;
            // Prepared (applied even by recovery) only when the staged set is
            // exactly what the client's signed commit announced.
            if prepare == Some(counts) {
                rec.prepared = true;
            }
            clients.insert(&client.0, rec.to_val()).db(C)?;
            counts
        };
        txn.commit().db(C)?;
        Ok(counts)
    }

    /// Applies a prepared epoch: releases the delete list's references, then
    /// in one transaction moves the staging into the committed tables and
    /// records the epoch. Idempotent: returns `false` when the epoch was
    /// already applied.
    fn apply(&self, client: &PublicKey, epoch: u64) -> Result<bool> {
        const C: &str = "applying an epoch";
        let _refs = self.lock_refs();
        let (rec, deletes) = {
            let txn = self.db.begin_read().db(C)?;
            let rec = read_rec(&txn.open_table(CLIENTS).db(C)?, client)?.unwrap_or_default();
            let mut ids = Vec::new();
            if rec.prepared && rec.staged == epoch {
                for row in txn.open_table(STAGED_DELETES).db(C)?.range(obj_range(client)).db(C)? {
                    ids.push(ChunkId(row.db(C)?.0.value().1));
                }
            }
            (rec, ids)
        };
        if !(rec.prepared && rec.staged == epoch) {
            if rec.committed >= epoch {
                return Ok(false);
            }
            return Err(BuddyError::NotPrepared { client: *client, epoch, staged: rec.staged, prepared: rec.prepared });
        }
        // Set semantics: the client's count is 0 or 1, so releasing again
        // after a crash finds nothing to release.
        if !deletes.is_empty() {
            self.chunks().release(client, &deletes).chunks("releasing deleted chunks")?;
        }
        let txn = begin_write(&self.db, C)?;
        {
            let mut clients = txn.open_table(CLIENTS).db(C)?;
            let mut rec = read_rec(&clients, client)?.unwrap_or_default();
            if !(rec.prepared && rec.staged == epoch) {
                // Another session applied it meanwhile.
                return Ok(false);
            }
            let mut staged = Vec::new();
            for row in txn.open_table(STAGED_OBJECTS).db(C)?.range(obj_range(client)).db(C)? {
                let (k, v) = row.db(C)?;
                staged.push((k.value().1, v.value().to_vec()));
            }
            let mut objects = txn.open_table(OBJECTS).db(C)?;
            for (name, data) in &staged {
                objects.insert((client.0, *name), data.as_slice()).db(C)?;
            }
            let root = txn.open_table(STAGED_ROOTS).db(C)?.get(&client.0).db(C)?.map(|g| g.value().to_vec());
            if let Some(root) = root {
                txn.open_table(ROOTS).db(C)?.insert(&client.0, (epoch, root.as_slice())).db(C)?;
            }
            clear_staging(&txn, client)?;
            rec.committed = epoch;
            rec.staged = 0;
            rec.prepared = false;
            clients.insert(&client.0, rec.to_val()).db(C)?;
        }
        txn.commit().db(C)?;
        Ok(true)
    }

    /// Discards the staging of `epoch` if it is staged and unprepared (or
    /// prepared, with `force`: the session that prepared it refuses the
    /// commit). Returns whether anything was discarded.
    fn abort(&self, client: &PublicKey, epoch: u64, force: bool) -> Result<bool> {
        const C: &str = "aborting an epoch";
        let rec = self.read_rec(client)?;
        if epoch == 0 || rec.staged != epoch || (rec.prepared && !force) {
            return Ok(false);
        }
        let txn = begin_write(&self.db, C)?;
        {
            let mut clients = txn.open_table(CLIENTS).db(C)?;
            let mut rec = read_rec(&clients, client)?.unwrap_or_default();
            if rec.staged != epoch || (rec.prepared && !force) {
                return Ok(false);
            }
            clear_staging(&txn, client)?;
            rec.staged = 0;
            rec.prepared = false;
            clients.insert(&client.0, rec.to_val()).db(C)?;
        }
        txn.commit().db(C)?;
        Ok(true)
    }

    /// Releases every reference of the client, deletes its objects, root and
    /// staging, and records `epoch` as committed.
    fn drop_all(&self, client: &PublicKey, epoch: u64) -> Result<()> {
        const C: &str = "dropping a client";
        let _refs = self.lock_refs();
        let rec = self.read_rec(client)?;
        if epoch <= rec.committed {
            return Err(BuddyError::Stale { client: *client, epoch, committed: rec.committed });
        }
        // References first: a crash before the transaction below leaves the
        // drop unrecorded, and the client sends it again.
        self.chunks().retain_only(client, &HashSet::new()).chunks("releasing every reference")?;
        let txn = begin_write(&self.db, C)?;
        {
            let mut clients = txn.open_table(CLIENTS).db(C)?;
            let mut rec = read_rec(&clients, client)?.unwrap_or_default();
            clear_range(&mut txn.open_table(OBJECTS).db(C)?, client, C)?;
            txn.open_table(ROOTS).db(C)?.remove(&client.0).db(C)?;
            clear_staging(&txn, client)?;
            rec.committed = rec.committed.max(epoch);
            rec.staged = 0;
            rec.prepared = false;
            clients.insert(&client.0, rec.to_val()).db(C)?;
        }
        txn.commit().db(C)
    }
}

/// One session's view of the buddy store: the [`BuddyStore`] a
/// [`BuddySession`](pastiche_core::session::BuddySession) drives. Chunks and
/// staging are buffered here until `flush` or `prepare`; whatever is
/// buffered when the handle is dropped is lost, as the protocol allows.
pub struct BuddyHandle {
    shared: Arc<Shared>,
    /// The authenticated client (set by [`BuddyStore::client`]).
    client: Option<PublicKey>,
    quota: u64,
    /// The client's usage in the chunk store, read lazily.
    usage_base: Option<u64>,
    pending: Vec<(ChunkId, Vec<u8>)>,
    pending_ids: HashSet<ChunkId>,
    pending_bytes: u64,
    /// Offered ids the store holds, to reference at the next flush.
    adds: BTreeSet<ChunkId>,
    /// Chunks accepted since the last flush.
    puts: u32,
    stage: Option<StageBuf>,
    /// An epoch this handle prepared and has not applied.
    prepared_here: Option<u64>,
    read_buf: Vec<u8>,
    last_error: Option<String>,
}

impl std::fmt::Debug for BuddyHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuddyHandle").field("client", &self.client).finish_non_exhaustive()
    }
}

impl BuddyHandle {
    /// The description of the last error a store method returned (the
    /// session only reports `Internal` to the peer; this is for the log).
    pub fn take_error(&mut self) -> Option<String> {
        self.last_error.take()
    }

    /// The client this handle serves, once authenticated.
    pub fn client_key(&self) -> Option<PublicKey> {
        self.client
    }

    fn note<T>(&mut self, r: Result<T>) -> Result<T> {
        if let Err(e) = &r {
            self.last_error = Some(e.to_string());
        }
        r
    }

    fn bind(&mut self, client: &PublicKey) -> Result<()> {
        if *client == self.shared.own_key {
            return Err(BuddyError::OwnKey(*client));
        }
        match self.client {
            Some(bound) if bound != *client => Err(BuddyError::WrongClient { bound, asked: *client }),
            _ => {
                self.client = Some(*client);
                Ok(())
            }
        }
    }

    fn client_inner(&mut self, client: &PublicKey) -> Result<ClientRecord> {
        self.bind(client)?;
        let mut rec = self.shared.read_rec(client)?;
        if rec.prepared {
            // Left by a session that died between phases: roll it forward
            // now, so the client sees the epoch committed.
            self.shared.apply(client, rec.staged)?;
            rec = self.shared.read_rec(client)?;
        }
        let account = self.shared.account(client, &rec)?;
        self.quota = account.quota_bytes;
        self.usage_base = Some(account.used_bytes);
        Ok(account)
    }

    fn put_inner(&mut self, client: &PublicKey, id: &ChunkId, sealed: &[u8]) -> Result<PutOutcome> {
        self.bind(client)?;
        if !(MIN_SEALED..=MAX_SEALED).contains(&sealed.len()) {
            return Err(BuddyError::Chunks {
                context: "accepting a chunk",
                source: StoreError::BadChunkLen { id: *id, len: sealed.len() },
            });
        }
        if self.pending_ids.contains(id) {
            self.puts = self.puts.saturating_add(1);
            return Ok(PutOutcome::Stored);
        }
        if self.shared.chunks().refcount(client, id).chunks("reading a reference")? > 0 {
            // Already the client's: nothing to store or charge.
            self.puts = self.puts.saturating_add(1);
            return Ok(PutOutcome::Stored);
        }
        let base = match self.usage_base {
            Some(u) => u,
            None => {
                let u = self.shared.usage(client)?;
                self.usage_base = Some(u);
                u
            }
        };
        let len = sealed.len() as u64;
        if base.saturating_add(self.pending_bytes).saturating_add(len) > self.quota {
            return Ok(PutOutcome::QuotaExceeded);
        }
        self.pending.push((*id, sealed.to_vec()));
        self.pending_ids.insert(*id);
        self.adds.remove(id);
        self.pending_bytes += len;
        self.puts = self.puts.saturating_add(1);
        if self.pending_bytes >= MAX_PENDING_BYTES {
            self.write_chunks(client)?;
        }
        Ok(PutOutcome::Stored)
    }

    /// Writes buffered chunks and references (durable on return).
    fn write_chunks(&mut self, client: &PublicKey) -> Result<()> {
        if self.pending.is_empty() && self.adds.is_empty() {
            return Ok(());
        }
        let shared = self.shared.clone();
        let chunks = shared.chunks();
        let _refs = shared.lock_refs();
        let mut items: Vec<(ChunkId, &[u8])> = Vec::with_capacity(self.pending.len());
        for (id, data) in &self.pending {
            if chunks.refcount(client, id).chunks("reading a reference")? == 0 {
                items.push((*id, data.as_slice()));
            }
        }
        chunks.put_batch(client, &items).chunks("storing chunks")?;
        let mut adds = Vec::with_capacity(self.adds.len());
        for id in &self.adds {
            if chunks.refcount(client, id).chunks("reading a reference")? == 0 {
                adds.push(*id);
            }
        }
        if !adds.is_empty() {
            let s = chunks.add_refs(client, &adds).chunks("adding references")?;
            if let Some(id) = s.missing.first() {
                return Err(BuddyError::Vanished(*id));
            }
        }
        self.pending.clear();
        self.pending_ids.clear();
        self.pending_bytes = 0;
        self.adds.clear();
        self.usage_base = None;
        Ok(())
    }

    /// The buffer for `epoch`, replacing one for another epoch.
    fn stage_buf(&mut self, client: &PublicKey, epoch: u64) -> Result<&mut StageBuf> {
        self.bind(client)?;
        if self.stage.as_ref().is_none_or(|s| s.epoch != epoch) {
            self.stage = Some(StageBuf { epoch, ..StageBuf::default() });
        }
        // Just set above when absent.
        self.stage.as_mut().ok_or(BuddyError::NoClient)
    }

    /// Writes the staging buffer (unprepared) if it grew too big.
    fn maybe_write_stage(&mut self, client: &PublicKey) -> Result<()> {
        if self.stage.as_ref().is_some_and(|s| s.bytes >= MAX_STAGE_BYTES) {
            if let Some(buf) = self.stage.take() {
                self.shared.write_staging(client, buf.epoch, Some(&buf), None)?;
            }
        }
        Ok(())
    }

    fn flush_inner(&mut self) -> Result<u32> {
        let Some(client) = self.client else {
            return Ok(std::mem::take(&mut self.puts));
        };
        self.write_chunks(&client)?;
        if let Some(buf) = self.stage.take() {
            self.shared.write_staging(&client, buf.epoch, Some(&buf), None)?;
        }
        Ok(std::mem::take(&mut self.puts))
    }

    fn prepare_inner(&mut self, client: &PublicKey, epoch: u64, expected: StagedCounts) -> Result<StagedCounts> {
        self.bind(client)?;
        let buf = self.stage.take().filter(|s| s.epoch == epoch);
        let counts = self.shared.write_staging(client, epoch, buf.as_ref(), Some(expected))?;
        if counts == expected {
            self.prepared_here = Some(epoch);
        }
        Ok(counts)
    }

    fn apply_inner(&mut self, client: &PublicKey, epoch: u64) -> Result<()> {
        self.bind(client)?;
        self.shared.apply(client, epoch)?;
        if self.stage.as_ref().is_some_and(|s| s.epoch <= epoch) {
            self.stage = None;
        }
        self.prepared_here = None;
        self.usage_base = None;
        Ok(())
    }

    fn abort_inner(&mut self, client: &PublicKey, epoch: u64) -> Result<()> {
        self.bind(client)?;
        if self.stage.as_ref().is_some_and(|s| s.epoch == epoch) {
            self.stage = None;
        }
        let force = self.prepared_here == Some(epoch);
        self.shared.abort(client, epoch, force)?;
        if force {
            self.prepared_here = None;
        }
        Ok(())
    }

    fn get_chunk_inner(&mut self, id: &ChunkId, out: &mut [u8]) -> Result<Option<usize>> {
        let client = self.client.ok_or(BuddyError::NoClient)?;
        let chunks = self.shared.chunks();
        // Only the client's own chunks are served.
        if chunks.refcount(&client, id).chunks("reading a reference")? == 0 {
            return Ok(None);
        }
        match chunks.get_into(id, &mut self.read_buf) {
            Ok(()) => {}
            Err(StoreError::NotFound(_)) => return Ok(None),
            Err(source) => return Err(BuddyError::Chunks { context: "reading a chunk", source }),
        }
        copy_out(&self.read_buf, out, "chunk").map(Some)
    }

    fn get_object_inner(&mut self, client: &PublicKey, name: &Name, out: &mut [u8]) -> Result<Option<usize>> {
        const C: &str = "reading an object";
        self.bind(client)?;
        let txn = self.shared.db.begin_read().db(C)?;
        let t = txn.open_table(OBJECTS).db(C)?;
        let Some(g) = t.get((client.0, *name)).db(C)? else {
            return Ok(None);
        };
        copy_out(g.value(), out, "object").map(Some)
    }

    fn get_root_inner(&mut self, client: &PublicKey, out: &mut [u8]) -> Result<Option<(u64, usize)>> {
        const C: &str = "reading a root";
        self.bind(client)?;
        let txn = self.shared.db.begin_read().db(C)?;
        let t = txn.open_table(ROOTS).db(C)?;
        let Some(g) = t.get(&client.0).db(C)? else {
            return Ok(None);
        };
        let (epoch, data) = g.value();
        Ok(Some((epoch, copy_out(data, out, "root")?)))
    }

    fn drop_inner(&mut self, client: &PublicKey, epoch: u64) -> Result<()> {
        self.bind(client)?;
        self.pending.clear();
        self.pending_ids.clear();
        self.pending_bytes = 0;
        self.adds.clear();
        self.stage = None;
        self.prepared_here = None;
        self.shared.drop_all(client, epoch)?;
        self.usage_base = None;
        Ok(())
    }
}

fn copy_out(data: &[u8], out: &mut [u8], what: &'static str) -> Result<usize> {
    let cap = out.len();
    let slot = out.get_mut(..data.len()).ok_or(BuddyError::BufferTooSmall { what, len: data.len(), cap })?;
    slot.copy_from_slice(data);
    Ok(data.len())
}

impl BuddyStore for BuddyHandle {
    type Error = BuddyError;

    fn client(&mut self, client: &PublicKey) -> Result<ClientRecord> {
        let r = self.client_inner(client);
        self.note(r)
    }

    fn has_chunk(&mut self, id: &ChunkId) -> Result<bool> {
        let r = self.shared.chunks().contains(id).chunks("looking up a chunk");
        self.note(r)
    }

    fn add_owner(&mut self, client: &PublicKey, id: &ChunkId) -> Result<()> {
        let r = self.bind(client).and_then(|()| {
            if !self.pending_ids.contains(id) {
                self.adds.insert(*id);
            }
            if self.adds.len() >= MAX_PENDING_REFS {
                self.write_chunks(client)?;
            }
            Ok(())
        });
        self.note(r)
    }

    fn put_chunk(&mut self, client: &PublicKey, id: &ChunkId, sealed: &[u8]) -> Result<PutOutcome> {
        let r = self.put_inner(client, id, sealed);
        self.note(r)
    }

    fn flush(&mut self) -> Result<u32> {
        let r = self.flush_inner();
        self.note(r)
    }

    fn get_chunk(&mut self, id: &ChunkId, out: &mut [u8]) -> Result<Option<usize>> {
        let r = self.get_chunk_inner(id, out);
        self.note(r)
    }

    fn stage_object(&mut self, client: &PublicKey, epoch: u64, name: &[u8; 20], data: &[u8]) -> Result<()> {
        let r = self.stage_buf(client, epoch).map(|buf| {
            buf.bytes = buf.bytes.saturating_add(data.len() + 20);
            buf.objects.insert(*name, data.to_vec());
        });
        let r = r.and_then(|()| self.maybe_write_stage(client));
        self.note(r)
    }

    fn stage_deletes(&mut self, client: &PublicKey, epoch: u64, ids: IdList<'_>) -> Result<()> {
        let r = self.stage_buf(client, epoch).map(|buf| {
            buf.bytes = buf.bytes.saturating_add(ids.as_bytes().len());
            buf.deletes.extend(ids.iter());
        });
        let r = r.and_then(|()| self.maybe_write_stage(client));
        self.note(r)
    }

    fn stage_root(&mut self, client: &PublicKey, epoch: u64, data: &[u8]) -> Result<()> {
        let r = self.stage_buf(client, epoch).map(|buf| {
            buf.bytes = buf.bytes.saturating_add(data.len());
            buf.root = Some(data.to_vec());
        });
        let r = r.and_then(|()| self.maybe_write_stage(client));
        self.note(r)
    }

    fn prepare(&mut self, client: &PublicKey, epoch: u64, expected: StagedCounts) -> Result<StagedCounts> {
        let r = self.prepare_inner(client, epoch, expected);
        self.note(r)
    }

    fn apply(&mut self, client: &PublicKey, epoch: u64) -> Result<()> {
        let r = self.apply_inner(client, epoch);
        self.note(r)
    }

    fn abort(&mut self, client: &PublicKey, epoch: u64) -> Result<()> {
        let r = self.abort_inner(client, epoch);
        self.note(r)
    }

    fn get_object(&mut self, client: &PublicKey, name: &[u8; 20], out: &mut [u8]) -> Result<Option<usize>> {
        let r = self.get_object_inner(client, name, out);
        self.note(r)
    }

    fn get_root(&mut self, client: &PublicKey, out: &mut [u8]) -> Result<Option<(u64, usize)>> {
        let r = self.get_root_inner(client, out);
        self.note(r)
    }

    fn drop_all(&mut self, client: &PublicKey, epoch: u64) -> Result<()> {
        let r = self.drop_inner(client, epoch);
        self.note(r)
    }
}
