//! The `channel_responder` target: the buddy's end of the secure channel
//! (`pastiche_core::channel`) fed arbitrary bytes, as a network peer would:
//! records reassembled in slices of any size, handshake messages read and
//! answered, then transport records opened and their plaintext decoded as
//! frames. Nothing may panic; a refused record ends the input, and the
//! reader and channel must keep refusing afterwards.

use pastiche_core::channel::{
    Handshake, RecordReader, HANDSHAKE_RECORD_LEN, MAX_HANDSHAKE_MESSAGE, MAX_NOISE_MESSAGE, RECORD_HEADER_LEN,
};
use pastiche_core::wire::{FrameDecoder, Message, DECODER_BUFFER_LEN};
use pastiche_core::Identity;

use crate::slices;

/// The buddy's identity and ephemeral key in the harness: fixed, so a seed
/// recorded from a real client reaches the transport phase.
pub const BUDDY_SEED: [u8; 32] = [0x42; 32];
/// The buddy's ephemeral secret in the harness.
pub const BUDDY_EPHEMERAL: [u8; 32] = [0x17; 32];
/// The record limit the harness's buddy announces (like the firmware's).
pub const RECORD_LIMIT: usize = 1022;

/// Runs the responder over `data` (control bytes first, then the stream in
/// [`slices`]); returns the frames decoded from the channel.
pub fn channel_responder(data: &[u8]) -> usize {
    let identity = Identity::from_seed(BUDDY_SEED).expect("a fixed seed");
    let mut hs: Option<Handshake> =
        Some(Handshake::responder(&identity, BUDDY_EPHEMERAL, RECORD_LIMIT).expect("a valid limit"));
    let mut channel = None;
    let mut rec_buf = vec![0u8; RECORD_HEADER_LEN + MAX_NOISE_MESSAGE];
    let mut reader = RecordReader::new(&mut rec_buf, 1, MAX_HANDSHAKE_MESSAGE).expect("buffer is large enough");
    let mut dec_buf = vec![0u8; DECODER_BUFFER_LEN];
    let mut decoder = FrameDecoder::new(&mut dec_buf).expect("buffer is large enough");
    let mut reply = [0u8; HANDSHAKE_RECORD_LEN];
    let mut frames = 0;
    for mut slice in slices(data) {
        while !slice.is_empty() {
            let read = match reader.feed(slice) {
                Ok(read) => read,
                Err(_) => {
                    assert!(reader.feed(&[0, 20]).is_err(), "a refused stream stays refused");
                    return frames;
                }
            };
            slice = &slice[read.consumed..];
            let Some(body) = read.record else { continue };
            if let Some(h) = hs.as_mut() {
                if h.read(body).is_err() {
                    assert!(h.read(&[0u8; 48]).is_err(), "a failed handshake stays failed");
                    return frames;
                }
                if h.is_write_turn() {
                    h.write(&mut reply).expect("the responder can answer");
                }
                if h.is_finished() {
                    let done = hs.take().expect("in the handshake").finish().expect("a finished handshake splits");
                    reader.set_transport_limit(done.recv_limit()).expect("buffer is large enough");
                    channel = Some(done);
                }
                continue;
            }
            let Some(ch) = channel.as_mut() else { return frames };
            let plain = match ch.open(body) {
                Ok(plain) => plain,
                Err(_) => {
                    assert!(ch.open(&mut [0u8; 40]).is_err(), "a failed channel stays failed");
                    return frames;
                }
            };
            if decoder
                .feed_all(plain, |payload| {
                    frames += 1;
                    let _ = Message::decode(payload);
                    Ok::<(), pastiche_core::wire::WireError>(())
                })
                .is_err()
            {
                return frames;
            }
        }
    }
    let _ = reader.finish();
    frames
}

#[cfg(test)]
/// A real client's bytes towards the harness's buddy: the handshake, then
/// a hello and a flush sealed in records (a seed reaching the transport).
pub fn client_seed() -> Vec<u8> {
    use pastiche_core::channel::Handshake as Hs;
    let client = Identity::from_seed([0x33; 32]).expect("a fixed seed");
    let buddy = Identity::from_seed(BUDDY_SEED).expect("a fixed seed");
    let mut c: Hs = Hs::initiator(&client, [0x21; 32], Some(buddy.public_key()), MAX_NOISE_MESSAGE).expect("valid");
    let mut b: Hs = Hs::responder(&buddy, BUDDY_EPHEMERAL, RECORD_LIMIT).expect("valid");
    let mut wire = vec![0xff, 0xff, 0xff, 0xff]; // control: whole slices
    let mut msg = [0u8; HANDSHAKE_RECORD_LEN];
    let n = c.write(&mut msg).expect("message 1");
    wire.extend_from_slice(&msg[..n]);
    b.read(&msg[RECORD_HEADER_LEN..n]).expect("message 1 reads");
    let n = b.write(&mut msg).expect("message 2");
    c.read(&msg[RECORD_HEADER_LEN..n]).expect("message 2 reads");
    let n = c.write(&mut msg).expect("message 3");
    wire.extend_from_slice(&msg[..n]);
    let mut channel = c.finish().expect("finished");
    let mut frames = vec![0u8; 4096];
    let hello = Message::Hello(pastiche_core::wire::Hello {
        version: pastiche_core::wire::PROTOCOL_VERSION,
        client_key: client.public_key(),
        client_node: pastiche_core::NodeId([2; 16]),
        client_nonce: [3; 32],
    });
    let mut len = pastiche_core::wire::encode_frame(&hello, &mut frames).expect("encodes");
    len += pastiche_core::wire::encode_frame(&Message::Flush, &mut frames[len..]).expect("encodes");
    let mut sealed = vec![0u8; channel.sealed_len(len)];
    let n = channel.seal(&frames[..len], &mut sealed).expect("seals");
    wire.extend_from_slice(&sealed[..n]);
    wire
}
