#!/usr/bin/env python3
"""An independent client of the buddy protocol, written from docs/PROTOCOL.md
and SPEC.md alone (not from the Rust code). tools/protocol_checks.py runs it
against a real `pastiche serve` (tools/protocol_peer.sh, in CI).

It shares no code with the Rust side:
- the channel (PROTOCOL.md §1a) is a small hand-written Noise XX
  (Noise_XX_25519_ChaChaPoly_BLAKE2s, Noise spec revision 34) over the
  `cryptography` package's X25519 and ChaCha20-Poly1305 and hashlib's
  BLAKE2s; the `noiseprotocol` PyPI package would fit too, but it has not
  had a release since 2020, and the handshake is 100 lines here;
- frames and messages (§1, §2) are encoded by hand (LEB128 varints);
- signatures (§3, §1a) use the `cryptography` package's Ed25519;
- the chunks it ships are sealed by tools/spec_reference.py (SPEC §2, §2a).

Use: `Session(addr, Identity()).open(code=...)`, then `send`/`expect`
messages by name with their fields (FIELDS), `signed(...)` for signed
requests; `check_documented_examples()` checks PROTOCOL.md's examples.
"""
import hashlib
import hmac
import os
import socket
import struct

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.exceptions import InvalidSignature



class Disagreement(Exception):
    """The server did something the documentation says it does not."""


def expect(cond, what):
    if not cond:
        raise Disagreement(what)


# ---------------------------------------------------------------- Noise XX

PROTOCOL_NAME = b"Noise_XX_25519_ChaChaPoly_BLAKE2s"
PROLOGUE = b"pastiche/v2/channel\0"
HASHLEN = 32
TAG = 16


def blake2s(data):
    return hashlib.blake2s(data).digest()


def hkdf(ck, ikm, n):
    """Noise §4.3 HKDF with HMAC-BLAKE2s."""
    temp = hmac.new(ck, ikm, hashlib.blake2s).digest()
    out1 = hmac.new(temp, b"\x01", hashlib.blake2s).digest()
    out2 = hmac.new(temp, out1 + b"\x02", hashlib.blake2s).digest()
    return (out1, out2) if n == 2 else (out1, out2, hmac.new(temp, out2 + b"\x03", hashlib.blake2s).digest())


def x25519_pub(private):
    return private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def dh(private, public_bytes):
    return private.exchange(X25519PublicKey.from_public_bytes(public_bytes))


class CipherState:
    """Noise §5.1: a key and the implicit 64-bit counter nonce."""

    def __init__(self, key=None):
        self.key = key
        self.n = 0

    def nonce(self):
        return b"\0\0\0\0" + struct.pack("<Q", self.n)

    def encrypt(self, ad, plaintext):
        if self.key is None:
            return plaintext
        out = ChaCha20Poly1305(self.key).encrypt(self.nonce(), plaintext, ad)
        self.n += 1
        return out

    def decrypt(self, ad, ciphertext):
        if self.key is None:
            return ciphertext
        out = ChaCha20Poly1305(self.key).decrypt(self.nonce(), ciphertext, ad)
        self.n += 1
        return out


class SymmetricState:
    """Noise §5.2."""

    def __init__(self):
        self.h = PROTOCOL_NAME.ljust(HASHLEN, b"\0") if len(PROTOCOL_NAME) <= HASHLEN else blake2s(PROTOCOL_NAME)
        self.ck = self.h
        self.cipher = CipherState()

    def mix_hash(self, data):
        self.h = blake2s(self.h + data)

    def mix_key(self, ikm):
        self.ck, temp_k = hkdf(self.ck, ikm, 2)
        self.cipher = CipherState(temp_k)

    def encrypt_and_hash(self, plaintext):
        c = self.cipher.encrypt(self.h, plaintext)
        self.mix_hash(c)
        return c

    def decrypt_and_hash(self, ciphertext):
        p = self.cipher.decrypt(self.h, ciphertext)
        self.mix_hash(ciphertext)
        return p

    def split(self):
        k1, k2 = hkdf(self.ck, b"", 2)
        return CipherState(k1), CipherState(k2)


