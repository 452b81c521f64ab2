//! Host tests of the logic: the chunk store across reboots and power cuts,
//! the beacon and the boot command line.

extern crate std;
use std::string::String;
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
    // Power fails 50 bytes into a 10 kB chunk record. Counted from the
    // log's end: index pages the put writes back first (as many as the
    // page cache's size makes it evict) land before the cut.
    s.disk_mut().cut_power_after_from(before, 50);
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
    // The index has 64 entries, one kept empty: a second client fills it,
    // then is refused.
    let b = key(2);
    let mut stored = 0;
    for n in 100..200u8 {
        if s.put_chunk(&b, &id(n), &[n; 20]).unwrap() == PutOutcome::Stored {
            stored += 1;
        }
    }
    assert_eq!(stored, 63 - 17);
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
    assert!(d.compact && d.compact_kib == 256, "compaction is on by default");
    let (e, bad) = Config::parse("compact=off compact_kib=4");
    assert_eq!((e.compact, e.compact_kib, bad), (false, 4, None));
    assert_eq!(Config::parse("compact_kib=0").1, Some("compact_kib=0"), "a pace of nothing is refused");
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

/// What the clients can see of a store: for keys 1 to 3, the client
/// record, chunks 0 to 63, objects 7 to 9 and the root; and the number of
/// stored versions.
fn observe(s: &mut Store<'_>) -> Vec<String> {
    let short = |b: Option<Vec<u8>>| b.map(|b| (b.len(), super::crc::crc32(&b)));
    let mut seen = vec![std::format!("versions {}", s.chunk_count())];
    for k in 1..=3u8 {
        let c = key(k);
        let r = s.client(&c).unwrap();
        seen.push(std::format!("client {k} epochs: {:?}", r.map(|r| (r.committed_epoch, r.staged_epoch))));
        seen.push(std::format!("client {k} bytes: {:?}", r.map(|r| r.used_bytes)));
        for n in 0..64u8 {
            seen.push(std::format!("client {k} chunk {n}: {:?}", short(chunk_of(s, &c, &id(n)))));
        }
        for name in 7..=9u8 {
            seen.push(std::format!("client {k} object {name}: {:?}", short(object(s, &c, name))));
        }
        seen.push(std::format!("client {k} root: {:?}", root(s, &c).map(|(e, r)| (e, short(Some(r))))));
    }
    seen
}

/// Stages `objects`, `deletes` and `root` for `epoch` and prepares them.
fn stage_and_prepare(s: &mut Store<'_>, c: &PublicKey, epoch: u64, objects: &[u8], deletes: &[u8], root: &[u8]) {
    let mut objs = Vec::new();
    for &o in objects {
        let data = vec![o ^ epoch as u8; 30 + o as usize];
        assert_eq!(s.stage_object(c, epoch, &[o; 20], &data).unwrap(), PutOutcome::Stored);
        objs.push(([o; 20], data));
    }
    let ids: Vec<u8> = deletes.iter().flat_map(|&n| [n; 20]).collect();
    s.stage_deletes(c, epoch, IdList::new(&ids).unwrap()).unwrap();
    s.stage_root(c, epoch, root).unwrap();
    let objs: Vec<([u8; 20], &[u8])> = objs.iter().map(|(n, d)| (*n, d.as_slice())).collect();
    let dels: Vec<[u8; 20]> = deletes.iter().map(|&n| [n; 20]).collect();
    let want = counts(&objs, &dels, root);
    assert_eq!(s.prepare(c, epoch, want).unwrap(), want);
}

/// A store with a bit of everything, and garbage: shared chunks, forged
/// versions, committed epochs that deleted chunks and replaced objects and
/// roots, a dropped client, a prepared epoch not yet applied, and
/// unprepared staging (with a delete of an id not held).
fn build_garbage(s: &mut Store<'_>) {
    let (a, b, c) = (key(1), key(2), key(3));
    assert!(s.admit(&c, SECRET).unwrap().is_some());
    for n in 0..20 {
        assert_eq!(s.put_chunk(&a, &id(n), &bytes_of(n, 1)).unwrap(), PutOutcome::Stored);
    }
    for n in 10..30 {
        assert_eq!(s.put_chunk(&b, &id(n), &bytes_of(n, 2)).unwrap(), PutOutcome::Stored);
    }
    for n in 40..60 {
        assert_eq!(s.put_chunk(&c, &id(n), &vec![n; 9_000]).unwrap(), PutOutcome::Stored);
    }
    s.flush().unwrap();
    stage_and_prepare(s, &a, 1, &[7, 8], &[], b"a root 1");
    s.apply(&a, 1).unwrap();
    stage_and_prepare(s, &b, 1, &[7], &[], b"b root 1");
    s.apply(&b, 1).unwrap();
    stage_and_prepare(s, &c, 1, &[9], &[], b"c root 1");
    s.apply(&c, 1).unwrap();
    // Garbage: client 3 goes, client 1 deletes and replaces.
    s.drop_all(&c, 5).unwrap();
    stage_and_prepare(s, &a, 2, &[8, 9], &[0, 1, 2, 3, 10, 11], b"a root 2");
    s.apply(&a, 2).unwrap();
    // Prepared, not applied: applied at the next boot.
    stage_and_prepare(s, &a, 3, &[7], &[4, 5, 12], b"a root 3");
    // Staged, not prepared: discarded at the next boot.
    s.stage_object(&b, 2, &[9; 20], b"staged object").unwrap();
    let ids: Vec<u8> = [13u8, 14, 200].iter().flat_map(|&n| [n; 20]).collect();
    s.stage_deletes(&b, 2, IdList::new(&ids).unwrap()).unwrap();
    s.stage_root(&b, 2, b"b root 2").unwrap();
    s.flush().unwrap();
}

