extern crate std;
use std::vec;
use std::vec::Vec;

use super::ChaChaPoly;
use super::*;
use crate::identity::{Domain, Identity, PublicKey};

fn id(n: u8) -> Identity {
    Identity::from_seed([n; 32]).unwrap()
}

/// One handshake record (header and body) written by `from`.
fn write(from: &mut Handshake) -> Vec<u8> {
    let mut out = [0u8; HANDSHAKE_RECORD_LEN];
    let n = from.write(&mut out).unwrap();
    out[..n].to_vec()
}

/// The body of a record, checked against its header.
fn body(record: &[u8]) -> &[u8] {
    let len = record_len([record[0], record[1]], 1, MAX_NOISE_MESSAGE).unwrap();
    assert_eq!(record.len(), RECORD_HEADER_LEN + len);
    &record[RECORD_HEADER_LEN..]
}

/// The three messages between a client and a buddy; the established channels.
fn pair(client: &Identity, buddy: &Identity, pinned: Option<PublicKey>, limits: (usize, usize)) -> (Channel, Channel) {
    let mut c = Handshake::initiator(client, [1; 32], pinned, limits.0).unwrap();
    let mut b = Handshake::responder(buddy, [2; 32], limits.1).unwrap();
    let m1 = write(&mut c);
    b.read(body(&m1)).unwrap();
    let m2 = write(&mut b);
    c.read(body(&m2)).unwrap();
    let m3 = write(&mut c);
    b.read(body(&m3)).unwrap();
    (c.finish().unwrap(), b.finish().unwrap())
}

/// Feeds a byte stream through a record reader and channel; the plaintext.
fn receive(to: &mut Channel, wire: &[u8], step: usize) -> Result<Vec<u8>, ChannelError> {
    let mut buf = vec![0u8; RECORD_HEADER_LEN + to.recv_limit()];
    let mut reader = RecordReader::new(&mut buf, TAG_LEN + 1, to.recv_limit()).unwrap();
    let mut plain = Vec::new();
    for piece in wire.chunks(step) {
        let mut input = piece;
        while !input.is_empty() {
            let read = reader.feed(input)?;
            input = &input[read.consumed..];
            if let Some(record) = read.record {
                plain.extend_from_slice(to.open(record)?);
            }
        }
    }
    reader.finish()?;
    Ok(plain)
}

fn seal(from: &mut Channel, data: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; from.sealed_len(data.len())];
    let n = from.seal(data, &mut out).unwrap();
    assert_eq!(n, out.len());
    out
}

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[test]
fn round_trip_both_ways_with_identities_and_binding_hash() {
    let (client, buddy) = (id(1), id(2));
    let (mut c, mut b) = pair(&client, &buddy, Some(buddy.public_key()), (65_535, 4094));
    assert_eq!(c.peer(), buddy.public_key());
    assert_eq!(b.peer(), client.public_key());
    assert_eq!(c.handshake_hash(), b.handshake_hash());
    // The client sends records the buddy's 4,094-byte limit allows, and the
    // buddy records up to the client's 65,535 bytes.
    assert_eq!(c.max_plaintext(), 4094 - TAG_LEN);
    assert_eq!(b.max_plaintext(), 65_535 - TAG_LEN);
    for n in [1, 100, 4078, 4079, 70_000, 200_000] {
        let msg = data(n);
        let wire = seal(&mut c, &msg);
        assert_eq!(receive(&mut b, &wire, 997).unwrap(), msg, "{n} bytes client to buddy");
        let wire = seal(&mut b, &msg);
        assert_eq!(receive(&mut c, &wire, 1 << 20).unwrap(), msg, "{n} bytes buddy to client");
    }
    // Byte by byte, too.
    let msg = data(5000);
    let wire = seal(&mut c, &msg);
    assert_eq!(receive(&mut b, &wire, 1).unwrap(), msg);
}

