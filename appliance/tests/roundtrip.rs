//! Backup and restore of a realistic tree must give back every entry exactly:
//! type, content, size, permissions, owner, mtime to the nanosecond, symlink
//! targets, hard links, holes. Also `restore --include`, `ls` and `--json`.

mod common;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use common::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use tempfile::TempDir;

/// The sparse file: this size, with data only in the middle.
const SPARSE_SIZE: u64 = 16 << 20;

struct Fixture {
    _tmp: TempDir,
    tmp: PathBuf,
    src: PathBuf,
    bx: TestBox,
    /// The source as it was backed up.
    manifest: Manifest,
    /// The backup's JSON summary.
    summary: serde_json::Value,
}

/// Builds the source tree under `src`.
fn build_tree(src: &Path) {
    let mut rng = StdRng::seed_from_u64(0x5eed_0001);
    fs::create_dir_all(src).unwrap();
    // Files of every awkward size.
    write_bytes(&src.join("empty"), b"");
    write_bytes(&src.join("one-byte"), b"x");
    write_random(&src.join("big.bin"), 6 * 1024 * 1024 + 12_345, &mut rng);
    write_random(&src.join("exactly-64k.bin"), 65_536, &mut rng);
    write_bytes(&src.join("text/readme.txt"), &random_text(40_000, &mut rng));
    write_bytes(&src.join("text/notes.md"), b"# Notes\n\nshort text file\n");
    write_bytes(
        &src.join("text/with space/\u{fc}n\u{ef}c\u{f8}d\u{e9} \u{6587}\u{4ef6}.txt"),
        "unicode name\n".as_bytes(),
    );
    // Deep nesting, and a sibling whose name extends another's.
    write_bytes(&src.join("a/b/c/d/e/deep.txt"), b"deep\n");
    write_random(&src.join("a/b/mid.bin"), 200_000, &mut rng);
    write_bytes(&src.join("a/bx/not-under-b.txt"), b"sibling\n");
    write_bytes(&src.join("a/top.txt"), b"top of a\n");
    fs::create_dir_all(src.join("emptydir")).unwrap();
    // The same content twice, not linked.
    let mut dup = vec![0u8; 300_000];
    rand::RngCore::fill_bytes(&mut rng, &mut dup);
    write_bytes(&src.join("dup/one"), &dup);
    write_bytes(&src.join("dup/two"), &dup);
    // Symlinks: relative, absolute, dangling, to a directory.
    symlink("text/readme.txt", src.join("link-to-readme")).unwrap();
    symlink("/definitely/not/there", src.join("dangling")).unwrap();
    symlink("a/b", src.join("link-to-dir")).unwrap();
    // A hard-link pair in different directories.
    write_random(&src.join("hl/first"), 150_000, &mut rng);
    fs::create_dir_all(src.join("hl/other")).unwrap();
    fs::hard_link(src.join("hl/first"), src.join("hl/other/second")).unwrap();
    // A sparse file: a hole, data in the middle, a hole.
    {
        let f = OpenOptions::new().create(true).truncate(true).write(true).open(src.join("sparse.img")).unwrap();
        f.set_len(SPARSE_SIZE).unwrap();
        let mut mid = vec![0u8; 100_000];
        rand::RngCore::fill_bytes(&mut rng, &mut mid);
        f.write_all_at(&mid, SPARSE_SIZE / 2).unwrap();
    }
    // Permissions.
    write_bytes(&src.join("perm/secret"), b"only me\n");
    chmod(&src.join("perm/secret"), 0o600);
    write_bytes(&src.join("perm/script.sh"), b"#!/bin/sh\necho hi\n");
    chmod(&src.join("perm/script.sh"), 0o755);
    write_bytes(&src.join("perm/readonly"), b"do not touch\n");
    chmod(&src.join("perm/readonly"), 0o444);
    write_bytes(&src.join("perm/private/inside"), b"private\n");
    chmod(&src.join("perm/private"), 0o700);
    // Ownership that is not ours (only root may do that).
    if is_root() {
        write_bytes(&src.join("perm/owned-by-other"), b"theirs\n");
        std::os::unix::fs::lchown(src.join("perm/owned-by-other"), Some(1234), Some(5678)).unwrap();
    }
    stamp_distinct_mtimes(src, 1_600_000_000);
}

