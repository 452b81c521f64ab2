//! Links the chunker, sealing and signatures into a bare-metal image with no
//! allocator and no std. If any dependency of `pastiche-core` pulled in `std`
//! or `alloc`, this would fail to build.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use core::hint::black_box;
use cortex_m_rt::entry;
use panic_halt as _;
use pastiche_core::channel::{ChaChaPoly, Handshake, HANDSHAKE_RECORD_LEN, RECORD_HEADER_LEN};
use pastiche_core::seal::{open_in_place, raw_sealed_len, seal_in_place, Body};
use pastiche_core::{Chunker, Domain, Identity};

static INPUT: [u8; 8192] = [0x5a; 8192];

/// A Noise handshake between two identities and one record each way.
fn channel_round_trip() -> bool {
    let (Ok(a), Ok(b)) = (Identity::from_seed(black_box([1; 32])), Identity::from_seed(black_box([2; 32]))) else {
        return false;
    };
    let (Ok(mut c), Ok(mut r)) = (
        Handshake::<ChaChaPoly>::initiator(&a, [3; 32], None, 4094),
        Handshake::<ChaChaPoly>::responder(&b, [4; 32], 4094),
    ) else {
        return false;
    };
    let mut msg = [0u8; HANDSHAKE_RECORD_LEN];
    for _ in 0..3 {
        let (from, to) = if c.is_write_turn() { (&mut c, &mut r) } else { (&mut r, &mut c) };
        let Ok(n) = from.write(&mut msg) else { return false };
        if to.read(&msg[RECORD_HEADER_LEN..n]).is_err() {
            return false;
        }
    }
    let (Ok(mut c), Ok(mut r)) = (c.finish(), r.finish()) else { return false };
    let mut record = [0u8; 64];
    let Ok(n) = c.seal(b"ping", &mut record) else { return false };
    matches!(r.open(&mut record[RECORD_HEADER_LEN..n]), Ok(b"ping"))
}

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

    black_box((cut, opened, ok, channel_round_trip()));
    loop {
        cortex_m_rt_idle();
    }
}

fn cortex_m_rt_idle() {
    black_box(());
}
