//! The buddy store and daemon end to end: real boxes in temporary
//! directories, `serve` on 127.0.0.1 (port 0) in a thread, and
//! `ClientSession`s driven over the secure channel on real `TcpStream`s.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use pastiche_core::session::{BuddyStore, ClientEvent, ClientSession};
use pastiche_core::wire::{
    encode_frame, DeleteList, ErrorCode, IdList, Message, SignedMessage, Welcome, MAX_IDS_PER_MESSAGE,
};
use pastiche_core::{ChunkId, Identity, NodeId, PublicKey, Signature};
use tempfile::TempDir;

use super::names::stored_name;
use pastiche_core::testing::conformance::Harness;

use super::*;
use crate::repo::keys::KdfParams;
use crate::repo::{LockMode, Repo};
use crate::sync::conn::SecureStream;

const PASS: &str = "buddy test passphrase";

fn new_box(dir: &Path) -> Repo {
    // A name of its own: the identity derives from passphrase and name.
    let name = format!("buddy-{:08x}.test", rand::random::<u32>());
    Repo::init(dir, &name, PASS, KdfParams { memory_kib: 8, iterations: 1, parallelism: 1 }).unwrap()
}

fn reopen(dir: &Path, quota: u64) -> BuddyStorage {
    let repo = Repo::open(dir, PASS, LockMode::Exclusive).unwrap();
    BuddyStorage::for_repo(Arc::new(repo), quota).unwrap()
}

fn identity(seed: u8) -> Identity {
    Identity::from_seed([seed; 32]).unwrap()
}

fn key(seed: u8) -> PublicKey {
    identity(seed).public_key()
}

/// `n` distinct sealed-looking chunks of various sizes.
fn chunks(seed: u8, n: usize) -> Vec<(ChunkId, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let mut id = [seed; 20];
            id[..8].copy_from_slice(&(i as u64).to_be_bytes());
            (ChunkId(id), vec![seed ^ i as u8; 100 + i * 37 % 3000])
        })
        .collect()
}

fn total(chunks: &[(ChunkId, Vec<u8>)]) -> u64 {
    chunks.iter().map(|(_, d)| d.len() as u64).sum()
}

/// Log lines captured from a server.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<String>>>);

impl Logs {
    fn sink(&self) -> LogSink {
        let lines = self.0.clone();
        Arc::new(move |line: &str| lines.lock().unwrap().push(line.to_string()))
    }

    /// Whether one line contains every needle.
    fn has(&self, needles: &[&str]) -> bool {
        self.0.lock().unwrap().iter().any(|l| needles.iter().all(|n| l.contains(n)))
    }

    /// Waits a little for a line (logs of a closing session come after its last reply).
    fn wait_for(&self, needles: &[&str]) -> bool {
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if self.has(needles) {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn dump(&self) -> String {
        self.0.lock().unwrap().join("\n")
    }
}

/// A server running in a thread over a fresh box.
struct Running {
    addr: SocketAddr,
    storage: BuddyStorage,
    stopper: Stopper,
    thread: Option<thread::JoinHandle<anyhow::Result<()>>>,
    logs: Logs,
    box_key: PublicKey,
    box_seed: [u8; 32],
    _dir: TempDir,
}

impl Running {
    fn start(quota: u64, max_sessions: usize) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let repo = new_box(dir.path());
        let (box_key, box_seed) = (repo.identity.public_key(), repo.identity.seed());
        let storage = BuddyStorage::for_repo(Arc::new(repo), quota).unwrap();
        // Every test key is admitted, as if paired (the box's own is refused).
        for seed in 1..=64u8 {
            if let Ok(id) = Identity::from_seed([seed; 32]) {
                let _ = storage.enroll(&id.public_key(), "test", None);
            }
        }
        let logs = Logs::default();
        let opts =
            ServeOptions { listen: "127.0.0.1:0".parse().unwrap(), default_quota: quota, max_sessions, min_free: 0 };
        let server = Server::bind(storage.clone(), opts).unwrap().with_log(logs.sink());
        let addr = server.local_addr().unwrap();
        let stopper = server.stopper();
        let thread = Some(thread::spawn(move || server.run()));
        Running { addr, storage, stopper, thread, logs, box_key, box_seed, _dir: dir }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stopper.stop();
        if let Some(t) = self.thread.take() {
            let r = t.join();
            if !thread::panicking() {
                r.unwrap().unwrap();
            }
        }
    }
}

/// Owned copy of a client event, for assertions.
#[derive(Debug, PartialEq, Eq)]
enum Ev {
    Welcome(Welcome),
    Need(Vec<bool>),
    Flushed(u32),
    Chunk(Vec<u8>),
    Staged(u64),
    Committed(u64),
    Object(Vec<u8>),
    Root(u64, Vec<u8>),
    Dropped,
    Refused(ErrorCode),
    Other,
}

impl Ev {
    fn of(e: ClientEvent<'_>, offered: usize) -> Ev {
        match e {
            ClientEvent::Welcome(w) => Ev::Welcome(w),
            ClientEvent::Need(n) => Ev::Need((0..offered).map(|i| n.lacks(i)).collect()),
            ClientEvent::Flushed(n) => Ev::Flushed(n),
            ClientEvent::Chunk { sealed, .. } => Ev::Chunk(sealed.to_vec()),
            ClientEvent::Staged(e) => Ev::Staged(e),
            ClientEvent::Committed(e) => Ev::Committed(e),
            ClientEvent::Object { data, .. } => Ev::Object(data.to_vec()),
            ClientEvent::Root { epoch, data } => Ev::Root(epoch, data.to_vec()),
            ClientEvent::Dropped => Ev::Dropped,
            ClientEvent::Refused { code, .. } => Ev::Refused(code),
            _ => Ev::Other,
        }
    }
}

/// A secure channel to the server as `id` (its key unpinned).
fn secure(addr: SocketAddr, id: &Identity) -> SecureStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    SecureStream::handshake(stream, id, None).unwrap()
}

