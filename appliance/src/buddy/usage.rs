//! What a client is charged and what the disk allows: quotas, usage (the
//! sealed bytes of its chunks and its objects), the free-space floor, and
//! the client records they are read from.

use pastiche_core::session::ClientRecord;
use pastiche_core::PublicKey;
use redb::ReadableTable;

use super::error::{BuddyError, ChunkContext, DbContext, Result};
use super::store::Shared;
use super::tables::*;

impl Shared {
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
}
