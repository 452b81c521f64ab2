//! Disaster recovery: a box brought back from its passphrase and name alone.
//!
//! Every sync hands each buddy a [root record](record): the sealed root
//! object, the box's buddies and a root epoch, signed by the box. A wiped
//! box runs `pastiche recover --name FQDN [--via HOST:PORT]`: the passphrase
//! and name give back the root key and the identity (its seed is a subkey
//! of the root key), so it can prove itself to its buddies as before. It
//! asks every holder it knows of for its record (first `--via` and what
//! [`FindHolders`] finds: the boxes heard on the LAN, [`lan`]; then the
//! buddies each record names), takes the
//! newest validly signed epoch, refuses forgeries and reports holders that
//! served an older one, then rebuilds the box from that record: the root
//! object, every metadata object fetched from the holders of the newest
//! record ([`metadata`]), the buddy list with the pinned keys, and the root
//! epoch. Chunks stay on the buddies until a restore pulls them.

pub mod epoch;
pub mod lan;
pub mod metadata;
pub mod record;

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use pastiche_core::wire::{ErrorCode, MAX_OBJECT_DATA};
use pastiche_core::{Identity, NodeId, PublicKey};
use serde::Serialize;

use crate::exit::{ExitError, WRONG_PASSPHRASE};
use crate::meta::model::{decode, RootObject};
use crate::meta::object::{open_object, ObjectKey, ObjectName, ObjectRef, ROOT_SEQ};
use crate::repo::keys::{KdfParams, RootKey, ROOT_RECORD_LABEL};
use crate::repo::Repo;
use crate::sync::conn::{BuddyConn, BuddyRefused};
use crate::sync::{load_buddies, save_buddies, BuddyEntry};
use record::{RecordBuddy, RootBody};

/// The root record to hand the buddy `entry` in the sync that commits
/// `wire_epoch` there: the box's root object, its buddies (this one with the
/// epoch being committed) and the next root epoch, signed.
pub fn record_for_sync(repo: &Repo, entry: &BuddyEntry, buddy: &PublicKey, wire_epoch: u64) -> Result<Vec<u8>> {
    let root = repo.meta.get(&repo.root_ref().name)?.context("the root object is missing")?;
    let mut buddies: Vec<RecordBuddy> = load_buddies(&repo.dir)?
        .iter()
        .filter(|b| b.addr != entry.addr)
        .filter_map(|b| Some(RecordBuddy { addr: b.addr.clone(), key: crate::sync::pinned_key(b)?.0, epoch: b.epoch }))
        .collect();
    buddies.push(RecordBuddy { addr: entry.addr.clone(), key: buddy.0, epoch: wire_epoch });
    let body =
        RootBody { epoch: epoch::take_next(repo.meta.database()?)?, name: repo.config.name.clone(), buddies, root };
    let sealed = record::seal(&repo.identity, &repo.node, &repo.root_record_key(), &body);
    if sealed.len() > MAX_OBJECT_DATA {
        bail!(
            "the root record ({} bytes) is too large to ship (at most {MAX_OBJECT_DATA}); forget old snapshots",
            sealed.len()
        );
    }
    Ok(sealed)
}

/// Where else to look for holders of a box's root record, besides `--via`.
///
/// LAN discovery ([`lan::LanBeacons`]) returns `HOST:PORT` of boxes that
/// may hold the root of `node`. Whatever it returns is asked like a `--via`
/// holder and must prove nothing in advance: a record is trusted only for
/// its signature.
pub trait FindHolders {
    /// Addresses that may hold the root record of `node`.
    fn find(&self, node: &NodeId) -> Vec<String>;

    /// What the search did, for the report and the errors (after `find`).
    fn describe(&self) -> Option<String> {
        None
    }
}

/// No discovery: only `--via` and the buddies the records name.
pub struct NoDiscovery;

impl FindHolders for NoDiscovery {
    fn find(&self, _node: &NodeId) -> Vec<String> {
        Vec::new()
    }
}

/// What to recover and from where.
pub struct RecoverOptions {
    /// The blank data directory to rebuild the box in.
    pub dir: PathBuf,
    /// The machine's fully-qualified name, as given at `init`.
    pub name: String,
    /// The box's passphrase.
    pub passphrase: String,
    /// Argon2id parameters of the root key (the defaults, or what
    /// `PASTICHE_KDF_MIB` set at `init`).
    pub kdf: KdfParams,
    /// Holders to ask first (`--via HOST:PORT`).
    pub via: Vec<String>,
}

