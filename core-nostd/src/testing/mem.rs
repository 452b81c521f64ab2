//! An in-memory buddy store with the trait's semantics, persisting the
//! ledger's decisions. [`MemStore::crash`] drops everything not durable.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::string::String;
use std::vec::Vec;

use crate::identity::PublicKey;
use crate::seal::ChunkId;
use crate::session::{
    AbortStep, ApplyStep, BuddyStore, ClientRecord, Epochs, PrepareStep, PutOutcome, Recovery, StageStep, StagedCounts,
    StagingDigest,
};
use crate::wire::IdList;

/// Staging of one epoch.
#[derive(Default, Clone, Debug)]
pub struct MemStaging {
    /// Staged objects.
    pub objects: BTreeMap<[u8; 20], Vec<u8>>,
    /// Staged deletes.
    pub deletes: BTreeSet<[u8; 20]>,
    /// Staged root.
    pub root: Option<Vec<u8>>,
}

impl MemStaging {
    /// The [`StagingDigest`](crate::session::StagingDigest) of this staged
    /// set (what a client signs in its commit, and what a buddy checks).
    pub fn digest(&self) -> [u8; 32] {
        let mut d = StagingDigest::new();
        for (name, data) in &self.objects {
            d.object(name, data);
        }
        for id in &self.deletes {
            d.delete(id);
        }
        if let Some(root) = &self.root {
            d.root(root);
        }
        d.finish()
    }
}

/// An admitted client.
#[derive(Default, Clone, Debug)]
pub struct MemClient {
    /// Its quota.
    pub quota: u64,
    /// Its epochs, as the ledger decides them.
    pub epochs: Epochs,
    /// Committed objects.
    pub objects: BTreeMap<[u8; 20], Vec<u8>>,
    /// Committed root and its epoch.
    pub root: Option<(u64, Vec<u8>)>,
    /// What is staged for `epochs.staged`.
    pub staging: MemStaging,
}

/// One stored version of a chunk id: its bytes and their owners.
#[derive(Clone, Debug)]
pub struct MemVersion {
    /// The sealed bytes.
    pub bytes: Vec<u8>,
    /// Who references them.
    pub owners: BTreeSet<PublicKey>,
}

/// A store that separates durable state from buffered state.
#[derive(Default, Clone, Debug)]
pub struct MemStore {
    /// Stored chunk versions per id (more than one only when uploads of an
    /// id differ, as a forged one does).
    pub chunks: HashMap<ChunkId, Vec<MemVersion>>,
    /// Puts not yet flushed.
    pub pending: Vec<(PublicKey, ChunkId, Vec<u8>)>,
    /// Admitted clients.
    pub clients: HashMap<PublicKey, MemClient>,
    /// Valid pairing codes and the quota each grants.
    pub invites: HashMap<String, u64>,
    /// Chunk versions ever written.
    pub chunks_written: usize,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> MemStore {
        MemStore::default()
    }

    /// Admits `client` directly (as its owner would), with `quota` bytes.
    pub fn enroll(&mut self, client: PublicKey, quota: u64) {
        self.clients.entry(client).or_default().quota = quota;
    }

    /// Makes `code` a valid one-time pairing code granting `quota` bytes.
    pub fn invite(&mut self, code: &str, quota: u64) {
        self.invites.insert(String::from(code), quota);
    }

    /// A power cut or restart: unflushed chunks and unprepared staging
    /// vanish, a prepared epoch is applied by recovery.
    pub fn crash(&mut self) {
        self.pending.clear();
        let keys: Vec<PublicKey> = self.clients.keys().copied().collect();
        for k in keys {
            match self.clients[&k].epochs.recover() {
                Recovery::Clean => {}
                Recovery::RollForward(epoch) => self.apply_epoch(&k, epoch),
                Recovery::Discard(_) => {
                    let c = self.clients.get_mut(&k).expect("listed");
                    c.staging = MemStaging::default();
                    c.epochs = Epochs { staged: 0, prepared: false, ..c.epochs };
                }
            }
        }
    }

    /// The bytes `client` references under `id`.
    pub fn version_of(&self, client: &PublicKey, id: &ChunkId) -> Option<&Vec<u8>> {
        self.chunks.get(id)?.iter().find(|v| v.owners.contains(client)).map(|v| &v.bytes)
    }

