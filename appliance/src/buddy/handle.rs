//! One session's handle on the buddy store: the
//! [`BuddyStore`](pastiche_core::session::BuddyStore) a session drives.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pastiche_core::session::{BuddyStore, ClientRecord, PutOutcome, Recovery, StagedCounts};
use pastiche_core::wire::IdList;
use pastiche_core::{ChunkId, PublicKey};

use super::epochs::StageBuf;
use super::error::{BuddyError, ChunkContext, DbContext, Result};
use super::names::stored_name;
use super::store::Shared;
use super::tables::*;
use super::throttle::Reservation;
use crate::store::pack::{MAX_SEALED, MIN_SEALED};
use crate::store::StoreError;

/// One session's view of the buddy store: the [`BuddyStore`] a
/// [`BuddySession`](pastiche_core::session::BuddySession) drives. Chunks and
/// staging are buffered here until `flush` or `prepare`; whatever is
/// buffered when the handle is dropped is lost, as the protocol allows.
pub struct BuddyHandle {
    shared: Arc<Shared>,
    /// The authenticated client (set by [`BuddyStore::client`]).
    client: Option<PublicKey>,
    quota: u64,
    /// The client's usage in the chunk store, read lazily.
    usage_base: Option<u64>,
    pending: Vec<(ChunkId, Vec<u8>)>,
    pending_ids: HashSet<ChunkId>,
    pending_bytes: u64,
    /// Chunks accepted since the last flush.
    puts: u32,
    stage: Option<StageBuf>,
    read_buf: Vec<u8>,
    /// Work done for the client (grouped chunks opened and sealed) not
    /// yet settled with the throttle ([`BuddyHandle::end_frame`]).
    work: u64,
    /// The throttle's hold on the client's bucket for the frame running.
    reservation: Option<Reservation>,
    last_error: Option<String>,
}

impl std::fmt::Debug for BuddyHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuddyHandle").field("client", &self.client).finish_non_exhaustive()
    }
}

impl Drop for BuddyHandle {
    fn drop(&mut self) {
        // What was buffered is lost (the protocol allows it): give its
        // share of the server-wide budget back.
        self.set_pending_bytes(0);
        // A frame cut short (a panic in the session) still lets go of the
        // client's bucket: a hold never settled would block it for good.
        self.end_frame(Instant::now());
    }
}

impl BuddyHandle {
    /// Sets the bytes this handle buffers, keeping the server-wide count
    /// of buffered chunk bytes in step.
    fn set_pending_bytes(&mut self, bytes: u64) {
        if bytes >= self.pending_bytes {
            self.shared.buffered.fetch_add(bytes - self.pending_bytes, Ordering::Relaxed);
        } else {
            self.shared.buffered.fetch_sub(self.pending_bytes - bytes, Ordering::Relaxed);
        }
        self.pending_bytes = bytes;
    }

    pub(super) fn new(shared: Arc<Shared>) -> BuddyHandle {
        BuddyHandle {
            shared,
            client: None,
            quota: 0,
            usage_base: None,
            pending: Vec::new(),
            pending_ids: HashSet::new(),
            pending_bytes: 0,
            puts: 0,
            stage: None,
            read_buf: Vec::new(),
            work: 0,
            reservation: None,
            last_error: None,
        }
    }

    /// The description of the last error a store method returned (the
    /// session only reports `Internal` to the peer; this is for the log).
    pub fn take_error(&mut self) -> Option<String> {
        self.last_error.take()
    }

    /// Asks the box's throttle whether the client's next frame may run at
    /// `now` ([`WorkThrottle::reserve`](super::throttle::WorkThrottle::reserve)),
    /// holding part of the client's bucket until [`BuddyHandle::end_frame`];
    /// `Err` says how long to wait before asking again. Frames before a
    /// client is authenticated do no grouped work and always run.
    pub fn begin_frame(&mut self, now: Instant) -> std::result::Result<(), Duration> {
        self.end_frame(now);
        if let Some(client) = &self.client {
            self.reservation = Some(self.shared.work.reserve(client, now)?);
        }
        Ok(())
    }

    /// Ends the frame begun at [`BuddyHandle::begin_frame`]: the throttle
    /// is charged the work done since the last frame ended (work done
    /// between frames is charged here too).
    pub fn end_frame(&mut self, now: Instant) {
        if let Some(reservation) = self.reservation.take() {
            self.shared.work.settle(reservation, std::mem::take(&mut self.work), now);
        }
    }

