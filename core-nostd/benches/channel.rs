//! The secure channel's cost on one core: a whole XX handshake (both
//! sides, in memory), and sealing then opening 16 MiB in records of the
//! appliance's and the firmware's sizes.
//!
//! `cargo bench -p pastiche-core --bench channel`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pastiche_core::channel::{Channel, Handshake, HANDSHAKE_RECORD_LEN, RECORD_HEADER_LEN};
use pastiche_core::Identity;

fn handshake(limit_client: usize, limit_buddy: usize) -> (Channel, Channel) {
    let (a, b) = (Identity::from_seed([1; 32]).unwrap(), Identity::from_seed([2; 32]).unwrap());
    let mut c = Handshake::initiator(&a, [3; 32], Some(b.public_key()), limit_client).unwrap();
    let mut r = Handshake::responder(&b, [4; 32], limit_buddy).unwrap();
    let mut msg = [0u8; HANDSHAKE_RECORD_LEN];
    for _ in 0..3 {
        let (from, to) = if c.is_write_turn() { (&mut c, &mut r) } else { (&mut r, &mut c) };
        let n = from.write(&mut msg).unwrap();
        to.read(&msg[RECORD_HEADER_LEN..n]).unwrap();
    }
    (c.finish().unwrap(), r.finish().unwrap())
}

fn handshakes(c: &mut Criterion) {
    c.bench_function("channel/xx-handshake-both-sides", |b| b.iter(|| handshake(65_535, 65_535)));
}

fn transport(c: &mut Criterion) {
    let data = vec![0x5au8; 16 << 20];
    let mut group = c.benchmark_group("channel/seal+open");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.sample_size(10);
    for limit in [65_535usize, 1_022] {
        group.bench_function(BenchmarkId::new("records", limit), |b| {
            let (mut client, mut buddy) = handshake(65_535, limit);
            let mut wire = vec![0u8; client.sealed_len(data.len())];
            b.iter(|| {
                let n = client.seal(&data, &mut wire).unwrap();
                let mut at = 0;
                let mut plain = 0;
                while at < n {
                    let len = usize::from(u16::from_be_bytes([wire[at], wire[at + 1]]));
                    let body = &mut wire[at + RECORD_HEADER_LEN..at + RECORD_HEADER_LEN + len];
                    plain += buddy.open(body).unwrap().len();
                    at += RECORD_HEADER_LEN + len;
                }
                plain
            })
        });
    }
    group.finish();
}

criterion_group!(benches, handshakes, transport);
criterion_main!(benches);
