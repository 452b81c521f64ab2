//! Arbitrary bytes as the body of a sealed chunk with a valid tag, opened by
//! the core (SPEC §2a): body tag byte, frame header bounds, handle check.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pastiche_fuzz::open_chunk(data);
});
