//! `pastiche check`: the store's own check, every snapshot's metadata, and
//! (with `--read-data`) every chunk opened with its handle, naming the files
//! any damage affects.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::Result;
use pastiche_core::{ChunkId, Handle, MAX_CHUNK};
use serde::Serialize;

use crate::meta::model::Content;
use crate::meta::walk;
use crate::progress::Progress;
use crate::repo::Repo;
use crate::store::{CheckMode, PackProblem};
use crate::sync::fetch::{ChunkSource, Local};

/// How much chunk data to read.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ReadData {
    /// Structure and metadata only.
    None,
    /// Every chunk.
    All,
    /// About this percentage of the chunks.
    Subset(f64),
}

/// What `check` found.
#[derive(Debug, Default, Serialize)]
pub struct CheckOutcome {
    /// Snapshots walked.
    pub snapshots: u64,
    /// Distinct chunks the snapshots use.
    pub chunks_used: u64,
    /// Chunks opened and verified against their handles.
    pub chunks_verified: u64,
    /// Every problem, one line each.
    pub problems: Vec<String>,
    /// Files affected by damaged or missing chunks (snapshot id: path).
    pub affected_files: BTreeSet<String>,
    /// The damaged or missing chunks, each with the handle a snapshot uses
    /// it by (none: no snapshot of this box uses it), for a repair.
    #[serde(skip)]
    pub bad_chunks: Vec<(ChunkId, Option<Handle>)>,
    /// Packs unusable as a whole (missing, short, bad header), for a repair.
    #[serde(skip)]
    pub bad_packs: Vec<u32>,
}

/// Runs the check.
pub fn run(repo: &Repo, read: ReadData, threads: usize, progress: &Progress) -> Result<CheckOutcome> {
    run_verifying(repo, read, &HashSet::new(), threads, progress)
}

/// Runs the check, opening the chunks of `also` end to end whatever `read`
/// picks (a repair checks what it replaced, and what it could not).
pub fn run_verifying(
    repo: &Repo,
    read: ReadData,
    also: &HashSet<ChunkId>,
    threads: usize,
    progress: &Progress,
) -> Result<CheckOutcome> {
    let mut out = CheckOutcome::default();
    let seed = rand::random::<u64>();
    let mode = match read {
        ReadData::None => CheckMode::Structure,
        ReadData::All => CheckMode::ReadAll,
        ReadData::Subset(percent) => CheckMode::ReadSubset { percent, seed },
    };
    let report = repo.store.check(mode)?;
    let mut bad_chunks: HashMap<ChunkId, String> = HashMap::new();
    for d in &report.damaged {
        bad_chunks.insert(d.id, format!("chunk {} in pack {} at {}: {}", d.id, d.pack, d.offset, d.damage));
    }
    out.problems.extend(report.packs.iter().map(|p| format!("pack: {p:?}")));
    out.bad_packs = report
        .packs
        .iter()
        .filter_map(|p| match *p {
            PackProblem::Missing(id)
            | PackProblem::Short { pack: id, .. }
            | PackProblem::BadHeader { pack: id, .. } => Some(id),
            PackProblem::Orphan(_) => None,
        })
        .collect();
    out.problems.extend(report.inconsistencies.iter().map(|i| format!("index: {i}")));

    // Which files use which chunk, across all snapshots: each file's place
    // is written once, and each distinct handle hashed to its chunkId once.
    let root = repo.load_root()?;
    let mut places: Vec<String> = Vec::new();
    let mut users: HashMap<Handle, Vec<usize>> = HashMap::new();
    for snap in &root.snapshots {
        out.snapshots += 1;
        walk::walk(
            repo,
            snap,
            |e| {
                if let Content::File { .. } = &e.node.content {
                    let place = places.len();
                    places.push(format!("{}: {}", &snap.id_hex()[..8], e.path.display()));
                    for h in &e.handles {
                        let u = users.entry(Handle(*h)).or_default();
                        if u.last() != Some(&place) {
                            u.push(place);
                        }
                    }
                }
                Ok(true)
            },
            |path, err| {
                out.problems.push(format!(
                    "metadata of {} in snapshot {}: {err:#}",
                    path.display(),
                    &snap.id_hex()[..8]
                ))
            },
        )?;
    }
    let ids: HashMap<ChunkId, Handle> = users.keys().map(|h| (h.chunk_id(), *h)).collect();
    out.chunks_used = ids.len() as u64;
    for id in ids.keys() {
        if !bad_chunks.contains_key(id) && !repo.store.contains(id)? {
            bad_chunks.insert(*id, format!("chunk {id} is missing from the store"));
        }
    }

    // End to end: open each chunk with its handle, as a restore would.
    let mut to_verify: Vec<(ChunkId, Handle)> = ids
        .iter()
        .filter(|(id, _)| !bad_chunks.contains_key(*id))
        .filter(|(id, _)| match read {
            _ if also.contains(*id) => true,
            ReadData::None => false,
            ReadData::All => true,
            ReadData::Subset(p) => {
                (u64::from_le_bytes(id.0[..8].try_into().expect("8")) ^ seed) % 10_000 < (p * 100.0) as u64
            }
        })
        .map(|(id, h)| (*id, *h))
        .collect();
    // In the store's order, so each group of the box's chunks is opened once.
    to_verify = repo.store.in_store_order(to_verify, |(id, _)| *id)?;
    progress.set_totals(to_verify.len() as u64, 0);
    let failures = Mutex::new(Vec::new());
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                let mut sealed = Vec::new();
                let mut plain = vec![0u8; MAX_CHUNK];
                while let Some((id, handle)) = to_verify.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let result = Local(repo).open(handle, &mut sealed, &mut plain);
                    if let Err(e) = result {
                        failures.lock().expect("no panics hold this lock").push((*id, format!("chunk {id}: {e}")));
                    }
                    progress.file_done();
                }
            });
        }
    });
    out.chunks_verified = to_verify.len() as u64;
    for (id, msg) in failures.into_inner().expect("no panics hold this lock") {
        bad_chunks.insert(id, msg);
    }
    for (id, msg) in &bad_chunks {
        out.problems.push(msg.clone());
        out.bad_chunks.push((*id, ids.get(id).copied()));
        if let Some(handle) = ids.get(id) {
            out.affected_files.extend(users[handle].iter().map(|&i| places[i].clone()));
        }
    }
    Ok(out)
}
