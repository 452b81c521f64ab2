#!/usr/bin/env python3
"""An independent, deliberately plain implementation of SPEC §1 and §2.

It shares no code with the Rust core: polynomial arithmetic is done bit by
bit, the window is recomputed from its definition, and sealing uses Python's
hashlib/hmac and the `cryptography` package's AES. Used by CI to check
`pastiche chunk` and `pastiche debug seal` byte for byte.

usage: spec_reference.py chunk FILE...     (same output format as `pastiche chunk`)
       spec_reference.py seal IN OUT       (writes the sealed chunk, prints chunkId)
"""
import hashlib
import hmac
import sys

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

POLY = 0xBFE6B8A5BF378D83
DEG = 63
WINDOW = 48
MIN_CHUNK, MAX_CHUNK = 2048, 65536


def polymod(a):
    while a.bit_length() > DEG:
        a ^= POLY << (a.bit_length() - 1 - DEG)
    return a


# b * x^(8*48) mod P, for removing the byte that leaves the window.
OUT = [polymod(b << (8 * WINDOW)) for b in range(256)]


def cuts(data):
    """Chunk (offset, length) pairs of `data`, rolling one window over the
    whole stream exactly as §1 defines f(p)."""
    f = 0
    start = 0
    out = []
    for p, b in enumerate(data):
        old = data[p - WINDOW] if p >= WINDOW else 0
        f = polymod((f << 8) | b) ^ OUT[old]
        n = p - start + 1
        if (n >= MIN_CHUNK and (f & 0x3FFF) == 0x78) or n == MAX_CHUNK:
            out.append((start, n))
            start = p + 1
    if start < len(data):
        out.append((start, len(data) - start))
    return out


def seal(chunk):
    h = hashlib.sha1(chunk).digest()
    cid = hashlib.sha1(h).digest()
    k = hmac.new(h, b"pastiche/v1/enc", hashlib.sha1).digest()[:16]
    m = hmac.new(h, b"pastiche/v1/mac", hashlib.sha1).digest()
    enc = Cipher(algorithms.AES(k), modes.CTR(b"\0" * 16)).encryptor()
    c = enc.update(chunk) + enc.finalize()
    t = hmac.new(m, c, hashlib.sha1).digest()
    return h, cid, c + t


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "chunk":
        for path in sys.argv[2:]:
            data = open(path, "rb").read()
            for off, n in cuts(data):
                h, cid, _ = seal(data[off:off + n])
                print(off, n, h.hex(), cid.hex())
    elif len(sys.argv) == 4 and sys.argv[1] == "seal":
        data = open(sys.argv[2], "rb").read()
        _, cid, sealed = seal(data)
        open(sys.argv[3], "wb").write(sealed)
        print(cid.hex())
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
