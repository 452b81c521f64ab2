extern crate std;

use std::vec;
use std::vec::Vec;

use super::*;
use crate::wire::{encode_frame, Frame, Message, DECODER_BUFFER_LEN};

fn frame_of(msg: &Message<'_>) -> Vec<u8> {
    let mut out = vec![0u8; DECODER_BUFFER_LEN];
    let n = encode_frame(msg, &mut out).unwrap();
    out.truncate(n);
    out
}

#[test]
fn golden_bytes() {
    let mut ids = [0xaa; 40];
    ids[20..].fill(0xbb);
    let req = Message::AuditRequest(AuditRequest { nonce: AuditNonce([0x11; 32]), ids: IdList::new(&ids).unwrap() });
    let mut want = vec![0x00, 0x00, 0x00, 0x4a, 0x40];
    want.extend([0x11; 32]);
    want.push(0x28);
    want.extend([0xaa; 20]);
    want.extend([0xbb; 20]);
    assert_eq!(frame_of(&req), want);

    let mut proofs = [0u8; 96];
    proofs[..32].fill(0xcc);
    proofs[64..].fill(0xdd);
    let answer = Message::AuditProofs(AuditProofs { held: &[0b101], proofs: &proofs });
    let mut want = vec![0x00, 0x00, 0x00, 0x64, 0x41, 0x01, 0x05, 0x60];
    want.extend([0xcc; 32]);
    want.extend([0x00; 32]);
    want.extend([0xdd; 32]);
    assert_eq!(frame_of(&answer), want);
}

#[test]
fn the_writer_writes_what_the_encoder_writes() {
    for n in [0usize, 1, 3, 8, 9, 63, MAX_AUDIT_IDS] {
        let mut out = vec![0xeeu8; DECODER_BUFFER_LEN];
        let mut w = AuditProofsWriter::new(&mut out, n).unwrap();
        let mut held = vec![0u8; n.div_ceil(8)];
        let mut proofs = vec![0u8; n * PROOF_LEN];
        for i in (0..n).filter(|i| i % 3 != 1) {
            let p = ProofDigest([i as u8 + 1; 32]);
            w.set(i, &p);
            held[i / 8] |= 1 << (i % 8);
            proofs[i * PROOF_LEN..(i + 1) * PROOF_LEN].copy_from_slice(&p.0);
        }
        w.set(n, &ProofDigest([9; 32])); // past the end: ignored
        let len = w.finish();
        let msg = Message::AuditProofs(AuditProofs { held: &held, proofs: &proofs });
        assert_eq!(out[..len], frame_of(&msg)[..], "n = {n}");
        let decoded = Message::decode(Frame::new_checked(&out[..len]).unwrap().payload()).unwrap();
        let Message::AuditProofs(p) = decoded else { panic!("not proofs") };
        assert_eq!(p.len(), n);
        for i in 0..n {
            assert_eq!(p.answer(i).is_some(), i % 3 != 1, "slot {i}");
        }
        assert_eq!(p.answer(n), None);
    }
    let mut small = [0u8; 40];
    assert!(matches!(AuditProofsWriter::new(&mut small, 2), Err(WireError::BufferTooSmall)));
    let mut out = vec![0u8; DECODER_BUFFER_LEN];
    assert!(matches!(AuditProofsWriter::new(&mut out, MAX_AUDIT_IDS + 1), Err(WireError::BadLength { .. })));
}

#[test]
fn out_of_bounds_audits_are_refused_both_ways() {
    let ids = vec![7u8; 20 * (MAX_AUDIT_IDS + 1)];
    let too_many = AuditRequest { nonce: AuditNonce([0; 32]), ids: IdList::new(&ids).unwrap() };
    let mut out = vec![0u8; DECODER_BUFFER_LEN];
    let bad = WireError::BadLength { field: "ids", len: ids.len() };
    assert_eq!(Message::AuditRequest(too_many).encode(&mut out), Err(bad));
    // Hand-made payload: a decoder refuses it too.
    let mut payload = vec![0x40];
    payload.extend([0u8; 32]);
    payload.extend([0x94, 0x0a]); // 1300 bytes: 65 ids
    payload.extend(&ids);
    assert_eq!(Message::decode(&payload), Err(bad));

    let proofs = [1u8; 64];
    let cases: [(&[u8], &[u8]); 5] = [
        (&[0b11], &proofs[..63]), // not whole proofs
        (&[0b11, 0], &proofs),    // bitmap too long
        (&[], &proofs),           // bitmap too short
        (&[0b111], &proofs),      // a bit past the last id
        (&[0b01], &proofs),       // a slot not held that is not zero
    ];
    for (held, proofs) in cases {
        let msg = AuditProofs { held, proofs };
        assert!(Message::AuditProofs(msg).encode(&mut out).is_err(), "{held:?} with {} bytes", proofs.len());
        let mut payload = vec![0x41, held.len() as u8];
        payload.extend(held);
        payload.push(proofs.len() as u8);
        payload.extend(proofs);
        assert!(Message::decode(&payload).is_err(), "{held:?} with {} bytes decoded", proofs.len());
    }
    let big = vec![0u8; PROOF_LEN * (MAX_AUDIT_IDS + 1)];
    let held = vec![0u8; (MAX_AUDIT_IDS + 1).div_ceil(8)];
    assert!(Message::AuditProofs(AuditProofs { held: &held, proofs: &big }).encode(&mut out).is_err());
}
