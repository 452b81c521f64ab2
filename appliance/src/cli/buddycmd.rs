//! `pastiche buddy add|list|remove`. They run on an open [`SharedBox`]: in
//! the daemon when one holds the box (through its control socket), else in
//! this process.

use anyhow::{bail, Context, Result};

use super::common::Global;
use crate::exit;
use crate::progress::human_bytes;
use crate::repo::SharedBox;
use crate::sync::floor::Floor;
use crate::sync::{self, load_buddies, save_buddies, BuddyEntry};

/// `pastiche buddy add HOST:PORT [--code CODE]`: pairs with the buddy (it
/// must answer now, and admit this box: with the code its owner printed by
/// `pastiche buddy invite`, or because it admitted this box before), pins
/// its key and records it.
pub fn add(g: &Global, b: &SharedBox, addr: String, code: Option<String>) -> Result<u8> {
    if load_buddies(&b.repo().dir)?.iter().any(|e| e.addr == addr) {
        bail!("{addr} is already a buddy");
    }
    // Pairing only talks to the buddy: no lock on the box meanwhile, so a
    // backup or a sync in the daemon is not held up by a slow buddy.
    let mut entry = BuddyEntry { addr: addr.clone(), key: None, epoch: 0, snapshot: None };
    let c = sync::connect_pairing(b.repo(), &mut entry, code.as_deref())
        .with_context(|| format!("cannot pair with {addr}: nothing was added"))?;
    let repo = b.write();
    let mut buddies = load_buddies(&repo.dir)?;
    if buddies.iter().any(|e| e.addr == addr) {
        bail!("{addr} is already a buddy");
    }
    buddies.push(entry);
    save_buddies(&repo.dir, &buddies)?;
    g.line(format!(
        "paired with buddy {addr}: key {}, quota {}, {} used",
        c.buddy_key,
        human_bytes(c.welcome.quota_bytes),
        human_bytes(c.welcome.used_bytes)
    ))?;
    Ok(exit::OK)
}

/// One line of `pastiche buddy list --json`: the configured entry and our
/// own epoch floor for it, with the last time it went back, if ever.
#[derive(serde::Serialize)]
struct Listing<'a> {
    #[serde(flatten)]
    entry: &'a BuddyEntry,
    floor: Floor,
    /// The last drop notice acted on, if the buddy ever dropped our data.
    dropped: Option<sync::notice::NoticeSeen>,
}

/// `pastiche buddy list`.
pub fn list(g: &Global, b: &SharedBox) -> Result<u8> {
    let repo = b.read();
    let audits = crate::audit::record::load(&repo.dir)?;
    for e in load_buddies(&repo.dir)? {
        let audit = audits.get(&e.addr);
        let (floor, dropped) = match sync::pinned_key(&e) {
            Some(key) => {
                let db = repo.meta.database()?;
                (sync::floor::load(db, &key)?, sync::notice::load(db, &key)?)
            }
            None => (Floor::default(), None),
        };
        if g.json {
            let listing = Listing { entry: &e, floor, dropped: dropped.clone() };
            let mut line = super::lancmd::with_found(g, &e.addr, listing);
            line["audit"] = serde_json::to_value(audit)?;
            g.json(&line)?;
        } else {
            g.line(format!(
                "{:<24} key {}  epoch {}  snapshot {}  {}  {}",
                e.addr,
                e.key.as_deref().map_or("(not yet pinned)", |k| &k[..16]),
                e.epoch,
                e.snapshot.as_deref().map_or("-", |s| &s[..8]),
                super::lancmd::found_text(g, &e.addr),
                crate::audit::record::summary(audit)
            ))?;
            if let Some(n) = dropped.as_ref() {
                let state = match (n.settled, n.repeated) {
                    (true, _) => "it holds our full copy again".to_string(),
                    (false, true) => format!(
                        "it dropped us again within {} days: being replaced",
                        sync::notice::REPEAT_WINDOW / 86_400
                    ),
                    (false, false) => "being re-homed".to_string(),
                };
                g.line(format!("  DROPPED: {}; {state}", sync::notice::describe(&e.addr, n)))?;
            }
            if let Some(w) = floor.went_back {
                g.line(format!(
                    "  WARNING: went back: reported epoch {} below the {} it had committed for us (Unix time {}); everything was shipped again",
                    w.reported, w.floor, w.at
                ))?;
            }
        }
    }
    Ok(exit::OK)
}

/// `pastiche buddy remove HOST:PORT [--drop]`.
pub fn remove(g: &Global, b: &SharedBox, addr: String, drop_data: bool) -> Result<u8> {
    // The writer lock: no shipping to this buddy while it goes.
    let repo = b.write();
    let mut buddies = load_buddies(&repo.dir)?;
    let Some(pos) = buddies.iter().position(|e| e.addr == addr) else { bail!("{addr} is not a buddy") };
    let mut entry = buddies.remove(pos);
    if drop_data {
        crate::overlay::retire::ask_to_drop(&repo, &mut entry)?;
        g.line(format!("asked {addr} to drop all our data"))?;
    }
    if let Some(key) = sync::pinned_key(&entry) {
        sync::state::forget_buddy(repo.meta.database()?, &key)?;
    }
    save_buddies(&repo.dir, &buddies)?;
    g.line(format!("removed buddy {addr}"))?;
    Ok(exit::OK)
}
