//! Verifying the store: index structure, pack files, and (optionally) the
//! stored bytes. Problems are collected into a report, never returned as the
//! first error, so one bad record does not hide the others.

use std::collections::{HashMap, HashSet};

use pastiche_core::{ChunkId, Handle, PublicKey};

use super::error::{Damage, Result};
use super::index::{ChunkEntry, IndexMoment};
use super::pack::{check_pack_header, MAX_SEALED, MIN_SEALED, PACKS_DIR, PACK_HEADER_LEN, RECORD_HEADER_LEN};
use super::recover::list_packs;
use super::ChunkStore;

/// How much [`ChunkStore::check`] reads.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CheckMode {
    /// Index and pack structure only: every entry points inside the
    /// committed part of an existing pack; counters agree. No chunk data read.
    Structure,
    /// Structure, plus read every record and check its header and CRC-32.
    ReadAll,
    /// Structure, plus read about `percent`% of the chunks, chosen by a hash
    /// of the chunkId and `seed` (pass a fresh random seed per run to cover
    /// different chunks over time; the same seed picks the same chunks).
    ReadSubset {
        /// Share of chunks to read, 0.0..=100.0.
        percent: f64,
        /// Selects which chunks.
        seed: u64,
    },
}

/// A chunk whose record is unusable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DamagedChunk {
    /// The chunk.
    pub id: ChunkId,
    /// The pack the index points to.
    pub pack: u32,
    /// The record's offset in that pack.
    pub offset: u64,
    /// What is wrong.
    pub damage: Damage,
}

/// A problem with a pack file as a whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PackProblem {
    /// The index lists the pack, the file is gone.
    Missing(u32),
    /// A pack file the index does not list (recovery deletes these at the
    /// next open).
    Orphan(u32),
    /// The file is shorter than its committed length.
    Short {
        /// The pack.
        pack: u32,
        /// Its length on disk.
        file_len: u64,
        /// Its committed length.
        committed: u64,
    },
    /// The pack header is wrong or unreadable.
    BadHeader {
        /// The pack.
        pack: u32,
        /// What is wrong.
        why: String,
    },
}

/// What [`ChunkStore::check`] found.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckReport {
    /// The mode it ran in.
    pub mode: CheckMode,
    /// Index entries checked.
    pub chunks: u64,
    /// Records read and verified.
    pub chunks_read: u64,
    /// Payload bytes read.
    pub bytes_read: u64,
    /// Unusable chunks, in the order found.
    pub damaged: Vec<DamagedChunk>,
    /// Problems with whole pack files.
    pub packs: Vec<PackProblem>,
    /// Index counters that disagree with the entries (the data is intact,
    /// but stats and compaction decisions are off).
    pub inconsistencies: Vec<String>,
}

impl CheckReport {
    /// True when nothing at all was found.
    pub fn is_ok(&self) -> bool {
        self.damaged.is_empty() && self.packs.is_empty() && self.inconsistencies.is_empty()
    }
}

/// The group a check read last, by (pack, offset, payload CRC).
type LastGroup = Option<((u32, u64, u32), std::sync::Arc<super::read::OpenedGroup>)>;

/// Records are read in batches of this many, each sorted by position so the
/// disk sees mostly sequential reads, with bounded memory on a huge store.
const READ_BATCH: usize = 1 << 18;