/// Reads one frame's payload through the channel.
fn read_payload(link: &mut SecureStream) -> anyhow::Result<Vec<u8>> {
    let mut payload = vec![0u8; pastiche_core::wire::MAX_FRAME_PAYLOAD];
    let n = link.read_frame(&mut payload)?;
    payload.truncate(n);
    Ok(payload)
}

/// Reads the error frame a refused connection gets, then expects the close.
fn expect_error_then_close(link: &mut SecureStream) -> (ErrorCode, String) {
    let payload = read_payload(link).unwrap();
    let Ok(Message::Error(e)) = Message::decode(&payload) else { panic!("expected an error frame, got {payload:?}") };
    let mut rest = [0u8; 1];
    assert!(link.read_exact(&mut rest).is_err(), "expected the connection to close");
    (e.code, e.message.to_string())
}

/// A client over the secure channel.
struct Client {
    link: SecureStream,
    session: ClientSession,
    out: Vec<u8>,
    offered: usize,
}

impl Client {
    fn connect(addr: SocketAddr, seed: u8) -> (Client, Welcome) {
        Client::connect_as(addr, identity(seed))
    }

    fn connect_as(addr: SocketAddr, id: Identity) -> (Client, Welcome) {
        match Client::try_connect(addr, id) {
            (c, Ev::Welcome(w)) => (c, w),
            (_, e) => panic!("expected welcome, got {e:?}"),
        }
    }

    /// The channel handshake and the hello; the buddy's answer to the proof.
    fn try_connect(addr: SocketAddr, id: Identity) -> (Client, Ev) {
        let link = secure(addr, &id);
        let session = ClientSession::new(id, NodeId::from_name("client.test"), [9; 32], [3; 16]);
        let mut c = Client { link, session, out: vec![0; 2 * MAX_IDS_PER_MESSAGE * 20 + 70_000], offered: 0 };
        let n = c.session.start(&mut c.out).unwrap();
        c.send(n);
        let payload = read_payload(&mut c.link).unwrap();
        let n = match c.session.handle(&payload, &mut c.out).unwrap() {
            ClientEvent::SendProof(n) => n,
            e => panic!("expected a challenge, got {e:?}"),
        };
        c.send(n);
        let answer = c.recv();
        (c, answer)
    }

    fn send(&mut self, n: usize) {
        self.link.send(&self.out[..n]).unwrap();
    }

    fn recv(&mut self) -> Ev {
        let payload = read_payload(&mut self.link).unwrap();
        Ev::of(self.session.handle(&payload, &mut self.out).unwrap(), self.offered)
    }

    fn request(&mut self, n: usize) -> Ev {
        self.send(n);
        self.recv()
    }

    /// Offers `chunks`, puts the lacked ones, flushes. Returns the lacks
    /// and every answer to the flush (quota refusals first).
    fn upload(&mut self, chunks: &[(ChunkId, Vec<u8>)]) -> (Vec<bool>, Vec<Ev>) {
        let mut packed = vec![0u8; MAX_IDS_PER_MESSAGE * 20];
        let ids = IdList::pack(chunks.iter().map(|(id, _)| id.0), &mut packed).unwrap();
        self.offered = chunks.len();
        let n = self.session.offer(ids, &mut self.out).unwrap();
        let Ev::Need(lacks) = self.request(n) else { panic!("expected need") };
        for ((id, data), lack) in chunks.iter().zip(&lacks) {
            if *lack {
                let n = self.session.put_chunk(*id, data, &mut self.out).unwrap();
                self.send(n);
            }
        }
        let n = self.session.flush(&mut self.out).unwrap();
        self.send(n);
        let mut answers = Vec::new();
        loop {
            let ev = self.recv();
            let done = matches!(ev, Ev::Flushed(_));
            answers.push(ev);
            if done {
                return (lacks, answers);
            }
        }
    }

