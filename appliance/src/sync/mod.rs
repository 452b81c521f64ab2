//! Shipping snapshots to buddies and fetching chunks back.
//!
//! A sync ships to one buddy exactly what it lacks: the chunks of every
//! retained snapshot it does not hold (offered in batches; it answers which
//! it lacks and takes references to the rest), every metadata object that
//! changed since the last sync, a signed delete list for the chunks and
//! metadata objects no retained snapshot needs any more (so what `forget`
//! and `prune` free here is freed there too), and the root object; then it commits the epoch in two
//! phases. A cut connection loses nothing: flushed chunks are recorded as
//! shipped and are not sent again, and an unfinished epoch is simply staged
//! again by the next sync.

pub mod conn;
pub mod fetch;
pub mod floor;
pub mod notice;
pub mod pull;
pub mod relay;
mod ship;
pub mod split;
pub mod state;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use pastiche_core::session::{DataDigest, StagingDigest};
use pastiche_core::{ChunkId, PublicKey};
use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

use crate::meta::object::ObjectName;
use crate::progress::Progress;
use crate::prune;
use crate::repo::{write_atomically, Repo};
use conn::BuddyConn;
use ship::OFFER_BATCH;

const BUDDIES_FILE: &str = "buddies.json";
/// A configured buddy.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BuddyEntry {
    /// `HOST:PORT`.
    pub addr: String,
    /// The buddy's public key (hex), pinned at the first contact.
    pub key: Option<String>,
    /// The last epoch committed there.
    #[serde(default)]
    pub epoch: u64,
    /// The snapshot (id hex) the last commit carried.
    #[serde(default)]
    pub snapshot: Option<String>,
}

