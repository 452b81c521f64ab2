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

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use pastiche_core::session::{
    AbortStep, ApplyStep, ClientRecord, DataDigest, LedgerRefusal, PrepareStep, Recovery, StageStep, StagedCounts,
};
use pastiche_core::{ChunkId, PublicKey};
use redb::{Database, ReadableTable};

use super::admission::{self, unix_now};
use super::error::{BuddyError, ChunkContext, DbContext, Result};
pub use super::handle::BuddyHandle;
use super::tables::*;
use super::throttle::{ThrottleStats, WorkThrottle};
use crate::repo::Repo;
use crate::store::ChunkStore;

/// Staging of one epoch buffered in a session.
#[derive(Debug, Default)]
pub(super) struct StageBuf {
    pub epoch: u64,
    pub objects: BTreeMap<Name, Vec<u8>>,
    pub deletes: BTreeSet<Name>,
    pub root: Option<Vec<u8>>,
    /// Bytes buffered (replaced values included: a bound, not an exact count).
    pub bytes: usize,
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
pub(super) struct Shared {
    chunks: ChunkSource,
    pub db: Database,
    pub own_key: PublicKey,
    default_quota: u64,
    /// The box's data directory (pairing invitations live there).
    dir: PathBuf,
    /// Free bytes the disk keeps for the box's own backups (0: no floor).
    min_free: std::sync::atomic::AtomicU64,
    /// Held while a client's references change, so that "add only if the
    /// count is 0" holds across concurrent sessions.
    refs: Mutex<()>,
    /// Chunk bytes all sessions' handles buffer (bounded by
    /// [`MAX_BUFFERED_BYTES`](super::tables::MAX_BUFFERED_BYTES)).
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

    /// An admitted client's account as a new session would see it, without
    /// changing anything; `None` for a key not admitted.
    pub fn client_record(&self, client: &PublicKey) -> Result<Option<ClientRecord>> {
        if self.shared.admission(client)?.is_none() {
            return Ok(None);
        }
        let rec = self.shared.read_rec(client)?;
        self.shared.account(client, &rec).map(Some)
    }

    /// How many committed metadata objects `client` has here, and their
    /// bytes (what its deletes free).
    pub fn client_objects(&self, client: &PublicKey) -> Result<(u64, u64)> {
        const C: &str = "counting objects";
        let txn = self.shared.db.begin_read().db(C)?;
        let (mut count, mut bytes) = (0u64, 0u64);
        for row in txn.open_table(OBJECTS).db(C)?.range(obj_range(client)).db(C)? {
            count += 1;
            bytes += row.db(C)?.1.value().len() as u64;
        }
        Ok((count, bytes))
    }

    /// Every admitted client, in key order.
    pub fn clients(&self) -> Result<Vec<ClientInfo>> {
        const C: &str = "listing clients";
        let admitted: Vec<(PublicKey, String, u64, u64)> = {
            let txn = self.shared.db.begin_read().db(C)?;
            let t = txn.open_table(ADMITTED).db(C)?;
            let mut out = Vec::new();
            for row in t.iter().db(C)? {
                let (k, v) = row.db(C)?;
                let (name, admitted, seen) = v.value();
                out.push((PublicKey(k.value()), name.to_string(), admitted, seen));
            }
            out
        };
        let mut out = Vec::with_capacity(admitted.len());
        for (key, name, admitted, last_seen) in admitted {
            let rec = self.shared.read_rec(&key)?;
            out.push(ClientInfo { key, name, admitted, last_seen, record: self.shared.account(&key, &rec)? });
        }
        Ok(out)
    }

    /// Admits `client` directly, as its owner (tests and tools; clients
    /// normally pair with a code).
    pub fn enroll(&self, client: &PublicKey, name: &str, quota: Option<u64>) -> Result<()> {
        self.shared.enroll(client, name, quota)
    }

