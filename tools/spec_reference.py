#!/usr/bin/env python3
"""An independent, deliberately plain implementation of SPEC §1, §2 and §2a.

It shares no code with the Rust core: polynomial arithmetic is done bit by
bit, the window is recomputed from its definition, sealing uses Python's
hashlib/hmac and the `cryptography` package's AES, compression the
`zstandard` package, and the zstd frame header is parsed here from RFC 8878.
Used by CI (tools/conformance.sh) to check `pastiche chunk`, `pastiche debug
seal` and `pastiche debug open`: raw chunks byte for byte, compressed ones by
opening them, and every refusal of §2a on chunks forged here.

usage: spec_reference.py chunk FILE...       (same output format as `pastiche chunk`)
       spec_reference.py seal [--raw] IN OUT (writes the sealed chunk, prints chunkId)
       spec_reference.py open IN OUT --handle HEX
                                             (opens, writes the plaintext, prints raw|zstd)
       spec_reference.py forge KIND IN OUT   (seals IN's bytes wrongly in way KIND,
                                              prints the handle; KIND in FORGERIES)
"""
import hashlib
import hmac
import struct
import sys

import zstandard
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

POLY = 0xBFE6B8A5BF378D83
DEG = 63
WINDOW = 48
MIN_CHUNK, MAX_CHUNK = 2048, 65536
TAG_LEN = 20
RAW, ZSTD = 0x00, 0x01
LEVEL = 3
ZSTD_MAGIC = 0xFD2FB528


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


def keys(h):
    k = hmac.new(h, b"pastiche/v1/enc", hashlib.sha1).digest()[:16]
    m = hmac.new(h, b"pastiche/v1/mac", hashlib.sha1).digest()
    return k, m


def ctr(k, data):
    c = Cipher(algorithms.AES(k), modes.CTR(b"\0" * 16)).encryptor()
    return c.update(data) + c.finalize()


def seal_body(h, body):
    """`C || T` for a body, under the keys of handle h."""
    k, m = keys(h)
    c = ctr(k, body)
    return c + hmac.new(m, c, hashlib.sha1).digest()


def compress(chunk):
    return zstandard.ZstdCompressor(level=LEVEL, write_content_size=True).compress(chunk)


def seal(chunk, raw=False):
    """(handle, chunkId, sealed) of §2a: compressed when the frame is
    smaller than the chunk, raw otherwise (or when asked)."""
    h = hashlib.sha1(chunk).digest()
    cid = hashlib.sha1(h).digest()
    body = bytes([RAW]) + chunk
    if not raw:
        z = compress(chunk)
        if len(z) < len(chunk):
            body = bytes([ZSTD]) + z
    return h, cid, seal_body(h, body)


def content_size(z):
    """The content size a zstd frame header declares (RFC 8878 3.1.1.1)."""
    if len(z) < 5 or struct.unpack("<I", z[:4])[0] != ZSTD_MAGIC:
        raise ValueError("not a zstd frame")
    fhd = z[4]
    size_flag, single, dict_flag = fhd >> 6, (fhd >> 5) & 1, fhd & 3
    if fhd & 0x08:
        raise ValueError("reserved bit set")
    if dict_flag:
        raise ValueError("frame needs a dictionary")
    n = [1 if single else 0, 2, 4, 8][size_flag]
    if n == 0:
        raise ValueError("frame does not declare its content size")
    at = 5 + (0 if single else 1)
    if len(z) < at + n:
        raise ValueError("frame header truncated")
    size = int.from_bytes(z[at:at + n], "little") + (256 if n == 2 else 0)
    if size > MAX_CHUNK:
        raise ValueError(f"frame declares {size} bytes")
    return size


def open_sealed(sealed, h):
    """(kind, plaintext) or ValueError, checking everything §2a asks."""
    if not 1 + TAG_LEN <= len(sealed) <= 1 + MAX_CHUNK + TAG_LEN:
        raise ValueError(f"sealed chunk of {len(sealed)} bytes")
    k, m = keys(h)
    c, t = sealed[:-TAG_LEN], sealed[-TAG_LEN:]
    if not hmac.compare_digest(hmac.new(m, c, hashlib.sha1).digest(), t):
        raise ValueError("bad tag")
    body = ctr(k, c)
    if body[0] == RAW:
        kind, plain = "raw", body[1:]
    elif body[0] == ZSTD:
        z = body[1:]
        size = content_size(z)
        d = zstandard.ZstdDecompressor().decompressobj()
        try:
            plain = d.decompress(z)
        except zstandard.ZstdError as e:
            raise ValueError(f"corrupt frame: {e}")
        if not d.eof:
            raise ValueError("frame truncated")
        if d.unused_data:
            raise ValueError(f"{len(d.unused_data)} bytes after the frame")
        if len(plain) != size:
            raise ValueError(f"frame declares {size} bytes, produced {len(plain)}")
        kind = "zstd"
    else:
        raise ValueError(f"unknown body tag {body[0]}")
    if hashlib.sha1(plain).digest() != h:
        raise ValueError("plaintext does not hash to the handle")
    return kind, plain


