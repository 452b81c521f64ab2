//! The cases every implementation of the channel's cipher must pass: a host
//! may bring its own ChaCha20-Poly1305 for [`crate::channel`] (the appliance
//! brings `ring`'s), and [`conformance`] proves it is the same cipher as the
//! portable default the firmware runs, byte for byte, refusals included,
//! and that a channel built on it talks to a default one both ways.

use std::vec;
use std::vec::Vec;

use clatter::bytearray::{ByteArray, SensitiveByteArray};
use clatter::crypto::cipher::ChaChaPoly;
use clatter::traits::Cipher;

use crate::channel::{
    record_len, Channel, ChannelError, Handshake, RecordReader, HANDSHAKE_RECORD_LEN, MAX_NOISE_MESSAGE,
    RECORD_HEADER_LEN, TAG_LEN,
};
use crate::identity::Identity;

/// Runs every case against the cipher `C`; panics on the first
/// disagreement with the default, naming the case.
pub fn conformance<C: Cipher<Key = SensitiveByteArray<[u8; 32]>>>() {
    same_bytes_as_the_default::<C>();
    every_altered_byte_is_refused::<C>();
    channels_talk_to_default_channels::<C>();
}

fn bytes(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8).collect()
}

fn key(seed: u8) -> SensitiveByteArray<[u8; 32]> {
    SensitiveByteArray::from_slice(&bytes(32, seed))
}

/// Sealing gives the default's bytes for every length across the SIMD
/// block sizes, nonces near the ends of the counter, with and without
/// associated data; each side opens the other's, copying and in place.
fn same_bytes_as_the_default<C: Cipher<Key = SensitiveByteArray<[u8; 32]>>>() {
    let lengths = (0..=300).chain([511, 512, 513, 1023, 4095, 4096, 16_383, 16_384, 65_519]);
    for (i, n) in lengths.enumerate() {
        let k = key(i as u8);
        let nonce = [0, 1, 2, u64::from(u32::MAX), u64::MAX - 1][i % 5];
        let ad = bytes(i % 3 * 16, 9);
        let plain = bytes(n, i as u8);
        let mut want = vec![0u8; n + TAG_LEN];
        ChaChaPoly::encrypt(&k, nonce, &ad, &plain, &mut want).expect("the default seals");
        let mut got = vec![0u8; n + TAG_LEN];
        C::encrypt(&k, nonce, &ad, &plain, &mut got).expect("the cipher under test seals");
        assert_eq!(got, want, "seal: {n} bytes, nonce {nonce}");
        let mut in_place = plain.clone();
        in_place.resize(n + TAG_LEN, 0);
        assert_eq!(C::encrypt_in_place(&k, nonce, &ad, &mut in_place, n).ok(), Some(n + TAG_LEN));
        assert_eq!(in_place, want, "seal in place: {n} bytes");

        let mut opened = vec![0u8; n];
        C::decrypt(&k, nonce, &ad, &want, &mut opened).expect("opens the default's seal");
        assert_eq!(opened, plain, "open: {n} bytes");
        let mut in_place = want.clone();
        assert_eq!(C::decrypt_in_place(&k, nonce, &ad, &mut in_place, n + TAG_LEN).ok(), Some(n));
        assert_eq!(&in_place[..n], &plain[..], "open in place: {n} bytes");
        ChaChaPoly::decrypt(&k, nonce, &ad, &got, &mut opened).expect("the default opens its seal");
    }
}

