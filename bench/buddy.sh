#!/usr/bin/env bash
# Shipping to a buddy on loopback against local backup throughput, and
# restore from a buddy against restic's restore from a local repository, on
# the same tree. Each figure is the best of RUNS runs (default 3), the runs
# of the tools interleaved, because this VM's page-cache reclaim makes single
# runs of write-heavy steps vary by 2-3x. Prints a Markdown table.
#
#   bench/buddy.sh [SOURCE_TREE]      (PASTICHE=path/to/pastiche to skip the build)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
work="${BENCH_WORK:-/tmp/pastiche-buddy-bench}"
runs="${RUNS:-3}"
. "$here/bench/lib.sh"
bench_pastiche
rm -rf "$work"; mkdir -p "$work"
src="${1:-/usr/lib/x86_64-linux-gnu}"
export PASTICHE_PASSWORD=bench RESTIC_PASSWORD=bench
warm "$src"
bytes=$(du -sb "$src" | cut -f1)
port=$(random_port)

backups=(); ships=()
for i in $(seq "$runs"); do
    rm -rf "$work/a" "$work/b"
    "$pastiche" --data "$work/a" --quiet init --name a.bench >/dev/null
    "$pastiche" --data "$work/b" --quiet init --name b.bench >/dev/null
    backups+=("$(secs "$pastiche" --data "$work/a" --quiet backup "$src")")
    serve_buddy "$work/b" "$port"
    pair_buddy "$work/a" "$work/b" "$port"
    ships+=("$(secs "$pastiche" --data "$work/a" --quiet sync)")
    kill "$served"; wait "$served" 2>/dev/null || true
done
restic init -q --repo "$work/restic" >/dev/null
restic -q --repo "$work/restic" backup "$src" >/dev/null
serve_buddy "$work/b" "$port"
froms=(); restics=()
for i in $(seq "$runs"); do
    rm -rf "$work/r1" "$work/r2"
    froms+=("$(secs "$pastiche" --data "$work/a" --quiet restore latest --target "$work/r1" --from-buddy "127.0.0.1:$port")")
    restics+=("$(secs restic -q --repo "$work/restic" restore latest --target "$work/r2")")
done
same_tree "$src" "$work/r1" "the restore from the buddy"

echo "source: $src, $(du -sh "$src" | cut -f1), $(find "$src" -type f | wc -l) files; best of $runs runs"
echo "local backups: ${backups[*]} s; ships: ${ships[*]} s; restores from the buddy: ${froms[*]} s; restic restores: ${restics[*]} s"
echo
echo "| what | seconds | MB/s | ratio |"
echo "|---|---|---|---|"
awk -v b="$bytes" -v l="$(min "${backups[@]}")" -v s="$(min "${ships[@]}")" -v f="$(min "${froms[@]}")" \
    -v r="$(min "${restics[@]}")" 'BEGIN {
    printf "| local first backup (read, chunk, seal, store) | %.2f | %.0f | |\n", l, b/l/1e6
    printf "| ship the snapshot to a buddy on loopback (`pastiche sync`) | %.2f | %.0f | %.0f%% of local backup throughput |\n", s, b/s/1e6, 100*l/s
    printf "| restore from the buddy (`restore --from-buddy`) | %.2f | %.0f | %.2fx restic local restore time |\n", f, b/f/1e6, f/r
    printf "| restic 0.14 restore from a local repository | %.2f | %.0f | |\n", r, b/r/1e6
}'
