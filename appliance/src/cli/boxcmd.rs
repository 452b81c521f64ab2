//! The single-box commands: init, backup, snapshots, ls, restore, diff,
//! forget, prune, check, stats, sync. Each calls the [engine](crate::engine)
//! on a [`SharedBox`], renders the report as text or JSON Lines, and returns
//! its exit code.

use std::path::PathBuf;

use anyhow::Result;
use serde_json::json;

use super::common::{format_time, iso_time, Global};
use crate::backup::display_path;
use crate::engine::ship::{self, ShipReport};
use crate::engine::snapshots::{self, DiffReport, ForgetReport};
use crate::engine::{self, BackupOptions, PruneSummary, ReadData, RestoreOptions};
use crate::exit;
use crate::fsmeta::kind_name;
use crate::meta::model::{Content, Node, SnapshotInfo};
use crate::progress::{human_bytes, Progress};
use crate::repo::hostname::local_fqdn;
use crate::repo::keys::KdfParams;
use crate::repo::password::read_passphrase;
use crate::repo::{Repo, SharedBox};
use crate::retention::KeepPolicy;

/// Environment variable overriding the Argon2id memory (MiB) at `init`, for
/// small boards and tests. Disaster recovery then needs the same value.
pub const ENV_KDF_MIB: &str = "PASTICHE_KDF_MIB";

/// `pastiche init`.
pub fn init(g: &Global, name: Option<String>) -> Result<u8> {
    let name = name.unwrap_or_else(local_fqdn);
    let pass = read_passphrase(true)?;
    let mut kdf = KdfParams::default();
    if let Ok(mib) = std::env::var(ENV_KDF_MIB) {
        kdf.memory_kib =
            mib.parse::<u32>().map_err(|_| anyhow::anyhow!("{ENV_KDF_MIB} must be a number of MiB"))? * 1024;
    }
    let repo = Repo::init(&g.data, &name, &pass, kdf)?;
    if g.json {
        g.json(&json!({"message_type": "initialized", "data": g.data, "name": name,
            "node_id": repo.config.node_id, "public_key": repo.config.public_key}))?;
    } else {
        g.line(format!("created box for {name} in {}", g.data.display()))?;
        g.line(format!("nodeId     {}", repo.config.node_id))?;
        g.line(format!("public key {}", repo.config.public_key))?;
        g.line("Keep the passphrase and the name: together they recover this box.")?;
    }
    Ok(exit::OK)
}

/// The options of `pastiche backup` with `g`'s threads.
pub fn backup_options(g: &Global, paths: Vec<PathBuf>, excludes: Vec<String>, one_file_system: bool) -> BackupOptions {
    BackupOptions { paths, excludes, one_file_system, threads: g.threads }
}

/// `pastiche backup`, then shipping to the buddies if there are any. The
/// source tree is walked here unless `walked` holds the walk of `opts`;
/// `progress` is this backup's display, already started.
pub fn backup(
    g: &Global,
    b: &SharedBox,
    opts: &BackupOptions,
    walked: Option<engine::backup::Walk>,
    progress: Progress,
) -> Result<u8> {
    let repo = b.write();
    let result = match walked {
        Some(walk) => engine::backup::run_walked(&repo, walk, opts, &progress),
        None => engine::backup::run(&repo, opts, &progress),
    };
    progress.finish();
    let result = result?;
    let s = &result.snapshot.summary;
    if g.json {
        g.json(&json!({
            "message_type": "summary",
            "snapshot_id": result.snapshot.id_hex(),
            "files_new": s.files_new, "files_changed": s.files_changed, "files_unmodified": s.files_unmodified,
            "total_files_processed": s.files, "dirs": s.dirs, "others": s.others,
            "total_bytes_processed": s.bytes, "bytes_read": s.bytes_read,
            "data_added": s.bytes_added, "chunks_added": s.chunks_new,
            "errors": s.errors, "total_duration": s.duration_ms as f64 / 1000.0,
        }))?;
    } else if !g.quiet {
        g.line(format!("Files: {} new, {} changed, {} unmodified", s.files_new, s.files_changed, s.files_unmodified))?;
        g.line(format!("Dirs:  {}   others: {}", s.dirs, s.others))?;
        g.line(format!(
            "Read {} of {}; added {} in {} new chunks to the store",
            human_bytes(s.bytes_read),
            human_bytes(s.bytes),
            human_bytes(s.bytes_added),
            s.chunks_new
        ))?;
        g.line(format!("snapshot {} saved in {:.2}s", &result.snapshot.id_hex()[..8], s.duration_ms as f64 / 1000.0))?;
    }
    if !crate::sync::load_buddies(&repo.dir)?.is_empty() {
        let report = ship::ship_all(&repo, |_| g.progress("sync"))?;
        render_ship(g, &report)?;
        if !report.all_ok() {
            g.warn("pastiche: the snapshot is saved locally; `pastiche sync` ships it once the buddies are back");
        }
    }
    if result.warnings.is_empty() {
        Ok(exit::OK)
    } else {
        g.warn(format!(
            "pastiche: {} entries could not be read; the snapshot has everything else",
            result.warnings.len()
        ));
        Ok(exit::PARTIAL)
    }
}

