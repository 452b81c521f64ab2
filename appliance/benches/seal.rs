//! What compression inside the seal (SPEC §2a) costs per chunk, on 64 MiB
//! cut by the chunker: random data (incompressible: the probe sends it raw),
//! the same without the probe (a full zstd attempt, then raw), and text.
//! The raw seal of the core is the baseline.
//!
//! `cargo bench -p pastiche-appliance --bench seal`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pastiche::sealing::{Sealer, ZSTD_LEVEL};
use pastiche_core::chunker::chunks;
use pastiche_core::seal::{seal_with_handle, MAX_SEALED};
use pastiche_core::Handle;
use rand::{RngCore, SeedableRng};

fn text(n: usize) -> Vec<u8> {
    let words: [&[u8]; 8] =
        [b"backup ", b"buddy ", b"chunk\n", b"pastiche ", b"the ", b"of ", b"restore ", b"snapshot "];
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    let mut v = Vec::with_capacity(n + 16);
    while v.len() < n {
        v.extend_from_slice(words[(rng.next_u32() % 8) as usize]);
        if rng.next_u32() % 16 == 0 {
            v.extend_from_slice(format!("{} ", rng.next_u32()).as_bytes());
        }
    }
    v.truncate(n);
    v
}

fn seal(c: &mut Criterion) {
    let mut random = vec![0u8; 64 << 20];
    rand::rngs::StdRng::seed_from_u64(1).fill_bytes(&mut random);
    let text = text(64 << 20);
    let mut group = c.benchmark_group("seal-64MiB");
    group.throughput(Throughput::Bytes(random.len() as u64));
    group.sample_size(10);
    let mut out = vec![0u8; MAX_SEALED];
    let mut frame = vec![0u8; MAX_SEALED];
    for (name, data) in [("random", &random), ("text", &text)] {
        let cuts: Vec<(usize, usize)> = chunks(data).collect();
        let handles: Vec<Handle> = cuts.iter().map(|&(o, n)| Handle::of(&data[o..o + n])).collect();
        let each = |f: &mut dyn FnMut(&[u8], &Handle) -> usize| {
            cuts.iter().zip(&handles).map(|(&(o, n), h)| f(&data[o..o + n], h)).sum::<usize>()
        };
        group.bench_function(BenchmarkId::new("raw (core)", name), |b| {
            b.iter(|| each(&mut |p, h| seal_with_handle(p, h, &mut out).unwrap().len))
        });
        let mut sealer = Sealer::new();
        group.bench_function(BenchmarkId::new("sealer", name), |b| {
            b.iter(|| each(&mut |p, h| sealer.seal(p, h, &mut out).len))
        });
        let mut zstd = zstd::bulk::Compressor::new(ZSTD_LEVEL).unwrap();
        group.bench_function(BenchmarkId::new("full zstd attempt, then raw", name), |b| {
            b.iter(|| {
                each(&mut |p, h| {
                    let n = zstd.compress_to_buffer(p, &mut frame[..p.len().saturating_sub(1)]).unwrap_or(0);
                    n + seal_with_handle(p, h, &mut out).unwrap().len
                })
            })
        });
        let sealed: usize = each(&mut |p, h| sealer.seal(p, h, &mut out).len);
        println!("{name}: {} bytes sealed from {} ({:.3})", sealed, data.len(), sealed as f64 / data.len() as f64);
    }
    group.finish();
}

criterion_group!(benches, seal);
criterion_main!(benches);
