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
    let mut out = vec![0u8; raw_sealed_len(plain.len())];
    let s = seal_into(plain, &mut out).unwrap();
    (s, out)
}

/// Opens into a fresh buffer and returns the plaintext of a raw body.
fn open_raw(sealed: &[u8], handle: &Handle) -> Result<Vec<u8>, OpenError> {
    let mut out = vec![0u8; sealed.len()];
    match open_into(sealed, handle, &mut out)? {
        Body::Raw(plain) => Ok(plain.to_vec()),
        other => panic!("expected a raw body, got {other:?}"),
    }
}

/// Seals `body` (tag byte and payload) under `handle` with a valid tag, the
/// way a malicious sealer who knows the handle could.
fn forge(handle: &Handle, body: &[u8]) -> Vec<u8> {
    let mut bytes = body.to_vec();
    handle.cipher().apply_keystream(&mut bytes);
    let tag = tag_of(handle, &bytes);
    bytes.extend_from_slice(&tag);
    bytes
}

/// A zstd frame built by hand (RFC 8878): single segment, a 4-byte content
/// size field declaring `declared`, and one RLE block of `run` copies of
/// `byte`. Real decoders accept it; the core never decodes it.
fn rle_frame(declared: u32, byte: u8, run: u32) -> Vec<u8> {
    let mut f = ZSTD_MAGIC.to_le_bytes().to_vec();
    f.push(0b1010_0000); // 4-byte content size, single segment
    f.extend_from_slice(&declared.to_le_bytes());
    let block = (run << 3) | (1 << 1) | 1; // RLE, last block
    f.extend_from_slice(&block.to_le_bytes()[..3]);
    f.push(byte);
    f
}

#[test]
fn golden_short_message() {
    let (s, bytes) = sealed(b"hello pastiche");
    assert_eq!(std::format!("{}", s.handle), "e14efcb155f73f0da4795e931fde87de85c2e91a");
    assert_eq!(std::format!("{}", s.id), "11820a9744ade8ff393e2c39a7d50707a8be7888");
    assert_eq!(hex(&bytes), "d56289ee98170cf2a702ac70f94281ab548f62877282e7067062afee91f2b6355dbe2d");
}

