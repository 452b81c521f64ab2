//! Links the chunker, sealing and signatures into a bare-metal image with no
//! allocator and no std. If any dependency of `pastiche-core` pulled in `std`
//! or `alloc`, this would fail to build.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use core::hint::black_box;
use cortex_m_rt::entry;
use panic_halt as _;
use pastiche_core::seal::{open_in_place, raw_sealed_len, seal_in_place, Body};
use pastiche_core::{Chunker, Domain, Identity};

static INPUT: [u8; 8192] = [0x5a; 8192];

#[entry]
fn main() -> ! {
    let data = black_box(&INPUT[..]);
    let mut chunker = Chunker::new();
    let cut = chunker.find_cut(data).unwrap_or(data.len());

    let mut buf = [0u8; raw_sealed_len(4096)];
    buf[..4096].copy_from_slice(&data[..4096]);
    let sealed = seal_in_place(&mut buf, 4096).expect("fits");
    let opened = matches!(open_in_place(&mut buf[..sealed.len], &sealed.handle), Ok(Body::Raw(_)));

    let ok = match Identity::from_seed(black_box([7; 32])) {
        Ok(me) => {
            let sig = me.sign(Domain::DeleteList, &[&sealed.id.0], [0; 16]);
            me.public_key().verify(Domain::DeleteList, &[&sealed.id.0], &sig).is_ok()
        }
        Err(_) => false,
    };

    black_box((cut, opened, ok));
    loop {
        cortex_m_rt_idle();
    }
}

fn cortex_m_rt_idle() {
    black_box(());
}