/// `pastiche sync`: ships whatever is pending to every buddy.
pub fn sync(g: &Global, b: &SharedBox) -> Result<u8> {
    let repo = b.write();
    if crate::sync::load_buddies(&repo.dir)?.is_empty() {
        return Err(engine::Error::NoBuddies.into());
    }
    let report = ship::ship_all(&repo, |_| g.progress("sync"))?;
    render_ship(g, &report)?;
    Ok(if report.all_ok() { exit::OK } else { exit::FAILED })
}

fn render_ship(g: &Global, report: &ShipReport) -> Result<()> {
    for b in &report.buddies {
        match (&b.report, &b.error) {
            (Some(r), _) if g.json => g.json(&json!({"message_type": "sync", "report": r}))?,
            (Some(r), _) if !g.quiet => g.line(format!(
                "synced to {}: epoch {}, {} of {} offered chunks sent ({}), {} objects, {} references released, {:.2}s",
                r.addr,
                r.epoch,
                r.chunks_sent,
                r.chunks_offered,
                human_bytes(r.bytes_sent),
                r.objects_sent,
                r.deletes,
                r.seconds
            ))?,
            (_, Some(e)) => g.warn(format!("pastiche: sync to {} failed: {e}", b.addr)),
            _ => {}
        }
    }
    Ok(())
}

/// A snapshot as `snapshots --json` prints it (and the HTTP API serves it).
pub fn snapshot_json(s: &SnapshotInfo) -> serde_json::Value {
    json!({
        "id": s.id_hex(), "short_id": &s.id_hex()[..8], "time": iso_time(s.time), "hostname": s.hostname,
        "paths": s.paths.iter().map(|p| display_path(p)).collect::<Vec<_>>(), "summary": s.summary,
    })
}

/// `pastiche snapshots`.
pub fn snapshots(g: &Global, b: &SharedBox) -> Result<u8> {
    let list = snapshots::list(&b.read())?;
    if g.json {
        for s in &list {
            g.json(&snapshot_json(s))?;
        }
        return Ok(exit::OK);
    }
    g.line(format!("{:<8}  {:<19}  {:<24}  {:>8}  {:>10}  paths", "ID", "Time (UTC)", "Host", "Files", "Size"))?;
    for s in &list {
        let paths: Vec<String> = s.paths.iter().map(|p| display_path(p)).collect();
        g.line(format!(
            "{:<8}  {}  {:<24}  {:>8}  {:>10}  {}",
            &s.id_hex()[..8],
            format_time(s.time),
            s.hostname,
            s.summary.files,
            human_bytes(s.summary.bytes),
            paths.join(" ")
        ))?;
    }
    g.line(format!("{} snapshots", list.len()))?;
    Ok(exit::OK)
}