/// Runs a compaction to its end in small steps.
fn compact_fully(s: &mut Store<'_>) {
    assert!(s.start_compaction().unwrap().is_some(), "room for a compaction");
    while s.compacting() {
        s.maintain(3_000, false).unwrap();
    }
}

/// An observation without the counts that chunks stored after it change.
fn without_counts(seen: Vec<String>) -> Vec<String> {
    seen.into_iter().filter(|l| !l.starts_with("versions") && !l.contains(" bytes: ")).collect()
}

/// Fails with the lines where two observations differ.
fn assert_same(got: &[String], want: &[String], what: &str) {
    let diff: Vec<_> = got.iter().zip(want).filter(|(g, w)| g != w).collect();
    assert!(diff.is_empty() && got.len() == want.len(), "{what}: {diff:?}");
}

/// What a reboot of a copy of `buf` shows.
fn observe_after_reboot(buf: &[u8]) -> Vec<String> {
    let mut copy = buf.to_vec();
    let (mut s, _) = Store::open(RamDisk::new(&mut copy), ix(), cfg(), [9; 32]).unwrap();
    observe(&mut s)
}

#[test]
fn compaction_reclaims_the_space_and_keeps_every_state() {
    let mut buf = vec![0u8; 1 << 22];
    let (mut s, _) = open(&mut buf);
    build_garbage(&mut s);
    let seen = observe(&mut s);
    let used = s.log_used();
    compact_fully(&mut s);
    assert_eq!(observe(&mut s), seen, "the running store sees the same");
    // Client 3's 180 kB and the deleted and replaced data are gone.
    assert!(s.log_used() + 180_000 < used, "{} of {used} bytes left", s.log_used());
    let after_compaction = s.log_used();
    let _ = s; // the store goes away, as at a power cut
    let mut reference = vec![0u8; 1 << 22];
    {
        let (mut s, _) = open(&mut reference);
        build_garbage(&mut s);
    }
    let (mut s, report) = open(&mut buf);
    assert_eq!(report.rolled_forward, 1, "the prepared epoch survived the compaction");
    assert_eq!(observe(&mut s), observe_after_reboot(&reference), "a reboot sees the same");
    assert!(s.log_used() < after_compaction + 200, "boot adds only its own records");
    // And it compacts again, and keeps working.
    compact_fully(&mut s);
    assert_eq!(s.put_chunk(&key(1), &id(63), &[6; 100]).unwrap(), PutOutcome::Stored);
    assert_eq!(chunk(&mut s, &id(63)), Some(vec![6; 100]));
}

/// What a compaction does between its steps in the power-cut test: other
/// sessions go on (new chunks, a shared one, an abort).
fn compaction_with_traffic(s: &mut Store<'_>, flushed: &mut Vec<u8>) -> Result<(), StoreError> {
    s.start_compaction()?.expect("room for a compaction");
    let mut step = 0u8;
    while s.compacting() {
        s.maintain(2_000, false)?;
        step += 1;
        match step {
            2 | 5 | 9 => {
                let n = 100 + step;
                s.put_chunk(&key(1), &id(n), &bytes_of(n, 1))?;
                s.put_chunk(&key(2), &id(n), &bytes_of(n, 1))?;
                s.flush()?;
                flushed.push(n);
            }
            7 => s.abort(&key(2), 2)?,
            _ => {}
        }
    }
    Ok(())
}

