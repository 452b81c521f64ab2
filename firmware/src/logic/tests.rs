//! Host tests of the logic: the chunk store across reboots and power cuts,
//! the beacon and the boot command line.

extern crate std;
use std::vec;
use std::vec::Vec;

use pastiche_core::seal::ChunkId;
use pastiche_core::session::{BuddyStore, PutOutcome, StagedCounts};
use pastiche_core::wire::IdList;
use pastiche_core::PublicKey;

use super::beacon::{Beacon, BeaconError, Role};
use super::config::{Config, Ipv4Cidr};
use super::ramdisk::RamDisk;
use super::store::{Index, LogStore, StoreConfig, StoreError};

/// The pairing secret the test stores are configured with.
const SECRET: &str = "test-secret";

fn cfg() -> StoreConfig {
    StoreConfig {
        default_quota: 1 << 20,
        pairing: Some(pastiche_core::seal::Handle::of(SECRET.as_bytes()).0),
        capacity: 1 << 22,
    }
}
type Store<'a> = LogStore<'a, RamDisk<'a>, 64, 16>;

/// A leaked index: each store in a test gets its own.
fn ix() -> &'static mut Index<64, 16> {
    std::boxed::Box::leak(std::boxed::Box::new(Index::new()))
}

fn key(n: u8) -> PublicKey {
    PublicKey([n; 32])
}
fn id(n: u8) -> ChunkId {
    ChunkId([n; 20])
}
/// What a commit of these objects, deletes and root announces (its digest
/// computed by the core's reference, the in-memory staging).
fn counts(objects: &[([u8; 20], &[u8])], deletes: &[[u8; 20]], root: &[u8]) -> StagedCounts {
    let staging = pastiche_core::testing::MemStaging {
        objects: objects.iter().map(|(n, d)| (*n, d.to_vec())).collect(),
        deletes: deletes.iter().copied().collect(),
        root: Some(root.to_vec()),
    };
    StagedCounts {
        objects: staging.objects.len() as u32,
        deletes: staging.deletes.len() as u32,
        root: true,
        digest: staging.digest(),
    }
}

/// The staging digest follows the canonical order whatever the order of
/// the log and index: objects staged out of order (one replaced), deletes
/// of held chunks whose ids share their first 8 bytes, in any order, and of
/// ids the store does not hold.
#[test]
fn the_staging_digest_is_in_canonical_order() {
    let mut buf = vec![0u8; 1 << 20];
    let (mut s, _) = open(&mut buf);
    let a = key(1);
    let held = |tail: u8, head: u8| {
        let mut id = [head; 20];
        id[19] = tail;
        id
    };
    let ids = [held(9, 5), held(1, 5), held(4, 2), held(7, 0xee)];
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(s.put_chunk(&a, &ChunkId(*id), &[i as u8; 50]).unwrap(), PutOutcome::Stored);
    }
    s.flush().unwrap();
    for (name, data) in [(9u8, &b"nine"[..]), (3, b"three"), (5, b"five"), (3, b"three again")] {
        s.stage_object(&a, 1, &[name; 20], data).unwrap();
    }
    let unknown = [[0x77; 20], [0x01; 20]];
    let mut packed = vec![0u8; 6 * 20];
    let list = [ids[2], unknown[0], ids[0], ids[3], unknown[1], ids[1]];
    s.stage_deletes(&a, 1, IdList::pack(list, &mut packed).unwrap()).unwrap();
    s.stage_root(&a, 1, b"the root").unwrap();
    let objects: [([u8; 20], &[u8]); 3] = [([9; 20], b"nine"), ([3; 20], b"three again"), ([5; 20], b"five")];
    let want = counts(&objects, &list, b"the root");
    assert_eq!(s.prepare(&a, 1, want).unwrap(), want, "the log store digests like the reference");
}

