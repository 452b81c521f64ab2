//! The single-box commands: init, backup, snapshots, ls, restore, diff,
//! forget, prune, check, stats. Each returns its exit code.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Result};
use serde_json::json;

use super::common::{find_snapshot, format_time, iso_time, Global};
use crate::backup::{self, display_path, BackupOptions};
use crate::check::{self, ReadData};
use crate::exit;
use crate::fsmeta::kind_name;
use crate::meta::model::{Content, SnapshotInfo, Version};
use crate::meta::walk;
use crate::progress::human_bytes;
use crate::prune;
use crate::repo::hostname::local_fqdn;
use crate::repo::keys::KdfParams;
use crate::repo::password::read_passphrase;
use crate::repo::{LockMode, Repo};
use crate::restore::{self, RestoreOptions};
use crate::retention::{self, KeepPolicy};

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
        g.json_line(&json!({"message_type": "initialized", "data": g.data, "name": name,
            "node_id": repo.config.node_id, "public_key": repo.config.public_key}));
    } else {
        println!("created box for {name} in {}", g.data.display());
        println!("nodeId     {}", repo.config.node_id);
        println!("public key {}", repo.config.public_key);
        println!("Keep the passphrase and the name: together they recover this box.");
    }
    Ok(exit::OK)
}

/// `pastiche backup`.
pub fn backup(g: &Global, paths: Vec<PathBuf>, excludes: Vec<String>, one_file_system: bool) -> Result<u8> {
    let repo = g.open(LockMode::Exclusive)?;
    let progress = g.progress("backup");
    let opts = BackupOptions { paths, excludes, one_file_system, threads: g.threads };
    let result = backup::run(&repo, &opts, &progress);
    progress.finish();
    let result = result?;
    let s = &result.snapshot.summary;
    if g.json {
        g.json_line(&json!({
            "message_type": "summary",
            "snapshot_id": result.snapshot.id_hex(),
            "files_new": s.files_new, "files_changed": s.files_changed, "files_unmodified": s.files_unmodified,
            "total_files_processed": s.files, "dirs": s.dirs, "others": s.others,
            "total_bytes_processed": s.bytes, "bytes_read": s.bytes_read,
            "data_added": s.bytes_added, "chunks_added": s.chunks_new,
            "errors": s.errors, "total_duration": s.duration_ms as f64 / 1000.0,
        }));
    } else if !g.quiet {
        println!("Files: {} new, {} changed, {} unmodified", s.files_new, s.files_changed, s.files_unmodified);
        println!("Dirs:  {}   others: {}", s.dirs, s.others);
        println!(
            "Read {} of {}; added {} in {} new chunks to the store",
            human_bytes(s.bytes_read),
            human_bytes(s.bytes),
            human_bytes(s.bytes_added),
            s.chunks_new
        );
        println!("snapshot {} saved in {:.2}s", &result.snapshot.id_hex()[..8], s.duration_ms as f64 / 1000.0);
    }
    if !crate::sync::load_buddies(&repo.dir)?.is_empty() && !super::buddycmd::sync_all(g, &repo)? {
        eprintln!("pastiche: the snapshot is saved locally; `pastiche sync` ships it once the buddies are back");
    }
    if result.warnings.is_empty() {
        Ok(exit::OK)
    } else {
        eprintln!("pastiche: {} entries could not be read; the snapshot has everything else", result.warnings.len());
        Ok(exit::PARTIAL)
    }
}

fn snapshot_json(s: &SnapshotInfo) -> serde_json::Value {
    json!({
        "id": s.id_hex(), "short_id": &s.id_hex()[..8], "time": iso_time(s.time), "hostname": s.hostname,
        "paths": s.paths.iter().map(|p| display_path(p)).collect::<Vec<_>>(), "summary": s.summary,
    })
}

