//! Chunks a sync must ship that the box itself does not have.
//!
//! A recovered box holds no chunks until it backs up again, and a buddy
//! that missed its last snapshots before the loss lacks chunks only the
//! other buddies hold. A sync to it pulls those chunks from the other
//! buddies ([`Puller`]), checks each against its handle (so no buddy can
//! pass off other bytes under a chunkId) and ships them. A chunk that no
//! buddy can serve fails the sync before anything is committed; it is
//! never recorded as shipped.

use std::collections::HashMap;
use std::sync::OnceLock;

use anyhow::{anyhow, Context, Result};
use pastiche_core::{ChunkId, Handle};

use super::pull::Puller;
use super::{load_buddies, BuddyEntry};
use crate::meta::walk;
use crate::repo::Repo;

/// The other buddies of one sync, asked only if something is missing here.
pub struct Relay<'a> {
    repo: &'a Repo,
    target: String,
    puller: OnceLock<Result<Puller, String>>,
    /// Every chunk's handle, from the snapshots (built at the first miss).
    handles: OnceLock<Result<HashMap<ChunkId, Handle>, String>>,
}

impl<'a> Relay<'a> {
    /// A relay for a sync to the buddy at `target`.
    pub fn new(repo: &'a Repo, target: &BuddyEntry) -> Relay<'a> {
        Relay { repo, target: target.addr.clone(), puller: OnceLock::new(), handles: OnceLock::new() }
    }

    /// Pulls `ids` (chunks of the box's snapshots) from the other buddies,
    /// checked, and hands each sealed chunk to `each`.
    pub fn pull(&self, ids: &[ChunkId], mut each: impl FnMut(ChunkId, Vec<u8>) -> Result<()>) -> Result<()> {
        let puller = self
            .puller
            .get_or_init(|| {
                let others: Vec<BuddyEntry> = load_buddies(&self.repo.dir)
                    .map_err(|e| format!("{e:#}"))?
                    .into_iter()
                    .filter(|b| b.addr != self.target)
                    .collect();
                Ok(Puller::new(&self.repo.identity, self.repo.node, &others))
            })
            .as_ref()
            .map_err(|e| anyhow!("{e}"))?;
        let all = self
            .handles
            .get_or_init(|| handles_of(self.repo).map_err(|e| format!("{e:#}")))
            .as_ref()
            .map_err(|e| anyhow!("{e}"))?;
        let handles: Vec<Handle> = ids
            .iter()
            .map(|id| all.get(id).copied().ok_or_else(|| anyhow!("chunk {id} is in no snapshot")))
            .collect::<Result<_>>()?;
        puller
            .pull(&handles, |i, pulled| each(ids[i], pulled.sealed))
            .context("a chunk to ship is not in this box's store (it was recovered) and no other buddy could serve it")
    }
}

/// The handle of every chunk the snapshots reach.
fn handles_of(repo: &Repo) -> Result<HashMap<ChunkId, Handle>> {
    let root = repo.load_root()?;
    let reached = walk::reach(repo, &root.snapshots)?;
    Ok(reached.handles.into_iter().map(|h| (Handle(h).chunk_id(), Handle(h))).collect())
}
