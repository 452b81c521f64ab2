//! The random source, seeded once per boot.
//!
//! QEMU's AN386 has no TRNG, so the seed is a SHA-1 over what varies between
//! boots and cannot be predicted exactly from outside: the host's wall clock
//! (SYS_TIME) and centisecond clock (SYS_CLOCK), the LAN9118's 25 MHz
//! free-running counter (driven by QEMU's virtual clock in nanoseconds), and
//! SysTick samples taken around semihosting traps, whose host-side latency
//! jitters. Later output is SHA-1 over the seed, a counter and a fresh
//! counter sample, so two draws never repeat.
//!
//! This is good enough for protocol nonces under emulation and is documented
//! as such; a real board must mix in its hardware TRNG (and should for the
//! identity seed, which is drawn once, when the disk is formatted).

use sha1::{Digest, Sha1};

use super::{clock, lan9118, semihosting};

/// A SHA-1 based generator over a per-boot seed.
pub struct Entropy {
    seed: [u8; 20],
    counter: u64,
}

impl Entropy {
    /// Gathers the boot seed.
    pub fn gather(nic: &lan9118::Lan9118) -> Entropy {
        let mut h = Sha1::new();
        h.update((semihosting::time_s() as u64).to_le_bytes());
        for _ in 0..32 {
            h.update(clock::systick_now().to_le_bytes());
            h.update((semihosting::clock_cs() as u32).to_le_bytes());
            h.update(nic.free_run().to_le_bytes());
        }
        Entropy { seed: h.finalize().into(), counter: 0 }
    }

    /// Fills `out` with fresh bytes.
    pub fn fill(&mut self, out: &mut [u8]) {
        for block in out.chunks_mut(20) {
            self.counter += 1;
            let mut h = Sha1::new();
            h.update(self.seed);
            h.update(self.counter.to_le_bytes());
            h.update(clock::systick_now().to_le_bytes());
            let d: [u8; 20] = h.finalize().into();
            block.copy_from_slice(&d[..block.len()]);
        }
    }

    /// 32 fresh bytes.
    pub fn bytes32(&mut self) -> [u8; 32] {
        let mut b = [0u8; 32];
        self.fill(&mut b);
        b
    }
}