impl ChunkStore {
    /// Verifies the store (see [`CheckMode`]) and reports every problem.
    ///
    /// It checks a snapshot of the index while backups, reads and compaction
    /// go on; a record that compaction moves or drops meanwhile is looked up
    /// again rather than reported.
    pub fn check(&self, mode: CheckMode) -> Result<CheckReport> {
        // Snapshot, file listing and pack headers under the gate, so no
        // compaction deletes a pack in between.
        let gate = self.gate.read().unwrap_or_else(|e| e.into_inner());
        let view = self.view()?;
        let mut moment = view.moment();
        let mut files = list_packs(&self.dir.join(PACKS_DIR))?;
        let mut report = CheckReport {
            mode,
            chunks: 0,
            chunks_read: 0,
            bytes_read: 0,
            damaged: Vec::new(),
            packs: Vec::new(),
            inconsistencies: Vec::new(),
        };

        // Pack files against the packs table.
        let packs: HashMap<u32, _> = std::mem::take(&mut moment.packs).into_iter().collect();
        let next_pack = moment.next_pack;
        let mut sorted: Vec<_> = packs.iter().map(|(&k, &v)| (k, v)).collect();
        sorted.sort_by_key(|&(k, _)| k);
        let mut unusable = HashSet::new();
        for &(id, p) in &sorted {
            let Some(len) = files.remove(&id) else {
                report.packs.push(PackProblem::Missing(id));
                unusable.insert(id);
                continue;
            };
            if len < p.committed {
                report.packs.push(PackProblem::Short { pack: id, file_len: len, committed: p.committed });
            }
            let header = self
                .pack_file(id)
                .map_err(|e| e.to_string())
                .and_then(|f| check_pack_header(&f, id).map_err(|e| e.to_string())?);
            if let Err(why) = header {
                report.packs.push(PackProblem::BadHeader { pack: id, why });
            }
        }
        // A pack numbered at or past `next_pack` belongs to a batch in
        // flight right now, not to the past.
        for &id in files.keys().filter(|&&id| u64::from(id) < next_pack) {
            report.packs.push(PackProblem::Orphan(id));
        }
        drop(gate);

        // Every index entry: placement, and reading when asked.
        let keys = std::mem::take(&mut moment.owner_keys);
        let mut live: HashMap<u32, u64> = HashMap::new();
        let mut garbage = 0u64;
        let mut usage: HashMap<PublicKey, (u64, u64)> = HashMap::new();
        let mut to_read: Vec<(ChunkId, ChunkEntry)> = Vec::new();
        moment.for_each_group(|id, g| {
            let e = ChunkEntry::of(&g);
            report.chunks += 1;
            for &(number, n) in &g.refs {
                match keys.get(&number) {
                    _ if n == 0 => {
                        report.inconsistencies.push(format!("chunk {id} has a zero count for owner {number}"))
                    }
                    Some(owner) => {
                        let u = usage.entry(*owner).or_default();
                        u.0 += e.size();
                        u.1 += 1;
                    }
                    None => report.inconsistencies.push(format!("chunk {id} names unknown owner number {number}")),
                }
            }
            if e.owners == 0 {
                garbage += 1;
            } else {
                *live.entry(e.pack).or_default() += e.record_len();
            }
            if let Some(damage) = placement(&packs, &unusable, &e) {
                report.damaged.push(DamagedChunk { id, pack: e.pack, offset: e.offset, damage });
            } else if mode.selects(&id) {
                to_read.push((id, e));
                if to_read.len() >= READ_BATCH {
                    self.read_batch(&mut to_read, &mut report);
                }
            }
            Ok(())
        })?;
        self.read_batch(&mut to_read, &mut report);

        // Counters against what the entries say.
        let (recorded_garbage, recorded_chunks) = (moment.garbage, moment.chunks);
        if recorded_chunks != report.chunks {
            report
                .inconsistencies
                .push(format!("chunk counter says {recorded_chunks} chunks, the index has {}", report.chunks));
        }
        let crc = view.run.body_crc()?;
        if crc != view.run.info.crc {
            let path = view.run.path.as_ref().map_or_else(String::new, |p| p.display().to_string());
            report.inconsistencies.push(format!(
                "chunk index file {path} has checksum {crc:08x}, the index recorded {:08x}",
                view.run.info.crc
            ));
        }
        if recorded_garbage != garbage {
            report
                .inconsistencies
                .push(format!("garbage counter says {recorded_garbage} chunks, the index has {garbage}"));
        }
        for &(id, p) in &sorted {
            let actual = live.get(&id).copied().unwrap_or(0);
            if p.live != actual {
                report
                    .inconsistencies
                    .push(format!("pack {id:08x} records {} live bytes, its live chunks take {actual}", p.live));
            }
        }
        check_usage(&moment, usage, &mut report);
        Ok(report)
    }

    /// Reads and verifies a batch of records in pack order, then empties it.
    fn read_batch(&self, batch: &mut Vec<(ChunkId, ChunkEntry)>, report: &mut CheckReport) {
        batch.sort_by_key(|(_, e)| (e.pack, e.offset));
        let mut buf = Vec::new();
        let mut last = None;
        for (id, e) in batch.drain(..) {
            report.chunks_read += 1;
            match self.read_current(&id, &e, &mut buf, &mut last) {
                Ok(()) => report.bytes_read += buf.len() as u64,
                Err(damage) => report.damaged.push(DamagedChunk { id, pack: e.pack, offset: e.offset, damage }),
            }
        }
    }