#[test]
fn golden_empty_chunk() {
    let (s, bytes) = sealed(b"");
    assert_eq!(std::format!("{}", s.handle), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    assert_eq!(std::format!("{}", s.id), "be1bdec0aa74b4dcb079943e70528096cca985f8");
    assert_eq!(hex(&bytes), "d2c7018ce70131304454559b17c2dc049c9f7d2c57");
}

#[test]
fn golden_first_chunk_of_random_megabyte() {
    use sha1::{Digest, Sha1};
    let data = splitmix_bytes(42, 1_000_000);
    let (off, len) = chunks(&data).next().unwrap();
    let (s, bytes) = sealed(&data[off..off + len]);
    assert_eq!(std::format!("{}", s.handle), "9aec1f82573f7e809715dbd2a80a72a70c4d1e26");
    assert_eq!(std::format!("{}", s.id), "a414b18ce3878e47aa45f6395fde392af2f85425");
    assert_eq!(hex(&Sha1::digest(&bytes)), "8a0c5675da98d26e75cd2830536c38096674ef68");
}

#[test]
fn in_place_equals_into() {
    let plain = splitmix_bytes(1, 5000);
    let (s, expected) = sealed(&plain);
    let mut buf = plain.clone();
    buf.resize(raw_sealed_len(plain.len()), 0);
    assert_eq!(seal_in_place(&mut buf, plain.len()).unwrap(), s);
    assert_eq!(buf, expected);
    assert_eq!(open_in_place(&mut buf, &s.handle), Ok(Body::Raw(&plain[..])));
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
    assert_eq!(seal_into(b"abc", &mut out), Err(SealError::BufferTooSmall { needed: 24 }));
    assert_eq!(seal_in_place(&mut out, 3), Err(SealError::BufferTooSmall { needed: 24 }));
    let (s, bytes) = sealed(b"hello pastiche");
    assert_eq!(open_into(&bytes, &s.handle, &mut [0u8; 14]), Err(OpenError::BufferTooSmall { needed: 15 }));
}

#[test]
fn truncated_chunks_are_refused() {
    let (s, bytes) = sealed(b"hello pastiche");
    let mut out = [0u8; 64];
    for cut in 0..MIN_SEALED {
        assert_eq!(open_into(&bytes[..cut], &s.handle, &mut out), Err(OpenError::Truncated { len: cut }));
    }
    for cut in MIN_SEALED..bytes.len() {
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
    let mut bytes = forge(&h, b"\x00forged content!!");
    assert_eq!(verify_tag(&bytes, &h), Ok(()));
    assert_eq!(open_in_place(&mut bytes, &h), Err(OpenError::WrongHandle));
}

#[test]
fn body_tag_bytes_other_than_raw_and_zstd_are_refused() {
    let h = Handle::of(b"content");
    for tag in 2..=u8::MAX {
        let mut body = vec![tag];
        body.extend_from_slice(b"content");
        assert_eq!(open_raw(&forge(&h, &body), &h), Err(OpenError::UnknownBody { tag }));
    }
}

#[test]
fn a_compressed_body_opens_to_its_frame_and_declared_size() {
    let plain = [b'a'; 1000];
    let frame = rle_frame(1000, b'a', 1000);
    let h = Handle::of(&plain);
    let mut out = vec![0u8; raw_sealed_len(frame.len())];
    let s = seal_frame(&h, plain.len(), &frame, &mut out).unwrap();
    assert_eq!((s.handle, s.id, s.len), (h, h.chunk_id(), 1 + frame.len() + TAG_LEN));
    out.truncate(s.len);
    let mut body = vec![0u8; out.len()];
    assert_eq!(open_into(&out, &h, &mut body), Ok(Body::Zstd { frame: &frame, content_size: 1000 }));
    assert_eq!(open_in_place(&mut out, &h), Ok(Body::Zstd { frame: &frame, content_size: 1000 }));
    assert_eq!(check_plain(&h, &plain), Ok(()));
    assert_eq!(check_plain(&h, &plain[1..]), Err(OpenError::WrongHandle));
}

#[test]
fn seal_frame_refuses_frames_section_2a_stores_raw_or_never_writes() {
    let h = Handle::of(&[b'a'; 1000]);
    let mut out = vec![0u8; 2000];
    let frame = rle_frame(1000, b'a', 1000);
    let not_smaller = FrameError::NotSmaller { frame: frame.len(), plain: frame.len() };
    assert_eq!(seal_frame(&h, frame.len(), &frame, &mut out), Err(SealError::BadFrame(not_smaller)));
    let mismatch = FrameError::SizeMismatch { declared: 1000, produced: 999 };
    assert_eq!(seal_frame(&h, 999, &frame, &mut out), Err(SealError::BadFrame(mismatch)));
    let mut skippable = frame.clone();
    skippable[0] = 0x50;
    skippable[3] = 0x18;
    assert_eq!(seal_frame(&h, 1000, &skippable, &mut out), Err(SealError::BadFrame(FrameError::NotZstd)));
    assert_eq!(seal_frame(&h, MAX_CHUNK + 1, &frame, &mut out), Err(SealError::TooLarge { len: MAX_CHUNK + 1 }));
    let needed = raw_sealed_len(frame.len());
    assert_eq!(seal_frame(&h, 1000, &frame, &mut out[..needed - 1]), Err(SealError::BufferTooSmall { needed }));
}

#[test]
fn compressed_bodies_with_bad_headers_are_refused_before_any_decoding() {
    let h = Handle::of(b"whatever");
    let open = |frame: &[u8]| {
        let mut body = vec![BODY_ZSTD];
        body.extend_from_slice(frame);
        open_raw(&forge(&h, &body), &h)
    };
    let bad = |e| Err(OpenError::BadFrame(e));
    // A bomb: one RLE block of 16 MiB declaring it, and one declaring 1 byte
    // more than a chunk.
    assert_eq!(open(&rle_frame(16 << 20, 0, 16 << 20)), bad(FrameError::TooLarge { declared: 16 << 20 }));
    assert_eq!(open(&rle_frame(65537, 0, 65537)), bad(FrameError::TooLarge { declared: 65537 }));
    assert_eq!(open(b""), bad(FrameError::NotZstd));
    assert_eq!(open(&rle_frame(10, 0, 10)[..8]), bad(FrameError::NotZstd));
    let mut no_size = rle_frame(10, 0, 10);
    no_size[4] = 0b0000_0000; // no content size, not single segment
    assert_eq!(open(&no_size), bad(FrameError::NoContentSize));
    let mut reserved = rle_frame(10, 0, 10);
    reserved[4] |= 0x08;
    assert_eq!(open(&reserved), bad(FrameError::ReservedBit));
    let mut dictionary = rle_frame(10, 0, 10);
    dictionary[4] |= 0x01;
    assert_eq!(open(&dictionary), bad(FrameError::Dictionary));
}

#[test]
fn every_content_size_field_width_is_read() {
    let magic = ZSTD_MAGIC.to_le_bytes();
    let header = |descriptor: u8, rest: &[u8]| {
        let mut f = magic.to_vec();
        f.push(descriptor);
        f.extend_from_slice(rest);
        declared_content_size(&f)
    };
    assert_eq!(header(0b0010_0000, &[200]), Ok(200));
    assert_eq!(header(0b0100_0000, &[0x58, 0x00, 0x10]), Ok(0x1000 + 256));
    assert_eq!(header(0b0110_0000, &[0xff, 0xff]), Err(FrameError::TooLarge { declared: 65535 + 256 }));
    assert_eq!(header(0b0110_0000, &[0x00, 0xff]), Ok(0xff00 + 256));
    assert_eq!(header(0b1010_0000, &[0, 0, 1, 0]), Ok(MAX_CHUNK));
    assert_eq!(header(0b1010_0000, &[1, 0, 1, 0]), Err(FrameError::TooLarge { declared: 65537 }));
    assert_eq!(header(0b1110_0000, &[0xff; 8]), Err(FrameError::TooLarge { declared: u64::MAX }));
    assert_eq!(header(0b1100_0000, &[0x58, 7, 0, 0, 0, 0, 0, 0, 0]), Ok(7));
    assert_eq!(header(0b1100_0000, &[0x58, 7, 0, 0, 0]), Err(FrameError::NotZstd));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn seal_open_round_trip(plain in proptest::collection::vec(any::<u8>(), 0..20_000)) {
        let (s, bytes) = sealed(&plain);
        prop_assert_eq!(s.id, s.handle.chunk_id());
        prop_assert_eq!(s.len, bytes.len());
        prop_assert_eq!(open_raw(&bytes, &s.handle), Ok(plain));
    }

    #[test]
    fn any_flipped_bit_is_rejected(plain in proptest::collection::vec(any::<u8>(), 0..3000), pick in any::<usize>(), bit in 0u8..8) {
        let (s, mut bytes) = sealed(&plain);
        let at = pick % bytes.len();
        bytes[at] ^= 1 << bit;
        prop_assert_eq!(open_raw(&bytes, &s.handle), Err(OpenError::BadTag));
    }

    #[test]
    fn frame_headers_never_panic_and_bound_the_size(bytes in proptest::collection::vec(any::<u8>(), 0..20)) {
        let mut frame = ZSTD_MAGIC.to_le_bytes().to_vec();
        frame.extend_from_slice(&bytes);
        if let Ok(size) = declared_content_size(&frame) {
            prop_assert!(size <= MAX_CHUNK);
        }
        let _ = declared_content_size(&bytes);
    }
}

#[test]
fn seal_with_known_handle_equals_seal_into() {
    let plain = splitmix_bytes(4, 9000);
    let (s, expected) = sealed(&plain);
    let mut out = vec![0u8; raw_sealed_len(plain.len())];
    assert_eq!(seal_with_handle(&plain, &Handle::of(&plain), &mut out), Ok(s));
    assert_eq!(out, expected);
}
