extern crate std;

use std::vec;
use std::vec::Vec;

use proptest::prelude::*;

use super::message::MAX_NEED_BITMAP;
use super::*;
use crate::identity::{Identity, NodeId, PublicKey, Signature};
use crate::seal::{ChunkId, MAX_SEALED};

const IDS: [u8; 60] = {
    let mut ids = [0u8; 60];
    let mut i = 0;
    while i < 60 {
        ids[i] = i as u8;
        i += 1;
    }
    ids
};
const SEALED: [u8; 40] = [0xc5; 40];
const SIG: Signature = Signature([0x5a; 64]);

/// One message of every kind, some with maximal fields.
fn samples<'a>(big: &'a [u8], ids: &'a [u8]) -> Vec<Message<'a>> {
    let list = IdList::new(ids).unwrap();
    vec![
        Message::Hello(Hello {
            version: PROTOCOL_VERSION,
            client_key: PublicKey([1; 32]),
            client_node: NodeId([2; 16]),
            client_nonce: [3; 32],
        }),
        Message::Challenge(Challenge { buddy_key: PublicKey([4; 32]), buddy_nonce: [5; 32] }),
        Message::Proof(Proof { signature: SIG }),
        Message::Welcome(Welcome { quota_bytes: u64::MAX, used_bytes: 1 << 40, committed_epoch: 127, staged_epoch: 0 }),
        Message::Offer(Offer { ids: list }),
        Message::Offer(Offer { ids: IdList::default() }),
        Message::Need(Need { bitmap: &[0b101] }),
        Message::PutChunk(PutChunk { id: ChunkId([6; 20]), sealed: &SEALED }),
        Message::PutChunk(PutChunk { id: ChunkId([6; 20]), sealed: &big[..MAX_SEALED] }),
        Message::Flush,
        Message::Flushed(Flushed { stored: 300 }),
        Message::GetChunk(GetChunk { id: ChunkId([7; 20]) }),
        Message::Chunk(Chunk { id: ChunkId([8; 20]), sealed: &big[..MIN_SEALED] }),
        Message::PutObject(PutObject { epoch: 9, name: [9; 20], data: b"object", signature: SIG }),
        Message::PutObject(PutObject { epoch: u64::MAX, name: [9; 20], data: &big[..MAX_OBJECT_DATA], signature: SIG }),
        Message::DeleteList(DeleteList { epoch: 10, ids: list, signature: SIG }),
        Message::PutRoot(PutRoot { epoch: 11, data: b"root", signature: SIG }),
        Message::Commit(Commit { epoch: 12, objects: 1, deletes: 3, staged: [0x5a; 32], signature: SIG }),
        Message::Staged(Staged { epoch: 12 }),
        Message::Committed(Committed { epoch: 12 }),
        Message::Abort(Abort { epoch: 13 }),
        Message::GetObject(GetObject { name: [14; 20] }),
        Message::Object(Object { name: [14; 20], data: b"" }),
        Message::GetRoot,
        Message::Root(Root { epoch: 15, data: b"r" }),
        Message::DropAll(DropAll { epoch: 16, signature: SIG }),
        Message::Dropped,
        Message::Ok,
        Message::Error(ErrorMsg { code: ErrorCode::QuotaExceeded, message: "quota exceeded: 10 GiB" }),
        Message::AuditRequest(AuditRequest { nonce: crate::audit::AuditNonce([17; 32]), ids: list }),
        Message::AuditProofs(AuditProofs { held: &[0b110], proofs: &AUDIT_PROOFS }),
        Message::GetNotice,
        Message::Notice(DropNotice { seq: 18, dropped_at: 1_800_000_000, bytes: 1 << 30, reason: 1 }),
    ]
}

/// Three proofs, the first not held.
const AUDIT_PROOFS: [u8; 96] = {
    let mut p = [0u8; 96];
    let mut i = 32;
    while i < 96 {
        p[i] = i as u8;
        i += 1;
    }
    p
};

use crate::seal::MIN_SEALED;

fn frame_of(msg: &Message<'_>) -> Vec<u8> {
    let mut out = vec![0u8; DECODER_BUFFER_LEN];
    let n = encode_frame(msg, &mut out).unwrap();
    out.truncate(n);
    out
}