#[test]
fn two_sessions_have_different_hashes_and_keys() {
    let (a, b) = (id(1), id(2));
    let (c1, _) = pair(&a, &b, None, (4096, 4096));
    let mut c = Handshake::initiator(&a, [9; 32], None, 4096).unwrap();
    let mut r = Handshake::responder(&b, [8; 32], 4096).unwrap();
    let m1 = write(&mut c);
    r.read(body(&m1)).unwrap();
    let m2 = write(&mut r);
    c.read(body(&m2)).unwrap();
    let m3 = write(&mut c);
    r.read(body(&m3)).unwrap();
    let (mut c2, mut r2) = (c.finish().unwrap(), r.finish().unwrap());
    assert_ne!(c1.handshake_hash(), c2.handshake_hash());
    // A record of one session is refused by the other.
    let (mut c1, _) = pair(&a, &b, None, (4096, 4096));
    let wire = seal(&mut c1, b"hello");
    assert_eq!(receive(&mut r2, &wire, 64), Err(ChannelError::Decrypt));
    let wire = seal(&mut c2, b"hello");
    assert_eq!(receive(&mut r2, &wire, 64), Err(ChannelError::Poisoned), "a failed channel stays failed");
}

#[test]
fn ephemeral_key_is_the_callers() {
    let mut c = Handshake::initiator(&id(1), [5; 32], None, 4096).unwrap();
    let m1 = write(&mut c);
    assert_eq!(m1.len(), RECORD_HEADER_LEN + 32, "message 1 is the ephemeral key alone");
    let expected = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from([5; 32]));
    assert_eq!(&m1[2..], expected.as_bytes());
}

#[test]
fn handshake_sizes_are_as_documented() {
    let mut c = Handshake::initiator(&id(1), [1; 32], None, 4096).unwrap();
    let mut b = Handshake::responder(&id(2), [2; 32], 4096).unwrap();
    let m1 = write(&mut c);
    b.read(body(&m1)).unwrap();
    let m2 = write(&mut b);
    c.read(body(&m2)).unwrap();
    let m3 = write(&mut c);
    assert_eq!((m1.len(), m2.len(), m3.len()), (2 + 32, 2 + 194, 2 + 162));
    assert_eq!(&m2[..2], &[0, 194]);
}

#[test]
fn every_altered_byte_of_a_record_is_refused() {
    let (mut c, _) = pair(&id(1), &id(2), None, (4096, 4096));
    let wire = seal(&mut c, &data(300));
    for i in RECORD_HEADER_LEN..wire.len() {
        let (_, mut fresh_b) = pair(&id(1), &id(2), None, (4096, 4096));
        let mut bent = wire.clone();
        bent[i] ^= 0x20;
        assert_eq!(receive(&mut fresh_b, &bent, 4096), Err(ChannelError::Decrypt), "byte {i}");
    }
}

#[test]
fn replayed_reordered_dropped_injected_and_truncated_records_are_refused() {
    let fresh = || pair(&id(1), &id(2), None, (4096, 4096));
    let records = |c: &mut Channel| -> Vec<Vec<u8>> { (0..3).map(|i| seal(c, &data(100 + i))).collect() };

    // Replay: the first record twice.
    let (mut c, mut b) = fresh();
    let r = records(&mut c);
    let wire = [r[0].clone(), r[0].clone()].concat();
    assert_eq!(receive(&mut b, &wire, 4096), Err(ChannelError::Decrypt));

    // Reorder.
    let (mut c, mut b) = fresh();
    let r = records(&mut c);
    let wire = [r[1].clone(), r[0].clone()].concat();
    assert_eq!(receive(&mut b, &wire, 4096), Err(ChannelError::Decrypt));

    // Drop the middle one.
    let (mut c, mut b) = fresh();
    let r = records(&mut c);
    let wire = [r[0].clone(), r[2].clone()].concat();
    assert_eq!(receive(&mut b, &wire, 4096), Err(ChannelError::Decrypt));

    // Inject a record made up by an attacker (right length, random bytes).
    let (mut c, mut b) = fresh();
    let r = records(&mut c);
    let mut forged = r[1].clone();
    let junk = data(forged.len() - 2);
    forged[2..].copy_from_slice(&junk);
    let wire = [r[0].clone(), forged].concat();
    assert_eq!(receive(&mut b, &wire, 4096), Err(ChannelError::Decrypt));

    // Truncate a record's body and fix up its header.
    let (mut c, mut b) = fresh();
    let r = records(&mut c);
    let mut short = r[0][..r[0].len() - 1].to_vec();
    let len = (short.len() - 2) as u16;
    short[..2].copy_from_slice(&len.to_be_bytes());
    assert_eq!(receive(&mut b, &short, 4096), Err(ChannelError::Decrypt));

    // A stream that ends inside a record.
    let (mut c, mut b) = fresh();
    let r = records(&mut c);
    assert_eq!(receive(&mut b, &r[0][..50], 4096), Err(ChannelError::Truncated));
}

