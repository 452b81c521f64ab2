//! Reading many chunks at once: in the order they lie on disk, and sealed on
//! every core.
//!
//! A box's own chunks are kept in compressed groups ([`super::group`]) and
//! sealed one by one (SPEC §2a) only when they leave the box. Sealing costs
//! far more than reading, so shipping a whole store on one thread would be
//! bound by one core; here the chunks of each group go to one thread (each
//! group is opened once) and the groups are shared among threads.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use pastiche_core::ChunkId;

use super::error::{Result, StoreError};
use super::run::Group;
use super::ChunkStore;

/// Where a chunk's record lies: pack and offset (absent chunks last). Every
/// chunk of one group has its group's place.
pub type Place = (u32, u64);

/// The place of a chunk the index holds.
pub(crate) fn place_of(g: &Group) -> Place {
    (g.loc.pack, u64::from(g.loc.offset))
}

/// `items` sorted by `places`, given in the same order (one per item).
pub fn sorted_by_place<T>(places: Vec<Place>, items: Vec<T>) -> Vec<T> {
    let mut keyed: Vec<(Place, T)> = places.into_iter().zip(items).collect();
    keyed.sort_by_key(|(place, _)| *place);
    keyed.into_iter().map(|(_, item)| item).collect()
}

impl ChunkStore {
    /// `items` (each naming a chunk by `id_of`) in the order their chunks
    /// lie on disk: reading in this order opens each group of the box's own
    /// chunks once and reads packs front to back.
    pub fn in_store_order<T>(&self, items: Vec<T>, id_of: impl Fn(&T) -> ChunkId) -> Result<Vec<T>> {
        let ids: Vec<ChunkId> = items.iter().map(id_of).collect();
        Ok(sorted_by_place(self.places(&ids)?, items))
    }

    /// Reads every chunk of `ids` the store holds sealed, as
    /// [`ChunkStore::get`] does, on `threads` threads, and hands each to
    /// `each`, called on those threads in no particular order; returns the
    /// chunks the store does not hold. `ids` should be in the store's order
    /// ([`ChunkStore::in_store_order`]): the chunks of one group that
    /// follow each other are read by one thread, so the group is opened once.
    ///
    /// Each read holds the compaction gate for that chunk alone, never
    /// while `each` runs: a slow consumer (a buddy on a slow link) must not
    /// hold up compaction, nor the reads queued behind it. Stops early
    /// when `each` returns false, or at the first chunk that cannot be read
    /// (that error).
    pub fn read_sealed_many<F>(&self, ids: &[ChunkId], threads: usize, each: F) -> Result<Vec<ChunkId>>
    where
        F: Fn(ChunkId, Vec<u8>) -> bool + Sync,
    {
        let mut absent = Vec::new();
        let mut held: Vec<(ChunkId, Place)> = Vec::with_capacity(ids.len());
        {
            let view = self.view()?;
            for id in ids {
                match view.group(id)? {
                    Some(g) => held.push((*id, place_of(&g))),
                    None => absent.push(*id),
                }
            }
        }
        let places: Vec<Place> = held.iter().map(|(_, place)| *place).collect();
        let runs = runs_by_place(&places);
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let failed: Mutex<Option<StoreError>> = Mutex::new(None);
        std::thread::scope(|scope| {
            for _ in 0..threads.clamp(1, runs.len().max(1)) {
                scope.spawn(|| {
                    let mut sealed = Vec::new();
                    while let Some(run) = runs.get(next.fetch_add(1, Ordering::Relaxed)) {
                        for (id, _) in &held[run.clone()] {
                            if stop.load(Ordering::Relaxed) {
                                return;
                            }
                            // Looked up again under the gate: compaction
                            // may have moved it since the pass above.
                            if let Err(e) = self.get_into(id, &mut sealed) {
                                failed.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
                                stop.store(true, Ordering::Relaxed);
                                return;
                            }
                            if !each(*id, std::mem::take(&mut sealed)) {
                                stop.store(true, Ordering::Relaxed);
                                return;
                            }
                        }
                    }
                });
            }
        });
        match failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(e) => Err(e),
            None => Ok(absent),
        }
    }
}

/// Index ranges of `places` over which the place stays the same: the
/// needed chunks of one group, or one sealed chunk.
fn runs_by_place(places: &[Place]) -> Vec<std::ops::Range<usize>> {
    let mut runs = Vec::new();
    let mut start = 0;
    for i in 1..=places.len() {
        if i == places.len() || places[i] != places[start] {
            runs.push(start..i);
            start = i;
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_split_where_the_place_changes() {
        assert!(runs_by_place(&[]).is_empty());
        assert_eq!(runs_by_place(&[(1, 0)]), vec![0..1]);
        assert_eq!(runs_by_place(&[(1, 0), (1, 0), (1, 9), (2, 0), (2, 0)]), vec![0..2, 2..3, 3..5]);
    }

    #[test]
    fn sorting_by_place_keeps_items_with_their_places() {
        let sorted = sorted_by_place(vec![(2, 5), (1, 9), (2, 0), (1, 9)], vec!['a', 'b', 'c', 'd']);
        assert_eq!(sorted, vec!['b', 'd', 'c', 'a']);
    }
}
