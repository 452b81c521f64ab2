#!/usr/bin/env bash
# Checks `pastiche chunk`, `pastiche debug seal` and `pastiche debug open`
# against the independent Python implementation of SPEC §1, §2 and §2a
# (tools/spec_reference.py) on fresh random files of sizes around every
# boundary, zeros, text and real binaries from this machine:
# - chunk boundaries, handles and chunkIds: byte for byte;
# - sealed chunks stored raw: byte for byte;
# - sealed chunks stored compressed: the reference opens ours and pastiche
#   opens the reference's, each checking §2a in full;
# - chunks forged by the reference that §2a requires a reader to refuse
#   (bad body tag, frames without a content size, oversized, truncated,
#   trailing bytes, decompression bombs): both refuse every one.
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
# Single chunks for sealing: compressible ones of every size class, and a
# half-random one.
open(f"{d}/one_zeros_65536", "wb").write(bytes(65536))
open(f"{d}/one_text_20000", "wb").write(b"".join(rng.choice(words) for _ in range(4000))[:20000])
open(f"{d}/one_text_300", "wb").write(b"pastiche " * 33 + b"abc")
open(f"{d}/one_half_40000", "wb").write(bytes(20000) + rng.randbytes(20000))
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

# A 60 KB slice of a real binary: compressible, from outside the project.
head -c 60000 "${files[-1]}" > "$work/one_binary_60000"
raw=0
compressed=0
for input in "$work"/rand_0 "$work"/rand_1 "$work"/rand_2049 "$work"/rand_65536 "$work"/one_*; do
    name=$(basename "$input")
    handle=$(sha1sum "$input" | cut -c1-40)
    ours_id=$("$pastiche" debug seal "$input" "$work/ours.sealed")
    theirs_id=$(python3 "$ref" seal --raw "$input" "$work/raw.sealed")
    if [ "$ours_id" != "$theirs_id" ]; then
        echo "conformance: chunkId of $name differs: $ours_id vs $theirs_id"
        exit 1
    fi
    if ! kind=$(python3 "$ref" open "$work/ours.sealed" "$work/ours.plain" --handle "$handle") \
        || ! cmp -s "$work/ours.plain" "$input"; then
        echo "conformance: the reference cannot open pastiche's sealing of $name"
        exit 1
    fi
    case "$kind" in
        raw)
            if ! cmp -s "$work/ours.sealed" "$work/raw.sealed"; then
                echo "conformance: pastiche's raw sealing of $name differs from the reference"
                exit 1
            fi
            raw=$((raw + 1))
            ;;
        zstd)
            compressed=$((compressed + 1))
            ;;
        *)
            echo "conformance: unexpected body kind $kind for $name"
            exit 1
            ;;
    esac
    # Whatever the reference writes (raw or compressed), pastiche opens.
    for mode in "" --raw; do
        python3 "$ref" seal $mode "$input" "$work/theirs.sealed" > /dev/null
        if ! "$pastiche" debug open "$work/theirs.sealed" "$work/theirs.plain" --handle "$handle" \
            || ! cmp -s "$work/theirs.plain" "$input"; then
            echo "conformance: pastiche cannot open the reference's ${mode:-compressed} sealing of $name"
            exit 1
        fi
    done
done
if [ "$raw" -lt 4 ] || [ "$compressed" -lt 4 ]; then
    echo "conformance: expected the random chunks raw and the others compressed; got $raw raw, $compressed compressed"
    exit 1
fi
if "$pastiche" debug seal "$work/rand_65537" "$work/x" 2>/dev/null; then
    echo "conformance: sealing 65,537 bytes should fail"
    exit 1
fi

forged=0
for kind in $(python3 -c "import sys; sys.path.insert(0, '$here/tools'); import spec_reference; print(*spec_reference.FORGERIES)"); do
    handle=$(python3 "$ref" forge "$kind" "$work/one_text_20000" "$work/forged.sealed")
    if "$pastiche" debug open "$work/forged.sealed" "$work/forged.plain" --handle "$handle" 2>/dev/null; then
        echo "conformance: pastiche opened a chunk forged as $kind"
        exit 1
    fi
    if python3 "$ref" open "$work/forged.sealed" "$work/forged.plain" --handle "$handle" 2>/dev/null; then
        echo "conformance: the reference opened a chunk forged as $kind"
        exit 1
    fi
    forged=$((forged + 1))
done
echo "conformance: ${#files[@]} files and $chunks chunks identical to the reference;" \
    "$raw raw sealed chunks identical, $compressed compressed ones opened both ways;" \
    "$forged forged chunks refused by both"
