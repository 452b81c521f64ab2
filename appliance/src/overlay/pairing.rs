//! Pairing over the LAN and the overlays: the requests this box received
//! ([`Incoming`]) and sent ([`Outgoing`]), as bounded tables. No I/O here:
//! the [`service`](super::service) sends what these decide and files the
//! invitations.
//!
//! Received requests are hostile datagrams: at most [`MAX_INCOMING`] are
//! kept, at most [`MAX_PER_SOURCE`] from one address. What a request is
//! follows core's rule ([`pastiche_core::pairing::judge`], shared with the
//! firmware): a request naming another box's key, or this box's own as the
//! client, is dropped; one is accepted only by the owner (`buddy accept`),
//! or on its own when `pairing = "auto"` and it proves the same pairing
//! secret. Accepting files the request's code digest as an invitation, so
//! only the box that drew the code can redeem it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pastiche_core::discovery::{Candidate, Goal};
use pastiche_core::pairing::{judge, Asked, Verdict};
use pastiche_core::wire::pairing::{
    confirmation_code, proof, proof_ok, Label, PairAnswer, PairRequest, PairStatus, MAX_PAIR_NAME,
};
use pastiche_core::wire::Fixed;

use super::files::{show_confirm, IncomingView, OutgoingView};

/// Requests received that are kept.
pub const MAX_INCOMING: usize = 32;
/// Of those, from one source address.
pub const MAX_PER_SOURCE: usize = 4;
/// Requests this box has out at once.
pub const MAX_OUTGOING: usize = 16;
/// A request sent is sent again this often until answered.
pub const RESEND: Duration = Duration::from_secs(3);
/// A request not accepted in this time is given up (and may be sent again later).
pub const GIVE_UP: Duration = Duration::from_secs(120);

/// The pairing secret's key, if one is configured.
pub type SecretKey = Option<[u8; 32]>;

/// A request received.
#[derive(Clone, Debug)]
pub struct Incoming {
    /// What the owner types: 8 hex digits of the digest.
    pub id: String,
    /// The code's digest.
    pub digest: [u8; 32],
    /// The asking box's key.
    pub client_key: [u8; 32],
    /// The key the request named for this box (zero: "whoever you are"),
    /// which the acceptance tag covers.
    pub asked_key: [u8; 32],
    /// Its name.
    pub name: String,
    /// Where the request came from.
    pub from: SocketAddr,
    /// Whether it proved the same secret.
    pub secret_ok: bool,
    /// Where it stands.
    pub status: PairStatus,
    /// Unix seconds first received.
    pub received: u64,
    /// Confirmation code.
    pub confirm: u32,
}

/// What to do with a request just received.
#[derive(Debug, PartialEq, Eq)]
pub enum OnRequest {
    /// Not for us, or over a bound: no answer.
    Drop,
    /// Answer with the request's status (index into the table).
    Answer(usize),
    /// A new request the pairing secret accepts: file its invitation, then answer.
    AutoAccept(usize),
    /// A new request for the owner.
    New(usize),
}

/// The requests received.
#[derive(Debug, Default)]
pub struct IncomingTable {
    entries: Vec<Incoming>,
}

impl IncomingTable {
    /// Takes a request from `from`.
    pub fn on_request(
        &mut self,
        req: &PairRequest<'_>,
        from: SocketAddr,
        own_key: &[u8; 32],
        secret: &SecretKey,
        auto: bool,
        unix_now: u64,
    ) -> OnRequest {
        let (client, buddy, digest) = (&req.client_key.0, &req.buddy_key.0, &req.code_digest.0);
        let verdict = judge(req, own_key, secret.as_ref());
        if verdict == Verdict::NotOurs {
            return OnRequest::Drop;
        }
        if let Some(i) = self.entries.iter().position(|e| e.digest == *digest && e.client_key == *client) {
            return OnRequest::Answer(i);
        }
        if self.entries.iter().filter(|e| e.from.ip() == from.ip()).count() >= MAX_PER_SOURCE {
            return OnRequest::Drop;
        }
        let secret_ok = verdict == Verdict::ProvesSecret;
        if self.entries.len() >= MAX_INCOMING {
            // Make room by forgetting the oldest request still waiting.
            let Some(oldest) = self.entries.iter().position(|e| e.status == PairStatus::Pending) else {
                return OnRequest::Drop;
            };
            self.entries.remove(oldest);
        }
        let name: String = req.name.chars().filter(|c| !c.is_control()).take(MAX_PAIR_NAME).collect();
        self.entries.push(Incoming {
            id: hex::encode(&digest[..4]),
            digest: *digest,
            client_key: *client,
            asked_key: *buddy,
            name,
            from,
            secret_ok,
            status: PairStatus::Pending,
            received: unix_now,
            // The confirmation names the key the client asked for: this box's.
            confirm: confirmation_code(client, own_key, digest),
        });
        let i = self.entries.len() - 1;
        if auto && secret_ok {
            OnRequest::AutoAccept(i)
        } else {
            OnRequest::New(i)
        }
    }

