//! LAN pairing messages (kinds 105..=111 of the overlay's range), sent as
//! UDP datagrams on the overlay socket (`docs/PROTOCOL.md`, "Pairing
//! requests").
//!
//! A box that wants to back up on another draws a one-time pairing code,
//! keeps it to itself, and sends a [`PairRequest`] carrying only the code's
//! digest (the name under which the other box files an invitation). When
//! the other box's owner accepts (or both boxes share a pairing secret),
//! that box files the digest as an invitation and answers
//! [`PairAnswer::status`] = accepted; the asking box then presents the code
//! inside the authenticated channel, through the same admission as a typed
//! `buddy add --code`. The code never travels in the clear, so a
//! datagram seen or forged on the LAN admits nobody.
//!
//! Both boxes show the [`confirmation_code`] of a request (from both keys
//! and the digest), so owners can check they accept the request they think.
//! With a shared secret, [`proof`] tags show each side knows it: a request
//! without a valid tag is never accepted on its own.
//!
//! A payload is the kind byte and the postcard body, canonical, at most
//! [`MAX_PAIRING_PAYLOAD`] bytes; [`PairingMessage::decode`] is its entry point.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::fixed::Fixed;
use super::message::decode_body;
use super::WireError;

/// The largest pairing payload (kind byte included).
pub const MAX_PAIRING_PAYLOAD: usize = 256;
/// The longest box name a request carries, in UTF-8 bytes.
pub const MAX_PAIR_NAME: usize = 32;
/// The kinds reserved for LAN pairing.
pub const PAIRING_KINDS: core::ops::RangeInclusive<u8> = 105..=111;

/// Whether a payload's kind byte is one of pairing's.
pub fn is_pairing_kind(byte: u8) -> bool {
    PAIRING_KINDS.contains(&byte)
}

/// 105: please admit me (the client) as a client of yours (the buddy).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairRequest<'a> {
    /// Chosen by the client, echoed in the answers.
    pub token: u64,
    /// The asking box's public key.
    pub client_key: Fixed<32>,
    /// The key of the box asked (a box ignores requests naming another).
    pub buddy_key: Fixed<32>,
    /// The one-time code's digest ([`code_digest`]).
    pub code_digest: Fixed<32>,
    /// The asking box's buddy port (so the other box may ask back).
    pub tcp_port: u16,
    /// The asking box's name, 1..=[`MAX_PAIR_NAME`] bytes.
    pub name: &'a str,
    /// With a pairing secret: [`proof`] with [`Label::Request`].
    pub proof: Option<Fixed<32>>,
}

/// Where a request stands, in a [`PairAnswer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum PairStatus {
    /// Waiting for the owner.
    Pending = 0,
    /// Accepted: present the code.
    Accepted = 1,
    /// Refused by the owner.
    Refused = 2,
}

/// 106: the asked box's answer to a [`PairRequest`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairAnswer {
    /// The request's token.
    pub token: u64,
    /// The answering box's key.
    pub buddy_key: Fixed<32>,
    /// Its buddy port.
    pub tcp_port: u16,
    /// Where the request stands.
    pub status: PairStatus,
    /// With a pairing secret and `status` accepted: [`proof`] with [`Label::Accept`].
    pub proof: Option<Fixed<32>>,
}

/// A pairing message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PairingMessage<'a> {
    /// 105.
    Request(PairRequest<'a>),
    /// 106.
    Answer(PairAnswer),
}

