//! Uniform, distinct, reproducible choices of which chunks to audit.
//!
//! The caller draws a 32-byte seed from its entropy source; the stream of
//! choices is SHA-256 in counter mode over it, so tests can replay an audit
//! exactly and the firmware needs no RNG crate.

use sha2::{Digest, Sha256};

/// A deterministic stream of uniform choices.
pub struct Sampler {
    seed: [u8; 32],
    counter: u64,
    block: [u8; 32],
    used: usize,
}

impl Sampler {
    /// A sampler whose choices are fixed by `seed`.
    pub fn new(seed: [u8; 32]) -> Sampler {
        Sampler { seed, counter: 0, block: [0; 32], used: 32 }
    }

    fn next_u64(&mut self) -> u64 {
        if self.used + 8 > self.block.len() {
            let mut h = Sha256::new();
            h.update(b"pastiche/v1/audit-sample\0");
            h.update(self.seed);
            h.update(self.counter.to_be_bytes());
            self.block = h.finalize().into();
            self.counter += 1;
            self.used = 0;
        }
        let mut word = [0u8; 8];
        word.copy_from_slice(&self.block[self.used..self.used + 8]);
        self.used += 8;
        u64::from_be_bytes(word)
    }

    /// A uniform value in `0..n` (rejection sampling, so no modulo bias).
    /// `n` must be above zero; 0 is returned for `n == 0`.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        // The largest multiple of n that fits: values at or above it would
        // favour the low residues.
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let v = self.next_u64();
            if v < zone {
                return v % n;
            }
        }
    }

    /// Fills `out` with distinct uniform indices in `0..n` (Floyd's
    /// algorithm, in increasing order) and returns how many it wrote:
    /// `min(out.len(), n)`. Every subset of that size is equally likely.
    pub fn distinct(&mut self, n: u64, out: &mut [u64]) -> usize {
        let k = (out.len() as u64).min(n) as usize;
        let mut len = 0;
        for j in (n - k as u64)..n {
            let t = self.below(j + 1);
            let pick = if out[..len].contains(&t) { j } else { t };
            // Insert in order, so the caller can walk its index once.
            let at = out[..len].partition_point(|&x| x < pick);
            out.copy_within(at..len, at + 1);
            out[at] = pick;
            len += 1;
        }
        len
    }
}