fn entry_json(path: &std::path::Path, v: &Node) -> serde_json::Value {
    json!({"path": path.to_string_lossy(), "type": kind_name(v.attrs.mode), "size": v.attrs.size,
        "mode": format!("{:o}", v.attrs.mode & 0o7777), "mtime": iso_time(v.attrs.mtime),
        "uid": v.attrs.uid, "gid": v.attrs.gid})
}

/// `pastiche ls SNAP [PATH]`.
pub fn ls(g: &Global, b: &SharedBox, snap: &str, under: Option<PathBuf>) -> Result<u8> {
    for e in snapshots::ls(&b.read(), snap, under.as_deref())? {
        if g.json {
            g.json(&entry_json(&e.path, &e.node))?;
        } else {
            let suffix = match &e.node.content {
                Content::Dir { .. } => "/".to_string(),
                Content::Symlink { target } => format!(" -> {}", String::from_utf8_lossy(target)),
                Content::File { .. } => String::new(),
            };
            g.line(format!("{}{suffix}", e.path.display()))?;
        }
    }
    Ok(exit::OK)
}

/// `pastiche restore`.
pub fn restore(
    g: &Global,
    b: &SharedBox,
    snap: &str,
    target: PathBuf,
    include: Vec<PathBuf>,
    from_buddy: Option<String>,
) -> Result<u8> {
    let repo = b.read();
    let root = repo.load_root()?;
    let snap = snapshots::find(&root, snap)?.clone();
    let opts = RestoreOptions { target, include, threads: g.threads };
    let source: Box<dyn crate::sync::fetch::ChunkSource> = match from_buddy {
        Some(addr) => {
            // Files share the puller's pipelined connections to that buddy.
            let mut buddies = crate::sync::load_buddies(&repo.dir)?;
            let entry = crate::sync::nearest(&repo, &mut buddies, Some(&addr))?;
            Box::new(crate::sync::pull::Puller::new(&repo.identity, repo.node, &[entry]))
        }
        None => Box::new(crate::sync::fetch::LocalThenBuddy::new(&repo)),
    };
    let progress = g.progress("restore");
    let summary = engine::restore::run(&repo, &snap, &opts, source.as_ref(), &progress);
    progress.finish();
    let summary = summary?;
    if g.json {
        g.json(&json!({"message_type": "summary", "snapshot_id": snap.id_hex(), "files_restored": summary.files,
            "dirs_restored": summary.dirs, "links_restored": summary.links, "bytes_restored": summary.bytes,
            "errors": summary.errors}))?;
    } else if !g.quiet {
        g.line(format!(
            "restored snapshot {}: {} files, {} dirs, {} links, {}",
            &snap.id_hex()[..8],
            summary.files,
            summary.dirs,
            summary.links,
            human_bytes(summary.bytes)
        ))?;
    }
    Ok(if summary.errors == 0 { exit::OK } else { exit::FAILED })
}

/// `pastiche diff SNAP1 SNAP2`.
pub fn diff(g: &Global, b: &SharedBox, a: &str, second: &str) -> Result<u8> {
    let report: DiffReport = snapshots::diff(&b.read(), a, second)?;
    for (path, change) in &report.changes {
        if g.json {
            g.json(&json!({"message_type": "change", "path": path.to_string_lossy(), "modifier": change.mark()}))?;
        } else {
            g.line(format!("{}    {}", change.mark(), path.display()))?;
        }
    }
    if g.json {
        g.json(&json!({"message_type": "statistics", "added": report.added, "removed": report.removed,
            "modified": report.modified, "metadata_changed": report.metadata_changed}))?;
    } else {
        g.line(format!(
            "Added: {}  Removed: {}  Modified: {}  Metadata only: {}",
            report.added, report.removed, report.modified, report.metadata_changed
        ))?;
    }
    Ok(exit::OK)
}

