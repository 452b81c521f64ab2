//! After a failed audit: the buddy lost at least one chunk, so none of what
//! it was shipped is trusted until checked. Every shipped chunk is
//! challenged; the ones it lost or damaged are released there (a signed
//! delete list in an epoch of their own, under the root it already holds),
//! struck from the shipped-state, and shipped again by a sync.

use anyhow::Result;
use pastiche_core::audit::Finding;
use pastiche_core::session::StagingDigest;
use pastiche_core::wire::MAX_IDS_PER_MESSAGE;
use pastiche_core::ChunkId;

use super::run::challenge;
use crate::progress::Progress;
use crate::repo::Repo;
use crate::sync::conn::BuddyRefused;
use crate::sync::{self, floor, state, BuddyEntry};

/// Re-checks everything shipped to `entry` and ships again what it lost;
/// returns (chunks found lost or damaged, chunks sent again).
pub fn repair(repo: &Repo, entry: &mut BuddyEntry, progress: &Progress) -> Result<(u64, u64)> {
    let mut conn = sync::connect(repo, entry)?;
    let buddy = conn.buddy_key;
    let db = repo.meta.database()?;
    let mut shipped: Vec<ChunkId> = state::shipped_chunks(db, &buddy)?.into_iter().collect();
    shipped.sort();
    let findings = challenge(repo, &mut conn, &shipped)?;
    let lost: Vec<ChunkId> = shipped
        .iter()
        .zip(&findings)
        .filter(|(_, f)| matches!(f, Some(Finding::Missing | Finding::Corrupt)))
        .map(|(id, _)| *id)
        .collect();
    if lost.is_empty() {
        return Ok((0, 0));
    }
    // Release our references first: a damaged copy the buddy still counts
    // as ours would make it answer "held" to the next offer, and the chunk
    // would never be sent again. The epoch re-commits the root the buddy
    // already holds, so its view of our snapshots does not move.
    let mut root = Vec::new();
    match conn.get_root(&mut root) {
        Ok(_) => {
            // Above every epoch ever signed there, whatever the buddy says.
            let epoch = floor::load(db, &buddy)?.next_epoch(&conn.welcome)?.max(entry.epoch + 1);
            floor::record_signing(db, &buddy, epoch)?;
            for batch in lost.chunks(MAX_IDS_PER_MESSAGE) {
                conn.delete_list(epoch, batch)?;
            }
            conn.put_root(epoch, &root)?;
            // `lost` is sorted and distinct, the digest's order for deletes.
            let mut staged = StagingDigest::new();
            for id in &lost {
                staged.delete(&id.0);
            }
            staged.root(&root);
            conn.commit(epoch, 0, lost.len() as u32, staged.finish())?;
            floor::record_committed(db, &buddy, epoch)?;
            entry.epoch = epoch;
        }
        // Nothing committed there yet: there is nothing to release either.
        Err(e) if e.downcast_ref::<BuddyRefused>().is_some_and(|r| !r.code.is_fatal()) => {}
        Err(e) => return Err(e),
    }
    state::record_commit(db, &buddy, &[], &[], &lost)?;
    drop(conn);
    let report = sync::sync_one(repo, entry, progress)?;
    Ok((lost.len() as u64, report.chunks_sent))
}