/// A flipped bit anywhere (text or tag), another nonce, other associated
/// data, another key or a cut tag: refused, both copying and in place.
fn every_altered_byte_is_refused<C: Cipher<Key = SensitiveByteArray<[u8; 32]>>>() {
    let (k, nonce, ad, plain) = (key(1), 7, bytes(5, 3), bytes(200, 4));
    let mut sealed = vec![0u8; plain.len() + TAG_LEN];
    ChaChaPoly::encrypt(&k, nonce, &ad, &plain, &mut sealed).expect("the default seals");
    let refused = |k: &SensitiveByteArray<[u8; 32]>, nonce: u64, ad: &[u8], sealed: &[u8]| {
        let mut out = vec![0u8; sealed.len().saturating_sub(TAG_LEN)];
        let copying = sealed.len() < TAG_LEN || C::decrypt(k, nonce, ad, sealed, &mut out).is_err();
        let mut in_place = sealed.to_vec();
        let len = in_place.len();
        let in_place = len < TAG_LEN || C::decrypt_in_place(k, nonce, ad, &mut in_place, len).is_err();
        copying && in_place
    };
    for at in 0..sealed.len() {
        for bit in [0x01, 0x80] {
            let mut bad = sealed.clone();
            bad[at] ^= bit;
            assert!(refused(&k, nonce, &ad, &bad), "a flipped bit at byte {at} was accepted");
        }
    }
    assert!(refused(&k, nonce + 1, &ad, &sealed), "another nonce was accepted");
    assert!(refused(&k, nonce, &ad[1..], &sealed), "other associated data was accepted");
    assert!(refused(&key(2), nonce, &ad, &sealed), "another key was accepted");
    assert!(refused(&k, nonce, &ad, &sealed[..sealed.len() - 1]), "a cut tag was accepted");
}

fn identity(n: u8) -> Identity {
    Identity::from_seed([n; 32]).expect("a valid seed")
}

fn write<A: Cipher>(hs: &mut Handshake<A>) -> Vec<u8> {
    let mut out = [0u8; HANDSHAKE_RECORD_LEN];
    let n = hs.write(&mut out).expect("writes its handshake message");
    let len = record_len([out[0], out[1]], 1, MAX_NOISE_MESSAGE).expect("a valid header");
    out[RECORD_HEADER_LEN..n][..len].to_vec()
}

/// A handshake between an `A` initiator and a `B` responder.
fn pair<A: Cipher, B: Cipher>() -> (Channel<A>, Channel<B>) {
    let (client, buddy) = (identity(1), identity(2));
    let mut c =
        Handshake::<A>::initiator(&client, [1; 32], Some(buddy.public_key()), MAX_NOISE_MESSAGE).expect("an initiator");
    let mut b = Handshake::<B>::responder(&buddy, [2; 32], 4094).expect("a responder");
    b.read(&write(&mut c)).expect("message 1");
    c.read(&write(&mut b)).expect("message 2");
    b.read(&write(&mut c)).expect("message 3");
    let (c, b) = (c.finish().expect("client channel"), b.finish().expect("buddy channel"));
    assert_eq!(c.handshake_hash(), b.handshake_hash(), "both ends hash the same handshake");
    (c, b)
}

fn seal<A: Cipher>(from: &mut Channel<A>, data: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; from.sealed_len(data.len())];
    let n = from.seal(data, &mut out).expect("seals");
    out.truncate(n);
    out
}

fn receive<B: Cipher>(to: &mut Channel<B>, wire: &[u8]) -> Result<Vec<u8>, ChannelError> {
    let mut buf = vec![0u8; RECORD_HEADER_LEN + to.recv_limit()];
    let mut reader = RecordReader::new(&mut buf, TAG_LEN + 1, to.recv_limit())?;
    let mut plain = Vec::new();
    let mut input = wire;
    while !input.is_empty() {
        let read = reader.feed(input)?;
        input = &input[read.consumed..];
        if let Some(record) = read.record {
            plain.extend_from_slice(to.open(record)?);
        }
    }
    reader.finish()?;
    Ok(plain)
}

/// Records pass both ways whichever end runs `C`, and an altered record
/// ends the session on either end.
fn channels_talk_to_default_channels<C: Cipher>() {
    fn exchange<A: Cipher, B: Cipher>() {
        let (mut c, mut b) = pair::<A, B>();
        for n in [1, 4078, 4079, 70_000, 200_000] {
            let data = bytes(n, n as u8);
            assert_eq!(receive(&mut b, &seal(&mut c, &data)), Ok(data.clone()), "client to buddy, {n} bytes");
            assert_eq!(receive(&mut c, &seal(&mut b, &data)), Ok(data), "buddy to client, {n} bytes");
        }
        let mut wire = seal(&mut c, b"commit");
        let last = wire.len() - 1;
        wire[last] ^= 1;
        assert_eq!(receive(&mut b, &wire), Err(ChannelError::Decrypt), "an altered record is refused");
    }
    exchange::<C, ChaChaPoly>();
    exchange::<ChaChaPoly, C>();
}
