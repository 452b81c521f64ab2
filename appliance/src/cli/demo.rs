//! `pastiche demo`: the main job on built-in defaults. It makes a demo box
//! and a sample tree in a local folder, backs the tree up, edits it, backs it
//! up again, restores the latest snapshot, verifies the restore file by file
//! and checks the box end to end.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use std::sync::Arc;

use crate::backup::{self, BackupOptions};
use crate::buddy::admission::{self, Invite};
use crate::buddy::{BuddyStorage, ServeOptions, Server, DEFAULT_QUOTA};
use crate::check::{self, ReadData};
use crate::meta::model::SnapshotInfo;
use crate::progress::{human_bytes, Mode, Progress};
use crate::repo::keys::KdfParams;
use crate::repo::{LockMode, Repo};
use crate::restore::{self, RestoreOptions};
use crate::sample_tree;
use crate::sync::{self, BuddyEntry};

/// The demo box's passphrase (it guards nothing but generated files).
const DEMO_PASSPHRASE: &str = "pastiche-demo";
const DEMO_NAME: &str = "demo.pastiche.local";

/// Runs the demo in `dir` (wiping an earlier demo there).
pub fn run(dir: &Path) -> Result<()> {
    for sub in ["box", "source", "restore", "buddy", "restore-from-buddy"] {
        let p = dir.join(sub);
        if p.exists() {
            fs::remove_dir_all(&p).with_context(|| format!("cannot clear {}", p.display()))?;
        }
    }
    let source = std::path::absolute(dir.join("source"))?;
    let files = sample_tree::create(&source, 2026).with_context(|| format!("cannot create {}", source.display()))?;
    println!("1. sample tree: {files} files in {}", source.display());

    let box_dir = dir.join("box");
    drop(Repo::init(&box_dir, DEMO_NAME, DEMO_PASSPHRASE, KdfParams::default())?);
    let repo = Repo::open(&box_dir, DEMO_PASSPHRASE, LockMode::Exclusive)?;
    println!("2. box for {DEMO_NAME} in {} (nodeId {})", box_dir.display(), repo.config.node_id);

    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let opts = BackupOptions { paths: vec![source.clone()], excludes: Vec::new(), one_file_system: false, threads };
    let first = backup::run(&repo, &opts, &Progress::start(Mode::Quiet, "backup"))?.snapshot;
    report("3. first backup", &first);

    edit(&source)?;
    let second = backup::run(&repo, &opts, &Progress::start(Mode::Quiet, "backup"))?.snapshot;
    report("4. after editing 3 files", &second);

    let target = dir.join("restore");
    let ropts = RestoreOptions { target: target.clone(), include: Vec::new(), threads };
    let restored = restore::run(
        &repo,
        &second,
        &ropts,
        &crate::sync::fetch::Local(&repo),
        &Progress::start(Mode::Quiet, "restore"),
    )?;
    let restored_root = target.join(source.strip_prefix("/").unwrap_or(&source));
    let compared = compare_trees(&source, &restored_root)?;
    println!(
        "5. restored {} files ({}) to {}: {compared} entries identical in content, mode and mtime",
        restored.files,
        human_bytes(restored.bytes),
        target.display()
    );

    let outcome = check::run(&repo, ReadData::All, threads, &Progress::start(Mode::Quiet, "check"))?;
    if !outcome.problems.is_empty() {
        bail!("check found problems: {:?}", outcome.problems);
    }
    println!("6. check --read-data: {} chunks opened and verified, no errors", outcome.chunks_verified);

    buddies(dir, &repo, &second, &source, threads)?;
    println!("Try: PASTICHE_PASSWORD={DEMO_PASSPHRASE} pastiche --data {} snapshots", box_dir.display());
    Ok(())
}