    /// Sets an admitted client's own quota (`None`: back to the daemon's
    /// default). Chunks already stored stay even if over the new quota.
    pub fn set_quota(&self, client: &PublicKey, quota: Option<u64>) -> Result<()> {
        const C: &str = "setting a quota";
        if self.shared.admission(client)?.is_none() {
            return Err(BuddyError::NotAdmitted(*client));
        }
        let txn = begin_write(&self.shared.db, C)?;
        {
            let mut t = txn.open_table(CLIENTS).db(C)?;
            let mut rec = read_rec(&t, client)?.unwrap_or_default();
            rec.quota = quota;
            t.insert(&client.0, rec.to_val()).db(C)?;
        }
        txn.commit().db(C)
    }

    /// Revokes a client: it is refused from its next session on. With
    /// `drop_data`, everything it stored here is released too (chunks other
    /// owners reference stay).
    pub fn revoke(&self, client: &PublicKey, drop_data: bool) -> Result<()> {
        const C: &str = "revoking a client";
        if self.shared.admission(client)?.is_none() {
            return Err(BuddyError::NotAdmitted(*client));
        }
        if drop_data {
            let _refs = self.shared.lock_refs();
            self.shared.chunks().retain_only(client, &HashSet::new()).chunks("releasing every reference")?;
        }
        let txn = begin_write(&self.shared.db, C)?;
        {
            txn.open_table(ADMITTED).db(C)?.remove(&client.0).db(C)?;
            if drop_data {
                clear_range(&mut txn.open_table(OBJECTS).db(C)?, client, C)?;
                clear_range(&mut txn.open_table(CHUNK_NAMES).db(C)?, client, C)?;
                txn.open_table(ROOTS).db(C)?.remove(&client.0).db(C)?;
                clear_staging(&txn, client)?;
                txn.open_table(CLIENTS).db(C)?.remove(&client.0).db(C)?;
            }
        }
        txn.commit().db(C)
    }
}

impl BuddyStorage {
    /// Releases everything `client` stored here (its chunk references,
    /// objects, root and staging) and sets its epochs back to 0, keeping
    /// its admission and quota: at its next contact it sees epoch 0 below
    /// the one it committed, so it offers and ships everything again. The
    /// chunks no one else references are reclaimed by the next prune. Used
    /// for a decommissioned client and in a space crisis
    /// ([`lifecycle`](super::lifecycle)); returns the bytes it was charged.
    pub fn release(&self, client: &PublicKey) -> Result<u64> {
        const C: &str = "releasing a client's data";
        let _refs = self.shared.lock_refs();
        let used = self.shared.usage(client)?;
        self.shared.chunks().retain_only(client, &HashSet::new()).chunks("releasing every reference")?;
        let txn = begin_write(&self.shared.db, C)?;
        {
            let mut clients = txn.open_table(CLIENTS).db(C)?;
            let quota = read_rec(&clients, client)?.unwrap_or_default().quota;
            clear_range(&mut txn.open_table(OBJECTS).db(C)?, client, C)?;
            clear_range(&mut txn.open_table(CHUNK_NAMES).db(C)?, client, C)?;
            txn.open_table(ROOTS).db(C)?.remove(&client.0).db(C)?;
            clear_staging(&txn, client)?;
            clients.insert(&client.0, Rec { quota, ..Rec::default() }.to_val()).db(C)?;
        }
        txn.commit().db(C)?;
        Ok(used)
    }
}

/// An admitted client, as `pastiche clients list` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientInfo {
    /// Its key.
    pub key: PublicKey,
    /// The name given at the invitation.
    pub name: String,
    /// When it paired (Unix seconds).
    pub admitted: u64,
    /// When it last started a session (Unix seconds).
    pub last_seen: u64,
    /// Its account.
    pub record: ClientRecord,
}

impl Shared {
    pub(super) fn chunks(&self) -> &ChunkStore {
        self.chunks.get()
    }

    /// `(name, admitted at, last seen)` of an admitted client.
    pub(super) fn admission(&self, client: &PublicKey) -> Result<Option<(String, u64, u64)>> {
        const C: &str = "reading admissions";
        let txn = self.db.begin_read().db(C)?;
        let t = txn.open_table(ADMITTED).db(C)?;
        let row = t.get(&client.0).db(C)?;
        Ok(row.map(|g| {
            let (name, admitted, seen) = g.value();
            (name.to_string(), admitted, seen)
        }))
    }

