//! Disaster recovery against real buddy servers on loopback, including
//! buddies that lie: one serves a forged root record, one an old one.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;

use pastiche_core::session::{BuddyStore, StagedCounts};
use pastiche_core::PublicKey;
use tempfile::TempDir;

use super::*;
use crate::backup::{self, BackupOptions};
use crate::buddy::{admission, BuddyStorage, ServeOptions, Server, Stopper, DEFAULT_QUOTA};
use crate::progress::{Mode, Progress};
use crate::repo::{LockMode, Repo};
use crate::restore::{self, RestoreOptions};
use crate::sync::{self, fetch::LocalThenBuddy};

const PASS: &str = "recovery test passphrase";
const NAME: &str = "lost.example.org";

fn cheap() -> KdfParams {
    KdfParams { memory_kib: 8, iterations: 1, parallelism: 1 }
}

fn quiet() -> Progress {
    Progress::start(Mode::Quiet, "test")
}

/// An appliance buddy served on loopback in a thread.
struct Buddy {
    addr: SocketAddr,
    storage: BuddyStorage,
    stopper: Stopper,
    thread: Option<thread::JoinHandle<anyhow::Result<()>>>,
    dir: TempDir,
}

impl Buddy {
    fn start(name: &str) -> Buddy {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo::init(dir.path(), name, PASS, cheap()).unwrap();
        let storage = BuddyStorage::for_repo(Arc::new(repo), DEFAULT_QUOTA).unwrap();
        let opts = ServeOptions { listen: "127.0.0.1:0".parse().unwrap(), ..ServeOptions::default() };
        let server = Server::bind(storage.clone(), opts).unwrap();
        let addr = server.local_addr().unwrap();
        let stopper = server.stopper();
        let thread = Some(thread::spawn(move || server.run()));
        Buddy { addr, storage, stopper, thread, dir }
    }

    /// Pairs `repo` with this buddy and adds it to its buddy list.
    fn pair(&self, repo: &Repo) {
        let invite = admission::Invite { quota: None, expires: admission::unix_now() + 600, name: "client".into() };
        let code = admission::create(self.dir.path(), &invite).unwrap();
        let mut entry = BuddyEntry { addr: self.addr.to_string(), key: None, epoch: 0, snapshot: None };
        drop(sync::connect_pairing(repo, &mut entry, Some(&code)).unwrap());
        let mut buddies = load_buddies(&repo.dir).unwrap();
        buddies.push(entry);
        save_buddies(&repo.dir, &buddies).unwrap();
    }

    /// What the buddy holds as `client`'s root: (wire epoch, bytes).
    fn root_of(&self, client: &PublicKey) -> (u64, Vec<u8>) {
        let mut h = self.storage.session();
        h.client(client).unwrap();
        let mut buf = vec![0u8; MAX_OBJECT_DATA];
        let (epoch, n) = h.get_root(client, &mut buf).unwrap().expect("a root");
        (epoch, buf[..n].to_vec())
    }

    /// The buddy itself (it is malicious) replaces `client`'s root with
    /// `bytes` in a new committed epoch of its own store.
    fn replace_root(&self, client: &PublicKey, bytes: &[u8]) {
        let (epoch, _) = self.root_of(client);
        let mut h = self.storage.session();
        h.client(client).unwrap();
        let e = epoch + 1;
        h.stage_root(client, e, bytes).unwrap();
        let mut staged = pastiche_core::session::StagingDigest::new();
        staged.root(bytes);
        let counts = StagedCounts { objects: 0, deletes: 0, root: true, digest: staged.finish() };
        assert_eq!(h.prepare(client, e, counts).unwrap(), counts);
        h.apply(client, e).unwrap();
    }
}