#[test]
fn records_over_the_limit_or_too_short_are_refused_at_the_header() {
    let (_, mut b) = pair(&id(1), &id(2), None, (4096, 2048));
    assert_eq!(receive(&mut b, &[0x08, 0x01], 2), Err(ChannelError::RecordTooLarge { len: 2049, limit: 2048 }));
    assert_eq!(receive(&mut b, &[0x00, 0x10], 2), Err(ChannelError::RecordTooShort { len: 16 }));
    assert_eq!(receive(&mut b, &[0x00, 0x00], 2), Err(ChannelError::RecordTooShort { len: 0 }));
    assert_eq!(
        Handshake::<ChaChaPoly>::responder(&id(2), [2; 32], 511).unwrap_err(),
        ChannelError::LimitTooSmall { limit: 511 }
    );
}

#[test]
fn a_wrong_pinned_key_is_refused_before_the_client_sends_anything_more() {
    let (client, buddy, impostor) = (id(1), id(2), id(3));
    let mut c = Handshake::initiator(&client, [1; 32], Some(buddy.public_key()), 4096).unwrap();
    let mut b = Handshake::responder(&impostor, [2; 32], 4096).unwrap();
    let m1 = write(&mut c);
    b.read(body(&m1)).unwrap();
    let m2 = write(&mut b);
    assert_eq!(c.read(body(&m2)), Err(ChannelError::WrongPeer { got: impostor.public_key() }));
    assert!(!c.is_write_turn(), "the client's identity is never sent to the impostor");
    let mut out = [0u8; HANDSHAKE_RECORD_LEN];
    assert!(c.write(&mut out).is_err());
    assert!(c.finish().is_err());
}

#[test]
fn altered_handshake_messages_fail_the_handshake() {
    for msg in 0..3 {
        for i in [2usize, 20, 33, 40, 100, 150, 190] {
            let mut c = Handshake::initiator(&id(1), [1; 32], None, 4096).unwrap();
            let mut b = Handshake::responder(&id(2), [2; 32], 4096).unwrap();
            let mut altered = false;
            let mut bend = |n: usize, mut m: Vec<u8>| {
                if n == msg && i < m.len() {
                    m[i] ^= 1;
                    altered = true;
                }
                m
            };
            let m1 = bend(0, write(&mut c));
            let r1 = b.read(body(&m1));
            let m2 = bend(1, write(&mut b));
            let r2 = c.read(body(&m2));
            let r3 = if r2.is_ok() {
                let m3 = bend(2, write(&mut c));
                b.read(body(&m3))
            } else {
                Ok(()) // the client noticed: nothing more is sent
            };
            let failed = r1.is_err() || r2.is_err() || r3.is_err();
            assert_eq!(failed, altered, "message {msg} byte {i}: altered {altered}, failed {failed}");
        }
    }
}

