//! Group payloads: round trips, determinism, and every refusal. Payloads
//! with a valid tag but a bad header, table or body are forged with keys
//! derived independently of the code under test (from the documented
//! formulas), so only the structural checks can catch them.

use aes::Aes256;
use ctr::cipher::{KeyIvInit, StreamCipher};
use hmac::{Hmac, Mac};
use pastiche_core::Handle;
use proptest::prelude::*;
use rand::{Rng, RngCore, SeedableRng};
use sha2::Sha256;

use super::*;

const SEED: [u8; 32] = [7u8; 32];

fn key() -> GroupKey {
    GroupKey::derive(&SEED)
}

fn hmac256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    m.update(msg);
    m.finalize().into_bytes().into()
}

fn id_of(plain: &[u8]) -> ChunkId {
    Handle::of(plain).chunk_id()
}

fn rng(seed: u64) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed)
}

fn random(r: &mut impl RngCore, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    r.fill_bytes(&mut v);
    v
}

/// Text-like bytes that zstd shrinks well, different for each `tag`.
fn text(tag: usize, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 64);
    let mut i = 0;
    while v.len() < len {
        v.extend_from_slice(format!("chunk {tag} line {i}: the quick brown fox\n").as_bytes());
        i += 1;
    }
    v.truncate(len);
    v
}

fn seal(key: &GroupKey, plains: &[Vec<u8>]) -> Vec<u8> {
    let chunks: Vec<(ChunkId, &[u8])> = plains.iter().map(|p| (id_of(p), p.as_slice())).collect();
    let mut out = vec![0xAA; 3]; // seal_group must clear it
    seal_group(key, &chunks, &mut out);
    out
}

fn open(key: &GroupKey, payload: &[u8]) -> Result<(Vec<GroupEntry>, Vec<u8>), GroupError> {
    let mut plain = vec![0x55; 5]; // open_group must clear it
    let table = open_group(key, payload, &mut plain)?;
    Ok((table, plain))
}

/// Seals, opens, and checks everything a reader relies on.
fn round_trip(plains: &[Vec<u8>]) -> Vec<u8> {
    let key = key();
    let payload = seal(&key, plains);
    assert!(payload.len() <= MAX_GROUP_PAYLOAD);
    let (table, plain) = open(&key, &payload).unwrap();
    assert_eq!(read_table(&payload).unwrap(), table);
    let expected: Vec<GroupEntry> = plains.iter().map(|p| GroupEntry { id: id_of(p), len: p.len() as u32 }).collect();
    assert_eq!(table, expected);
    assert_eq!(plain, plains.concat());
    for p in plains {
        let range = locate(&table, &id_of(p)).unwrap();
        assert_eq!(&plain[range], p.as_slice());
    }
    assert_eq!(locate(&table, &id_of(b"not in this group")), None);
    assert_eq!(first_mismatch(&table, &plain), None);
    payload
}

/// Builds a payload from raw parts with a valid tag, by the documented
/// formulas: a writer with the key who writes whatever it likes.
struct Forge {
    version: u8,
    kind: u8,
    n: u16,
    total: u32,
    nonce: [u8; 16],
    table: Vec<u8>,
    body: Vec<u8>,
}

impl Forge {
    fn new(kind: u8, entries: &[(ChunkId, u32)], body: Vec<u8>) -> Forge {
        let mut table = Vec::new();
        for (id, len) in entries {
            table.extend_from_slice(&id.0);
            table.extend_from_slice(&len.to_le_bytes());
        }
        let total = entries.iter().map(|e| e.1).sum();
        Forge { version: GROUP_VERSION, kind, n: entries.len() as u16, total, nonce: [3u8; 16], table, body }
    }

    /// One chunk whose plaintext is `plain`, in a body of kind `kind`.
    fn one(kind: u8, plain: &[u8], body: Vec<u8>) -> Forge {
        Forge::new(kind, &[(id_of(plain), plain.len() as u32)], body)
    }