/// `pastiche snapshots`.
pub fn snapshots(g: &Global) -> Result<u8> {
    let repo = g.open(LockMode::Shared)?;
    let root = repo.load_root()?;
    if g.json {
        for s in &root.snapshots {
            g.json_line(&snapshot_json(s));
        }
        return Ok(exit::OK);
    }
    println!("{:<8}  {:<19}  {:<24}  {:>8}  {:>10}  paths", "ID", "Time (UTC)", "Host", "Files", "Size");
    for s in &root.snapshots {
        let paths: Vec<String> = s.paths.iter().map(|p| display_path(p)).collect();
        println!(
            "{:<8}  {}  {:<24}  {:>8}  {:>10}  {}",
            &s.id_hex()[..8],
            format_time(s.time),
            s.hostname,
            s.summary.files,
            human_bytes(s.summary.bytes),
            paths.join(" ")
        );
    }
    println!("{} snapshots", root.snapshots.len());
    Ok(exit::OK)
}

fn entry_json(path: &std::path::Path, v: &Version) -> serde_json::Value {
    json!({"path": path.to_string_lossy(), "type": kind_name(v.attrs.mode), "size": v.attrs.size,
        "mode": format!("{:o}", v.attrs.mode & 0o7777), "mtime": iso_time(v.attrs.mtime),
        "uid": v.attrs.uid, "gid": v.attrs.gid})
}

/// `pastiche ls SNAP [PATH]`.
pub fn ls(g: &Global, snap: &str, under: Option<PathBuf>) -> Result<u8> {
    let repo = g.open(LockMode::Shared)?;
    let root = repo.load_root()?;
    let snap = find_snapshot(&root, snap)?;
    for e in walk::entries(&repo, snap)? {
        if let Some(u) = &under {
            if !e.path.starts_with(u) {
                continue;
            }
        }
        if g.json {
            g.json_line(&entry_json(&e.path, &e.version));
        } else {
            let suffix = match &e.version.content {
                Content::Dir { .. } => "/".to_string(),
                Content::Symlink { target } => format!(" -> {}", String::from_utf8_lossy(target)),
                Content::File { .. } => String::new(),
            };
            println!("{}{suffix}", e.path.display());
        }
    }
    Ok(exit::OK)
}

/// Restore threads (and connections) when every chunk comes from a buddy.
const BUDDY_RESTORE_THREADS: usize = 4;

/// `pastiche restore`.
pub fn restore(
    g: &Global,
    snap: &str,
    target: PathBuf,
    include: Vec<PathBuf>,
    from_buddy: Option<String>,
) -> Result<u8> {
    let repo = g.open(LockMode::Shared)?;
    let root = repo.load_root()?;
    let snap = find_snapshot(&root, snap)?.clone();
    let mut opts = RestoreOptions { target, include, threads: g.threads };
    let source: Box<dyn crate::sync::fetch::ChunkSource> = match from_buddy {
        Some(addr) => {
            // Each thread keeps one request in flight on its own connection:
            // more threads hide the round trips.
            opts.threads = opts.threads.max(BUDDY_RESTORE_THREADS);
            let mut buddies = crate::sync::load_buddies(&repo.dir)?;
            let entry = crate::sync::nearest(&repo, &mut buddies, Some(&addr))?;
            Box::new(crate::sync::fetch::FromBuddy::new(&repo, entry))
        }
        None => Box::new(crate::sync::fetch::LocalThenBuddy::new(&repo)),
    };
    let progress = g.progress("restore");
    let summary = restore::run(&repo, &snap, &opts, source.as_ref(), &progress);
    progress.finish();
    let summary = summary?;
    if g.json {
        g.json_line(&json!({"message_type": "summary", "snapshot_id": snap.id_hex(), "files_restored": summary.files,
            "dirs_restored": summary.dirs, "links_restored": summary.links, "bytes_restored": summary.bytes,
            "errors": summary.errors}));
    } else if !g.quiet {
        println!(
            "restored snapshot {}: {} files, {} dirs, {} links, {}",
            &snap.id_hex()[..8],
            summary.files,
            summary.dirs,
            summary.links,
            human_bytes(summary.bytes)
        );
    }
    Ok(if summary.errors == 0 { exit::OK } else { exit::FAILED })
}