/// What one holder answered.
#[derive(Clone, Debug, Serialize)]
pub struct HolderReport {
    /// `HOST:PORT`.
    pub addr: String,
    /// The key it proved, if it answered.
    pub key: Option<String>,
    /// The epoch of the valid root record it served.
    pub epoch: Option<u64>,
    /// `newest`, `older`, `refused`, `no_root`, `forged` or `unreachable`.
    pub outcome: &'static str,
    /// Details for people.
    pub detail: String,
}

/// What a recovery did.
#[derive(Debug, Serialize)]
pub struct RecoverReport {
    /// The machine's name.
    pub name: String,
    /// Its nodeId.
    pub node_id: String,
    /// Its public key (the same as before the loss).
    pub public_key: String,
    /// The root epoch taken.
    pub epoch: u64,
    /// Snapshots in the recovered root.
    pub snapshots: usize,
    /// Metadata objects fetched.
    pub objects: u64,
    /// Their sealed bytes.
    pub object_bytes: u64,
    /// The buddies re-established, from the record.
    pub buddies: Vec<String>,
    /// Every holder asked, in the order asked.
    pub holders: Vec<HolderReport>,
    /// What the search for holders beyond `--via` did (the LAN), if any.
    pub discovery: Option<String>,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// Who the box is, from its passphrase and name.
struct Keys {
    identity: Identity,
    public: PublicKey,
    node: NodeId,
    record_key: ObjectKey,
    root_ref: ObjectRef,
}

/// A valid record and where it came from.
struct Found {
    addr: String,
    key: PublicKey,
    body: RootBody,
}

/// Rebuilds the box of `opts.name` in the blank `opts.dir` from its buddies.
pub fn recover(opts: &RecoverOptions, discovery: &dyn FindHolders) -> Result<RecoverReport> {
    let started = Instant::now();
    if opts.dir.join(crate::repo::CONFIG_FILE).exists() {
        bail!("{} already holds a box: recover into an empty data directory (--data DIR)", opts.dir.display());
    }
    let root_key = RootKey::derive(opts.passphrase.as_bytes(), &opts.name, opts.kdf)?;
    let identity = root_key.identity()?;
    let node = NodeId::from_name(&opts.name);
    let keys = Keys {
        public: identity.public_key(),
        identity,
        node,
        record_key: ObjectKey(root_key.subkey(ROOT_RECORD_LABEL)),
        root_ref: ObjectRef {
            name: ObjectName::root(&node),
            seq: ROOT_SEQ,
            key: ObjectKey(root_key.subkey("root-object")),
        },
    };
    let (mut holders, found) = ask_holders(&keys, opts, discovery);
    let Some(newest_epoch) = found.iter().map(|f| f.body.epoch).max() else {
        return Err(nothing_found(&holders, opts, discovery.describe()));
    };
    for h in holders.iter_mut() {
        if let Some(e) = h.epoch {
            if e < newest_epoch {
                h.outcome = "older";
                h.detail = format!(
                    "served an older root (epoch {e}, the newest is {newest_epoch}): it missed the latest syncs or \
                     rolled back; the next sync brings it up to date"
                );
            } else {
                h.outcome = "newest";
                h.detail = format!("served the newest root (epoch {e})");
            }
        }
    }
    let newest: Vec<&Found> = found.iter().filter(|f| f.body.epoch == newest_epoch).collect();
    let body = &newest[0].body;
    if body.name != opts.name {
        bail!("name mismatch: the root record is for {:?}, not {:?}", body.name, opts.name);
    }
    let root: RootObject = {
        let (_, _, plain) = open_object(&keys.root_ref.key, &body.root).context("the recovered root object")?;
        decode(&plain, "recovered root object")?
    };

    let repo = Repo::create_recovered(&opts.dir, &opts.name, &opts.passphrase, opts.kdf, &body.root)?;
    // Objects come only from holders of the newest record: an older holder
    // keeps older versions of the same objects.
    let sources: Vec<(String, PublicKey)> = newest.iter().map(|f| (f.addr.clone(), f.key)).collect();
    let fetched = metadata::fetch_all(&repo, &root, &sources)?;

    let latest = root.snapshots.last().map(|s| s.id_hex());
    let entries: Vec<BuddyEntry> = body
        .buddies
        .iter()
        .map(|b| BuddyEntry {
            addr: b.addr.clone(),
            key: Some(PublicKey(b.key).to_string()),
            epoch: b.epoch,
            // A holder of the newest record holds the latest snapshot; the
            // others are pending until the next sync.
            snapshot: if newest.iter().any(|f| f.key.0 == b.key) { latest.clone() } else { None },
        })
        .collect();
    save_buddies(&repo.dir, &entries)?;
    epoch::raise_to(repo.meta.database()?, newest_epoch)?;
    // Last: the directory becomes a box only once everything else is in place.
    repo.write_config()?;
    Ok(RecoverReport {
        name: opts.name.clone(),
        node_id: keys.node.to_string(),
        public_key: keys.public.to_string(),
        epoch: newest_epoch,
        snapshots: root.snapshots.len(),
        objects: fetched.objects,
        object_bytes: fetched.bytes,
        buddies: entries.iter().map(|b| b.addr.clone()).collect(),
        holders,
        discovery: discovery.describe(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Asks every holder it learns of, breadth first: `--via`, discovery, then
/// the buddies named by each valid record.
fn ask_holders(keys: &Keys, opts: &RecoverOptions, discovery: &dyn FindHolders) -> (Vec<HolderReport>, Vec<Found>) {
    let mut queue: VecDeque<(String, Option<PublicKey>)> =
        opts.via.iter().chain(&discovery.find(&keys.node)).map(|a| (a.clone(), None)).collect();
    let mut asked: HashSet<String> = HashSet::new();
    let mut holders = Vec::new();
    let mut found = Vec::new();
    while let Some((addr, pinned)) = queue.pop_front() {
        if !asked.insert(addr.clone()) {
            continue;
        }
        let (report, valid) = ask_one(keys, &addr, pinned);
        if let Some(f) = valid {
            for b in &f.body.buddies {
                if !asked.contains(&b.addr) {
                    queue.push_back((b.addr.clone(), Some(PublicKey(b.key))));
                }
            }
            found.push(f);
        }
        holders.push(report);
    }
    (holders, found)
}

/// Connects to one holder as the box and fetches and checks its record.
fn ask_one(keys: &Keys, addr: &str, pinned: Option<PublicKey>) -> (HolderReport, Option<Found>) {
    let mut report =
        HolderReport { addr: addr.to_string(), key: None, epoch: None, outcome: "unreachable", detail: String::new() };
    let mut conn = match BuddyConn::connect_pinned(addr, &keys.identity, keys.node, pinned, None) {
        Ok(c) => c,
        Err(e) => {
            if refusal(&e) == Some(ErrorCode::NotAuthenticated) {
                report.outcome = "refused";
                report.detail = "does not admit the key this passphrase and name derive".into();
            } else {
                report.detail = format!("{e:#}");
            }
            return (report, None);
        }
    };
    report.key = Some(conn.buddy_key.to_string());
    let mut bytes = Vec::new();
    if let Err(e) = conn.get_root(&mut bytes) {
        if refusal(&e) == Some(ErrorCode::NotFound) {
            report.outcome = "no_root";
            report.detail = "admits this box but holds no root for it".into();
        } else {
            report.detail = format!("{e:#}");
        }
        return (report, None);
    }
    match record::open(&bytes, &keys.public, &keys.node, &keys.record_key, 0) {
        Ok(body) => {
            report.epoch = Some(body.epoch);
            report.outcome = "newest";
            (report, Some(Found { addr: addr.to_string(), key: conn.buddy_key, body }))
        }
        Err(e) => {
            report.outcome = "forged";
            report.detail = match record::claimed_epoch(&bytes) {
                Some(claimed) => format!("served a root record claiming epoch {claimed} that was refused: {e}"),
                None => format!("served a root that was refused: {e}"),
            };
            (report, None)
        }
    }
}

/// The buddy's error code, if `e` is a refusal.
fn refusal(e: &anyhow::Error) -> Option<ErrorCode> {
    e.chain().find_map(|c| c.downcast_ref::<BuddyRefused>()).map(|r| r.code)
}

/// The error when no valid record was found, telling the user what to do.
fn nothing_found(holders: &[HolderReport], opts: &RecoverOptions, discovery: Option<String>) -> anyhow::Error {
    let searched = discovery.map(|d| format!("{d}; ")).unwrap_or_default();
    if holders.is_empty() {
        return anyhow!(
            "no holder to ask ({searched}none given): give the address of one of the box's buddies with --via \
             HOST:PORT (nothing was written)"
        );
    }
    let list = holders.iter().map(|h| format!("{} ({}: {})", h.addr, h.outcome, h.detail)).collect::<Vec<_>>();
    let list = format!("{searched}{}", list.join("; "));
    if holders.iter().all(|h| h.outcome == "refused") {
        return ExitError::new(
            WRONG_PASSPHRASE,
            format!(
                "no holder admits the identity that this passphrase and the name {:?} derive: the passphrase or the \
                 name is wrong (the name is the box's fully-qualified name as given at init), or the box never \
                 paired with them; holders asked: {list} (nothing was written)",
                opts.name
            ),
        )
        .into();
    }
    if holders.iter().any(|h| h.outcome == "forged") {
        return anyhow!("every root record served was refused; holders asked: {list} (nothing was written)");
    }
    anyhow!("no root found for {:?}; holders asked: {list} (nothing was written)", opts.name)
}

#[cfg(test)]
mod tests;
