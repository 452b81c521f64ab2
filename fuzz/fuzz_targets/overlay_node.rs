//! Arbitrary datagrams fed to an overlay node (either overlay); decoded
//! overlay messages re-encoded and compared.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pastiche_fuzz::overlay_node(data);
});
