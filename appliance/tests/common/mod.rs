//! Helpers shared by the integration tests of the `pastiche` binary: running
//! it with a test passphrase, building source trees, and describing and
//! comparing trees entry by entry.
//!
//! Each test file uses only some of these helpers.
#![allow(dead_code)]

pub mod buddy;
pub mod buddy_db;
pub mod daemon;
pub mod secure;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{CString, OsStr, OsString};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use rand::RngCore;
use serde_json::Value;
use sha1::{Digest, Sha1};

/// The binary under test.
pub const BUILT_BIN: &str = env!("CARGO_BIN_EXE_pastiche");

/// The binary under test: `PASTICHE_BIN` when set (a private copy, for
/// worktrees that share one cargo target directory), else the one cargo built.
pub fn bin() -> String {
    std::env::var("PASTICHE_BIN").unwrap_or_else(|_| BUILT_BIN.to_string())
}
/// The passphrase every test box is created with.
pub const PASSWORD: &str = "correct horse battery staple";

/// A `pastiche` command line with a clean, cheap-KDF environment.
pub fn command(data: &Path, password: &str) -> Command {
    let mut c = Command::new(bin());
    test_env(&mut c, data, password);
    c
}

/// Adds `--data DIR` and the test environment to a command that runs the binary.
fn test_env(c: &mut Command, data: &Path, password: &str) {
    c.arg("--data")
        .arg(data)
        .env("PASTICHE_PASSWORD", password)
        .env("PASTICHE_KDF_MIB", "8")
        .env_remove("PASTICHE_DATA")
        .env_remove("PASTICHE_PASSWORD_FILE")
        // Tests send nothing onto the host's network: no LAN beacons from
        // test daemons (the overlay is tested in network namespaces).
        .env("PASTICHE_OVERLAY", "off")
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null());
}

/// The outcome of one run of the binary.
pub struct Run {
    /// The command line, for messages.
    pub cmdline: String,
    /// Exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Runs `cmd` to completion. Fails the test if the binary panicked,
    /// whatever its exit code.
    pub fn of(mut cmd: Command) -> Run {
        let cmdline = format!("{cmd:?}");
        let out: Output = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmdline}: {e}"));
        let run = Run {
            cmdline,
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        assert!(
            !run.stderr.contains("panicked"),
            "the binary panicked instead of reporting an error:\n{}",
            run.describe()
        );
        run
    }

    /// Runs `cmd` like [`Run::of`], but fails the test if it has not ended
    /// within `limit` (it is killed first): a watchdog against a hang,
    /// generous, not a timing assertion.
    pub fn watched(mut cmd: Command, limit: std::time::Duration) -> Run {
        let cmdline = format!("{cmd:?}");
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run {cmdline}: {e}"));
        let drain = |mut r: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = r.read_to_end(&mut bytes);
                String::from_utf8_lossy(&bytes).into_owned()
            })
        };
        let stdout = drain(Box::new(child.stdout.take().expect("piped")));
        let stderr = drain(Box::new(child.stderr.take().expect("piped")));
        let deadline = std::time::Instant::now() + limit;
        let status = loop {
            if let Some(status) = child.try_wait().expect("waiting for the command") {
                break Some(status);
            }
            if std::time::Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let run = Run {
            cmdline,
            code: status.and_then(|s| s.code()),
            stdout: stdout.join().unwrap_or_default(),
            stderr: stderr.join().unwrap_or_default(),
        };
        assert!(status.is_some(), "still running after {limit:?} (a hang): killed\n{}", run.describe());
        assert!(!run.stderr.contains("panicked"), "the binary panicked:\n{}", run.describe());
        run
    }

    /// Everything about the run, for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "command: {}\nexit code: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmdline,
            self.code,
            tail(&self.stdout, 6000),
            tail(&self.stderr, 6000)
        )
    }

    /// Asserts exit code 0.
    pub fn ok(self) -> Run {
        self.code_is(0)
    }

    /// Asserts the exit code.
    pub fn code_is(self, code: i32) -> Run {
        assert_eq!(self.code, Some(code), "expected exit code {code}, got {:?}\n{}", self.code, self.describe());
        self
    }

    /// Every stdout line parsed as JSON (fails on any line that is not).
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .enumerate()
            .map(|(i, line)| {
                serde_json::from_str(line).unwrap_or_else(|e| {
                    panic!("stdout line {} is not JSON ({e}): {line:?}\n{}", i + 1, self.describe())
                })
            })
            .collect()
    }

    /// The last JSON line, which must have `"message_type":"summary"`.
    pub fn json_summary(&self) -> Value {
        let lines = self.json_lines();
        let last = lines.last().unwrap_or_else(|| panic!("no JSON output at all\n{}", self.describe())).clone();
        assert_eq!(last["message_type"], "summary", "the last JSON line is not the summary\n{}", self.describe());
        last
    }
}

fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// A box in a data directory, opened with [`PASSWORD`].
pub struct TestBox {
    /// The data directory.
    pub data: PathBuf,
    /// A command prefix (like `setpriv ...`) to run the binary through.
    pub wrapper: Vec<OsString>,
    /// Environment variables set for every command of this box.
    pub env: Vec<(String, String)>,
}

impl TestBox {
    /// Handle on a data directory, without creating anything.
    pub fn at(data: PathBuf) -> TestBox {
        TestBox { data, wrapper: Vec::new(), env: Vec::new() }
    }

    /// Creates a box in `data`, named after the directory: a box's identity
    /// derives from its passphrase and name, so boxes of one test need
    /// names of their own.
    pub fn init(data: PathBuf) -> TestBox {
        let b = TestBox::at(data);
        b.run(["init", "--name", &TestBox::name_for(&b.data)]).ok();
        b
    }

    /// The name [`TestBox::init`] gives the box in `data`.
    pub fn name_for(data: &Path) -> String {
        let dir = data.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
        format!("{dir}.test.example.org")
    }

    /// The command for `args`, with the test passphrase.
    pub fn cmd<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd_with_password(PASSWORD, args)
    }

    /// The command for `args`, with another passphrase.
    pub fn cmd_with_password<I, S>(&self, password: &str, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = if self.wrapper.is_empty() {
            command(&self.data, password)
        } else {
            let mut c = Command::new(&self.wrapper[0]);
            c.args(&self.wrapper[1..]).arg(bin());
            test_env(&mut c, &self.data, password);
            c
        };
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c.args(args);
        c
    }

    /// This box, storing its own chunks sealed one by one rather than in
    /// groups (`PASTICHE_GROUP_CHUNKS=off`): for tests that damage
    /// particular chunks' records.
    pub fn sealing_alone(mut self) -> TestBox {
        self.env.push(("PASTICHE_GROUP_CHUNKS".into(), "off".into()));
        self
    }

    /// This box, keeping its own chunks in compressed groups, whatever the
    /// default (`PASTICHE_GROUP_CHUNKS=on`).
    pub fn grouping_chunks(mut self) -> TestBox {
        self.env.push(("PASTICHE_GROUP_CHUNKS".into(), "on".into()));
        self
    }

    /// Runs `args` to completion.
    pub fn run<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Run::of(self.cmd(args))
    }

    /// `backup --json PATH`, asserting exit 0; returns the summary line.
    pub fn backup(&self, path: &Path) -> Value {
        let r = self.run([OsStr::new("--json"), OsStr::new("backup"), path.as_os_str()]).ok();
        r.json_summary()
    }

    /// `restore SNAP --target TARGET`, asserting exit 0.
    pub fn restore(&self, snap: &str, target: &Path) -> Run {
        self.run([OsStr::new("restore"), OsStr::new(snap), OsStr::new("--target"), target.as_os_str()]).ok()
    }

    /// The snapshots, oldest first, as `snapshots --json` prints them.
    pub fn snapshots(&self) -> Vec<Value> {
        self.run(["--json", "snapshots"]).ok().json_lines()
    }

    /// `check --read-data`, asserting exit 0.
    pub fn check_read_data(&self) -> Run {
        self.run(["check", "--read-data"]).ok()
    }

    /// Total size of the pack files.
    pub fn packs_bytes(&self) -> u64 {
        dir_bytes(&self.data.join("store/packs"))
    }

    /// The pack files and their sizes.
    pub fn packs(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        let Ok(rd) = fs::read_dir(self.data.join("store/packs")) else {
            return out;
        };
        for e in rd {
            let e = e.expect("listing packs");
            out.insert(e.file_name().to_string_lossy().into_owned(), e.metadata().expect("pack metadata").len());
        }
        out
    }
}