fn fixture(tag: &str) -> Fixture {
    let tmp = tempfile::Builder::new().prefix(&format!("pastiche-roundtrip-{tag}-")).tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let src = root.join("src");
    build_tree(&src);
    let bx = TestBox::init(root.join("box"));
    let manifest = manifest(&src);
    let summary = bx.backup(&src);
    Fixture { _tmp: tmp, tmp: root, src, bx, manifest, summary }
}

#[test]
fn restore_recreates_every_entry_exactly() {
    let fx = fixture("full");
    let s = &fx.summary;
    let files = fx.manifest.values().filter(|e| matches!(e.kind, Kind::File(_))).count() as u64;
    assert_eq!(s["errors"], 0, "the backup of a readable tree reported errors: {s}");
    assert_eq!(s["files_new"], files, "files_new should count every regular file of the source: {s}");

    let target = fx.tmp.join("restore");
    fx.bx.restore("latest", &target);
    let restored = restored_path(&target, &fx.src);
    assert_tree_matches(&fx.manifest, &restored, "full restore");

    // The restore must not have created anything beside the source path.
    let top: Vec<_> = fs::read_dir(&target).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(
        top,
        vec![std::ffi::OsString::from(fx.src.components().nth(1).unwrap().as_os_str())],
        "the target should hold only the first component of the source path"
    );

    // Hard links share an inode (also checked by assert_tree_matches).
    let a = fs::metadata(restored.join("hl/first")).unwrap();
    let b = fs::metadata(restored.join("hl/other/second")).unwrap();
    assert_eq!(
        (a.dev(), a.ino()),
        (b.dev(), b.ino()),
        "the restored hard links hl/first and hl/other/second are separate files"
    );
    assert_eq!(a.nlink(), 2, "restored hl/first should have 2 links");

    // Holes stay holes.
    let src_sparse = fs::metadata(fx.src.join("sparse.img")).unwrap();
    if src_sparse.blocks() * 512 < src_sparse.len() {
        let m = fs::metadata(restored.join("sparse.img")).unwrap();
        assert_eq!(m.len(), SPARSE_SIZE, "restored sparse.img has the wrong size");
        assert!(
            m.blocks() * 512 < m.len() / 2,
            "restored sparse.img is not sparse: {} bytes allocated for a {}-byte file \
             (the source has {} bytes allocated)",
            m.blocks() * 512,
            m.len(),
            src_sparse.blocks() * 512
        );
    } else {
        println!("note: this file system does not make sparse files; hole check skipped");
    }
}

/// A second restore into the same target replaces what it finds there:
/// files changed since, a file swapped for a link to a file outside the
/// target, a link swapped for a file, a longer file where a sparse one
/// goes. Each is replaced, never written through: the file outside stays
/// as it was.
#[test]
fn restoring_over_an_earlier_restore_replaces_entries_and_never_writes_through_links() {
    let fx = fixture("over");
    let target = fx.tmp.join("restore");
    fx.bx.restore("latest", &target);
    let restored = restored_path(&target, &fx.src);
    let outside = fx.tmp.join("outside.txt");
    write_bytes(&outside, b"not the restore's to change\n");
    fs::remove_file(restored.join("big.bin")).unwrap();
    symlink(&outside, restored.join("big.bin")).unwrap();
    fs::remove_file(restored.join("link-to-readme")).unwrap();
    write_bytes(&restored.join("link-to-readme"), b"a file where a link was\n");
    write_bytes(&restored.join("text/notes.md"), &vec![b'x'; 200_000]);
    let long = OpenOptions::new().write(true).truncate(true).open(restored.join("sparse.img")).unwrap();
    long.set_len(2 * SPARSE_SIZE).unwrap();
    drop(long);

    fx.bx.restore("latest", &target);
    assert_tree_matches(&fx.manifest, &restored, "restore over an earlier one");
    assert_eq!(fs::read(&outside).unwrap(), b"not the restore's to change\n");
}