impl Drop for Buddy {
    fn drop(&mut self) {
        self.stopper.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A box backed up to two buddies, then lost.
struct Lost {
    tmp: TempDir,
    source: PathBuf,
    key: PublicKey,
    a: Buddy,
    b: Buddy,
    /// A's record from the first sync, before the second snapshot.
    a_first_record: Vec<u8>,
}

fn write_tree(dir: &Path, seed: u32, files: usize) {
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    for i in 0..files {
        let bytes = crate::sample_tree::noise(u64::from(seed) << 32 | i as u64, 30_000 + i * 50_000);
        std::fs::write(dir.join(format!("sub/file{seed}-{i}.bin")), bytes).unwrap();
    }
}

/// Two snapshots; A holds both, B only the first unless `b_gets_both`.
fn lose_a_box(b_gets_both: bool) -> Lost {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("home");
    write_tree(&source, 1, 4);
    let (a, b) = (Buddy::start("a.buddy.test"), Buddy::start("b.buddy.test"));
    let (key, a_first_record);
    {
        let repo = Repo::init(&tmp.path().join("box"), NAME, PASS, cheap()).unwrap();
        key = repo.identity.public_key();
        a.pair(&repo);
        b.pair(&repo);
        let opts = BackupOptions { paths: vec![source.clone()], excludes: vec![], one_file_system: false, threads: 2 };
        backup::run(&repo, &opts, &quiet()).unwrap();
        let report = crate::engine::ship::ship_all(&repo, |_| quiet()).unwrap();
        assert!(report.all_ok(), "{report:?}");
        a_first_record = a.root_of(&key).1;
        write_tree(&source, 2, 2);
        backup::run(&repo, &opts, &quiet()).unwrap();
        let mut buddies = load_buddies(&repo.dir).unwrap();
        let last = if b_gets_both { 2 } else { 1 };
        for entry in &mut buddies[..last] {
            sync::sync_one(&repo, entry, &quiet()).unwrap();
        }
        save_buddies(&repo.dir, &buddies).unwrap();
    }
    std::fs::remove_dir_all(tmp.path().join("box")).unwrap();
    Lost { tmp, source, key, a, b, a_first_record }
}

fn options(dir: &Path, via: &[SocketAddr]) -> RecoverOptions {
    RecoverOptions {
        dir: dir.to_path_buf(),
        name: NAME.into(),
        passphrase: PASS.into(),
        kdf: cheap(),
        via: via.iter().map(|a| a.to_string()).collect(),
    }
}

fn holder<'r>(report: &'r RecoverReport, addr: &SocketAddr) -> &'r HolderReport {
    report.holders.iter().find(|h| h.addr == addr.to_string()).expect("holder asked")
}

/// Restores the latest snapshot of the recovered box from its buddies and
/// compares it with the source.
fn assert_restores_exactly(dir: &Path, source: &Path) {
    let repo = Repo::open(dir, PASS, LockMode::Exclusive).unwrap();
    let root = repo.load_root().unwrap();
    let target = dir.parent().unwrap().join("restored");
    let opts = RestoreOptions { target: target.clone(), include: vec![], threads: 2 };
    let snap = root.snapshots.last().unwrap();
    let summary = restore::run(&repo, snap, &opts, &LocalThenBuddy::new(&repo), &quiet()).unwrap();
    assert_eq!(summary.errors, 0);
    let restored = target.join(source.strip_prefix("/").unwrap());
    let mut names: Vec<_> = std::fs::read_dir(source.join("sub")).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names.len(), 6);
    for n in names {
        let a = std::fs::read(source.join("sub").join(&n)).unwrap();
        let b = std::fs::read(restored.join("sub").join(&n)).unwrap_or_default();
        assert!(a == b, "{n:?} differs after recovery and restore");
    }
}

