//! What the secure channel's cipher costs: 64 MiB sealed and opened in
//! full-size records (65,519 bytes of plaintext each), with core's portable
//! ChaCha20-Poly1305 (what the firmware runs) and with `ring`'s (what the
//! appliance runs, `pastiche::channel`). Same bytes on the wire; the
//! difference is the CPU each end of a restore spends.
//!
//! `cargo bench -p pastiche-appliance --bench channel`

use clatter::crypto::cipher::ChaChaPoly;
use clatter::traits::Cipher;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pastiche::channel::RingChaChaPoly;
use pastiche_core::channel::{Channel, Handshake, HANDSHAKE_RECORD_LEN, MAX_NOISE_MESSAGE, RECORD_HEADER_LEN};
use pastiche_core::Identity;

const TOTAL: usize = 64 << 20;

/// Two ends of one established channel, both with cipher `C`.
fn pair<C: Cipher>() -> (Channel<C>, Channel<C>) {
    let (client, buddy) = (Identity::from_seed([1; 32]).unwrap(), Identity::from_seed([2; 32]).unwrap());
    let mut c = Handshake::<C>::initiator(&client, [3; 32], None, MAX_NOISE_MESSAGE).unwrap();
    let mut b = Handshake::<C>::responder(&buddy, [4; 32], MAX_NOISE_MESSAGE).unwrap();
    let mut msg = [0u8; HANDSHAKE_RECORD_LEN];
    for turn in 0..3 {
        let (from, to) = if turn % 2 == 0 { (&mut c, &mut b) } else { (&mut b, &mut c) };
        let n = from.write(&mut msg).unwrap();
        to.read(&msg[RECORD_HEADER_LEN..n]).unwrap();
    }
    (c.finish().unwrap(), b.finish().unwrap())
}

/// Seals 64 MiB into records, then opens every record on the other end.
fn run<C: Cipher>(sender: &mut Channel<C>, receiver: &mut Channel<C>, plain: &[u8], wire: &mut [u8]) -> usize {
    let n = sender.seal(plain, wire).unwrap();
    let mut at = 0;
    let mut opened = 0;
    while at < n {
        let len = usize::from(u16::from_be_bytes([wire[at], wire[at + 1]]));
        let body = &mut wire[at + RECORD_HEADER_LEN..at + RECORD_HEADER_LEN + len];
        opened += receiver.open(body).unwrap().len();
        at += RECORD_HEADER_LEN + len;
    }
    opened
}

fn cipher(c: &mut Criterion) {
    let plain: Vec<u8> = (0..TOTAL).map(|i| (i * 7 + i / 251) as u8).collect();
    let mut group = c.benchmark_group("channel-seal-and-open-64MiB");
    group.throughput(Throughput::Bytes(TOTAL as u64));
    group.sample_size(10);
    let (mut s, mut r) = pair::<ChaChaPoly>();
    let mut wire = vec![0u8; s.sealed_len(TOTAL)];
    group.bench_function(BenchmarkId::from_parameter("core (RustCrypto)"), |b| {
        b.iter(|| run(&mut s, &mut r, &plain, &mut wire))
    });
    let (mut s, mut r) = pair::<RingChaChaPoly>();
    group.bench_function(BenchmarkId::from_parameter("appliance (ring)"), |b| {
        b.iter(|| run(&mut s, &mut r, &plain, &mut wire))
    });
    group.finish();
}

criterion_group!(benches, cipher);
criterion_main!(benches);
