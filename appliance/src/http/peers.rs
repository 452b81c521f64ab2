//! The one place the status page reads buddy and client state from the
//! buddy and sync modules (so that it is easy to re-point when pairing and
//! admission change them), and the contact ledger they do not keep
//! themselves: when each buddy last answered and was last synced, its sync
//! failures and what it holds for us. Clients stored here, with their names
//! and when they were last seen, come from the buddy store's admissions.
//!
//! The ledger is `DATA/contacts.json`, written atomically; the daemon's
//! shipping ([`record_sync`]) and its buddy probes ([`probe`]) update it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::buddy::BuddyStorage;
use crate::repo::{write_atomically, Repo};
use crate::sync::{self, BuddyEntry};

/// The ledger's file name in the data directory.
pub const LEDGER_FILE: &str = "contacts.json";

/// What is known of one buddy beyond the buddy list.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuddyContact {
    /// Whether the last probe or sync reached it.
    pub reachable: Option<bool>,
    /// Unix seconds it last answered.
    pub last_contact: Option<i64>,
    /// Unix seconds of its last successful sync.
    pub last_sync: Option<i64>,
    /// Failed syncs since the last success.
    pub consecutive_failures: u32,
    /// Failed syncs in all.
    pub total_failures: u64,
    /// Why the last sync or probe failed.
    pub last_error: Option<String>,
    /// Bytes it holds for us, as it said at the last contact.
    pub bytes_held: Option<u64>,
    /// Bytes it lets us store.
    pub quota: Option<u64>,
}

/// The ledger.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// By buddy address.
    #[serde(default)]
    pub buddies: BTreeMap<String, BuddyContact>,
}

/// One read-modify-write of a ledger at a time in this process.
static LEDGER_LOCK: Mutex<()> = Mutex::new(());

fn ledger_path(dir: &Path) -> PathBuf {
    dir.join(LEDGER_FILE)
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// Reads the ledger of the box in `dir` (empty if none yet).
pub fn load_ledger(dir: &Path) -> Result<Ledger> {
    match std::fs::read_to_string(ledger_path(dir)) {
        Ok(text) => serde_json::from_str(&text).with_context(|| format!("{} is damaged", ledger_path(dir).display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Ledger::default()),
        Err(e) => Err(e).context("cannot read the contact ledger"),
    }
}

fn update(dir: &Path, f: impl FnOnce(&mut Ledger)) -> Result<()> {
    let _guard = LEDGER_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    // A damaged ledger is only history: start it again rather than stop recording.
    let mut ledger = load_ledger(dir).unwrap_or_default();
    f(&mut ledger);
    write_atomically(&ledger_path(dir), serde_json::to_string_pretty(&ledger)?.as_bytes())
}

/// Records how a sync to `addr` ended (shipping calls this for every buddy).
pub fn record_sync(dir: &Path, addr: &str, error: Option<&str>) {
    let now = unix_now();
    let result = update(dir, |l| {
        let c = l.buddies.entry(addr.to_string()).or_default();
        match error {
            None => {
                c.reachable = Some(true);
                c.last_contact = Some(now);
                c.last_sync = Some(now);
                c.consecutive_failures = 0;
                c.last_error = None;
            }
            Some(e) => {
                c.consecutive_failures += 1;
                c.total_failures += 1;
                c.last_error = Some(e.to_string());
            }
        }
    });
    if let Err(e) = result {
        tracing::warn!("cannot record the sync to {addr}: {e:#}");
    }
}

/// Asks every buddy whether it answers (a hello, nothing stored), and
/// records what each said.
pub fn probe(repo: &Repo) -> Result<()> {
    let buddies = sync::load_buddies(&repo.dir)?;
    let mut seen = Vec::new();
    for b in &buddies {
        let mut entry = b.clone();
        // A hello proves the pinned key; the pin itself is the sync's to save.
        let outcome = sync::connect(repo, &mut entry).map(|c| (c.welcome.used_bytes, c.welcome.quota_bytes));
        seen.push((b.addr.clone(), outcome.map_err(|e| format!("{e:#}"))));
    }
    let now = unix_now();
    update(&repo.dir, |l| {
        l.buddies.retain(|addr, _| buddies.iter().any(|b| b.addr == *addr));
        for (addr, outcome) in seen {
            let c = l.buddies.entry(addr).or_default();
            match outcome {
                Ok((used, quota)) => {
                    c.reachable = Some(true);
                    c.last_contact = Some(now);
                    c.bytes_held = Some(used);
                    c.quota = Some(quota);
                }
                Err(e) => {
                    c.reachable = Some(false);
                    c.last_error = Some(e);
                }
            }
        }
    })
}

/// The buddies of the box in `dir`.
pub fn buddy_list(dir: &Path) -> Result<Vec<BuddyEntry>> {
    sync::load_buddies(dir)
}

/// One client this box stores data for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientUsage {
    /// Its public key (hex).
    pub key: String,
    /// The name it was invited under.
    pub name: String,
    /// Bytes it stores here.
    pub used_bytes: u64,
    /// Bytes it may store here.
    pub quota_bytes: u64,
    /// The last epoch committed for it.
    pub committed_epoch: u64,
    /// Unix seconds it last started a session (`None`: never since pairing).
    pub last_seen: Option<i64>,
}

/// Every client stored here, in key order.
pub fn clients(storage: &BuddyStorage) -> Result<Vec<ClientUsage>> {
    Ok(storage
        .clients()?
        .into_iter()
        .map(|c| ClientUsage {
            key: c.key.to_string(),
            name: c.name,
            used_bytes: c.record.used_bytes,
            quota_bytes: c.record.quota_bytes,
            committed_epoch: c.record.committed_epoch,
            last_seen: (c.last_seen > 0).then_some(c.last_seen as i64),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_outcomes_count_failures_until_a_success() {
        let tmp = tempfile::tempdir().unwrap();
        record_sync(tmp.path(), "b:1", Some("refused"));
        record_sync(tmp.path(), "b:1", Some("refused"));
        let c = &load_ledger(tmp.path()).unwrap().buddies["b:1"];
        assert_eq!((c.consecutive_failures, c.total_failures, c.last_sync), (2, 2, None));
        record_sync(tmp.path(), "b:1", None);
        let c = &load_ledger(tmp.path()).unwrap().buddies["b:1"];
        assert_eq!((c.consecutive_failures, c.total_failures), (0, 2));
        assert!(c.last_sync.is_some() && c.last_error.is_none());
    }
}
