//! Core throughput: the chunker alone, the fastcdc crate's v2020 chunker on
//! the same data for comparison, and chunk + handle + seal on one core.
//!
//! `cargo bench -p pastiche-core --bench core`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pastiche_core::chunker::chunks;
use pastiche_core::seal::{seal_into, MAX_SEALED};
use rand::{RngCore, SeedableRng};

const DATA_LEN: usize = 64 << 20;

fn random_data() -> Vec<u8> {
    let mut data = vec![0u8; DATA_LEN];
    rand::rngs::StdRng::seed_from_u64(1).fill_bytes(&mut data);
    data
}

fn chunking(c: &mut Criterion) {
    let data = random_data();
    let mut group = c.benchmark_group("chunk");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.sample_size(20);
    group.bench_function(BenchmarkId::new("pastiche-rabin", "64MiB-random"), |b| b.iter(|| chunks(&data).count()));
    group.bench_function(BenchmarkId::new("fastcdc-v2020-16KiB", "64MiB-random"), |b| {
        b.iter(|| fastcdc::v2020::FastCDC::new(&data, 2048, 16384, 65536).count())
    });
    group.finish();
}

fn sealing(c: &mut Criterion) {
    let data = random_data();
    let mut out = vec![0u8; MAX_SEALED];
    let mut group = c.benchmark_group("chunk+seal");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.sample_size(10);
    group.bench_function(BenchmarkId::new("one-core", "64MiB-random"), |b| {
        b.iter(|| {
            let mut ids = 0u64;
            for (off, len) in chunks(&data) {
                let sealed = seal_into(&data[off..off + len], &mut out).unwrap();
                ids ^= sealed.id.0[0] as u64;
            }
            ids
        })
    });
    group.finish();
}

criterion_group!(benches, chunking, sealing);
criterion_main!(benches);