# ---------------------------------------------------------------- identity (§1a, §3)

SIG_PREFIX = {
    "Hello": b"pastiche/v1/sig/hello",
    "DeleteList": b"pastiche/v1/sig/delete",
    "MetadataPut": b"pastiche/v1/sig/metadata",
    "RootPut": b"pastiche/v1/sig/root",
    "Commit": b"pastiche/v1/sig/commit",
    "Drop": b"pastiche/v1/sig/drop",
    "Pair": b"pastiche/v1/sig/pair",
    "ChannelStatic": b"pastiche/v2/sig/channel-static",
}


def signed_bytes(domain, parts):
    """§3: prefix, one zero byte, then each part with its u32 BE length."""
    out = SIG_PREFIX[domain] + b"\0"
    for p in parts:
        out += struct.pack(">I", len(p)) + p
    return out


def verify(key_bytes, signature, domain, parts):
    try:
        Ed25519PublicKey.from_public_bytes(key_bytes).verify(signature, signed_bytes(domain, parts))
        return True
    except InvalidSignature:
        return False


class Identity:
    """A box's Ed25519 key and the Noise static key derived from it (§1a)."""

    def __init__(self, seed=None, name="peer.protocol-peer.test"):
        self.seed = seed or os.urandom(32)
        self.key = Ed25519PrivateKey.from_private_bytes(self.seed)
        self.public = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.static = X25519PrivateKey.from_private_bytes(blake2s(b"pastiche/v2/noise-static\0" + self.seed))
        self.static_public = x25519_pub(self.static)
        # SPEC §3: nodeId = first 128 bits of SHA1(fully-qualified name).
        self.node = hashlib.sha1(name.encode()).digest()[:16]

    def sign(self, domain, parts):
        return self.key.sign(signed_bytes(domain, parts))


# ---------------------------------------------------------------- the channel (§1a)

OUR_LIMIT = 65535
MIN_LIMIT = 512


class ChannelClosed(Exception):
    """The peer closed the TCP connection."""


class Channel:
    """The client (initiator) side of the secure channel over one socket."""

    def __init__(self, sock):
        self.sock = sock
        self.plain = b""  # decrypted bytes not yet taken by the frame layer

    def recv_exact(self, n):
        out = b""
        while len(out) < n:
            got = self.sock.recv(n - len(out))
            if not got:
                raise ChannelClosed(f"closed after {len(out)} of {n} bytes")
            out += got
        return out

    def send_record(self, body):
        self.sock.sendall(struct.pack(">H", len(body)) + body)

    def recv_record(self):
        (n,) = struct.unpack(">H", self.recv_exact(2))
        return self.recv_exact(n)

    def handshake(self, me, pinned=None, payload_override=None):
        """Runs XX as initiator; returns the buddy's Ed25519 key."""
        ss = SymmetricState()
        ss.mix_hash(PROLOGUE)
        # -> e
        e = X25519PrivateKey.generate()
        e_pub = x25519_pub(e)
        ss.mix_hash(e_pub)
        msg1 = e_pub + ss.encrypt_and_hash(b"")
        expect(len(msg1) == 32, "message 1 is 32 bytes")
        self.send_record(msg1)
        # <- e, ee, s, es
        msg2 = self.recv_record()
        expect(len(msg2) == 32 + 48 + 98 + 16, f"message 2 is 194 bytes, got {len(msg2)}")
        re = msg2[:32]
        ss.mix_hash(re)
        ss.mix_key(dh(e, re))
        rs = ss.decrypt_and_hash(msg2[32:80])
        ss.mix_key(dh(e, rs))
        payload_b = ss.decrypt_and_hash(msg2[80:])
        buddy_key, sig, limit = payload_b[:32], payload_b[32:96], struct.unpack(">H", payload_b[96:98])[0]
        expect(verify(buddy_key, sig, "ChannelStatic", [rs]), "the buddy's payload signs its Noise static key")
        expect(limit >= MIN_LIMIT, f"the buddy's record limit {limit} is at least 512")
        if pinned is not None and buddy_key != pinned:
            raise Disagreement("the buddy's key is not the pinned one")
        # -> s, se
        enc_s = ss.encrypt_and_hash(me.static_public)
        ss.mix_key(dh(me.static, re))
        payload = payload_override or (
            me.public + me.sign("ChannelStatic", [me.static_public]) + struct.pack(">H", OUR_LIMIT)
        )
        msg3 = enc_s + ss.encrypt_and_hash(payload)
        self.send_record(msg3)
        self.send_cipher, self.recv_cipher = ss.split()
        self.handshake_hash = ss.h
        self.buddy_limit = limit
        self.buddy_key = buddy_key
        return buddy_key

    def send(self, data):
        """Sends plaintext bytes in records the buddy accepts."""
        step = self.buddy_limit - TAG
        for at in range(0, len(data), step):
            self.send_record(self.send_cipher.encrypt(b"", data[at:at + step]))

    def send_raw_record(self, record_body):
        self.send_record(record_body)

    def recv_plain(self, n):
        while len(self.plain) < n:
            record = self.recv_record()
            expect(17 <= len(record) <= OUR_LIMIT, f"transport record of {len(record)} bytes")
            self.plain += self.recv_cipher.decrypt(b"", record)
        out, self.plain = self.plain[:n], self.plain[n:]
        return out


