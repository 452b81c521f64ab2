#!/usr/bin/env bash
# First backups of one tree by several pastiche binaries, interleaved round
# by round, the page cache warmed before every run; no other tool. For
# comparing builds that differ in one setting (docs/BENCHMARKS.md).
#
#   bench/binaries.sh SOURCE_TREE ROUNDS BINARY...
#
# Prints each run ("binary wall user sys store-bytes") and, per binary, the
# median and smallest wall time and the median CPU and system time.
# COLD_MEMORY=MiB runs each backup on memory that has lain free (bench/lib.sh);
# UNCACHED=1 reads the tree from disk in every run instead of from the page cache.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
work="${BENCH_WORK:-/tmp/pastiche-binaries}"
# shellcheck source=bench/lib.sh
. "$here/bench/lib.sh"
[ $# -ge 3 ] || { echo "usage: $0 SOURCE_TREE ROUNDS BINARY..."; exit 2; }
src="$1" rounds="$2"
shift 2
rm -rf "$work"
mkdir -p "$work"
export PASTICHE_PASSWORD=bench
for _ in $(seq "$rounds"); do
    for bin in "$@"; do
        rm -rf "$work/repo"
        "$bin" --data "$work/repo" --quiet init --name bench.example >/dev/null
        warm "$src"
        sync
        cold_memory
        /usr/bin/time -f "%e %U %S" -o "$work/t" "$bin" --data "$work/repo" --quiet backup "$src" >/dev/null 2>"$work/err" \
            || { cat "$work/err"; exit 1; }
        echo "$bin $(cat "$work/t") $(du -sb "$work/repo" | cut -f1)" | tee -a "$work/results"
    done
done
python3 - "$work/results" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    binary, wall, user, sys_ = line.split()[:4]
    runs.setdefault(binary, []).append((float(wall), float(user) + float(sys_), float(sys_)))
for binary, v in runs.items():
    print(f"{binary}: wall median {statistics.median(r[0] for r in v):.2f} s (min {min(r[0] for r in v):.2f});"
          f" CPU median {statistics.median(r[1] for r in v):.2f} s, system {statistics.median(r[2] for r in v):.2f} s")
PY
rm -f /dev/shm/pastiche-bench-cold