/// Opens the store on `buf`; keys 1 and 2 are admitted (with the secret).
fn open(buf: &mut [u8]) -> (Store<'_>, super::store::BootReport) {
    let (mut s, report) = Store::open(RamDisk::new(buf), ix(), cfg(), [9; 32]).unwrap();
    for k in [key(1), key(2)] {
        assert!(s.admit(&k, SECRET).unwrap().is_some());
    }
    (s, report)
}
/// The chunk as key 1 reads it.
fn chunk(s: &mut Store<'_>, id: &ChunkId) -> Option<Vec<u8>> {
    chunk_of(s, &key(1), id)
}
fn chunk_of(s: &mut Store<'_>, c: &PublicKey, id: &ChunkId) -> Option<Vec<u8>> {
    let mut out = vec![0u8; 70_000];
    s.get_chunk(c, id, &mut out).unwrap().map(|n| out[..n].to_vec())
}
fn object(s: &mut Store<'_>, c: &PublicKey, name: u8) -> Option<Vec<u8>> {
    let mut out = vec![0u8; 70_000];
    s.get_object(c, &[name; 20], &mut out).unwrap().map(|n| out[..n].to_vec())
}
fn root(s: &mut Store<'_>, c: &PublicKey) -> Option<(u64, Vec<u8>)> {
    let mut out = vec![0u8; 70_000];
    s.get_root(c, &mut out).unwrap().map(|(e, n)| (e, out[..n].to_vec()))
}

/// Puts two chunks and commits epoch 1 with one object and a root.
fn commit_epoch_1(s: &mut Store<'_>) {
    let a = key(1);
    assert_eq!(s.put_chunk(&a, &id(1), &[1; 100]).unwrap(), PutOutcome::Stored);
    assert_eq!(s.put_chunk(&a, &id(2), &[2; 3000]).unwrap(), PutOutcome::Stored);
    assert_eq!(s.flush().unwrap(), 2);
    s.stage_object(&a, 1, &[7; 20], b"object one").unwrap();
    s.stage_root(&a, 1, b"root one").unwrap();
    let want = counts(&[([7; 20], b"object one")], &[], b"root one");
    assert_eq!(s.prepare(&a, 1, want).unwrap(), want);
    s.apply(&a, 1).unwrap();
}

#[test]
fn state_survives_a_reboot() {
    let mut buf = vec![0u8; 1 << 20];
    let (mut s, report) = open(&mut buf);
    assert!(report.formatted);
    commit_epoch_1(&mut s);
    let _ = s; // the store goes away, as at a power cut
    let (mut s, report) = open(&mut buf);
    assert!(!report.formatted && !report.cut);
    assert_eq!(s.seed(), [9; 32]);
    let a = key(1);
    let rec = s.client(&a).unwrap().unwrap();
    assert_eq!((rec.committed_epoch, rec.staged_epoch, rec.used_bytes), (1, 0, 3100 + 10 + 8), "chunks, object, root");
    assert_eq!(chunk(&mut s, &id(2)).unwrap(), vec![2; 3000]);
    assert_eq!(object(&mut s, &a, 7).unwrap(), b"object one");
    assert_eq!(root(&mut s, &a).unwrap(), (1, b"root one".to_vec()));
    assert!(object(&mut s, &key(2), 7).is_none());
}

#[test]
fn a_fresh_seed_is_only_used_to_format() {
    let mut buf = vec![0u8; 1 << 16];
    let (s, _) = Store::open(RamDisk::new(&mut buf), ix(), cfg(), [5; 32]).unwrap();
    let _ = s; // the store goes away, as at a power cut
    let (s, _) = Store::open(RamDisk::new(&mut buf), ix(), cfg(), [6; 32]).unwrap();
    assert_eq!(s.seed(), [5; 32]);
}

#[test]
fn a_torn_record_is_cut_and_later_writes_win_over_stale_ones() {
    let mut buf = vec![0u8; 1 << 20];
    let (mut s, _) = open(&mut buf);
    commit_epoch_1(&mut s);
    let before = s.log_end();
    // Power fails 50 bytes into a 10 kB chunk record.
    s.disk_mut().cut_power_after(50);
    assert!(s.put_chunk(&key(1), &id(3), &[3; 10_000]).is_err());
    let _ = s; // the store goes away, as at a power cut
    let (mut s, report) = open(&mut buf);
    assert!(report.cut);
    assert_eq!(report.log_end, before);
    assert!(chunk(&mut s, &id(3)).is_none());
    assert_eq!(chunk(&mut s, &id(1)).unwrap(), vec![1; 100]);
    // A small record over the torn one, then a reboot: the stale tail after
    // it (the torn record's body) is not replayed.
    s.put_chunk(&key(1), &id(4), &[4; 10]).unwrap();
    let _ = s; // the store goes away, as at a power cut
    let (mut s, report) = open(&mut buf);
    assert!(report.cut);
    assert_eq!(chunk(&mut s, &id(4)).unwrap(), vec![4; 10]);
    assert_eq!(s.chunk_count(), 3);
}