    /// Records that an admitted client started a session now.
    pub(super) fn touch(&self, client: &PublicKey) -> Result<()> {
        const C: &str = "recording a session";
        let txn = begin_write(&self.db, C)?;
        {
            let mut t = txn.open_table(ADMITTED).db(C)?;
            let row = t.get(&client.0).db(C)?.map(|g| {
                let (name, admitted, _) = g.value();
                (name.to_string(), admitted)
            });
            if let Some((name, admitted)) = row {
                t.insert(&client.0, (name.as_str(), admitted, unix_now())).db(C)?;
            }
        }
        txn.commit().db(C)
    }

    /// Admits a client (its record starts empty, with `quota` if given).
    pub(super) fn enroll(&self, client: &PublicKey, name: &str, quota: Option<u64>) -> Result<()> {
        const C: &str = "admitting a client";
        if *client == self.own_key {
            return Err(BuddyError::OwnKey(*client));
        }
        let txn = begin_write(&self.db, C)?;
        {
            let now = unix_now();
            txn.open_table(ADMITTED).db(C)?.insert(&client.0, (name, now, now)).db(C)?;
            let mut clients = txn.open_table(CLIENTS).db(C)?;
            let mut rec = read_rec(&clients, client)?.unwrap_or_default();
            rec.quota = quota;
            clients.insert(&client.0, rec.to_val()).db(C)?;
        }
        txn.commit().db(C)
    }

    /// Spends a pairing code and admits `client` with what it grants.
    pub(super) fn admit(&self, client: &PublicKey, code: &str) -> Result<bool> {
        if *client == self.own_key {
            return Ok(false);
        }
        let Some(invite) = admission::redeem(&self.dir, code, unix_now())? else { return Ok(false) };
        self.enroll(client, &invite.name, invite.quota)?;
        Ok(true)
    }

    pub(super) fn lock_refs(&self) -> MutexGuard<'_, ()> {
        // The guarded state lives in the stores; a panic elsewhere leaves it valid.
        self.refs.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn quota(&self, rec: &Rec) -> u64 {
        rec.quota.unwrap_or(self.default_quota)
    }

    /// Bytes charged to `client`: the sealed bytes of the chunks it owns,
    /// and its committed and staged objects and roots.
    pub(super) fn usage(&self, client: &PublicKey) -> Result<u64> {
        const C: &str = "reading usage";
        let stats = self.chunks().stats().chunks(C)?;
        let chunks = stats.owners.iter().find(|o| o.owner == *client).map_or(0, |o| o.bytes);
        let txn = self.db.begin_read().db(C)?;
        let mut meta = 0u64;
        for table in [OBJECTS, STAGED_OBJECTS] {
            for row in txn.open_table(table).db(C)?.range(obj_range(client)).db(C)? {
                meta += row.db(C)?.1.value().len() as u64;
            }
        }
        if let Some(g) = txn.open_table(ROOTS).db(C)?.get(&client.0).db(C)? {
            meta += g.value().1.len() as u64;
        }
        if let Some(g) = txn.open_table(STAGED_ROOTS).db(C)?.get(&client.0).db(C)? {
            meta += g.value().len() as u64;
        }
        Ok(chunks + meta)
    }

    /// Whether `more` bytes can be written without taking the disk of the
    /// box's data below the free-space floor that protects its own backups.
    pub(super) fn disk_allows(&self, more: u64) -> Result<bool> {
        let floor = self.min_free.load(std::sync::atomic::Ordering::Relaxed);
        if floor == 0 {
            return Ok(true);
        }
        Ok(self.free_disk()? >= floor.saturating_add(more))
    }

    /// Bytes free for unprivileged writers on the disk of the box's data.
    pub(super) fn free_disk(&self) -> Result<u64> {
        let st = rustix::fs::statvfs(&self.dir).map_err(|e| BuddyError::FreeSpace(e.into()))?;
        Ok(st.f_bavail.saturating_mul(st.f_frsize))
    }

    pub(super) fn account(&self, client: &PublicKey, rec: &Rec) -> Result<ClientRecord> {
        Ok(ClientRecord {
            quota_bytes: self.quota(rec),
            used_bytes: self.usage(client)?,
            committed_epoch: rec.committed,
            staged_epoch: rec.staged,
        })
    }

