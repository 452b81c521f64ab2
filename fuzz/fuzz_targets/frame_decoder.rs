//! Arbitrary bytes, fed in arbitrary slice sizes to the frame decoder; every
//! payload decoded as a message, re-encoded and decoded again.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pastiche_fuzz::frame_decoder(data);
});
