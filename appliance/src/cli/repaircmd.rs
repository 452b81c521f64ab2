//! `pastiche check --repair`: runs [`crate::repair`] and prints what it
//! found, what it repaired, and what is still wrong.

use anyhow::Result;
use serde_json::json;

use super::common::Global;
use crate::engine::ReadData;
use crate::exit;
use crate::repo::SharedBox;

/// `pastiche check --repair [--read-data | --read-data-subset N%]`.
pub fn repair(g: &Global, b: &SharedBox, read: ReadData) -> Result<u8> {
    // A repair must know what is damaged: without a subset it reads it all.
    let read = if read == ReadData::None { ReadData::All } else { read };
    let repo = b.write();
    let progress = g.progress("check");
    let outcome = crate::repair::run(&repo, read, g.threads, &progress);
    progress.finish();
    let o = outcome?;
    if g.json {
        g.json(&json!({"message_type": "summary", "ok": o.is_whole(), "result": o}))?;
    } else {
        for p in &o.found {
            g.line(format!("found: {p}"))?;
        }
        for (addr, n) in &o.repaired_from {
            g.line(format!("repaired {n} chunks with verified copies from {addr}"))?;
        }
        for p in &o.packs_retired {
            g.line(format!("dropped damaged pack {p:08x} (its sound chunks moved)"))?;
        }
        for p in &o.packs_kept {
            g.line(format!("kept damaged pack: {p}"))?;
        }
        for u in &o.unrepaired {
            g.line(format!("not repaired: {u}"))?;
        }
        if o.not_ours > 0 {
            g.line(format!(
                "{} damaged chunks are not used by this box's snapshots (held for other boxes, or released): \
                 not fetched; their owners' audits ship them again",
                o.not_ours
            ))?;
        }
        for p in &o.after.problems {
            g.line(format!("error: {p}"))?;
        }
        for f in &o.after.affected_files {
            g.line(format!("affected file: {f}"))?;
        }
        g.line(format!(
            "repair: {} damaged or missing chunks, {} repaired, {} not: {}",
            o.chunks_damaged,
            o.chunks_repaired,
            o.unrepaired.len(),
            if o.is_whole() {
                "the store is whole".to_string()
            } else {
                format!("{} errors left", o.after.problems.len())
            }
        ))?;
    }
    Ok(if o.is_whole() { exit::OK } else { exit::FAILED })
}