#[test]
fn recovery_from_the_older_buddy_finds_the_newer_one_and_restores_exactly() {
    let lost = lose_a_box(false);
    let dir = lost.tmp.path().join("rebuilt");
    let report = recover(&options(&dir, &[lost.b.addr]), &NoDiscovery).unwrap();
    assert_eq!(report.public_key, lost.key.to_string(), "the same identity");
    assert_eq!(report.snapshots, 2, "the newest root, from A, which only B's root named");
    let (a, b) = (holder(&report, &lost.a.addr), holder(&report, &lost.b.addr));
    assert_eq!((a.outcome, b.outcome), ("newest", "older"), "{report:?}");
    assert!(b.epoch.unwrap() < a.epoch.unwrap());
    assert!(b.detail.contains("older root"), "{}", b.detail);
    let buddies = load_buddies(&dir).unwrap();
    assert_eq!(buddies.len(), 2);
    assert!(buddies.iter().all(|e| e.key.is_some()), "pinned keys come back from the root");
    assert_restores_exactly(&dir, &lost.source);

    // The recovered box goes on: its next sync to A ships no chunk again,
    // and B catches up.
    let repo = Repo::open(&dir, PASS, LockMode::Exclusive).unwrap();
    let mut buddies = load_buddies(&dir).unwrap();
    let a_entry = buddies.iter_mut().find(|e| e.addr == lost.a.addr.to_string()).unwrap();
    let to_a = sync::sync_one(&repo, a_entry, &quiet()).unwrap();
    assert_eq!((to_a.chunks_sent, to_a.went_back), (0, false), "{to_a:?}");
    assert_eq!(to_a.objects_sent, 0, "metadata fetched from A is known to be there");
    assert!(report.epoch < epoch::last(repo.meta.database().unwrap()).unwrap(), "new records are newer");

    // B missed the second snapshot, whose chunks this box no longer has:
    // they are pulled from A, checked and shipped, and only they (the
    // second snapshot added 110,000 bytes of files; the first, which B
    // holds, 420,000).
    let b_entry = buddies.iter_mut().find(|e| e.addr == lost.b.addr.to_string()).unwrap();
    let to_b = sync::sync_one(&repo, b_entry, &quiet()).unwrap();
    assert!(to_b.chunks_sent > 0 && to_b.bytes_sent > 100_000 && to_b.bytes_sent < 200_000, "{to_b:?}");
    let again = sync::sync_one(&repo, b_entry, &quiet()).unwrap();
    assert_eq!((again.chunks_sent, again.objects_sent), (0, 0), "{again:?}");
    save_buddies(&dir, &buddies).unwrap();
    drop(repo);

    // B alone now restores the newest snapshot.
    let target = lost.tmp.path().join("from-b-alone");
    drop(lost.a);
    let repo = Repo::open(&dir, PASS, LockMode::Exclusive).unwrap();
    let snap = repo.load_root().unwrap().snapshots.last().unwrap().clone();
    let opts = RestoreOptions { target: target.clone(), include: vec![], threads: 2 };
    let summary = restore::run(&repo, &snap, &opts, &LocalThenBuddy::new(&repo), &quiet()).unwrap();
    assert_eq!((summary.files, summary.errors), (6, 0), "{summary:?}");
}

#[test]
fn a_chunk_no_buddy_holds_fails_the_sync_and_is_not_recorded_as_shipped() {
    let lost = lose_a_box(false);
    let dir = lost.tmp.path().join("rebuilt");
    recover(&options(&dir, &[lost.a.addr]), &NoDiscovery).unwrap();
    let repo = Repo::open(&dir, PASS, LockMode::Exclusive).unwrap();
    let mut buddies = load_buddies(&dir).unwrap();
    // A, the only holder of the second snapshot's chunks, is gone.
    let a_addr = lost.a.addr.to_string();
    drop(lost.a);
    let b_entry = buddies.iter_mut().find(|e| e.addr != a_addr).unwrap();
    let b_key = sync::pinned_key(b_entry).unwrap();
    let err = sync::sync_one(&repo, b_entry, &quiet()).unwrap_err();
    assert!(format!("{err:#}").contains("no other buddy could serve it"), "{err:#}");
    // Nothing of the second snapshot is recorded as shipped to B.
    let shipped = sync::state::shipped_chunks(repo.meta.database().unwrap(), &b_key).unwrap();
    let root = repo.load_root().unwrap();
    let first_only = crate::meta::walk::entries(&repo, &root.snapshots[1]).unwrap();
    for e in first_only.iter().filter(|e| e.path.to_string_lossy().contains("file2-")) {
        for h in &e.handles {
            let id = pastiche_core::Handle(*h).chunk_id();
            assert!(!shipped.contains(&id), "{} recorded as shipped to B", e.path.display());
        }
    }
}

