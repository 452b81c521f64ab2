#!/usr/bin/env bash
# One large file (a disk image, a database dump, a tarball) backed up by
# pastiche, restic and borgbackup: first backup, re-backup after the file
# changed in a few places, and restore, each tool's wall time and peak RSS,
# pastiche's time as a ratio to Borg's, and the store sizes. Where
# `compare.sh` measures a tree of many files, this measures what one file
# read by one thread costs (docs/BENCHMARKS.md, stop 25).
#
#   bench/large_file.sh FILE [RUNS]
#
# The change: 20 places of 70 bytes overwritten and 16 bytes inserted in
# the middle. Each step runs RUNS times (default 3) on fresh repositories
# and reports the median. PASTICHE=/path/to/pastiche measures that binary.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
work="${BENCH_WORK:-/tmp/pastiche-large-file}"
# shellcheck source=bench/lib.sh
. "$here/bench/lib.sh"
[ $# -ge 1 ] || { echo "usage: bench/large_file.sh FILE [RUNS]" >&2; exit 2; }
file="$1" runs="${2:-3}"
compared_tools
bench_pastiche
rm -rf "$work"
mkdir -p "$work/src"
src="$work/src"

# step TOOL STEP: runs STEP (first, second, restore) for TOOL; appends
# "TOOL STEP seconds kib" to the results.
step() {
    local tool="$1" what="$2" repo="$work/$1"
    case "$tool/$what" in
        pastiche/first) "$pastiche" --data "$repo" --quiet init --name bench.example >/dev/null ;;
        restic/first) restic init -q --repo "$repo" >/dev/null ;;
        borg/first) borg init -e repokey "$repo" 2>/dev/null ;;
    esac
    case "$tool/$what" in
        pastiche/first | pastiche/second) set -- "$pastiche" --data "$repo" --quiet backup "$src" ;;
        restic/first | restic/second) set -- restic -q --repo "$repo" backup "$src" ;;
        borg/first | borg/second) set -- borg create "$repo::$what" "$src" ;;
        pastiche/restore) set -- "$pastiche" --data "$repo" --quiet restore latest --target "$work/out" ;;
        restic/restore) set -- restic -q --repo "$repo" restore latest --target "$work/out" ;;
        borg/restore) set -- bash -c "cd '$work/out' && borg extract '$repo::second'" ;;
    esac
    [ "$what" = restore ] && { rm -rf "$work/out"; mkdir -p "$work/out"; }
    [ "$what" = restore ] || warm "$src"
    sync
    /usr/bin/time -f "%e %M" -o "$work/t" "$@" >/dev/null 2>"$work/err" || { cat "$work/err"; exit 1; }
    echo "$tool $what $(cat "$work/t")" >> "$work/results"
    if [ "$what" = restore ]; then
        cmp -s "$src/$(basename "$file")" "$work/out$src/$(basename "$file")" || { echo "$tool restore differs"; exit 1; }
        rm -rf "$work/out"
    fi
}

for _ in $(seq "$runs"); do
    cp "$file" "$src/"
    for tool in pastiche restic borg; do rm -rf "${work:?}/$tool"; step "$tool" first; done
    python3 - "$src/$(basename "$file")" <<'PY'
import os, sys
path = sys.argv[1]
size = os.path.getsize(path)
with open(path, "r+b") as f:
    for i in range(20):
        f.seek(i * size // 20 + 12345)
        f.write(b"edited!" * 10)
data = open(path, "rb").read()
mid = len(data) // 2
open(path, "wb").write(data[:mid] + b"sixteen bytes in" + data[mid:])
PY
    for tool in pastiche restic borg; do step "$tool" second; done
    for tool in pastiche restic borg; do step "$tool" restore; done
    for tool in pastiche restic borg; do echo "$tool store $(du -sb "$work/$tool" | cut -f1)" >> "$work/results"; done
done

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
field() { awk -v t="$1" -v s="$2" -v f="$3" '$1 == t && $2 == s { print $f }' "$work/results" | median; }
echo "file: $file ($(du -b "$file" | cut -f1) bytes); $runs runs, medians; machine: $(nproc) cores"
echo
echo "| step | pastiche s | restic s | Borg s | pastiche / Borg | peak RSS pastiche / restic / Borg (MiB) |"
echo "|---|---|---|---|---|---|"
for what in first second restore; do
    p=$(field pastiche "$what" 3) r=$(field restic "$what" 3) b=$(field borg "$what" 3)
    rss() { awk -v k="$(field "$1" "$what" 4)" 'BEGIN { printf "%.0f", k / 1024 }'; }
    echo "| $what | $p | $r | $b | $(awk -v a="$p" -v b="$b" 'BEGIN { printf "%.2fx", a / b }') | $(rss pastiche) / $(rss restic) / $(rss borg) |"
done
mb() { awk -v s="$(field "$1" store 3)" 'BEGIN { printf "%.1f", s / 1e6 }'; }
echo
echo "store after both backups, MB: pastiche $(mb pastiche), restic $(mb restic), Borg $(mb borg)" \
    "(pastiche / restic $(awk -v a="$(mb pastiche)" -v b="$(mb restic)" 'BEGIN { printf "%.2fx", a / b }'))"
rm -rf "$work"
