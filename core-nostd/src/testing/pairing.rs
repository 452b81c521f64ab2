//! The cases every box's handling of LAN pairing requests must pass (the
//! rule is [`crate::pairing`]): the appliance's request table and the
//! firmware's answerer both run [`conformance`], so they accept, refuse
//! and ignore exactly the same requests.

use std::vec::Vec;

use crate::pairing::ANY_BUDDY;
use crate::wire::pairing::{
    code_digest, proof, proof_ok, secret_key, Label, PairAnswer, PairRequest, PairStatus, PairingMessage,
    MAX_PAIRING_PAYLOAD,
};
use crate::wire::Fixed;

/// What a box did with a request datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observed {
    /// Nothing: not for it, or not a request.
    Ignored,
    /// Kept or refused, not accepted (no tag of acceptance).
    NotAccepted,
    /// Accepted on its own; the answer datagram it sends.
    Accepted(Vec<u8>),
}

/// The box under test.
const OWN: [u8; 32] = [0xb1; 32];
/// The asking box.
const CLIENT: [u8; 32] = [0xc7; 32];
const SECRET: &str = "office secret";

/// A request datagram from `client` naming `asked`, for `code`, with the tag
/// of `(secret, asked key, code)` when given (maybe other fields than the
/// request's: a tag replayed from another request).
fn request(asked: [u8; 32], client: [u8; 32], code: &str, tag: Option<(&str, [u8; 32], &str)>) -> Vec<u8> {
    let digest = code_digest(code);
    let tag = tag.map(|(secret, tag_asked, tag_code)| {
        let key = secret_key(secret.as_bytes());
        Fixed(proof(&key, Label::Request, &client, &tag_asked, &code_digest(tag_code)))
    });
    let req = PairRequest {
        token: 0x5eed,
        client_key: Fixed(client),
        buddy_key: Fixed(asked),
        code_digest: Fixed(digest),
        tcp_port: 7467,
        name: "asking.example",
        proof: tag,
    };
    let mut out = [0u8; MAX_PAIRING_PAYLOAD];
    let n = PairingMessage::Request(req).encode(&mut out).expect("a request fits");
    out[..n].to_vec()
}

/// Runs every case against `box_under_test(datagram, own_key, secret)`,
/// where `secret` is the box's pairing-secret key (`None`: no secret set);
/// panics on the first disagreement, naming the case.
pub fn conformance(mut box_under_test: impl FnMut(&[u8], &[u8; 32], Option<&[u8; 32]>) -> Observed) {
    let key = secret_key(SECRET.as_bytes());
    let code = "K7Q2M9XWPD";
    let ok = |asked| request(asked, CLIENT, code, Some((SECRET, asked, code)));
    let answer_of = |d: &[u8]| match PairingMessage::decode(d) {
        Ok(PairingMessage::Answer(a)) => a,
        other => panic!("an acceptance is not an answer datagram: {other:?}"),
    };
    // Accepted on its own: the request proves the secret, naming this box
    // or "whoever you are"; the answer is bound to what was asked.
    for (case, asked) in [("names this box", OWN), ("names any box", ANY_BUDDY)] {
        match box_under_test(&ok(asked), &OWN, Some(&key)) {
            Observed::Accepted(d) => {
                let a: PairAnswer = answer_of(&d);
                assert_eq!((a.token, a.buddy_key.0, a.status), (0x5eed, OWN, PairStatus::Accepted), "{case}");
                let tag = a.proof.unwrap_or_else(|| panic!("{case}: the acceptance carries no tag"));
                assert!(proof_ok(&key, Label::Accept, &CLIENT, &asked, &code_digest(code), &tag.0), "{case}: bad tag");
            }
            other => panic!("a request proving the secret that {case} was not accepted: {other:?}"),
        }
    }
    // For this box, but not proven: never accepted on its own.
    // (case, datagram, the box's secret key)
    type Case<'k> = (&'static str, Vec<u8>, Option<&'k [u8; 32]>);
    let unproven: [Case<'_>; 5] = [
        ("without a tag", request(OWN, CLIENT, code, None), Some(&key)),
        ("with another secret's tag", request(OWN, CLIENT, code, Some(("another secret", OWN, code))), Some(&key)),
        ("with a tag of another code", request(OWN, CLIENT, code, Some((SECRET, OWN, "OTHERCODE1"))), Some(&key)),
        ("with a tag naming another box", request(OWN, CLIENT, code, Some((SECRET, [0x33; 32], code))), Some(&key)),
        ("to a box with no secret", ok(OWN), None),
    ];
    for (case, datagram, secret) in &unproven {
        let seen = box_under_test(datagram, &OWN, *secret);
        assert_eq!(seen, Observed::NotAccepted, "a request {case}");
    }
    // Not for this box, or not a request: ignored.
    let answer =
        PairAnswer { token: 1, buddy_key: Fixed(CLIENT), tcp_port: 1, status: PairStatus::Accepted, proof: None };
    let mut buf = [0u8; MAX_PAIRING_PAYLOAD];
    let n = PairingMessage::Answer(answer).encode(&mut buf).expect("an answer fits");
    let ignored: [(&str, Vec<u8>); 5] = [
        ("naming another box", request([0x33; 32], CLIENT, code, Some((SECRET, [0x33; 32], code)))),
        ("from this box's own key", request(OWN, OWN, code, Some((SECRET, OWN, code)))),
        ("that is an answer", buf[..n].to_vec()),
        ("cut short", ok(OWN)[..20].to_vec()),
        ("that is empty", Vec::new()),
    ];
    for (case, datagram) in &ignored {
        assert_eq!(box_under_test(datagram, &OWN, Some(&key)), Observed::Ignored, "a datagram {case}");
    }
}
