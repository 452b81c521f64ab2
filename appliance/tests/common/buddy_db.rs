//! A stopped buddy's `buddy.redb`, edited behind its back: the tests that
//! play a faithless buddy (one that loses a client's chunks, one that serves
//! forged bytes) change its record of where each of a client's chunks is
//! stored. Each test keeps its own policy; this module only opens the record.

use pastiche_core::{ChunkId, PublicKey};
use redb::{ReadableTable, Table, TableDefinition};

use super::TestBox;

/// The buddy's record of where a client's chunk is stored:
/// (client key, chunkId) -> stored name (`appliance/src/buddy/store.rs`).
pub const CHUNK_NAMES: TableDefinition<([u8; 32], [u8; 20]), [u8; 20]> = TableDefinition::new("chunk_names");

/// The open `chunk_names` table, for a policy to change rows of.
pub type ChunkNames<'txn> = Table<'txn, ([u8; 32], [u8; 20]), [u8; 20]>;

/// One of a client's chunks as the buddy records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredChunk {
    /// The chunkId the client knows it by.
    pub id: ChunkId,
    /// The name its sealed bytes are stored under in the buddy's store.
    pub name: ChunkId,
}

/// Opens the `buddy.redb` of buddy `b` (which must be stopped: it holds the
/// file locked while it runs), lists the rows of `client` in key order, and
/// lets `edit` change the table; commits what `edit` did and returns its
/// result.
pub fn edit_client_chunks<R>(
    b: &TestBox,
    client: &PublicKey,
    edit: impl FnOnce(&mut ChunkNames<'_>, &[StoredChunk]) -> R,
) -> R {
    let db = redb::Database::open(b.data.join("buddy.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    let out = {
        let mut table = txn.open_table(CHUNK_NAMES).unwrap();
        let rows: Vec<StoredChunk> = table
            .iter()
            .unwrap()
            .map(|r| r.unwrap())
            .filter(|(k, _)| k.value().0 == client.0)
            .map(|(k, v)| StoredChunk { id: ChunkId(k.value().1), name: ChunkId(v.value()) })
            .collect();
        edit(&mut table, &rows)
    };
    txn.commit().unwrap();
    out
}

/// The buddy's last drop notice of each client: client key -> (seq, dropped
/// at, bytes, reason, delivered at) (`appliance/src/buddy/notices.rs`).
pub const DROP_NOTICES: TableDefinition<[u8; 32], (u64, u64, u64, u8, u64)> = TableDefinition::new("drop_notices");

/// Makes buddy `b` (stopped) hold drop notice `notice` for `client`, not
/// delivered yet, as if it had dropped that client's data: what it hands
/// the client at its next `GetNotice`, whatever it really holds.
pub fn set_drop_notice(b: &TestBox, client: &PublicKey, notice: &pastiche_core::wire::DropNotice) {
    let db = redb::Database::open(b.data.join("buddy.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(DROP_NOTICES)
        .unwrap()
        .insert(client.0, (notice.seq, notice.dropped_at, notice.bytes, notice.reason, 0))
        .unwrap();
    txn.commit().unwrap();
}