    /// Bytes charged to the client: chunks (flushed or not), committed and
    /// staged objects and roots.
    fn used(&self, client: &PublicKey) -> u64 {
        let meta = self.clients.get(client).map_or(0, |c| {
            let objects: usize = c.objects.values().chain(c.staging.objects.values()).map(Vec::len).sum();
            let roots = c.root.as_ref().map_or(0, |(_, r)| r.len()) + c.staging.root.as_ref().map_or(0, Vec::len);
            (objects + roots) as u64
        });
        let stored: u64 =
            self.chunks.values().flatten().filter(|v| v.owners.contains(client)).map(|v| v.bytes.len() as u64).sum();
        meta + stored + self.pending.iter().filter(|(c, _, _)| c == client).map(|(_, _, d)| d.len() as u64).sum::<u64>()
    }

    fn record(&self, client: &PublicKey) -> Option<ClientRecord> {
        let c = self.clients.get(client)?;
        Some(ClientRecord {
            quota_bytes: c.quota,
            used_bytes: self.used(client),
            committed_epoch: c.epochs.committed,
            staged_epoch: c.epochs.staged,
        })
    }

    /// Whether `more` bytes would take the client past its quota.
    fn over_quota(&self, client: &PublicKey, more: usize) -> Result<bool, ()> {
        let quota = self.clients.get(client).ok_or(())?.quota;
        Ok(self.used(client).saturating_add(more as u64) > quota)
    }

    fn staging(&mut self, client: &PublicKey, epoch: u64) -> Result<&mut MemStaging, ()> {
        let c = self.clients.get_mut(client).ok_or(())?;
        match c.epochs.stage(epoch).map_err(|_| ())? {
            StageStep::Continue => {}
            StageStep::Begin { .. } => {
                c.staging = MemStaging::default();
                c.epochs = c.epochs.after_stage(epoch);
            }
        }
        Ok(&mut c.staging)
    }

    fn release(&mut self, client: &PublicKey, id: &ChunkId) {
        if let Some(versions) = self.chunks.get_mut(id) {
            for v in versions.iter_mut() {
                v.owners.remove(client);
            }
            versions.retain(|v| !v.owners.is_empty());
            if versions.is_empty() {
                self.chunks.remove(id);
            }
        }
    }

    fn apply_epoch(&mut self, client: &PublicKey, epoch: u64) {
        let Some(c) = self.clients.get_mut(client) else { return };
        if c.epochs.apply(epoch) != Ok(ApplyStep::Apply) {
            return;
        }
        let s = core::mem::take(&mut c.staging);
        // A deleted id names a chunk reference or one of the client's
        // objects; objects staged in the same epoch are kept.
        for id in &s.deletes {
            c.objects.remove(id);
        }
        c.objects.extend(s.objects);
        if let Some(r) = s.root {
            c.root = Some((epoch, r));
        }
        c.epochs = c.epochs.after_apply(epoch);
        for id in s.deletes {
            self.release(client, &ChunkId(id));
        }
    }
}

fn copy(d: &[u8], out: &mut [u8]) -> usize {
    out[..d.len()].copy_from_slice(d);
    d.len()
}

impl BuddyStore for MemStore {
    type Error = ();

