//! Arbitrary bytes fed to the buddy's end of the secure channel: handshake
//! records, then transport records and the frames they carry.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = pastiche_fuzz::channel_responder(data);
});
