//! Drop notices from buddies, on the client side, kept in the box's
//! metadata database.
//!
//! At each sync the client asks its buddy `GetNotice` (`docs/PROTOCOL.md`
//! §4.9). The answer comes inside the secure channel from the buddy whose
//! key is pinned, so no other box can hand one in. A notice is acted on
//! once, by its sequence number: the client records it, forgets what it
//! shipped to that buddy (everything is offered again) and reports it
//! (stderr, `pastiche buddy list`, the status); a notice whose number is
//! not above the last one acted on (the buddy repeats its last notice at
//! every contact, or an old one is replayed) changes nothing. The notice
//! stays *unsettled* until a commit on that buddy succeeds again or the
//! buddy is replaced: meanwhile the daemon re-homes the data on another
//! buddy ([`crate::overlay::replace`]).
//!
//! A buddy that drops us again within [`REPEAT_WINDOW`] of the last drop
//! (or says so: a hostile buddy can number a new notice at every contact)
//! is not settled by a commit: each of its notices costs a full offer, so
//! it stays unsettled until it is replaced. Otherwise a commit in the same
//! sync would settle every new notice before the daemon saw it, and the
//! buddy would cost a full offer per sync forever without being replaced.

use anyhow::Result;
use pastiche_core::wire::DropNotice;
use pastiche_core::PublicKey;
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

/// (seq, dropped at (buddy's clock), bytes, reason, seen at, state).
type Row = (u64, u64, u64, u8, u64, u8);
/// Row states: unsettled; settled; unsettled, and settled only by replacing
/// the buddy (it dropped us again within [`REPEAT_WINDOW`]).
const UNSETTLED: u8 = 0;
const SETTLED: u8 = 1;
const REPEATED: u8 = 2;

/// A new notice this soon (our clock) after the last one acted on marks the
/// buddy for replacement whatever it commits afterwards: 30 days.
pub const REPEAT_WINDOW: u64 = 30 * 86_400;
/// buddy key -> [`Row`]: the last notice acted on.
const NOTICES: TableDefinition<[u8; 32], Row> = TableDefinition::new("sync_drop_notices");

/// The last drop notice acted on for one buddy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticeSeen {
    /// Its sequence number on that buddy.
    pub seq: u64,
    /// When the buddy dropped our data (Unix seconds, its clock).
    pub dropped_at: u64,
    /// Bytes it released.
    pub bytes: u64,
    /// Why: `space_crisis`, `decommissioned` or `other`.
    pub reason: String,
    /// When we learnt it (Unix seconds).
    pub seen_at: u64,
    /// Whether the buddy holds our full copy again (a commit succeeded
    /// there since) or was replaced.
    pub settled: bool,
    /// It dropped us again within [`REPEAT_WINDOW`] of the previous drop:
    /// only replacing it settles this notice.
    #[serde(default)]
    pub repeated: bool,
}

fn from_row((seq, dropped_at, bytes, reason, seen_at, state): Row) -> NoticeSeen {
    NoticeSeen {
        seq,
        dropped_at,
        bytes,
        reason: crate::buddy::notices::reason_name(reason).to_string(),
        seen_at,
        settled: state == SETTLED,
        repeated: state == REPEATED,
    }
}

fn read_row(db: &Database, buddy: &PublicKey) -> Result<Option<Row>> {
    let txn = db.begin_read()?;
    let table = match txn.open_table(NOTICES) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    Ok(table.get(&buddy.0)?.map(|v| v.value()))
}

/// The last notice acted on for `buddy`, if any.
pub fn load(db: &Database, buddy: &PublicKey) -> Result<Option<NoticeSeen>> {
    Ok(read_row(db, buddy)?.map(from_row))
}

/// The unsettled notices of the buddies in `buddies`, by address.
pub fn unsettled_by_addr(
    db: &Database,
    buddies: &[super::BuddyEntry],
) -> Result<std::collections::BTreeMap<String, NoticeSeen>> {
    let open = unsettled(db)?;
    Ok(buddies
        .iter()
        .filter_map(|b| {
            let key = super::pinned_key(b)?;
            open.iter().find(|(k, _)| *k == key).map(|(_, n)| (b.addr.clone(), n.clone()))
        })
        .collect())
}

/// Every buddy whose last notice is not settled yet, by key.
pub fn unsettled(db: &Database) -> Result<Vec<(PublicKey, NoticeSeen)>> {
    let txn = db.begin_read()?;
    let table = match txn.open_table(NOTICES) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for row in table.iter()? {
        let (k, v) = row?;
        let seen = from_row(v.value());
        if !seen.settled {
            out.push((PublicKey(k.value()), seen));
        }
    }
    Ok(out)
}

/// Acts on `notice` from the authenticated `buddy`, if it is new (its
/// number above the last acted on): records it (as repeated when the last
/// one was acted on within [`REPEAT_WINDOW`]) and forgets what was shipped
/// there, in one transaction. Returns whether it was new.
pub fn act_on(db: &Database, buddy: &PublicKey, notice: &DropNotice, now: u64) -> Result<bool> {
    let txn = db.begin_write()?;
    {
        let mut table = txn.open_table(NOTICES)?;
        let last = table.get(&buddy.0)?.map(|v| v.value());
        if notice.seq <= last.map_or(0, |row| row.0) {
            return Ok(false);
        }
        let again = last.is_some_and(|row| now.saturating_sub(row.4) < REPEAT_WINDOW);
        let state = if again { REPEATED } else { UNSETTLED };
        table.insert(&buddy.0, (notice.seq, notice.dropped_at, notice.bytes, notice.reason, now, state))?;
        super::state::forget_buddy_in(&txn, buddy)?;
    }
    txn.commit()?;
    Ok(true)
}

