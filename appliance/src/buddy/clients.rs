//! Client administration on a buddy: admitting (by pairing code or by the
//! owner), listing, quotas, revoking and releasing a client's data.

use std::collections::HashSet;

use pastiche_core::session::ClientRecord;
use pastiche_core::PublicKey;
use redb::ReadableTable;

use super::admission::{self, unix_now};
use super::error::{BuddyError, ChunkContext, DbContext, Result};
use super::store::{BuddyStorage, Shared};
use super::tables::*;

/// An admitted client, as `pastiche clients list` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientInfo {
    /// Its key.
    pub key: PublicKey,
    /// The name given at the invitation.
    pub name: String,
    /// When it paired (Unix seconds).
    pub admitted: u64,
    /// When it last started a session (Unix seconds).
    pub last_seen: u64,
    /// Its account.
    pub record: ClientRecord,
}

impl BuddyStorage {
    /// An admitted client's account as a new session would see it, without
    /// changing anything; `None` for a key not admitted.
    pub fn client_record(&self, client: &PublicKey) -> Result<Option<ClientRecord>> {
        if self.shared.admission(client)?.is_none() {
            return Ok(None);
        }
        let rec = self.shared.read_rec(client)?;
        self.shared.account(client, &rec).map(Some)
    }

    /// How many committed metadata objects `client` has here, and their
    /// bytes (what its deletes free).
    pub fn client_objects(&self, client: &PublicKey) -> Result<(u64, u64)> {
        const C: &str = "counting objects";
        let txn = self.shared.db.begin_read().db(C)?;
        let (mut count, mut bytes) = (0u64, 0u64);
        for row in txn.open_table(OBJECTS).db(C)?.range(obj_range(client)).db(C)? {
            count += 1;
            bytes += row.db(C)?.1.value().len() as u64;
        }
        Ok((count, bytes))
    }

    /// Every admitted client, in key order.
    pub fn clients(&self) -> Result<Vec<ClientInfo>> {
        const C: &str = "listing clients";
        let admitted: Vec<(PublicKey, String, u64, u64)> = {
            let txn = self.shared.db.begin_read().db(C)?;
            let t = txn.open_table(ADMITTED).db(C)?;
            let mut out = Vec::new();
            for row in t.iter().db(C)? {
                let (k, v) = row.db(C)?;
                let (name, admitted, seen) = v.value();
                out.push((PublicKey(k.value()), name.to_string(), admitted, seen));
            }
            out
        };
        let mut out = Vec::with_capacity(admitted.len());
        for (key, name, admitted, last_seen) in admitted {
            let rec = self.shared.read_rec(&key)?;
            out.push(ClientInfo { key, name, admitted, last_seen, record: self.shared.account(&key, &rec)? });
        }
        Ok(out)
    }

    /// Admits `client` directly, as its owner (tests and tools; clients
    /// normally pair with a code).
    pub fn enroll(&self, client: &PublicKey, name: &str, quota: Option<u64>) -> Result<()> {
        self.shared.enroll(client, name, quota)
    }

    /// Sets an admitted client's own quota (`None`: back to the daemon's
    /// default). Chunks already stored stay even if over the new quota.
    pub fn set_quota(&self, client: &PublicKey, quota: Option<u64>) -> Result<()> {
        const C: &str = "setting a quota";
        if self.shared.admission(client)?.is_none() {
            return Err(BuddyError::NotAdmitted(*client));
        }
        let txn = begin_write(&self.shared.db, C)?;
        {
            let mut t = txn.open_table(CLIENTS).db(C)?;
            let mut rec = read_rec(&t, client)?.unwrap_or_default();
            rec.quota = quota;
            t.insert(&client.0, rec.to_val()).db(C)?;
        }
        txn.commit().db(C)
    }