    /// Counts a frame the throttle made wait.
    pub fn note_work_wait(&self) {
        self.shared.work.note_wait();
    }

    /// The client this handle serves, once authenticated.
    pub fn client_key(&self) -> Option<PublicKey> {
        self.client
    }

    fn note<T>(&mut self, r: Result<T>) -> Result<T> {
        if let Err(e) = &r {
            self.last_error = Some(e.to_string());
        }
        r
    }

    fn bind(&mut self, client: &PublicKey) -> Result<()> {
        if *client == self.shared.own_key {
            return Err(BuddyError::OwnKey(*client));
        }
        match self.client {
            Some(bound) if bound != *client => Err(BuddyError::WrongClient { bound, asked: *client }),
            _ => {
                self.client = Some(*client);
                Ok(())
            }
        }
    }

    fn client_inner(&mut self, client: &PublicKey) -> Result<Option<ClientRecord>> {
        if self.shared.admission(client)?.is_none() {
            return Ok(None);
        }
        self.bind(client)?;
        self.shared.touch(client)?;
        let mut rec = self.shared.read_rec(client)?;
        if let Recovery::RollForward(epoch) = rec.epochs().recover() {
            // Left by a session that died between phases: roll it forward
            // now, so the client sees the epoch committed.
            self.shared.apply(client, epoch)?;
            rec = self.shared.read_rec(client)?;
        }
        let account = self.shared.account(client, &rec)?;
        self.quota = account.quota_bytes;
        self.usage_base = Some(account.used_bytes);
        Ok(Some(account))
    }

    fn admit_inner(&mut self, client: &PublicKey, code: &str) -> Result<Option<ClientRecord>> {
        if !self.shared.admit(client, code)? {
            return Ok(None);
        }
        self.client_inner(client)
    }

    /// Where the client's reference to `id` is in the chunk store, if it
    /// holds one (see [`names`](super::names)).
    fn stored_as(&self, client: &PublicKey, id: &ChunkId) -> Result<Option<ChunkId>> {
        const C: &str = "reading a chunk name";
        let chunks = self.shared.chunks();
        if chunks.refcount(client, id).chunks("reading a reference")? > 0 {
            return Ok(Some(*id));
        }
        let txn = self.shared.db.begin_read().db(C)?;
        let Some(stored) = txn.open_table(CHUNK_NAMES).db(C)?.get((client.0, id.0)).db(C)?.map(|g| ChunkId(g.value()))
        else {
            return Ok(None);
        };
        Ok((chunks.refcount(client, &stored).chunks("reading a reference")? > 0).then_some(stored))
    }

    fn put_inner(&mut self, client: &PublicKey, id: &ChunkId, sealed: &[u8]) -> Result<PutOutcome> {
        self.bind(client)?;
        if !(MIN_SEALED..=MAX_SEALED).contains(&sealed.len()) {
            return Err(BuddyError::Chunks {
                context: "accepting a chunk",
                source: StoreError::BadChunkLen { id: *id, len: sealed.len() },
            });
        }
        if self.pending_ids.contains(id) {
            self.puts = self.puts.saturating_add(1);
            return Ok(PutOutcome::Stored);
        }
        if self.stored_as(client, id)?.is_some() {
            // Already the client's: nothing to store or charge.
            self.puts = self.puts.saturating_add(1);
            return Ok(PutOutcome::Stored);
        }
        let len = sealed.len() as u64;
        if !self.fits(client, len)? {
            return Ok(PutOutcome::QuotaExceeded);
        }
        self.pending.push((*id, sealed.to_vec()));
        self.pending_ids.insert(*id);
        self.set_pending_bytes(self.pending_bytes + len);
        self.puts = self.puts.saturating_add(1);
        if self.pending_bytes >= MAX_PENDING_BYTES || self.shared.buffered.load(Ordering::Relaxed) >= MAX_BUFFERED_BYTES
        {
            self.write_chunks(client)?;
        }
        Ok(PutOutcome::Stored)
    }