/// An impostor that holds its own keys but claims `claimed`'s identity in
/// its payload (with its own signature, or one copied from a real handshake
/// of the victim) is refused: the signature binds the victim's key to the
/// victim's Noise static key, which the impostor cannot use without the
/// victim's seed.
#[test]
fn a_peer_presenting_someone_elses_identity_is_refused() {
    let (client, victim, impostor) = (id(1), id(2), id(3));
    // 1. The victim's key with a signature by the impostor's key.
    let mut b = Handshake::responder(&impostor, [2; 32], 4096).unwrap();
    b.payload[..32].copy_from_slice(&victim.public_key().0);
    let mut c = Handshake::initiator(&client, [1; 32], None, 4096).unwrap();
    let m1 = write(&mut c);
    b.read(body(&m1)).unwrap();
    let m2 = write(&mut b);
    assert_eq!(c.read(body(&m2)), Err(ChannelError::BadIdentity));

    // 2. The victim's real payload (key and signature over the victim's
    // static key), replayed over the impostor's own static key.
    let real = Handshake::<ChaChaPoly>::responder(&victim, [7; 32], 4096).unwrap().payload;
    let mut b = Handshake::responder(&impostor, [2; 32], 4096).unwrap();
    b.payload = real;
    let mut c = Handshake::initiator(&client, [1; 32], Some(victim.public_key()), 4096).unwrap();
    let m1 = write(&mut c);
    b.read(body(&m1)).unwrap();
    let m2 = write(&mut b);
    assert_eq!(c.read(body(&m2)), Err(ChannelError::BadIdentity));

    // 3. The same, forged by a client towards a buddy.
    let real = Handshake::<ChaChaPoly>::initiator(&victim, [7; 32], None, 4096).unwrap().payload;
    let mut c = Handshake::initiator(&impostor, [1; 32], None, 4096).unwrap();
    c.payload = real;
    let mut b = Handshake::responder(&id(4), [2; 32], 4096).unwrap();
    let m1 = write(&mut c);
    b.read(body(&m1)).unwrap();
    let m2 = write(&mut b);
    c.read(body(&m2)).unwrap();
    let m3 = write(&mut c);
    assert_eq!(b.read(body(&m3)), Err(ChannelError::BadIdentity));
    assert!(b.finish().is_err());
}

#[test]
fn the_static_key_signature_uses_its_own_domain() {
    let me = id(1);
    let statics = static_secret(&me);
    let public = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(statics));
    let payload = Handshake::<ChaChaPoly>::responder(&me, [2; 32], 4096).unwrap().payload;
    let sig = crate::Signature(payload[32..96].try_into().unwrap());
    assert_eq!(me.public_key().verify(Domain::ChannelStatic, &[public.as_bytes()], &sig), Ok(()));
    assert!(me.public_key().verify(Domain::Hello, &[public.as_bytes()], &sig).is_err());
    assert_eq!(&payload[96..], &4096u16.to_be_bytes());
}

#[test]
fn out_of_turn_and_garbage_messages_fail() {
    let mut b: Handshake = Handshake::responder(&id(2), [2; 32], 4096).unwrap();
    let mut out = [0u8; HANDSHAKE_RECORD_LEN];
    assert!(b.write(&mut out).is_err(), "the responder cannot speak first");
    let mut b: Handshake = Handshake::responder(&id(2), [2; 32], 4096).unwrap();
    assert!(b.read(&[0u8; 31]).is_err(), "short ephemeral key");
    let mut b: Handshake = Handshake::responder(&id(2), [2; 32], 4096).unwrap();
    assert!(b.read(&[7u8; 40]).is_err(), "payload in message 1");
    let mut c: Handshake = Handshake::initiator(&id(1), [1; 32], None, 4096).unwrap();
    assert!(c.read(&[0u8; 194]).is_err(), "the initiator cannot read first");
    let mut c: Handshake = Handshake::initiator(&id(1), [1; 32], None, 4096).unwrap();
    let _ = write(&mut c);
    assert!(c.read(&[0u8; 194]).is_err(), "garbage message 2");
    assert_eq!(c.read(&[0u8; 194]), Err(ChannelError::Poisoned));
}

#[test]
fn the_default_cipher_passes_the_cipher_conformance_suite() {
    crate::testing::cipher::conformance::<ChaChaPoly>();
}
