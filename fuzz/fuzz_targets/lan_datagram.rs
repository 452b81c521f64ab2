//! Arbitrary datagrams fed to the LAN neighbour table and the pairing
//! decoder; decoded pairing messages re-encoded and compared.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pastiche_fuzz::lan_datagram(data);
});