# ---------------------------------------------------------------- messages (§1, §2)

MAX_FRAME_PAYLOAD = 66 * 1024
KINDS = {
    "Hello": 1, "Challenge": 2, "Proof": 3, "Welcome": 4, "Pair": 5,
    "Offer": 10, "Need": 11, "PutChunk": 12, "Flush": 13, "Flushed": 14,
    "GetChunk": 15, "Chunk": 16, "PutObject": 20, "DeleteList": 21,
    "PutRoot": 22, "Commit": 23, "Staged": 24, "Committed": 25, "Abort": 26,
    "GetObject": 27, "Object": 28, "GetRoot": 29, "Root": 30, "DropAll": 31,
    "Dropped": 32, "Ok": 60, "Error": 61, "AuditRequest": 64, "AuditProofs": 65,
    "GetNotice": 88, "Notice": 89,
}
NAMES = {v: k for k, v in KINDS.items()}
ERRORS = {
    1: "BadFrame", 2: "UnexpectedMessage", 3: "BadSignature", 4: "Replayed",
    5: "QuotaExceeded", 6: "NotFound", 7: "VersionMismatch", 8: "TooLarge",
    9: "Internal", 10: "NotAuthenticated", 11: "RateLimited",
}
# Each kind's fields, in order: (name, type). Types: "u" a varint,
# an int N exactly N raw bytes, "bytes" and "str" length-prefixed.
FIELDS = {
    "Hello": [("version", "u"), ("client_key", 32), ("client_node", 16), ("client_nonce", 32)],
    "Challenge": [("buddy_key", 32), ("buddy_nonce", 32)],
    "Proof": [("signature", 64)],
    "Welcome": [("quota_bytes", "u"), ("used_bytes", "u"), ("committed_epoch", "u"), ("staged_epoch", "u")],
    "Pair": [("code", "str"), ("signature", 64)],
    "Offer": [("ids", "bytes")],
    "Need": [("bitmap", "bytes")],
    "PutChunk": [("id", 20), ("sealed", "bytes")],
    "Flush": [],
    "Flushed": [("stored", "u")],
    "GetChunk": [("id", 20)],
    "Chunk": [("id", 20), ("sealed", "bytes")],
    "PutObject": [("epoch", "u"), ("name", 20), ("data", "bytes"), ("signature", 64)],
    "DeleteList": [("epoch", "u"), ("ids", "bytes"), ("signature", 64)],
    "PutRoot": [("epoch", "u"), ("data", "bytes"), ("signature", 64)],
    "Commit": [("epoch", "u"), ("objects", "u"), ("deletes", "u"), ("staged", 32), ("signature", 64)],
    "Staged": [("epoch", "u")],
    "Committed": [("epoch", "u")],
    "Abort": [("epoch", "u")],
    "GetObject": [("name", 20)],
    "Object": [("name", 20), ("data", "bytes")],
    "GetRoot": [],
    "Root": [("epoch", "u"), ("data", "bytes")],
    "DropAll": [("epoch", "u"), ("signature", 64)],
    "Dropped": [],
    "Ok": [],
    "Error": [("code", "u"), ("message", "str")],
    "AuditRequest": [("nonce", 32), ("ids", "bytes")],
    "AuditProofs": [("held", "bytes"), ("proofs", "bytes")],
    "GetNotice": [],
    "Notice": [("seq", "u"), ("dropped_at", "u"), ("bytes", "u"), ("reason", 1)],
}


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def read_varint(buf, at):
    n = shift = 0
    while True:
        expect(at < len(buf), "truncated varint")
        b = buf[at]
        at += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, at
        expect(shift < 70, "over-long varint")