def frame_without_size(chunk):
    return zstandard.ZstdCompressor(level=LEVEL, write_content_size=False).compress(chunk)


def declare(z, size):
    """z (a frame with an 8-byte content size field) declaring `size`."""
    return z[:5] + struct.pack("<Q", size) + z[13:]


def redeclare(z, size):
    """z declaring `size` in its own content size field (4 or 8 bytes wide)."""
    fhd = z[4]
    single = (fhd >> 5) & 1
    n = [1 if single else 0, 2, 4, 8][fhd >> 6]
    assert n in (4, 8)
    at = 5 + (0 if single else 1)
    return z[:at] + size.to_bytes(n, "little") + z[at + n:]


def eight_byte_size_frame(chunk):
    """A frame of chunk whose header holds an 8-byte content size field,
    single segment (so no window descriptor): easy to rewrite."""
    z = compress(chunk)
    fhd = z[4]
    single = (fhd >> 5) & 1
    n = [1 if single else 0, 2, 4, 8][fhd >> 6]
    at = 5 + (0 if single else 1)
    rest = z[at + n:]
    return struct.pack("<I", ZSTD_MAGIC) + bytes([0xE0]) + struct.pack("<Q", len(chunk)) + rest


# Each forgery is a sealed chunk with a valid tag under SHA1(plaintext) that
# §2a requires a reader to refuse.
FORGERIES = {
    "body-tag-2": lambda c: bytes([2]) + c,
    "body-tag-ff": lambda c: bytes([0xFF]) + compress(c),
    "empty-frame": lambda c: bytes([ZSTD]),
    "no-content-size": lambda c: bytes([ZSTD]) + frame_without_size(c),
    "declared-too-large": lambda c: bytes([ZSTD]) + declare(eight_byte_size_frame(c), MAX_CHUNK + 1),
    "declared-too-small": lambda c: bytes([ZSTD]) + declare(eight_byte_size_frame(c), len(c) - 1),
    "declared-too-big-for-content": lambda c: bytes([ZSTD]) + declare(eight_byte_size_frame(c), len(c) + 1),
    "truncated-frame": lambda c: bytes([ZSTD]) + compress(c)[:-1],
    "trailing-garbage": lambda c: bytes([ZSTD]) + compress(c) + b"\0",
    "two-frames": lambda c: bytes([ZSTD]) + compress(c[: len(c) // 2]) + compress(c[len(c) // 2:]),
    "bomb": lambda c: bytes([ZSTD]) + compress(bytes(MAX_CHUNK + 1)),
    "bomb-undeclared": lambda c: bytes([ZSTD]) + frame_without_size(bytes(16 << 20)),
    "bomb-lying-size": lambda c: bytes([ZSTD]) + redeclare(compress(bytes(16 << 20)), MAX_CHUNK),
    "skippable-frame": lambda c: bytes([ZSTD]) + struct.pack("<II", 0x184D2A50, 4) + b"pad!" + compress(c),
}


def main():
    args = sys.argv[1:]
    if len(args) >= 2 and args[0] == "chunk":
        for path in args[1:]:
            data = open(path, "rb").read()
            for off, n in cuts(data):
                h = hashlib.sha1(data[off:off + n]).digest()
                print(off, n, h.hex(), hashlib.sha1(h).hexdigest())
    elif len(args) in (3, 4) and args[0] == "seal" and (len(args) == 3 or args[1] == "--raw"):
        data = open(args[-2], "rb").read()
        _, cid, sealed = seal(data, raw=len(args) == 4)
        open(args[-1], "wb").write(sealed)
        print(cid.hex())
    elif len(args) == 5 and args[0] == "open" and args[3] == "--handle":
        try:
            kind, plain = open_sealed(open(args[1], "rb").read(), bytes.fromhex(args[4]))
        except ValueError as e:
            sys.exit(f"refused: {e}")
        open(args[2], "wb").write(plain)
        print(kind)
    elif len(args) == 4 and args[0] == "forge" and args[1] in FORGERIES:
        data = open(args[2], "rb").read()
        h = hashlib.sha1(data).digest()
        open(args[3], "wb").write(seal_body(h, FORGERIES[args[1]](data)))
        print(h.hex())
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
