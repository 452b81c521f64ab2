//! The tables of `buddy.redb` and the small helpers every write uses.

use pastiche_core::session::{Epochs, StagingDigest};
use pastiche_core::PublicKey;
use redb::{Database, ReadableTable, TableDefinition, WriteTransaction};

use super::error::{DbContext, Result};

/// The per-client database's file name in the box's data directory.
pub const BUDDY_DB_FILE: &str = "buddy.redb";

/// Chunks a session may buffer before they are written without waiting for
/// a `Flush` (bounds a session's memory).
pub(super) const MAX_PENDING_BYTES: u64 = 16 << 20;
/// Chunks all sessions together may buffer: past it, a session writes what
/// it holds at its next chunk, so the buddy's memory does not grow with the
/// number of busy sessions (32 of them buffering their own limit each would
/// hold 512 MiB). One busy session still writes in batches of many chunks.
pub(super) const MAX_BUFFERED_BYTES: u64 = 16 << 20;
/// Staged bytes a session may buffer before they are written (unprepared).
pub(super) const MAX_STAGE_BYTES: usize = 4 << 20;
/// redb page cache for `buddy.redb`.
pub(super) const CACHE_BYTES: usize = 16 << 20;
/// The on-disk format of `buddy.redb`.
pub(super) const FORMAT_VERSION: u64 = 2;

pub(super) type Key = [u8; 32];
pub(super) type Name = [u8; 20];
pub(super) type ObjKey = (Key, Name);
/// `(quota, quota is custom, committed epoch, staged epoch, prepared)`.
pub(super) type RecVal = (u64, u8, u64, u64, u8);

pub(super) const CLIENTS: TableDefinition<Key, RecVal> = TableDefinition::new("clients");
pub(super) const OBJECTS: TableDefinition<ObjKey, &[u8]> = TableDefinition::new("objects");
pub(super) const ROOTS: TableDefinition<Key, (u64, &[u8])> = TableDefinition::new("roots");
pub(super) const STAGED_OBJECTS: TableDefinition<ObjKey, &[u8]> = TableDefinition::new("staged_objects");
pub(super) const STAGED_DELETES: TableDefinition<ObjKey, ()> = TableDefinition::new("staged_deletes");
pub(super) const STAGED_ROOTS: TableDefinition<Key, &[u8]> = TableDefinition::new("staged_roots");
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Admitted clients: key -> (name, admitted at, last seen), Unix seconds.
pub(super) const ADMITTED: TableDefinition<Key, (&str, u64, u64)> = TableDefinition::new("admitted");
/// Where a client's chunk lives in the chunk store when its bytes are not
/// the box's own: (client, chunkId) -> stored name (see `names`).
pub(super) const CHUNK_NAMES: TableDefinition<ObjKey, Name> = TableDefinition::new("chunk_names");

/// A client's row in `clients`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Rec {
    /// A quota set for this client; `None` follows the daemon's default.
    pub quota: Option<u64>,
    /// The client's epochs.
    pub committed: u64,
    /// See [`Epochs`](pastiche_core::session::Epochs).
    pub staged: u64,
    /// See [`Epochs`](pastiche_core::session::Epochs).
    pub prepared: bool,
}

impl Rec {
    /// The ledger's view of this record.
    pub fn epochs(&self) -> Epochs {
        Epochs { committed: self.committed, staged: self.staged, prepared: self.prepared }
    }

    /// Takes the ledger's decision.
    pub fn set_epochs(&mut self, e: Epochs) {
        self.committed = e.committed;
        self.staged = e.staged;
        self.prepared = e.prepared;
    }

    pub fn from_val((quota, custom, committed, staged, prepared): RecVal) -> Rec {
        Rec { quota: (custom != 0).then_some(quota), committed, staged, prepared: prepared != 0 }
    }

    pub fn to_val(self) -> RecVal {
        (self.quota.unwrap_or(0), u8::from(self.quota.is_some()), self.committed, self.staged, u8::from(self.prepared))
    }
}

pub(super) fn read_rec(t: &impl ReadableTable<Key, RecVal>, client: &PublicKey) -> Result<Option<Rec>> {
    Ok(t.get(&client.0).db("reading a client record")?.map(|g| Rec::from_val(g.value())))
}

pub(super) fn obj_range(client: &PublicKey) -> std::ops::RangeInclusive<ObjKey> {
    (client.0, [0u8; 20])..=(client.0, [0xffu8; 20])
}

/// Removes every row of `client` from a `(client, name)`-keyed table.
pub(super) fn clear_range<V: redb::Value + 'static>(
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

pub(super) fn count_range<V: redb::Value + 'static>(
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

/// The [`StagingDigest`] of the client's staged set: objects and deletes in
/// key order (the tables' own order), then the root (its data's digest).
pub(super) fn staging_digest(
    objects: &impl ReadableTable<ObjKey, &'static [u8]>,
    deletes: &impl ReadableTable<ObjKey, ()>,
    root: Option<[u8; 32]>,
    client: &PublicKey,
    what: &'static str,
) -> Result<[u8; 32]> {
    let mut d = StagingDigest::new();
    for row in objects.range(obj_range(client)).db(what)? {
        let (k, v) = row.db(what)?;
        d.object(&k.value().1, v.value());
    }
    for row in deletes.range(obj_range(client)).db(what)? {
        d.delete(&row.db(what)?.0.value().1);
    }
    if let Some(root) = root {
        d.root_digest(&root);
    }
    Ok(d.finish())
}

/// Starts a write the way every buddy write must: fsync'd at commit, with
/// two-phase commit (a torn commit is never mistaken for a valid one) and
/// quick repair (a restart after a crash does not walk the whole file).
pub(super) fn begin_write(db: &Database, what: &'static str) -> Result<WriteTransaction> {
    let mut txn = db.begin_write().db(what)?;
    txn.set_two_phase_commit(true);
    txn.set_quick_repair(true);
    Ok(txn)
}

/// Deletes the client's staging (objects, deletes, root) in `txn`.
pub(super) fn clear_staging(txn: &WriteTransaction, client: &PublicKey) -> Result<()> {
    const C: &str = "clearing staging";
    clear_range(&mut txn.open_table(STAGED_OBJECTS).db(C)?, client, C)?;
    clear_range(&mut txn.open_table(STAGED_DELETES).db(C)?, client, C)?;
    txn.open_table(STAGED_ROOTS).db(C)?.remove(&client.0).db(C)?;
    Ok(())
}

/// Deletes everything `client` stored in the tables: its committed objects,
/// the stored names of its chunks, its root and its staging (its record
/// and admission stay; its chunk references live in the chunk store).
pub(super) fn clear_stored(txn: &WriteTransaction, client: &PublicKey) -> Result<()> {
    const C: &str = "clearing a client's data";
    clear_range(&mut txn.open_table(OBJECTS).db(C)?, client, C)?;
    clear_range(&mut txn.open_table(CHUNK_NAMES).db(C)?, client, C)?;
    txn.open_table(ROOTS).db(C)?.remove(&client.0).db(C)?;
    clear_staging(txn, client)
}
