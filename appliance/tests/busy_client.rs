//! A paired client packing every record with cheap requests must not
//! starve the buddy (issue 8: every peer is an adversary), against a real
//! `pastiche serve` over real TCP on loopback.
//!
//! The buddy handles all the frames of one received record in one
//! blocking section, so an admitted attacker fills each 64 KiB record with
//! about two thousand tiny requests (`GetChunk` for chunks it does not
//! hold, one-id `Offer`s, one-id audit challenges), from several
//! connections at once, in a loop, reading the answers as fast as they
//! come (one connection never reads them). Meanwhile an honest client
//! syncs to the same buddy and restores from it: its work completes (a
//! watchdog fails the test on a hang, no timing is asserted) and is exact,
//! a new connection's channel handshake and hello complete, `pastiche
//! clients list` works, and the buddy's peak memory stays within its fixed
//! limits.

mod common;

use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::buddy::*;
use common::secure::{self, SecureEnd};
use common::*;
use pastiche_core::audit::AuditNonce;
use pastiche_core::session::{ClientEvent, ClientSession};
use pastiche_core::wire::{AuditRequest, GetChunk, IdList, Message, Offer};
use pastiche_core::{ChunkId, Identity, NodeId};
use rand::{Rng, SeedableRng};

/// How long any one step may take before the test calls it a hang.
const WATCHDOG: Duration = Duration::from_secs(120);
/// Attacking connections (all of one admitted key): one never reads its
/// answers, the others read them as fast as they come.
const ATTACKERS: usize = 5;
/// Plaintext bytes of requests per record: one full record.
const RECORD_PLAIN: usize = 65_000;
/// What the buddy's limits allow above its idle peak, in MiB (as in
/// `buddy_memory.rs`): store index cache (64), write batch (32),
/// `buddy.redb` cache (16), buffered chunks (16), fixed buffers of up to 32
/// sessions (32), allocator arenas and runtime (64).
const ALLOWED_GROWTH_MIB: u64 = 64 + 32 + 16 + 16 + 32 + 64;

/// Opens a channel to the buddy at `addr` as `me` and completes the hello
/// (presenting `code`, which admits `me` once and is a plain proof after).
fn session(addr: &str, me: &Identity, code: &str) -> std::io::Result<SecureEnd> {
    let mut sock = TcpStream::connect(addr)?;
    sock.set_read_timeout(Some(WATCHDOG))?;
    sock.set_write_timeout(Some(WATCHDOG))?;
    let channel = secure::connect(&mut sock, me, None)?;
    let end = SecureEnd::new(sock, channel);
    let mut hello = ClientSession::new(me.clone(), NodeId::from_name("busy"), rand::random(), rand::random())
        .with_pairing_code(code)
        .expect("a valid code");
    let mut out = vec![0u8; 4096];
    let n = hello.start(&mut out).expect("hello");
    end.send_plain(&out[..n])?;
    let mut answers = end.reader();
    loop {
        let p = answers.next_payload()?;
        match hello.handle(&p, &mut out) {
            Ok(ClientEvent::SendProof(n)) => end.send_plain(&out[..n])?,
            Ok(ClientEvent::Welcome(_)) => return Ok(end),
            other => return Err(std::io::Error::other(format!("the hello failed: {other:?}"))),
        }
    }
}

/// One record's worth of cheap requests about chunks nobody holds.
fn cheap_requests(rng: &mut impl Rng) -> Vec<u8> {
    let mut plain = Vec::with_capacity(RECORD_PLAIN + 128);
    let mut i = 0usize;
    while plain.len() < RECORD_PLAIN {
        let id: [u8; 20] = rng.gen();
        let mut packed = [0u8; 20];
        let ids = IdList::pack([id], &mut packed).unwrap();
        let msg = match i % 3 {
            0 => Message::GetChunk(GetChunk { id: ChunkId(id) }),
            1 => Message::Offer(Offer { ids }),
            _ => Message::AuditRequest(AuditRequest { nonce: AuditNonce(rng.gen()), ids }),
        };
        plain.extend_from_slice(&secure::frame(&msg));
        i += 1;
    }
    plain
}