/// `pastiche diff SNAP1 SNAP2`.
pub fn diff(g: &Global, a: &str, b: &str) -> Result<u8> {
    let repo = g.open(LockMode::Shared)?;
    let root = repo.load_root()?;
    let collect = |spec: &str| -> Result<BTreeMap<PathBuf, Version>> {
        let snap = find_snapshot(&root, spec)?;
        Ok(walk::entries(&repo, snap)?.into_iter().map(|e| (e.path, e.version)).collect())
    };
    let (old, new) = (collect(a)?, collect(b)?);
    let (mut added, mut removed, mut modified, mut meta_only) = (0u64, 0u64, 0u64, 0u64);
    let report = |mark: &str, path: &PathBuf| {
        if g.json {
            g.json_line(&json!({"message_type": "change", "path": path.to_string_lossy(), "modifier": mark}));
        } else {
            println!("{mark}    {}", path.display());
        }
    };
    for (path, v) in &old {
        match new.get(path) {
            None => {
                removed += 1;
                report("-", path);
            }
            Some(w) if w.content != v.content || kind_name(w.attrs.mode) != kind_name(v.attrs.mode) => {
                if !matches!(v.content, Content::Dir { .. }) {
                    modified += 1;
                    report("M", path);
                }
            }
            Some(w) if !w.attrs.same_as(&v.attrs) && !matches!(v.content, Content::Dir { .. }) => {
                meta_only += 1;
                report("U", path);
            }
            Some(_) => {}
        }
    }
    for path in new.keys().filter(|p| !old.contains_key(*p)) {
        added += 1;
        report("+", path);
    }
    if g.json {
        g.json_line(&json!({"message_type": "statistics", "added": added, "removed": removed,
            "modified": modified, "metadata_changed": meta_only}));
    } else {
        println!("Added: {added}  Removed: {removed}  Modified: {modified}  Metadata only: {meta_only}");
    }
    Ok(exit::OK)
}

/// `pastiche forget`.
pub fn forget(g: &Global, policy: KeepPolicy, run_prune: bool, dry_run: bool) -> Result<u8> {
    if policy.is_empty() {
        bail!("no policy given: use at least one --keep-* option (forget never removes everything by default)");
    }
    let repo = g.open(LockMode::Exclusive)?;
    let mut root = repo.load_root()?;
    let refs: Vec<retention::SnapshotRef> = root
        .snapshots
        .iter()
        .map(|s| retention::SnapshotRef::new(s.id_hex(), s.time.secs * 1_000_000_000 + i64::from(s.time.nanos)))
        .collect();
    let decisions = retention::apply(&policy, &refs);
    let remove: Vec<String> = decisions.iter().filter(|d| !d.keep).map(|d| d.id.clone()).collect();
    for d in &decisions {
        if g.json {
            g.json_line(&json!({"message_type": "decision", "id": d.id, "keep": d.keep, "reasons": d.reasons}));
        } else if !g.quiet {
            let verb = if d.keep { "keep  " } else { "remove" };
            println!("{verb} {}  {}", &d.id[..8], d.reasons.join(", "));
        }
    }
    if dry_run {
        if !g.json {
            println!("dry run: would remove {} snapshots", remove.len());
        }
        return Ok(exit::OK);
    }
    root.snapshots.retain(|s| !remove.contains(&s.id_hex()));
    repo.commit_metadata(&[], &[], &root)?;
    if !g.json && !g.quiet {
        println!("removed {} snapshots", remove.len());
    }
    if run_prune {
        print_prune(g, prune::run(&repo)?);
    }
    Ok(exit::OK)
}