#[test]
fn stale_whole_records_after_a_cut_are_not_replayed() {
    let mut buf = vec![0u8; 1 << 20];
    let (mut s, _) = open(&mut buf);
    let a = key(1);
    s.put_chunk(&a, &id(1), &[1; 100]).unwrap();
    let cut_at = s.log_end() as usize;
    s.put_chunk(&a, &id(2), &[2; 100]).unwrap();
    s.put_chunk(&a, &id(3), &[3; 100]).unwrap();
    let _ = s; // the store goes away, as at a power cut
               // Corrupt the record of chunk 2: the scan stops there; chunk 3 is whole
               // but after the cut.
    buf[cut_at + 40] ^= 0xff;
    let (mut s, report) = open(&mut buf);
    assert!(report.cut);
    assert_eq!(s.chunk_count(), 1);
    // Overwrite with a record of exactly the same size: chunk 3's stale
    // record now follows a valid one, but its generation is older.
    s.put_chunk(&a, &id(5), &[5; 100]).unwrap();
    let _ = s; // the store goes away, as at a power cut
    let (mut s, _) = open(&mut buf);
    assert!(chunk(&mut s, &id(3)).is_none());
    assert!(chunk(&mut s, &id(5)).is_some());
}

#[test]
fn a_prepared_epoch_is_applied_at_boot() {
    let mut buf = vec![0u8; 1 << 20];
    let (mut s, _) = open(&mut buf);
    commit_epoch_1(&mut s);
    let a = key(1);
    s.stage_object(&a, 2, &[7; 20], b"object two").unwrap();
    s.stage_object(&a, 2, &[8; 20], b"another").unwrap();
    s.stage_deletes(&a, 2, IdList::new(&[1; 20]).unwrap()).unwrap();
    s.stage_root(&a, 2, b"root two").unwrap();
    let want = counts(&[([7; 20], b"object two"), ([8; 20], b"another")], &[[1; 20]], b"root two");
    assert_eq!(s.prepare(&a, 2, want).unwrap(), want);
    // Crash before apply.
    let _ = s; // the store goes away, as at a power cut
    let (mut s, report) = open(&mut buf);
    assert_eq!(report.rolled_forward, 1);
    let rec = s.client(&a).unwrap().unwrap();
    assert_eq!((rec.committed_epoch, rec.staged_epoch), (2, 0));
    assert_eq!(object(&mut s, &a, 7).unwrap(), b"object two");
    assert_eq!(object(&mut s, &a, 8).unwrap(), b"another");
    assert_eq!(root(&mut s, &a).unwrap(), (2, b"root two".to_vec()));
    assert!(chunk(&mut s, &id(1)).is_none(), "the deleted chunk had no other owner");
    assert!(chunk(&mut s, &id(2)).is_some());
    let _ = s; // the store goes away, as at a power cut
               // Applied once: a second boot has nothing to roll forward.
    let (_, report) = open(&mut buf);
    assert_eq!(report.rolled_forward, 0);
}

#[test]
fn unprepared_staging_is_discarded_at_boot_and_a_prepared_epoch_kept() {
    let mut buf = vec![0u8; 1 << 20];
    let (mut s, _) = open(&mut buf);
    let a = key(1);
    s.stage_object(&a, 5, &[1; 20], b"x").unwrap();
    assert_eq!(s.client(&a).unwrap().unwrap().staged_epoch, 5);
    let _ = s; // the store goes away, as at a power cut
    let (mut s, _) = open(&mut buf);
    assert_eq!(s.client(&a).unwrap().unwrap().staged_epoch, 0, "unprepared staging is discarded at boot");
    // Staging a new epoch drops the old one's objects.
    s.stage_object(&a, 5, &[1; 20], b"x").unwrap();
    s.stage_object(&a, 6, &[2; 20], b"y").unwrap();
    s.stage_root(&a, 6, b"r").unwrap();
    let want = counts(&[([2; 20], b"y")], &[], b"r");
    assert_eq!(s.prepare(&a, 6, want).unwrap(), want);
    // A prepared epoch is a promise: an abort keeps it, more staging is refused.
    s.abort(&a, 6).unwrap();
    assert_eq!(s.client(&a).unwrap().unwrap().staged_epoch, 6);
    assert!(matches!(s.stage_root(&a, 7, b"r"), Err(StoreError::Refused(_))));
    let _ = s; // the store goes away, as at a power cut
    let (mut s, report) = open(&mut buf);
    assert_eq!(report.rolled_forward, 1);
    assert_eq!(s.client(&a).unwrap().unwrap().committed_epoch, 6);
    assert!(matches!(s.stage_root(&a, 6, b"r"), Err(StoreError::Refused(_))), "a replayed epoch");
}

