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
# BASELINE=/path/to/another/pastiche runs it too, interleaved, and prints
# both against Borg and each other (for before/after comparisons).
# COLD_MEMORY=MiB runs each backup on memory that has lain free (bench/lib.sh);
# UNCACHED=1 reads the tree from disk in every run instead of from the page cache.
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

# run TOOL: one first backup into a fresh repository; appends
# "TOOL wall cpu store-bytes".
run() {
    local tool="$1" bin="$pastiche"
    rm -rf "$work/repo"
    if [ "$tool" = borg ]; then
        borg init -e repokey "$work/repo" 2>/dev/null
        set -- borg create "$work/repo::first" "$src"
    else
        [ "$tool" = baseline ] && bin="$BASELINE"
        "$bin" --data "$work/repo" --quiet init --name bench.example >/dev/null
        set -- "$bin" --data "$work/repo" --quiet backup "$src"
    fi
    warm "$src"
    sync
    cold_memory
    /usr/bin/time -f "%e %U %S" -o "$work/t" "$@" >/dev/null 2>"$work/err" || { cat "$work/err"; exit 1; }
    read -r wall user sys < "$work/t"
    echo "$tool $wall $(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }') $(du -sb "$work/repo" | cut -f1)" \
        | tee -a "$work/results"
}

for _ in $(seq "$runs"); do
    if [ -n "${BASELINE:-}" ]; then
        run baseline
    fi
    run pastiche
    run borg
done
python3 - "$work/results" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    tool, wall, cpu, size = line.split()
    runs.setdefault(tool, []).append((float(wall), float(cpu), int(size)))
med = {t: statistics.median(r[0] for r in v) for t, v in runs.items()}
for t, v in runs.items():
    walls = ' '.join(f'{r[0]:.2f}' for r in v)
    cpu = statistics.median(r[1] for r in v)
    print(f"{t}: wall {walls} s (median {med[t]:.2f}); CPU median {cpu:.2f} s; store {v[-1][2] / 1e6:.1f} MB")
for t in [t for t in runs if t != 'borg']:
    print(f"{t} / borg, median to median: {med[t] / med['borg']:.2f}x")
if 'baseline' in runs:
    print(f"pastiche / baseline, median to median: {med['pastiche'] / med['baseline']:.2f}x")
PY
rm -f /dev/shm/pastiche-bench-cold