#[test]
fn a_forged_root_is_refused_and_the_genuine_one_taken() {
    let lost = lose_a_box(false);
    // B's owner forges a record under our header, claiming a far newer epoch.
    let forger = Identity::from_seed([0x66; 32]).unwrap();
    let node = NodeId::from_name(NAME);
    let body = RootBody { epoch: 1_000, name: NAME.into(), buddies: vec![], root: vec![0; 64] };
    let mut forged = record::seal(&forger, &node, &ObjectKey([1; 32]), &body);
    forged[12..44].copy_from_slice(lost.key.as_bytes());
    lost.b.replace_root(&lost.key, &forged);

    let dir = lost.tmp.path().join("rebuilt");
    let report = recover(&options(&dir, &[lost.b.addr, lost.a.addr]), &NoDiscovery).unwrap();
    let b = holder(&report, &lost.b.addr);
    assert_eq!(b.outcome, "forged", "{report:?}");
    assert!(b.detail.contains("epoch 1000") && b.detail.contains("signature"), "{}", b.detail);
    assert_eq!(holder(&report, &lost.a.addr).outcome, "newest");
    assert_eq!(report.snapshots, 2);
    assert_restores_exactly(&dir, &lost.source);

    // With the forger alone, nothing is recovered and nothing is written.
    let alone = lost.tmp.path().join("alone");
    let err = recover(&options(&alone, &[lost.b.addr]), &NoDiscovery).unwrap_err();
    assert!(format!("{err:#}").contains("every root record served was refused"), "{err:#}");
    assert!(!alone.join(crate::repo::CONFIG_FILE).exists());
}

#[test]
fn a_rolled_back_root_is_reported_and_the_newest_taken() {
    let lost = lose_a_box(true);
    // A rolls back: it serves its first record again, under a new wire epoch.
    lost.a.replace_root(&lost.key, &lost.a_first_record);
    let dir = lost.tmp.path().join("rebuilt");
    let report = recover(&options(&dir, &[lost.a.addr]), &NoDiscovery).unwrap();
    let (a, b) = (holder(&report, &lost.a.addr), holder(&report, &lost.b.addr));
    assert_eq!((a.outcome, b.outcome), ("older", "newest"), "{report:?}");
    assert!(a.detail.contains("older root") && a.detail.contains("rolled back"), "{}", a.detail);
    assert_eq!(report.snapshots, 2, "the rollback did not win");
    assert_restores_exactly(&dir, &lost.source);

    // The old record relabelled with a newer epoch fails its signature.
    let mut relabelled = lost.a_first_record.clone();
    relabelled[4..12].copy_from_slice(&999u64.to_be_bytes());
    lost.a.replace_root(&lost.key, &relabelled);
    let again = lost.tmp.path().join("again");
    let report = recover(&options(&again, &[lost.a.addr, lost.b.addr]), &NoDiscovery).unwrap();
    assert_eq!(holder(&report, &lost.a.addr).outcome, "forged", "{report:?}");
    assert_eq!(holder(&report, &lost.b.addr).outcome, "newest");
    assert_eq!(report.snapshots, 2);
}

