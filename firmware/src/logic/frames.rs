//! What the network service needs to know about the frames it passes
//! between a connection and its `BuddySession`, kept out of the board's
//! network code so it is tested on the host.

use pastiche_core::wire::{Frame, Message};
use pastiche_core::PublicKey;

/// The first payload byte of a `Hello` (the message kind).
const HELLO_KIND: u8 = 1;
/// The first payload byte of a `Welcome`.
const WELCOME_KIND: u8 = 4;

/// Whether a frame payload is a hello claiming another key than `peer`,
/// the one the channel proved: a peer may not run the channel as one box
/// and the session as another.
pub fn claims_another_key(payload: &[u8], peer: PublicKey) -> bool {
    payload.first() == Some(&HELLO_KIND)
        && matches!(Message::decode(payload), Ok(Message::Hello(h)) if h.client_key != peer)
}

/// Whether encoded reply frames hold a `Welcome` (the client is
/// authenticated from then on).
pub fn has_welcome(mut frames: &[u8]) -> bool {
    while let Ok(f) = Frame::new_checked(frames) {
        if f.payload().first() == Some(&WELCOME_KIND) {
            return true;
        }
        frames = frames.get(f.total_len()..).unwrap_or(&[]);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use pastiche_core::wire::{encode_frame, Flushed, Hello, Welcome};

    fn hello(key: u8) -> ([u8; 128], usize) {
        let mut out = [0u8; 128];
        let msg = Message::Hello(Hello {
            version: pastiche_core::wire::PROTOCOL_VERSION,
            client_key: PublicKey([key; 32]),
            client_node: pastiche_core::NodeId([0; 16]),
            client_nonce: [3; 32],
        });
        let n = msg.encode(&mut out).unwrap();
        (out, n)
    }

    #[test]
    fn a_hello_for_another_key_is_caught() {
        let (h, n) = hello(7);
        let h = &h[..n];
        assert!(!claims_another_key(h, PublicKey([7; 32])));
        assert!(claims_another_key(h, PublicKey([8; 32])));
        assert!(!claims_another_key(&[], PublicKey([8; 32])));
        assert!(!claims_another_key(&[HELLO_KIND, 0xff], PublicKey([8; 32])), "undecodable: the session refuses it");
    }

    #[test]
    fn a_welcome_is_found_among_reply_frames() {
        let mut out = [0u8; 256];
        let n = encode_frame(&Message::Flushed(Flushed { stored: 1 }), &mut out).unwrap();
        assert!(!has_welcome(&out[..n]));
        let w = Welcome { quota_bytes: 1, used_bytes: 0, committed_epoch: 0, staged_epoch: 0 };
        let m = encode_frame(&Message::Welcome(w), &mut out[n..]).unwrap();
        assert!(has_welcome(&out[..n + m]));
        assert!(!has_welcome(&out[..n + m - 1]), "a truncated frame is not a welcome");
    }
}