#[test]
fn include_restores_only_that_subtree() {
    let fx = fixture("include");
    let target = fx.tmp.join("restore");
    let sub = fx.src.join("a/b");
    let file = fx.src.join("text/readme.txt");
    fx.bx
        .run([
            OsStr::new("restore"),
            OsStr::new("latest"),
            OsStr::new("--target"),
            target.as_os_str(),
            OsStr::new("--include"),
            sub.as_os_str(),
            OsStr::new("--include"),
            file.as_os_str(),
        ])
        .ok();
    let restored = restored_path(&target, &fx.src);
    let got: BTreeSet<PathBuf> = manifest(&restored).into_keys().collect();
    // The included subtrees and the directories leading to them, nothing else.
    let expected: BTreeSet<PathBuf> = fx
        .manifest
        .keys()
        .filter(|p| {
            p.starts_with("a/b")
                || p.as_path() == Path::new("text/readme.txt")
                || ["", "a", "text"].iter().any(|a| p.as_path() == Path::new(a))
        })
        .cloned()
        .collect();
    let extra: Vec<_> = got.difference(&expected).collect();
    let missing: Vec<_> = expected.difference(&got).collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "--include a/b --include text/readme.txt restored the wrong entries;\n\
         extra (should not be restored): {extra:?}\nmissing: {missing:?}"
    );
    // What was included is exact, down to mtimes.
    assert_tree_matches(&sub_manifest(&fx.manifest, Path::new("a/b")), &restored.join("a/b"), "restore --include a/b");
    assert_eq!(
        file_sha1(&restored.join("text/readme.txt")),
        file_sha1(&file),
        "restore --include text/readme.txt: content differs"
    );

    // `ls SNAP PATH` lists only that subtree (component-wise: not a/bx).
    let ls = fx.bx.run([OsStr::new("ls"), OsStr::new("latest"), sub.as_os_str()]).ok();
    let listed: BTreeSet<String> = ls.stdout.lines().map(strip_ls_suffix).collect();
    let want: BTreeSet<String> =
        fx.manifest.keys().filter(|p| p.starts_with("a/b")).map(|p| abs_path(&fx.src, p)).collect();
    assert_eq!(listed, want, "`ls latest {}` should list exactly that subtree\n{}", sub.display(), ls.describe());
}

/// The absolute path of `rel` under `root`, as `ls` prints it.
fn abs_path(root: &Path, rel: &Path) -> String {
    if rel.as_os_str().is_empty() {
        root.display().to_string()
    } else {
        root.join(rel).display().to_string()
    }
}

/// A text `ls` line without its `/` or ` -> target` decoration.
fn strip_ls_suffix(line: &str) -> String {
    let line = line.split(" -> ").next().unwrap_or(line);
    line.strip_suffix('/').unwrap_or(line).to_string()
}