#[test]
fn a_wrong_passphrase_or_name_is_told_apart_from_no_root() {
    let lost = lose_a_box(false);
    let dir = lost.tmp.path().join("rebuilt");
    let mut wrong = options(&dir, &[lost.a.addr, lost.b.addr]);
    wrong.passphrase = "not the passphrase".into();
    let err = recover(&wrong, &NoDiscovery).unwrap_err();
    assert_eq!(crate::exit::code_of(&err), WRONG_PASSPHRASE, "{err:#}");
    let msg = format!("{err:#}");
    assert!(msg.contains("passphrase or the name is wrong"), "{msg}");
    assert!(msg.contains(&lost.a.addr.to_string()) && msg.contains(&lost.b.addr.to_string()), "{msg}");
    let mut wrong_name = options(&dir, &[lost.a.addr]);
    wrong_name.name = "LOST.example.org".into();
    assert_eq!(crate::exit::code_of(&recover(&wrong_name, &NoDiscovery).unwrap_err()), WRONG_PASSPHRASE);
    // Nothing listening there: no root found, and the holder asked is named.
    let nobody = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let err = recover(&options(&dir, &[nobody]), &NoDiscovery).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("no root found") && msg.contains(&nobody.to_string()), "{msg}");
    assert!(!dir.join(crate::repo::CONFIG_FILE).exists(), "nothing written");
}

/// Sends the beacon of each `(tcp address, key)` to `to` every 100 ms, as
/// daemons do on the LAN, until dropped.
struct Beacons {
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Beacons {
    fn start(to: SocketAddr, boxes: Vec<(SocketAddr, PublicKey)>) -> Beacons {
        use pastiche_core::wire::beacon::{Beacon, Role};
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        thread::spawn(move || {
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                for (addr, key) in &boxes {
                    let b = Beacon { role: Role::Appliance, tcp_port: addr.port(), buddy_key: key.0 };
                    let _ = socket.send_to(&b.encode(), to);
                }
                // Noise on the port: not beacons.
                let _ = socket.send_to(b"PSTB-not-a-beacon", to);
                thread::sleep(std::time::Duration::from_millis(100));
            }
        });
        Beacons { stop }
    }
}