fn print_prune(g: &Global, s: prune::PruneSummary) {
    if g.json {
        g.json_line(&json!({"message_type": "prune", "summary": s}));
    } else if !g.quiet {
        println!(
            "pruned: {} objects deleted, {} trimmed, {} chunks released, {} freed",
            s.objects_deleted,
            s.objects_trimmed,
            s.chunks_released,
            human_bytes(s.bytes_freed)
        );
    }
}

/// `pastiche prune`.
pub fn prune(g: &Global) -> Result<u8> {
    let repo = g.open(LockMode::Exclusive)?;
    print_prune(g, prune::run(&repo)?);
    Ok(exit::OK)
}

/// `pastiche check`.
pub fn check(g: &Global, read: ReadData) -> Result<u8> {
    let repo = g.open(LockMode::Shared)?;
    let progress = g.progress("check");
    let outcome = check::run(&repo, read, g.threads, &progress);
    progress.finish();
    let outcome = outcome?;
    if g.json {
        g.json_line(&json!({"message_type": "summary", "ok": outcome.problems.is_empty(), "result": outcome}));
    } else {
        for p in &outcome.problems {
            println!("error: {p}");
        }
        for f in &outcome.affected_files {
            println!("affected file: {f}");
        }
        println!(
            "checked {} snapshots, {} chunks in use, {} verified end to end: {}",
            outcome.snapshots,
            outcome.chunks_used,
            outcome.chunks_verified,
            if outcome.problems.is_empty() {
                "no errors".to_string()
            } else {
                format!("{} errors", outcome.problems.len())
            }
        );
    }
    Ok(if outcome.problems.is_empty() { exit::OK } else { exit::FAILED })
}

/// `pastiche stats`.
pub fn stats(g: &Global) -> Result<u8> {
    let repo = g.open(LockMode::Shared)?;
    let root = repo.load_root()?;
    let store = repo.store.stats()?;
    let logical: u64 = root.snapshots.iter().map(|s| s.summary.bytes).sum();
    let latest = root.snapshots.last().map_or(0, |s| s.summary.bytes);
    if g.json {
        g.json_line(&json!({"snapshots": root.snapshots.len(), "latest_snapshot_bytes": latest,
            "all_snapshots_bytes": logical, "chunks": store.chunks, "garbage_chunks": store.garbage_chunks,
            "packs": store.packs, "stored_bytes": store.stored_bytes, "live_bytes": store.live_bytes,
            "garbage_bytes": store.garbage_bytes}));
    } else {
        let ratio = if store.stored_bytes == 0 { 0.0 } else { logical as f64 / store.stored_bytes as f64 };
        println!("snapshots:              {}", root.snapshots.len());
        println!("latest snapshot size:   {}", human_bytes(latest));
        println!("all snapshots' size:    {}", human_bytes(logical));
        println!("chunks stored:          {} ({} awaiting compaction)", store.chunks, store.garbage_chunks);
        println!("pack files:             {}", store.packs);
        println!(
            "stored on disk:         {} (live {})",
            human_bytes(store.stored_bytes),
            human_bytes(store.live_bytes)
        );
        println!("all snapshots / stored: {ratio:.2}x");
    }
    Ok(exit::OK)
}

/// Builds the `check` read mode from the flags.
pub fn read_mode(read_data: bool, subset: Option<String>) -> Result<ReadData> {
    match (read_data, subset) {
        (true, Some(_)) => bail!("--read-data and --read-data-subset exclude each other"),
        (true, None) => Ok(ReadData::All),
        (false, None) => Ok(ReadData::None),
        (false, Some(s)) => {
            let p: f64 = s
                .trim_end_matches('%')
                .parse()
                .map_err(|_| anyhow::anyhow!("--read-data-subset takes a percentage like 10%"))?;
            if !(0.0..=100.0).contains(&p) {
                bail!("--read-data-subset must be between 0% and 100%");
            }
            Ok(ReadData::Subset(p))
        }
    }
}