#[test]
fn shared_chunks_are_stored_once_and_freed_with_the_last_owner() {
    let mut buf = vec![0u8; 1 << 20];
    let (mut s, _) = open(&mut buf);
    let (a, b) = (key(1), key(2));
    s.put_chunk(&a, &id(1), &[1; 500]).unwrap();
    assert!(!s.holds_chunk(&b, &id(1)).unwrap(), "no oracle: another owner's chunk is not held");
    assert!(chunk_of(&mut s, &b, &id(1)).is_none());
    let end = s.log_end();
    s.put_chunk(&b, &id(1), &[1; 500]).unwrap();
    assert!(s.log_end() - end < 100, "a reference, not a copy");
    assert_eq!(s.client(&b).unwrap().unwrap().used_bytes, 500);
    s.drop_all(&a, 3).unwrap();
    assert!(chunk_of(&mut s, &b, &id(1)).is_some());
    s.drop_all(&b, 1).unwrap();
    assert!(chunk_of(&mut s, &b, &id(1)).is_none());
    let _ = s; // the store goes away, as at a power cut
    let (mut s, _) = open(&mut buf);
    assert_eq!(s.client(&a).unwrap().unwrap().committed_epoch, 3);
    assert_eq!(s.chunk_count(), 0);
}

#[test]
fn a_forged_upload_gets_a_version_of_its_own_across_reboots() {
    let mut buf = vec![0u8; 1 << 20];
    let (mut s, _) = open(&mut buf);
    let (attacker, honest) = (key(1), key(2));
    s.put_chunk(&attacker, &id(1), &[0; 300]).unwrap();
    s.put_chunk(&honest, &id(1), &[7; 300]).unwrap();
    for _ in 0..2 {
        assert_eq!(chunk_of(&mut s, &honest, &id(1)).unwrap(), vec![7; 300]);
        assert_eq!(chunk_of(&mut s, &attacker, &id(1)).unwrap(), vec![0; 300]);
        let _ = s; // the store goes away, as at a power cut
        s = open(&mut buf).0;
    }
    assert_eq!(s.chunk_count(), 2);
}

#[test]
fn keys_take_a_slot_only_with_the_secret() {
    let mut buf = vec![0u8; 1 << 16];
    let (mut s, _) = Store::open(RamDisk::new(&mut buf), ix(), cfg(), [9; 32]).unwrap();
    let end = s.log_end();
    assert_eq!(s.admit(&key(1), "wrong").unwrap(), None);
    assert_eq!(s.client(&key(1)).unwrap(), None);
    assert_eq!(s.put_chunk(&key(1), &id(1), &[1; 20]), Err(StoreError::NotAdmitted));
    assert_eq!(s.log_end(), end, "a refused key leaves no record");
    assert!(s.admit(&key(1), SECRET).unwrap().is_some());
    let no_pairing = StoreConfig { pairing: None, ..cfg() };
    let _ = s;
    let (mut s, _) = Store::open(RamDisk::new(&mut buf), ix(), no_pairing, [9; 32]).unwrap();
    assert!(s.client(&key(1)).unwrap().is_some(), "admission lasts");
    assert_eq!(s.admit(&key(2), SECRET).unwrap(), None, "no secret configured: no new clients");
}

#[test]
fn an_accepted_lan_pairing_admits_its_key_once_with_its_code_and_nobody_else() {
    let mut buf = vec![0u8; 1 << 16];
    let no_pairing = StoreConfig { pairing: None, ..cfg() };
    let (mut s, _) = Store::open(RamDisk::new(&mut buf), ix(), no_pairing, [9; 32]).unwrap();
    let digest = pastiche_core::wire::pairing::code_digest("K7Q2M9XWPD");
    s.invite(key(1), digest);
    assert_eq!(s.admit(&key(2), "K7Q2M9XWPD").unwrap(), None, "another key presenting the code");
    assert_eq!(s.admit(&key(1), "K7Q2M9XWPE").unwrap(), None, "another code");
    assert!(s.admit(&key(1), "K7Q2M9XWPD").unwrap().is_some());
    assert!(s.client(&key(1)).unwrap().is_some());
    s.invite(key(3), digest);
    assert!(s.admit(&key(3), "K7Q2M9XWPD").unwrap().is_some());
    assert_eq!(s.admit(&key(4), "K7Q2M9XWPD").unwrap(), None, "the code was spent");
    // A flood of invitations keeps the last few only.
    for n in 10..20 {
        s.invite(key(n), digest);
    }
    assert_eq!(s.admit(&key(10), "K7Q2M9XWPD").unwrap(), None, "forgotten");
    assert!(s.admit(&key(19), "K7Q2M9XWPD").unwrap().is_some());
}

