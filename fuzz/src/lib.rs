//! The bodies of the fuzz targets, as plain functions so that the seed and
//! corpus files can also be replayed by `cargo test` on a stable toolchain.

mod buddy;
mod channel;
mod input;
mod lan;
mod open;
mod overlay;
#[cfg(test)]
mod seed_files;
pub use buddy::buddy_session;
pub use channel::channel_responder;
pub use input::{push_record, records, slices, Records, Slices, CONTROL_LEN};
pub use lan::lan_datagram;
pub use open::open_chunk;
pub use overlay::overlay_node;

use pastiche_core::wire::{encode_frame, FrameDecoder, Message, WireError, DECODER_BUFFER_LEN, FRAME_HEADER_LEN};

/// The `frame_decoder` target.
///
/// The first [`CONTROL_LEN`] bytes choose the slice sizes the rest is fed in
/// (see [`slices`]). Every payload the decoder yields is decoded as a
/// [`Message`]; a decoded message must re-encode to exactly its payload and
/// decode again to an equal message. Nothing may panic.
pub fn frame_decoder(data: &[u8]) {
    let mut buf = vec![0u8; DECODER_BUFFER_LEN];
    let mut out = vec![0u8; DECODER_BUFFER_LEN];
    let mut decoder = FrameDecoder::new(&mut buf).expect("buffer is large enough");
    for slice in slices(data) {
        let fed = decoder.feed_all(slice, |payload| {
            if let Ok(msg) = Message::decode(payload) {
                let n = encode_frame(&msg, &mut out).expect("a decoded message encodes");
                assert_eq!(&out[FRAME_HEADER_LEN..n], payload, "re-encoding differs");
                let again = Message::decode(&out[FRAME_HEADER_LEN..n]).expect("a re-encoded message decodes");
                assert_eq!(again, msg);
            }
            Ok::<(), WireError>(())
        });
        if fed.is_err() {
            // Framing lost: a peer would send Error and close. The decoder
            // must keep refusing.
            assert!(decoder.feed(b"\0\0\0\x01\x3c").is_err());
            assert!(decoder.finish().is_err());
            return;
        }
    }
    let _ = decoder.finish();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seed_files::*;
    use pastiche_core::identity::{NodeId, PublicKey, Signature};
    use pastiche_core::seal::ChunkId;
    use pastiche_core::wire::*;

    /// The channel seed (a real client's handshake, hello and flush) is
    /// current, reaches the transport phase, and every seed, corpus input
    /// and artifact of `channel_responder` replays without a panic.
    #[test]
    fn channel_responder_seed_and_corpus() {
        let seed = crate::channel::client_seed();
        check_seed("channel_responder", "handshake-hello-flush", &seed);
        let n = replay("channel_responder", &ALL, |input| {
            crate::channel_responder(input);
        });
        // Every single-byte alteration of the seed is refused without a panic.
        for i in 4..seed.len() {
            let mut bent = seed.clone();
            bent[i] ^= 0x01;
            assert_eq!(crate::channel_responder(&bent), 0, "byte {i} altered, yet frames came through");
        }
        println!("replayed {n} channel inputs and {} alterations of the seed", seed.len() - 4);
    }

    /// Replays the committed seeds, and the corpus and crash artifacts of
    /// earlier fuzzing runs when they are present.
    #[test]
    fn replay_seeds_and_corpus() {
        let seeds = replay("frame_decoder", &["seeds"], frame_decoder);
        assert!(seeds > 0, "no seeds");
        let corpus = replay("frame_decoder", &["corpus"], frame_decoder);
        let artifacts = replay("frame_decoder", &["artifacts"], frame_decoder);
        println!("replayed {seeds} seeds, {corpus} corpus inputs, {artifacts} artifacts");
    }

    /// Replays the `open_chunk` seeds, corpus and crash artifacts.
    #[test]
    fn replay_open_chunk() {
        let n = replay("open_chunk", &ALL, crate::open_chunk);
        assert!(n >= 4, "the open_chunk seeds are missing");
    }

    /// A whole snapshot upload and restore as `buddy_session` input records.
    fn buddy_seed() -> Vec<u8> {
        let sealed = [9u8; 300];
        let ids = [0x11u8; 40];
        let list = IdList::new(&ids).unwrap();
        let sig = Signature([0; 64]);
        // The digests the commits sign, so the seed reaches applied epochs.
        let first = staged_digest(&[([3; 20], b"object")], &[], b"root");
        let second = staged_digest(&[], &[[0x11; 20]], b"root2");
        let msgs = [
            Message::Offer(Offer { ids: list }),
            Message::PutChunk(PutChunk { id: ChunkId([0x11; 20]), sealed: &sealed }),
            Message::Flush,
            Message::PutObject(PutObject { epoch: 1, name: [3; 20], data: b"object", signature: sig }),
            Message::PutRoot(PutRoot { epoch: 1, data: b"root", signature: sig }),
            Message::Commit(Commit { epoch: 1, objects: 1, deletes: 0, staged: first, signature: sig }),
            Message::GetRoot,
            Message::GetObject(GetObject { name: [3; 20] }),
            Message::GetChunk(GetChunk { id: ChunkId([0x11; 20]) }),
            Message::DeleteList(DeleteList { epoch: 2, ids: list, signature: sig }),
            Message::PutRoot(PutRoot { epoch: 2, data: b"root2", signature: sig }),
            Message::Commit(Commit { epoch: 2, objects: 0, deletes: 1, staged: second, signature: sig }),
            Message::DropAll(DropAll { epoch: 3, signature: sig }),
        ];
        session_input(&msgs)
    }

    #[test]
    fn buddy_session_seed_and_corpus() {
        let seed = buddy_seed();
        crate::buddy_session(&seed);
        check_seed("buddy_session", "upload-restore-drop", &seed);
        let corpus = replay("buddy_session", &["corpus"], crate::buddy_session);
        let artifacts = replay("buddy_session", &["artifacts"], crate::buddy_session);
        println!("replayed the buddy seed, {corpus} corpus inputs, {artifacts} artifacts");
    }

    /// Uploads, an audit of held, foreign and missing chunks, a delete and
    /// the same audit again, as `buddy_session` records; checked in as
    /// seeds/buddy_session/upload-audit.
    fn buddy_audit_seed() -> Vec<u8> {
        use pastiche_core::audit::AuditNonce;
        let sealed = [9u8; 300];
        let mut ids = [0x22u8; 60];
        ids[20..40].fill(0x11); // another owner's chunk
        ids[40..].fill(0x33); // never stored
        let asked = IdList::new(&ids).unwrap();
        let mine = IdList::new(&ids[..20]).unwrap();
        let sig = Signature([0; 64]);
        // The digest the commit signs, so the seed reaches the applied epoch.
        let staged = staged_digest(&[], &[[0x22; 20]], b"root");
        let msgs = [
            Message::PutChunk(PutChunk { id: ChunkId([0x22; 20]), sealed: &sealed }),
            Message::Flush,
            Message::AuditRequest(AuditRequest { nonce: AuditNonce([1; 32]), ids: asked }),
            Message::DeleteList(DeleteList { epoch: 1, ids: mine, signature: sig }),
            Message::PutRoot(PutRoot { epoch: 1, data: b"root", signature: sig }),
            Message::Commit(Commit { epoch: 1, objects: 0, deletes: 1, staged, signature: sig }),
            Message::AuditRequest(AuditRequest { nonce: AuditNonce([2; 32]), ids: asked }),
        ];
        session_input(&msgs)
    }

    #[test]
    fn buddy_session_audit_seed() {
        let seed = buddy_audit_seed();
        crate::buddy_session(&seed);
        check_seed("buddy_session", "upload-audit", &seed);
    }

    /// Uploads, then more audits than the budget allows (the harness allows
    /// 128 reads per 1,000 ticks: two requests of 64 ids answered, the rest
    /// refused `RateLimited`), then a read the session still serves; checked
    /// in as seeds/buddy_session/audit-flood.
    fn buddy_audit_flood_seed() -> Vec<u8> {
        use pastiche_core::audit::AuditNonce;
        let sealed = [9u8; 300];
        let ids = [0x22u8; 64 * 20];
        let asked = IdList::new(&ids).unwrap();
        let mut msgs = vec![Message::PutChunk(PutChunk { id: ChunkId([0x22; 20]), sealed: &sealed }), Message::Flush];
        for i in 0..5 {
            msgs.push(Message::AuditRequest(AuditRequest { nonce: AuditNonce([i; 32]), ids: asked }));
        }
        msgs.push(Message::GetChunk(GetChunk { id: ChunkId([0x22; 20]) }));
        session_input(&msgs)
    }

    #[test]
    fn buddy_session_audit_flood_seed() {
        let seed = buddy_audit_flood_seed();
        crate::buddy_session(&seed);
        check_seed("buddy_session", "audit-flood", &seed);
    }

    /// The audit kinds as `frame_decoder` seeds (apart from the all-kinds
    /// seed, which other kinds' changes rewrite).
    #[test]
    fn audit_frame_seeds_are_current() {
        use pastiche_core::audit::AuditNonce;
        let ids = [0x42u8; 60];
        let proofs = [0x24u8; 64];
        let messages = [
            Message::AuditRequest(AuditRequest { nonce: AuditNonce([3; 32]), ids: IdList::new(&ids).unwrap() }),
            Message::AuditProofs(AuditProofs { held: &[0b11], proofs: &proofs }),
        ];
        for msg in &messages {
            let (name, seed) = frame_seed(msg);
            frame_decoder(&seed);
            check_seed("frame_decoder", &name, &seed);
        }
    }

    /// Seed inputs: control bytes, then a stream of valid frames of every
    /// shape. `PASTICHE_WRITE_SEEDS=1 cargo test` rewrites seeds/.
    #[test]
    fn seeds_are_current() {
        let sig = Signature([0x5a; 64]);
        let ids = [0x42u8; 60];
        let list = IdList::new(&ids).unwrap();
        let messages = [
            Message::Hello(Hello {
                version: 1,
                client_key: PublicKey([1; 32]),
                client_node: NodeId([2; 16]),
                client_nonce: [3; 32],
            }),
            Message::Challenge(Challenge { buddy_key: PublicKey([4; 32]), buddy_nonce: [5; 32] }),
            Message::Proof(Proof { signature: sig }),
            Message::Welcome(Welcome { quota_bytes: 1 << 40, used_bytes: 300, committed_epoch: 7, staged_epoch: 0 }),
            Message::Offer(Offer { ids: list }),
            Message::Need(Need { bitmap: &[5] }),
            Message::PutChunk(PutChunk { id: ChunkId([6; 20]), sealed: &[0xc5; 40] }),
            Message::Flush,
            Message::Flushed(Flushed { stored: 3 }),
            Message::GetChunk(GetChunk { id: ChunkId([7; 20]) }),
            Message::Chunk(Chunk { id: ChunkId([7; 20]), sealed: &[0xc5; 21] }),
            Message::PutObject(PutObject { epoch: 9, name: [9; 20], data: b"object", signature: sig }),
            Message::DeleteList(DeleteList { epoch: 10, ids: list, signature: sig }),
            Message::PutRoot(PutRoot { epoch: 11, data: b"root", signature: sig }),
            Message::Commit(Commit { epoch: 12, objects: 1, deletes: 3, staged: [0x3c; 32], signature: sig }),
            Message::Staged(Staged { epoch: 12 }),
            Message::Committed(Committed { epoch: 12 }),
            Message::Abort(Abort { epoch: 13 }),
            Message::GetObject(GetObject { name: [14; 20] }),
            Message::Object(Object { name: [14; 20], data: b"o" }),
            Message::GetRoot,
            Message::Root(Root { epoch: 15, data: b"r" }),
            Message::DropAll(DropAll { epoch: 16, signature: sig }),
            Message::Dropped,
            Message::Ok,
            Message::Error(ErrorMsg { code: ErrorCode::NotFound, message: "no root" }),
        ];
        let mut seeds: Vec<(String, Vec<u8>)> = messages.iter().map(frame_seed).collect();
        let mut all = vec![0, 7, 63, 255];
        for (_, one) in &seeds {
            all.extend_from_slice(&one[CONTROL_LEN..]);
        }
        seeds.push(("all-kinds".into(), all));
        for (name, seed) in seeds {
            frame_decoder(&seed);
            check_seed("frame_decoder", &name, &seed);
        }
    }

    /// A join answered, pings, a lookup and its acknowledgement, a probe and
    /// a repair request, as
    /// `overlay_node` records; checked in as seeds/overlay_node/join-and-route.
    #[test]
    fn overlay_node_seed_and_corpus() {
        use pastiche_core::wire::overlay::*;
        let from = NodeId([0x10; 16]);
        let origin = NodeRef { id: NodeId([0x33; 16]), addr: PeerAddr::v4([10, 0, 0, 3], 7468) };
        let peer = NodeRef { id: NodeId([0x44; 16]), addr: PeerAddr::v4([10, 0, 0, 4], 7468) };
        let mut packed = [0u8; PEER_LEN];
        let peers = PeerList::pack([peer], &mut packed).unwrap();
        let fp = [0x55u8; 40];
        let fingerprint = IdList::new(&fp).unwrap();
        let bodies = [
            Body::Ping(Ping { nonce: 1 }),
            Body::Pong(Pong { nonce: 2 }),
            Body::Peers(Peers { token: 3, set: PeerSet::Leaves, peers }),
            Body::GetPeers(GetPeers { token: 4, set: PeerSet::Row(0) }),
            Body::Join(Join { token: 5, origin, hops: 0 }),
            Body::Lookup(Lookup { token: 6, key: NodeId([0x99; 16]), origin, hops: 1 }),
            Body::RouteAck(RouteAck { token: 6 }),
            Body::Probe(Probe { token: 7, key: NodeId([0x98; 16]), origin, hops: 2, fingerprint }),
            Body::CoverageQuery(CoverageQuery { nonce: 8, fingerprint }),
            Body::CoverageReport(CoverageReport { nonce: 9, matched: 1, of: 2 }),
        ];
        let mut seed = Vec::new();
        for (i, body) in bodies.into_iter().enumerate() {
            let mut buf = [0u8; MAX_OVERLAY_PAYLOAD];
            let n = OverlayMessage { overlay: OverlayId::Network, from, body }.encode(&mut buf).unwrap();
            push_record(&mut seed, if i % 3 == 0 { 12 } else { 1 }, &buf[..n]);
        }
        crate::overlay_node(&seed);
        check_seed("overlay_node", "join-and-route", &seed);
        let n = replay("overlay_node", &["corpus", "artifacts"], crate::overlay_node);
        println!("replayed the overlay seed and {n} corpus inputs and artifacts");
    }

    /// The coverage overlay's join, answered by scripted peers at
    /// 10.0.0.2..=5 (the harness's node is deterministic, so the tokens and
    /// nonces it will draw are known): coverage reports for its queries,
    /// peer lists for its requests, so that the seed reaches seed
    /// discovery's climb and exploration, the measured neighbours, their
    /// round-trip times and the gossip asks; then a coverage query from an
    /// unknown peer (measured back) and a lookup. Checked in as
    /// seeds/overlay_node/coverage-join.
    #[test]
    fn overlay_node_coverage_seed() {
        use crate::overlay::Sink;
        use pastiche_core::overlay::{Config, Node};
        use pastiche_core::wire::overlay::*;

        let addr = |k: u8| PeerAddr::v4([10, 0, 0, k], 7468);
        let id = |k: u8| NodeId([0x10 + k; 16]);
        let mut node = Node::new(Config::new(OverlayId::Coverage), NodeId([0x42; 16]), addr(1), [9; 16], 0);
        let mut host = Sink::keeping();
        node.join(addr(2), 0, &mut host);
        // What the node sent and the scripted peers have yet to answer.
        let mut unanswered = host.take_sent();
        let (mut seed, mut now) = (Vec::new(), 0u64);
        let record = |k: u8, body: Body<'_>, seed: &mut Vec<u8>, now: &mut u64, node: &mut Node<PeerAddr>| {
            let mut buf = [0u8; MAX_OVERLAY_PAYLOAD];
            let n = OverlayMessage { overlay: OverlayId::Coverage, from: id(k), body }.encode(&mut buf).unwrap();
            // The harness: selector bit 7 (first record) picks the coverage
            // overlay, its low 2 bits the sender; time moves on selector x 100 ms.
            let selector = (k - 2) | if seed.is_empty() { 0x80 } else { 0 };
            *now += u64::from(selector) * 100_000;
            push_record(seed, selector, &buf[..n]);
            let mut out = Sink::keeping();
            node.handle(addr(k), &buf[..n], *now, &mut out).unwrap();
            out.take_sent()
        };
        for _ in 0..100 {
            let outgoing = std::mem::take(&mut unanswered);
            if outgoing.is_empty() {
                break;
            }
            for (to, bytes) in outgoing {
                let k = to.ip[15];
                if !(2..=5).contains(&k) {
                    continue;
                }
                let others: Vec<NodeRef> =
                    (2..=5u8).filter(|&o| o != k).map(|o| NodeRef { id: id(o), addr: addr(o) }).collect();
                let mut packed = [0u8; 4 * PEER_LEN];
                let msg = OverlayMessage::decode(&bytes).unwrap();
                let sent = match msg.body {
                    Body::Ping(Ping { nonce }) => record(k, Body::Pong(Pong { nonce }), &mut seed, &mut now, &mut node),
                    Body::CoverageQuery(q) => {
                        let report = CoverageReport { nonce: q.nonce, matched: u16::from(k - 1).min(2), of: 2 };
                        record(k, Body::CoverageReport(report), &mut seed, &mut now, &mut node)
                    }
                    Body::GetPeers(GetPeers { token, set }) => {
                        let peers = PeerList::pack(others, &mut packed).unwrap();
                        record(k, Body::Peers(Peers { token, set, peers }), &mut seed, &mut now, &mut node)
                    }
                    Body::Join(Join { token, .. }) => {
                        let peers = PeerList::pack(others, &mut packed).unwrap();
                        record(
                            k,
                            Body::Peers(Peers { token, set: PeerSet::Leaves, peers }),
                            &mut seed,
                            &mut now,
                            &mut node,
                        )
                    }
                    _ => Vec::new(),
                };
                unanswered.extend(sent);
            }
        }
        assert!(node.is_ready(), "the scripted peers carried the join through");
        assert!(node.state().neighbours().as_slice().len() >= 3);
        assert!(node.rtt_us(&id(5)).is_some(), "the best neighbour is timed");
        let fp = [0x55u8; 40];
        let fingerprint = IdList::new(&fp).unwrap();
        let stranger = CoverageQuery { nonce: 77, fingerprint };
        record(5, Body::CoverageQuery(stranger), &mut seed, &mut now, &mut node);
        let origin = NodeRef { id: id(3), addr: addr(3) };
        let lookup = Lookup { token: 6, key: NodeId([0x99; 16]), origin, hops: 1 };
        record(3, Body::Lookup(lookup), &mut seed, &mut now, &mut node);
        crate::overlay_node(&seed);
        check_seed("overlay_node", "coverage-join", &seed);
    }

    /// Beacons (one of this box, one new, one again, one changed), a
    /// pairing request and answer, and noise, as `lan_datagram` records;
    /// checked in as seeds/lan_datagram/beacons-and-pairing.
    #[test]
    fn lan_datagram_seed_and_corpus() {
        use pastiche_core::wire::beacon::{Beacon, Role};
        use pastiche_core::wire::pairing::*;
        let beacon = |key: u8| Beacon { role: Role::Appliance, tcp_port: 7467, buddy_key: [key; 32] }.encode();
        let mut records: Vec<(u8, Vec<u8>)> = vec![
            (1, beacon(0x42).to_vec()),
            (2, beacon(1).to_vec()),
            (250, beacon(1).to_vec()),
            (3, beacon(2).to_vec()),
        ];
        let req = PairingMessage::Request(PairRequest {
            token: 9,
            client_key: Fixed([1; 32]),
            buddy_key: Fixed([0; 32]),
            code_digest: Fixed([3; 32]),
            tcp_port: 7467,
            name: "seed",
            proof: Some(Fixed([4; 32])),
        });
        let answer = PairingMessage::Answer(PairAnswer {
            token: 9,
            buddy_key: Fixed([2; 32]),
            tcp_port: 7467,
            status: PairStatus::Pending,
            proof: None,
        });
        for msg in [req, answer] {
            let mut buf = [0u8; MAX_PAIRING_PAYLOAD];
            let n = msg.encode(&mut buf).unwrap();
            records.push((4, buf[..n].to_vec()));
        }
        records.push((5, b"PSTB\x02".to_vec()));
        let mut seed = Vec::new();
        for (selector, payload) in records {
            seed.push(selector);
            seed.push(payload.len() as u8);
            seed.extend_from_slice(&payload);
        }
        crate::lan_datagram(&seed);
        check_seed("lan_datagram", "beacons-and-pairing", &seed);
        let n = replay("lan_datagram", &["corpus", "artifacts"], crate::lan_datagram);
        println!("replayed the LAN seed and {n} corpus inputs and artifacts");
    }
}
