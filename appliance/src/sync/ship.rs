//! The chunks of a sync: offered in batches, in the order they lie in the
//! store; what the buddy lacks is read and sealed (on every core) while the
//! chunks before it are sent; durability is asked for every [`FLUSH_BYTES`]
//! and at the end, and only flushed chunks are recorded as shipped.

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{anyhow, bail, Context, Result};
use pastiche_core::{ChunkId, PublicKey};

use super::conn::BuddyConn;
use super::relay::Relay;
use super::{state, BuddyEntry, SyncReport};
use crate::progress::Progress;
use crate::repo::Repo;

/// Ids per offer (the protocol's maximum).
pub(super) const OFFER_BATCH: usize = pastiche_core::wire::MAX_IDS_PER_MESSAGE;
/// Bytes sent between two flushes.
const FLUSH_BYTES: u64 = 256 << 20;
/// Sealed chunks read ahead of the sender.
const READ_AHEAD: usize = 256;

/// Offers `to_offer` to the buddy on `conn` and ships what it lacks,
/// counting into `report`. Chunks this box lacks (it was recovered) are
/// pulled from its other buddies. Fails, with nothing recorded past the
/// last flush, if the buddy refuses any chunk for its quota.
pub(super) fn ship_chunks(
    repo: &Repo,
    conn: &mut BuddyConn,
    entry: &BuddyEntry,
    to_offer: Vec<ChunkId>,
    progress: &Progress,
    report: &mut SyncReport,
) -> Result<()> {
    let db = repo.meta.database()?;
    let buddy = conn.buddy_key;
    // Offered in the store's order: the chunks a batch ships are read
    // together, and each group of the box's own chunks is opened once.
    let to_offer = repo.store.in_store_order(to_offer, |id| *id)?;
    report.chunks_offered = to_offer.len() as u64;
    let mut quota_refusals = 0;
    let mut unflushed: Vec<ChunkId> = Vec::new();
    let mut unflushed_bytes = 0u64;
    let relay = Relay::new(repo, entry);
    for batch in to_offer.chunks(OFFER_BATCH) {
        let lacks = conn.offer(batch)?;
        let needed: Vec<ChunkId> = batch.iter().zip(&lacks).filter(|(_, &l)| l).map(|(id, _)| *id).collect();
        let sent = send_batch(repo, conn, &relay, &needed)?;
        report.chunks_sent += needed.len() as u64;
        report.bytes_sent += sent;
        progress.bytes_done(sent);
        unflushed.extend_from_slice(batch);
        unflushed_bytes += sent;
        // Durability costs a round trip and an fsync on the buddy.
        if unflushed_bytes >= FLUSH_BYTES {
            quota_refusals += flush_and_record(conn, db, &buddy, &mut unflushed)?;
            unflushed_bytes = 0;
        }
    }
    quota_refusals += flush_and_record(conn, db, &buddy, &mut unflushed)?;
    if quota_refusals > 0 {
        bail!(
            "buddy {} is out of quota for us ({} chunks refused; quota {} bytes, used {}): nothing committed there",
            entry.addr,
            quota_refusals,
            conn.welcome.quota_bytes,
            conn.welcome.used_bytes
        );
    }
    Ok(())
}

/// Sends the sealed chunks of `needed` (in the store's order), returning
/// the bytes sent. Reading overlaps with sending: reader threads fetch and
/// seal the chunks while this thread writes them to the buddy.
fn send_batch(repo: &Repo, conn: &mut BuddyConn, relay: &Relay, needed: &[ChunkId]) -> Result<u64> {
    std::thread::scope(|scope| {
        let (tx, rx) = crossbeam_channel::bounded::<Result<(ChunkId, Vec<u8>)>>(READ_AHEAD);
        scope.spawn(move || {
            if let Err(e) = read_batch(repo, relay, needed, &tx) {
                let _ = tx.send(Err(e));
            }
        });
        let mut sent = 0u64;
        for item in rx {
            let (id, sealed) = item?;
            conn.put_chunk(id, &sealed)?;
            sent += sealed.len() as u64;
        }
        Ok(sent)
    })
}

/// Reads the sealed chunks of `needed` into `tx`: those in the store on
/// every core, then those it lacks (it was recovered) from the other
/// buddies. Stops quietly when the sender has gone.
fn read_batch(
    repo: &Repo,
    relay: &Relay,
    needed: &[ChunkId],
    tx: &crossbeam_channel::Sender<Result<(ChunkId, Vec<u8>)>>,
) -> Result<()> {
    let gone = AtomicBool::new(false);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let absent = repo
        .store
        .read_sealed_many(needed, threads, |id, sealed| {
            let ok = tx.send(Ok((id, sealed))).is_ok();
            gone.fetch_or(!ok, Ordering::Relaxed);
            ok
        })
        .context("reading the chunks to ship")?;
    if absent.is_empty() || gone.load(Ordering::Relaxed) {
        return Ok(());
    }
    relay.pull(&absent, |id, sealed| tx.send(Ok((id, sealed))).map_err(|_| anyhow!("the shipping stopped")))
}

/// Asks the buddy to make everything durable; records the chunks as held
/// there unless some were refused. Returns how many were refused.
fn flush_and_record(
    conn: &mut BuddyConn,
    db: &redb::Database,
    buddy: &PublicKey,
    ids: &mut Vec<ChunkId>,
) -> Result<u32> {
    let (_, refused) = conn.flush()?;
    if refused == 0 {
        state::add_chunks(db, buddy, ids)?;
    }
    ids.clear();
    Ok(refused)
}