    /// Stages and commits an epoch; returns the answers to the commit.
    fn commit(&mut self, epoch: u64, objects: &[([u8; 20], Vec<u8>)], deletes: &[[u8; 20]], root: &[u8]) -> Vec<Ev> {
        for (name, data) in objects {
            let n = self.session.put_object(epoch, *name, data, &mut self.out).unwrap();
            self.send(n);
        }
        if !deletes.is_empty() {
            let mut packed = vec![0u8; MAX_IDS_PER_MESSAGE * 20];
            let ids = IdList::pack(deletes.iter().copied(), &mut packed).unwrap();
            let n = self.session.delete_list(epoch, ids, &mut self.out).unwrap();
            self.send(n);
        }
        let n = self.session.put_root(epoch, root, &mut self.out).unwrap();
        self.send(n);
        let staged = pastiche_core::testing::MemStaging {
            objects: objects.iter().cloned().collect(),
            deletes: deletes.iter().copied().collect(),
            root: Some(root.to_vec()),
        };
        let n = self
            .session
            .commit(epoch, objects.len() as u32, deletes.len() as u32, staged.digest(), &mut self.out)
            .unwrap();
        let first = self.request(n);
        if !matches!(first, Ev::Staged(_)) {
            return vec![first];
        }
        vec![first, self.recv()]
    }

    /// Expects the buddy to have closed the connection.
    fn expect_closed(&mut self) {
        let mut b = [0u8; 1];
        assert!(self.link.read_exact(&mut b).is_err(), "expected the connection to be closed");
    }
}

fn objects(seed: u8) -> Vec<([u8; 20], Vec<u8>)> {
    (0..3u8).map(|i| ([seed.wrapping_add(i); 20], vec![i ^ seed; 200 + usize::from(i) * 50])).collect()
}

#[test]
fn upload_commit_and_read_back_over_tcp() {
    let srv = Running::start(u64::MAX, 8);
    let cs = chunks(1, 60);
    let objs = objects(1);
    {
        let (mut c, w) = Client::connect(srv.addr, 5);
        assert_eq!((w.committed_epoch, w.staged_epoch, w.used_bytes), (0, 0, 0));
        let (lacks, answers) = c.upload(&cs);
        assert!(lacks.iter().all(|l| *l));
        assert_eq!(answers, vec![Ev::Flushed(60)]);
        assert_eq!(c.commit(1, &objs, &[], b"root one"), vec![Ev::Staged(1), Ev::Committed(1)]);
    }

    let (mut c, w) = Client::connect(srv.addr, 5);
    let meta: u64 = objs.iter().map(|(_, d)| d.len() as u64).sum::<u64>() + b"root one".len() as u64;
    assert_eq!((w.committed_epoch, w.staged_epoch, w.used_bytes), (1, 0, total(&cs) + meta), "chunks and metadata");
    let n = c.session.get_root(&mut c.out).unwrap();
    assert_eq!(c.request(n), Ev::Root(1, b"root one".to_vec()));
    for (name, data) in &objs {
        let n = c.session.get_object(*name, &mut c.out).unwrap();
        assert_eq!(c.request(n), Ev::Object(data.clone()));
    }
    for (id, data) in &cs {
        let n = c.session.get_chunk(*id, &mut c.out).unwrap();
        assert_eq!(c.request(n), Ev::Chunk(data.clone()));
    }
    let n = c.session.get_chunk(ChunkId([0xee; 20]), &mut c.out).unwrap();
    assert_eq!(c.request(n), Ev::Refused(ErrorCode::NotFound));
    let n = c.session.get_object([0xee; 20], &mut c.out).unwrap();
    assert_eq!(c.request(n), Ev::Refused(ErrorCode::NotFound));
    // The session goes on after NotFound.
    let n = c.session.get_root(&mut c.out).unwrap();
    assert_eq!(c.request(n), Ev::Root(1, b"root one".to_vec()));

    let me = hex::encode(&key(5).0[..8]);
    assert!(srv.logs.has(&[&me, "authenticated"]), "{}", srv.logs.dump());
    assert!(srv.logs.has(&[&me, "committed epoch 1"]), "{}", srv.logs.dump());
    for (id, data) in &cs {
        assert_eq!(srv.storage.chunks().refcount(&key(5), &stored_name(id, data)).unwrap(), 1);
    }
}

