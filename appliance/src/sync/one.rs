//! One sync: the box's current state shipped to one buddy as one epoch.
//!
//! 1. The epoch is chosen from what the buddy reports and what this box
//!    recorded of it ([`floor`], [`notice`]): a buddy that lost our data is
//!    offered everything again.
//! 2. The chunks it lacks are shipped ([`ship`]) while the changed metadata
//!    objects are staged on a second connection.
//! 3. The signed delete list, the root record and the commit follow; a buddy
//!    that keeps staging per connection refuses that commit, and everything
//!    is staged again on one connection.
//! 4. What the buddy now holds is recorded.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Instant;

use anyhow::{anyhow, Result};
use pastiche_core::session::{DataDigest, StagingDigest};
use pastiche_core::{ChunkId, PublicKey};
use sha1::{Digest, Sha1};

use super::conn::{self, BuddyConn};
use super::ship::{self, OFFER_BATCH};
use super::{connect, floor, notice, split, state, BuddyEntry, SyncReport};
use crate::meta::object::ObjectName;
use crate::progress::Progress;
use crate::prune::{self, Marks};
use crate::repo::Repo;

/// Ships the box's current state to one buddy.
pub fn sync_one(repo: &Repo, entry: &mut BuddyEntry, progress: &Progress) -> Result<SyncReport> {
    let started = Instant::now();
    let mut conn = connect(repo, entry)?;
    let mut report = open_epoch(repo, &mut conn, entry)?;
    let (buddy, epoch) = (conn.buddy_key, report.epoch);
    let db = repo.meta.database()?;

    let marks = prune::mark(repo)?;
    // Metadata objects are staged on a second connection at the same time:
    // the buddy checks one signature per object, which would otherwise wait
    // for every chunk.
    let (shipped, staged) = std::thread::scope(|scope| -> Result<_> {
        let second = entry.clone();
        let objects = scope.spawn(|| stage_on_new_connection(repo, second, &buddy, epoch, &marks.objects));
        let shipped = state::shipped_chunks(db, &buddy)?;
        let to_offer: Vec<ChunkId> = marks.chunks.iter().filter(|id| !shipped.contains(id)).copied().collect();
        ship::ship_chunks(repo, &mut conn, entry, to_offer, progress, &mut report)?;
        let staged = objects.join().map_err(|_| anyhow!("the object-staging thread panicked"))?;
        Ok((shipped, staged))
    })?;

    let deletes = Deletes::of(repo, &buddy, &shipped, &marks)?;
    for batch in deletes.ids.chunks(OFFER_BATCH) {
        conn.delete_list(epoch, batch)?;
    }
    report.deletes = deletes.released as u64;
    report.objects_deleted = deletes.objects.len() as u64;
    // The root goes out as a signed root record naming the buddies, so
    // that passphrase and name alone recover the box (crate::recovery).
    let root = crate::recovery::record_for_sync(repo, entry, &buddy, epoch)?;
    let closing = Closing { epoch, deletes: &deletes, root: &root, reached: &marks.objects };
    let staged = commit_epoch(repo, &mut conn, entry, staged, &closing)?;
    report.objects_sent = staged.parts.len() as u64;

    let dropped: Vec<[u8; 20]> = deletes.objects.iter().map(|(name, _)| *name).collect();
    state::record_commit(db, &buddy, &staged.digests, &dropped, deletes.released())?;
    floor::record_committed(db, &buddy, epoch)?;
    // The buddy holds our full copy again.
    notice::settle(db, &buddy)?;
    entry.epoch = epoch;
    entry.snapshot = repo.load_root()?.snapshots.last().map(|s| s.id_hex());
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Chooses the epoch this sync signs, in a report started for it.
///
/// Our own floor ([`floor`]): a buddy reporting less than it once committed
/// for us lost or rolled back our data: it is reported, nothing it claims to
/// hold is trusted (everything is offered again), and the epoch goes on from
/// our floor, above every epoch we ever signed there. A buddy that dropped
/// our data on its own says so ([`notice`]): acted on once, by its number;
/// it explains the epoch it reports.
fn open_epoch(repo: &Repo, conn: &mut BuddyConn, entry: &BuddyEntry) -> Result<SyncReport> {
    let db = repo.meta.database()?;
    let buddy = conn.buddy_key;
    let dropped = match conn.get_notice()? {
        Some(n) if notice::act_on(db, &buddy, &n, crate::buddy::admission::unix_now())? => {
            let seen = notice::load(db, &buddy)?;
            if let Some(seen) = &seen {
                eprintln!("pastiche: {}; forgot what was shipped there: shipping everything again, and the daemon re-homes our data on another buddy", notice::describe(&entry.addr, seen));
            }
            seen
        }
        _ => None,
    };
    let explained = notice::load(db, &buddy)?.is_some_and(|n| !n.settled);
    let mut ours = floor::load(db, &buddy)?;
    ours.committed = ours.committed.max(entry.epoch); // buddies.json of older versions
    let went_back = ours.went_back(&conn.welcome);
    if went_back && explained {
        state::forget_buddy(db, &buddy)?;
    } else if went_back {
        eprintln!(
            "pastiche: buddy {} reports epoch {} but committed epoch {} for us: it lost or rolled back our data; shipping everything again",
            entry.addr, conn.welcome.committed_epoch, ours.committed
        );
        floor::record_went_back(db, &buddy, conn.welcome.committed_epoch, ours.committed)?;
        state::forget_buddy(db, &buddy)?;
    }
    let epoch = ours.next_epoch(&conn.welcome)?;
    floor::record_signing(db, &buddy, epoch)?;
    Ok(SyncReport { addr: entry.addr.clone(), epoch, went_back, dropped, ..SyncReport::default() })
}

/// Stages the changed objects for `epoch` on a connection of their own,
/// made durable there by a flush.
fn stage_on_new_connection(
    repo: &Repo,
    mut entry: BuddyEntry,
    buddy: &PublicKey,
    epoch: u64,
    reached: &HashSet<ObjectName>,
) -> Result<StagedObjects> {
    let mut conn = connect(repo, &mut entry)?;
    let staged = stage_objects(repo, &mut conn, buddy, epoch, reached)?;
    conn.flush()?;
    Ok(staged)
}

/// What the end of an epoch sends besides the objects.
struct Closing<'a> {
    epoch: u64,
    deletes: &'a Deletes,
    /// The signed root record.
    root: &'a [u8],
    /// The objects the retained snapshots reach (what a new staging sends).
    reached: &'a HashSet<ObjectName>,
}