    fn build(&self, seed: &[u8; 32]) -> Vec<u8> {
        let enc_root = hmac256(seed, b"pastiche/v1/group-enc-root");
        let mac_key = hmac256(seed, b"pastiche/v1/group-mac");
        let mut out = vec![self.version, self.kind];
        out.extend_from_slice(&self.n.to_le_bytes());
        out.extend_from_slice(&self.total.to_le_bytes());
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.table);
        let mut body = self.body.clone();
        if self.version == GROUP_VERSION_V1 {
            // Version 1: AES-256-CTR, then HMAC-SHA256 over everything.
            let enc = hmac256(&enc_root, &[b"pastiche/v1/group-enc".as_slice(), &self.nonce].concat());
            ctr::Ctr128BE::<Aes256>::new(&enc.into(), &[0u8; 16].into()).apply_keystream(&mut body);
            out.extend_from_slice(&body);
            let tag = hmac256(&mac_key, &out);
            out.extend_from_slice(&tag);
            return out;
        }
        // Version 2 (and any other number, to test refusals): AES-256-GCM,
        // IV all zero, the header and table as associated data.
        let gcm = hmac256(&enc_root, &[b"pastiche/v2/group-gcm".as_slice(), &self.nonce].concat());
        let aead = ring::aead::LessSafeKey::new(ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &gcm).unwrap());
        let iv = ring::aead::Nonce::assume_unique_for_key([0u8; 12]);
        let tag = aead.seal_in_place_separate_tag(iv, ring::aead::Aad::from(&out), &mut body).unwrap();
        out.extend_from_slice(&body);
        out.extend_from_slice(tag.as_ref());
        out
    }
}

fn frame(plain: &[u8]) -> Vec<u8> {
    let mut c = zstd::bulk::Compressor::new(3).unwrap();
    c.set_parameter(CParameter::ContentSizeFlag(true)).unwrap();
    c.compress(plain).unwrap()
}

#[test]
fn round_trip_compressible() {
    let plains: Vec<Vec<u8>> = (0..16).map(|i| text(i, 16 * 1024)).collect();
    let payload = round_trip(&plains);
    assert_eq!(payload[1], BODY_ZSTD);
    assert!(payload.len() < 64 * 1024, "{} bytes", payload.len());
}

#[test]
fn round_trip_random_falls_back_to_raw() {
    let mut r = rng(1);
    let plains: Vec<Vec<u8>> = (0..16).map(|_| random(&mut r, 16 * 1024)).collect();
    let payload = round_trip(&plains);
    assert_eq!(payload[1], BODY_RAW);
    assert_eq!(payload.len(), GROUP_HEADER_LEN + 16 * GROUP_ENTRY_LEN + 16 * 16 * 1024 + GROUP_TAG_LEN);
    // Short random chunks skip the probe: zstd is tried and loses.
    let plains: Vec<Vec<u8>> = (0..4).map(|_| random(&mut r, 1000)).collect();
    assert_eq!(round_trip(&plains)[1], BODY_RAW);
}

#[test]
fn round_trip_mixed() {
    let mut r = rng(2);
    let plains =
        vec![random(&mut r, 20_000), text(1, 30_000), random(&mut r, 5), text(2, 65_536), random(&mut r, 4096)];
    let payload = round_trip(&plains);
    assert_eq!(payload[1], BODY_ZSTD);
}

/// x86-like code: calls to a few functions (`E8` and a relative offset)
/// between runs of other bytes, about one call per 25 bytes.
fn code(seed: u64, len: usize) -> Vec<u8> {
    let mut r = rng(seed);
    let mut out = Vec::with_capacity(len + 32);
    while out.len() < len {
        let target = [0x1_0000i32, 0x2_3400, 0x9_8000][r.gen_range(0..3)];
        out.push(0xE8);
        out.extend_from_slice(&(target - out.len() as i32 - 4).to_le_bytes());
        let filler = [0x48, 0x89, 0xC7, 0x31, 0xC0, 0x5D, 0xC3, 0x90];
        out.extend((0..r.gen_range(8..40)).map(|_| filler[r.gen_range(0..filler.len())]));
    }
    out.truncate(len);
    out
}