#[test]
fn a_second_client_with_the_same_chunks_stores_nothing_new() {
    let srv = Running::start(u64::MAX, 8);
    let cs = chunks(2, 40);
    let (mut a, _) = Client::connect(srv.addr, 5);
    a.upload(&cs);
    assert_eq!(a.commit(1, &objects(1), &[], b"a"), vec![Ev::Staged(1), Ev::Committed(1)]);
    let before = srv.storage.chunks().stats().unwrap();

    let (mut b, _) = Client::connect(srv.addr, 6);
    let (lacks, answers) = b.upload(&cs);
    assert!(lacks.iter().all(|l| *l), "offers answer from the asker's own chunks only (no oracle)");
    assert_eq!(answers, vec![Ev::Flushed(40)]);
    // Offering again changes nothing: references are sets.
    b.upload(&cs);
    assert_eq!(b.commit(1, &objects(2), &[], b"b"), vec![Ev::Staged(1), Ev::Committed(1)]);

    let after = srv.storage.chunks().stats().unwrap();
    assert_eq!((after.chunks, after.stored_bytes), (before.chunks, before.stored_bytes));
    for (id, data) in &cs {
        let stored = stored_name(id, data);
        assert_eq!(srv.storage.chunks().refcount(&key(5), &stored).unwrap(), 1);
        assert_eq!(srv.storage.chunks().refcount(&key(6), &stored).unwrap(), 1);
    }
    let b_rec = srv.storage.client_record(&key(6)).unwrap().unwrap();
    let meta: u64 = objects(2).iter().map(|(_, d)| d.len() as u64).sum::<u64>() + 1;
    assert_eq!(b_rec.used_bytes, total(&cs) + meta, "a shared chunk is charged to every owner");

    // B reads the shared chunks, but not a chunk only A owns.
    let n = b.session.get_chunk(cs[7].0, &mut b.out).unwrap();
    assert_eq!(b.request(n), Ev::Chunk(cs[7].1.clone()));
    let only_a = chunks(3, 1);
    a.upload(&only_a);
    let n = b.session.get_chunk(only_a[0].0, &mut b.out).unwrap();
    assert_eq!(b.request(n), Ev::Refused(ErrorCode::NotFound));
}

#[test]
fn quota_is_enforced_per_put() {
    let srv = Running::start(1000, 8);
    let (mut c, w) = Client::connect(srv.addr, 5);
    assert_eq!(w.quota_bytes, 1000);
    let cs = vec![(ChunkId([1; 20]), vec![1u8; 800]), (ChunkId([2; 20]), vec![2u8; 800])];
    let (_, answers) = c.upload(&cs);
    assert_eq!(answers, vec![Ev::Refused(ErrorCode::QuotaExceeded), Ev::Flushed(1)]);
    assert!(srv.storage.chunks().contains(&stored_name(&cs[0].0, &cs[0].1)).unwrap());
    assert!(!srv.storage.chunks().contains(&stored_name(&cs[1].0, &cs[1].1)).unwrap());
    // The session goes on, and the account shows the usage.
    let n = c.session.get_chunk(cs[0].0, &mut c.out).unwrap();
    assert_eq!(c.request(n), Ev::Chunk(cs[0].1.clone()));
    drop(c);
    let (_, w) = Client::connect(srv.addr, 5);
    assert_eq!(w.used_bytes, 800);
    assert!(srv.logs.has(&["refused: QuotaExceeded"]), "{}", srv.logs.dump());
}

