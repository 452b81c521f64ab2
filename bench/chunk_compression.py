#!/usr/bin/env python3
"""How much compressing ~16 KiB chunks one by one costs against restic's
~1 MiB blobs, and what a higher fixed zstd level would buy (issue 15).

    python3 bench/chunk_compression.py TREE [SAMPLE_FRACTION]

Prints, over every regular file of TREE (hard links read each time):
the bytes, their size compressed at zstd level 3 in 16 KiB pieces (SPEC
section 2a: each chunk alone), the same with pastiche's incompressibility
probe, and in 1 MiB pieces (restic's blob size). Then, over a random
SAMPLE_FRACTION of the files (default 0.25), the size and speed of each
zstd level on 16 KiB pieces. Needs the `zstandard` package.
"""
import os
import random
import sys
import time

import zstandard as zs

PROBE = 4096


def looks_incompressible(piece):
    """appliance/src/sealing.rs `looks_incompressible`, the same integer rule."""
    if len(piece) < PROBE:
        return False
    start = (len(piece) - PROBE) // 2
    counts = [0] * 256
    for b in piece[start:start + PROBE]:
        counts[b] += 1
    squares = sum(c * c for c in counts)
    return squares * 4 <= (PROBE * PROBE // 256) * 5


def files(root, fraction=1.0, seed=1):
    rng = random.Random(seed)
    for d, _, names in os.walk(root):
        for name in sorted(names):
            path = os.path.join(d, name)
            if os.path.islink(path) or not os.path.isfile(path) or rng.random() > fraction:
                continue
            with open(path, 'rb') as f:
                yield f.read()


def pieces(data, size):
    return (data[i:i + size] for i in range(0, len(data), size))


def main():
    root = sys.argv[1]
    fraction = float(sys.argv[2]) if len(sys.argv) > 2 else 0.25
    level3 = zs.ZstdCompressor(level=3, write_content_size=True)
    total = z16 = z16_probe = z1m = 0
    for data in files(root):
        total += len(data)
        for p in pieces(data, 16384):
            z = min(len(level3.compress(p)), len(p))
            z16 += z
            z16_probe += len(p) if looks_incompressible(p) else z
        for p in pieces(data, 1 << 20):
            z1m += min(len(level3.compress(p)), len(p))
    print(f"bytes {total}; level 3 in 16 KiB pieces {z16} ({z16 / total:.4f}), with the probe {z16_probe}; "
          f"in 1 MiB pieces {z1m} ({z1m / total:.4f}); 16 KiB / 1 MiB = {z16 / z1m:.3f}")
    sample = [p for data in files(root, fraction) for p in pieces(data, 16384)]
    size = sum(map(len, sample))
    print(f"sample of {fraction:.0%} of the files: {size} bytes in 16 KiB pieces")
    base = None
    for level in [1, 3, 4, 5, 6, 7, 9, 12, 15, 19]:
        c = zs.ZstdCompressor(level=level, write_content_size=True)
        t = time.process_time()
        z = sum(min(len(c.compress(p)), len(p)) for p in sample)
        dt = time.process_time() - t
        base = z if level == 3 else base
        vs3 = f", {z / base - 1:+.1%} vs level 3" if base else ""
        print(f"level {level:2}: {z} ({z / size:.4f}{vs3}), {size / dt / 1e6:.0f} MB/s on one core")


if __name__ == '__main__':
    main()