    /// The answer to send for entry `i`, answering request `token`.
    pub fn answer(&self, i: usize, token: u64, own_key: &[u8; 32], tcp_port: u16, secret: &SecretKey) -> PairAnswer {
        let e = &self.entries[i];
        let asked = Asked { client_key: e.client_key, asked_key: e.asked_key, code_digest: e.digest };
        asked.answer(token, own_key, tcp_port, e.status, e.secret_ok, secret.as_ref())
    }

    /// Entry `i`.
    pub fn get(&self, i: usize) -> &Incoming {
        &self.entries[i]
    }

    /// Sets where entry `i` stands.
    pub fn set_status(&mut self, i: usize, status: PairStatus) {
        self.entries[i].status = status;
    }

    /// Every entry.
    pub fn iter(&self) -> impl Iterator<Item = &Incoming> {
        self.entries.iter()
    }

    /// The pending entries' ids and indexes (to look for the owner's answers).
    pub fn pending(&self) -> Vec<(usize, String)> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.status == PairStatus::Pending)
            .map(|(i, e)| (i, e.id.clone()))
            .collect()
    }

    /// The table as the command line shows it.
    pub fn view(&self) -> Vec<IncomingView> {
        self.entries
            .iter()
            .map(|e| IncomingView {
                id: e.id.clone(),
                name: e.name.clone(),
                client_key: hex::encode(e.client_key),
                from: e.from.to_string(),
                confirm: show_confirm(e.confirm),
                secret_ok: e.secret_ok,
                status: status_name(e.status).into(),
                digest: hex::encode(e.digest),
                received: e.received,
            })
            .collect()
    }
}

fn status_name(s: PairStatus) -> &'static str {
    match s {
        PairStatus::Pending => "pending",
        PairStatus::Accepted => "accepted",
        PairStatus::Refused => "refused",
    }
}

/// How a candidate was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    /// Its beacon was heard on the LAN.
    Lan,
    /// A discovery probe or the coverage overlay.
    Overlay,
}

impl Found {
    /// `c` as buddy selection ([`select`](pastiche_core::discovery::select))
    /// should judge it: a box heard on the LAN is near, however slowly it
    /// answers. Beacons stay inside one broadcast domain, so a long round
    /// trip there means a busy or small box (the firmware answers a ping in
    /// tens of milliseconds when its board is loaded), not another site.
    /// Taken for the far buddy, such a box would win the far slot over every
    /// better-covering neighbour.
    pub fn judged<A>(self, c: Candidate<A>, goal: &Goal) -> Candidate<A> {
        match self {
            Found::Lan => Candidate { rtt_us: c.rtt_us.map(|r| r.min(goal.far_rtt_us.saturating_sub(1))), ..c },
            Found::Overlay => c,
        }
    }

    /// Its name in files and output.
    pub fn name(self) -> &'static str {
        match self {
            Found::Lan => "lan",
            Found::Overlay => "overlay",
        }
    }
}

/// Where a request sent stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutStatus {
    /// Sent, not accepted yet.
    Asking,
    /// Accepted: the code is being presented.
    Connecting,
    /// Paired: the box is a buddy.
    Paired,
    /// Refused by its owner.
    Refused,
    /// No acceptance in time, or pairing failed.
    GaveUp,
}