#[test]
fn forged_delete_list_is_refused_logged_and_changes_nothing() {
    let srv = Running::start(u64::MAX, 8);
    let cs = chunks(4, 20);
    let (mut c, _) = Client::connect(srv.addr, 5);
    c.upload(&cs);
    assert_eq!(c.commit(1, &objects(1), &[], b"root"), vec![Ev::Staged(1), Ev::Committed(1)]);
    drop(c);

    // Signed by another key, sent on client 5's session.
    let (mut c, _) = Client::connect(srv.addr, 5);
    let mut packed = vec![0u8; 20 * cs.len()];
    let ids = IdList::pack(cs.iter().map(|(id, _)| id.0), &mut packed).unwrap();
    let mut m = DeleteList { epoch: 2, ids, signature: Signature([0; 64]) };
    m.sign(&identity(66), &srv.box_key, [0; 16]);
    let n = encode_frame(&Message::DeleteList(m), &mut c.out).unwrap();
    assert_eq!(c.request(n), Ev::Refused(ErrorCode::BadSignature));
    c.expect_closed();
    let me = hex::encode(&key(5).0[..8]);
    assert!(srv.logs.wait_for(&[&me, "refused: BadSignature"]), "{}", srv.logs.dump());

    // Signed by the client but for another buddy: refused too.
    let (mut c, _) = Client::connect(srv.addr, 5);
    let mut m = DeleteList { epoch: 2, ids, signature: Signature([0; 64]) };
    m.sign(&identity(5), &key(77), [0; 16]);
    let n = encode_frame(&Message::DeleteList(m), &mut c.out).unwrap();
    assert_eq!(c.request(n), Ev::Refused(ErrorCode::BadSignature));
    c.expect_closed();

    for (id, data) in &cs {
        assert_eq!(srv.storage.chunks().refcount(&key(5), &stored_name(id, data)).unwrap(), 1);
    }
    let rec = srv.storage.client_record(&key(5)).unwrap().unwrap();
    assert_eq!((rec.committed_epoch, rec.staged_epoch), (1, 0));
    let (mut c, _) = Client::connect(srv.addr, 5);
    let n = c.session.get_root(&mut c.out).unwrap();
    assert_eq!(c.request(n), Ev::Root(1, b"root".to_vec()));
}

#[test]
fn replayed_epochs_are_refused() {
    let srv = Running::start(u64::MAX, 8);
    let cs = chunks(5, 10);
    let (mut c, _) = Client::connect(srv.addr, 5);
    c.upload(&cs);
    assert_eq!(c.commit(1, &objects(1), &[], b"one"), vec![Ev::Staged(1), Ev::Committed(1)]);
    assert_eq!(c.commit(2, &objects(2), &[cs[0].0 .0], b"two"), vec![Ev::Staged(2), Ev::Committed(2)]);
    drop(c);

    // A correctly signed delete list for an epoch already committed.
    let (mut c, _) = Client::connect(srv.addr, 5);
    let mut packed = vec![0u8; 20 * cs.len()];
    let ids = IdList::pack(cs.iter().map(|(id, _)| id.0), &mut packed).unwrap();
    let n = c.session.delete_list(2, ids, &mut c.out).unwrap();
    assert_eq!(c.request(n), Ev::Refused(ErrorCode::Replayed));
    c.expect_closed();
    // A whole earlier commit sent again.
    let (mut c, _) = Client::connect(srv.addr, 5);
    assert_eq!(c.commit(1, &objects(1), &[], b"one"), vec![Ev::Refused(ErrorCode::Replayed)]);
    assert!(srv.logs.wait_for(&["refused: Replayed"]), "{}", srv.logs.dump());

    let stored = |i: usize| stored_name(&cs[i].0, &cs[i].1);
    assert_eq!(srv.storage.chunks().refcount(&key(5), &stored(0)).unwrap(), 0, "released by epoch 2");
    for i in 1..cs.len() {
        assert_eq!(srv.storage.chunks().refcount(&key(5), &stored(i)).unwrap(), 1);
    }
    let (mut c, w) = Client::connect(srv.addr, 5);
    assert_eq!(w.committed_epoch, 2);
    let n = c.session.get_root(&mut c.out).unwrap();
    assert_eq!(c.request(n), Ev::Root(2, b"two".to_vec()));
}

/// What a commit of these objects, deletes and root announces.
fn staged_counts(
    objects: &[([u8; 20], &[u8])],
    deletes: &[[u8; 20]],
    root: &[u8],
) -> pastiche_core::session::StagedCounts {
    let staging = pastiche_core::testing::MemStaging {
        objects: objects.iter().map(|(n, d)| (*n, d.to_vec())).collect(),
        deletes: deletes.iter().copied().collect(),
        root: Some(root.to_vec()),
    };
    pastiche_core::session::StagedCounts {
        objects: staging.objects.len() as u32,
        deletes: staging.deletes.len() as u32,
        root: true,
        digest: staging.digest(),
    }
}

