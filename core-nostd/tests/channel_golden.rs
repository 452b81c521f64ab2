//! The example handshake of PROTOCOL.md §1a, byte for byte: core's channel
//! with fixed keys must produce exactly the values the documentation gives,
//! which `tools/protocol_peer.py` (an independent implementation written
//! from the documentation) computes too.

use pastiche_core::channel::{static_secret, Handshake};
use pastiche_core::identity::{Domain, Identity};
use sha2::{Digest, Sha256};

/// The §2 golden `Hello` frame.
fn hello_frame() -> Vec<u8> {
    let mut f = vec![0, 0, 0, 0x52, 0x01, 0x03];
    f.extend([0x11; 32]);
    f.extend([0x22; 16]);
    f.extend([0x33; 32]);
    f
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[test]
fn the_documented_example_handshake() {
    let client = Identity::from_seed([1; 32]).unwrap();
    let buddy = Identity::from_seed([2; 32]).unwrap();
    let mut i = Handshake::<pastiche_core::channel::ChaChaPoly>::initiator(&client, [3; 32], None, 65535).unwrap();
    let mut r = Handshake::<pastiche_core::channel::ChaChaPoly>::responder(&buddy, [4; 32], 65535).unwrap();
    let mut records = Vec::new();
    for (writer, reader) in [(0, 1), (1, 0), (0, 1)] {
        let mut out = [0u8; 300];
        let n = if writer == 0 { i.write(&mut out) } else { r.write(&mut out) }.unwrap();
        let body = &out[2..n];
        if reader == 0 { i.read(body) } else { r.read(body) }.unwrap();
        records.push(out[..n].to_vec());
    }
    let mut client_channel = i.finish().unwrap();
    let buddy_channel = r.finish().unwrap();
    assert_eq!(client_channel.handshake_hash(), buddy_channel.handshake_hash());
    let mut first = [0u8; 200];
    let n = client_channel.seal(&hello_frame(), &mut first).unwrap();

    let x25519_public = |id: &Identity| {
        let secret = x25519_dalek::StaticSecret::from(static_secret(id));
        hex::encode(x25519_dalek::PublicKey::from(&secret).as_bytes())
    };
    assert_eq!(hex::encode(client.public_key().0), "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c");
    assert_eq!(x25519_public(&client), "3b462355dcba91d11050a8906c53d761966f3d55f66e48ca63635049a6983654");
    assert_eq!(hex::encode(buddy.public_key().0), "8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394");
    assert_eq!(x25519_public(&buddy), "4c492ed85c61de032945fb3e8e86edfa13925697ba3d422d82a2deea9fcfe118");
    assert_eq!(hex::encode(&records[0]), "00205dfedd3b6bd47f6fa28ee15d969d5bb0ea53774d488bdaf9df1c6e0124b3ef22");
    // The payloads' signatures (hedged Ed25519: documented, since another
    // implementation's valid signatures differ).
    for (id, want) in [
        (&client, "1a983fed3bda2596b156716b33a8dc946f1fdb15bb3a1efdf8eab992ab25059e0e9c54dac58e011c05e45e463827f80247eea37dbd56938c21042f456670020f"),
        (&buddy, "94b9fb7cb235b9d8c622dea299014e19a864f74903643cafc2b7c19e84667c79606c29a1ee251d641a80ad43df9a586f9ecb9b7ef8ccb38dcab375cb51fe280a"),
    ] {
        let public = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(static_secret(id)));
        let sig = id.sign(Domain::ChannelStatic, &[public.as_bytes()], [0; 16]);
        assert_eq!(hex::encode(sig.0), want);
    }
    assert_eq!(records[1].len(), 196);
    assert_eq!(sha256_hex(&records[1]), "aad680af922c6b8a86c0ab545b26ab1704abd7e72a0114a1ba1d40746dd2941c");
    assert_eq!(records[2].len(), 164);
    assert_eq!(sha256_hex(&records[2]), "66dbe6db04cedb5e2c23c595b32eee4a0376499eb4a5bd274742547a4b5c0c22");
    assert_eq!(
        hex::encode(client_channel.handshake_hash()),
        "0b4c762cc3c341069a35ca3d8bcfef6b93f21ef9cb64592695471100cddeffc7"
    );
    assert_eq!(n, 104);
    assert_eq!(sha256_hex(&first[..n]), "7da7d59199cb9e4e6cbf1c51985d7a1b852cd9abd3d229f3c0d1b1d2ee2e2354");
}