/// The nonce [`nonce`] derives for `payload` with `settings`.
fn nonce_with(payload: &[u8], settings: Settings) -> [u8; NONCE_LEN] {
    let n = usize::from(u16::from_le_bytes([payload[2], payload[3]]));
    nonce(&key(), payload[1], settings, &payload[GROUP_HEADER_LEN..GROUP_HEADER_LEN + n * GROUP_ENTRY_LEN])
}

#[test]
fn code_is_filtered_and_compressed_fast() {
    let plains: Vec<Vec<u8>> = (0..8).map(|i| code(i, 16 * 1024)).collect();
    let payload = round_trip(&plains);
    assert_eq!(payload[1], BODY_ZSTD_X86);
    assert_eq!(payload[8..GROUP_HEADER_LEN], nonce_with(&payload, FAST), "code takes the fast strategy");
    // Filtered, the calls repeat: the body is smaller than zstd makes of
    // the same chunks unfiltered.
    let unfiltered = zstd::bulk::compress(&plains.concat(), 3).unwrap();
    let body = payload.len() - GROUP_HEADER_LEN - 8 * GROUP_ENTRY_LEN - GROUP_TAG_LEN;
    assert!(body < unfiltered.len(), "{body} filtered against {} unfiltered", unfiltered.len());
}

#[test]
fn sparse_branches_are_filtered_at_level_3_and_text_is_not_filtered() {
    // One chunk of code among text: branches enough to filter, too few for `fast`.
    let mut plains: Vec<Vec<u8>> = (0..15).map(|i| text(i, 16 * 1024)).collect();
    plains.push(code(9, 16 * 1024));
    let payload = round_trip(&plains);
    assert_eq!(payload[1], BODY_ZSTD_X86);
    assert_eq!(payload[8..GROUP_HEADER_LEN], nonce_with(&payload, LEVEL_3));
    let text_only = round_trip(&plains[..15]);
    assert_eq!(text_only[1], BODY_ZSTD);
    assert_eq!(text_only[8..GROUP_HEADER_LEN], nonce_with(&text_only, LEVEL_3));
}

#[test]
fn a_filtered_body_opens_to_the_plaintext_and_the_kind_decides() {
    let p = code(5, 30_000);
    let mut filtered = p.clone();
    assert!(bcj::encode(&mut filtered) > 0);
    let opened = open(&key(), &Forge::one(BODY_ZSTD_X86, &p, frame(&filtered)).build(&SEED)).unwrap();
    assert_eq!(opened.1, p);
    // The same frame declared unfiltered opens to the filtered bytes, whose
    // ids do not match: callers that check ids (`first_mismatch`) see it.
    let (table, plain) = open(&key(), &Forge::one(BODY_ZSTD, &p, frame(&filtered)).build(&SEED)).unwrap();
    assert_eq!(plain, filtered);
    assert_eq!(first_mismatch(&table, &plain), Some(id_of(&p)));
}

#[test]
fn round_trip_one_chunk() {
    round_trip(&[vec![42]]);
    round_trip(&[text(0, 65_536)]);
    let mut r = rng(3);
    round_trip(&[random(&mut r, 65_536)]);
}

#[test]
fn round_trip_most_chunks_and_most_plain() {
    let mut r = rng(4);
    let small: Vec<Vec<u8>> = (0..MAX_GROUP_CHUNKS)
        .map(|_| {
            let len = r.gen_range(1..=64);
            random(&mut r, len)
        })
        .collect();
    round_trip(&small);
    let texts: Vec<Vec<u8>> = (0..MAX_GROUP_CHUNKS).map(|i| text(i, 200)).collect();
    assert_eq!(round_trip(&texts)[1], BODY_ZSTD);
    // The largest payload there can be: a full table and a raw body of the
    // most plaintext.
    let full: Vec<Vec<u8>> =
        (0..MAX_GROUP_CHUNKS).map(|_| random(&mut r, MAX_GROUP_PLAIN / MAX_GROUP_CHUNKS)).collect();
    // (Version 1's longer tag sets the bound readers accept.)
    assert_eq!(round_trip(&full).len(), MAX_GROUP_PAYLOAD - (GROUP_TAG_LEN_V1 - GROUP_TAG_LEN));
    let big: Vec<Vec<u8>> = (0..5).map(|_| random(&mut r, 65_536)).collect();
    round_trip(&big);
}

