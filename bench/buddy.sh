#!/usr/bin/env bash
# Shipping to a buddy on loopback against local backup throughput, and
# restore from a buddy against restic's restore from a local repository, on
# the same tree. Prints a Markdown table for docs/BENCHMARKS.md.
#
#   bench/buddy.sh [SOURCE_TREE]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
work="${BENCH_WORK:-/tmp/pastiche-buddy-bench}"
pastiche="$here/target/release/pastiche"
rm -rf "$work"; mkdir -p "$work"
src="${1:-/usr/lib/x86_64-linux-gnu}"
(cd "$here" && cargo build --release -q -p pastiche-appliance --bin pastiche)
export PASTICHE_PASSWORD=bench RESTIC_PASSWORD=bench
"$pastiche" --data "$work/a" --quiet init --name a.bench >/dev/null
"$pastiche" --data "$work/b" --quiet init --name b.bench >/dev/null
restic init -q --repo "$work/restic" >/dev/null
find "$src" -type f -exec cat {} + > /dev/null 2>&1 || true

secs() { sync; /usr/bin/time -f "%e" -o "$work/t" "$@" >/dev/null 2>"$work/err" || { cat "$work/err"; exit 1; }; cat "$work/t"; }
bytes=$(du -sb "$src" | cut -f1)

local_backup=$(secs "$pastiche" --data "$work/a" --quiet backup "$src")
port=$((20000 + RANDOM % 20000))
"$pastiche" --data "$work/b" serve --listen "127.0.0.1:$port" 2>"$work/serve.log" &
serve=$!
trap 'kill $serve 2>/dev/null || true' EXIT
sleep 1
"$pastiche" --data "$work/a" --quiet buddy add "127.0.0.1:$port" >/dev/null
ship=$(secs "$pastiche" --data "$work/a" --quiet sync)
restic -q --repo "$work/restic" backup "$src" >/dev/null
rm -rf "$work/r1" "$work/r2"
from_buddy=$(secs "$pastiche" --data "$work/a" --quiet restore latest --target "$work/r1" --from-buddy "127.0.0.1:$port")
restic_restore=$(secs restic -q --repo "$work/restic" restore latest --target "$work/r2")
diff -r --no-dereference "$src" "$work/r1$src" >/dev/null || { echo "restore from the buddy differs"; exit 1; }

echo "source: $src, $(du -sh "$src" | cut -f1), $(find "$src" -type f | wc -l) files"
echo
echo "| what | seconds | MB/s | ratio |"
echo "|---|---|---|---|"
awk -v b="$bytes" -v l="$local_backup" -v s="$ship" -v f="$from_buddy" -v r="$restic_restore" 'BEGIN {
    printf "| local first backup (read, chunk, seal, store) | %.2f | %.0f | |\n", l, b/l/1e6
    printf "| ship the snapshot to a buddy on loopback (`pastiche sync`) | %.2f | %.0f | %.0f%% of local backup throughput |\n", s, b/s/1e6, 100*l/s
    printf "| restore from the buddy (`restore --from-buddy`) | %.2f | %.0f | %.2fx restic local restore time |\n", f, b/f/1e6, f/r
    printf "| restic 0.14 restore from a local repository | %.2f | %.0f | |\n", r, b/r/1e6
}'
