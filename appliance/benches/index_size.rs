//! Disk and RAM the chunk index takes per chunk at scale, and lookup speed.
//!
//! Stores `INDEX_CHUNKS` chunks (default 1,000,000) of 64 bytes for one
//! owner in batches of 4,096 (what a backup of 16 KiB chunks commits per
//! 64 MiB), then, like a buddy, adds a second and a third owner to a third
//! of them, and reports the index's bytes per chunk after each step (the
//! snapshot, log and chunk run, as `pastiche stats` does). The chunk bytes
//! are small so that packs stay small; the index does not depend on them.
//!
//! `cargo bench -p pastiche-appliance --bench index_size`
//! `INDEX_CHUNKS=4000000 INDEX_DIR=/var/tmp cargo bench -p pastiche-appliance --bench index_size`

use std::time::Instant;

use pastiche::store::{ChunkStore, StoreConfig};
use pastiche_core::{ChunkId, Handle, PublicKey};

const BATCH: usize = 4096;

fn chunk(n: u64) -> (ChunkId, Vec<u8>) {
    let bytes: Vec<u8> = n.to_le_bytes().iter().cycle().take(64).copied().collect();
    (Handle::of(&bytes).chunk_id(), bytes)
}

fn report(store: &ChunkStore, what: &str, rows: u64) {
    let s = store.stats().expect("stats");
    println!(
        "{what}: {} chunks, index {:.2} MB on disk = {:.1} bytes/chunk ({:.1} per (chunk, owner)), {:.2} MB RAM for lookups",
        s.chunks,
        s.index_bytes as f64 / 1e6,
        s.index_bytes as f64 / s.chunks as f64,
        s.index_bytes as f64 / rows as f64,
        s.index_ram_bytes as f64 / 1e6,
    );
}

fn main() {
    let n: u64 = std::env::var("INDEX_CHUNKS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let base = std::env::var("INDEX_DIR").unwrap_or_else(|_| std::env::temp_dir().display().to_string());
    let dir = tempfile::tempdir_in(base).expect("tempdir");
    let store = ChunkStore::open_with(dir.path(), StoreConfig::default()).expect("open");
    let owners = [PublicKey([1; 32]), PublicKey([2; 32]), PublicKey([3; 32])];

    let t = Instant::now();
    let mut at = 0;
    while at < n {
        let items: Vec<_> = (at..(at + BATCH as u64).min(n)).map(chunk).collect();
        let refs: Vec<(ChunkId, &[u8])> = items.iter().map(|(id, b)| (*id, b.as_slice())).collect();
        store.put_batch(&owners[0], &refs).expect("put");
        at += BATCH as u64;
    }
    println!("stored {n} chunks in {:.1} s", t.elapsed().as_secs_f64());
    report(&store, "one owner", n);

    let t = Instant::now();
    let probes = 100_000.min(n);
    let mut found = 0;
    for i in 0..probes {
        found += usize::from(store.contains(&chunk(i * (n / probes)).0).expect("contains"));
        found += usize::from(store.contains(&chunk(n + i).0).expect("contains"));
    }
    assert_eq!(found as u64, probes);
    let per = t.elapsed().as_secs_f64() / (2 * probes) as f64;
    println!("lookups (half present, half absent): {:.1} us each", per * 1e6);

    let shared: Vec<ChunkId> = (0..n).step_by(3).map(|i| chunk(i).0).collect();
    for o in &owners[1..] {
        for part in shared.chunks(BATCH) {
            store.add_refs(o, part).expect("add_refs");
        }
    }
    report(&store, "a third shared by two more owners", n + 2 * shared.len() as u64);
    drop(store);
    let t = Instant::now();
    let store = ChunkStore::open_with(dir.path(), StoreConfig::default()).expect("reopen");
    println!("reopen: {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
    report(&store, "after reopen", n + 2 * shared.len() as u64);
}