def encode(kind, **fields):
    out = bytes([KINDS[kind]])
    for name, typ in FIELDS[kind]:
        v = fields[name]
        if typ == "u":
            out += varint(v)
        elif isinstance(typ, int):
            assert len(v) == typ, (kind, name)
            out += v
        else:
            v = v.encode() if typ == "str" else v
            out += varint(len(v)) + v
    return out


def decode(payload):
    expect(payload and payload[0] in NAMES, f"unknown kind {payload[:1].hex()}")
    kind = NAMES[payload[0]]
    at = 1
    msg = {"kind": kind}
    for name, typ in FIELDS[kind]:
        if typ == "u":
            msg[name], at = read_varint(payload, at)
        elif isinstance(typ, int):
            expect(at + typ <= len(payload), f"{kind}.{name} truncated")
            msg[name], at = payload[at:at + typ], at + typ
        else:
            n, at = read_varint(payload, at)
            expect(at + n <= len(payload), f"{kind}.{name} truncated")
            v = payload[at:at + n]
            msg[name], at = (v.decode() if typ == "str" else v), at + n
    expect(at == len(payload), f"{kind}: {len(payload) - at} bytes after the last field")
    expect(encode(kind, **{k: v for k, v in msg.items() if k != "kind"}) == payload, f"{kind} not canonical")
    return msg


def frame(payload):
    return struct.pack(">I", len(payload)) + payload


# ---------------------------------------------------------------- the session (§4)

VERSION = 3


