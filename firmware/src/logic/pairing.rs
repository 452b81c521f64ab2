//! LAN pairing requests (`docs/PROTOCOL.md`, "Pairing requests"; core's
//! [`pastiche_core::wire::pairing`]) as the firmware answers them.
//!
//! The firmware has no owner at a console to accept a request, so it
//! accepts exactly the requests an appliance with `pairing = "auto"`
//! accepts on its own: those whose proof tag shows the asking box knows the
//! pairing secret, which for the firmware is its boot command line's
//! `pair=SECRET` (an office sets the same string as its appliances'
//! `pairing_secret`). An accepted request's code digest is then admitted
//! once, for that client key only ([`Invitation`]), when the box presents
//! the code in its hello; the answer carries the firmware's own proof so the
//! box knows the acceptance is not forged. Every other request is refused:
//! a stranger is never admitted, and its request costs one small answer.

use pastiche_core::pairing::{judge, Asked, Verdict};
use pastiche_core::wire::pairing::{is_pairing_kind, secret_key, PairStatus, PairingMessage, MAX_PAIRING_PAYLOAD};

/// A pairing the firmware accepted: the client key and the digest of the
/// one-time code it will present.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Invitation {
    /// The asking box's key; only it may present the code.
    pub client_key: [u8; 32],
    /// `code_digest` of the code.
    pub code_digest: [u8; 32],
}

/// The key of the pairing-secret tags for the boot secret `pair=SECRET`.
pub fn tag_key(secret: &str) -> [u8; 32] {
    secret_key(secret.as_bytes())
}

/// Answers a pairing datagram for the firmware with key `own_key`, buddy
/// service on `tcp_port` and pairing-secret tag key `key` (`None`: no
/// secret set, every request is refused), by core's rule
/// ([`pastiche_core::pairing::judge`]). Returns the answer's length in
/// `out` (sent back to where the request came from) and, when accepted, the
/// invitation to file; `None` for anything that is not a request to this
/// firmware.
pub fn answer_request(
    datagram: &[u8],
    own_key: &[u8; 32],
    tcp_port: u16,
    key: Option<&[u8; 32]>,
    out: &mut [u8; MAX_PAIRING_PAYLOAD],
) -> Option<(usize, Option<Invitation>)> {
    if !datagram.first().is_some_and(|&k| is_pairing_kind(k)) {
        return None;
    }
    let Ok(PairingMessage::Request(req)) = PairingMessage::decode(datagram) else { return None };
    let asked = Asked::of(&req);
    // No owner at hand: what proves the secret is accepted, the rest refused.
    let (status, invitation) = match judge(&req, own_key, key) {
        Verdict::NotOurs => return None,
        Verdict::Unproven => (PairStatus::Refused, None),
        Verdict::ProvesSecret => {
            (PairStatus::Accepted, Some(Invitation { client_key: asked.client_key, code_digest: asked.code_digest }))
        }
    };
    let answer = asked.answer(req.token, own_key, tcp_port, status, invitation.is_some(), key);
    let len = PairingMessage::Answer(answer).encode(out).ok()?;
    Some((len, invitation))
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use pastiche_core::testing::pairing::{conformance, Observed};
    use pastiche_core::wire::pairing::{code_digest, proof, proof_ok, Label, PairAnswer, PairRequest};
    use pastiche_core::wire::Fixed;

    const FW: [u8; 32] = [0xf1; 32];
    const BOX: [u8; 32] = [0xb0; 32];

    fn request(secret: Option<&str>, asked: [u8; 32], out: &mut [u8; MAX_PAIRING_PAYLOAD]) -> usize {
        let digest = code_digest("K7Q2M9XWPD");
        let tag = secret.map(|s| Fixed(proof(&tag_key(s), Label::Request, &BOX, &asked, &digest)));
        let req = PairRequest {
            token: 42,
            client_key: Fixed(BOX),
            buddy_key: Fixed(asked),
            code_digest: Fixed(digest),
            tcp_port: 7467,
            name: "box.example",
            proof: tag,
        };
        PairingMessage::Request(req).encode(out).unwrap()
    }

    fn decode_answer(bytes: &[u8]) -> PairAnswer {
        match PairingMessage::decode(bytes).unwrap() {
            PairingMessage::Answer(a) => a,
            other => panic!("not an answer: {other:?}"),
        }
    }

    #[test]
    fn a_request_proving_the_secret_is_accepted_with_a_proof_and_an_invitation() {
        let key = tag_key("office secret");
        let (mut req, mut out) = ([0u8; MAX_PAIRING_PAYLOAD], [0u8; MAX_PAIRING_PAYLOAD]);
        let n = request(Some("office secret"), FW, &mut req);
        let (len, invitation) = answer_request(&req[..n], &FW, 7467, Some(&key), &mut out).unwrap();
        let a = decode_answer(&out[..len]);
        assert_eq!((a.token, a.buddy_key.0, a.tcp_port, a.status), (42, FW, 7467, PairStatus::Accepted));
        let digest = code_digest("K7Q2M9XWPD");
        assert!(proof_ok(&key, Label::Accept, &BOX, &FW, &digest, &a.proof.unwrap().0));
        assert_eq!(invitation, Some(Invitation { client_key: BOX, code_digest: digest }));
    }

    #[test]
    fn strangers_are_refused_and_admit_nobody() {
        let key = tag_key("office secret");
        let (mut req, mut out) = ([0u8; MAX_PAIRING_PAYLOAD], [0u8; MAX_PAIRING_PAYLOAD]);
        for (secret, firmware_key) in
            [(None, Some(&key)), (Some("another secret"), Some(&key)), (Some("office secret"), None)]
        {
            let n = request(secret, FW, &mut req);
            let (len, invitation) = answer_request(&req[..n], &FW, 7467, firmware_key, &mut out).unwrap();
            let a = decode_answer(&out[..len]);
            assert_eq!((a.status, a.proof), (PairStatus::Refused, None));
            assert_eq!(invitation, None);
        }
    }

    /// The cases every box runs (core's `testing::pairing`): the firmware
    /// accepts, refuses and ignores exactly what the appliance does.
    #[test]
    fn the_firmware_passes_the_pairing_conformance_cases() {
        conformance(|datagram, own_key, key| {
            let mut out = [0u8; MAX_PAIRING_PAYLOAD];
            match answer_request(datagram, own_key, 7467, key, &mut out) {
                None => Observed::Ignored,
                Some((len, Some(_))) => Observed::Accepted(out[..len].to_vec()),
                Some((len, None)) => {
                    assert_eq!(decode_answer(&out[..len]).status, PairStatus::Refused);
                    Observed::NotAccepted
                }
            }
        });
    }
}