#[test]
fn quotas_and_full_tables_refuse_a_chunk_without_breaking_the_store() {
    let mut buf = vec![0u8; 1 << 22];
    let (mut s, _) = open(&mut buf);
    let a = key(1);
    s.put_chunk(&a, &id(1), &vec![1; 60_000]).unwrap();
    let mut refused = 0;
    for n in 2..40u8 {
        if s.put_chunk(&a, &id(n), &vec![n; 60_000]).unwrap() == PutOutcome::QuotaExceeded {
            refused += 1;
        }
    }
    assert_eq!(refused, 38 - 16, "1 MiB quota: 17 chunks of 60 kB fit");
    // The index has 64 entries: a second client fills it, then is refused.
    let b = key(2);
    let mut stored = 0;
    for n in 100..200u8 {
        if s.put_chunk(&b, &id(n), &[n; 20]).unwrap() == PutOutcome::Stored {
            stored += 1;
        }
    }
    assert_eq!(stored, 64 - 17);
    // Keys beyond the eighth get no slot, even with the secret.
    for n in 3..9 {
        assert!(s.admit(&key(n), SECRET).unwrap().is_some());
    }
    assert_eq!(s.admit(&key(9), SECRET).unwrap(), None);
    assert_eq!(s.put_chunk(&key(9), &id(1), &[0; 20]), Err(StoreError::NotAdmitted));
}

#[test]
fn a_full_disk_refuses_the_chunk() {
    let mut buf = vec![0u8; 1 << 16];
    let cfg = StoreConfig { default_quota: 1 << 30, capacity: 1 << 16, ..cfg() };
    let (mut s, _) = Store::open(RamDisk::new(&mut buf), ix(), cfg, [1; 32]).unwrap();
    s.admit(&key(1), SECRET).unwrap();
    assert_eq!(s.put_chunk(&key(1), &id(1), &[1; 40_000]).unwrap(), PutOutcome::Stored);
    assert_eq!(s.put_chunk(&key(1), &id(2), &[1; 40_000]).unwrap(), PutOutcome::QuotaExceeded);
    assert_eq!(s.put_chunk(&key(1), &id(3), &[1; 4_000]).unwrap(), PutOutcome::Stored);
}

#[test]
fn beacon_round_trip() {
    let b = Beacon { role: Role::StorageBuddy, tcp_port: 7467, buddy_key: [0xab; 32] };
    let bytes = b.encode();
    assert_eq!(&bytes[..8], b"PSTB\x01\x01\x1d\x2b");
    assert_eq!(Beacon::decode(&bytes), Ok(b));
    assert_eq!(Beacon::decode(&bytes[..39]), Err(BeaconError::NotABeacon));
    let mut v2 = bytes;
    v2[4] = 2;
    assert_eq!(Beacon::decode(&v2), Err(BeaconError::Version(2)));
}

#[test]
fn config_parses_the_command_line() {
    let (c, bad) = Config::parse(
        "/x/pastiche-firmware disk=/tmp/d.img ip=192.168.7.9/16 gw=192.168.0.1 dhcp=off quota_mib=5 port=9000 bogus=1",
    );
    assert_eq!(c.disk, Some("/tmp/d.img"));
    assert_eq!(c.ip, Ipv4Cidr { addr: [192, 168, 7, 9], prefix: 16 });
    assert_eq!(c.gateway, [192, 168, 0, 1]);
    assert!(!c.dhcp);
    assert_eq!((c.quota, c.port), (5 << 20, 9000));
    assert_eq!(bad, Some("bogus=1"));
    let (d, bad) = Config::parse("");
    assert_eq!((d, bad), (Config::default(), None));
}