#[test]
fn ls_lists_every_entry() {
    let fx = fixture("ls");
    // Text: one line per entry, `/` after directories, ` -> T` after symlinks.
    let ls = fx.bx.run(["ls", "latest"]).ok();
    let got: BTreeSet<String> = ls.stdout.lines().map(str::to_string).collect();
    let want: BTreeSet<String> = fx
        .manifest
        .iter()
        .map(|(p, e)| {
            let abs = abs_path(&fx.src, p);
            match &e.kind {
                Kind::Dir => format!("{abs}/"),
                Kind::Symlink(t) => format!("{abs} -> {}", t.to_string_lossy()),
                _ => abs,
            }
        })
        .collect();
    assert_eq!(ls.stdout.lines().count(), fx.manifest.len(), "ls should print one line per entry\n{}", ls.describe());
    assert!(
        got == want,
        "ls output differs from the source tree; missing: {:?}; unexpected: {:?}",
        want.difference(&got).collect::<Vec<_>>(),
        got.difference(&want).collect::<Vec<_>>()
    );

    // JSON: the attributes of each entry.
    let ls = fx.bx.run(["--json", "ls", "latest"]).ok();
    let lines = ls.json_lines();
    assert_eq!(lines.len(), fx.manifest.len(), "ls --json should print one object per entry\n{}", ls.describe());
    for v in &lines {
        let path = PathBuf::from(v["path"].as_str().expect("path is a string"));
        let rel = path
            .strip_prefix(&fx.src)
            .unwrap_or_else(|_| panic!("ls --json lists {path:?}, outside the backed-up path"));
        let e = fx.manifest.get(rel).unwrap_or_else(|| panic!("ls --json lists {path:?}, not in the source"));
        let kind = match e.kind {
            Kind::File(_) => "file",
            Kind::Dir => "dir",
            Kind::Symlink(_) => "symlink",
            Kind::Other(_) => "other",
        };
        assert_eq!(v["type"], kind, "{path:?}: wrong type in {v}");
        assert_eq!(v["mode"], format!("{:o}", e.perm), "{path:?}: wrong mode in {v}");
        assert_eq!((v["uid"].clone(), v["gid"].clone()), (e.uid.into(), e.gid.into()), "{path:?}: wrong owner in {v}");
        if kind != "dir" {
            assert_eq!(v["size"], e.size, "{path:?}: wrong size in {v}");
        }
        let mtime = v["mtime"].as_str().expect("mtime is a string");
        assert!(
            mtime.ends_with(&format!(".{:09}Z", e.mtime.1)),
            "{path:?}: mtime {mtime} should end in the source's nanoseconds {:09}",
            e.mtime.1
        );
    }
}

#[test]
fn json_output_is_json_lines() {
    let fx = fixture("json");
    // Backup (in the fixture): every line JSON, summary last and complete.
    let s = &fx.summary;
    for key in [
        "snapshot_id",
        "files_new",
        "files_changed",
        "files_unmodified",
        "total_files_processed",
        "total_bytes_processed",
        "bytes_read",
        "data_added",
        "chunks_added",
        "errors",
    ] {
        assert!(s.get(key).is_some(), "backup summary lacks {key}: {s}");
    }
    let id = s["snapshot_id"].as_str().unwrap().to_string();

    // A second backup, every line checked here.
    let r = fx.bx.run([OsStr::new("--json"), OsStr::new("backup"), fx.src.as_os_str()]).ok();
    for v in r.json_lines() {
        assert!(
            matches!(v["message_type"].as_str(), Some("status" | "summary")),
            "backup --json printed an unexpected stdout line: {v}"
        );
    }
    let s2 = r.json_summary();
    assert_eq!(s2["files_new"], 0, "second backup: {s2}");
    assert_eq!(s2["files_changed"], 0, "second backup: {s2}");
    assert_eq!(s2["data_added"], 0, "second backup of an unchanged tree: {s2}");

    let snaps = fx.bx.snapshots();
    assert_eq!(snaps.len(), 2, "snapshots --json: {snaps:?}");
    assert_eq!(snaps[0]["id"], id.as_str(), "snapshots --json: {snaps:?}");

    let target = fx.tmp.join("restore");
    let r = fx
        .bx
        .run([
            OsStr::new("--json"),
            OsStr::new("restore"),
            OsStr::new(&id[..8]),
            OsStr::new("--target"),
            target.as_os_str(),
        ])
        .ok();
    let rs = r.json_summary();
    assert_eq!(rs["errors"], 0, "restore summary: {rs}");
    assert_eq!(rs["snapshot_id"], id.as_str(), "restore summary: {rs}");

    let r = fx.bx.run(["--json", "check", "--read-data"]).ok();
    let cs = r.json_summary();
    assert_eq!(cs["ok"], true, "check summary: {cs}");

    let r = fx.bx.run(["--json", "diff", &id, "latest"]).ok();
    let lines = r.json_lines();
    assert_eq!(
        lines.last().map(|v| v["message_type"].clone()),
        Some("statistics".into()),
        "diff --json should end with statistics\n{}",
        r.describe()
    );

    let r = fx.bx.run(["--json", "stats"]).ok();
    assert_eq!(r.json_lines().len(), 1, "stats --json\n{}", r.describe());

    let r = fx.bx.run(["--json", "forget", "--keep-last", "1", "--dry-run"]).ok();
    let decisions = r.json_lines();
    assert_eq!(decisions.len(), 2, "forget --json --dry-run should print one decision per snapshot\n{}", r.describe());
    assert_eq!(fx.bx.snapshots().len(), 2, "a dry run removed snapshots");
}