#[test]
#[should_panic]
fn sealing_no_chunks_panics() {
    seal_group(&key(), &[], &mut Vec::new());
}

#[test]
#[should_panic]
fn sealing_too_many_chunks_panics() {
    let plains: Vec<Vec<u8>> = (0..=MAX_GROUP_CHUNKS).map(|i| text(i, 10)).collect();
    seal(&key(), &plains);
}

#[test]
#[should_panic]
fn sealing_too_much_plain_panics() {
    let plains: Vec<Vec<u8>> = (0..18).map(|i| text(i, 65_536)).collect();
    assert!(plains.iter().map(Vec::len).sum::<usize>() > MAX_GROUP_PLAIN);
    seal(&key(), &plains);
}

#[test]
fn determinism_and_keys() {
    let plains = vec![text(0, 3000), text(1, 5000)];
    let a = seal(&key(), &plains);
    assert_eq!(seal(&key(), &plains), a);
    let other = GroupKey::derive(&[8u8; 32]);
    let b = seal(&other, &plains);
    assert_ne!(b, a);
    // Only the key changed: same header fields and table, other nonce, body and tag.
    assert_eq!(a.len(), b.len());
    assert_eq!(a[..8], b[..8]);
    assert_ne!(a[8..24], b[8..24]);
    assert_eq!(a[24..72], b[24..72]);
    assert_eq!(open(&key(), &b), Err(GroupError::BadTag));
    assert_eq!(open(&other, &a), Err(GroupError::BadTag));
    assert_eq!(read_table(&b), read_table(&a));
}

#[test]
fn format_follows_the_documented_formulas() {
    let plains = vec![text(0, 3000), text(1, 5000)];
    let payload = seal(&key(), &plains);
    assert_eq!(payload[0], 2);
    // The nonce: HMAC(mac_key, label || kind || zstd version || level ||
    // hash log || chain log || strategy || minimum match || table), cut to 16.
    let mac_key = hmac256(&SEED, b"pastiche/v1/group-mac");
    let body_start = 24 + 2 * 24;
    let input = [
        b"pastiche/v2/group-nonce".as_slice(),
        &[payload[1]],
        &zstd_safe::version_number().to_le_bytes(),
        &[3, 15, 15, 2, 5],
        &payload[24..body_start],
    ]
    .concat();
    assert_eq!(payload[8..24], hmac256(&mac_key, &input)[..16]);
    // Header, table, body and tag as a forger who knows the formulas builds them.
    let mut nonce = [0u8; 16];
    nonce.copy_from_slice(&payload[8..24]);
    let entries: Vec<(ChunkId, u32)> = plains.iter().map(|p| (id_of(p), p.len() as u32)).collect();
    let frame = frame(&plains.concat());
    let forged = Forge { nonce, ..Forge::new(BODY_ZSTD, &entries, frame) }.build(&SEED);
    assert_eq!(forged, payload);
}

#[test]
fn key_debug_hides_the_key() {
    assert_eq!(format!("{:?}", key()), "GroupKey(..)");
}

/// A small zstd payload and a small raw one.
fn small_payloads() -> Vec<Vec<u8>> {
    let mut r = rng(5);
    let zstd = seal(&key(), &[text(0, 100), text(1, 60)]);
    assert_eq!(zstd[1], BODY_ZSTD);
    let raw = seal(&key(), &[random(&mut r, 30), random(&mut r, 20)]);
    assert_eq!(raw[1], BODY_RAW);
    vec![zstd, raw]
}

#[test]
fn every_flipped_bit_is_refused() {
    for payload in small_payloads() {
        for bit in 0..payload.len() * 8 {
            let mut bad = payload.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(open(&key(), &bad).is_err(), "bit {bit} of a kind {} payload", payload[1]);
        }
    }
}

