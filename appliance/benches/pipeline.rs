//! Chunk + handle + seal over 1 GiB of random data in memory, on one core:
//! the per-core work of a backup (which runs one such loop per reading
//! thread, one file per thread, in `backup/read.rs`).
//!
//! `cargo bench -p pastiche-appliance --bench pipeline`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pastiche::chunk_stream::ChunkStream;
use pastiche_core::seal::{seal_into, MAX_SEALED};
use rand::{RngCore, SeedableRng};

fn pipeline(c: &mut Criterion) {
    let mut data = vec![0u8; 1 << 30];
    rand::rngs::StdRng::seed_from_u64(1).fill_bytes(&mut data);
    let mut group = c.benchmark_group("chunk+seal-1GiB");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.sample_size(10);
    group.bench_function(BenchmarkId::new("one-core", "random"), |b| {
        let mut sealed = vec![0u8; MAX_SEALED];
        b.iter(|| {
            let mut stream = ChunkStream::new(&data[..]);
            let mut n = 0u64;
            while let Some(chunk) = stream.next_chunk().unwrap() {
                let s = seal_into(chunk, &mut sealed).unwrap();
                n += s.id.0[0] as u64 + chunk.len() as u64;
            }
            n
        })
    });
    group.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