#[test]
fn ids_sharing_the_ram_prefix_are_told_apart_on_disk() {
    let mut buf = vec![0u8; 1 << 16];
    let (mut s, _) = open(&mut buf);
    let (mut x, mut y) = ([7u8; 20], [7u8; 20]);
    x[19] = 1;
    y[19] = 2;
    s.put_chunk(&key(1), &ChunkId(x), b"xxxxxxxxxxxxxxxxxxxx").unwrap();
    assert!(!s.holds_chunk(&key(1), &ChunkId(y)).unwrap());
    s.put_chunk(&key(1), &ChunkId(y), b"yyyyyyyyyyyyyyyyyyyy").unwrap();
    assert_eq!(chunk(&mut s, &ChunkId(x)).unwrap(), b"xxxxxxxxxxxxxxxxxxxx");
    assert_eq!(chunk(&mut s, &ChunkId(y)).unwrap(), b"yyyyyyyyyyyyyyyyyyyy");
    assert_eq!(s.chunk_count(), 2);
}

#[test]
fn a_staged_set_that_differs_from_the_commit_is_never_prepared() {
    let mut buf = vec![0u8; 1 << 16];
    let (mut s, _) = open(&mut buf);
    let a = key(1);
    s.stage_object(&a, 1, &[1; 20], b"x").unwrap();
    s.stage_root(&a, 1, b"r").unwrap();
    // The client signed for two objects; one was lost on the way.
    let want = StagedCounts { objects: 2, ..counts(&[([1; 20], b"x")], &[], b"r") };
    assert_eq!(s.prepare(&a, 1, want).unwrap(), counts(&[([1; 20], b"x")], &[], b"r"));
    // Power fails before the session's abort: nothing is rolled forward.
    let _ = s; // the store goes away, as at a power cut
    let (mut s, report) = open(&mut buf);
    assert_eq!(report.rolled_forward, 0);
    let rec = s.client(&a).unwrap().unwrap();
    assert_eq!((rec.committed_epoch, rec.staged_epoch), (0, 0), "the differing staging was discarded");
}

/// The core's store conformance suite, on the log store (power cut at
/// every restart).
struct LogHarness {
    store: Option<LogStore<'static, RamDisk<'static>, 64, 16>>,
    cfg: StoreConfig,
}

impl LogHarness {
    fn new() -> LogHarness {
        let buf: &'static mut [u8] = std::boxed::Box::leak(vec![0u8; 1 << 22].into_boxed_slice());
        let cfg = StoreConfig { pairing: None, ..cfg() };
        let (store, _) = LogStore::open(RamDisk::new(buf), ix(), cfg, [9; 32]).unwrap();
        LogHarness { store: Some(store), cfg }
    }
}

impl pastiche_core::testing::conformance::Harness for LogHarness {
    type Store = LogStore<'static, RamDisk<'static>, 64, 16>;
    fn store(&mut self) -> &mut Self::Store {
        self.store.as_mut().expect("open")
    }
    fn invite(&mut self, code: &str, quota: u64) {
        // The firmware's pairing secret and quota come from its boot
        // command line: a new invitation is a reboot with new settings.
        self.cfg.pairing = Some(pastiche_core::seal::Handle::of(code.as_bytes()).0);
        self.cfg.default_quota = quota;
        self.restart();
    }
    fn restart(&mut self) {
        let disk = self.store.take().expect("open").into_disk();
        self.store = Some(LogStore::open(disk, ix(), self.cfg, [9; 32]).unwrap().0);
    }
    const ONE_TIME_CODES: bool = false;
}

#[test]
fn the_log_store_conforms() {
    pastiche_core::testing::conformance::run_all(LogHarness::new);
}

/// A small deterministic generator for the randomized tests.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Bytes of chunk `n` as client `c` uploads them: client 2 forges some ids.
fn bytes_of(n: u8, c: u8) -> Vec<u8> {
    let forged = c == 2 && n.is_multiple_of(5);
    vec![n ^ if forged { 0x80 } else { 0 }; 10 + n as usize * 7]
}