#[test]
fn every_truncation_and_extension_is_refused() {
    for payload in small_payloads() {
        let body_start = 24 + 2 * 24;
        for len in 0..payload.len() {
            assert!(open(&key(), &payload[..len]).is_err(), "cut to {len}");
            assert_eq!(read_table(&payload[..len]).is_ok(), len >= body_start + 16, "cut to {len}");
        }
        let mut longer = payload.clone();
        longer.push(0);
        assert!(open(&key(), &longer).is_err());
    }
    assert!(matches!(read_table(&[]), Err(GroupError::Short { len: 0, .. })));
}

#[test]
fn header_and_table_refusals() {
    let p = text(0, 100);
    let ok = Forge::one(BODY_RAW, &p, p.clone());
    assert_eq!(open(&key(), &ok.build(&SEED)).unwrap().1, p);

    let cases: Vec<(Forge, GroupError)> = vec![
        (Forge { version: 3, ..Forge::one(BODY_RAW, &p, p.clone()) }, GroupError::Version(3)),
        (Forge { version: 0, ..Forge::one(BODY_RAW, &p, p.clone()) }, GroupError::Version(0)),
        (Forge { kind: 3, ..Forge::one(BODY_RAW, &p, p.clone()) }, GroupError::BodyKind(3)),
        (
            Forge { kind: BODY_ZSTD_X86, version: GROUP_VERSION_V1, ..Forge::one(BODY_RAW, &p, p.clone()) },
            GroupError::BodyKind(BODY_ZSTD_X86),
        ),
        (Forge { kind: 0xFF, ..Forge::one(BODY_RAW, &p, p.clone()) }, GroupError::BodyKind(0xFF)),
        (Forge { n: 0, table: vec![], ..Forge::one(BODY_RAW, &p, p.clone()) }, GroupError::ChunkCount(0)),
        (
            Forge { total: 99, ..Forge::one(BODY_RAW, &p, p.clone()) },
            GroupError::LengthsMismatch { header: 99, table: 100 },
        ),
        (
            Forge { total: 101, ..Forge::one(BODY_RAW, &p, p.clone()) },
            GroupError::LengthsMismatch { header: 101, table: 100 },
        ),
        (
            Forge { total: MAX_GROUP_PLAIN as u32 + 1, ..Forge::one(BODY_RAW, &p, p.clone()) },
            GroupError::PlainTooLarge(MAX_GROUP_PLAIN as u64 + 1),
        ),
        (Forge { total: u32::MAX, ..Forge::one(BODY_RAW, &p, p.clone()) }, GroupError::PlainTooLarge(u32::MAX.into())),
        (
            Forge::new(BODY_RAW, &[(id_of(&p), 100), (id_of(b""), 0)], p.clone()),
            GroupError::ChunkLength { index: 1, len: 0 },
        ),
        (Forge::new(BODY_RAW, &[(id_of(&p), 65_537)], p.clone()), GroupError::ChunkLength { index: 0, len: 65_537 }),
    ];
    for (forge, error) in cases {
        let payload = forge.build(&SEED);
        assert_eq!(read_table(&payload), Err(error.clone()));
        assert_eq!(open(&key(), &payload), Err(error));
    }

    // More chunks than a group holds, with a table that is all there.
    let entries: Vec<(ChunkId, u32)> = (0..=MAX_GROUP_CHUNKS).map(|i| (id_of(&i.to_le_bytes()), 1)).collect();
    let payload = Forge::new(BODY_RAW, &entries, vec![0; MAX_GROUP_CHUNKS + 1]).build(&SEED);
    assert_eq!(read_table(&payload), Err(GroupError::ChunkCount(MAX_GROUP_CHUNKS + 1)));
    assert_eq!(open(&key(), &payload), Err(GroupError::ChunkCount(MAX_GROUP_CHUNKS + 1)));
    // A count whose table does not fit the payload.
    let payload = Forge { n: 10, ..Forge::one(BODY_RAW, &p, p.clone()) }.build(&SEED);
    assert_eq!(read_table(&payload), Err(GroupError::Short { len: payload.len(), need: 24 + 240 + 16 }));
    let payload = Forge { n: 10, version: GROUP_VERSION_V1, ..Forge::one(BODY_RAW, &p, p.clone()) }.build(&SEED);
    assert_eq!(read_table(&payload), Err(GroupError::Short { len: payload.len(), need: 24 + 240 + 32 }));
}

