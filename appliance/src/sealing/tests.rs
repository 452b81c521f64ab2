//! §2a in the appliance: round trips, determinism, and every refusal, on
//! chunks forged with a valid tag (by an independent derivation of the
//! §2 keys), so only the body checks can catch them.

use aes::Aes128;
use ctr::cipher::{KeyIvInit, StreamCipher};
use hmac::{Hmac, Mac};
use proptest::prelude::*;
use rand::{RngCore, SeedableRng};
use sha1::Sha1;

use super::*;
use pastiche_core::seal::{raw_sealed_len, BODY_RAW, BODY_ZSTD, MAX_SEALED};

type HmacSha1 = Hmac<Sha1>;

fn hmac(key: &[u8], msg: &[u8]) -> [u8; 20] {
    let mut m = HmacSha1::new_from_slice(key).unwrap();
    m.update(msg);
    m.finalize().into_bytes().into()
}

/// Seals `body` as is under `handle`'s keys: what a malicious sealer who
/// knows the handle can produce.
fn forge(handle: &Handle, body: &[u8]) -> Vec<u8> {
    let key = hmac(&handle.0, b"pastiche/v1/enc");
    let mut c = body.to_vec();
    ctr::Ctr128BE::<Aes128>::new(key[..16].into(), &[0u8; 16].into()).apply_keystream(&mut c);
    let tag = hmac(&hmac(&handle.0, b"pastiche/v1/mac"), &c);
    c.extend_from_slice(&tag);
    c
}

fn zstd_body(frame: &[u8]) -> Vec<u8> {
    let mut body = vec![BODY_ZSTD];
    body.extend_from_slice(frame);
    body
}

fn seal_vec(plain: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; raw_sealed_len(plain.len())];
    let s = Sealer::new().seal(plain, &Handle::of(plain), &mut out);
    out.truncate(s.len);
    out
}

/// Opens with both of the opener's ways ([`Opener::open`] into a buffer,
/// [`Opener::open_to_vec`] into a vector, fresh and one reused with room to
/// spare) and checks that they agree, so every test here covers all three.
fn open_vec(sealed: &[u8], handle: &Handle) -> Result<Vec<u8>, OpenError> {
    let mut opener = Opener::new();
    let mut plain = vec![0u8; MAX_CHUNK];
    let into = opener.open(sealed, handle, &mut plain).map(|n| plain[..n].to_vec());
    let mut fresh = Vec::new();
    let to_vec = opener.open_to_vec(sealed, handle, &mut fresh).map(|()| fresh);
    assert_eq!(into, to_vec, "open and open_to_vec disagree");
    let mut reused = Vec::with_capacity(4 * MAX_CHUNK);
    reused.extend_from_slice(b"left over");
    let reused = opener.open_to_vec(sealed, handle, &mut reused).map(|()| reused);
    assert_eq!(into, reused, "open_to_vec into a vector with room to spare disagrees");
    into
}

/// The body tag byte of a sealed chunk.
fn body_tag(sealed: &[u8], handle: &Handle) -> u8 {
    let mut body = vec![0u8; sealed.len()];
    match seal::open_into(sealed, handle, &mut body).unwrap() {
        Body::Raw(_) => BODY_RAW,
        Body::Zstd { .. } => BODY_ZSTD,
    }
}