impl Drop for Beacons {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

fn free_udp_port() -> SocketAddr {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

#[test]
fn without_via_the_holders_heard_on_the_lan_are_asked() {
    let lost = lose_a_box(false);
    // B and a box that never paired with the lost one beacon on the LAN.
    let stranger = Buddy::start("stranger.buddy.test");
    let listen = free_udp_port();
    let key_of = |b: &Buddy| b.storage.own_key();
    let beacons = Beacons::start(listen, vec![(lost.b.addr, key_of(&lost.b)), (stranger.addr, key_of(&stranger))]);
    let lan = lan::LanBeacons::new(listen, std::time::Duration::from_millis(1_500));
    let dir = lost.tmp.path().join("rebuilt");
    let report = recover(&options(&dir, &[]), &lan).unwrap();
    drop(beacons);
    assert_eq!(report.snapshots, 2, "A, named by B's record, served the newest: {report:?}");
    let asked: Vec<&str> = report.holders.iter().map(|h| h.outcome).collect();
    assert_eq!(holder(&report, &lost.b.addr).outcome, "older", "{asked:?}");
    assert_eq!(holder(&report, &lost.a.addr).outcome, "newest", "{asked:?}");
    assert_eq!(holder(&report, &stranger.addr).outcome, "refused", "{asked:?}");
    assert!(report.discovery.as_deref().unwrap().contains("heard 2 boxes"), "{:?}", report.discovery);
    assert_restores_exactly(&dir, &lost.source);

    // Only the stranger on the LAN: the error names it and what was heard.
    let beacons = Beacons::start(listen, vec![(stranger.addr, key_of(&stranger))]);
    let alone = lost.tmp.path().join("alone");
    let err = recover(&options(&alone, &[]), &lan::LanBeacons::new(listen, std::time::Duration::from_millis(800)))
        .unwrap_err();
    drop(beacons);
    let msg = format!("{err:#}");
    assert!(msg.contains("heard 1 box") && msg.contains(&stranger.addr.to_string()), "{msg}");
    // Nobody on the LAN: nothing to ask, and the error says where it listened.
    let err = recover(&options(&alone, &[]), &lan::LanBeacons::new(listen, std::time::Duration::from_millis(300)))
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("heard 0 boxes") && msg.contains("--via"), "{msg}");
    assert!(!alone.join(crate::repo::CONFIG_FILE).exists(), "nothing written");
}

#[test]
fn a_chunk_a_buddy_serves_damaged_is_taken_from_another() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("home");
    write_tree(&source, 3, 3);
    let (a, b) = (Buddy::start("a.buddy.test"), Buddy::start("b.buddy.test"));
    let repo = Repo::init(&tmp.path().join("box"), NAME, PASS, cheap()).unwrap();
    a.pair(&repo);
    b.pair(&repo);
    let opts = BackupOptions { paths: vec![source.clone()], excludes: vec![], one_file_system: false, threads: 2 };
    backup::run(&repo, &opts, &quiet()).unwrap();
    let root = repo.load_root().unwrap();
    let mut handles = Vec::new();
    for e in crate::meta::walk::entries(&repo, root.snapshots.last().unwrap()).unwrap() {
        handles.extend(e.handles.iter().map(|h| pastiche_core::Handle(*h)));
    }
    // B holds other bytes under one chunkId (uploaded first under it: the
    // offer then finds it "held"); it serves them as that chunk.
    let poisoned = handles[handles.len() / 2];
    let mut entries = load_buddies(&repo.dir).unwrap();
    let mut conn = sync::connect(&repo, &mut entries[1]).unwrap();
    let mut garbage = Vec::new();
    repo.store.get_into(&handles[0].chunk_id(), &mut garbage).unwrap();
    conn.put_chunk(poisoned.chunk_id(), &garbage).unwrap();
    conn.flush().unwrap();
    drop(conn);
    assert!(crate::engine::ship::ship_all(&repo, |_| quiet()).unwrap().all_ok());

    // From B alone the chunk cannot be had: B serves it damaged.
    let entries = load_buddies(&repo.dir).unwrap();
    let (ea, eb) = (entries[0].clone(), entries[1].clone());
    let b_alone = sync::pull::Puller::new(&repo.identity, repo.node, std::slice::from_ref(&eb));
    let err = b_alone.pull(&[poisoned], |_, _| Ok(())).expect_err("B alone fails");
    assert!(format!("{err:#}").contains("served it damaged"), "{err:#}");
    drop(b_alone);
    // With A too, every chunk comes back genuine.
    let puller = sync::pull::Puller::new(&repo.identity, repo.node, &[eb.clone(), ea.clone()]);
    puller
        .pull(&handles, |i, p| {
            assert_eq!(p.sealed, repo.store.get(&handles[i].chunk_id()).unwrap(), "chunk {i} is the genuine one");
            Ok(())
        })
        .unwrap();
}