/// An attacking connection, run until `stop`: one thread writes records
/// packed with requests, this one reads the answers (counted in
/// `answers`), or, unless `reads`, never reads any (the buddy's replies
/// back up). A connection the buddy ends is opened again.
fn attack(
    addr: &str,
    me: &Identity,
    code: &str,
    reads: bool,
    stop: &AtomicBool,
    answers: &AtomicU64,
    connections: &AtomicU64,
) {
    let mut rng = rand::rngs::StdRng::from_entropy();
    let record = cheap_requests(&mut rng);
    while !stop.load(Ordering::SeqCst) {
        let Ok(end) = session(addr, me, code) else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        connections.fetch_add(1, Ordering::SeqCst);
        std::thread::scope(|s| {
            let (writer, record) = (end.clone(), &record);
            s.spawn(move || {
                while !stop.load(Ordering::SeqCst) && writer.send_plain(record).is_ok() {}
                writer.shutdown();
            });
            let mut reader = end.reader();
            while reads && reader.next_payload().is_ok() {
                answers.fetch_add(1, Ordering::Relaxed);
            }
            while !stop.load(Ordering::SeqCst) && !reads {
                std::thread::sleep(Duration::from_millis(10));
            }
            // Also wakes the writer from a write the buddy does not take.
            end.shutdown();
        });
    }
}

/// Files for the honest client: about 8 MiB in files of many sizes.
fn source_tree(root: &Path) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    for i in 0..20 {
        let len = if i % 4 == 0 { rng.gen_range(1_000_000..2_000_000) } else { rng.gen_range(100..40_000) };
        write_random(&root.join(format!("d{}/f{i}.bin", i % 3)), len, &mut rng);
    }
    stamp_distinct_mtimes(root, 1_600_000_000);
}

#[test]
fn a_client_packing_records_with_cheap_requests_does_not_starve_the_buddy() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    source_tree(&home);
    let expected = manifest(&home);
    let buddy = TestBox::init(tmp.path().join("buddy"));
    let server = Server::start(&buddy);
    let honest = TestBox::init(tmp.path().join("honest"));
    honest.backup(&home);
    pair(&honest, &buddy, &server.addr);
    let attacker = Identity::from_seed(rand::random()).unwrap();
    let code = invite(&buddy);
    // Admitted once, by its code; a plain proof on every later connection.
    drop(session(&server.addr, &attacker, &code).expect("the attacker pairs"));
    let idle = peak_rss_mib(server.pid());

    let stop = AtomicBool::new(false);
    let (answers, connections) = (AtomicU64::new(0), AtomicU64::new(0));
    std::thread::scope(|s| {
        for i in 0..ATTACKERS {
            let reads = i > 0;
            let (addr, attacker, code, stop, answers, connections) =
                (&server.addr, &attacker, &code, &stop, &answers, &connections);
            s.spawn(move || attack(addr, attacker, code, reads, stop, answers, connections));
        }
        // The flood is on before the honest work starts.
        let deadline = std::time::Instant::now() + WATCHDOG;
        while answers.load(Ordering::Relaxed) < 10_000 {
            if std::time::Instant::now() > deadline {
                stop.store(true, Ordering::SeqCst);
                panic!("the flood never got going ({} answers)", answers.load(Ordering::Relaxed));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let before = answers.load(Ordering::Relaxed);

        let honest_work = || -> Result<(), String> {
            let r = Run::watched(honest.cmd(["sync"]), WATCHDOG);
            if r.code != Some(0) {
                return Err(format!("the honest sync failed under the flood\n{}", r.describe()));
            }
            let target = tmp.path().join("restored");
            let r = Run::watched(
                honest.cmd(["restore", "latest", "--target", target.to_str().unwrap(), "--from-buddy", &server.addr]),
                WATCHDOG,
            );
            if r.code != Some(0) {
                return Err(format!("the honest restore failed under the flood\n{}", r.describe()));
            }
            assert_tree_matches(&expected, &restored_path(&target, &home), "restore under the flood");
            // A new connection is served: channel handshake and hello.
            let probe = Identity::from_seed(rand::random()).unwrap();
            let fresh = invite(&buddy);
            session(&server.addr, &probe, &fresh).map_err(|e| format!("a new connection was not served: {e}"))?;
            let r = Run::watched(buddy.cmd(["--json", "clients", "list"]), WATCHDOG);
            if r.code != Some(0) || !r.stdout.contains(&attacker.public_key().to_string()) {
                return Err(format!("clients list failed under the flood\n{}", r.describe()));
            }
            Ok(())
        };
        let outcome = honest_work();
        let during = answers.load(Ordering::Relaxed) - before;
        stop.store(true, Ordering::SeqCst);
        outcome.unwrap();
        assert!(during > 10_000, "the flood stopped during the honest work ({during} answers)");
    });
    let peak = peak_rss_mib(server.pid());
    eprintln!(
        "buddy under {ATTACKERS} flooding connections ({} connections, {} answers): peak RSS {idle} MiB idle, {peak} MiB after",
        connections.load(Ordering::SeqCst),
        answers.load(Ordering::SeqCst)
    );
    assert!(
        peak <= idle + ALLOWED_GROWTH_MIB,
        "the buddy grew from {idle} to {peak} MiB under the flood (allowed: {ALLOWED_GROWTH_MIB} MiB more)"
    );
}