    /// Whether `more` bytes fit the client's quota and the box's free-disk
    /// floor, counting what this handle buffers.
    fn fits(&mut self, client: &PublicKey, more: u64) -> Result<bool> {
        let base = match self.usage_base {
            Some(u) => u,
            None => {
                let u = self.shared.usage(client)?;
                self.usage_base = Some(u);
                u
            }
        };
        let buffered = self.pending_bytes.saturating_add(self.stage.as_ref().map_or(0, |s| s.bytes as u64));
        if base.saturating_add(buffered).saturating_add(more) > self.quota {
            return Ok(false);
        }
        self.shared.disk_allows(buffered.saturating_add(more))
    }

    /// Stages `data` (an object, or the root when `name` is `None`) unless
    /// it does not fit.
    fn stage_meta(&mut self, client: &PublicKey, epoch: u64, name: Option<&Name>, data: &[u8]) -> Result<PutOutcome> {
        self.bind(client)?;
        if !self.fits(client, data.len() as u64)? {
            return Ok(PutOutcome::QuotaExceeded);
        }
        let buf = self.stage_buf(client, epoch)?;
        buf.bytes = buf.bytes.saturating_add(data.len());
        match name {
            Some(name) => {
                buf.objects.insert(*name, data.to_vec());
            }
            None => buf.root = Some(data.to_vec()),
        }
        self.maybe_write_stage(client)?;
        Ok(PutOutcome::Stored)
    }

    /// Writes buffered chunks (durable on return): each under its chunkId
    /// when the box holds those very bytes there, else under its stored
    /// name ([`names`](super::names)); then the names, in `buddy.redb`.
    fn write_chunks(&mut self, client: &PublicKey) -> Result<()> {
        const C: &str = "recording chunk names";
        if self.pending.is_empty() {
            return Ok(());
        }
        let shared = self.shared.clone();
        let chunks = shared.chunks();
        let own = shared.own_key;
        let refs = shared.lock_refs();
        // Comparing with the box's own grouped copy seals it: charged once
        // the lock is released, so a throttled client waits alone.
        let mut work = 0u64;
        let mut plain: Vec<ChunkId> = Vec::new();
        let mut named: Vec<(ChunkId, &[u8])> = Vec::new();
        let mut rows: Vec<(ChunkId, ChunkId)> = Vec::new();
        for (id, data) in &self.pending {
            let box_holds = chunks.refcount(&own, id).chunks("reading a reference")? > 0;
            if box_holds {
                let read = chunks.get_into_metered(id, &mut self.read_buf);
                work += read.as_ref().map_or(0, |w| *w);
                match read.map(drop) {
                    Ok(()) if self.read_buf == *data => {
                        if chunks.refcount(client, id).chunks("reading a reference")? == 0 {
                            plain.push(*id);
                        }
                        continue;
                    }
                    // A damaged copy of the box's own is no reason to refuse
                    // the client's bytes: they go under a stored name.
                    Ok(()) | Err(StoreError::NotFound(_) | StoreError::Damaged { .. }) => {}
                    Err(source) => return Err(BuddyError::Chunks { context: "comparing a chunk", source }),
                }
            }
            let stored = super::names::usable_name(chunks, stored_name(id, data), &mut self.read_buf)
                .chunks("checking a stored copy")?;
            if chunks.refcount(client, &stored).chunks("reading a reference")? == 0 {
                named.push((stored, data.as_slice()));
            }
            rows.push((*id, stored));
        }
        chunks.put_batch(client, &named).chunks("storing chunks")?;
        if !plain.is_empty() {
            let s = chunks.add_refs(client, &plain).chunks("adding references")?;
            if let Some(id) = s.missing.first() {
                return Err(BuddyError::Chunks { context: "adding references", source: StoreError::NotFound(*id) });
            }
        }
        if !rows.is_empty() {
            let txn = begin_write(&shared.db, C)?;
            {
                let mut t = txn.open_table(CHUNK_NAMES).db(C)?;
                for (id, stored) in &rows {
                    t.insert((client.0, id.0), stored.0).db(C)?;
                }
            }
            txn.commit().db(C)?;
        }
        drop(refs);
        self.work = self.work.saturating_add(work);
        self.pending.clear();
        self.pending_ids.clear();
        self.set_pending_bytes(0);
        self.usage_base = None;
        Ok(())
    }

