#!/usr/bin/env bash
# Checks `pastiche chunk` and `pastiche debug seal` byte for byte against the
# independent Python implementation of SPEC §1-2 (tools/spec_reference.py) on
# fresh random files of sizes around every boundary, zeros, text and real
# binaries from this machine.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
pastiche="${PASTICHE:-$here/target/release/pastiche}"
ref="$here/tools/spec_reference.py"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

python3 - "$work" <<'PY'
import os, random, sys
d = sys.argv[1]
rng = random.Random(os.urandom(8))
for n in [0, 1, 47, 48, 49, 2047, 2048, 2049, 65535, 65536, 65537, 131072, 3_000_000]:
    open(f"{d}/rand_{n}", "wb").write(rng.randbytes(n))
open(f"{d}/zeros", "wb").write(bytes(1_000_000))
words = [b"backup ", b"buddy ", b"chunk\n", b"pastiche ", b"the "]
open(f"{d}/text", "wb").write(b"".join(rng.choice(words) for _ in range(400_000)))
PY
files=("$work"/rand_* "$work/zeros" "$work/text")
for bin in /usr/bin/git /usr/bin/python3 /bin/bash; do
    [ -f "$bin" ] && cp "$(readlink -f "$bin")" "$work/bin_$(basename "$bin")" && files+=("$work/bin_$(basename "$bin")")
done

"$pastiche" chunk "${files[@]}" > "$work/ours.txt"
python3 "$ref" chunk "${files[@]}" > "$work/theirs.txt"
if ! cmp -s "$work/ours.txt" "$work/theirs.txt"; then
    diff "$work/ours.txt" "$work/theirs.txt" | head -20
    echo "conformance: pastiche chunk differs from the reference"
    exit 1
fi
chunks=$(wc -l < "$work/ours.txt")

sealed=0
for n in 0 1 2049 65536; do
    ours=$("$pastiche" debug seal "$work/rand_$n" "$work/ours.sealed")
    theirs=$(python3 "$ref" seal "$work/rand_$n" "$work/theirs.sealed")
    if [ "$ours" != "$theirs" ] || ! cmp -s "$work/ours.sealed" "$work/theirs.sealed"; then
        echo "conformance: pastiche debug seal differs from the reference on $n bytes"
        exit 1
    fi
    sealed=$((sealed + 1))
done
if "$pastiche" debug seal "$work/rand_65537" "$work/x" 2>/dev/null; then
    echo "conformance: sealing 65,537 bytes should fail"
    exit 1
fi
echo "conformance: ${#files[@]} files, $chunks chunks and $sealed sealed chunks identical to the reference"