    pub(super) fn read_rec(&self, client: &PublicKey) -> Result<Rec> {
        let txn = self.db.begin_read().db("starting a read")?;
        Ok(read_rec(&txn.open_table(CLIENTS).db("opening clients")?, client)?.unwrap_or_default())
    }

    pub(super) fn records(&self) -> Result<Vec<(PublicKey, Rec)>> {
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
    /// replacing the staging of any other unprepared epoch, as the ledger
    /// decides ([`Epochs::stage`]); with `prepare` (a commit), also prepares
    /// it or discards it ([`Epochs::prepare`]). Returns what is staged.
    pub(super) fn write_staging(
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
            let mut rec = read_rec(&clients, client)?.ok_or(BuddyError::NotAdmitted(*client))?;
            let refused = |why: LedgerRefusal| BuddyError::Ledger { client: *client, epoch, why };
            let has_staging = buf.is_some() || rec.staged == epoch;
            if has_staging {
                if let StageStep::Begin { .. } = rec.epochs().stage(epoch).map_err(refused)? {
                    clear_staging(&txn, client)?;
                }
                rec.set_epochs(rec.epochs().after_stage(epoch));
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
            let counts = if rec.staged == epoch {
                let root = roots.get(&client.0).db(C)?.map(|g| DataDigest::of(g.value()));
                StagedCounts {
                    objects: count_range(&objects, client, C)?,
                    deletes: count_range(&deletes, client, C)?,
                    root: root.is_some(),
                    // Only a commit compares the digest: it costs a pass
                    // over the staged data.
                    digest: match prepare {
                        Some(_) => staging_digest(&objects, &deletes, root, client, C)?,
                        None => [0; 32],
                    },
                }
            } else {
                StagedCounts::default()
            };
            drop((objects, deletes, roots));
            if let Some(expected) = prepare {
                let step = rec.epochs().prepare(epoch, counts, expected).map_err(refused)?;
                if step == PrepareStep::Discard {
                    // A staged set that differs from the signed commit is
                    // never applied, not even by recovery.
                    clear_staging(&txn, client)?;
                }
                rec.set_epochs(rec.epochs().after_prepare(step));
            }
            clients.insert(&client.0, rec.to_val()).db(C)?;
            counts
        };
        txn.commit().db(C)?;
        Ok(counts)
    }

    /// Applies a prepared epoch ([`Epochs::apply`]): releases the delete
    /// list's references, then in one transaction deletes the objects the
    /// delete list names, moves the staging into the committed tables and
    /// records the epoch. Idempotent: returns
    /// `false` when the epoch was already applied.
    pub(super) fn apply(&self, client: &PublicKey, epoch: u64) -> Result<bool> {
        const C: &str = "applying an epoch";
        let _refs = self.lock_refs();
        let refused = |why: LedgerRefusal| BuddyError::Ledger { client: *client, epoch, why };
        let deletes = {
            let txn = self.db.begin_read().db(C)?;
            let rec = read_rec(&txn.open_table(CLIENTS).db(C)?, client)?.unwrap_or_default();
            if rec.epochs().apply(epoch).map_err(refused)? == ApplyStep::AlreadyApplied {
                return Ok(false);
            }
            let names = txn.open_table(CHUNK_NAMES).db(C)?;
            let mut ids = Vec::new();
            for row in txn.open_table(STAGED_DELETES).db(C)?.range(obj_range(client)).db(C)? {
                let id = row.db(C)?.0.value().1;
                // The client's reference may be under the chunkId (bytes
                // equal to the box's own) or under its stored name.
                ids.push(ChunkId(id));
                if let Some(stored) = names.get((client.0, id)).db(C)? {
                    ids.push(ChunkId(stored.value()));
                }
            }
            ids
        };
        // Set semantics: the client's count is 0 or 1, so releasing again
        // after a crash finds nothing to release.
        if !deletes.is_empty() {
            self.chunks().release(client, &deletes).chunks("releasing deleted chunks")?;
        }
        let txn = begin_write(&self.db, C)?;
        {
            let mut clients = txn.open_table(CLIENTS).db(C)?;
            let mut rec = read_rec(&clients, client)?.unwrap_or_default();
            if rec.epochs().apply(epoch).map_err(refused)? == ApplyStep::AlreadyApplied {
                // Another session applied it meanwhile.
                return Ok(false);
            }
            let mut staged = Vec::new();
            for row in txn.open_table(STAGED_OBJECTS).db(C)?.range(obj_range(client)).db(C)? {
                let (k, v) = row.db(C)?;
                staged.push((k.value().1, v.value().to_vec()));
            }
            let mut objects = txn.open_table(OBJECTS).db(C)?;
            let mut names = txn.open_table(CHUNK_NAMES).db(C)?;
            // A deleted id is a chunk reference released, or one of the
            // client's objects it no longer references (PROTOCOL.md 4.3).
            for row in txn.open_table(STAGED_DELETES).db(C)?.range(obj_range(client)).db(C)? {
                let key = row.db(C)?.0.value();
                names.remove(key).db(C)?;
                objects.remove(key).db(C)?;
            }
            // Staged objects go in after the deletes: an object both put and
            // deleted in one epoch is kept.
            for (name, data) in &staged {
                objects.insert((client.0, *name), data.as_slice()).db(C)?;
            }
            let root = txn.open_table(STAGED_ROOTS).db(C)?.get(&client.0).db(C)?.map(|g| g.value().to_vec());
            if let Some(root) = root {
                txn.open_table(ROOTS).db(C)?.insert(&client.0, (epoch, root.as_slice())).db(C)?;
            }
            clear_staging(&txn, client)?;
            rec.set_epochs(rec.epochs().after_apply(epoch));
            clients.insert(&client.0, rec.to_val()).db(C)?;
        }
        txn.commit().db(C)?;
        Ok(true)
    }

    /// Discards the staging of `epoch` when the ledger says so
    /// ([`Epochs::abort`]: staged and unprepared). Returns whether anything
    /// was discarded.
    pub(super) fn abort(&self, client: &PublicKey, epoch: u64) -> Result<bool> {
        const C: &str = "aborting an epoch";
        if self.read_rec(client)?.epochs().abort(epoch) == AbortStep::Keep {
            return Ok(false);
        }
        let txn = begin_write(&self.db, C)?;
        {
            let mut clients = txn.open_table(CLIENTS).db(C)?;
            let mut rec = read_rec(&clients, client)?.unwrap_or_default();
            let step = rec.epochs().abort(epoch);
            if step == AbortStep::Keep {
                return Ok(false);
            }
            clear_staging(&txn, client)?;
            rec.set_epochs(rec.epochs().after_abort(step));
            clients.insert(&client.0, rec.to_val()).db(C)?;
        }
        txn.commit().db(C)?;
        Ok(true)
    }

    /// Releases every reference of the client, deletes its objects, root and
    /// staging, and records `epoch` as committed ([`Epochs::drop_all`]).
    pub(super) fn drop_all(&self, client: &PublicKey, epoch: u64) -> Result<()> {
        const C: &str = "dropping a client";
        let _refs = self.lock_refs();
        let rec = self.read_rec(client)?;
        let refused = |why: LedgerRefusal| BuddyError::Ledger { client: *client, epoch, why };
        rec.epochs().drop_all(epoch).map_err(refused)?;
        // References first: a crash before the transaction below leaves the
        // drop unrecorded, and the client sends it again.
        self.chunks().retain_only(client, &HashSet::new()).chunks("releasing every reference")?;
        let txn = begin_write(&self.db, C)?;
        {
            let mut clients = txn.open_table(CLIENTS).db(C)?;
            let mut rec = read_rec(&clients, client)?.unwrap_or_default();
            clear_range(&mut txn.open_table(OBJECTS).db(C)?, client, C)?;
            clear_range(&mut txn.open_table(CHUNK_NAMES).db(C)?, client, C)?;
            txn.open_table(ROOTS).db(C)?.remove(&client.0).db(C)?;
            clear_staging(&txn, client)?;
            if let Ok(after) = rec.epochs().drop_all(epoch) {
                rec.set_epochs(after);
            }
            clients.insert(&client.0, rec.to_val()).db(C)?;
        }
        txn.commit().db(C)
    }
}
