//! The two steps of replacing a buddy that touch the box and the network
//! ([`super::replace`] decides when): taking the old buddy out of the buddy
//! list once the kept ones hold the full copy, and asking it to drop this
//! box's data with a signed `DropAll` (`docs/PROTOCOL.md` §4.7). The buddy
//! checks the signature against the key this box registered with it and
//! drops that client's references only; the epoch is above every epoch this
//! box ever signed there, so the request cannot be replayed.

use anyhow::{bail, Result};

use super::files;
use crate::repo::{Repo, SharedBox};
use crate::sync::{self, load_buddies, save_buddies, BuddyEntry};

/// Takes `addr` out of the buddy list (under the box's writer lock, so no
/// shipping to it is under way) and forgets what was shipped there and how
/// it was found. Returns the entry, or `None` when it was not a buddy.
pub fn take_out(shared: &SharedBox, addr: &str) -> Result<Option<BuddyEntry>> {
    let repo = shared.write();
    let mut buddies = load_buddies(&repo.dir)?;
    let Some(pos) = buddies.iter().position(|b| b.addr == addr) else { return Ok(None) };
    let entry = buddies.remove(pos);
    save_buddies(&repo.dir, &buddies)?;
    if let Some(key) = sync::pinned_key(&entry) {
        sync::state::forget_buddy(repo.meta.database()?, &key)?;
        // A drop it noticed us of is settled: it is no longer a buddy.
        sync::notice::settle_replaced(repo.meta.database()?, &key)?;
    }
    let mut found = files::found(&repo.dir).unwrap_or_default();
    if found.remove(addr).is_some() {
        files::save_found(&repo.dir, &found)?;
    }
    Ok(Some(entry))
}

/// Asks the buddy of `entry` (its pinned key only: another box at that
/// address is never asked) to drop everything it holds for this box.
/// Returns the epoch the request was signed for.
pub fn ask_to_drop(repo: &Repo, entry: &mut BuddyEntry) -> Result<u64> {
    if entry.key.is_none() {
        bail!("buddy {} has no pinned key: nothing to ask", entry.addr);
    }
    let mut conn = sync::connect(repo, entry)?;
    // Above every epoch we ever signed there, whatever the buddy says.
    let db = repo.meta.database()?;
    let epoch = sync::floor::load(db, &conn.buddy_key)?.next_epoch(&conn.welcome)?;
    sync::floor::record_signing(db, &conn.buddy_key, epoch)?;
    conn.drop_all(epoch)?;
    sync::floor::record_committed(db, &conn.buddy_key, epoch)?;
    Ok(epoch)
}
