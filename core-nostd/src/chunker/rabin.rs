//! Rabin fingerprint arithmetic over GF(2) for SPEC §1.
//!
//! Everything here is computed at compile time (`const fn`), so the chunker's
//! tables live in flash on the firmware and cost nothing at start-up.

/// The irreducible polynomial P (degree 63), from LBFS.
pub const POLY: u64 = 0xBFE6_B8A5_BF37_8D83;
/// Degree of [`POLY`].
pub const DEGREE: u32 = 63;
/// Bytes in the sliding window.
pub const WINDOW: usize = 48;
/// A cut is allowed where `fingerprint & MASK == MAGIC`.
pub const MASK: u64 = 0x3FFF;
/// The boundary value.
pub const MAGIC: u64 = 0x78;

/// `a mod POLY` for a polynomial given as up to 128 bits.
pub const fn mod_poly(mut a: u128) -> u64 {
    let p = POLY as u128;
    let mut bit = 127;
    while bit >= DEGREE as i32 {
        if a & (1u128 << bit) != 0 {
            a ^= p << (bit - DEGREE as i32);
        }
        bit -= 1;
    }
    a as u64
}

/// `(a * x^8) mod POLY` for a reduced `a`, bit by bit (the reference step).
pub const fn shift_byte(a: u64) -> u64 {
    mod_poly((a as u128) << 8)
}

/// `(b * x^(8*k)) mod POLY`.
const fn byte_times_x8k(b: u8, k: usize) -> u64 {
    let mut r = b as u64;
    let mut i = 0;
    while i < k {
        r = shift_byte(r);
        i += 1;
    }
    r
}

/// Reduction table for the rolling step on a shifted-out top byte.
///
/// For `g < 2^63`, `g * x^8 mod P == (g << 8) ^ SHIFT_TABLE[g >> 55]` in
/// 64-bit arithmetic: the entry reduces the 8 bits pushed past degree 62 and
/// also clears the one of them that a 64-bit shift keeps in bit 63.
pub const SHIFT_TABLE: [u64; 256] = {
    let mut t = [0u64; 256];
    let mut j = 0;
    while j < 256 {
        t[j] = mod_poly((j as u128) << DEGREE) ^ (((j as u64) & 1) << 63);
        j += 1;
    }
    t
};

/// `OUT_TABLE[b] = b * x^(8*WINDOW) mod P`: what a byte leaving the window
/// contributes after the step that pushes it out.
pub const OUT_TABLE: [u64; 256] = {
    let mut t = [0u64; 256];
    let mut j = 0;
    while j < 256 {
        t[j] = byte_times_x8k(j as u8, WINDOW);
        j += 1;
    }
    t
};

/// The fingerprint of a whole 48-byte window, computed the slow, obvious way
/// straight from the SPEC's definition. Used by tests as the reference.
pub fn window_fingerprint(window: &[u8; WINDOW]) -> u64 {
    let mut acc: u128 = 0;
    for &b in window.iter() {
        acc = (mod_poly(acc) as u128) << 8 | b as u128;
    }
    mod_poly(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_step_matches_bitwise_step() {
        let mut g: u64 = 0x1234_5678_9abc_def0 & ((1 << 63) - 1);
        for i in 0..10_000u64 {
            let b = (i.wrapping_mul(0x9E37_79B9) >> 7) as u8;
            let slow = shift_byte(g) ^ b as u64;
            let fast = (g << 8) ^ SHIFT_TABLE[(g >> 55) as usize] ^ b as u64;
            assert_eq!(slow, fast);
            assert!(fast < 1 << 63);
            g = fast;
        }
    }

    #[test]
    fn out_table_is_linear_in_the_byte() {
        for a in 0..=255u8 {
            for b in [0u8, 1, 0x80, 0xff, 0x5a] {
                assert_eq!(OUT_TABLE[(a ^ b) as usize], OUT_TABLE[a as usize] ^ OUT_TABLE[b as usize]);
            }
        }
        assert_eq!(OUT_TABLE[0], 0);
        assert_eq!(OUT_TABLE[1], byte_times_x8k(1, 48));
    }

    #[test]
    fn mod_poly_of_poly_is_zero() {
        assert_eq!(mod_poly(POLY as u128), 0);
        assert_eq!(mod_poly((POLY as u128) << 5), 0);
        assert_eq!(mod_poly(1 << 62), 1 << 62);
    }
}