/// A second box on loopback becomes this box's buddy: it already holds part
/// of the same data (the photos), so the sync ships only what it lacks; then
/// the snapshot is restored from the buddy alone and verified.
fn buddies(dir: &Path, repo: &Repo, snap: &SnapshotInfo, source: &Path, threads: usize) -> Result<()> {
    let buddy_dir = dir.join("buddy");
    drop(Repo::init(&buddy_dir, "buddy.pastiche.local", DEMO_PASSPHRASE, KdfParams::default())?);
    let buddy = Repo::open(&buddy_dir, DEMO_PASSPHRASE, LockMode::Exclusive)?;
    let photos =
        BackupOptions { paths: vec![source.join("photos")], excludes: Vec::new(), one_file_system: false, threads };
    backup::run(&buddy, &photos, &Progress::start(Mode::Quiet, "backup"))?;
    let held = buddy.store.stats()?.stored_bytes;
    let storage = BuddyStorage::for_repo(Arc::new(buddy), DEFAULT_QUOTA)?;
    let opts = ServeOptions { listen: "127.0.0.1:0".parse()?, max_sessions: 4, ..ServeOptions::default() };
    let server = Server::bind(storage, opts)?.with_log(Arc::new(|_: &str| {}));
    let addr = server.local_addr()?;
    let stopper = server.stopper();
    let storage = server.storage().clone();
    let thread = std::thread::spawn(move || server.run());
    println!("7. buddy box on {addr} already holds its own photos ({} stored)", human_bytes(held));

    // Pairing: the buddy's owner hands out a one-time code.
    let invite = Invite { quota: None, expires: admission::unix_now() + 600, name: "demo".into() };
    let code = admission::create(&buddy_dir, &invite)?;
    let mut entry = BuddyEntry { addr: addr.to_string(), key: None, epoch: 0, snapshot: None };
    drop(sync::connect_pairing(repo, &mut entry, Some(&code))?);
    println!("   paired with code {code}: the buddy admits this box, this box pins the buddy's key");
    let report = sync::sync_one(repo, &mut entry, &Progress::start(Mode::Quiet, "sync"))?;
    let grown = storage.chunks().stats()?.stored_bytes - held;
    println!(
        "8. synced to the buddy: {} of {} chunks sent ({}), the buddy grew by {} (two-phase commit, epoch {})",
        report.chunks_sent,
        report.chunks_offered,
        human_bytes(report.bytes_sent),
        human_bytes(grown),
        report.epoch
    );

    let target = dir.join("restore-from-buddy");
    let ropts = RestoreOptions { target: target.clone(), include: Vec::new(), threads };
    let from_buddy = sync::fetch::FromBuddy::new(repo, entry);
    let restored = restore::run(repo, snap, &ropts, &from_buddy, &Progress::start(Mode::Quiet, "restore"))?;
    let compared = compare_trees(source, &target.join(source.strip_prefix("/").unwrap_or(source)))?;
    println!(
        "9. restored {} files from the buddy alone, every chunk checked: {compared} entries identical",
        restored.files
    );
    stopper.stop();
    thread.join().map_err(|_| anyhow::anyhow!("the buddy thread panicked"))??;
    Ok(())
}

fn report(step: &str, s: &SnapshotInfo) {
    let m = &s.summary;
    println!(
        "{step}: snapshot {} - {} files ({} new, {} changed, {} unmodified), read {}, stored {} new",
        &s.id_hex()[..8],
        m.files,
        m.files_new,
        m.files_changed,
        m.files_unmodified,
        human_bytes(m.bytes_read),
        human_bytes(m.bytes_added)
    );
}

/// Inserts a few bytes in the middle of some files and adds one.
fn edit(source: &Path) -> Result<()> {
    for name in ["photos/2025/img_0000.jpg", "documents/note_001.txt", "code/project/mod_3.rs"] {
        let path = source.join(name);
        let mut data = fs::read(&path)?;
        let mid = data.len() / 2;
        data.splice(mid..mid, b"<an edit in the middle>".iter().copied());
        fs::write(&path, data)?;
    }
    fs::write(source.join("documents/new-note.txt"), "written after the first backup\n")?;
    Ok(())
}

/// Compares two trees entry by entry; returns how many entries matched.
fn compare_trees(a: &Path, b: &Path) -> Result<usize> {
    let mut count = 0;
    let mut stack: Vec<PathBuf> = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let (pa, pb) = (a.join(&rel), b.join(&rel));
        let (ma, mb) = (
            fs::symlink_metadata(&pa)?,
            fs::symlink_metadata(&pb).with_context(|| format!("{} missing", pb.display()))?,
        );
        if ma.mode() != mb.mode() || (!ma.is_dir() && ma.mtime() != mb.mtime()) || ma.len() != mb.len() && !ma.is_dir()
        {
            bail!("{} differs from the original", pb.display());
        }
        if ma.is_file() && fs::read(&pa)? != fs::read(&pb)? {
            bail!("{} has different content", pb.display());
        }
        if ma.file_type().is_symlink() && fs::read_link(&pa)? != fs::read_link(&pb)? {
            bail!("{} points elsewhere", pb.display());
        }
        if ma.is_dir() {
            for e in fs::read_dir(&pa)? {
                stack.push(rel.join(e?.file_name()));
            }
        }
        count += 1;
    }
    Ok(count)
}
