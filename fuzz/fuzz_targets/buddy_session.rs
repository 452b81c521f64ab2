//! Arbitrary frames (some re-signed by the client) fed to an authenticated
//! buddy session over an in-memory store.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pastiche_fuzz::buddy_session(data);
});
