//! A second backup reads only what changed and stores only the chunks around
//! each edit; `diff` names exactly the changes; every snapshot restores to
//! its own state; a backup of an unchanged tree adds and reads nothing.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;

use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const FILES: usize = 200;
const CHANGED: usize = 20;

fn u(v: &serde_json::Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("summary field {key} missing or not a number: {v}"))
}

#[test]
fn second_backup_stores_only_the_edits() {
    let seed = 0x1c2e_3a40_u64;
    println!("seed {seed:#x}");
    let mut rng = StdRng::seed_from_u64(seed);
    let tmp = tempfile::Builder::new().prefix("pastiche-incremental-").tempdir().unwrap();
    let src = tmp.path().join("src");
    // ~200 files of 20-380 KB (~40 MB) in 10 directories.
    let mut files: Vec<PathBuf> = Vec::new();
    for i in 0..FILES {
        let p = src.join(format!("dir{:02}/file{i:03}.bin", i % 10));
        write_random(&p, rng.gen_range(20_000..380_000), &mut rng);
        files.push(p);
    }
    let bx = TestBox::init(tmp.path().join("box"));
    let before = manifest(&src);
    let total: u64 = before.values().filter(|e| matches!(e.kind, Kind::File(_))).map(|e| e.size).sum();
    let s1 = bx.backup(&src);
    assert_eq!(u(&s1, "files_new"), FILES as u64, "first backup: {s1}");
    assert_eq!(u(&s1, "bytes_read"), total, "first backup reads everything: {s1}");
    let id1 = s1["snapshot_id"].as_str().unwrap().to_string();

    // Edit 20 files in the middle (insert or delete 1-16 bytes), delete 2,
    // add 1.
    let mut order: Vec<usize> = (0..FILES).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.gen_range(0..=i));
    }
    let changed: Vec<PathBuf> = order[..CHANGED].iter().map(|&i| files[i].clone()).collect();
    let deleted: Vec<PathBuf> = order[CHANGED..CHANGED + 2].iter().map(|&i| files[i].clone()).collect();
    for (k, p) in changed.iter().enumerate() {
        let mut data = fs::read(p).unwrap();
        let at = data.len() / 2 + rng.gen_range(0..1000);
        let n = rng.gen_range(1..=16);
        if k % 2 == 0 {
            let ins: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
            data.splice(at..at, ins);
        } else {
            data.drain(at..at + n);
        }
        fs::write(p, &data).unwrap();
    }
    for p in &deleted {
        fs::remove_file(p).unwrap();
    }
    let added = src.join("dir03/new-file.bin");
    write_random(&added, 100_000, &mut rng);

    let after = manifest(&src);
    let total2: u64 = after.values().filter(|e| matches!(e.kind, Kind::File(_))).map(|e| e.size).sum();
    let s2 = bx.backup(&src);
    println!("first backup: {s1}\nsecond backup: {s2}");
    let id2 = s2["snapshot_id"].as_str().unwrap().to_string();
    assert_eq!(u(&s2, "files_changed"), CHANGED as u64, "second backup, files_changed: {s2}");
    assert_eq!(u(&s2, "files_new"), 1, "second backup, files_new: {s2}");
    assert_eq!(u(&s2, "files_unmodified"), (FILES - CHANGED - 2) as u64, "second backup, files_unmodified: {s2}");
    // Exactly the changed and new files are read.
    let must_read: u64 = changed.iter().chain([&added]).map(|p| fs::metadata(p).unwrap().len()).sum();
    assert_eq!(
        u(&s2, "bytes_read"),
        must_read,
        "second backup should read exactly the 20 changed files and the new one: {s2}"
    );
    assert_eq!(u(&s2, "total_bytes_processed"), total2, "second backup: {s2}");
    // The edits cost a few chunks each (plus the new file).
    let data_added = u(&s2, "data_added");
    assert!(
        data_added < total / 20,
        "second backup added {data_added} bytes for {CHANGED} small edits and one 100 KB file: \
         more than 5% of the {total}-byte tree, so unchanged chunks were stored again: {s2}"
    );
    assert!(data_added >= 100_000, "second backup added only {data_added} bytes, less than the new file alone: {s2}");

    // diff names exactly these changes.
    let d = bx.run(["--json", "diff", &id1, &id2]).ok();
    let mut got: BTreeSet<(String, PathBuf)> = BTreeSet::new();
    let mut stats = None;
    for v in d.json_lines() {
        match v["message_type"].as_str() {
            Some("change") => {
                got.insert((v["modifier"].as_str().unwrap().to_string(), PathBuf::from(v["path"].as_str().unwrap())));
            }
            Some("statistics") => stats = Some(v),
            _ => panic!("unexpected diff line {v}"),
        }
    }
    let want: BTreeSet<(String, PathBuf)> = changed
        .iter()
        .map(|p| ("M".to_string(), p.clone()))
        .chain(deleted.iter().map(|p| ("-".to_string(), p.clone())))
        .chain([("+".to_string(), added.clone())])
        .collect();
    assert!(
        got == want,
        "diff {id1} {id2} is wrong;\nmissing: {:?}\nunexpected: {:?}",
        want.difference(&got).collect::<Vec<_>>(),
        got.difference(&want).collect::<Vec<_>>()
    );
    let stats = stats.expect("diff --json prints statistics");
    assert_eq!(
        (u(&stats, "added"), u(&stats, "removed"), u(&stats, "modified")),
        (1, 2, CHANGED as u64),
        "diff statistics: {stats}"
    );
    // Text diff: the same, as `M    /path`.
    let d = bx.run(["diff", &id1, &id2]).ok();
    for (mark, p) in &want {
        let line = format!("{mark}    {}", p.display());
        assert!(d.stdout.lines().any(|l| l == line), "text diff lacks the line {line:?}\n{}", d.describe());
    }

    // Each snapshot restores to its own state.
    let t1 = tmp.path().join("restore1");
    bx.restore(&id1[..8], &t1);
    assert_tree_matches(&before, &restored_path(&t1, &src), "restore of the first snapshot");
    let t2 = tmp.path().join("restore2");
    bx.restore(&id2[..8], &t2);
    assert_tree_matches(&after, &restored_path(&t2, &src), "restore of the second snapshot");

    // Nothing changed: nothing read, nothing added.
    let s3 = bx.backup(&src);
    assert_eq!(u(&s3, "data_added"), 0, "third backup of an unchanged tree: {s3}");
    assert_eq!(u(&s3, "chunks_added"), 0, "third backup of an unchanged tree: {s3}");
    assert_eq!(u(&s3, "bytes_read"), 0, "third backup of an unchanged tree: {s3}");
    assert_eq!(u(&s3, "files_new") + u(&s3, "files_changed"), 0, "third backup: {s3}");
    assert_eq!(u(&s3, "files_unmodified"), (FILES - 2 + 1) as u64, "third backup: {s3}");
    let id3 = s3["snapshot_id"].as_str().unwrap().to_string();
    let d = bx.run(["--json", "diff", &id2, &id3]).ok();
    let lines = d.json_lines();
    assert_eq!(lines.len(), 1, "diff of two identical snapshots should list no change\n{}", d.describe());
    bx.check_read_data();
}