/// Total size of the regular files directly in `dir` (0 if it is missing).
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(rd) = fs::read_dir(dir) else { return 0 };
    rd.filter_map(|e| e.ok()).filter_map(|e| e.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum()
}

/// Where a restore under `target` puts the absolute source path `src`.
pub fn restored_path(target: &Path, src: &Path) -> PathBuf {
    target.join(src.strip_prefix("/").unwrap_or(src))
}

// ---------------------------------------------------------------------------
// Building trees

/// Writes `len` random bytes to `path` (creating parent directories).
pub fn write_random(path: &Path, len: usize, rng: &mut impl RngCore) {
    let mut data = vec![0u8; len];
    rng.fill_bytes(&mut data);
    write_bytes(path, &data);
}

/// Writes `data` to `path` (creating parent directories).
pub fn write_bytes(path: &Path, data: &[u8]) {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
    }
    let mut f = File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    f.write_all(data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Random lines of text, about `len` bytes.
pub fn random_text(len: usize, rng: &mut impl RngCore) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "backup", "pastiche", "chunk", "snapshot", "restore", "the", "of", "a", "box", "buddy", "peer", "disk",
        "spare", "data", "file", "tree", "and", "is", "with", "to",
    ];
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        let w = WORDS[(rng.next_u32() as usize) % WORDS.len()];
        out.extend_from_slice(w.as_bytes());
        out.push(if rng.next_u32().is_multiple_of(12) { b'\n' } else { b' ' });
    }
    out.truncate(len);
    out
}

fn c_path(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).expect("no NUL in test paths")
}

/// Sets the access and modification times of `path` without following a
/// symlink (works on files, directories and symlinks).
pub fn set_times(path: &Path, mtime: (i64, i64), atime: (i64, i64)) {
    let times = [
        libc::timespec { tv_sec: atime.0 as libc::time_t, tv_nsec: atime.1 as _ },
        libc::timespec { tv_sec: mtime.0 as libc::time_t, tv_nsec: mtime.1 as _ },
    ];
    let c = c_path(path);
    // SAFETY: a valid C string and a two-element timespec array.
    let rc = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
    assert_eq!(rc, 0, "utimensat {}: {}", path.display(), std::io::Error::last_os_error());
}

/// `chmod path mode`.
pub fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {:o} {}: {e}", mode, path.display()));
}

/// Creates a FIFO.
pub fn mkfifo(path: &Path) {
    let c = c_path(path);
    // SAFETY: a valid C string.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o644) };
    assert_eq!(rc, 0, "mkfifo {}: {}", path.display(), std::io::Error::last_os_error());
}

/// True when running as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Gives every entry under `root` a distinct mtime with nanoseconds
/// (`base + i*97 s`, `i*7919+13 ns`): files and symlinks first, then
/// directories deepest first, so setting them sticks.
pub fn stamp_distinct_mtimes(root: &Path, base: i64) {
    let mut entries: Vec<(PathBuf, bool)> = Vec::new();
    walk(root, &mut |p, m| entries.push((p.to_path_buf(), m.is_dir())));
    entries.sort();
    let mut i = 0i64;
    let mut stamp = |p: &Path| {
        i += 1;
        let mtime = (base + i * 97, (i * 7919 + 13) % 1_000_000_000);
        set_times(p, mtime, (base + i * 97 + 5, 123_456_789));
    };
    for (p, _) in entries.iter().filter(|(_, d)| !d) {
        stamp(p);
    }
    let mut dirs: Vec<&PathBuf> = entries.iter().filter(|(_, d)| *d).map(|(p, _)| p).collect();
    dirs.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for d in dirs {
        stamp(d);
    }
}