/// Every file under `dir`, by path relative to it, with its bytes.
fn files_under(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                out.insert(path.strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

/// The objects a box holds (its root aside), counted as the buddy stores
/// them: each in its parts.
fn parts_held(repo: &Repo) -> u64 {
    let root = repo.root_ref().name;
    let mut parts = 0;
    for name in repo.meta.names().unwrap().into_iter().filter(|n| *n != root) {
        parts += sync::split::part_count(repo.meta.get(&name).unwrap().unwrap().len()) as u64;
    }
    parts
}

/// What `forget` and `prune` free on the box is freed on its buddy by the
/// next sync: the commit carries signed deletes of the objects and chunks
/// no kept snapshot reaches, so the buddy's objects for the box come down to
/// exactly the kept ones and its bytes for the box go down; a box rebuilt
/// from that buddy alone then restores the kept snapshot exactly.
#[test]
fn what_forget_and_prune_free_is_deleted_on_the_buddy_and_the_rest_recovers_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("home");
    let buddy = Buddy::start("a.buddy.test");
    let sync_all = |repo: &Repo| -> Vec<sync::SyncReport> {
        let mut buddies = load_buddies(&repo.dir).unwrap();
        let reports = buddies.iter_mut().map(|b| sync::sync_one(repo, b, &quiet()).unwrap()).collect();
        save_buddies(&repo.dir, &buddies).unwrap();
        reports
    };
    let key;
    {
        let repo = Repo::init(&tmp.path().join("box"), NAME, PASS, cheap()).unwrap();
        key = repo.identity.public_key();
        buddy.pair(&repo);
        let opts = BackupOptions { paths: vec![source.clone()], excludes: vec![], one_file_system: false, threads: 2 };
        // Two snapshots: the second drops the first one's directory.
        write_tree(&source.join("old"), 1, 4);
        write_tree(&source.join("kept"), 2, 3);
        backup::run(&repo, &opts, &quiet()).unwrap();
        sync_all(&repo);
        std::fs::remove_dir_all(source.join("old")).unwrap();
        write_tree(&source.join("new"), 3, 2);
        backup::run(&repo, &opts, &quiet()).unwrap();
        sync_all(&repo);
        let (objects_before, object_bytes_before) = buddy.storage.client_objects(&key).unwrap();
        let used_before = buddy.storage.client_record(&key).unwrap().unwrap().used_bytes;
        assert_eq!(objects_before, parts_held(&repo), "before: the buddy holds what the box holds");

        let policy = crate::retention::KeepPolicy { last: Some(1), ..Default::default() };
        assert_eq!(crate::engine::snapshots::forget(&repo, &policy, false).unwrap().removed, 1);
        let pruned = crate::prune::run(&repo).unwrap();
        assert!(pruned.objects_deleted > 0 && pruned.chunks_released > 0, "{pruned:?}");
        let report = sync_all(&repo).remove(0);
        assert!(report.objects_deleted > 0 && report.deletes > 0, "{report:?}");

        let (objects_after, object_bytes_after) = buddy.storage.client_objects(&key).unwrap();
        let used_after = buddy.storage.client_record(&key).unwrap().unwrap().used_bytes;
        assert_eq!(objects_after, parts_held(&repo), "after: exactly the kept snapshot's objects are left");
        assert!(objects_after < objects_before, "{objects_after} objects left of {objects_before}");
        assert!(object_bytes_after < object_bytes_before, "{object_bytes_after} of {object_bytes_before} bytes");
        assert!(used_after < used_before, "the box's usage on the buddy went from {used_before} to {used_after}");
        // Nothing is left to delete.
        assert_eq!(sync_all(&repo).remove(0).objects_deleted, 0);
    }
    std::fs::remove_dir_all(tmp.path().join("box")).unwrap();

    let dir = tmp.path().join("rebuilt");
    let report = recover(&options(&dir, &[buddy.addr]), &NoDiscovery).unwrap();
    assert_eq!(report.snapshots, 1);
    let repo = Repo::open(&dir, PASS, LockMode::Exclusive).unwrap();
    let root = repo.load_root().unwrap();
    let target = tmp.path().join("restored");
    let opts = RestoreOptions { target: target.clone(), include: vec![], threads: 2 };
    let summary = restore::run(&repo, &root.snapshots[0], &opts, &LocalThenBuddy::new(&repo), &quiet()).unwrap();
    assert_eq!(summary.errors, 0);
    let restored = files_under(&target.join(source.strip_prefix("/").unwrap()));
    let expected = files_under(&source);
    assert_eq!(restored.len(), 5);
    assert!(restored == expected, "the kept snapshot restored from the buddy differs from the source");
}
