//! Chunker tests: golden vectors from the independent Python reference
//! (tools/spec_reference.py), a plain reference implementation that rolls one
//! window over the whole stream exactly as SPEC §1 words it, and properties.

extern crate std;
use std::vec::Vec;

use super::rabin::{shift_byte, window_fingerprint, MAGIC, MASK, OUT_TABLE, WINDOW};
use super::*;
use proptest::prelude::*;

/// Deterministic test bytes (splitmix64, little-endian), the same generator
/// the golden vectors were made with.
pub(crate) fn splitmix_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut s = seed;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(n);
    out
}

/// The SPEC's definition, one bitwise step per byte, never restarting.
fn reference_ends(data: &[u8]) -> Vec<usize> {
    let mut f = 0u64;
    let mut start = 0;
    let mut ends = Vec::new();
    for p in 0..data.len() {
        let old = if p >= WINDOW { data[p - WINDOW] } else { 0 };
        f = shift_byte(f) ^ data[p] as u64 ^ OUT_TABLE[old as usize];
        let len = p - start + 1;
        if (len >= MIN_CHUNK && f & MASK == MAGIC) || len == MAX_CHUNK {
            ends.push(p + 1);
            start = p + 1;
        }
    }
    if start < data.len() {
        ends.push(data.len());
    }
    ends
}

fn one_shot_ends(data: &[u8]) -> Vec<usize> {
    chunks(data).map(|(o, n)| o + n).collect()
}

/// Feeds `data` in slices whose sizes come from `sizes` (cycled).
fn streamed_ends(data: &[u8], sizes: &[usize]) -> Vec<usize> {
    let mut c = Chunker::new();
    let mut ends = Vec::new();
    let mut pos = 0;
    let mut k = 0;
    while pos < data.len() {
        let n = sizes[k % sizes.len()].max(1).min(data.len() - pos);
        k += 1;
        let mut slice = &data[pos..pos + n];
        let mut base = pos;
        while let Some(cut) = c.find_cut(slice) {
            ends.push(base + cut);
            base += cut;
            slice = &slice[cut..];
        }
        pos += n;
    }
    if c.pending() > 0 {
        ends.push(data.len());
    }
    ends
}

fn text_like(n_words: usize) -> Vec<u8> {
    let words: [&[u8]; 5] = [b"alpha ", b"beta ", b"gamma\n", b"delta ", b"pastiche "];
    let mut s: u64 = 7;
    let mut t = Vec::new();
    for _ in 0..n_words {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        t.extend_from_slice(words[((s >> 33) % 5) as usize]);
    }
    t
}

#[test]
fn golden_random_megabyte() {
    let data = splitmix_bytes(42, 1_000_000);
    let expected: Vec<usize> = std::vec![
        3618, 11103, 24026, 38176, 52072, 82896, 87501, 90779, 93074, 107363, 117994, 122693, 131364, 163398, 166998,
        232534, 257564, 262541, 269593, 314179, 320530, 325877, 343106, 360377, 383031, 386902, 404075, 419548, 428396,
        430595, 448441, 460527, 463341, 479801, 489651, 525606, 527981, 547268, 602090, 607982, 644257, 659341, 664113,
        683240, 699892, 715266, 757513, 760891, 782126, 801880, 817596, 849466, 895483, 900063, 906892, 921892, 936642,
        964031, 975715, 982986, 990696, 1000000
    ];
    assert_eq!(one_shot_ends(&data), expected);
    assert_eq!(reference_ends(&data), expected);
}

#[test]
fn golden_text_like() {
    let data = text_like(200_000);
    assert_eq!(data.len(), 1_279_880);
    let expected: Vec<usize> = std::vec![
        5401, 41689, 68066, 81442, 96315, 150307, 160410, 184103, 198568, 201939, 205899, 255864, 263931, 294742,
        329512, 351636, 365993, 377373, 383169, 391278, 411212, 476748, 482569, 500878, 509795, 537962, 541025, 543511,
        601828, 629521, 635025, 652377, 713080, 718150, 722665, 732297, 742886, 747543, 780849, 787425
    ];
    let got = one_shot_ends(&data);
    assert_eq!(got.len(), 62);
    assert_eq!(&got[..expected.len()], &expected[..]);
}

