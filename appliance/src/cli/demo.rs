//! `pastiche demo`: the main job on built-in defaults.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};

use crate::pipeline::chunk_and_seal;
use crate::sample_tree;

/// Creates a sample tree under `dir`, chunks and seals every file in it on
/// all cores, and prints what deduplication saves.
pub fn run(dir: &Path) -> Result<()> {
    let source = dir.join("source");
    let files = sample_tree::create(&source, 2026).with_context(|| format!("cannot create {}", source.display()))?;
    println!("sample tree: {files} files in {}", source.display());

    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let started = Instant::now();
    let (mut bytes, mut chunks, mut sealed_bytes) = (0u64, 0u64, 0u64);
    let mut unique = HashSet::new();
    for path in regular_files(&source)? {
        let file = File::open(&path).with_context(|| format!("cannot read {}", path.display()))?;
        bytes += chunk_and_seal(file, workers, |c| {
            chunks += 1;
            if unique.insert(c.id) {
                sealed_bytes += c.sealed.len() as u64;
            }
        })?;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{chunks} chunks, {} unique: {bytes} bytes of files need {sealed_bytes} sealed bytes ({:.1}% saved)",
        unique.len(),
        100.0 * (1.0 - sealed_bytes as f64 / bytes.max(1) as f64)
    );
    println!("chunked and sealed at {:.0} MB/s on {workers} threads", bytes as f64 / secs / 1e6);
    Ok(())
}

fn regular_files(root: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    Ok(out)
}