/// Commits the epoch with the objects `staged` on the second connection. If
/// they could not be staged there, or the buddy refuses the commit (it
/// keeps staging per connection), everything is staged again on one new
/// connection; should that fail too, the first failure is given with it.
fn commit_epoch(
    repo: &Repo,
    conn: &mut BuddyConn,
    entry: &mut BuddyEntry,
    staged: Result<StagedObjects>,
    end: &Closing<'_>,
) -> Result<StagedObjects> {
    let first_failure = match staged {
        Ok(staged) => {
            conn.put_root(end.epoch, end.root)?;
            match commit(conn, &staged, end) {
                Ok(()) => return Ok(staged),
                Err(e) if e.downcast_ref::<conn::BuddyRefused>().is_some() => e,
                Err(e) => return Err(e),
            }
        }
        Err(e) => e.context("staging the objects on a second connection"),
    };
    let buddy = conn.buddy_key;
    let again = (|| -> Result<StagedObjects> {
        let mut conn = connect(repo, entry)?;
        for batch in end.deletes.ids.chunks(OFFER_BATCH) {
            conn.delete_list(end.epoch, batch)?;
        }
        let staged = stage_objects(repo, &mut conn, &buddy, end.epoch, end.reached)?;
        conn.put_root(end.epoch, end.root)?;
        commit(&mut conn, &staged, end)?;
        Ok(staged)
    })();
    again.map_err(|e| e.context(format!("staging again on one connection, after: {first_failure:#}")))
}

/// Asks the buddy to commit the epoch: the objects `staged`, the deletes and the root.
fn commit(conn: &mut BuddyConn, staged: &StagedObjects, end: &Closing<'_>) -> Result<()> {
    let ids = &end.deletes.ids;
    conn.commit(end.epoch, staged.parts.len() as u32, ids.len() as u32, staged.digest(ids, end.root))
}

