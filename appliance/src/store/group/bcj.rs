//! xz's x86 branch filter ("BCJ x86") over a whole buffer, for the bodies
//! of groups (docs/STORE.md, "Group records").
//!
//! x86 code calls and jumps with a 32-bit offset relative to the next
//! instruction (`E8` or `E9`, then four bytes). Calls to one function from
//! many places carry different offsets but the same target; writing the
//! target instead makes those five-byte strings repeat, and zstd finds them:
//! shared libraries compress about 4% smaller. The filter is xz's (public
//! domain, by Igor Pavlov and Lasse Collin) with a start offset of 0, byte
//! for byte: the tests check it against the `lzma-rust2` port. It maps any
//! input to one of the same length, and [`decode`] undoes [`encode`] exactly
//! whatever the bytes are, code or not; on data that is not code it changes
//! a few bytes per MiB (text: none), which costs nothing measurable.
//!
//! xz's loop looks at every byte; this one jumps from one `E8`/`E9` byte to
//! the next with `memchr2` (about 5 GB/s on shared libraries on this
//! project's machine, against about 1 GB/s for a byte loop), since every
//! new group of a backup goes through it.

/// Whether mask state `i` (the last three bytes' `E8`/`E9` history) allows a conversion.
const MASK_TO_ALLOWED_STATUS: [bool; 8] = [true, true, true, false, true, false, false, false];
/// Which byte of the offset mask state `i` looks at.
const MASK_TO_BIT_NUMBER: [u8; 8] = [0, 1, 2, 2, 3, 3, 3, 3];
/// xz counts positions from the end of the first possible instruction.
const FIRST_POSITION: u32 = 5;

/// Whether `b` is the top byte of a plausible near offset (0x00 or 0xFF).
fn near_top(b: u8) -> bool {
    b == 0x00 || b == 0xFF
}

/// Converts the relative branch offsets in `buf` to absolute targets, in
/// place. Returns how many branches it converted: about one per 100 bytes
/// of x86 code, a few per MiB of other data, none in text.
pub fn encode(buf: &mut [u8]) -> usize {
    filter(buf, true)
}

/// Undoes [`encode`] in place.
pub fn decode(buf: &mut [u8]) {
    filter(buf, false);
}

/// xz's `x86_code` over all of `buf`, as one call with start offset 0 and
/// the state fresh: the last four bytes are never an offset's start.
fn filter(buf: &mut [u8], encoding: bool) -> usize {
    let Some(end) = buf.len().checked_sub(5) else { return 0 };
    let mut converted = 0;
    // Where the last E8/E9 byte was (`None`: long enough ago not to matter),
    // and the mask of the E8/E9 bytes among the three bytes before it.
    let mut prev: Option<usize> = None;
    let mut prev_mask: u32 = 0;
    let mut i = 0;
    while i <= end {
        match memchr::memchr2(0xE8, 0xE9, &buf[i..=end]) {
            Some(skip) => i += skip,
            None => break,
        }
        match prev.map(|p| i - p) {
            Some(gap) if gap <= 3 => {
                prev_mask = (prev_mask << (gap - 1)) & 7;
                if prev_mask != 0 {
                    let bit = usize::from(MASK_TO_BIT_NUMBER[prev_mask as usize]);
                    if !MASK_TO_ALLOWED_STATUS[prev_mask as usize] || near_top(buf[i + 4 - bit]) {
                        prev = Some(i);
                        prev_mask = (prev_mask << 1) | 1;
                        i += 1;
                        continue;
                    }
                }
            }
            _ => prev_mask = 0,
        }
        prev = Some(i);
        if !near_top(buf[i + 4]) {
            prev_mask = (prev_mask << 1) | 1;
            i += 1;
            continue;
        }
        // Positions wrap at 2^32, as xz's do.
        let at = FIRST_POSITION.wrapping_add(i as u32);
        let mut src = u32::from_le_bytes([buf[i + 1], buf[i + 2], buf[i + 3], buf[i + 4]]);
        let dest = loop {
            let dest = if encoding { src.wrapping_add(at) } else { src.wrapping_sub(at) };
            if prev_mask == 0 {
                break dest;
            }
            let index = u32::from(MASK_TO_BIT_NUMBER[prev_mask as usize]) * 8;
            if !near_top((dest >> (24 - index)) as u8) {
                break dest;
            }
            src = dest ^ ((1u32 << (32 - index)) - 1);
        };
        // The top byte becomes 0x00 or 0xFF from bit 24 of the result.
        let top = if dest & (1 << 24) == 0 { 0x00 } else { 0xFF };
        buf[i + 1..i + 4].copy_from_slice(&dest.to_le_bytes()[..3]);
        buf[i + 4] = top;
        converted += 1;
        i += 5;
    }
    converted
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Write;

    /// The `lzma-rust2` port of xz's filter, encoding all of `data` in one stream.
    fn reference(data: &[u8]) -> Vec<u8> {
        let mut w = lzma_rust2::filter::bcj::BcjWriter::new_x86(Vec::new(), 0);
        w.write_all(data).unwrap();
        w.finish().unwrap()
    }

    /// Code-like bytes: calls and jumps to a few targets, runs of E8/E9
    /// bytes (the mask cases), and filler.
    fn code_like(seed: u64, len: usize) -> Vec<u8> {
        use rand::{Rng, SeedableRng};
        let mut r = rand::rngs::StdRng::seed_from_u64(seed);
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            match r.gen_range(0..6) {
                0 | 1 => {
                    let target: i32 = [0x1000, 0x2340, 0x8_0000][r.gen_range(0..3)];
                    out.push(if r.gen_bool(0.8) { 0xE8 } else { 0xE9 });
                    out.extend_from_slice(&(target - out.len() as i32 - 4).to_le_bytes());
                }
                2 => out.extend(std::iter::repeat_n(0xE8, r.gen_range(1..5))),
                3 => out.extend_from_slice(&[0xE9, 0xFF, 0xFF, 0xFF, 0xFF, 0x00]),
                _ => out.extend((0..r.gen_range(1..12)).map(|_| r.gen::<u8>())),
            }
        }
        out.truncate(len);
        out
    }

    #[test]
    fn encodes_as_xz_does_and_decodes_back() {
        for (seed, len) in [(1, 0), (2, 4), (3, 5), (4, 6), (5, 100), (6, 70_000), (7, 1 << 20)] {
            let data = code_like(seed, len);
            let mut buf = data.clone();
            let converted = encode(&mut buf);
            assert_eq!(buf, reference(&data), "seed {seed}, {len} bytes");
            assert!(len < 1000 || converted > len / 40, "code-like data converts: {converted} in {len}");
            decode(&mut buf);
            assert_eq!(buf, data);
        }
    }

    #[test]
    fn text_is_left_as_it_is() {
        let text = "fn main() { println!(\"hello\"); }\n".repeat(1000).into_bytes();
        let mut buf = text.clone();
        assert_eq!(encode(&mut buf), 0);
        assert_eq!(buf, text);
    }

    proptest! {
        #[test]
        fn any_bytes_match_xz_and_round_trip(data in proptest::collection::vec(
            prop_oneof![Just(0xE8u8), Just(0xE9u8), Just(0x00u8), Just(0xFFu8), any::<u8>()], 0..400)) {
            let mut buf = data.clone();
            encode(&mut buf);
            prop_assert_eq!(&buf, &reference(&data));
            decode(&mut buf);
            prop_assert_eq!(buf, data);
        }
    }
}