/// Groups written before version 2 (AES-256-CTR and HMAC-SHA256) still open,
/// and are refused when damaged or sealed under another key.
#[test]
fn version_1_payloads_still_open() {
    let plains = [text(0, 3000), text(1, 5000)];
    let entries: Vec<(ChunkId, u32)> = plains.iter().map(|p| (id_of(p), p.len() as u32)).collect();
    let mut r = rng(9);
    let noise = random(&mut r, 700);
    let cases = [
        (Forge::new(BODY_ZSTD, &entries, frame(&plains.concat())), plains.concat()),
        (Forge::one(BODY_RAW, &noise, noise.clone()), noise.clone()),
    ];
    for (forge, plain) in cases {
        let payload = Forge { version: GROUP_VERSION_V1, ..forge }.build(&SEED);
        assert_eq!(payload[0], 1);
        let (table, opened) = open(&key(), &payload).unwrap();
        assert_eq!(opened, plain);
        assert_eq!(Some(table.clone()), read_table(&payload).ok());
        assert_eq!(first_mismatch(&table, &opened), None);
        for bit in (0..payload.len() * 8).step_by(7) {
            let mut bad = payload.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(open(&key(), &bad).is_err(), "bit {bit} of a version 1 payload");
        }
        assert_eq!(open(&GroupKey::derive(&[8u8; 32]), &payload), Err(GroupError::BadTag));
    }
}

#[test]
fn body_refusals() {
    let p = text(0, 2000);
    let f = frame(&p);
    assert!(f.len() < 200);
    assert_eq!(open(&key(), &Forge::one(BODY_ZSTD, &p, f.clone()).build(&SEED)).unwrap().1, p);

    let refused = |forge: Forge| open(&key(), &forge.build(&SEED)).unwrap_err();
    // Raw bodies of the wrong length.
    assert_eq!(refused(Forge::one(BODY_RAW, &p, p[1..].to_vec())), GroupError::RawLength { body: 1999, total: 2000 });
    assert_eq!(
        refused(Forge::one(BODY_RAW, &p, [&p[..], b"x"].concat())),
        GroupError::RawLength { body: 2001, total: 2000 }
    );
    // A frame where the kind says raw, plaintext where it says zstd.
    assert!(matches!(refused(Forge::one(BODY_RAW, &p, f.clone())), GroupError::RawLength { .. }));
    assert!(matches!(refused(Forge::one(BODY_ZSTD, &p, p.clone())), GroupError::FrameNotSmaller { .. }));
    assert_eq!(refused(Forge::one(BODY_ZSTD, &p, p[..1000].to_vec())), GroupError::NoContentSize);
    // Empty body, bytes after the frame, two frames, a cut frame.
    assert_eq!(refused(Forge::one(BODY_ZSTD, &p, vec![])), GroupError::NoContentSize);
    assert_eq!(
        refused(Forge::one(BODY_ZSTD, &p, [&f[..], &[0u8; 3]].concat())),
        GroupError::TrailingBytes { extra: 3 }
    );
    let q = text(1, 2000);
    let two = Forge::new(BODY_ZSTD, &[(id_of(&p), 2000), (id_of(&q), 2000)], [frame(&p), frame(&q)].concat());
    assert_eq!(refused(two), GroupError::WrongContentSize { declared: 2000, total: 4000 });
    let two = Forge::one(BODY_ZSTD, &p, [&f[..], &frame(b"")[..]].concat());
    assert!(matches!(refused(two), GroupError::TrailingBytes { .. }));
    for cut in 1..f.len() {
        assert!(open(&key(), &Forge::one(BODY_ZSTD, &p, f[..cut].to_vec()).build(&SEED)).is_err(), "cut {cut}");
    }
    // A frame with no content size in its header.
    let mut c = zstd::bulk::Compressor::new(3).unwrap();
    c.set_parameter(CParameter::ContentSizeFlag(false)).unwrap();
    let unsized_frame = c.compress(&p).unwrap();
    assert_eq!(refused(Forge::one(BODY_ZSTD, &p, unsized_frame)), GroupError::NoContentSize);
    // A skippable frame (declares nothing to decode).
    let mut skippable = 0x184D_2A50u32.to_le_bytes().to_vec();
    skippable.extend_from_slice(&4u32.to_le_bytes());
    skippable.extend_from_slice(b"junk");
    assert_eq!(
        refused(Forge::one(BODY_ZSTD, &p, skippable)),
        GroupError::WrongContentSize { declared: 0, total: 2000 }
    );
}

