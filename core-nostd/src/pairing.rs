//! The rule a box applies to a LAN pairing request it receives
//! (`docs/PROTOCOL.md`, "Pairing requests"; the messages are
//! [`crate::wire::pairing`]), shared by the appliance and the firmware so
//! the two cannot drift apart. Sans-IO: a decoded request and the box's own
//! key and pairing secret in, a [`Verdict`] and the answer out.
//!
//! - A request naming another box's key, or coming from this box's own key,
//!   is not for this box: it is ignored (not even answered).
//! - A request naming this box's key, or [`ANY_BUDDY`] (the asking box
//!   found this one through the overlay and does not know its key yet), is
//!   for this box. It *proves the secret* when it carries a valid
//!   [`proof`] tag with [`Label::Request`] under this box's pairing secret;
//!   only such a request may be accepted without the owner (an appliance
//!   with `pairing = "auto"`, the firmware, which has no owner at hand).
//! - An acceptance that the secret vouched for carries the tag with
//!   [`Label::Accept`] over the same fields, so the asking box knows the
//!   answer is not forged ([`Asked::answer`]).
//!
//! The conformance cases both boxes run are in `testing::pairing`.

use crate::wire::pairing::{proof, proof_ok, Label, PairAnswer, PairRequest, PairStatus};
use crate::wire::Fixed;

/// The key a request names when the asking box does not know the asked
/// box's key yet ("whoever you are").
pub const ANY_BUDDY: [u8; 32] = [0; 32];

/// What a received request is, for the box it reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not for this box (it names another box, or comes from this box's
    /// own key): ignored, not answered.
    NotOurs,
    /// For this box, without a valid tag of this box's pairing secret (or
    /// the box has none): only its owner may accept it.
    Unproven,
    /// For this box, with a valid tag of its pairing secret: it may be
    /// accepted without the owner.
    ProvesSecret,
}

/// The fields of a request an acceptance is bound to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Asked {
    /// The asking box's key.
    pub client_key: [u8; 32],
    /// The key the request named for the asked box (maybe [`ANY_BUDDY`]).
    pub asked_key: [u8; 32],
    /// The digest of the one-time code the asking box will present.
    pub code_digest: [u8; 32],
}

impl Asked {
    /// The fields of `req`.
    pub fn of(req: &PairRequest<'_>) -> Asked {
        Asked { client_key: req.client_key.0, asked_key: req.buddy_key.0, code_digest: req.code_digest.0 }
    }

    /// The answer to request `token` from a box with key `own_key` serving
    /// on `tcp_port`: `status`, with the acceptance tag when the request
    /// was accepted because it proved the secret (`secret` is the box's
    /// pairing-secret key).
    pub fn answer(
        &self,
        token: u64,
        own_key: &[u8; 32],
        tcp_port: u16,
        status: PairStatus,
        proved_secret: bool,
        secret: Option<&[u8; 32]>,
    ) -> PairAnswer {
        let tag = match secret {
            Some(key) if status == PairStatus::Accepted && proved_secret => {
                Some(Fixed(proof(key, Label::Accept, &self.client_key, &self.asked_key, &self.code_digest)))
            }
            _ => None,
        };
        PairAnswer { token, buddy_key: Fixed(*own_key), tcp_port, status, proof: tag }
    }
}

/// Judges `req`, received by the box with key `own_key` and pairing-secret
/// key `secret` (`None`: no secret set; see
/// [`secret_key`](crate::wire::pairing::secret_key)).
pub fn judge(req: &PairRequest<'_>, own_key: &[u8; 32], secret: Option<&[u8; 32]>) -> Verdict {
    let a = Asked::of(req);
    if a.client_key == *own_key || (a.asked_key != ANY_BUDDY && a.asked_key != *own_key) {
        return Verdict::NotOurs;
    }
    let proved = match (secret, &req.proof) {
        (Some(key), Some(tag)) => proof_ok(key, Label::Request, &a.client_key, &a.asked_key, &a.code_digest, &tag.0),
        _ => false,
    };
    if proved {
        Verdict::ProvesSecret
    } else {
        Verdict::Unproven
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::pairing::{conformance, Observed};
    use crate::wire::pairing::{PairingMessage, MAX_PAIRING_PAYLOAD};

    /// The rule itself passes the cases every box runs: a box that accepts
    /// exactly what proves the secret.
    #[test]
    fn the_rule_passes_the_conformance_cases() {
        conformance(|datagram, own_key, secret| {
            let Ok(PairingMessage::Request(req)) = PairingMessage::decode(datagram) else { return Observed::Ignored };
            match judge(&req, own_key, secret) {
                Verdict::NotOurs => Observed::Ignored,
                Verdict::Unproven => Observed::NotAccepted,
                Verdict::ProvesSecret => {
                    let answer = Asked::of(&req).answer(req.token, own_key, 7467, PairStatus::Accepted, true, secret);
                    let mut out = [0u8; MAX_PAIRING_PAYLOAD];
                    let n = PairingMessage::Answer(answer).encode(&mut out).unwrap();
                    Observed::Accepted(out[..n].to_vec())
                }
            }
        });
    }

    #[test]
    fn no_tag_is_given_without_the_secret_or_without_acceptance() {
        let a = Asked { client_key: [1; 32], asked_key: [2; 32], code_digest: [3; 32] };
        let key = [9; 32];
        assert!(a.answer(1, &[2; 32], 1, PairStatus::Accepted, true, Some(&key)).proof.is_some());
        assert!(a.answer(1, &[2; 32], 1, PairStatus::Accepted, false, Some(&key)).proof.is_none());
        assert!(a.answer(1, &[2; 32], 1, PairStatus::Pending, true, Some(&key)).proof.is_none());
        assert!(a.answer(1, &[2; 32], 1, PairStatus::Accepted, true, None).proof.is_none());
    }
}