#[test]
fn recover_applies_a_prepared_epoch_and_discards_unprepared_staging() {
    let dir = tempfile::tempdir().unwrap();
    drop(new_box(dir.path()));
    let me = key(5);
    let cs = chunks(6, 5);
    {
        let storage = reopen(dir.path(), u64::MAX);
        storage.enroll(&me, "test", None).unwrap();
        let mut h = storage.session();
        h.client(&me).unwrap();
        for (id, data) in &cs {
            h.put_chunk(&me, id, data).unwrap();
        }
        assert_eq!(h.flush().unwrap(), 5);
        h.stage_object(&me, 1, &[1; 20], b"object A").unwrap();
        h.stage_root(&me, 1, b"root 1").unwrap();
        let want = staged_counts(&[([1; 20], b"object A")], &[], b"root 1");
        assert_eq!(h.prepare(&me, 1, want).unwrap(), want);
        h.apply(&me, 1).unwrap();

        // Epoch 2 is prepared (Staged would be sent), then the buddy dies.
        h.stage_object(&me, 2, &[2; 20], b"object B").unwrap();
        h.stage_object(&me, 2, &[1; 20], b"object A v2").unwrap();
        let mut packed = [0u8; 20];
        h.stage_deletes(&me, 2, IdList::pack([cs[0].0 .0], &mut packed).unwrap()).unwrap();
        h.stage_root(&me, 2, b"root 2").unwrap();
        let want = staged_counts(&[([2; 20], b"object B"), ([1; 20], b"object A v2")], &[cs[0].0 .0], b"root 2");
        assert_eq!(h.prepare(&me, 2, want).unwrap(), want);
    }

    let storage = reopen(dir.path(), u64::MAX);
    let rec = storage.client_record(&me).unwrap().unwrap();
    assert_eq!((rec.committed_epoch, rec.staged_epoch), (1, 2));
    let report = storage.recover().unwrap();
    assert_eq!(report, BuddyRecovery { applied: vec![(me, 2)], discarded: vec![] });
    let check_epoch_2 = |storage: &BuddyStorage| {
        let mut h = storage.session();
        let rec = h.client(&me).unwrap().unwrap();
        assert_eq!((rec.committed_epoch, rec.staged_epoch), (2, 0));
        let mut out = vec![0u8; 70_000];
        assert_eq!(h.get_root(&me, &mut out).unwrap(), Some((2, 6)));
        assert_eq!(&out[..6], b"root 2");
        let n = h.get_object(&me, &[1; 20], &mut out).unwrap().unwrap();
        assert_eq!(&out[..n], b"object A v2");
        let n = h.get_object(&me, &[2; 20], &mut out).unwrap().unwrap();
        assert_eq!(&out[..n], b"object B");
        assert_eq!(storage.chunks().refcount(&me, &stored_name(&cs[0].0, &cs[0].1)).unwrap(), 0);
        assert_eq!(h.get_chunk(&me, &cs[0].0, &mut out).unwrap(), None, "released chunks are not served");
        for (id, data) in &cs[1..] {
            assert_eq!(storage.chunks().refcount(&me, &stored_name(id, data)).unwrap(), 1);
            let n = h.get_chunk(&me, id, &mut out).unwrap().unwrap();
            assert_eq!(&out[..n], &data[..]);
        }
        h
    };
    let mut h = check_epoch_2(&storage);
    // Applying again is harmless.
    h.apply(&me, 2).unwrap();
    assert_eq!(storage.recover().unwrap(), BuddyRecovery::default());
    drop(h);
    check_epoch_2(&storage);

    // A crash after apply released the deletes but before its transaction:
    // recovery releases again (nothing to do) and commits the rest.
    {
        let mut h = storage.session();
        h.client(&me).unwrap();
        let mut packed = [0u8; 20];
        h.stage_deletes(&me, 3, IdList::pack([cs[1].0 .0], &mut packed).unwrap()).unwrap();
        h.stage_root(&me, 3, b"root 3").unwrap();
        let want = staged_counts(&[], &[cs[1].0 .0], b"root 3");
        assert_eq!(h.prepare(&me, 3, want).unwrap(), want);
        storage.chunks().release(&me, &[stored_name(&cs[1].0, &cs[1].1)]).unwrap();
    }
    drop(storage);
    let storage = reopen(dir.path(), u64::MAX);
    assert_eq!(storage.recover().unwrap().applied, vec![(me, 3)]);
    assert_eq!(storage.chunks().refcount(&me, &stored_name(&cs[1].0, &cs[1].1)).unwrap(), 0);
    assert_eq!(storage.chunks().refcount(&me, &stored_name(&cs[2].0, &cs[2].1)).unwrap(), 1);

    // Unprepared staging (flushed, so durable) is discarded whole.
    {
        let mut h = storage.session();
        h.client(&me).unwrap();
        h.stage_object(&me, 4, &[1; 20], b"half").unwrap();
        h.stage_root(&me, 4, b"root 4").unwrap();
        h.flush().unwrap();
        assert_eq!(storage.client_record(&me).unwrap().unwrap().staged_epoch, 4);
    }
    drop(storage);
    let storage = reopen(dir.path(), u64::MAX);
    assert_eq!(storage.recover().unwrap(), BuddyRecovery { applied: vec![], discarded: vec![(me, 4)] });
    let mut h = storage.session();
    let rec = h.client(&me).unwrap().unwrap();
    assert_eq!((rec.committed_epoch, rec.staged_epoch), (3, 0));
    let mut out = vec![0u8; 70_000];
    assert_eq!(h.get_root(&me, &mut out).unwrap(), Some((3, 6)));
    let n = h.get_object(&me, &[1; 20], &mut out).unwrap().unwrap();
    assert_eq!(&out[..n], b"object A v2");
}