/// A request sent.
#[derive(Clone, Debug)]
pub struct Outgoing {
    /// The asked box's overlay socket.
    pub to: SocketAddr,
    /// Its key when known (from its beacon or its answer).
    pub buddy_key: Option<[u8; 32]>,
    /// Its buddy port when known.
    pub tcp_port: Option<u16>,
    /// The one-time code, canonical: never sent in the clear.
    pub code: String,
    /// Its digest.
    pub digest: [u8; 32],
    /// Matches answers.
    pub token: u64,
    /// Where it stands.
    pub status: OutStatus,
    /// When last sent.
    pub last_sent: Instant,
    /// When first sent.
    pub first_sent: Instant,
    /// Unix seconds first sent.
    pub sent_unix: u64,
    /// How the box was found.
    pub found: Found,
    /// Its coverage of this box's fingerprint, in millionths.
    pub coverage_ppm: u32,
    /// Round-trip time, if measured.
    pub rtt_us: Option<u32>,
}

impl Outgoing {
    /// The request to send.
    pub fn request<'a>(&self, own_key: &[u8; 32], tcp_port: u16, name: &'a str, secret: &SecretKey) -> PairRequest<'a> {
        let buddy = self.buddy_key.unwrap_or([0; 32]);
        PairRequest {
            token: self.token,
            client_key: Fixed(*own_key),
            buddy_key: Fixed(buddy),
            code_digest: Fixed(self.digest),
            tcp_port,
            name,
            proof: secret.map(|k| Fixed(proof(&k, Label::Request, own_key, &buddy, &self.digest))),
        }
    }

    /// Takes an answer from `from`; returns whether the pairing may go on
    /// (accepted, by the box asked, with the secret's tag when `need_proof`).
    pub fn on_answer(
        &mut self,
        a: &PairAnswer,
        from: SocketAddr,
        own_key: &[u8; 32],
        secret: &SecretKey,
        need_proof: bool,
    ) -> bool {
        if a.token != self.token || from != self.to || self.status != OutStatus::Asking {
            return false;
        }
        if self.buddy_key.is_some_and(|k| k != a.buddy_key.0) || a.buddy_key.0 == *own_key {
            return false;
        }
        let asked_for = self.buddy_key.unwrap_or([0; 32]);
        match a.status {
            PairStatus::Pending => {
                self.buddy_key = Some(a.buddy_key.0);
                self.tcp_port = Some(a.tcp_port);
                false
            }
            PairStatus::Refused => {
                self.status = OutStatus::Refused;
                false
            }
            PairStatus::Accepted => {
                let vouched = match (secret, &a.proof) {
                    (Some(k), Some(tag)) => proof_ok(k, Label::Accept, own_key, &asked_for, &self.digest, &tag.0),
                    _ => false,
                };
                if need_proof && !vouched {
                    return false;
                }
                self.buddy_key = Some(a.buddy_key.0);
                self.tcp_port = Some(a.tcp_port);
                self.status = OutStatus::Connecting;
                true
            }
        }
    }

    /// The confirmation code, once the asked box's key is known.
    pub fn confirm(&self, own_key: &[u8; 32]) -> Option<u32> {
        self.buddy_key.map(|b| confirmation_code(own_key, &b, &self.digest))
    }

    /// As the command line shows it.
    pub fn view(&self, own_key: &[u8; 32]) -> OutgoingView {
        OutgoingView {
            to: self.to.to_string(),
            buddy_key: self.buddy_key.map(hex::encode),
            confirm: self.confirm(own_key).map(show_confirm),
            status: match self.status {
                OutStatus::Asking => "asking",
                OutStatus::Connecting => "accepted",
                OutStatus::Paired => "paired",
                OutStatus::Refused => "refused",
                OutStatus::GaveUp => "gave up",
            }
            .into(),
            found: self.found.name().into(),
            sent: self.sent_unix,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pastiche_core::discovery::select;
    use pastiche_core::identity::NodeId;
    use pastiche_core::wire::pairing::{code_digest, secret_key};

    #[test]
    fn a_slow_lan_neighbour_never_takes_the_far_slot() {
        // The flake this mends: a box of group X had one buddy and wanted
        // one more; the firmware (3% coverage, its ping slowed past 20 ms by
        // a loaded board) took the far slot from a neighbour at 97%.
        let goal = Goal { k: 1, min_coverage_ppm: 0, ..Goal::default() };
        let cand = |n: u8, coverage_ppm: u32, rtt_us: u32| Candidate {
            id: NodeId([n; 16]),
            addr: n,
            coverage_ppm,
            rtt_us: Some(rtt_us),
        };
        let (neighbour, slow_box) = (cand(1, 968_750, 900), cand(2, 31_250, 45_000));
        let as_judged: Vec<Candidate<u8>> =
            [neighbour, slow_box].into_iter().map(|c| Found::Lan.judged(c, &goal)).collect();
        assert_eq!(select(&as_judged, &goal)[0].addr, 1, "the neighbour with the data wins");
        assert_eq!(as_judged[1].rtt_us, Some(goal.far_rtt_us - 1), "still ranked as the slower of the two");
        // Found through the overlay, the same round trip is another site,
        // which the far slot is for.
        let from_overlay: Vec<Candidate<u8>> =
            [neighbour, slow_box].into_iter().map(|c| Found::Overlay.judged(c, &goal)).collect();
        assert_eq!(select(&from_overlay, &goal)[0].addr, 2);
    }

    const A: [u8; 32] = [1; 32];
    const B: [u8; 32] = [2; 32];

    fn outgoing(to: SocketAddr, buddy: Option<[u8; 32]>) -> Outgoing {
        let now = Instant::now();
        Outgoing {
            to,
            buddy_key: buddy,
            tcp_port: None,
            code: "ABCDEFGHJK".into(),
            digest: code_digest("ABCDEFGHJK"),
            token: 77,
            status: OutStatus::Asking,
            last_sent: now,
            first_sent: now,
            sent_unix: 0,
            found: Found::Lan,
            coverage_ppm: 0,
            rtt_us: None,
        }
    }

    /// Two boxes with the same secret pair on their own, and both show the
    /// same confirmation code; the answer proves the buddy knows the secret.
    #[test]
    fn a_shared_secret_pairs_and_both_sides_agree() {
        let secret = Some(secret_key(b"office secret"));
        let to: SocketAddr = "10.0.0.2:7468".parse().unwrap();
        let from: SocketAddr = "10.0.0.1:7468".parse().unwrap();
        let mut out = outgoing(to, None);
        let req = out.request(&A, 7467, "a", &secret);
        let mut table = IncomingTable::default();
        let OnRequest::AutoAccept(i) = table.on_request(&req, from, &B, &secret, true, 5) else { panic!() };
        table.set_status(i, PairStatus::Accepted);
        let answer = table.answer(i, req.token, &B, 7467, &secret);
        assert!(out.on_answer(&answer, to, &A, &secret, true));
        assert_eq!(out.status, OutStatus::Connecting);
        assert_eq!(out.confirm(&A), Some(table.get(i).confirm));
        // The same request again is answered from the table, not re-added.
        assert_eq!(table.on_request(&req, from, &B, &secret, true, 6), OnRequest::Answer(i));
    }

    /// The attack: a stranger without the secret (or with another) is never
    /// accepted on its own, and a forged acceptance does not start a pairing
    /// that needs the secret.
    #[test]
    fn strangers_wait_for_the_owner_and_forged_acceptances_are_ignored() {
        let ours = Some(secret_key(b"office secret"));
        let theirs = Some(secret_key(b"another secret"));
        let me: SocketAddr = "10.0.0.2:7468".parse().unwrap();
        let stranger: SocketAddr = "10.0.0.9:7468".parse().unwrap();
        let mut table = IncomingTable::default();
        for secret in [None, theirs] {
            let mut out = outgoing(me, Some(B));
            out.digest = code_digest(if secret.is_none() { "X1" } else { "X2" });
            let req = out.request(&A, 7467, "stranger", &secret);
            assert!(matches!(table.on_request(&req, stranger, &B, &ours, true, 0), OnRequest::New(_)));
        }
        assert!(table.iter().all(|e| !e.secret_ok && e.status == PairStatus::Pending));
        // A request for another box, or claiming to come from this one, is dropped.
        let other = outgoing(me, Some([3; 32])).request(&A, 1, "x", &None);
        assert_eq!(table.on_request(&other, stranger, &B, &ours, true, 0), OnRequest::Drop);
        let mirror = outgoing(me, None).request(&B, 1, "x", &None);
        assert_eq!(table.on_request(&mirror, stranger, &B, &ours, true, 0), OnRequest::Drop);
        // A forged "accepted" without the tag does not start a pairing.
        let mut out = outgoing(me, Some(B));
        let forged =
            PairAnswer { token: 77, buddy_key: Fixed(B), tcp_port: 1, status: PairStatus::Accepted, proof: None };
        assert!(!out.on_answer(&forged, me, &A, &ours, true));
        let wrong_tag = PairAnswer { proof: Some(Fixed([9; 32])), ..forged };
        assert!(!out.on_answer(&wrong_tag, me, &A, &ours, true));
        assert!(!out.on_answer(&forged, stranger, &A, &ours, false), "from another address");
        assert!(!out.on_answer(&PairAnswer { token: 1, ..forged }, me, &A, &ours, false), "another token");
        assert!(out.on_answer(&forged, me, &A, &ours, false), "manual pairing takes the owner's acceptance");
    }

    /// The cases every box runs (core's `testing::pairing`): with
    /// `pairing = "auto"`, the table accepts, keeps and ignores exactly what
    /// the firmware does.
    #[test]
    fn the_table_passes_the_pairing_conformance_cases() {
        use pastiche_core::testing::pairing::{conformance, Observed};
        use pastiche_core::wire::pairing::{PairingMessage, MAX_PAIRING_PAYLOAD};
        let from: SocketAddr = "10.0.0.9:7468".parse().unwrap();
        conformance(|datagram, own_key, key| {
            let Ok(PairingMessage::Request(req)) = PairingMessage::decode(datagram) else { return Observed::Ignored };
            let secret = key.copied();
            let mut table = IncomingTable::default();
            match table.on_request(&req, from, own_key, &secret, true, 0) {
                OnRequest::Drop => Observed::Ignored,
                OnRequest::New(_) | OnRequest::Answer(_) => Observed::NotAccepted,
                OnRequest::AutoAccept(i) => {
                    table.set_status(i, PairStatus::Accepted);
                    let answer = table.answer(i, req.token, own_key, 7467, &secret);
                    let mut out = [0u8; MAX_PAIRING_PAYLOAD];
                    let n = PairingMessage::Answer(answer).encode(&mut out).unwrap();
                    Observed::Accepted(out[..n].to_vec())
                }
            }
        });
    }

    /// The attack: a flood of requests from many sources keeps the table
    /// bounded, and one source cannot hold more than its share.
    #[test]
    fn a_flood_of_requests_stays_bounded() {
        let mut table = IncomingTable::default();
        let me: SocketAddr = "10.0.0.2:7468".parse().unwrap();
        for n in 0..10_000u32 {
            let from = SocketAddr::from(([10, 1, (n >> 8) as u8, n as u8], 7468));
            let mut out = outgoing(me, Some(B));
            out.digest = code_digest(&format!("C{n}"));
            table.on_request(&out.request(&A, 1, "f", &None), from, &B, &None, false, 0);
        }
        assert_eq!(table.iter().count(), MAX_INCOMING);
        let one: SocketAddr = "10.9.9.9:7468".parse().unwrap();
        let mut kept = 0;
        for n in 0..100 {
            let mut out = outgoing(me, Some(B));
            out.digest = code_digest(&format!("S{n}"));
            if table.on_request(&out.request(&A, 1, "f", &None), one, &B, &None, false, 0) != OnRequest::Drop {
                kept += 1;
            }
        }
        assert_eq!(kept, MAX_PER_SOURCE);
    }
}