/// Rewrites the content size a frame from [`frame`] declares (a 2-byte
/// field, for contents of 256..=65,791 bytes) to `declared`.
fn redeclare(frame: &[u8], declared: u64) -> Vec<u8> {
    let descriptor = frame[4];
    assert_eq!(descriptor >> 6, 1, "a 2-byte content size");
    let start = if descriptor & 0x20 != 0 { 5 } else { 6 };
    let mut out = frame.to_vec();
    out[start..start + 2].copy_from_slice(&((declared - 256) as u16).to_le_bytes());
    out
}

#[test]
fn decompression_bombs_are_refused() {
    // A frame that declares (and makes) far more than the header's total.
    let zeros = vec![0u8; MAX_GROUP_PLAIN];
    let bomb = frame(&[&zeros[..], &zeros[..], &zeros[..]].concat());
    let p = text(0, 60_000);
    assert!(bomb.len() < 60_000);
    let err = open(&key(), &Forge::one(BODY_ZSTD, &p, bomb.clone()).build(&SEED)).unwrap_err();
    assert_eq!(err, GroupError::WrongContentSize { declared: 3 * MAX_GROUP_PLAIN as u64, total: 60_000 });
    // A frame that declares the total but produces more, or less.
    let big = text(1, 4000);
    let lying = redeclare(&frame(&big), 3000);
    let small = text(2, 3000);
    let err = open(&key(), &Forge::one(BODY_ZSTD, &small, lying).build(&SEED)).unwrap_err();
    assert!(matches!(err, GroupError::Decompress(_)), "{err:?}");
    let lying = redeclare(&frame(&big), 5000);
    let small = text(3, 5000);
    let err = open(&key(), &Forge::one(BODY_ZSTD, &small, lying).build(&SEED)).unwrap_err();
    assert!(matches!(err, GroupError::Decompress(_)), "{err:?}");
    // Opening into a buffer with room to spare does not let it through either.
    let lying = redeclare(&frame(&big), 3000);
    let payload = Forge::one(BODY_ZSTD, &text(2, 3000), lying).build(&SEED);
    let mut plain = Vec::with_capacity(MAX_GROUP_PLAIN);
    assert!(open_group(&key(), &payload, &mut plain).is_err());
    assert!(plain.is_empty());
}

#[test]
fn first_mismatch_finds_a_wrong_id() {
    let plains = [text(0, 100), text(1, 200), text(2, 300)];
    let mut entries: Vec<(ChunkId, u32)> = plains.iter().map(|p| (id_of(p), p.len() as u32)).collect();
    let good = Forge::new(BODY_RAW, &entries, plains.concat()).build(&SEED);
    let (table, plain) = open(&key(), &good).unwrap();
    assert_eq!(first_mismatch(&table, &plain), None);
    // The tag only proves the writer had the key: a wrong id opens, and is caught here.
    entries[1].0 = id_of(b"something else");
    let bad = Forge::new(BODY_RAW, &entries, plains.concat()).build(&SEED);
    let (table, plain) = open(&key(), &bad).unwrap();
    assert_eq!(first_mismatch(&table, &plain), Some(entries[1].0));
    // A handle where the id should be (one hash, not two) is wrong too.
    let once = ChunkId(Handle::of(&plains[0]).0);
    assert_eq!(first_mismatch(&[GroupEntry { id: once, len: 100 }], &plains[0]), Some(once));
    // Plaintext shorter than the table says.
    let (table, plain) = open(&key(), &good).unwrap();
    assert_eq!(first_mismatch(&table, &plain[..599]), Some(table[2].id));
}