fn random(seed: u64, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

fn text(n: usize) -> Vec<u8> {
    let words: [&[u8]; 5] = [b"backup ", b"buddy ", b"chunk\n", b"pastiche ", b"the "];
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut v = Vec::new();
    while v.len() < n {
        v.extend_from_slice(words[(rng.next_u32() % 5) as usize]);
    }
    v.truncate(n);
    v
}

/// Plain zstd frame of `plain` with its content size, as a writer makes it.
fn frame(plain: &[u8]) -> Vec<u8> {
    zstd::bulk::compress(plain, ZSTD_LEVEL).unwrap()
}

/// Where `frame`'s content size field is, and its width.
fn size_field(frame: &[u8]) -> (usize, usize) {
    let fhd = frame[4];
    let single = fhd & 0x20 != 0;
    (5 + usize::from(!single), [usize::from(single), 2, 4, 8][usize::from(fhd >> 6)])
}

/// Rewrites the content size `frame`'s header declares (same field width,
/// which must be able to hold it).
fn declaring(mut frame: Vec<u8>, size: u64) -> Vec<u8> {
    let (at, width) = size_field(&frame);
    let value = if width == 2 { size - 256 } else { size };
    assert!(width == 8 || value < 1 << (8 * width), "{size} does not fit {width} bytes");
    frame[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
    frame
}

#[test]
fn compressible_chunks_are_compressed_and_incompressible_ones_stored_raw() {
    let cases: [(&str, Vec<u8>, u8); 7] = [
        ("empty", Vec::new(), BODY_RAW),
        ("one byte", vec![b'x'], BODY_RAW),
        ("text", text(20_000), BODY_ZSTD),
        ("zeros, maximal", vec![0; MAX_CHUNK], BODY_ZSTD),
        ("random", random(1, 20_000), BODY_RAW),
        ("random, maximal", random(2, MAX_CHUNK), BODY_RAW),
        ("random, small", random(3, 3000), BODY_RAW),
    ];
    for (name, plain, expected) in cases {
        let h = Handle::of(&plain);
        let sealed = seal_vec(&plain);
        assert_eq!(body_tag(&sealed, &h), expected, "{name}");
        assert!(sealed.len() <= MAX_SEALED);
        assert_eq!(open_vec(&sealed, &h).unwrap(), plain, "{name}");
        if expected == BODY_RAW {
            // A raw body is exactly what the core's allocation-free writer makes.
            let mut raw = vec![0u8; raw_sealed_len(plain.len())];
            seal::seal_into(&plain, &mut raw).unwrap();
            assert_eq!(sealed, raw, "{name}");
        } else {
            assert!(sealed.len() < plain.len() / 4, "{name}: {} bytes", sealed.len());
        }
    }
}

#[test]
fn sealing_is_deterministic_across_sealers_and_histories() {
    let chunks = [text(30_000), vec![7; 5000], random(4, 9000), text(MAX_CHUNK)];
    let fresh: Vec<Vec<u8>> = chunks.iter().map(|c| seal_vec(c)).collect();
    let mut reused = Sealer::new();
    for (c, expected) in chunks.iter().zip(&fresh).rev() {
        let mut out = vec![0u8; raw_sealed_len(c.len())];
        let s = reused.seal(c, &Handle::of(c), &mut out);
        assert_eq!(&out[..s.len], &expected[..]);
        let mut again = vec![0u8; raw_sealed_len(c.len())];
        assert_eq!(seal_into(c, &Handle::of(c), &mut again), s);
        assert_eq!(&again[..s.len], &expected[..]);
    }
}

#[test]
fn a_chunk_whose_middle_is_incompressible_is_stored_raw() {
    let mut plain = random(5, MAX_CHUNK);
    plain[..1024].fill(0);
    assert_eq!(body_tag(&seal_vec(&plain), &Handle::of(&plain)), BODY_RAW);
}

#[test]
fn body_tags_other_than_raw_and_zstd_are_refused() {
    let plain = text(5000);
    let h = Handle::of(&plain);
    for tag in [2u8, 0x80, 0xff] {
        let mut body = vec![tag];
        body.extend_from_slice(&frame(&plain));
        assert_eq!(open_vec(&forge(&h, &body), &h), Err(OpenError::UnknownBody { tag }));
    }
}

#[test]
fn a_forged_frame_that_decodes_to_other_content_fails_the_handle_check() {
    let plain = text(5000);
    let h = Handle::of(&plain);
    let sealed = forge(&h, &zstd_body(&frame(&text(4999))));
    assert_eq!(open_vec(&sealed, &h), Err(OpenError::WrongHandle));
}

#[test]
fn oversized_declared_sizes_are_refused() {
    let plain = vec![0u8; MAX_CHUNK + 1];
    let h = Handle::of(&plain);
    let too_large = OpenError::BadFrame(FrameError::TooLarge { declared: MAX_CHUNK as u64 + 1 });
    assert_eq!(open_vec(&forge(&h, &zstd_body(&frame(&plain))), &h), Err(too_large));
    // The largest size a 2-byte field can declare.
    let lie = declaring(frame(&text(5000)), 65_791);
    let h = Handle::of(&text(5000));
    assert_eq!(
        open_vec(&forge(&h, &zstd_body(&lie)), &h),
        Err(OpenError::BadFrame(FrameError::TooLarge { declared: 65_791 }))
    );
}

#[test]
fn frames_that_produce_more_or_less_than_they_declare_are_refused() {
    let plain = text(5000);
    let h = Handle::of(&plain);
    for declared in [4999, 4000, 5001, 6000] {
        let lie = declaring(frame(&plain), declared);
        let err = open_vec(&forge(&h, &zstd_body(&lie)), &h).unwrap_err();
        assert!(
            matches!(err, OpenError::BadFrame(FrameError::Corrupt | FrameError::SizeMismatch { .. })),
            "{declared}: {err:?}"
        );
    }
}

#[test]
fn decompression_bombs_are_refused_without_decoding_past_a_chunk() {
    // 16 MiB of zeros compresses to a few hundred bytes. Declaring it is
    // refused from the header; declaring a legal size makes the decoder
    // stop at the end of a 64 KiB buffer; not declaring it is refused too.
    let bomb = vec![0u8; 16 << 20];
    let honest = frame(&bomb);
    assert!(honest.len() < 1024, "{}", honest.len());
    let h = Handle::of(&bomb[..MAX_CHUNK]);
    let declared = OpenError::BadFrame(FrameError::TooLarge { declared: 16 << 20 });
    assert_eq!(open_vec(&forge(&h, &zstd_body(&honest)), &h), Err(declared));
    let lying = declaring(honest, MAX_CHUNK as u64);
    assert_eq!(open_vec(&forge(&h, &zstd_body(&lying)), &h), Err(OpenError::BadFrame(FrameError::Corrupt)));
    let mut undeclared = zstd::bulk::Compressor::new(ZSTD_LEVEL).unwrap();
    undeclared.set_parameter(CParameter::ContentSizeFlag(false)).unwrap();
    let undeclared = undeclared.compress(&bomb).unwrap();
    assert_eq!(open_vec(&forge(&h, &zstd_body(&undeclared)), &h), Err(OpenError::BadFrame(FrameError::NoContentSize)));
}

#[test]
fn frames_without_a_content_size_are_refused() {
    let plain = text(5000);
    let h = Handle::of(&plain);
    let mut c = zstd::bulk::Compressor::new(ZSTD_LEVEL).unwrap();
    c.set_parameter(CParameter::ContentSizeFlag(false)).unwrap();
    let frame = c.compress(&plain).unwrap();
    assert_eq!(open_vec(&forge(&h, &zstd_body(&frame)), &h), Err(OpenError::BadFrame(FrameError::NoContentSize)));
}

#[test]
fn truncated_frames_are_refused_at_every_cut() {
    let plain = text(20_000);
    let h = Handle::of(&plain);
    let frame = frame(&plain);
    let (at, width) = size_field(&frame);
    for cut in 0..frame.len() {
        let err = open_vec(&forge(&h, &zstd_body(&frame[..cut])), &h).unwrap_err();
        let expected = if cut < at + width { FrameError::NotZstd } else { FrameError::Incomplete };
        assert_eq!(err, OpenError::BadFrame(expected), "cut at {cut}");
    }
}

#[test]
fn trailing_bytes_after_the_frame_are_refused() {
    let plain = text(20_000);
    let h = Handle::of(&plain);
    let one = frame(&plain);
    let mut garbage = one.clone();
    garbage.push(0);
    assert_eq!(
        open_vec(&forge(&h, &zstd_body(&garbage)), &h),
        Err(OpenError::BadFrame(FrameError::TrailingBytes { extra: 1 }))
    );
    // Two frames that together decode to the chunk, and a skippable frame
    // after the real one: still not "one complete frame".
    let (a, b) = plain.split_at(10_000);
    let mut two = declaring(frame(a), 20_000);
    let second = frame(b);
    two.extend_from_slice(&second);
    assert_eq!(
        open_vec(&forge(&h, &zstd_body(&two)), &h),
        Err(OpenError::BadFrame(FrameError::TrailingBytes { extra: second.len() }))
    );
    let mut skippable = one;
    skippable.extend_from_slice(&0x184D_2A50u32.to_le_bytes());
    skippable.extend_from_slice(&4u32.to_le_bytes());
    skippable.extend_from_slice(b"pad!");
    assert_eq!(
        open_vec(&forge(&h, &zstd_body(&skippable)), &h),
        Err(OpenError::BadFrame(FrameError::TrailingBytes { extra: 12 }))
    );
}

#[test]
fn a_plaintext_buffer_too_small_is_an_error_not_a_panic() {
    let plain = text(5000);
    let sealed = seal_vec(&plain);
    let mut small = vec![0u8; 4999];
    let err = Opener::new().open(&sealed, &Handle::of(&plain), &mut small);
    assert_eq!(err, Err(OpenError::BufferTooSmall { needed: 5000 }));
}

/// Chunks mixing runs, text and noise, so both bodies come up.
fn mixed() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![
            (any::<u8>(), 1usize..3000).prop_map(|(b, n)| vec![b; n]),
            (0usize..3000).prop_map(text),
            (any::<u64>(), 1usize..3000).prop_map(|(s, n)| random(s, n)),
        ],
        0..12,
    )
    .prop_map(|parts| {
        let mut v: Vec<u8> = parts.concat();
        v.truncate(MAX_CHUNK);
        v
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn seal_open_round_trip(plain in mixed()) {
        let h = Handle::of(&plain);
        let sealed = seal_vec(&plain);
        prop_assert!(sealed.len() <= raw_sealed_len(plain.len()));
        prop_assert_eq!(&seal_vec(&plain), &sealed);
        prop_assert_eq!(open_vec(&sealed, &h).unwrap(), plain);
    }

    #[test]
    fn any_flipped_bit_is_refused(plain in mixed(), pick in any::<usize>(), bit in 0u8..8) {
        let h = Handle::of(&plain);
        let mut sealed = seal_vec(&plain);
        let at = pick % sealed.len();
        sealed[at] ^= 1 << bit;
        prop_assert_eq!(open_vec(&sealed, &h), Err(OpenError::BadTag));
    }

    #[test]
    fn arbitrary_frames_never_panic_or_open_to_wrong_content(
        garbage in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let plain = text(3000);
        let h = Handle::of(&plain);
        let mut f = frame(&plain);
        let keep = f.len().min(9);
        f.truncate(keep);
        f.extend_from_slice(&garbage);
        if let Ok(opened) = open_vec(&forge(&h, &zstd_body(&f)), &h) {
            prop_assert_eq!(opened, plain);
        }
    }
}

#[test]
fn the_probe_tells_noise_from_text_zeros_and_code() {
    assert!(looks_incompressible(&random(6, PROBE_LEN)));
    assert!(looks_incompressible(&random(7, MAX_CHUNK)));
    assert!(!looks_incompressible(&random(8, PROBE_LEN - 1)), "small chunks are always tried");
    assert!(!looks_incompressible(&text(MAX_CHUNK)));
    assert!(!looks_incompressible(&vec![0; MAX_CHUNK]));
    let code = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    let middle = code.len() / 2;
    assert!(!looks_incompressible(&code[middle..middle + MAX_CHUNK]));
}
