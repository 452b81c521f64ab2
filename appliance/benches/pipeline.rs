//! Chunk + handle + seal over 1 GiB of random data in memory, on one core
//! (everything on the calling thread) and with 1 and 2 sealing workers.
//!
//! `cargo bench -p pastiche-appliance --bench pipeline`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pastiche::pipeline::chunk_and_seal;
use rand::{RngCore, SeedableRng};

fn pipeline(c: &mut Criterion) {
    let mut data = vec![0u8; 1 << 30];
    rand::rngs::StdRng::seed_from_u64(1).fill_bytes(&mut data);
    let mut group = c.benchmark_group("chunk+seal-1GiB");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.sample_size(10);
    for (label, workers) in [("one-core", 0), ("1-worker", 1), ("2-workers", 2)] {
        group.bench_function(BenchmarkId::new(label, "random"), |b| {
            b.iter(|| {
                let mut n = 0u64;
                chunk_and_seal(&data[..], workers, |c| n += c.sealed.len() as u64).unwrap();
                n
            })
        });
    }
    group.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