/// `pastiche forget`.
pub fn forget(g: &Global, b: &SharedBox, policy: KeepPolicy, run_prune: bool, dry_run: bool) -> Result<u8> {
    let report: ForgetReport = {
        let repo = b.write();
        snapshots::forget(&repo, &policy, dry_run)?
    };
    for d in &report.decisions {
        if g.json {
            g.json(&json!({"message_type": "decision", "id": d.id, "keep": d.keep, "reasons": d.reasons}))?;
        } else if !g.quiet {
            let verb = if d.keep { "keep  " } else { "remove" };
            g.line(format!("{verb} {}  {}", &d.id[..8], d.reasons.join(", ")))?;
        }
    }
    if dry_run {
        if !g.json {
            g.line(format!("dry run: would remove {} snapshots", report.to_remove()))?;
        }
        return Ok(exit::OK);
    }
    if !g.json && !g.quiet {
        g.line(format!("removed {} snapshots", report.removed))?;
    }
    if run_prune {
        print_prune(g, &engine::prune::run(&b.reclaim())?)?;
    }
    Ok(exit::OK)
}

fn print_prune(g: &Global, s: &PruneSummary) -> Result<()> {
    if g.json {
        g.json(&json!({"message_type": "prune", "summary": s}))?;
    } else if !g.quiet {
        g.line(format!(
            "pruned: {} objects deleted, {} chunks released, {} freed",
            s.objects_deleted,
            s.chunks_released,
            human_bytes(s.bytes_freed)
        ))?;
    }
    Ok(())
}

/// `pastiche prune`.
pub fn prune(g: &Global, b: &SharedBox) -> Result<u8> {
    let summary = engine::prune::run(&b.reclaim())?;
    print_prune(g, &summary)?;
    Ok(exit::OK)
}

/// `pastiche check`.
pub fn check(g: &Global, b: &SharedBox, read: ReadData) -> Result<u8> {
    let repo = b.read();
    let progress = g.progress("check");
    let outcome = engine::check::run(&repo, read, g.threads, &progress);
    progress.finish();
    let outcome = outcome?;
    if g.json {
        g.json(&json!({"message_type": "summary", "ok": outcome.problems.is_empty(), "result": outcome}))?;
    } else {
        for p in &outcome.problems {
            g.line(format!("error: {p}"))?;
        }
        for f in &outcome.affected_files {
            g.line(format!("affected file: {f}"))?;
        }
        g.line(format!(
            "checked {} snapshots, {} chunks in use, {} verified end to end: {}",
            outcome.snapshots,
            outcome.chunks_used,
            outcome.chunks_verified,
            if outcome.problems.is_empty() {
                "no errors".to_string()
            } else {
                format!("{} errors", outcome.problems.len())
            }
        ))?;
    }
    Ok(if outcome.problems.is_empty() { exit::OK } else { exit::FAILED })
}

/// `pastiche stats`.
pub fn stats(g: &Global, b: &SharedBox) -> Result<u8> {
    let s = engine::stats::stats(&b.read())?;
    if g.json {
        g.json(&json!({"snapshots": s.snapshots, "latest_snapshot_bytes": s.latest_snapshot_bytes,
            "all_snapshots_bytes": s.all_snapshots_bytes, "chunks": s.chunks, "garbage_chunks": s.garbage_chunks,
            "packs": s.packs, "stored_bytes": s.stored_bytes, "live_bytes": s.live_bytes,
            "garbage_bytes": s.garbage_bytes, "index_bytes": s.index_bytes}))?;
    } else {
        g.line(format!("snapshots:              {}", s.snapshots))?;
        g.line(format!("latest snapshot size:   {}", human_bytes(s.latest_snapshot_bytes)))?;
        g.line(format!("all snapshots' size:    {}", human_bytes(s.all_snapshots_bytes)))?;
        g.line(format!("chunks stored:          {} ({} awaiting compaction)", s.chunks, s.garbage_chunks))?;
        g.line(format!("pack files:             {}", s.packs))?;
        g.line(format!(
            "stored on disk:         {} (live {})",
            human_bytes(s.stored_bytes),
            human_bytes(s.live_bytes)
        ))?;
        g.line(format!(
            "chunk index on disk:    {} ({} bytes per chunk)",
            human_bytes(s.index_bytes),
            s.index_bytes.checked_div(s.chunks).unwrap_or(0)
        ))?;
        g.line(format!("all snapshots / stored: {:.2}x", s.ratio()))?;
    }
    Ok(exit::OK)
}
