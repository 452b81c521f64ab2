//! Sealing tests: golden vectors from the independent Python reference
//! (tools/spec_reference.py), round trips, and every way a chunk can be bad.

extern crate std;
use std::vec;
use std::vec::Vec;

use super::*;
use crate::chunker::{chunks, tests::splitmix_bytes};
use proptest::prelude::*;

fn hex(bytes: &[u8]) -> std::string::String {
    bytes.iter().map(|b| std::format!("{b:02x}")).collect()
}

fn sealed(plain: &[u8]) -> (Sealed, Vec<u8>) {
    let mut out = vec![0u8; plain.len() + TAG_LEN];
    let s = seal_into(plain, &mut out).unwrap();
    (s, out)
}

#[test]
fn golden_short_message() {
    let (s, bytes) = sealed(b"hello pastiche");
    assert_eq!(std::format!("{}", s.handle), "e14efcb155f73f0da4795e931fde87de85c2e91a");
    assert_eq!(std::format!("{}", s.id), "11820a9744ade8ff393e2c39a7d50707a8be7888");
    assert_eq!(hex(&bytes), "bd6f80ee9b585ce3b505b17af24fa16f17e5fc5f089c33632f812f3943e0935862fe");
}

#[test]
fn golden_empty_chunk() {
    let (s, bytes) = sealed(b"");
    assert_eq!(std::format!("{}", s.handle), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    assert_eq!(std::format!("{}", s.id), "be1bdec0aa74b4dcb079943e70528096cca985f8");
    assert_eq!(hex(&bytes), "accd04cfc2cf35801af37df600a9c254e8822109");
}

#[test]
fn golden_first_chunk_of_random_megabyte() {
    use sha1::{Digest, Sha1};
    let data = splitmix_bytes(42, 1_000_000);
    let (off, len) = chunks(&data).next().unwrap();
    let (s, bytes) = sealed(&data[off..off + len]);
    assert_eq!(std::format!("{}", s.handle), "9aec1f82573f7e809715dbd2a80a72a70c4d1e26");
    assert_eq!(std::format!("{}", s.id), "a414b18ce3878e47aa45f6395fde392af2f85425");
    assert_eq!(hex(&Sha1::digest(&bytes)), "0f565c8c7fe32c02c99797e610a43e0aacd8ab89");
}

#[test]
fn in_place_equals_into() {
    let plain = splitmix_bytes(1, 5000);
    let (s, expected) = sealed(&plain);
    let mut buf = plain.clone();
    buf.resize(plain.len() + TAG_LEN, 0);
    assert_eq!(seal_in_place(&mut buf, plain.len()).unwrap(), s);
    assert_eq!(buf, expected);
    assert_eq!(open_in_place(&mut buf, &s.handle), Ok(plain.len()));
    assert_eq!(&buf[..plain.len()], &plain[..]);
}

#[test]
fn maximal_chunk_seals_and_larger_is_refused() {
    let plain = splitmix_bytes(2, MAX_CHUNK + 1);
    let mut out = vec![0u8; MAX_SEALED + 1];
    assert!(seal_into(&plain[..MAX_CHUNK], &mut out).is_ok());
    assert_eq!(seal_into(&plain, &mut out), Err(SealError::TooLarge { len: MAX_CHUNK + 1 }));
    assert_eq!(open_into(&out, &Handle([0; 20]), &mut [0u8; 8]), Err(OpenError::TooLarge { len: MAX_SEALED + 1 }));
}

#[test]
fn small_buffers_are_refused() {
    let mut out = [0u8; 10];
    assert_eq!(seal_into(b"abc", &mut out), Err(SealError::BufferTooSmall { needed: 23 }));
    let (s, bytes) = sealed(b"hello pastiche");
    assert_eq!(open_into(&bytes, &s.handle, &mut [0u8; 3]), Err(OpenError::BufferTooSmall { needed: 14 }));
}

#[test]
fn truncated_chunks_are_refused() {
    let (s, bytes) = sealed(b"hello pastiche");
    let mut out = [0u8; 64];
    for cut in 0..TAG_LEN {
        assert_eq!(open_into(&bytes[..cut], &s.handle, &mut out), Err(OpenError::Truncated { len: cut }));
    }
    for cut in TAG_LEN..bytes.len() {
        assert_eq!(open_into(&bytes[..cut], &s.handle, &mut out), Err(OpenError::BadTag));
    }
}

#[test]
fn wrong_handle_fails_the_tag() {
    let (_, bytes) = sealed(b"hello pastiche");
    let other = Handle::of(b"something else");
    assert_eq!(open_into(&bytes, &other, &mut [0u8; 64]), Err(OpenError::BadTag));
}

#[test]
fn a_chunk_sealed_under_a_foreign_handle_is_refused_after_decryption() {
    // A malicious sealer who knows handle H seals other content under H's
    // keys with a valid tag: only the final SHA-1 check can catch it.
    let h = Handle::of(b"the real content");
    let mut body = b"forged content!!".to_vec();
    h.cipher().apply_keystream(&mut body);
    let tag = tag_of(&h, &body);
    body.extend_from_slice(&tag);
    assert_eq!(verify_tag(&body, &h), Ok(()));
    assert_eq!(open_in_place(&mut body, &h), Err(OpenError::WrongHandle));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn seal_open_round_trip(plain in proptest::collection::vec(any::<u8>(), 0..20_000)) {
        let (s, bytes) = sealed(&plain);
        prop_assert_eq!(s.id, s.handle.chunk_id());
        prop_assert_eq!(s.len, bytes.len());
        let mut out = vec![0u8; plain.len()];
        prop_assert_eq!(open_into(&bytes, &s.handle, &mut out), Ok(plain.len()));
        prop_assert_eq!(out, plain);
    }

    #[test]
    fn any_flipped_bit_is_rejected(plain in proptest::collection::vec(any::<u8>(), 0..3000), pick in any::<usize>(), bit in 0u8..8) {
        let (s, mut bytes) = sealed(&plain);
        let at = pick % bytes.len();
        bytes[at] ^= 1 << bit;
        let mut out = vec![0u8; plain.len()];
        prop_assert_eq!(open_into(&bytes, &s.handle, &mut out), Err(OpenError::BadTag));
    }
}

#[test]
fn seal_with_known_handle_equals_seal_into() {
    let plain = splitmix_bytes(4, 9000);
    let (s, expected) = sealed(&plain);
    let mut out = vec![0u8; plain.len() + TAG_LEN];
    assert_eq!(seal_with_handle(&plain, &Handle::of(&plain), &mut out), Ok(s));
    assert_eq!(out, expected);
}