#[test]
fn drop_all_releases_everything_and_cannot_be_replayed() {
    let srv = Running::start(u64::MAX, 8);
    let cs = chunks(7, 10);
    let (mut a, _) = Client::connect(srv.addr, 5);
    a.upload(&cs);
    assert_eq!(a.commit(1, &objects(1), &[], b"a"), vec![Ev::Staged(1), Ev::Committed(1)]);
    let (mut b, _) = Client::connect(srv.addr, 6);
    b.upload(&cs[..5]);

    let n = a.session.drop_all(2, &mut a.out).unwrap();
    assert_eq!(a.request(n), Ev::Dropped);
    for (i, (id, data)) in cs.iter().enumerate() {
        let stored = stored_name(id, data);
        assert_eq!(srv.storage.chunks().refcount(&key(5), &stored).unwrap(), 0);
        assert_eq!(srv.storage.chunks().refcount(&key(6), &stored).unwrap(), u32::from(i < 5), "B keeps its own");
    }
    let n = a.session.get_root(&mut a.out).unwrap();
    assert_eq!(a.request(n), Ev::Refused(ErrorCode::NotFound));
    let n = a.session.drop_all(2, &mut a.out).unwrap();
    assert_eq!(a.request(n), Ev::Refused(ErrorCode::Replayed));
    let rec = srv.storage.client_record(&key(5)).unwrap().unwrap();
    assert_eq!((rec.committed_epoch, rec.used_bytes), (2, 0));
}

#[test]
fn bad_frames_close_only_their_own_session() {
    let srv = Running::start(u64::MAX, 8);
    let (mut good, _) = Client::connect(srv.addr, 5);
    good.upload(&chunks(8, 5));

    let raw = |bytes: &[u8]| {
        let mut s = secure(srv.addr, &identity(40));
        s.send(bytes).unwrap();
        s.flush().unwrap();
        s
    };
    // A 10 MB length header.
    assert_eq!(expect_error_then_close(&mut raw(&(10_000_000u32).to_be_bytes())).0, ErrorCode::TooLarge);

    // Random garbage (its first four bytes read as a huge length).
    let mut junk = vec![0xde, 0xad, 0xbe, 0xef];
    junk.extend(crate::sample_tree::noise(0x1234_5678, 4000));
    assert_eq!(expect_error_then_close(&mut raw(&junk)).0, ErrorCode::TooLarge);

    // A well-framed payload of an unknown kind.
    assert_eq!(expect_error_then_close(&mut raw(&[0, 0, 0, 5, 200, 1, 2, 3, 4])).0, ErrorCode::BadFrame);

    // A request before the hello.
    assert_eq!(expect_error_then_close(&mut raw(&[0, 0, 0, 1, 13])).0, ErrorCode::NotAuthenticated);

    // The good session never noticed.
    let more = chunks(9, 5);
    let (lacks, answers) = good.upload(&more);
    assert!(lacks.iter().all(|l| *l));
    assert_eq!(answers, vec![Ev::Flushed(5)]);
    assert_eq!(good.commit(1, &objects(1), &[], b"fine"), vec![Ev::Staged(1), Ev::Committed(1)]);
    assert!(srv.logs.wait_for(&["refused: TooLarge", "bad frame"]), "{}", srv.logs.dump());
    assert!(srv.logs.wait_for(&["refused: BadFrame"]), "{}", srv.logs.dump());
}

#[test]
fn excess_connections_are_told_busy() {
    let srv = Running::start(u64::MAX, 1);
    let (first, _) = Client::connect(srv.addr, 5);
    let (mut second, answer) = Client::try_connect(srv.addr, identity(6));
    assert_eq!(answer, Ev::Refused(ErrorCode::Internal));
    second.expect_closed();
    assert!(srv.logs.wait_for(&["refused: busy"]), "{}", srv.logs.dump());
    drop(first);
    // Once the first session has ended, the next is served.
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, answer) = Client::try_connect(srv.addr, identity(6));
        if matches!(answer, Ev::Welcome(_)) {
            break;
        }
        assert_eq!(answer, Ev::Refused(ErrorCode::Internal));
        assert!(Instant::now() < until, "the slot was never freed");
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_box_own_key_is_not_a_client() {
    let srv = Running::start(u64::MAX, 8);
    let own = Identity::from_seed(srv.box_seed).unwrap();
    let mut c = Client {
        link: secure(srv.addr, &own),
        session: ClientSession::new(
            Identity::from_seed(srv.box_seed).unwrap(),
            NodeId::from_name("x"),
            [1; 32],
            [0; 16],
        ),
        out: vec![0; 4096],
        offered: 0,
    };
    let n = c.session.start(&mut c.out).unwrap();
    c.send(n);
    let payload = read_payload(&mut c.link).unwrap();
    let ClientEvent::SendProof(n) = c.session.handle(&payload, &mut c.out).unwrap() else { panic!("no challenge") };
    c.send(n);
    assert_eq!(c.recv(), Ev::Refused(ErrorCode::NotAuthenticated), "the box's own key is never admitted");
    c.expect_closed();
}