    /// The buffer for `epoch`, replacing one for another epoch.
    fn stage_buf(&mut self, client: &PublicKey, epoch: u64) -> Result<&mut StageBuf> {
        self.bind(client)?;
        if self.stage.as_ref().is_none_or(|s| s.epoch != epoch) {
            self.stage = Some(StageBuf { epoch, ..StageBuf::default() });
        }
        // Just set above when absent.
        self.stage.as_mut().ok_or(BuddyError::NoClient)
    }

    /// Writes the staging buffer (unprepared) if it grew too big.
    fn maybe_write_stage(&mut self, client: &PublicKey) -> Result<()> {
        if self.stage.as_ref().is_some_and(|s| s.bytes >= MAX_STAGE_BYTES) {
            if let Some(buf) = self.stage.take() {
                self.shared.write_staging(client, buf.epoch, Some(&buf), None)?;
                self.usage_base = None;
            }
        }
        Ok(())
    }

    fn flush_inner(&mut self) -> Result<u32> {
        let Some(client) = self.client else {
            return Ok(std::mem::take(&mut self.puts));
        };
        self.write_chunks(&client)?;
        if let Some(buf) = self.stage.take() {
            self.shared.write_staging(&client, buf.epoch, Some(&buf), None)?;
            self.usage_base = None;
        }
        Ok(std::mem::take(&mut self.puts))
    }

    fn prepare_inner(&mut self, client: &PublicKey, epoch: u64, expected: StagedCounts) -> Result<StagedCounts> {
        self.bind(client)?;
        let buf = self.stage.take().filter(|s| s.epoch == epoch);
        self.usage_base = None;
        self.shared.write_staging(client, epoch, buf.as_ref(), Some(expected))
    }

    fn apply_inner(&mut self, client: &PublicKey, epoch: u64) -> Result<()> {
        self.bind(client)?;
        self.shared.apply(client, epoch)?;
        if self.stage.as_ref().is_some_and(|s| s.epoch <= epoch) {
            self.stage = None;
        }
        self.usage_base = None;
        Ok(())
    }

    fn abort_inner(&mut self, client: &PublicKey, epoch: u64) -> Result<()> {
        self.bind(client)?;
        if self.stage.as_ref().is_some_and(|s| s.epoch == epoch) {
            self.stage = None;
        }
        self.shared.abort(client, epoch)?;
        self.usage_base = None;
        Ok(())
    }

    fn get_chunk_inner(&mut self, client: &PublicKey, id: &ChunkId, out: &mut [u8]) -> Result<Option<usize>> {
        self.bind(client)?;
        // Only the client's own reference is served (no oracle), and it is
        // to the bytes it uploaded.
        let Some(stored) = self.stored_as(client, id)? else { return Ok(None) };
        match self.shared.chunks().get_into_metered(&stored, &mut self.read_buf) {
            Ok(work) => self.work = self.work.saturating_add(work),
            Err(StoreError::NotFound(_)) => return Ok(None),
            // Rot on this disk: the copy cannot be served or proven, so it
            // is "not held" and the client ships it again. Refusing would
            // end the session (and an audit) over one bad chunk.
            Err(e @ StoreError::Damaged { .. }) => {
                tracing::warn!("{e}: answered as not held");
                return Ok(None);
            }
            Err(source) => return Err(BuddyError::Chunks { context: "reading a chunk", source }),
        }
        copy_out(&self.read_buf, out, "chunk").map(Some)
    }

    fn get_object_inner(&mut self, client: &PublicKey, name: &Name, out: &mut [u8]) -> Result<Option<usize>> {
        const C: &str = "reading an object";
        self.bind(client)?;
        let txn = self.shared.db.begin_read().db(C)?;
        let t = txn.open_table(OBJECTS).db(C)?;
        let Some(g) = t.get((client.0, *name)).db(C)? else {
            return Ok(None);
        };
        copy_out(g.value(), out, "object").map(Some)
    }

    fn get_root_inner(&mut self, client: &PublicKey, out: &mut [u8]) -> Result<Option<(u64, usize)>> {
        const C: &str = "reading a root";
        self.bind(client)?;
        let txn = self.shared.db.begin_read().db(C)?;
        let t = txn.open_table(ROOTS).db(C)?;
        let Some(g) = t.get(&client.0).db(C)? else {
            return Ok(None);
        };
        let (epoch, data) = g.value();
        Ok(Some((epoch, copy_out(data, out, "root")?)))
    }