/// Visits `root` and everything under it (not following symlinks), parents
/// before children, in name order.
pub fn walk(root: &Path, f: &mut dyn FnMut(&Path, &fs::Metadata)) {
    let m = fs::symlink_metadata(root).unwrap_or_else(|e| panic!("lstat {}: {e}", root.display()));
    f(root, &m);
    if m.is_dir() {
        let mut children: Vec<PathBuf> = fs::read_dir(root)
            .unwrap_or_else(|e| panic!("list {}: {e}", root.display()))
            .map(|e| e.expect("dir entry").path())
            .collect();
        children.sort();
        for c in children {
            walk(&c, f);
        }
    }
}

/// Copies a directory tree (files, dirs, symlinks), for making damaged
/// copies of a box.
pub fn copy_tree(from: &Path, to: &Path) {
    let m = fs::symlink_metadata(from).expect("lstat");
    if m.is_dir() {
        fs::create_dir_all(to).expect("mkdir");
        for e in fs::read_dir(from).expect("list") {
            let e = e.expect("entry");
            copy_tree(&e.path(), &to.join(e.file_name()));
        }
    } else if m.file_type().is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(from).expect("readlink"), to).expect("symlink");
    } else {
        fs::copy(from, to).expect("copy");
    }
}

/// Copies a box's data directory as a disk image would bring it back:
/// like [`copy_tree`], but leaving out sockets (a daemon's `control.sock`
/// left behind by a killed `serve`), which have no content to copy and which
/// the next daemon binds afresh.
pub fn copy_box_data(from: &Path, to: &Path) {
    let m = fs::symlink_metadata(from).expect("lstat");
    if m.is_dir() {
        fs::create_dir_all(to).expect("mkdir");
        for e in fs::read_dir(from).expect("list") {
            let e = e.expect("entry");
            copy_box_data(&e.path(), &to.join(e.file_name()));
        }
    } else if std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()) {
        // Nothing to copy.
    } else {
        copy_tree(from, to);
    }
}

// ---------------------------------------------------------------------------
// Describing and comparing trees

/// What an entry is, with its content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A regular file and the SHA-1 of its content.
    File(String),
    /// A directory.
    Dir,
    /// A symlink and its target.
    Symlink(OsString),
    /// Anything else (fifo, socket, device).
    Other(u32),
}

/// One entry of a tree, as `lstat` and its content describe it.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Type and content.
    pub kind: Kind,
    /// Permission bits (`mode & 0o7777`).
    pub perm: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, seconds and nanoseconds.
    pub mtime: (i64, i64),
    /// Inode and device, to find hard links.
    pub ino: (u64, u64),
    /// Link count.
    pub nlink: u64,
    /// 512-byte blocks allocated.
    pub blocks: u64,
}

/// A tree: entries by path relative to its root (`""` is the root).
pub type Manifest = BTreeMap<PathBuf, Entry>;

/// SHA-1 of a file's content, in hex.
pub fn file_sha1(path: &Path) -> String {
    let mut f = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut h = Sha1::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex::encode(h.finalize())
}

/// Describes every entry under `root`.
pub fn manifest(root: &Path) -> Manifest {
    let mut out = Manifest::new();
    walk(root, &mut |p, m| {
        let ft = m.file_type();
        let kind = if ft.is_file() {
            Kind::File(file_sha1(p))
        } else if ft.is_dir() {
            Kind::Dir
        } else if ft.is_symlink() {
            Kind::Symlink(fs::read_link(p).expect("readlink").into_os_string())
        } else {
            Kind::Other(m.mode() & libc::S_IFMT)
        };
        let rel = p.strip_prefix(root).expect("under root").to_path_buf();
        out.insert(
            rel,
            Entry {
                kind,
                perm: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
                size: m.size(),
                mtime: (m.mtime(), m.mtime_nsec()),
                ino: (m.dev(), m.ino()),
                nlink: m.nlink(),
                blocks: m.blocks(),
            },
        );
    });
    out
}