fn payload_of(msg: &Message<'_>) -> Vec<u8> {
    frame_of(msg).split_off(FRAME_HEADER_LEN)
}

fn big() -> Vec<u8> {
    (0..MAX_FRAME_PAYLOAD).map(|i| (i * 7) as u8).collect()
}

#[test]
fn every_kind_round_trips_byte_identically() {
    let big = big();
    let samples = samples(&big, &IDS);
    let mut kinds: Vec<u8> = samples.iter().map(|m| m.kind() as u8).collect();
    kinds.dedup();
    assert_eq!(kinds.len(), 30, "one sample per kind");
    for msg in &samples {
        let frame = frame_of(msg);
        assert!(frame.len() <= DECODER_BUFFER_LEN);
        let f = Frame::new_checked(&frame).unwrap();
        assert_eq!(f.total_len(), frame.len());
        let payload = f.payload();
        assert_eq!(payload[0], msg.kind() as u8);
        assert_eq!(payload.len(), msg.encoded_len(), "{msg:?}");
        let decoded = Message::decode(payload).unwrap();
        assert_eq!(&decoded, msg);
        assert_eq!(frame_of(&decoded), frame, "re-encoding is byte-identical");
        assert_eq!(Kind::from_u8(msg.kind() as u8), Some(msg.kind()));
    }
}

#[test]
fn every_truncation_is_refused() {
    let big = big();
    for msg in samples(&big, &IDS) {
        let frame = frame_of(&msg);
        let payload = &frame[FRAME_HEADER_LEN..];
        // Payload prefixes: never a message (postcard encodings are prefix-free).
        let step = if payload.len() > 1000 { 97 } else { 1 };
        for k in (0..payload.len()).step_by(step).chain([payload.len() - 1]) {
            let err = Message::decode(&payload[..k]).unwrap_err();
            assert!(matches!(err, WireError::Truncated | WireError::EmptyFrame), "{msg:?} cut at {k}: {err:?}");
        }
        // Frame prefixes: never a frame.
        let mut buf = vec![0u8; DECODER_BUFFER_LEN];
        for k in (0..frame.len()).step_by(step).chain([frame.len() - 1]) {
            assert_eq!(Frame::new_checked(&frame[..k]), Err(WireError::Truncated));
            let mut dec = FrameDecoder::new(&mut buf).unwrap();
            let fed = dec.feed(&frame[..k]).unwrap();
            assert_eq!((fed.consumed, fed.frame), (k, None));
            assert_eq!(dec.finish().is_err(), k > 0);
        }
    }
}

#[test]
fn zero_and_oversized_lengths_are_refused_and_poison() {
    let mut buf = vec![0u8; DECODER_BUFFER_LEN];
    for (header, err) in [
        ([0u8, 0, 0, 0], WireError::EmptyFrame),
        ((MAX_FRAME_PAYLOAD as u32 + 1).to_be_bytes(), WireError::FrameTooLarge { len: MAX_FRAME_PAYLOAD + 1 }),
        ([0xff; 4], WireError::FrameTooLarge { len: u32::MAX as usize }),
    ] {
        assert_eq!(Frame::new_checked(&header), Err(err));
        let mut dec = FrameDecoder::new(&mut buf).unwrap();
        assert_eq!(dec.feed(&header[..3]).unwrap().frame, None);
        assert_eq!(dec.feed(&header[3..]), Err(err));
        assert_eq!(dec.feed(&frame_of(&Message::Ok)), Err(err), "poisoned");
        assert_eq!(dec.finish(), Err(err));
    }
    // The largest payload is accepted.
    let mut frame = vec![0u8; DECODER_BUFFER_LEN];
    frame[..4].copy_from_slice(&(MAX_FRAME_PAYLOAD as u32).to_be_bytes());
    let mut dec = FrameDecoder::new(&mut buf).unwrap();
    let fed = dec.feed(&frame).unwrap();
    assert_eq!((fed.consumed, fed.frame.map(<[u8]>::len)), (frame.len(), Some(MAX_FRAME_PAYLOAD)));
    // A short buffer is refused up front.
    let mut small = [0u8; DECODER_BUFFER_LEN - 1];
    assert_eq!(FrameDecoder::new(&mut small).unwrap_err(), WireError::BufferTooSmall);
}