class Refused(Exception):
    """The buddy answered Error (code name, message)."""

    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class Session:
    def __init__(self, addr, me, pinned=None, timeout=20):
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.channel = Channel(self.sock)
        self.me = me
        self.pinned = pinned

    def close(self):
        self.sock.close()

    def send(self, kind, **fields):
        self.channel.send(frame(encode(kind, **fields)))

    def recv(self):
        (n,) = struct.unpack(">I", self.channel.recv_plain(4))
        expect(1 <= n <= MAX_FRAME_PAYLOAD, f"frame of {n} bytes")
        return decode(self.channel.recv_plain(n))

    def recv_and_raise(self):
        """Reads one message; an Error is raised as Refused."""
        msg = self.recv()
        if msg["kind"] == "Error":
            raise Refused(ERRORS.get(msg["code"], msg["code"]), msg["message"])
        return msg

    def expect(self, kind):
        msg = self.recv()
        if msg["kind"] == "Error":
            raise Refused(ERRORS.get(msg["code"], msg["code"]), msg["message"])
        expect(msg["kind"] == kind, f"expected {kind}, got {msg['kind']}")
        return msg

    def open(self, code=None):
        """Channel handshake, then Hello / Challenge / Proof or Pair / Welcome."""
        self.buddy_key = self.channel.handshake(self.me, self.pinned)
        nonce = os.urandom(32)
        self.send("Hello", version=VERSION, client_key=self.me.public, client_node=self.me.node, client_nonce=nonce)
        challenge = self.expect("Challenge")
        expect(challenge["buddy_key"] == self.buddy_key, "Challenge.buddy_key is the key the channel proved")
        parts = [challenge["buddy_nonce"], nonce, self.buddy_key]
        if code is None:
            self.send("Proof", signature=self.me.sign("Hello", parts))
        else:
            self.send("Pair", code=code, signature=self.me.sign("Pair", parts + [code.encode()]))
        self.welcome = self.expect("Welcome")
        return self.welcome

    def signed(self, kind, domain, parts, **fields):
        self.send(kind, signature=self.me.sign(domain, [self.buddy_key] + parts), **fields)

    def offer(self, ids):
        self.send("Offer", ids=b"".join(ids))
        bitmap = self.expect("Need")["bitmap"]
        expect(len(bitmap) == (len(ids) + 7) // 8, "Need bitmap length")
        expect(not bitmap or bitmap[-1] >> (len(ids) - 8 * (len(bitmap) - 1)) == 0, "Need's unused high bits are 0")
        return [bool(bitmap[i // 8] >> (i % 8) & 1) for i in range(len(ids))]

    def get_chunk(self, cid):
        msg = self.expect("Chunk")
        expect(msg["id"] == cid, "Chunk answers the id asked")
        return msg["sealed"]


def be64(n):
    return struct.pack(">Q", n)


def be32(n):
    return struct.pack(">I", n)


def staging_digest(objects, deletes, root):
    """§4.4: objects {name: data}, deletes a set of ids, root data."""
    h = hashlib.sha256(b"pastiche/v3/staging\0")
    for name in sorted(objects):
        h.update(b"\x01" + name + hashlib.sha256(objects[name]).digest())
    for cid in sorted(set(deletes)):
        h.update(b"\x02" + cid)
    h.update(b"\x03" + hashlib.sha256(root).digest())
    return h.digest()


# ---------------------------------------------------------------- documented examples

def golden_transcript():
    """§1a's example handshake, both ends run here with fixed keys: client
    seed 01×32 and ephemeral 03×32, buddy seed 02×32 and ephemeral 04×32,
    both announcing 65,535; then the client's first record carries §2's
    golden Hello frame. Ed25519 signatures by pastiche are hedged (a
    random-looking nonce), not RFC 8032's deterministic ones, so the example
    takes the documented signature bytes (checked here) rather than making
    its own. Returns {name: bytes}."""
    client, buddy = Identity(seed=b"\x01" * 32), Identity(seed=b"\x02" * 32)
    ce, be = X25519PrivateKey.from_private_bytes(b"\x03" * 32), X25519PrivateKey.from_private_bytes(b"\x04" * 32)
    limit = struct.pack(">H", OUR_LIMIT)

    def payload(me):
        sig = bytes.fromhex(GOLDEN_SIGNATURES[me.public == buddy.public])
        expect(verify(me.public, sig, "ChannelStatic", [me.static_public]), "golden: the documented signature")
        return me.public + sig + limit

    i, r = SymmetricState(), SymmetricState()
    for ss in (i, r):
        ss.mix_hash(PROLOGUE)
    # -> e
    msg1 = x25519_pub(ce)
    i.mix_hash(msg1)
    msg1 += i.encrypt_and_hash(b"")
    r.mix_hash(msg1[:32])
    r.decrypt_and_hash(msg1[32:])
    # <- e, ee, s, es
    msg2 = x25519_pub(be)
    r.mix_hash(msg2)
    r.mix_key(dh(be, msg1[:32]))
    msg2 += r.encrypt_and_hash(buddy.static_public)
    r.mix_key(dh(buddy.static, msg1[:32]))
    msg2 += r.encrypt_and_hash(payload(buddy))
    i.mix_hash(msg2[:32])
    i.mix_key(dh(ce, msg2[:32]))
    expect(i.decrypt_and_hash(msg2[32:80]) == buddy.static_public, "golden: s")
    i.mix_key(dh(ce, buddy.static_public))
    expect(i.decrypt_and_hash(msg2[80:]) == payload(buddy), "golden: payload 2")
    # -> s, se
    msg3 = i.encrypt_and_hash(client.static_public)
    i.mix_key(dh(client.static, msg2[:32]))
    msg3 += i.encrypt_and_hash(payload(client))
    r.decrypt_and_hash(msg3[:48])
    r.mix_key(dh(be, client.static_public))
    expect(r.decrypt_and_hash(msg3[48:]) == payload(client), "golden: payload 3")
    expect(i.h == r.h, "golden: both ends hold one handshake hash")
    send, _ = i.split()
    hello = frame(encode("Hello", version=3, client_key=b"\x11" * 32, client_node=b"\x22" * 16,
                         client_nonce=b"\x33" * 32))
    record = send.encrypt(b"", hello)

    def rec(body):
        return struct.pack(">H", len(body)) + body

    return {
        "client_key": client.public,
        "client_static": client.static_public,
        "buddy_key": buddy.public,
        "buddy_static": buddy.static_public,
        "message1": rec(msg1),
        "message2": rec(msg2),
        "message3": rec(msg3),
        "handshake_hash": i.h,
        "first_record": rec(record),
    }


# The signatures of §1a's example (client's, buddy's), made by pastiche.
GOLDEN_SIGNATURES = [
    "1a983fed3bda2596b156716b33a8dc946f1fdb15bb3a1efdf8eab992ab25059e0e9c54dac58e011c05e45e463827f80247eea37dbd56938c21042f456670020f",
    "94b9fb7cb235b9d8c622dea299014e19a864f74903643cafc2b7c19e84667c79606c29a1ee251d641a80ad43df9a586f9ecb9b7ef8ccb38dcab375cb51fe280a",
]
# PROTOCOL.md §1a's example handshake, as documented (SHA-256 of the
# longer records).
GOLDEN = {
    "client_key": "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c",
    "client_static": "3b462355dcba91d11050a8906c53d761966f3d55f66e48ca63635049a6983654",
    "buddy_key": "8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394",
    "buddy_static": "4c492ed85c61de032945fb3e8e86edfa13925697ba3d422d82a2deea9fcfe118",
    "message1": "00205dfedd3b6bd47f6fa28ee15d969d5bb0ea53774d488bdaf9df1c6e0124b3ef22",
    "message2": "sha256 aad680af922c6b8a86c0ab545b26ab1704abd7e72a0114a1ba1d40746dd2941c",
    "message3": "sha256 66dbe6db04cedb5e2c23c595b32eee4a0376499eb4a5bd274742547a4b5c0c22",
    "handshake_hash": "0b4c762cc3c341069a35ca3d8bcfef6b93f21ef9cb64592695471100cddeffc7",
    "first_record": "sha256 7da7d59199cb9e4e6cbf1c51985d7a1b852cd9abd3d229f3c0d1b1d2ee2e2354",
}


def check_documented_examples():
    """The examples PROTOCOL.md gives, computed here from their definitions."""
    for name, value in golden_transcript().items():
        got = value.hex() if len(value) <= 40 else "sha256 " + hashlib.sha256(value).hexdigest()
        expect(got == GOLDEN[name], f"§1a's example handshake: {name} is {got}, documented {GOLDEN[name]}")
    example = signed_bytes("RootPut", [b"\x22" * 32, be64(7), b"root"])
    expect(example == bytes.fromhex("7061737469636865 2f76312f7369672f726f6f7400".replace(" ", ""))
           + b"\0\0\0\x20" + b"\x22" * 32 + b"\0\0\0\x08" + be64(7) + b"\0\0\0\x04root",
           "§3's PutRoot signed-bytes example")
    digest = staging_digest({b"\x01" * 20: b"one"}, [], b"root")
    hashed = (b"pastiche/v3/staging\0" + b"\x01" + b"\x01" * 20 + hashlib.sha256(b"one").digest() + b"\x03"
              + hashlib.sha256(b"root").digest())
    expect(digest == hashlib.sha256(hashed).digest(), "§4.4's staging digest example")
    golden = frame(encode("Commit", epoch=128, objects=2, deletes=0, staged=b"\x55" * 32, signature=b"\x77" * 64))
    expect(golden == bytes.fromhex("00000065 17 8001 02 00".replace(" ", "")) + b"\x55" * 32 + b"\x77" * 64,
           "§2's Commit golden bytes")
    golden = frame(encode("Welcome", quota_bytes=1 << 40, used_bytes=300, committed_epoch=7, staged_epoch=0))
    expect(golden == bytes.fromhex("0000000b04808080808020ac020700"), "§2's Welcome golden bytes")