    fn client(&mut self, client: &PublicKey) -> Result<Option<ClientRecord>, ()> {
        Ok(self.record(client))
    }
    fn admit(&mut self, client: &PublicKey, code: &str) -> Result<Option<ClientRecord>, ()> {
        let Some(quota) = self.invites.remove(code) else { return Ok(None) };
        self.enroll(*client, quota);
        Ok(self.record(client))
    }
    fn holds_chunk(&mut self, client: &PublicKey, id: &ChunkId) -> Result<bool, ()> {
        Ok(self.version_of(client, id).is_some())
    }
    fn put_chunk(&mut self, client: &PublicKey, id: &ChunkId, sealed: &[u8]) -> Result<PutOutcome, ()> {
        if self.version_of(client, id).is_some() {
            return Ok(PutOutcome::Stored);
        }
        if self.over_quota(client, sealed.len())? {
            return Ok(PutOutcome::QuotaExceeded);
        }
        self.pending.push((*client, *id, sealed.to_vec()));
        Ok(PutOutcome::Stored)
    }
    fn flush(&mut self) -> Result<u32, ()> {
        let mut n = 0;
        for (c, id, d) in core::mem::take(&mut self.pending) {
            let versions = self.chunks.entry(id).or_default();
            if versions.iter().any(|v| v.owners.contains(&c)) {
                continue;
            }
            match versions.iter_mut().find(|v| v.bytes == d) {
                Some(v) => {
                    v.owners.insert(c);
                }
                None => {
                    versions.push(MemVersion { bytes: d, owners: BTreeSet::from([c]) });
                    n += 1;
                }
            }
        }
        self.chunks_written += n as usize;
        Ok(n)
    }
    fn get_chunk(&mut self, client: &PublicKey, id: &ChunkId, out: &mut [u8]) -> Result<Option<usize>, ()> {
        Ok(self.version_of(client, id).map(|d| copy(d, out)))
    }
    fn stage_object(&mut self, client: &PublicKey, epoch: u64, name: &[u8; 20], data: &[u8]) -> Result<PutOutcome, ()> {
        if self.over_quota(client, data.len())? {
            return Ok(PutOutcome::QuotaExceeded);
        }
        self.staging(client, epoch)?.objects.insert(*name, data.to_vec());
        Ok(PutOutcome::Stored)
    }
    fn stage_deletes(&mut self, client: &PublicKey, epoch: u64, ids: IdList<'_>) -> Result<(), ()> {
        self.staging(client, epoch)?.deletes.extend(ids.iter());
        Ok(())
    }
    fn stage_root(&mut self, client: &PublicKey, epoch: u64, data: &[u8]) -> Result<PutOutcome, ()> {
        if self.over_quota(client, data.len())? {
            return Ok(PutOutcome::QuotaExceeded);
        }
        self.staging(client, epoch)?.root = Some(data.to_vec());
        Ok(PutOutcome::Stored)
    }
    fn prepare(&mut self, client: &PublicKey, epoch: u64, expected: StagedCounts) -> Result<StagedCounts, ()> {
        let c = self.clients.get_mut(client).ok_or(())?;
        let counts = if c.epochs.staged == epoch {
            StagedCounts {
                objects: c.staging.objects.len() as u32,
                deletes: c.staging.deletes.len() as u32,
                root: c.staging.root.is_some(),
                digest: c.staging.digest(),
            }
        } else {
            StagedCounts::default()
        };
        let step = c.epochs.prepare(epoch, counts, expected).map_err(|_| ())?;
        if step == PrepareStep::Discard {
            c.staging = MemStaging::default();
        }
        c.epochs = c.epochs.after_prepare(step);
        Ok(counts)
    }
    fn apply(&mut self, client: &PublicKey, epoch: u64) -> Result<(), ()> {
        let c = self.clients.get(client).ok_or(())?;
        c.epochs.apply(epoch).map_err(|_| ())?;
        self.apply_epoch(client, epoch);
        Ok(())
    }
    fn abort(&mut self, client: &PublicKey, epoch: u64) -> Result<(), ()> {
        let c = self.clients.get_mut(client).ok_or(())?;
        let step = c.epochs.abort(epoch);
        if step == AbortStep::Discard {
            c.staging = MemStaging::default();
        }
        c.epochs = c.epochs.after_abort(step);
        Ok(())
    }
    fn get_object(&mut self, client: &PublicKey, name: &[u8; 20], out: &mut [u8]) -> Result<Option<usize>, ()> {
        Ok(self.clients.get(client).and_then(|c| c.objects.get(name)).map(|d| copy(d, out)))
    }
    fn get_root(&mut self, client: &PublicKey, out: &mut [u8]) -> Result<Option<(u64, usize)>, ()> {
        Ok(self.clients.get(client).and_then(|c| c.root.as_ref()).map(|(e, d)| (*e, copy(d, out))))
    }
    fn drop_all(&mut self, client: &PublicKey, epoch: u64) -> Result<(), ()> {
        let c = self.clients.get_mut(client).ok_or(())?;
        let epochs = c.epochs.drop_all(epoch).map_err(|_| ())?;
        *c = MemClient { quota: c.quota, epochs, ..MemClient::default() };
        let ids: Vec<ChunkId> = self.chunks.keys().copied().collect();
        for id in ids {
            self.release(client, &id);
        }
        Ok(())
    }
}
