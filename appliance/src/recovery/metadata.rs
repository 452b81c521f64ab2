//! Fetching a recovered box's metadata skeleton from its buddies.
//!
//! From the root object's snapshots, every tree and handle list is fetched
//! by name (`GetObject`, reassembling objects shipped in parts,
//! [`crate::sync::split`]), opened with the key its name derives from the
//! passphrase and checked against its name (a buddy cannot forge, alter or
//! swap one), and stored; a tree's subtrees and lists are fetched next. One
//! level of the tree at a time, over a few connections in parallel; an
//! object reached twice is fetched once.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{anyhow, bail, Result};
use pastiche_core::PublicKey;

use crate::meta::model::{decode, Chunks, Content, Node, RootObject, Tree};
use crate::meta::object::ObjectName;
use crate::meta::tree::Kind;
use crate::repo::Repo;
use crate::sync::conn::BuddyConn;
use crate::sync::split::{parse_first, part_count, part_name};
use crate::sync::{connect, state, BuddyEntry};

/// Connections per holder while fetching.
const THREADS: usize = 2;
/// The largest object accepted (a directory of about a million entries).
const MAX_OBJECT: usize = 256 << 20;

/// One object as fetched: its kind, name, the source that served it, and its sealed bytes.
type Served = (Kind, ObjectName, usize, Vec<u8>);

/// What was fetched.
#[derive(Debug, Default)]
pub struct Fetched {
    /// Objects stored.
    pub objects: u64,
    /// Their sealed bytes.
    pub bytes: u64,
}

/// Fetches every object `root` reaches from `sources` (tried in order for
/// each object), stores them in `repo`, and records, per source, the
/// digests of what it served, so the next sync does not stage them again.
pub fn fetch_all(repo: &Repo, root: &RootObject, sources: &[(String, PublicKey)]) -> Result<Fetched> {
    if sources.is_empty() {
        bail!("no holder of the newest root to fetch metadata from");
    }
    let mut level: Vec<(Kind, ObjectName)> =
        root.snapshots.iter().flat_map(|s| s.roots.iter()).filter_map(object_of).collect();
    let mut seen: HashSet<ObjectName> = HashSet::new();
    let mut fetched = Fetched::default();
    let mut served: Vec<Vec<([u8; 20], state::ShippedObject)>> = vec![Vec::new(); sources.len()];
    let pools: Vec<Mutex<Vec<BuddyConn>>> = sources.iter().map(|_| Mutex::new(Vec::new())).collect();
    while !level.is_empty() {
        level.retain(|(_, name)| seen.insert(*name));
        let next = AtomicUsize::new(0);
        let results: Mutex<Vec<Served>> = Mutex::new(Vec::new());
        let failure: Mutex<Option<anyhow::Error>> = Mutex::new(None);
        std::thread::scope(|scope| {
            for _ in 0..THREADS.min(level.len()) {
                scope.spawn(|| {
                    while let Some(&(kind, name)) = level.get(next.fetch_add(1, Ordering::Relaxed)) {
                        match fetch_one(repo, sources, &pools, &name) {
                            Ok((from, bytes)) => results.lock().expect("no panics").push((kind, name, from, bytes)),
                            Err(e) => {
                                failure.lock().expect("no panics").get_or_insert(e);
                                return;
                            }
                        }
                    }
                });
            }
        });
        if let Some(e) = failure.into_inner().expect("no panics") {
            return Err(e);
        }
        let mut puts = Vec::new();
        let mut children = Vec::new();
        for (kind, name, from, bytes) in results.into_inner().expect("no panics") {
            let plain = repo.open_content_bytes(kind, &name, &bytes)?;
            if kind == Kind::Tree {
                let tree: Tree = decode(&plain, "metadata tree")?;
                children.extend(tree.nodes.iter().filter_map(object_of));
            }
            fetched.objects += 1;
            fetched.bytes += bytes.len() as u64;
            let shipped =
                state::ShippedObject { digest: crate::meta::db::digest(&bytes), parts: part_count(bytes.len()) as u16 };
            served[from].push((name.0, shipped));
            puts.push((name, bytes));
        }
        repo.meta.apply(&puts, &[])?;
        level = children;
    }
    for ((_, key), digests) in sources.iter().zip(&served) {
        state::record_commit(repo.meta.database()?, key, digests, &[], &[])?;
    }
    Ok(fetched)
}

/// The object an entry points to: a directory's tree or a file's handle list.
fn object_of(node: &Node) -> Option<(Kind, ObjectName)> {
    match &node.content {
        Content::Dir { tree } => Some((Kind::Tree, *tree)),
        Content::File { chunks: Chunks::List { list, .. }, .. } => Some((Kind::List, *list)),
        _ => None,
    }
}

/// Fetches one object from the first source that has it: (source index, sealed bytes).
fn fetch_one(
    repo: &Repo,
    sources: &[(String, PublicKey)],
    pools: &[Mutex<Vec<BuddyConn>>],
    name: &ObjectName,
) -> Result<(usize, Vec<u8>)> {
    let mut errors = Vec::new();
    for (i, (addr, key)) in sources.iter().enumerate() {
        let pooled = pools[i].lock().expect("no panics").pop();
        let conn = match pooled {
            Some(c) => Ok(c),
            None => {
                let mut entry = BuddyEntry { addr: addr.clone(), key: Some(key.to_string()), epoch: 0, snapshot: None };
                connect(repo, &mut entry)
            }
        };
        match conn.and_then(|mut c| fetch_object(&mut c, name).map(|b| (c, b))) {
            Ok((c, bytes)) => {
                pools[i].lock().expect("no panics").push(c);
                return Ok((i, bytes));
            }
            Err(e) => errors.push(format!("{addr}: {e:#}")),
        }
    }
    Err(anyhow!("metadata object {name} could not be fetched: {}", errors.join("; ")))
}

/// Fetches the object `name`, reassembling its parts.
fn fetch_object(conn: &mut BuddyConn, name: &ObjectName) -> Result<Vec<u8>> {
    let mut first = Vec::new();
    conn.get_object(name.0, &mut first)?;
    let (total, parts, segment) = parse_first(&first)?;
    if total > MAX_OBJECT {
        bail!("the buddy announces a metadata object of {total} bytes");
    }
    let mut whole = Vec::with_capacity(total);
    whole.extend_from_slice(segment);
    let mut part = Vec::new();
    for k in 1..parts {
        conn.get_object(part_name(&name.0, k), &mut part)?;
        whole.extend_from_slice(&part);
        if whole.len() > total {
            bail!("the parts of metadata object {name} exceed its announced length");
        }
    }
    if whole.len() != total {
        bail!("metadata object {name} is {} bytes, not the announced {total}", whole.len());
    }
    Ok(whole)
}
