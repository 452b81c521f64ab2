//! `pastiche buddy add|list|remove`.

use anyhow::{bail, Context, Result};

use super::common::Global;
use crate::exit;
use crate::progress::human_bytes;
use crate::repo::LockMode;
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

/// `pastiche buddy list`.
pub fn list(g: &Global) -> Result<u8> {
    let repo = g.open(LockMode::Shared)?;
    let audits = crate::audit::record::load(&repo.dir)?;
    for b in load_buddies(&repo.dir)? {
        let audit = audits.get(&b.addr);
        if g.json {
            let mut line = super::lancmd::with_found(g, &b.addr, &b);
            line["audit"] = serde_json::to_value(audit)?;
            g.json_line(&line);
        } else {
            println!(
                "{:<24} key {}  epoch {}  snapshot {}  {}  {}",
                b.addr,
                b.key.as_deref().map_or("(not yet pinned)", |k| &k[..16]),
                b.epoch,
                b.snapshot.as_deref().map_or("-", |s| &s[..8]),
                super::lancmd::found_text(g, &b.addr),
                crate::audit::record::summary(audit)
            );
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
        let epoch = conn.welcome.committed_epoch + 1;
        conn.drop_all(epoch)?;
        println!("asked {addr} to drop all our data");
    }
    if let Some(key) = sync::pinned_key(&entry) {
        sync::state::forget_buddy(repo.meta.database(), &key)?;
    }
    save_buddies(&repo.dir, &buddies)?;
    println!("removed buddy {addr}");
    Ok(exit::OK)
}