impl<'a> PairingMessage<'a> {
    /// Decodes a pairing payload: kind then body, canonical, within bounds.
    pub fn decode(payload: &'a [u8]) -> Result<PairingMessage<'a>, WireError> {
        let (&kind, body) = payload.split_first().ok_or(WireError::EmptyFrame)?;
        if payload.len() > MAX_PAIRING_PAYLOAD {
            return Err(WireError::FrameTooLarge { len: payload.len() });
        }
        let msg = match kind {
            105 => PairingMessage::Request(decode_body(body)?),
            106 => PairingMessage::Answer(decode_body(body)?),
            other => return Err(WireError::UnknownKind(other)),
        };
        msg.check()?;
        Ok(msg)
    }

    fn check(&self) -> Result<(), WireError> {
        match self {
            PairingMessage::Request(r) if r.name.is_empty() || r.name.len() > MAX_PAIR_NAME => {
                Err(WireError::BadLength { field: "name", len: r.name.len() })
            }
            _ => Ok(()),
        }
    }

    /// Writes the payload at the start of `out`; returns its length.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, WireError> {
        self.check()?;
        let (kind, body) = out.split_first_mut().ok_or(WireError::BufferTooSmall)?;
        let len = match self {
            PairingMessage::Request(m) => {
                *kind = 105;
                postcard::to_slice(m, body)?.len()
            }
            PairingMessage::Answer(m) => {
                *kind = 106;
                postcard::to_slice(m, body)?.len()
            }
        };
        if 1 + len > MAX_PAIRING_PAYLOAD {
            return Err(WireError::FrameTooLarge { len: 1 + len });
        }
        Ok(1 + len)
    }
}

/// The digest a request carries for a one-time code (its canonical
/// characters, as `buddy invite` codes are normalised): the name the buddy
/// files the invitation under.
pub fn code_digest(normalized_code: &str) -> [u8; 32] {
    Sha256::new().chain_update(b"pastiche/v1/invite\0").chain_update(normalized_code.as_bytes()).finalize().into()
}

/// The six-digit confirmation code both owners see for a request.
pub fn confirmation_code(client_key: &[u8; 32], buddy_key: &[u8; 32], code_digest: &[u8; 32]) -> u32 {
    let d = Sha256::new()
        .chain_update(b"pastiche/v1/pair-confirm\0")
        .chain_update(client_key)
        .chain_update(buddy_key)
        .chain_update(code_digest)
        .finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]]) % 1_000_000
}

/// What a [`proof`] tag vouches for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Label {
    /// A request, by the client.
    Request,
    /// An acceptance, by the buddy.
    Accept,
}

/// The key of the pairing-secret tags, from the secret as configured.
pub fn secret_key(secret: &[u8]) -> [u8; 32] {
    Sha256::new().chain_update(b"pastiche/v1/pairing-secret\0").chain_update(secret).finalize().into()
}

/// The tag showing knowledge of the pairing secret: HMAC-SHA-256 under
/// [`secret_key`] of the label and the request's keys and digest.
pub fn proof(key: &[u8; 32], label: Label, client_key: &[u8; 32], buddy_key: &[u8; 32], digest: &[u8; 32]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(match label {
        Label::Request => b"request\0",
        Label::Accept => b"accept\0\0",
    });
    mac.update(client_key);
    mac.update(buddy_key);
    mac.update(digest);
    mac.finalize().into_bytes().into()
}