/// Records that `buddy` committed our data again: its last notice is
/// settled, unless it was a repeated drop (see [`settle_replaced`]).
pub fn settle(db: &Database, buddy: &PublicKey) -> Result<()> {
    settle_from(db, buddy, &[UNSETTLED])
}

/// Records that `buddy` was replaced: its last notice is settled, repeated
/// or not.
pub fn settle_replaced(db: &Database, buddy: &PublicKey) -> Result<()> {
    settle_from(db, buddy, &[UNSETTLED, REPEATED])
}

fn settle_from(db: &Database, buddy: &PublicKey, states: &[u8]) -> Result<()> {
    let Some(row) = read_row(db, buddy)? else { return Ok(()) };
    if !states.contains(&row.5) {
        return Ok(());
    }
    let txn = db.begin_write()?;
    txn.open_table(NOTICES)?.insert(&buddy.0, (row.0, row.1, row.2, row.3, row.4, SETTLED))?;
    txn.commit()?;
    Ok(())
}

/// A notice in words, for stderr and `buddy list`.
pub fn describe(addr: &str, n: &NoticeSeen) -> String {
    let why = match n.reason.as_str() {
        "space_crisis" => "its disk fell below its free-space floor (space crisis)",
        "decommissioned" => "we were silent past its grace period (decommissioned)",
        _ => "on its own",
    };
    format!("buddy {addr} dropped our data ({} bytes, notice #{}, Unix time {}): {why}", n.bytes, n.seq, n.dropped_at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::state;
    use pastiche_core::ChunkId;

    /// A notice is acted on once: a repeated or older one forgets nothing.
    #[test]
    fn a_notice_is_acted_on_once_and_a_replay_forgets_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("meta.redb")).unwrap();
        let (b, other) = (PublicKey([3; 32]), PublicKey([4; 32]));
        let ids = vec![ChunkId([1; 20]), ChunkId([2; 20])];
        state::add_chunks(&db, &b, &ids).unwrap();
        state::add_chunks(&db, &other, &ids).unwrap();
        let n = DropNotice { seq: 2, dropped_at: 100, bytes: 5000, reason: DropNotice::SPACE_CRISIS };
        assert!(act_on(&db, &b, &n, 200).unwrap());
        assert!(state::shipped_chunks(&db, &b).unwrap().is_empty(), "forgotten");
        assert_eq!(state::shipped_chunks(&db, &other).unwrap().len(), 2, "only for that buddy");
        let seen = load(&db, &b).unwrap().unwrap();
        assert_eq!(
            (seen.seq, seen.bytes, seen.reason.as_str(), seen.seen_at, seen.settled),
            (2, 5000, "space_crisis", 200, false)
        );
        assert_eq!(unsettled(&db).unwrap().len(), 1);

        // Shipped again; then the same notice, and an older one, come back.
        state::add_chunks(&db, &b, &ids).unwrap();
        assert!(!act_on(&db, &b, &n, 300).unwrap(), "the same notice");
        assert!(!act_on(&db, &b, &DropNotice { seq: 1, ..n }, 300).unwrap(), "an older one");
        assert_eq!(state::shipped_chunks(&db, &b).unwrap().len(), 2, "nothing forgotten");
        settle(&db, &b).unwrap();
        assert!(load(&db, &b).unwrap().unwrap().settled);
        assert!(unsettled(&db).unwrap().is_empty());
        let later = 200 + REPEAT_WINDOW;
        assert!(act_on(&db, &b, &DropNotice { seq: 3, ..n }, later).unwrap(), "a new drop, long after");
        assert!(!load(&db, &b).unwrap().unwrap().settled);
        settle(&db, &b).unwrap();
        assert!(load(&db, &b).unwrap().unwrap().settled, "a commit settles a drop after a quiet month");
    }

    /// A buddy that drops us again soon after (or numbers a new notice at
    /// every contact) stays unsettled whatever it commits: only its
    /// replacement settles it.
    #[test]
    fn a_repeated_drop_is_settled_only_by_replacing_the_buddy() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("meta.redb")).unwrap();
        let b = PublicKey([3; 32]);
        let n = DropNotice { seq: 1, dropped_at: 100, bytes: 5000, reason: DropNotice::SPACE_CRISIS };
        assert!(act_on(&db, &b, &n, 200).unwrap());
        assert!(!load(&db, &b).unwrap().unwrap().repeated, "a first drop");
        settle(&db, &b).unwrap();
        assert!(act_on(&db, &b, &DropNotice { seq: 2, ..n }, 300).unwrap());
        let seen = load(&db, &b).unwrap().unwrap();
        assert!(seen.repeated && !seen.settled, "{seen:?}");
        settle(&db, &b).unwrap();
        assert!(!load(&db, &b).unwrap().unwrap().settled, "a commit does not settle a repeated drop");
        assert_eq!(unsettled(&db).unwrap().len(), 1, "the daemon replaces it");
        settle_replaced(&db, &b).unwrap();
        assert!(load(&db, &b).unwrap().unwrap().settled);
        assert!(unsettled(&db).unwrap().is_empty());
    }
}