#[test]
fn concurrent_clients_share_chunks() {
    let srv = Running::start(u64::MAX, 8);
    let shared = chunks(10, 30);
    let addr = srv.addr;
    let workers: Vec<_> = (0..4u8)
        .map(|i| {
            let shared = shared.clone();
            thread::spawn(move || {
                let mut mine = chunks(20 + i, 20);
                mine.extend(shared);
                let (mut c, _) = Client::connect(addr, 30 + i);
                let (_, answers) = c.upload(&mine);
                assert!(matches!(answers[..], [Ev::Flushed(_)]));
                assert_eq!(c.commit(1, &objects(i), &[], &[i; 40]), vec![Ev::Staged(1), Ev::Committed(1)]);
                let n = c.session.get_root(&mut c.out).unwrap();
                assert_eq!(c.request(n), Ev::Root(1, vec![i; 40]));
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let stats = srv.storage.chunks().stats().unwrap();
    assert_eq!(stats.chunks, 30 + 4 * 20, "shared chunks are stored once");
    for (id, data) in &shared {
        let owners = srv.storage.chunks().owners(&stored_name(id, data)).unwrap();
        assert_eq!(owners.len(), 4);
        assert!(owners.iter().all(|(_, n)| *n == 1), "client references are sets");
    }
    let committed = srv.storage.clients().unwrap().into_iter().filter(|c| c.record.committed_epoch == 1).count();
    assert_eq!(committed, 4);
}

/// The core's store conformance suite on the appliance's store: a fresh
/// session handle per session, and a restart drops every handle and the
/// storage, reopens it and runs its recovery.
struct Appliance {
    dir: TempDir,
    own_key: PublicKey,
    storage: Option<BuddyStorage>,
    handle: Option<BuddyHandle>,
}

impl Appliance {
    fn new() -> Appliance {
        let dir = tempfile::tempdir().unwrap();
        let own_key = identity(99).public_key();
        let mut h = Appliance { dir, own_key, storage: None, handle: None };
        h.restart();
        h
    }
}

impl pastiche_core::testing::conformance::Harness for Appliance {
    type Store = BuddyHandle;
    fn store(&mut self) -> &mut BuddyHandle {
        self.handle = Some(self.storage.as_ref().expect("open").session());
        self.handle.as_mut().expect("just set")
    }
    fn invite(&mut self, code: &str, quota: u64) {
        let invite = super::admission::Invite { quota: Some(quota), expires: u64::MAX, name: code.into() };
        super::admission::create_code(self.dir.path(), code, &invite).unwrap();
    }
    fn restart(&mut self) {
        self.handle = None;
        self.storage = None;
        let chunks = Arc::new(crate::store::ChunkStore::open(self.dir.path().join("chunks")).unwrap());
        let storage = BuddyStorage::open(self.dir.path(), chunks, self.own_key, u64::MAX).unwrap();
        storage.recover().unwrap();
        self.storage = Some(storage);
    }
}

#[test]
fn the_appliance_store_conforms() {
    pastiche_core::testing::conformance::run_all(Appliance::new);
}

/// A session whose frame never ended (a panic in the session machine)
/// lets go of its client's bucket when it is dropped: another session of
/// the client runs, not waits for good.
#[test]
fn a_dropped_session_lets_go_of_its_clients_bucket() {
    let dir = tempfile::tempdir().unwrap();
    drop(new_box(dir.path()));
    let me = key(5);
    let storage = reopen(dir.path(), u64::MAX);
    storage.enroll(&me, "test", None).unwrap();
    // At the lowest rate the bucket holds less than one frame's hold.
    storage.set_work_rate(0);
    let (mut first, mut second) = (storage.session(), storage.session());
    first.client(&me).unwrap();
    second.client(&me).unwrap();
    let now = std::time::Instant::now();
    first.begin_frame(now).unwrap();
    assert!(second.begin_frame(now).is_err(), "two frames of one client ran at once");
    drop(first);
    second.begin_frame(now).expect("the dropped session's hold is gone");
    second.end_frame(now);
}