#[test]
fn reference_rolling_matches_window_definition() {
    let data = splitmix_bytes(3, 20_000);
    let mut f = 0u64;
    for p in 0..data.len() {
        let old = if p >= WINDOW { data[p - WINDOW] } else { 0 };
        f = shift_byte(f) ^ data[p] as u64 ^ OUT_TABLE[old as usize];
        if p >= WINDOW && p % 97 == 0 {
            let w: &[u8; WINDOW] = data[p + 1 - WINDOW..=p].try_into().unwrap();
            assert_eq!(f, window_fingerprint(w), "at {p}");
        }
    }
}

#[test]
fn sizes_around_every_boundary() {
    let sizes =
        [0, 1, 47, 48, 49, 1999, 2000, 2001, 2047, 2048, 2049, 4096, 65535, 65536, 65537, 131072, 131073, 300_001];
    for (i, &n) in sizes.iter().enumerate() {
        let data = splitmix_bytes(100 + i as u64, n);
        assert_eq!(one_shot_ends(&data), reference_ends(&data), "size {n}");
    }
}

#[test]
fn zeros_give_maximal_chunks() {
    let data = std::vec![0u8; 300_000];
    let ends = one_shot_ends(&data);
    assert_eq!(ends, reference_ends(&data));
    assert_eq!(ends, std::vec![65536, 131072, 196608, 262144, 300_000]);
}

#[test]
fn many_cuts_match_reference() {
    // 8 MB of random data: hundreds of cuts at every lane and block offset.
    let data = splitmix_bytes(9, 8 << 20);
    assert_eq!(one_shot_ends(&data), reference_ends(&data));
}

#[test]
fn low_entropy_data_matches_reference() {
    let mut data = text_like(100_000);
    // Splice in runs of zeros and a repeated short pattern.
    data.extend(core::iter::repeat_n(0u8, 100_000));
    data.extend(b"abcabcab".iter().cycle().take(150_000));
    data.extend(splitmix_bytes(5, 100_000));
    assert_eq!(one_shot_ends(&data), reference_ends(&data));
}

#[test]
fn streaming_in_tiny_and_odd_slices() {
    let data = splitmix_bytes(11, 1 << 20);
    let expected = reference_ends(&data);
    for sizes in [&[1usize][..], &[47, 48, 49], &[2000, 1, 3], &[4096], &[65536, 7], &[3071, 12289]] {
        assert_eq!(streamed_ends(&data, sizes), expected, "slices {sizes:?}");
    }
}

#[test]
fn reset_starts_a_new_stream() {
    let data = splitmix_bytes(12, 50_000);
    let mut c = Chunker::new();
    assert_eq!(c.find_cut(&data[..1000]), None);
    c.reset();
    assert_eq!(c.pending(), 0);
    let mut ends = Vec::new();
    let mut rest = &data[..];
    let mut base = 0;
    while let Some(cut) = c.find_cut(rest) {
        base += cut;
        ends.push(base);
        rest = &rest[cut..];
    }
    ends.push(data.len());
    assert_eq!(ends, reference_ends(&data));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_splits_equal_one_shot(
        seed in any::<u64>(),
        len in 0usize..400_000,
        sizes in proptest::collection::vec(1usize..70_000, 1..8),
    ) {
        let data = splitmix_bytes(seed, len);
        let expected = one_shot_ends(&data);
        prop_assert_eq!(streamed_ends(&data, &sizes), expected.clone());
        prop_assert_eq!(reference_ends(&data), expected);
    }

    #[test]
    fn every_chunk_within_bounds(seed in any::<u64>(), len in 1usize..600_000) {
        let data = splitmix_bytes(seed, len);
        let all: Vec<(usize, usize)> = chunks(&data).collect();
        let mut expect_offset = 0;
        for (i, &(off, n)) in all.iter().enumerate() {
            prop_assert_eq!(off, expect_offset);
            prop_assert!(n <= MAX_CHUNK);
            if i + 1 < all.len() {
                prop_assert!(n >= MIN_CHUNK);
            }
            expect_offset += n;
        }
        prop_assert_eq!(expect_offset, len);
    }
}