    /// Reads the record at `e`; if that fails, and only then, asks the live
    /// index whether compaction has moved or dropped the chunk since the
    /// snapshot, and follows it.
    fn read_current(
        &self,
        id: &ChunkId,
        e: &ChunkEntry,
        buf: &mut Vec<u8>,
        last: &mut LastGroup,
    ) -> Result<(), Damage> {
        let first = {
            let _gate = self.gate.read().unwrap_or_else(|p| p.into_inner());
            self.verify_entry(id, e, buf, last)
        };
        let Err(err) = first else {
            return Ok(());
        };
        let _gate = self.gate.read().unwrap_or_else(|p| p.into_inner());
        match self.lookup(id) {
            Ok(None) => Ok(()),
            Ok(Some(now)) if (now.pack, now.offset) != (e.pack, e.offset) => {
                self.verify_entry(id, &now, buf, last).map_err(as_damage)
            }
            _ => Err(as_damage(err)),
        }
    }

    /// Reads what `e` points to and checks all the store can: a sealed
    /// chunk's record (its seal needs the handle), a grouped chunk's group
    /// (tag, format) and that its plaintext hashes to its chunkId. `buf`
    /// gets the bytes read.
    /// Groups are read from disk, not from the readers' cache, once for
    /// all their chunks (`last`: the group read last, as the batch is in
    /// disk order).
    fn verify_entry(&self, id: &ChunkId, e: &ChunkEntry, buf: &mut Vec<u8>, last: &mut LastGroup) -> super::Result<()> {
        if !e.is_grouped() {
            return self.read_entry(id, e, buf).map(drop);
        }
        let key = (e.pack, e.offset, e.crc);
        let group = match last {
            Some((k, g)) if *k == key => g.clone(),
            _ => {
                let g = self.open_group_at(id, e)?;
                *last = Some((key, g.clone()));
                g
            }
        };
        let range = self.place_in(id, e, &group)?;
        buf.clear();
        buf.extend_from_slice(&group.plain[range]);
        if Handle::of(buf).chunk_id() != *id {
            return Err(super::StoreError::Damaged {
                id: *id,
                pack: super::pack::pack_path(&self.dir, e.pack),
                offset: e.offset,
                damage: Damage::WrongContent,
            });
        }
        Ok(())
    }
}

fn as_damage(err: super::StoreError) -> Damage {
    match err {
        super::StoreError::Damaged { damage, .. } => damage,
        other => Damage::Io(other.to_string()),
    }
}

/// Per-owner usage matches the references the chunks list.
fn check_usage(moment: &IndexMoment, mut usage: HashMap<PublicKey, (u64, u64)>, report: &mut CheckReport) {
    for &(owner, u) in &moment.usage {
        let actual = usage.remove(&owner).unwrap_or_default();
        if (u.bytes, u.chunks) != actual {
            report.inconsistencies.push(format!(
                "owner {owner} usage says {} bytes in {} chunks, its references add up to {} in {}",
                u.bytes, u.chunks, actual.0, actual.1
            ));
        }
    }
    for owner in usage.keys() {
        report.inconsistencies.push(format!("owner {owner} has references but no usage entry"));
    }
}

/// Whether an entry points inside the committed part of a usable pack.
fn placement(packs: &HashMap<u32, super::index::PackEntry>, unusable: &HashSet<u32>, e: &ChunkEntry) -> Option<Damage> {
    let Some(p) = packs.get(&e.pack) else {
        return Some(Damage::UnknownPack);
    };
    if unusable.contains(&e.pack) {
        return Some(Damage::MissingPack);
    }
    // A group record's length is in its header, which a read checks.
    let end = if e.is_grouped() {
        e.offset.saturating_add(RECORD_HEADER_LEN as u64)
    } else if !(MIN_SEALED..=MAX_SEALED).contains(&(e.len as usize)) {
        return Some(Damage::WrongLength { header: e.len, index: e.len });
    } else {
        e.offset.saturating_add(e.record_len())
    };
    if e.offset < PACK_HEADER_LEN || end > p.committed {
        return Some(Damage::OutsideCommitted { end, committed: p.committed });
    }
    None
}

impl CheckMode {
    fn selects(&self, id: &ChunkId) -> bool {
        match *self {
            CheckMode::Structure => false,
            CheckMode::ReadAll => true,
            CheckMode::ReadSubset { percent, .. } if percent >= 100.0 => true,
            CheckMode::ReadSubset { percent, seed } => {
                let mut x = [0u8; 8];
                x.copy_from_slice(&id.0[..8]);
                let h = splitmix64(u64::from_le_bytes(x) ^ seed);
                // Compare in [0, 1) to avoid overflow at 100%.
                (h as f64 / u64::MAX as f64) * 100.0 < percent
            }
        }
    }
}

/// A fast 64-bit mixer, so any seed picks a well-spread subset.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
