//! `pastiche buddy add|list|remove`.

use anyhow::{bail, Context, Result};

use super::common::Global;
use crate::exit;
use crate::progress::human_bytes;
use crate::repo::LockMode;
use crate::sync::floor::Floor;
use crate::sync::{self, load_buddies, save_buddies, BuddyEntry};

/// `pastiche buddy add HOST:PORT [--code CODE]`: pairs with the buddy (it
/// must answer now, and admit this box: with the code its owner printed by
/// `pastiche buddy invite`, or because it admitted this box before), pins
/// its key and records it.
pub fn add(g: &Global, addr: String, code: Option<String>) -> Result<u8> {
    let repo = g.open(LockMode::Exclusive)?;
    let mut buddies = load_buddies(&repo.dir)?;
    if buddies.iter().any(|b| b.addr == addr) {
        bail!("{addr} is already a buddy");
    }
    let mut entry = BuddyEntry { addr: addr.clone(), key: None, epoch: 0, snapshot: None };
    let c = sync::connect_pairing(&repo, &mut entry, code.as_deref())
        .with_context(|| format!("cannot pair with {addr}: nothing was added"))?;
    buddies.push(entry.clone());
    save_buddies(&repo.dir, &buddies)?;
    println!(
        "paired with buddy {addr}: key {}, quota {}, {} used",
        c.buddy_key,
        human_bytes(c.welcome.quota_bytes),
        human_bytes(c.welcome.used_bytes)
    );
    Ok(exit::OK)
}

/// One line of `pastiche buddy list --json`: the configured entry and our
/// own epoch floor for it, with the last time it went back, if ever.
#[derive(serde::Serialize)]
struct Listing<'a> {
    #[serde(flatten)]
    entry: &'a BuddyEntry,
    floor: Floor,
}

/// `pastiche buddy list`.
pub fn list(g: &Global) -> Result<u8> {
    let repo = g.open(LockMode::Shared)?;
    for b in load_buddies(&repo.dir)? {
        let floor = match sync::pinned_key(&b) {
            Some(key) => sync::floor::load(repo.meta.database(), &key)?,
            None => Floor::default(),
        };
        if g.json {
            g.json_line(&Listing { entry: &b, floor });
        } else {
            println!(
                "{:<24} key {}  epoch {}  snapshot {}",
                b.addr,
                b.key.as_deref().map_or("(not yet pinned)", |k| &k[..16]),
                b.epoch,
                b.snapshot.as_deref().map_or("-", |s| &s[..8])
            );
            if let Some(w) = floor.went_back {
                println!(
                    "  WARNING: went back: reported epoch {} below the {} it had committed for us (Unix time {}); everything was shipped again",
                    w.reported, w.floor, w.at
                );
            }
        }
    }
    Ok(exit::OK)
}

/// `pastiche buddy remove HOST:PORT [--drop]`.
pub fn remove(g: &Global, addr: String, drop_data: bool) -> Result<u8> {
    let repo = g.open(LockMode::Exclusive)?;
    let mut buddies = load_buddies(&repo.dir)?;
    let Some(pos) = buddies.iter().position(|b| b.addr == addr) else { bail!("{addr} is not a buddy") };
    let mut entry = buddies.remove(pos);
    if drop_data {
        let mut conn = sync::connect(&repo, &mut entry)?;
        // Above every epoch we ever signed there, whatever the buddy says.
        let db = repo.meta.database();
        let epoch = sync::floor::load(db, &conn.buddy_key)?.next_epoch(&conn.welcome)?;
        sync::floor::record_signing(db, &conn.buddy_key, epoch)?;
        conn.drop_all(epoch)?;
        sync::floor::record_committed(db, &conn.buddy_key, epoch)?;
        println!("asked {addr} to drop all our data");
    }
    if let Some(key) = sync::pinned_key(&entry) {
        sync::state::forget_buddy(repo.meta.database(), &key)?;
    }
    save_buddies(&repo.dir, &buddies)?;
    println!("removed buddy {addr}");
    Ok(exit::OK)
}