/// The configured buddies of a box.
pub fn load_buddies(dir: &Path) -> Result<Vec<BuddyEntry>> {
    match std::fs::read_to_string(dir.join(BUDDIES_FILE)) {
        Ok(text) => {
            serde_json::from_str(&text).with_context(|| format!("{} is damaged", dir.join(BUDDIES_FILE).display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).context("cannot read the buddy list"),
    }
}

/// Saves the buddy list atomically.
pub fn save_buddies(dir: &Path, buddies: &[BuddyEntry]) -> Result<()> {
    write_atomically(&dir.join(BUDDIES_FILE), serde_json::to_string_pretty(buddies)?.as_bytes())
}

/// What one sync did.
#[derive(Debug, Default, Serialize)]
pub struct SyncReport {
    /// The buddy.
    pub addr: String,
    /// The epoch committed.
    pub epoch: u64,
    /// Chunks offered (not known to be there).
    pub chunks_offered: u64,
    /// Chunks uploaded.
    pub chunks_sent: u64,
    /// Sealed bytes uploaded.
    pub bytes_sent: u64,
    /// Objects (and object parts) staged.
    pub objects_sent: u64,
    /// Chunk references released.
    pub deletes: u64,
    /// Metadata objects deleted there (each with its parts).
    pub objects_deleted: u64,
    /// Wall-clock time.
    pub seconds: f64,
    /// The buddy reported an epoch below the last one it committed for us
    /// (it lost or rolled back our data; everything was offered again).
    pub went_back: bool,
    /// A drop notice the buddy handed us this time, new (acted on: what was
    /// shipped there was forgotten and everything is offered again).
    pub dropped: Option<notice::NoticeSeen>,
}

/// Connects to a buddy and checks its pinned key (pinning it at first contact).
pub fn connect(repo: &Repo, entry: &mut BuddyEntry) -> Result<BuddyConn> {
    connect_pairing(repo, entry, None)
}

/// [`connect`], presenting a one-time pairing code (`buddy add --code`).
pub fn connect_pairing(repo: &Repo, entry: &mut BuddyEntry, code: Option<&str>) -> Result<BuddyConn> {
    let pinned = match &entry.key {
        Some(k) => Some(k.parse().map_err(|e| anyhow!("buddy {}: bad pinned key {k}: {e}", entry.addr))?),
        None => None,
    };
    let conn = BuddyConn::connect_pinned(&entry.addr, &repo.identity, repo.node, pinned, code)?;
    let seen = conn.buddy_key.to_string();
    match &entry.key {
        Some(k) if *k != seen => bail!(
            "buddy {} presents key {seen}, not the pinned {k}: refusing (remove and re-add it if it was rebuilt)",
            entry.addr
        ),
        Some(_) => {}
        None => entry.key = Some(seen),
    }
    Ok(conn)
}

/// Ships the box's current state to one buddy.
pub fn sync_one(repo: &Repo, entry: &mut BuddyEntry, progress: &Progress) -> Result<SyncReport> {
    let started = Instant::now();
    let mut conn = connect(repo, entry)?;
    let buddy = conn.buddy_key;
    let db = repo.meta.database();
    // Our own floor ([`floor`]): a buddy reporting less than it once
    // committed for us lost or rolled back our data: it is reported, nothing
    // it claims to hold is trusted (everything is offered again), and the
    // epoch goes on from our floor, above every epoch we ever signed there.
    // A buddy that dropped our data on its own says so ([`notice`]): acted
    // on once, by its number; it explains the epoch it reports.
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
    let mut report = SyncReport { addr: entry.addr.clone(), epoch, went_back, dropped, ..SyncReport::default() };

    let marks = prune::mark(repo)?;
    // Metadata objects are staged on a second connection at the same time:
    // the buddy checks one signature per object, which would otherwise wait
    // for every chunk.
    let objects_entry = entry.clone();
    let marks = &marks;
    std::thread::scope(|scope| -> Result<SyncReport> {
        let objects = scope.spawn(move || -> Result<StagedObjects> {
            let mut entry = objects_entry;
            let mut conn2 = connect(repo, &mut entry)?;
            let staged = stage_objects(repo, &mut conn2, &buddy, epoch, &marks.objects)?;
            conn2.flush()?;
            Ok(staged)
        });
        let shipped = state::shipped_chunks(db, &buddy)?;
        let to_offer: Vec<ChunkId> = marks.chunks.iter().filter(|id| !shipped.contains(id)).copied().collect();
        ship::ship_chunks(repo, &mut conn, entry, to_offer, progress, &mut report)?;

        let staged_objects = objects.join().map_err(|_| anyhow::anyhow!("the object-staging thread panicked"))?;
        // Chunks the buddy holds for us that no retained snapshot needs, and
        // objects it holds that none reaches (their names, with their parts').
        let released: Vec<ChunkId> = shipped.iter().filter(|id| !marks.chunks.contains(id)).copied().collect();
        let dropped = unreferenced_objects(repo, &buddy, &marks.objects)?;
        let mut deletes = released.clone();
        for (name, shipped) in &dropped {
            deletes.extend(split::names_of(name, shipped.parts).map(ChunkId));
        }
        for batch in deletes.chunks(OFFER_BATCH) {
            conn.delete_list(epoch, batch)?;
        }
        report.deletes = released.len() as u64;
        report.objects_deleted = dropped.len() as u64;

        // The root goes out as a signed root record naming the buddies, so
        // that passphrase and name alone recover the box (crate::recovery).
        let root_bytes = crate::recovery::record_for_sync(repo, entry, &buddy, epoch)?;
        // The objects went out on a second connection while the chunks were
        // shipped; the buddy holds that staging durably after its Flush.
        let staged = match staged_objects {
            Ok(staged) => {
                conn.put_root(epoch, &root_bytes)?;
                match conn.commit(
                    epoch,
                    staged.parts.len() as u32,
                    deletes.len() as u32,
                    staged.digest(&deletes, &root_bytes),
                ) {
                    Ok(()) => Some(staged),
                    Err(e) if e.downcast_ref::<conn::BuddyRefused>().is_some() => None,
                    Err(e) => return Err(e),
                }
            }
            Err(_) => None,
        };
        // A buddy that keeps staging per connection refuses that commit: stage
        // everything again on one connection.
        let staged = match staged {
            Some(s) => s,
            None => {
                let mut conn = connect(repo, entry)?;
                for batch in deletes.chunks(OFFER_BATCH) {
                    conn.delete_list(epoch, batch)?;
                }
                let staged = stage_objects(repo, &mut conn, &buddy, epoch, &marks.objects)?;
                conn.put_root(epoch, &root_bytes)?;
                conn.commit(
                    epoch,
                    staged.parts.len() as u32,
                    deletes.len() as u32,
                    staged.digest(&deletes, &root_bytes),
                )?;
                staged
            }
        };
        report.objects_sent = staged.parts.len() as u64;
        let shipped_digests = staged.digests;
        let dropped: Vec<[u8; 20]> = dropped.iter().map(|(name, _)| *name).collect();
        state::record_commit(db, &buddy, &shipped_digests, &dropped, &released)?;
        floor::record_committed(db, &buddy, epoch)?;
        // The buddy holds our full copy again.
        notice::settle(db, &buddy)?;
        entry.epoch = epoch;
        entry.snapshot = repo.load_root()?.snapshots.last().map(|s| s.id_hex());
        report.seconds = started.elapsed().as_secs_f64();
        Ok(report)
    })
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
    let already = state::shipped_objects(repo.meta.database(), buddy)?;
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
    let mut out: Vec<_> = state::shipped_objects(repo.meta.database(), buddy)?
        .into_iter()
        .filter(|(name, _)| *name != root_name.0 && !reached.contains(&ObjectName(*name)))
        .collect();
    out.sort_unstable_by_key(|(name, _)| *name);
    Ok(out)
}

/// The reachable buddy with the shortest hello round trip, or the one asked for.
pub fn nearest(repo: &Repo, buddies: &mut [BuddyEntry], forced: Option<&str>) -> Result<BuddyEntry> {
    if let Some(addr) = forced {
        let mut entry = buddies.iter().find(|b| b.addr == addr).cloned().unwrap_or(BuddyEntry {
            addr: addr.to_string(),
            key: None,
            epoch: 0,
            snapshot: None,
        });
        connect(repo, &mut entry)?;
        return Ok(entry);
    }
    let mut best: Option<(Duration, BuddyEntry)> = None;
    let mut errors = Vec::new();
    for b in buddies.iter_mut() {
        match connect(repo, b) {
            Ok(c) if best.as_ref().is_none_or(|(rtt, _)| c.rtt < *rtt) => best = Some((c.rtt, b.clone())),
            Ok(_) => {}
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    match best {
        Some((_, b)) => Ok(b),
        None if errors.is_empty() => bail!("no buddies configured (pastiche buddy add HOST:PORT)"),
        None => bail!("no buddy is reachable: {}", errors.join("; ")),
    }
}

/// The pinned key of an entry, parsed.
pub fn pinned_key(entry: &BuddyEntry) -> Option<PublicKey> {
    entry.key.as_deref().and_then(|k| k.parse().ok())
}