    /// Revokes a client: it is refused from its next session on. With
    /// `drop_data`, everything it stored here is released too (chunks other
    /// owners reference stay).
    pub fn revoke(&self, client: &PublicKey, drop_data: bool) -> Result<()> {
        const C: &str = "revoking a client";
        if self.shared.admission(client)?.is_none() {
            return Err(BuddyError::NotAdmitted(*client));
        }
        if drop_data {
            let _refs = self.shared.lock_refs();
            self.shared.chunks().retain_only(client, &HashSet::new()).chunks("releasing every reference")?;
        }
        let txn = begin_write(&self.shared.db, C)?;
        {
            txn.open_table(ADMITTED).db(C)?.remove(&client.0).db(C)?;
            if drop_data {
                clear_stored(&txn, client)?;
                txn.open_table(CLIENTS).db(C)?.remove(&client.0).db(C)?;
            }
        }
        txn.commit().db(C)
    }

    /// Releases everything `client` stored here (its chunk references,
    /// objects, root and staging) and sets its epochs back to 0, keeping
    /// its admission and quota: at its next contact it sees epoch 0 below
    /// the one it committed, so it offers and ships everything again. The
    /// chunks no one else references are reclaimed by the next prune. Used
    /// for a decommissioned client and in a space crisis
    /// ([`lifecycle`](super::lifecycle)); returns the bytes it was charged.
    pub fn release(&self, client: &PublicKey) -> Result<u64> {
        const C: &str = "releasing a client's data";
        let _refs = self.shared.lock_refs();
        let used = self.shared.usage(client)?;
        self.shared.chunks().retain_only(client, &HashSet::new()).chunks("releasing every reference")?;
        let txn = begin_write(&self.shared.db, C)?;
        {
            let mut clients = txn.open_table(CLIENTS).db(C)?;
            let quota = read_rec(&clients, client)?.unwrap_or_default().quota;
            clear_stored(&txn, client)?;
            clients.insert(&client.0, Rec { quota, ..Rec::default() }.to_val()).db(C)?;
        }
        txn.commit().db(C)?;
        Ok(used)
    }
}

impl Shared {
    /// `(name, admitted at, last seen)` of an admitted client.
    pub(super) fn admission(&self, client: &PublicKey) -> Result<Option<(String, u64, u64)>> {
        const C: &str = "reading admissions";
        let txn = self.db.begin_read().db(C)?;
        let t = txn.open_table(ADMITTED).db(C)?;
        let row = t.get(&client.0).db(C)?;
        Ok(row.map(|g| {
            let (name, admitted, seen) = g.value();
            (name.to_string(), admitted, seen)
        }))
    }

    /// Records that an admitted client started a session now.
    pub(super) fn touch(&self, client: &PublicKey) -> Result<()> {
        const C: &str = "recording a session";
        let txn = begin_write(&self.db, C)?;
        {
            let mut t = txn.open_table(ADMITTED).db(C)?;
            let row = t.get(&client.0).db(C)?.map(|g| {
                let (name, admitted, _) = g.value();
                (name.to_string(), admitted)
            });
            if let Some((name, admitted)) = row {
                t.insert(&client.0, (name.as_str(), admitted, unix_now())).db(C)?;
            }
        }
        txn.commit().db(C)
    }

    /// Admits a client (its record starts empty, with `quota` if given).
    pub(super) fn enroll(&self, client: &PublicKey, name: &str, quota: Option<u64>) -> Result<()> {
        const C: &str = "admitting a client";
        if *client == self.own_key {
            return Err(BuddyError::OwnKey(*client));
        }
        let txn = begin_write(&self.db, C)?;
        {
            let now = unix_now();
            txn.open_table(ADMITTED).db(C)?.insert(&client.0, (name, now, now)).db(C)?;
            let mut clients = txn.open_table(CLIENTS).db(C)?;
            let mut rec = read_rec(&clients, client)?.unwrap_or_default();
            rec.quota = quota;
            clients.insert(&client.0, rec.to_val()).db(C)?;
        }
        txn.commit().db(C)
    }

    /// Spends a pairing code and admits `client` with what it grants.
    pub(super) fn admit(&self, client: &PublicKey, code: &str) -> Result<bool> {
        if *client == self.own_key {
            return Ok(false);
        }
        let Some(invite) = admission::redeem(&self.dir, code, unix_now())? else { return Ok(false) };
        self.enroll(client, &invite.name, invite.quota)?;
        Ok(true)
    }
}