/// Whether `tag` is the [`proof`] for these fields (in constant time).
pub fn proof_ok(
    key: &[u8; 32],
    label: Label,
    client_key: &[u8; 32],
    buddy_key: &[u8; 32],
    digest: &[u8; 32],
    tag: &[u8; 32],
) -> bool {
    let want = proof(key, label, client_key, buddy_key, digest);
    want.iter().zip(tag).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    fn round_trip(msg: PairingMessage<'_>) -> std::vec::Vec<u8> {
        let mut buf = [0u8; MAX_PAIRING_PAYLOAD];
        let n = msg.encode(&mut buf).unwrap();
        assert_eq!(PairingMessage::decode(&buf[..n]).unwrap(), msg);
        for cut in 0..n {
            assert!(PairingMessage::decode(&buf[..cut]).is_err());
        }
        let mut long = buf[..n].to_vec();
        long.push(0);
        assert_eq!(PairingMessage::decode(&long), Err(WireError::Malformed));
        buf[..n].to_vec()
    }

    /// The golden bytes written out in docs/PROTOCOL.md, "Pairing requests".
    #[test]
    fn golden_bytes() {
        let req = PairingMessage::Request(PairRequest {
            token: 1,
            client_key: Fixed([0x11; 32]),
            buddy_key: Fixed([0x22; 32]),
            code_digest: Fixed([0x33; 32]),
            tcp_port: 7467,
            name: "nas",
            proof: None,
        });
        let mut want = std::vec![105, 0x01];
        want.extend([0x11; 32]);
        want.extend([0x22; 32]);
        want.extend([0x33; 32]);
        want.extend([0xab, 0x3a, 0x03, b'n', b'a', b's', 0x00]);
        assert_eq!(round_trip(req), want);

        let answer = PairingMessage::Answer(PairAnswer {
            token: 1,
            buddy_key: Fixed([0x22; 32]),
            tcp_port: 7467,
            status: PairStatus::Accepted,
            proof: Some(Fixed([0x44; 32])),
        });
        let mut want = std::vec![106, 0x01];
        want.extend([0x22; 32]);
        want.extend([0xab, 0x3a, 0x01, 0x01]);
        want.extend([0x44; 32]);
        assert_eq!(round_trip(answer), want);
    }

    #[test]
    fn bounds_and_unknown_kinds_are_refused() {
        let name = [b'x'; 40];
        let long = core::str::from_utf8(&name[..33]).unwrap();
        let req = PairRequest {
            token: u64::MAX,
            client_key: Fixed([1; 32]),
            buddy_key: Fixed([2; 32]),
            code_digest: Fixed([3; 32]),
            tcp_port: 1,
            name: long,
            proof: Some(Fixed([4; 32])),
        };
        let mut buf = [0u8; MAX_PAIRING_PAYLOAD];
        assert!(PairingMessage::Request(req).encode(&mut buf).is_err());
        let ok = PairRequest { name: core::str::from_utf8(&name[..32]).unwrap(), ..req };
        let bytes = round_trip(PairingMessage::Request(ok));
        let empty = PairRequest { name: "", ..req };
        assert!(PairingMessage::Request(empty).encode(&mut buf).is_err());
        let mut other = bytes.clone();
        other[0] = 107;
        assert_eq!(PairingMessage::decode(&other), Err(WireError::UnknownKind(107)));
        assert_eq!(PairingMessage::decode(&[]), Err(WireError::EmptyFrame));
        let mut bad_status = round_trip(PairingMessage::Answer(PairAnswer {
            token: 0,
            buddy_key: Fixed([0; 32]),
            tcp_port: 0,
            status: PairStatus::Pending,
            proof: None,
        }));
        bad_status[35] = 3;
        assert_eq!(PairingMessage::decode(&bad_status), Err(WireError::Malformed));
        assert!(matches!(PairingMessage::decode(&[105; 300]), Err(WireError::FrameTooLarge { .. })));
    }

    #[test]
    fn proofs_bind_the_secret_the_label_and_the_request() {
        let k = secret_key(b"office");
        let (c, b, d) = ([1; 32], [2; 32], [3; 32]);
        let tag = proof(&k, Label::Request, &c, &b, &d);
        assert!(proof_ok(&k, Label::Request, &c, &b, &d, &tag));
        assert!(!proof_ok(&secret_key(b"other"), Label::Request, &c, &b, &d, &tag));
        assert!(!proof_ok(&k, Label::Accept, &c, &b, &d, &tag));
        assert!(!proof_ok(&k, Label::Request, &b, &c, &d, &tag));
        assert!(!proof_ok(&k, Label::Request, &c, &b, &[4; 32], &tag));
        let code = confirmation_code(&c, &b, &d);
        assert!(code < 1_000_000);
        assert_ne!(code, confirmation_code(&c, &b, &[4; 32]));
        assert_eq!(code_digest("ABC"), code_digest("ABC"));
        assert_ne!(code_digest("ABC"), code_digest("ABD"));
    }
}
