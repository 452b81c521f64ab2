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
mod one;
pub mod pull;
pub mod relay;
mod ship;
pub mod split;
pub mod state;

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use pastiche_core::PublicKey;
use serde::{Deserialize, Serialize};

use crate::repo::{write_atomically, Repo};
use conn::BuddyConn;
pub use one::sync_one;

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