    fn drop_inner(&mut self, client: &PublicKey, epoch: u64) -> Result<()> {
        self.bind(client)?;
        self.pending.clear();
        self.pending_ids.clear();
        self.set_pending_bytes(0);
        self.stage = None;
        self.shared.drop_all(client, epoch)?;
        self.usage_base = None;
        Ok(())
    }
}

fn copy_out(data: &[u8], out: &mut [u8], what: &'static str) -> Result<usize> {
    let cap = out.len();
    let slot = out.get_mut(..data.len()).ok_or(BuddyError::BufferTooSmall { what, len: data.len(), cap })?;
    slot.copy_from_slice(data);
    Ok(data.len())
}

impl BuddyStore for BuddyHandle {
    type Error = BuddyError;

    fn drop_notice(&mut self, client: &PublicKey) -> Result<Option<pastiche_core::wire::DropNotice>> {
        let r = self.bind(client).and_then(|()| self.shared.deliver_notice(client, super::admission::unix_now()));
        self.note(r)
    }

    fn client(&mut self, client: &PublicKey) -> Result<Option<ClientRecord>> {
        let r = self.client_inner(client);
        self.note(r)
    }

    fn admit(&mut self, client: &PublicKey, code: &str) -> Result<Option<ClientRecord>> {
        let r = self.admit_inner(client, code);
        self.note(r)
    }

    fn holds_chunk(&mut self, client: &PublicKey, id: &ChunkId) -> Result<bool> {
        let r = if self.pending_ids.contains(id) { Ok(true) } else { self.stored_as(client, id).map(|s| s.is_some()) };
        self.note(r)
    }

    fn put_chunk(&mut self, client: &PublicKey, id: &ChunkId, sealed: &[u8]) -> Result<PutOutcome> {
        let r = self.put_inner(client, id, sealed);
        self.note(r)
    }

    fn flush(&mut self) -> Result<u32> {
        let r = self.flush_inner();
        self.note(r)
    }

    fn get_chunk(&mut self, client: &PublicKey, id: &ChunkId, out: &mut [u8]) -> Result<Option<usize>> {
        let r = self.get_chunk_inner(client, id, out);
        self.note(r)
    }

    fn stage_object(&mut self, client: &PublicKey, epoch: u64, name: &[u8; 20], data: &[u8]) -> Result<PutOutcome> {
        let r = self.stage_meta(client, epoch, Some(name), data);
        self.note(r)
    }

    fn stage_deletes(&mut self, client: &PublicKey, epoch: u64, ids: IdList<'_>) -> Result<()> {
        let r = self.stage_buf(client, epoch).map(|buf| {
            buf.bytes = buf.bytes.saturating_add(ids.as_bytes().len());
            buf.deletes.extend(ids.iter());
        });
        let r = r.and_then(|()| self.maybe_write_stage(client));
        self.note(r)
    }

    fn stage_root(&mut self, client: &PublicKey, epoch: u64, data: &[u8]) -> Result<PutOutcome> {
        let r = self.stage_meta(client, epoch, None, data);
        self.note(r)
    }

    fn prepare(&mut self, client: &PublicKey, epoch: u64, expected: StagedCounts) -> Result<StagedCounts> {
        let r = self.prepare_inner(client, epoch, expected);
        self.note(r)
    }

    fn apply(&mut self, client: &PublicKey, epoch: u64) -> Result<()> {
        let r = self.apply_inner(client, epoch);
        self.note(r)
    }

    fn abort(&mut self, client: &PublicKey, epoch: u64) -> Result<()> {
        let r = self.abort_inner(client, epoch);
        self.note(r)
    }

    fn get_object(&mut self, client: &PublicKey, name: &[u8; 20], out: &mut [u8]) -> Result<Option<usize>> {
        let r = self.get_object_inner(client, name, out);
        self.note(r)
    }

    fn get_root(&mut self, client: &PublicKey, out: &mut [u8]) -> Result<Option<(u64, usize)>> {
        let r = self.get_root_inner(client, out);
        self.note(r)
    }

    fn drop_all(&mut self, client: &PublicKey, epoch: u64) -> Result<()> {
        let r = self.drop_inner(client, epoch);
        self.note(r)
    }
}