#[test]
fn trailing_and_non_canonical_bytes_are_malformed() {
    let big = big();
    for msg in samples(&big, &IDS) {
        let mut payload = payload_of(&msg);
        payload.push(0);
        assert_eq!(Message::decode(&payload), Err(WireError::Malformed), "{msg:?}");
    }
    // Staged { epoch: 1 } with an overlong varint (0x81 0x00) is refused.
    assert_eq!(Message::decode(&[24, 1]), Ok(Message::Staged(Staged { epoch: 1 })));
    assert_eq!(Message::decode(&[24, 0x81, 0x00]), Err(WireError::Malformed));
    // An 11-byte varint and a u64 overflow are refused.
    assert_eq!(
        Message::decode(&[24, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]),
        Err(WireError::Malformed)
    );
    assert_eq!(
        Message::decode(&[24, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
        Ok(Message::Staged(Staged { epoch: u64::MAX }))
    );
    // A Flushed count above u32 is refused.
    assert_eq!(Message::decode(&[14, 0x80, 0x80, 0x80, 0x80, 0x10]), Err(WireError::Malformed));
    // Bad UTF-8 and unknown error codes.
    assert_eq!(Message::decode(&[61, 1, 1, 0xff]), Err(WireError::Malformed));
    assert_eq!(Message::decode(&[61, 12, 0]), Err(WireError::Malformed));
    assert_eq!(Message::decode(&[61, 0, 0]), Err(WireError::Malformed));
    assert_eq!(
        Message::decode(&[61, 6, 2, b'n', b'o']),
        Ok(Message::Error(ErrorMsg { code: ErrorCode::NotFound, message: "no" }))
    );
}

#[test]
fn unknown_and_reserved_kinds_are_refused() {
    for byte in 0..=255u8 {
        match Kind::from_u8(byte) {
            Some(kind) => {
                assert_eq!(kind as u8, byte);
                assert!(!Kind::is_reserved(byte));
            }
            None => assert_eq!(Message::decode(&[byte]), Err(WireError::UnknownKind(byte))),
        }
    }
    assert!(Kind::is_reserved(66) && Kind::is_reserved(95) && Kind::is_reserved(96) && Kind::is_reserved(127));
    assert!(!Kind::is_reserved(88) && !Kind::is_reserved(89), "the drop notice's kinds are assigned");
    assert_eq!(Message::decode(&[]), Err(WireError::EmptyFrame));
}

#[test]
fn id_list_lengths_are_checked() {
    let ids = vec![0u8; 20 * (MAX_IDS_PER_MESSAGE + 1)];
    for len in [1, 19, 21, 39, 20 * MAX_IDS_PER_MESSAGE + 20] {
        assert_eq!(IdList::new(&ids[..len]), Err(WireError::BadLength { field: "ids", len }));
        // A decoder refuses it too.
        let mut payload = vec![10u8];
        push_varint(&mut payload, len as u64);
        payload.extend_from_slice(&ids[..len]);
        assert_eq!(Message::decode(&payload), Err(WireError::BadLength { field: "ids", len }));
    }
    let full = IdList::new(&ids[..20 * MAX_IDS_PER_MESSAGE]).unwrap();
    assert_eq!(full.len(), MAX_IDS_PER_MESSAGE);
    let msg = Message::DeleteList(DeleteList { epoch: u64::MAX, ids: full, signature: SIG });
    assert!(msg.encoded_len() <= MAX_FRAME_PAYLOAD);
    assert_eq!(Message::decode(&payload_of(&msg)), Ok(msg));

    let list = IdList::new(&IDS).unwrap();
    assert_eq!(list.len(), 3);
    let collected: Vec<[u8; 20]> = list.iter().collect();
    let want: Vec<[u8; 20]> = IDS.chunks(20).map(|c| <[u8; 20]>::try_from(c).unwrap()).collect();
    assert_eq!(collected, want);
    assert_eq!(list.get(2), Some(collected[2]));
    assert_eq!(list.get(3), None);
    assert_eq!(list.get(usize::MAX), None);
    let mut out = [0u8; 60];
    assert_eq!(IdList::pack(collected.iter().copied(), &mut out), Ok(list));
    assert_eq!(IdList::pack(collected.iter().copied(), &mut out[..59]), Err(WireError::BufferTooSmall));
}

#[test]
fn field_bounds_are_checked_both_ways() {
    let big = big();
    let cases: [(Message<'_>, &str, usize); 7] = [
        (
            Message::PutChunk(PutChunk { id: ChunkId([0; 20]), sealed: &big[..MIN_SEALED - 1] }),
            "sealed",
            MIN_SEALED - 1,
        ),
        (Message::Chunk(Chunk { id: ChunkId([0; 20]), sealed: &big[..MAX_SEALED + 1] }), "sealed", MAX_SEALED + 1),
        (Message::PutRoot(PutRoot { epoch: 1, data: &big[..MAX_OBJECT_DATA + 1], signature: SIG }), "data", 61441),
        (Message::Object(Object { name: [0; 20], data: &big[..MAX_OBJECT_DATA + 1] }), "data", 61441),
        (Message::Root(Root { epoch: 1, data: &big[..MAX_OBJECT_DATA + 1] }), "data", 61441),
        (Message::Need(Need { bitmap: &big[..MAX_NEED_BITMAP + 1] }), "bitmap", 257),
        (Message::Error(ErrorMsg { code: ErrorCode::Internal, message: &"x".repeat(257) }), "message", 257),
    ];
    for (msg, field, len) in cases {
        let err = WireError::BadLength { field, len };
        let mut out = vec![0u8; DECODER_BUFFER_LEN];
        assert_eq!(msg.encode(&mut out), Err(err));
        // Hand-encode it to check the decoder refuses it as well.
        let mut payload = vec![msg.kind() as u8];
        match msg {
            Message::PutChunk(m) => {
                payload.extend_from_slice(&m.id.0);
                push_bytes(&mut payload, m.sealed)
            }
            Message::Chunk(m) => {
                payload.extend_from_slice(&m.id.0);
                push_bytes(&mut payload, m.sealed)
            }
            Message::PutRoot(m) => {
                push_varint(&mut payload, m.epoch);
                push_bytes(&mut payload, m.data);
                payload.extend_from_slice(&m.signature.0);
            }
            Message::Object(m) => {
                payload.extend_from_slice(&m.name);
                push_bytes(&mut payload, m.data)
            }
            Message::Root(m) => {
                push_varint(&mut payload, m.epoch);
                push_bytes(&mut payload, m.data)
            }
            Message::Need(m) => push_bytes(&mut payload, m.bitmap),
            Message::Error(m) => {
                push_varint(&mut payload, m.code as u64);
                push_bytes(&mut payload, m.message.as_bytes())
            }
            _ => unreachable!(),
        }
        assert_eq!(Message::decode(&payload), Err(err), "{field}");
    }
    let mut out = [0u8; 10];
    assert_eq!(
        Message::PutChunk(PutChunk { id: ChunkId([0; 20]), sealed: &SEALED }).encode(&mut out),
        Err(WireError::BufferTooSmall)
    );
    assert_eq!(encode_frame(&Message::Ok, &mut out[..4]), Err(WireError::BufferTooSmall));
    assert_eq!(encode_frame(&Message::Ok, &mut out[..5]), Ok(5));
}

#[test]
fn largest_messages_fit_a_frame() {
    let big = big();
    let ids = vec![0xee; 20 * MAX_IDS_PER_MESSAGE];
    let list = IdList::new(&ids).unwrap();
    let largest = [
        Message::PutChunk(PutChunk { id: ChunkId([0; 20]), sealed: &big[..MAX_SEALED] }),
        Message::Chunk(Chunk { id: ChunkId([0; 20]), sealed: &big[..MAX_SEALED] }),
        Message::Offer(Offer { ids: list }),
        Message::DeleteList(DeleteList { epoch: u64::MAX, ids: list, signature: SIG }),
        Message::PutObject(PutObject { epoch: u64::MAX, name: [0; 20], data: &big[..MAX_OBJECT_DATA], signature: SIG }),
        Message::PutRoot(PutRoot { epoch: u64::MAX, data: &big[..MAX_OBJECT_DATA], signature: SIG }),
        Message::Root(Root { epoch: u64::MAX, data: &big[..MAX_OBJECT_DATA] }),
    ];
    for msg in largest {
        assert!(msg.encoded_len() <= MAX_FRAME_PAYLOAD, "{:?}: {}", msg.kind(), msg.encoded_len());
        assert_eq!(Message::decode(&payload_of(&msg)), Ok(msg));
    }
    // PutChunk of the largest sealed chunk: 1 + 20 + 3 + 65,557.
    assert_eq!(largest[0].encoded_len(), 65_581);
}

fn all_frames(big: &[u8]) -> (Vec<u8>, usize) {
    let samples = samples(big, &IDS);
    let stream: Vec<u8> = samples.iter().flat_map(frame_of).collect();
    (stream, samples.len())
}

fn decode_stream(stream: &[u8], sizes: impl Iterator<Item = usize>) -> Vec<Vec<u8>> {
    let mut buf = vec![0u8; DECODER_BUFFER_LEN];
    let mut dec = FrameDecoder::new(&mut buf).unwrap();
    let mut out = Vec::new();
    let mut rest = stream;
    let mut sizes = sizes;
    while !rest.is_empty() {
        let n = sizes.next().unwrap_or(1).clamp(1, rest.len());
        let (slice, tail) = rest.split_at(n);
        rest = tail;
        dec.feed_all(slice, |p| {
            out.push(p.to_vec());
            Ok::<(), WireError>(())
        })
        .unwrap();
    }
    assert_eq!(dec.finish(), Ok(()));
    assert!(dec.is_idle());
    out
}

#[test]
fn decoder_fed_one_byte_at_a_time_or_all_at_once() {
    let big = big();
    let (stream, n) = all_frames(&big);
    let expected: Vec<Vec<u8>> = samples(&big, &IDS).iter().map(payload_of).collect();
    assert_eq!(decode_stream(&stream, core::iter::repeat(1)), expected);
    assert_eq!(decode_stream(&stream, core::iter::once(stream.len())), expected);
    assert_eq!(decode_stream(&stream, [3, 5, 7, 11, 4096, 70_000].into_iter().cycle()), expected);
    assert_eq!(expected.len(), n);
    for (payload, msg) in expected.iter().zip(samples(&big, &IDS)) {
        assert_eq!(Message::decode(payload), Ok(msg));
    }

    // By hand: one feed stops after each frame; buffered() tracks partial frames.
    let mut buf = vec![0u8; DECODER_BUFFER_LEN];
    let mut dec = FrameDecoder::new(&mut buf).unwrap();
    let two: Vec<u8> = [frame_of(&Message::Flush), frame_of(&Message::Ok)].concat();
    let fed = dec.feed(&two[..7]).unwrap();
    assert_eq!((fed.consumed, fed.frame), (5, Some(&[13u8][..])));
    let fed = dec.feed(&two[5..7]).unwrap();
    assert_eq!((fed.consumed, fed.frame), (2, None));
    assert_eq!(dec.buffered(), 2);
    assert_eq!(dec.finish(), Err(WireError::Truncated));
    let fed = dec.feed(&two[7..]).unwrap();
    assert_eq!((fed.consumed, fed.frame), (3, Some(&[60u8][..])));
    assert_eq!(dec.feed(&[]).unwrap(), Fed { consumed: 0, frame: None });
    assert_eq!(dec.buffered(), 0);
}

/// The golden bytes written out in docs/PROTOCOL.md.
#[test]
fn golden_bytes() {
    let hello = Message::Hello(Hello {
        version: PROTOCOL_VERSION,
        client_key: PublicKey([0x11; 32]),
        client_node: NodeId([0x22; 16]),
        client_nonce: [0x33; 32],
    });
    let mut want = vec![0x00, 0x00, 0x00, 0x52, 0x01, 0x03];
    want.extend([0x11; 32]);
    want.extend([0x22; 16]);
    want.extend([0x33; 32]);
    assert_eq!(frame_of(&hello), want);

    let sealed = [0x5c; 300];
    let put = Message::PutChunk(PutChunk { id: ChunkId([0xaa; 20]), sealed: &sealed });
    let mut want = vec![0x00, 0x00, 0x01, 0x43, 0x0c];
    want.extend([0xaa; 20]);
    want.extend([0xac, 0x02]);
    want.extend([0x5c; 300]);
    assert_eq!(frame_of(&put), want);

    let welcome =
        Message::Welcome(Welcome { quota_bytes: 1 << 40, used_bytes: 300, committed_epoch: 7, staged_epoch: 0 });
    assert_eq!(
        frame_of(&welcome),
        [0x00, 0x00, 0x00, 0x0b, 0x04, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20, 0xac, 0x02, 0x07, 0x00]
    );

    let commit = Message::Commit(Commit {
        epoch: 128,
        objects: 2,
        deletes: 0,
        staged: [0x55; 32],
        signature: Signature([0x77; 64]),
    });
    let mut want = vec![0x00, 0x00, 0x00, 0x65, 0x17, 0x80, 0x01, 0x02, 0x00];
    want.extend([0x55; 32]);
    want.extend([0x77; 64]);
    assert_eq!(frame_of(&commit), want);

    let error = Message::Error(ErrorMsg { code: ErrorCode::NotFound, message: "no root" });
    assert_eq!(frame_of(&error), [0, 0, 0, 0x0a, 0x3d, 0x06, 0x07, b'n', b'o', b' ', b'r', b'o', b'o', b't']);
    assert_eq!(frame_of(&Message::Flush), [0, 0, 0, 1, 0x0d]);

    let pair = Message::Pair(Pair { code: "K7Q2M-9XWPD", signature: Signature([0x66; 64]) });
    let mut want = vec![0x00, 0x00, 0x00, 0x4d, 0x05, 0x0b];
    want.extend(b"K7Q2M-9XWPD");
    want.extend([0x66; 64]);
    assert_eq!(frame_of(&pair), want);

    assert_eq!(frame_of(&Message::GetNotice), [0, 0, 0, 1, 0x58]);
    let notice = Message::Notice(DropNotice { seq: 3, dropped_at: 300, bytes: 0, reason: DropNotice::SPACE_CRISIS });
    assert_eq!(frame_of(&notice), [0, 0, 0, 6, 0x59, 0x03, 0xac, 0x02, 0x00, 0x01]);
}

#[test]
fn pairing_codes_are_bounded_and_bound_into_the_proof() {
    let mut out = vec![0u8; 256];
    let empty = Message::Pair(Pair { code: "", signature: Signature([0; 64]) });
    assert_eq!(empty.encode(&mut out), Err(WireError::BadLength { field: "code", len: 0 }));
    let long = "x".repeat(MAX_PAIRING_CODE + 1);
    let long = Message::Pair(Pair { code: &long, signature: Signature([0; 64]) });
    assert!(matches!(long.encode(&mut out), Err(WireError::BadLength { field: "code", .. })));

    let me = identity(3);
    let hello = Hello {
        version: PROTOCOL_VERSION,
        client_key: me.public_key(),
        client_node: NodeId([1; 16]),
        client_nonce: [2; 32],
    };
    let challenge = Challenge { buddy_key: identity(4).public_key(), buddy_nonce: [5; 32] };
    let pair = Pair::sign(&me, &hello, &challenge, "ABCDE-FGHJK", [0; 16]);
    assert_eq!(pair.verify(&hello, &challenge), Ok(()));
    let other_code = Pair { code: "ABCDE-FGHJ1", ..pair };
    assert!(other_code.verify(&hello, &challenge).is_err(), "the code is signed");
    // A hello proof is not a pairing proof (domains differ).
    let proof = Proof::sign(&me, &hello, &challenge, [0; 16]);
    assert!(Pair { code: "ABCDE-FGHJK", signature: proof.signature }.verify(&hello, &challenge).is_err());
}

fn identity(n: u8) -> Identity {
    Identity::from_seed([n; 32]).unwrap()
}

#[test]
fn handshake_proof_binds_both_nonces_and_the_buddy_key() {
    let client = identity(1);
    let hello = Hello {
        version: PROTOCOL_VERSION,
        client_key: client.public_key(),
        client_node: NodeId::from_name("a.example"),
        client_nonce: [7; 32],
    };
    let challenge = Challenge { buddy_key: identity(2).public_key(), buddy_nonce: [8; 32] };
    assert_eq!(hello_parts(&hello, &challenge), [&[8u8; 32][..], &[7u8; 32][..], challenge.buddy_key.as_bytes()]);
    let proof = Proof::sign(&client, &hello, &challenge, [0; 16]);
    assert_eq!(proof.verify(&hello, &challenge), Ok(()));
    let other_buddy = Challenge { buddy_key: identity(3).public_key(), ..challenge };
    assert!(proof.verify(&hello, &other_buddy).is_err());
    let other_nonce = Challenge { buddy_nonce: [9; 32], ..challenge };
    assert!(proof.verify(&hello, &other_nonce).is_err());
    let impostor = Hello { client_key: identity(4).public_key(), ..hello };
    assert!(proof.verify(&impostor, &challenge).is_err());
}

fn check_signed<M: SignedMessage>(mut msg: M, change: impl FnOnce(&mut M)) {
    let client = identity(1);
    let buddy = identity(2).public_key();
    msg.sign(&client, &buddy, [1; 16]);
    assert_eq!(msg.verify(&client.public_key(), &buddy), Ok(()));
    assert!(msg.verify(&client.public_key(), &identity(3).public_key()).is_err(), "bound to the buddy");
    assert!(msg.verify(&identity(3).public_key(), &buddy).is_err(), "made by the client");
    change(&mut msg);
    assert!(msg.verify(&client.public_key(), &buddy).is_err(), "covers the fields");
}

#[test]
fn signed_kinds_sign_and_verify() {
    let zero = Signature([0; 64]);
    check_signed(PutObject { epoch: 5, name: [1; 20], data: b"meta", signature: zero }, |m| m.epoch = 6);
    check_signed(PutObject { epoch: 5, name: [1; 20], data: b"meta", signature: zero }, |m| m.name[0] = 0);
    check_signed(PutObject { epoch: 5, name: [1; 20], data: b"meta", signature: zero }, |m| m.data = b"metb");
    let list = IdList::new(&IDS).unwrap();
    check_signed(DeleteList { epoch: 5, ids: list, signature: zero }, |m| m.ids = IdList::new(&IDS[..40]).unwrap());
    check_signed(DeleteList { epoch: 5, ids: list, signature: zero }, |m| m.epoch = 4);
    check_signed(PutRoot { epoch: 5, data: b"root", signature: zero }, |m| m.data = b"toor");
    let commit = Commit { epoch: 5, objects: 1, deletes: 2, staged: [3; 32], signature: zero };
    check_signed(commit, |m| m.objects = 2);
    check_signed(commit, |m| m.deletes = 1);
    check_signed(commit, |m| m.staged[31] ^= 1);
    check_signed(DropAll { epoch: 5, signature: zero }, |m| m.epoch = 6);

    // The parts are exactly as docs/PROTOCOL.md lists them.
    let buddy = PublicKey([9; 32]);
    let c = Commit { epoch: 0x0102, objects: 3, deletes: 4, staged: [8; 32], signature: zero };
    c.with_signed_parts(&buddy, |parts| {
        assert_eq!(parts, [&[9u8; 32][..], &[0, 0, 0, 0, 0, 0, 1, 2], &[0, 0, 0, 3], &[0, 0, 0, 4], &[8; 32]]);
    });
    let p = PutObject { epoch: 1, name: [2; 20], data: b"d", signature: zero };
    p.with_signed_parts(&buddy, |parts| {
        assert_eq!(parts, [&[9u8; 32][..], &[0, 0, 0, 0, 0, 0, 0, 1], &[2; 20], b"d"]);
    });
    // A signature survives the wire.
    let mut d = DropAll { epoch: 77, signature: zero };
    d.sign(&identity(1), &buddy, [0; 16]);
    let payload = payload_of(&Message::DropAll(d));
    let Ok(Message::DropAll(back)) = Message::decode(&payload) else { panic!() };
    assert_eq!(back.verify(&identity(1).public_key(), &buddy), Ok(()));
}

#[test]
fn need_bitmaps() {
    let mut out = [0u8; 2];
    let need = Need::build([true, false, true, false, false, false, false, false, true], &mut out).unwrap();
    assert_eq!(need.bitmap, [0b0000_0101, 0b1]);
    assert!(need.lacks(0) && !need.lacks(1) && need.lacks(2) && need.lacks(8) && !need.lacks(9));
    assert_eq!(need.count(), 3);
    assert_eq!(need.check_for(9), Ok(()));
    assert_eq!(need.check_for(16), Ok(()));
    assert_eq!(need.check_for(8), Err(WireError::BadLength { field: "bitmap", len: 2 }));
    assert_eq!(need.check_for(17), Err(WireError::BadLength { field: "bitmap", len: 2 }));
    let stray = Need { bitmap: &[0, 0b10] };
    assert_eq!(stray.check_for(9), Err(WireError::BadLength { field: "bitmap", len: 2 }));
    assert_eq!(Need::build([], &mut out).unwrap().bitmap, &[] as &[u8]);
    assert_eq!(Need::build([true; 17], &mut out), Err(WireError::BufferTooSmall));
    let mut big = [0u8; MAX_NEED_BITMAP + 1];
    assert!(Need::build(core::iter::repeat_n(true, MAX_IDS_PER_MESSAGE + 1), &mut big).is_err());
    assert_eq!(Need::build(core::iter::repeat_n(true, MAX_IDS_PER_MESSAGE), &mut big).unwrap().count(), 2048);
}

#[test]
fn error_codes() {
    for code in 1..=11u16 {
        let c = ErrorCode::from_u16(code).unwrap();
        assert_eq!(c as u16, code);
    }
    assert!(
        !ErrorCode::NotFound.is_fatal() && !ErrorCode::QuotaExceeded.is_fatal() && ErrorCode::BadSignature.is_fatal()
    );
    assert_eq!(ErrorCode::from_u16(0), None);
    assert_eq!(ErrorCode::from_u16(12), None);
    assert!(!ErrorCode::RateLimited.is_fatal(), "an audit past the budget does not end the session");
    assert_eq!(ErrorCode::for_wire_error(WireError::FrameTooLarge { len: 1 << 20 }), ErrorCode::TooLarge);
    assert_eq!(ErrorCode::for_wire_error(WireError::Truncated), ErrorCode::BadFrame);
}

fn push_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn push_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    push_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Feeds `bytes` in `sizes`-long slices and decodes every payload; a decoded
/// message must re-encode to its payload.
fn exercise(bytes: &[u8], sizes: &[usize]) {
    let mut buf = vec![0u8; DECODER_BUFFER_LEN];
    let mut dec = FrameDecoder::new(&mut buf).unwrap();
    let mut rest = bytes;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes.get(i % sizes.len().max(1)).copied().unwrap_or(1).clamp(1, rest.len());
        i += 1;
        let (slice, tail) = rest.split_at(n);
        rest = tail;
        let result = dec.feed_all(slice, |payload| {
            if let Ok(msg) = Message::decode(payload) {
                assert_eq!(payload_of(&msg), payload);
            }
            Ok::<(), WireError>(())
        });
        if result.is_err() {
            break;
        }
    }
    let _ = dec.finish();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = Message::decode(&bytes);
        let _ = Frame::new_checked(&bytes);
        exercise(&bytes, &[1, 2, 3, 5, 8]);
        exercise(&bytes, &[bytes.len()]);
    }

    #[test]
    fn kind_byte_then_random_body_never_panics(kind in 0u8..64, body in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut payload = vec![kind];
        payload.extend_from_slice(&body);
        if let Ok(msg) = Message::decode(&payload) {
            prop_assert_eq!(payload_of(&msg), payload);
        }
    }

    #[test]
    fn any_split_of_a_valid_stream_yields_the_same_payloads(sizes in proptest::collection::vec(1usize..200, 1..40)) {
        let big = big();
        let samples = samples(&big, &IDS);
        let small: Vec<&Message<'_>> = samples.iter().filter(|m| m.encoded_len() < 1000).collect();
        let stream: Vec<u8> = small.iter().flat_map(|m| frame_of(m)).collect();
        let expected: Vec<Vec<u8>> = small.iter().map(|m| payload_of(m)).collect();
        prop_assert_eq!(decode_stream(&stream, sizes.into_iter().cycle()), expected);
    }
}