/// Every difference between an expected tree and an actual one, one line
/// each: missing and extra entries, type, content, size, permissions,
/// owner, mtime (to the nanosecond), symlink target, and hard links (paths
/// that share an inode in `expected` must share one in `actual`, and only
/// those).
pub fn differences(expected: &Manifest, actual: &Manifest) -> Vec<String> {
    let mut diffs = Vec::new();
    for (path, e) in expected {
        let shown = if path.as_os_str().is_empty() { "<root>".to_string() } else { path.display().to_string() };
        let Some(a) = actual.get(path) else {
            diffs.push(format!("{shown}: missing from the restore"));
            continue;
        };
        if e.kind != a.kind {
            let what = match (&e.kind, &a.kind) {
                (Kind::File(_), Kind::File(_)) => "content differs (SHA-1)".to_string(),
                (Kind::Symlink(x), Kind::Symlink(y)) => {
                    format!("symlink target {x:?}, restored {y:?}")
                }
                (x, y) => format!("type {x:?}, restored as {y:?}"),
            };
            diffs.push(format!("{shown}: {what}"));
            continue;
        }
        if e.perm != a.perm {
            diffs.push(format!("{shown}: mode {:o}, restored {:o}", e.perm, a.perm));
        }
        if (e.uid, e.gid) != (a.uid, a.gid) {
            diffs.push(format!("{shown}: owner {}:{}, restored {}:{}", e.uid, e.gid, a.uid, a.gid));
        }
        if !matches!(e.kind, Kind::Dir) && e.size != a.size {
            diffs.push(format!("{shown}: size {}, restored {}", e.size, a.size));
        }
        if e.mtime != a.mtime {
            diffs.push(format!(
                "{shown}: mtime {}.{:09}, restored {}.{:09}",
                e.mtime.0, e.mtime.1, a.mtime.0, a.mtime.1
            ));
        }
    }
    for path in actual.keys().filter(|p| !expected.contains_key(*p)) {
        diffs.push(format!("{}: in the restore but not expected", path.display()));
    }
    diffs.extend(hard_link_differences(expected, actual));
    diffs
}

/// Groups of paths that share an inode (files with more than one link).
pub fn link_groups(m: &Manifest) -> BTreeSet<BTreeSet<PathBuf>> {
    let mut by_inode: BTreeMap<(u64, u64), BTreeSet<PathBuf>> = BTreeMap::new();
    for (p, e) in m {
        if matches!(e.kind, Kind::File(_)) {
            by_inode.entry(e.ino).or_default().insert(p.clone());
        }
    }
    by_inode.into_values().filter(|g| g.len() > 1).collect()
}

fn hard_link_differences(expected: &Manifest, actual: &Manifest) -> Vec<String> {
    // Only the paths present on both sides can be judged.
    let both = |m: &Manifest| -> BTreeSet<BTreeSet<PathBuf>> {
        link_groups(m)
            .into_iter()
            .map(|g| {
                g.into_iter().filter(|p| expected.contains_key(p) && actual.contains_key(p)).collect::<BTreeSet<_>>()
            })
            .filter(|g| g.len() > 1)
            .collect()
    };
    let (e, a) = (both(expected), both(actual));
    let mut diffs = Vec::new();
    for g in e.difference(&a) {
        diffs.push(format!("hard links {g:?} should share one inode in the restore, restored groups are {a:?}"));
    }
    for g in a.difference(&e) {
        diffs.push(format!("{g:?} share an inode in the restore but are not hard links in the source"));
    }
    diffs
}

/// Asserts that `actual_root` holds exactly the tree `expected` describes.
pub fn assert_tree_matches(expected: &Manifest, actual_root: &Path, context: &str) {
    let actual = manifest(actual_root);
    let diffs = differences(expected, &actual);
    assert!(
        diffs.is_empty(),
        "{context}: the restored tree at {} differs from the source in {} ways:\n  {}",
        actual_root.display(),
        diffs.len(),
        diffs.join("\n  ")
    );
}

/// The entries of `m` at or under `sub` (relative), re-rooted at `sub`.
pub fn sub_manifest(m: &Manifest, sub: &Path) -> Manifest {
    m.iter().filter_map(|(p, e)| p.strip_prefix(sub).ok().map(|rest| (rest.to_path_buf(), e.clone()))).collect()
}
