#!/usr/bin/env bash
# First backups of one tree by pastiche and borgbackup, interleaved, the
# page cache warmed before every run. Borg drops the pages of the files it
# reads (POSIX_FADV_DONTNEED), so without warming, whichever tool runs
# right after it reads the tree from disk and loses a second or more.
# Prints each run and the medians. Used for docs/BENCHMARKS.md.
#
#   bench/first_backup.sh [SOURCE_TREE] [RUNS]
#
# SOURCE_TREE defaults to the tree bench/compare.sh copies; RUNS to 5.
# PASTICHE=/path/to/pastiche measures that binary instead of building one.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
work="${BENCH_WORK:-/tmp/pastiche-first}"
# shellcheck source=bench/lib.sh
. "$here/bench/lib.sh"
if ! command -v borg >/dev/null || [ ! -x /usr/bin/time ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq borgbackup time >/dev/null
fi
bench_pastiche
rm -rf "$work"
mkdir -p "$work"
src="${1:-}"
if [ -z "$src" ]; then
    src="$work/src"
    default_tree "$src"
fi
runs="${2:-5}"
export PASTICHE_PASSWORD=bench BORG_PASSPHRASE=bench
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes

# run TOOL: one first backup into a fresh repository; appends "TOOL wall cpu".
run() {
    local tool="$1"
    rm -rf "$work/repo"
    if [ "$tool" = borg ]; then
        borg init -e repokey "$work/repo" 2>/dev/null
        set -- borg create "$work/repo::first" "$src"
    else
        "$pastiche" --data "$work/repo" --quiet init --name bench.example >/dev/null
        set -- "$pastiche" --data "$work/repo" --quiet backup "$src"
    fi
    warm "$src"
    sync
    /usr/bin/time -f "%e %U %S" -o "$work/t" "$@" >/dev/null 2>"$work/err" || { cat "$work/err"; exit 1; }
    read -r wall user sys < "$work/t"
    echo "$tool $wall $(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')" | tee -a "$work/results"
}

for _ in $(seq "$runs"); do
    run pastiche
    run borg
done
python3 - "$work/results" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    tool, wall, cpu = line.split()
    runs.setdefault(tool, []).append((float(wall), float(cpu)))
med = {t: statistics.median(w for w, _ in v) for t, v in runs.items()}
for t, v in runs.items():
    print(f"{t}: wall {' '.join(f'{w:.2f}' for w, _ in v)} s (median {med[t]:.2f}); CPU median {statistics.median(c for _, c in v):.2f} s")
print(f"pastiche / borg, median to median: {med['pastiche'] / med['borg']:.2f}x")
PY