/// A power cut at every write of a compaction (tables frozen, records
/// copied, entries moved, the superblock switched) while sessions go on:
/// the store reopens with everything it had, everything flushed during the
/// compaction, and compacts fully afterwards.
#[test]
fn a_power_cut_at_every_write_of_a_compaction_loses_nothing() {
    let mut base = vec![0u8; 1 << 22];
    {
        let (mut s, _) = open(&mut base);
        build_garbage(&mut s);
    }
    let want = without_counts(observe_after_reboot(&base));
    let writes = {
        let mut buf = base.clone();
        let (mut s, _) = Store::open(RamDisk::new(&mut buf), ix(), cfg(), [9; 32]).unwrap();
        let at = s.disk_mut().writes();
        compaction_with_traffic(&mut s, &mut Vec::new()).unwrap();
        s.disk_mut().writes() - at
    };
    assert!(writes > 100, "{writes} writes");
    for cut in 0..=writes {
        let mut buf = base.clone();
        let mut flushed = Vec::new();
        {
            let (mut s, _) = Store::open(RamDisk::new(&mut buf), ix(), cfg(), [9; 32]).unwrap();
            s.disk_mut().cut_power_after_writes(cut);
            let _ = compaction_with_traffic(&mut s, &mut flushed);
        }
        let (mut s, _) = Store::open(RamDisk::new(&mut buf), ix(), cfg(), [9; 32]).unwrap();
        let mut seen = without_counts(observe(&mut s));
        // The abort may have happened: client 2's staging is gone at boot
        // either way. Chunks stored during the compaction change the
        // counts, so those are left out.
        assert_same(&seen, &want, &std::format!("cut at write {cut} of {writes}"));
        for &n in &flushed {
            for k in [key(1), key(2)] {
                assert_eq!(chunk_of(&mut s, &k, &id(n)), Some(bytes_of(n, 1)), "cut at write {cut}: chunk {n}");
            }
        }
        compact_fully(&mut s);
        seen = without_counts(observe(&mut s));
        assert_same(&seen, &want, &std::format!("cut at write {cut}, compacted again"));
        let _ = s;
        let (mut s, _) = Store::open(RamDisk::new(&mut buf), ix(), cfg(), [9; 32]).unwrap();
        let seen = without_counts(observe(&mut s));
        assert_same(&seen, &want, &std::format!("cut at write {cut}, compacted again, rebooted"));
    }
}

/// A small ring that the log goes round many times: chunks come and go,
/// compactions run between sessions' writes, and reboots (some in the
/// middle of a compaction) see what a model says.
#[test]
fn the_log_goes_round_a_small_ring_through_compactions_and_reboots() {
    use std::collections::BTreeMap;
    // At most 16 chunks of up to 5 kB are live: a compaction started at
    // half the ring always has room.
    const RING: u64 = 256 * 1024;
    let small = StoreConfig { capacity: Index::<64, 16>::log_start() + RING, ..cfg() };
    let mut buf = vec![0u8; small.capacity as usize];
    let reopen = |buf: &mut Vec<u8>| -> Store<'static> {
        let disk = RamDisk::new(std::boxed::Box::leak(buf.clone().into_boxed_slice()));
        Store::open(disk, ix(), small, [9; 32]).unwrap().0
    };
    let a = key(1);
    let (mut s, _) = Store::open(RamDisk::new(&mut buf), ix(), small, [9; 32]).unwrap();
    assert!(s.admit(&a, SECRET).unwrap().is_some());
    let mut disk_image = s.into_disk().bytes().to_vec();
    let mut s = reopen(&mut disk_image);
    let mut rng = Lcg(5);
    let mut model: BTreeMap<u8, Vec<u8>> = BTreeMap::new();
    let mut epoch = 0u64;
    let mut compactions = 0;
    let mut wraps_seen = 0;
    let mut last_end = s.log_end();
    for round in 0..1200u32 {
        match rng.below(8) {
            0..=3 => {
                let n = rng.below(16) as u8;
                let data = vec![round as u8; 500 + rng.below(4_500) as usize];
                if let std::collections::btree_map::Entry::Vacant(v) = model.entry(n) {
                    if s.put_chunk(&a, &id(n), &data).unwrap() == PutOutcome::Stored {
                        v.insert(data);
                    }
                }
            }
            4..=5 => {
                epoch += 1;
                let gone: Vec<u8> = model.keys().copied().filter(|_| rng.below(2) == 0).collect();
                let ids: Vec<u8> = gone.iter().flat_map(|&n| [n; 20]).collect();
                s.stage_deletes(&a, epoch, IdList::new(&ids).unwrap()).unwrap();
                s.stage_root(&a, epoch, b"r").unwrap();
                let mut d = pastiche_core::session::StagingDigest::new();
                for &n in &gone {
                    d.delete(&[n; 20]);
                }
                d.root(b"r");
                let want = StagedCounts { objects: 0, deletes: gone.len() as u32, root: true, digest: d.finish() };
                assert_eq!(s.prepare(&a, epoch, want).unwrap(), want);
                s.apply(&a, epoch).unwrap();
                for n in gone {
                    model.remove(&n);
                }
            }
            6 => {
                s.flush().unwrap();
                let image = s.into_disk().bytes().to_vec();
                disk_image = image;
                s = reopen(&mut disk_image);
            }
            _ => {}
        }
        if !s.compacting() && s.log_used() > RING / 2 && s.start_compaction().unwrap().is_some() {
            compactions += 1;
        }
        s.maintain(4_000, false).unwrap();
        if s.log_end() < last_end {
            wraps_seen += 1;
        }
        last_end = s.log_end();
        for n in 0..16u8 {
            assert_eq!(chunk(&mut s, &id(n)), model.get(&n).cloned(), "round {round}, chunk {n}");
        }
    }
    assert!(compactions >= 10, "{compactions} compactions");
    assert!(wraps_seen >= 3, "the log went round the ring {wraps_seen} times");
}