#[test]
fn non_utf8_file_names_survive_and_json_does_not_break() {
    let tmp = tempfile::Builder::new().prefix("pastiche-roundtrip-bytes-").tempdir().unwrap();
    let src = tmp.path().join("src");
    let odd = src.join(OsStr::from_bytes(b"latin1-caf\xe9.txt"));
    write_bytes(&odd, b"bytes, not UTF-8, in the name\n");
    write_bytes(&src.join("plain.txt"), b"plain\n");
    stamp_distinct_mtimes(&src, 1_500_000_000);
    let expected = manifest(&src);
    let bx = TestBox::init(tmp.path().join("box"));
    bx.backup(&src);

    let target = tmp.path().join("restore");
    bx.restore("latest", &target);
    assert_tree_matches(&expected, &restored_path(&target, &src), "non-UTF-8 names");

    // Text ls shows something for the entry; JSON ls must stay JSON lines
    // (and must not crash on a name JSON strings cannot hold exactly).
    let ls = bx.run(["ls", "latest"]).ok();
    assert_eq!(ls.stdout.lines().count(), 3, "ls\n{}", ls.describe());
    let ls = bx.run(["--json", "ls", "latest"]).ok();
    assert_eq!(ls.json_lines().len(), 3, "ls --json should print one line per entry\n{}", ls.describe());
}

#[test]
fn diff_json_with_non_utf8_names_stays_json() {
    let tmp = tempfile::Builder::new().prefix("pastiche-roundtrip-diffbytes-").tempdir().unwrap();
    let src = tmp.path().join("src");
    write_bytes(&src.join("plain.txt"), b"plain\n");
    let bx = TestBox::init(tmp.path().join("box"));
    let first = bx.backup(&src)["snapshot_id"].as_str().unwrap().to_string();
    write_bytes(&src.join(OsStr::from_bytes(b"added-\xfe.bin")), b"new\n");
    bx.backup(&src);
    let d = bx.run(["diff", &first, "latest"]).ok();
    assert!(d.stdout.contains("added-"), "text diff should show the added file\n{}", d.describe());
    let d = bx.run(["--json", "diff", &first, "latest"]).ok();
    let lines = d.json_lines();
    assert!(
        lines.iter().any(|v| v["modifier"] == "+"),
        "diff --json should report the added file with a non-UTF-8 name\n{}",
        d.describe()
    );
}

/// A backup of a single file (not a directory) restores it under the
/// target like any other path.
#[test]
fn single_file_backup_restores() {
    let tmp = tempfile::Builder::new().prefix("pastiche-roundtrip-onefile-").tempdir().unwrap();
    let file = tmp.path().join("src/only.txt");
    write_bytes(&file, b"a file backed up on its own\n");
    set_times(&file, (1_550_000_000, 42), (1_550_000_000, 0));
    let expected = manifest(&file);
    let bx = TestBox::init(tmp.path().join("box"));
    let s = bx.backup(&file);
    assert_eq!(s["files_new"], 1, "backup of one file: {s}");
    let ls = bx.run(["ls", "latest"]).ok();
    assert_eq!(ls.stdout.trim_end(), file.display().to_string(), "ls of a one-file snapshot\n{}", ls.describe());
    let target = tmp.path().join("restore");
    let r = bx.run([OsStr::new("restore"), OsStr::new("latest"), OsStr::new("--target"), target.as_os_str()]);
    assert_eq!(
        r.code,
        Some(0),
        "restoring a snapshot whose path is a single file fails\n{}\nrestore target now holds: {:?}",
        r.describe(),
        manifest(&target).keys().collect::<Vec<_>>()
    );
    assert_tree_matches(&expected, &restored_path(&target, &file), "single-file restore");
}
