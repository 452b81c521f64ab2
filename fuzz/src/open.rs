//! The `open_chunk` target: arbitrary bytes as the body of a sealed chunk
//! (SPEC §2a), encrypted and tagged under a fixed handle the way only
//! someone who knows the handle can (a buddy cannot: it has no handles), then
//! opened by the core. Nothing may panic; a raw body is returned only if it
//! hashes to the handle; a compressed body only with its exact frame and a
//! declared size of at most one chunk.

use aes::Aes128;
use ctr::cipher::{KeyIvInit, StreamCipher};
use hmac::{Hmac, Mac};
use pastiche_core::seal::{open_in_place, open_into, Body, MAX_SEALED};
use pastiche_core::{Handle, MAX_CHUNK};
use sha1::Sha1;

fn hmac(key: &[u8], msg: &[u8]) -> [u8; 20] {
    let mut m = Hmac::<Sha1>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(msg);
    m.finalize().into_bytes().into()
}

/// `body` sealed under `handle`'s keys with a valid tag (SPEC §2).
pub fn forge(handle: &Handle, body: &[u8]) -> Vec<u8> {
    let key = hmac(&handle.0, b"pastiche/v1/enc");
    let mut sealed = body.to_vec();
    ctr::Ctr128BE::<Aes128>::new(key[..16].into(), &[0u8; 16].into()).apply_keystream(&mut sealed);
    let tag = hmac(&hmac(&handle.0, b"pastiche/v1/mac"), &sealed);
    sealed.extend_from_slice(&tag);
    sealed
}

/// The `open_chunk` target.
pub fn open_chunk(body: &[u8]) {
    let handle = Handle::of(b"the chunk the fuzzer does not have");
    let mut sealed = forge(&handle, body);
    let mut out = vec![0u8; MAX_SEALED];
    let into = open_into(&sealed, &handle, &mut out);
    match into {
        Ok(Body::Raw(plain)) => assert_eq!(Handle::of(plain), handle, "a raw body that fails the handle"),
        Ok(Body::Zstd { frame, content_size }) => {
            assert!(content_size <= MAX_CHUNK, "declared {content_size}");
            assert_eq!(frame, &body[1..]);
        }
        Err(_) => {}
    }
    assert_eq!(open_in_place(&mut sealed, &handle), into, "in place and into disagree");
}