/// What an epoch deletes on the buddy.
struct Deletes {
    /// Every id the delete list names: first the chunks the buddy holds
    /// for us that no retained snapshot needs, then each unreached
    /// object's names (its parts' too).
    ids: Vec<ChunkId>,
    /// How many of `ids` are released chunks.
    released: usize,
    /// The objects it holds that none reaches, with what was shipped of each.
    objects: Vec<([u8; 20], state::ShippedObject)>,
}

impl Deletes {
    /// The deletes of a sync to `buddy`, which holds the chunks `shipped`,
    /// when the retained snapshots reach `marks`.
    fn of(repo: &Repo, buddy: &PublicKey, shipped: &HashSet<ChunkId>, marks: &Marks) -> Result<Deletes> {
        let mut ids: Vec<ChunkId> = shipped.iter().filter(|id| !marks.chunks.contains(id)).copied().collect();
        let released = ids.len();
        let objects = unreferenced_objects(repo, buddy, &marks.objects)?;
        for (name, shipped) in &objects {
            ids.extend(split::names_of(name, shipped.parts).map(ChunkId));
        }
        Ok(Deletes { ids, released, objects })
    }

    /// The chunks released.
    fn released(&self) -> &[ChunkId] {
        &self.ids[..self.released]
    }
}

/// Objects staged for an epoch: every name sent (parts included) with the
/// SHA-256 of its data, for the commit's staging digest, and the digest of
/// each whole object, recorded once the epoch commits.
struct StagedObjects {
    parts: BTreeMap<[u8; 20], [u8; 32]>,
    digests: Vec<([u8; 20], state::ShippedObject)>,
}

impl StagedObjects {
    /// The [`StagingDigest`] the commit signs: these objects, the released
    /// chunkIds and the root, in the protocol's canonical order. Parts of
    /// another attempt at the epoch still staged on the buddy do not match.
    fn digest(&self, deletes: &[ChunkId], root: &[u8]) -> [u8; 32] {
        let mut d = StagingDigest::new();
        for (name, data) in &self.parts {
            d.object_digest(name, data);
        }
        let deletes: BTreeSet<&ChunkId> = deletes.iter().collect();
        for id in deletes {
            d.delete(&id.0);
        }
        d.root(root);
        d.finish()
    }
}

/// Stages every object a retained snapshot reaches (`reached`) that changed
/// since the last sync to this buddy. Objects only forgotten snapshots
/// reach, which `prune` has not yet removed, are not shipped.
fn stage_objects(
    repo: &Repo,
    conn: &mut BuddyConn,
    buddy: &PublicKey,
    epoch: u64,
    reached: &HashSet<ObjectName>,
) -> Result<StagedObjects> {
    let already = state::shipped_objects(repo.meta.database()?, buddy)?;
    let mut staged = StagedObjects { parts: BTreeMap::new(), digests: Vec::new() };
    for name in repo.meta.names()? {
        if !reached.contains(&name) {
            continue;
        }
        let Some(bytes) = repo.meta.get(&name)? else { continue };
        let digest: [u8; 20] = Sha1::digest(&bytes).into();
        if already.get(&name.0).map(|o| o.digest) == Some(digest) {
            continue;
        }
        let parts = split::split(&name.0, &bytes)?;
        let shipped = state::ShippedObject { digest, parts: parts.len() as u16 };
        for (part, data) in parts {
            conn.put_object(epoch, part, &data)?;
            staged.parts.insert(part, DataDigest::of(&data));
        }
        staged.digests.push((name.0, shipped));
    }
    Ok(staged)
}

/// The objects recorded as shipped to `buddy` that no retained snapshot
/// reaches any more: the next commit there deletes them. The root object
/// goes by root records (`PutRoot`), never by name, so it is never listed.
fn unreferenced_objects(
    repo: &Repo,
    buddy: &PublicKey,
    reached: &HashSet<ObjectName>,
) -> Result<Vec<([u8; 20], state::ShippedObject)>> {
    let root_name = repo.root_ref().name;
    let mut out: Vec<_> = state::shipped_objects(repo.meta.database()?, buddy)?
        .into_iter()
        .filter(|(name, _)| *name != root_name.0 && !reached.contains(&ObjectName(*name)))
        .collect();
    out.sort_unstable_by_key(|(name, _)| *name);
    Ok(out)
}
