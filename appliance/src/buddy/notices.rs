//! Drop notices: each time the buddy drops a client's data on its own (a
//! space crisis, [`crisis`](super::crisis), or a decommission,
//! [`lifecycle`](super::lifecycle)), it records a notice for that client:
//! a sequence number that only grows, when, how many bytes and why. The
//! client asks for it at each contact (`GetNotice`, `docs/PROTOCOL.md`
//! §4.9) and acts on a notice once, by its sequence number. The buddy keeps
//! the last notice of each client and when it was last delivered, for
//! `pastiche clients list`.
//!
//! `buddy.redb` table `drop_notices`: client key -> (seq, dropped at,
//! bytes, reason, delivered at (0: not yet)), Unix seconds.

use pastiche_core::wire::DropNotice;
use pastiche_core::PublicKey;
use redb::{ReadableTable, TableDefinition};
use serde::Serialize;

use super::error::{DbContext, Result};
use super::store::Shared;
use super::tables::{begin_write, Key};
use super::BuddyStorage;

/// `(seq, dropped at, bytes, reason, delivered at)`.
type NoticeVal = (u64, u64, u64, u8, u64);
const NOTICES: TableDefinition<Key, NoticeVal> = TableDefinition::new("drop_notices");

/// A client's last drop notice, as the buddy keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct NoticeRecord {
    /// What the client is told.
    #[serde(flatten)]
    pub notice: NoticeFields,
    /// When the client last asked and was told (Unix seconds), if ever.
    pub delivered_at: Option<u64>,
}

/// The fields of a [`DropNotice`], for JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct NoticeFields {
    /// The notice's sequence number for this client.
    pub seq: u64,
    /// When the data was dropped (Unix seconds).
    pub dropped_at: u64,
    /// Bytes released.
    pub bytes: u64,
    /// Why, in words: `space_crisis`, `decommissioned` or `reason N`.
    pub reason: &'static str,
}

/// The words for a notice's reason code.
pub fn reason_name(reason: u8) -> &'static str {
    match reason {
        DropNotice::SPACE_CRISIS => "space_crisis",
        DropNotice::DECOMMISSIONED => "decommissioned",
        _ => "other",
    }
}

fn from_val((seq, dropped_at, bytes, reason, delivered): NoticeVal) -> (DropNotice, Option<u64>) {
    (DropNotice { seq, dropped_at, bytes, reason }, (delivered != 0).then_some(delivered))
}

impl BuddyStorage {
    /// Records that `client`'s data was dropped now (`bytes`, for
    /// `reason`): its next notice, numbered above every earlier one.
    pub fn record_notice(&self, client: &PublicKey, bytes: u64, reason: u8, now: u64) -> Result<DropNotice> {
        const C: &str = "recording a drop notice";
        let txn = begin_write(&self.shared().db, C)?;
        let notice = {
            let mut t = txn.open_table(NOTICES).db(C)?;
            let seq = t.get(&client.0).db(C)?.map_or(0, |g| g.value().0) + 1;
            let notice = DropNotice { seq, dropped_at: now, bytes, reason };
            t.insert(&client.0, (seq, now, bytes, reason, 0)).db(C)?;
            notice
        };
        txn.commit().db(C)?;
        Ok(notice)
    }

    /// `client`'s last drop notice, if it was ever dropped.
    pub fn notice(&self, client: &PublicKey) -> Result<Option<NoticeRecord>> {
        Ok(self.shared().read_notice(client)?.map(|(n, delivered_at)| NoticeRecord {
            notice: NoticeFields {
                seq: n.seq,
                dropped_at: n.dropped_at,
                bytes: n.bytes,
                reason: reason_name(n.reason),
            },
            delivered_at,
        }))
    }
}

impl Shared {
    fn read_notice(&self, client: &PublicKey) -> Result<Option<(DropNotice, Option<u64>)>> {
        const C: &str = "reading drop notices";
        let txn = self.db.begin_read().db(C)?;
        let t = match txn.open_table(NOTICES) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e).db(C),
        };
        let row = t.get(&client.0).db(C)?;
        Ok(row.map(|g| from_val(g.value())))
    }

    /// The notice a session hands `client` (`GetNotice`), recording that it
    /// was delivered at `now`.
    pub(super) fn deliver_notice(&self, client: &PublicKey, now: u64) -> Result<Option<DropNotice>> {
        const C: &str = "delivering a drop notice";
        let Some((notice, _)) = self.read_notice(client)? else { return Ok(None) };
        let txn = begin_write(&self.db, C)?;
        {
            let mut t = txn.open_table(NOTICES).db(C)?;
            let n = notice;
            t.insert(&client.0, (n.seq, n.dropped_at, n.bytes, n.reason, now.max(1))).db(C)?;
        }
        txn.commit().db(C)?;
        Ok(Some(notice))
    }
}