/// Random puts, deletes, commits and reboots by two clients against a model,
/// on a chunk table small enough that probe sequences collide and wrap
/// around its end, and that removals shift entries back.
#[test]
fn the_on_disk_index_matches_a_model_through_deletes_and_reboots() {
    use std::collections::BTreeSet;
    let mut buf = vec![0u8; 1 << 22];
    let mut rng = Lcg(7);
    let mut model: [BTreeSet<u8>; 2] = [BTreeSet::new(), BTreeSet::new()];
    let mut epoch = [0u64; 2];
    let (mut s, _) = open(&mut buf);
    for round in 0..300 {
        let c = rng.below(2) as usize;
        let k = key(c as u8 + 1);
        match rng.below(10) {
            0..=5 => {
                let n = rng.below(48) as u8;
                let id = ChunkId([n; 20]);
                if s.put_chunk(&k, &id, &bytes_of(n, c as u8 + 1)).unwrap() == PutOutcome::Stored {
                    model[c].insert(n);
                }
            }
            6..=7 => {
                // Commit an epoch deleting a few owned ids.
                epoch[c] += 1;
                let e = epoch[c];
                let owned: Vec<u8> = model[c].iter().copied().collect();
                let mut gone = BTreeSet::new();
                for _ in 0..3 {
                    if !owned.is_empty() {
                        gone.insert(owned[rng.below(owned.len() as u64) as usize]);
                    }
                }
                let ids: Vec<u8> = gone.iter().flat_map(|&n| [n; 20]).collect();
                s.stage_deletes(&k, e, IdList::new(&ids).unwrap()).unwrap();
                let staged = s.stage_object(&k, e, &[c as u8; 20], &[round as u8; 9]).unwrap();
                assert_eq!(staged, PutOutcome::Stored, "the object replaces the last epoch's");
                s.stage_root(&k, e, b"root").unwrap();
                let mut digest = pastiche_core::session::StagingDigest::new();
                digest.object(&[c as u8; 20], &[round as u8; 9]);
                for &n in &gone {
                    digest.delete(&[n; 20]);
                }
                digest.root(b"root");
                let want = StagedCounts { objects: 1, deletes: gone.len() as u32, root: true, digest: digest.finish() };
                assert_eq!(s.prepare(&k, e, want).unwrap(), want, "round {round}");
                s.apply(&k, e).unwrap();
                for n in gone {
                    model[c].remove(&n);
                }
                assert_eq!(object(&mut s, &k, c as u8), Some(vec![round as u8; 9]));
            }
            8 => {
                s.flush().unwrap();
                let _ = s; // power cut after a flush: nothing flushed is lost
                s = open(&mut buf).0;
            }
            _ => s.flush().map(|_| ()).unwrap(),
        }
        for (ci, owned) in model.iter().enumerate() {
            for n in 0..48u8 {
                let got = chunk_of(&mut s, &key(ci as u8 + 1), &ChunkId([n; 20]));
                let want = owned.contains(&n).then(|| bytes_of(n, ci as u8 + 1));
                assert_eq!(got, want, "round {round}, client {}, chunk {n}", ci + 1);
            }
        }
        let live: BTreeSet<(u8, bool)> = model
            .iter()
            .enumerate()
            .flat_map(|(ci, o)| o.iter().map(move |&n| (n, ci == 1 && n.is_multiple_of(5))))
            .collect();
        assert_eq!(s.chunk_count(), live.len(), "round {round}: one entry per distinct stored version");
    }
}

/// A power cut at any byte of a workload loses nothing that was flushed
/// before it, and the store opens and works after it.
#[test]
fn power_cuts_at_random_points_lose_nothing_flushed() {
    let mut rng = Lcg(11);
    for run in 0..40 {
        let mut buf = vec![0u8; 1 << 22];
        let (mut s, _) = open(&mut buf);
        let cut = 2000 + rng.below(60_000) as usize;
        s.disk_mut().cut_power_after(cut);
        let mut flushed = Vec::new();
        let mut pending = Vec::new();
        for n in 0..40u8 {
            match s.put_chunk(&key(1), &id(n), &bytes_of(n, 1)) {
                Ok(_) => pending.push(n),
                Err(_) => break,
            }
            if n % 4 == 3 {
                if s.flush().is_err() {
                    break;
                }
                flushed.append(&mut pending);
            }
        }
        let _ = s;
        let (mut s, _) = open(&mut buf);
        for &n in &flushed {
            assert_eq!(chunk(&mut s, &id(n)), Some(bytes_of(n, 1)), "run {run}: cut at {cut}, chunk {n}");
        }
        assert_eq!(s.put_chunk(&key(1), &id(200), &[1; 50]).unwrap(), PutOutcome::Stored);
        assert_eq!(chunk(&mut s, &id(200)), Some(vec![1; 50]));
    }
}
