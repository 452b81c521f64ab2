//! `pastiche buddy add|list|remove` and `pastiche sync`.

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::common::Global;
use crate::exit;
use crate::progress::human_bytes;
use crate::repo::{LockMode, Repo};
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
    for b in load_buddies(&repo.dir)? {
        if g.json {
            g.json_line(&b);
        } else {
            println!(
                "{:<24} key {}  epoch {}  snapshot {}",
                b.addr,
                b.key.as_deref().map_or("(not yet pinned)", |k| &k[..16]),
                b.epoch,
                b.snapshot.as_deref().map_or("-", |s| &s[..8])
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

/// Ships the current state to every buddy; returns whether all succeeded.
pub fn sync_all(g: &Global, repo: &Repo) -> Result<bool> {
    let mut buddies = load_buddies(&repo.dir)?;
    let mut all_ok = true;
    for i in 0..buddies.len() {
        let progress = g.progress("sync");
        let result = sync::sync_one(repo, &mut buddies[i], &progress);
        progress.finish();
        match result {
            Ok(r) => {
                if g.json {
                    g.json_line(&json!({"message_type": "sync", "report": r}));
                } else if !g.quiet {
                    println!(
                        "synced to {}: epoch {}, {} of {} offered chunks sent ({}), {} objects, {} references released, {:.2}s",
                        r.addr,
                        r.epoch,
                        r.chunks_sent,
                        r.chunks_offered,
                        human_bytes(r.bytes_sent),
                        r.objects_sent,
                        r.deletes,
                        r.seconds
                    );
                }
            }
            Err(e) => {
                all_ok = false;
                eprintln!("pastiche: sync to {} failed: {e:#}", buddies[i].addr);
            }
        }
        // Pinned keys and epochs are kept even if another buddy failed.
        save_buddies(&repo.dir, &buddies)?;
    }
    Ok(all_ok)
}

/// `pastiche sync`.
pub fn sync(g: &Global) -> Result<u8> {
    let repo = g.open(LockMode::Exclusive)?;
    if load_buddies(&repo.dir)?.is_empty() {
        bail!("no buddies configured (pastiche buddy add HOST:PORT)");
    }
    Ok(if sync_all(g, &repo)? { exit::OK } else { exit::FAILED })
}

/// `pastiche serve`: the box becomes a buddy for others until stopped. It
/// holds the box exclusively (other commands on this box wait until it stops).
pub fn serve(g: &Global, listen: std::net::SocketAddr, quota: u64, max_sessions: usize, min_free: u64) -> Result<u8> {
    let repo = g.open(LockMode::Exclusive)?;
    eprintln!("pastiche serve: box {} ({}) listening on {listen}", repo.config.name, repo.config.public_key);
    crate::buddy::serve(repo, crate::buddy::ServeOptions { listen, default_quota: quota, max_sessions, min_free })?;
    Ok(exit::OK)
}