#[test]
fn shares_examples() {
    assert_eq!(shares(0, &[1, 2, 3]), vec![0, 0, 0]);
    assert_eq!(shares(10, &[1, 1, 1]), vec![3, 3, 4]);
    assert_eq!(shares(100, &[1, 3]), vec![25, 75]);
    assert_eq!(shares(7, &[5]), vec![7]);
    assert_eq!(shares(7, &[]), Vec::<u64>::new());
    assert_eq!(shares(7, &[0, 0]), vec![0, 7]);
    assert_eq!(shares(u64::MAX, &[u32::MAX, u32::MAX]), vec![u64::MAX / 2, u64::MAX - u64::MAX / 2]);
}

/// Sets of 1..=40 chunks of 1..=9000 bytes, each random or text-like.
fn chunk_sets() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec((any::<bool>(), 1usize..9000, any::<u64>()), 1..40).prop_map(|specs| {
        specs
            .into_iter()
            .enumerate()
            .map(|(i, (is_text, len, seed))| if is_text { text(i, len) } else { random(&mut rng(seed), len) })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn shares_sum_exactly(total in any::<u64>(), lens in prop::collection::vec(any::<u32>(), 0..200)) {
        let s = shares(total, &lens);
        prop_assert_eq!(s.len(), lens.len());
        if !lens.is_empty() {
            prop_assert_eq!(s.iter().map(|&x| u128::from(x)).sum::<u128>(), u128::from(total));
        }
        prop_assert_eq!(shares(0, &lens), vec![0; lens.len()]);
        // Each share is its proportional part, give or take one byte.
        let sum: u128 = lens.iter().map(|&l| u128::from(l)).sum();
        if sum > 0 {
            for (share, &len) in s.iter().zip(&lens) {
                let exact = u128::from(total) * u128::from(len);
                let share = u128::from(*share) * sum;
                prop_assert!(share + sum > exact && share < exact + sum);
            }
        }
    }

    #[test]
    fn round_trip_random_sets(plains in chunk_sets()) {
        round_trip(&plains);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        let _ = read_table(&bytes);
        prop_assert!(open(&key(), &bytes).is_err());
    }

    #[test]
    fn arbitrary_headers_never_panic(head in prop::collection::vec(any::<u8>(), 8), body in prop::collection::vec(any::<u8>(), 0..3000)) {
        // Headers with a plausible version and kind, to get past the first checks.
        let mut bytes = head;
        bytes[0] = 1 + (bytes[0] & 1);
        bytes[1] &= 1;
        bytes[3] &= 0x03;
        bytes.extend_from_slice(&body);
        let _ = read_table(&bytes);
        prop_assert!(open(&key(), &bytes).is_err());
    }

    #[test]
    fn mutated_payloads_never_panic(
        plains in chunk_sets(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let payload = seal(&key(), &plains);
        let mut bad = payload.clone();
        for (at, value) in edits {
            let i = at.index(bad.len());
            bad[i] = value;
        }
        if truncate {
            bad.truncate(cut.index(bad.len()));
        }
        let _ = read_table(&bad);
        let opened = open(&key(), &bad);
        if bad != payload {
            prop_assert!(opened.is_err());
        }
    }

    #[test]
    fn forged_bodies_never_panic(plains in chunk_sets(), body in prop::collection::vec(any::<u8>(), 0..500), kind in 0..=BODY_ZSTD_X86) {
        // A valid tag on any body: only the body checks stand in the way.
        let entries: Vec<(ChunkId, u32)> = plains.iter().map(|p| (id_of(p), p.len() as u32)).collect();
        let mut frame_body = body.clone();
        if kind != BODY_RAW {
            // Most of the time a real frame header, so the decoder itself is exercised.
            let mut real = frame(&plains.concat());
            real.truncate(real.len().min(12));
            frame_body = [real, body].concat();
        }
        let _ = open(&key(), &Forge::new(kind, &entries, frame_body).build(&SEED));
    }
}