/// `backup DIR/`, `backup DIR` and `backup DIR/.` name the same path: the
/// second and third backups find the first one's files unchanged, and the
/// snapshots list one path spelling.
#[test]
fn trailing_slash_names_the_same_path() {
    let tmp = tempfile::Builder::new().prefix("pastiche-incremental-slash-").tempdir().unwrap();
    let src = tmp.path().join("src");
    let mut rng = StdRng::seed_from_u64(5);
    for i in 0..5 {
        write_random(&src.join(format!("f{i}")), 50_000, &mut rng);
    }
    let bx = TestBox::init(tmp.path().join("box"));
    let mut with_slash = src.clone().into_os_string();
    with_slash.push("/");
    let s1 = bx.run([std::ffi::OsStr::new("--json"), "backup".as_ref(), with_slash.as_os_str()]).ok().json_summary();
    assert_eq!(u(&s1, "files_new"), 5, "first backup: {s1}");
    let s2 = bx.backup(&src);
    assert_eq!(
        (u(&s2, "files_unmodified"), u(&s2, "files_new"), u(&s2, "bytes_read")),
        (5, 0, 0),
        "`backup {}` after `backup {}` should find all 5 files unchanged: {s2}",
        src.display(),
        with_slash.to_string_lossy()
    );
    let s3 = bx.backup(&src.join("."));
    assert_eq!(u(&s3, "files_unmodified"), 5, "`backup {}/.`: {s3}", src.display());
    let paths: Vec<serde_json::Value> = bx.snapshots().iter().map(|s| s["paths"].clone()).collect();
    assert!(
        paths.iter().all(|p| *p == paths[0]),
        "the three spellings of one directory gave different snapshot paths: {paths:?}"
    );
}