/// Sessions that write faster than a compaction copies fill the room the
/// log keeps before the copy: the record that finds it full finishes the
/// compaction first, and is stored in the compacted log.
#[test]
fn a_write_that_needs_the_compactions_room_finishes_it() {
    let small = StoreConfig { capacity: Index::<64, 16>::log_start() + 256 * 1024, ..cfg() };
    let mut buf = vec![0u8; small.capacity as usize];
    let (mut s, _) = Store::open(RamDisk::new(&mut buf), ix(), small, [9; 32]).unwrap();
    let (a, b) = (key(1), key(2));
    for k in [&a, &b] {
        assert!(s.admit(k, SECRET).unwrap().is_some());
    }
    for n in 0..10 {
        assert_eq!(s.put_chunk(&a, &id(n), &[n; 5_000]).unwrap(), PutOutcome::Stored);
        assert_eq!(s.put_chunk(&b, &id(100 + n), &[n; 5_000]).unwrap(), PutOutcome::Stored);
    }
    s.drop_all(&b, 1).unwrap();
    let used = s.log_used();
    assert!(s.start_compaction().unwrap().is_some());
    // No compaction step from here: only writes.
    let mut n = 20u8;
    while s.compacting() {
        assert_eq!(s.put_chunk(&a, &id(n), &[n; 5_000]).unwrap(), PutOutcome::Stored, "chunk {n}");
        n += 1;
    }
    assert!(n > 21, "the reserve took a few chunks first");
    assert!(s.log_used() < used + (n as u64 - 20) * 5_100 - 40_000, "b's 50 kB were reclaimed");
    let check = |s: &mut Store<'_>| {
        for m in (0..10).chain(20..n) {
            assert_eq!(chunk(s, &id(m)), Some(vec![m; 5_000]), "chunk {m}");
        }
        for m in 100..110 {
            assert_eq!(chunk_of(s, &b, &id(m)), None);
        }
    };
    check(&mut s);
    let _ = s;
    let (mut s, _) = Store::open(RamDisk::new(&mut buf), ix(), small, [9; 32]).unwrap();
    check(&mut s);
}

/// After the log's tail lie bytes of an earlier lap of the ring, which may
/// be a client's chunk data. A client that crafts a whole, well-formed
/// record there (a `Drop` of another client, with a high generation and a
/// correct CRC-32) does not get it replayed: the record CRC is keyed with a
/// secret it does not know.
#[test]
fn records_forged_in_chunk_bytes_after_the_tail_are_not_replayed() {
    use super::record::{Header, Kind};
    let mut buf = vec![0u8; 1 << 20];
    let (mut s, _) = open(&mut buf);
    assert_eq!(s.put_chunk(&key(1), &id(1), &[1; 500]).unwrap(), PutOutcome::Stored);
    s.flush().unwrap();
    let tail = s.log_end() as usize;
    let _ = s;
    let mut forged = Vec::from(Header { len: 9, gen: 0xFFFF_FFF0, kind: Kind::Drop as u8 }.to_bytes());
    forged.push(0); // slot 0: the victim
    forged.extend_from_slice(&7u64.to_le_bytes());
    let crc = super::crc::crc32(&forged);
    forged.extend_from_slice(&crc.to_le_bytes());
    buf[tail..tail + forged.len()].copy_from_slice(&forged);
    let (mut s, report) = open(&mut buf);
    assert!(report.cut, "the forged record ends the log");
    assert_eq!(chunk(&mut s, &id(1)), Some(vec![1; 500]), "nothing was dropped");
    assert_eq!(s.client(&key(1)).unwrap().unwrap().committed_epoch, 0);
}
