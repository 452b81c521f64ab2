#!/usr/bin/env bash
# Disaster recovery on loopback: a box backs up to two buddies (`pastiche
# serve`), its data directory is deleted, `pastiche recover` rebuilds it from
# one buddy's address (finding the other in the root record), then restores
# pull the tree from one buddy (`--from-buddy`) and from both (the default,
# all buddies in turn), against restic's restore from a local repository of
# the same tree. Best of RUNS runs (default 3). Prints a Markdown table.
#
#   bench/recover.sh [SOURCE_TREE]      (PASTICHE=path/to/pastiche to skip the build)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
work="${BENCH_WORK:-/tmp/pastiche-recover-bench}"
runs="${RUNS:-3}"
src="${1:-/usr/lib/python3}"
. "$here/bench/lib.sh"
bench_pastiche
rm -rf "$work"; mkdir -p "$work"
export PASTICHE_PASSWORD=bench RESTIC_PASSWORD=bench PASTICHE_KDF_MIB=64
warm "$src"
bytes=$(du -sb "$src" | cut -f1)

buddy() {  # buddy NAME PORT: init, serve, pair the box with it
    "$pastiche" --data "$work/$1" --quiet init --name "$1.bench" >/dev/null
    serve_buddy "$work/$1" "$2"
    pair_buddy "$work/box" "$work/$1" "$2"
}
p1=$(random_port); p2=$((p1 + 1))
"$pastiche" --data "$work/box" --quiet init --name box.bench >/dev/null
buddy b1 "$p1"; buddy b2 "$p2"
"$pastiche" --data "$work/box" --quiet backup "$src" >/dev/null
restic init -q --repo "$work/restic" >/dev/null
restic -q --repo "$work/restic" backup "$src" >/dev/null

recovers=(); ones=(); twos=(); restics=()
for i in $(seq "$runs"); do
    rm -rf "$work/box" "$work/r1" "$work/r2" "$work/r3"
    recovers+=("$(secs "$pastiche" --data "$work/box" --quiet recover --name box.bench --via "127.0.0.1:$p2")")
    ones+=("$(secs "$pastiche" --data "$work/box" --quiet restore latest --target "$work/r1" --from-buddy "127.0.0.1:$p1")")
    twos+=("$(secs "$pastiche" --data "$work/box" --quiet restore latest --target "$work/r2")")
    restics+=("$(secs restic -q --repo "$work/restic" restore latest --target "$work/r3")")
done
same_tree "$src" "$work/r1" "the restore from one buddy"
same_tree "$src" "$work/r2" "the restore from the buddies"

echo "source: $src, $(du -sh "$src" | cut -f1), $(find "$src" -type f | wc -l) files; best of $runs runs; $(nproc) cores"
echo "recovers: ${recovers[*]} s; restores from one buddy: ${ones[*]} s; from two: ${twos[*]} s; restic: ${restics[*]} s"
echo
echo "| what | seconds | MB/s | ratio |"
echo "|---|---|---|---|"
awk -v b="$bytes" -v rc="$(min "${recovers[@]}")" -v o="$(min "${ones[@]}")" -v t="$(min "${twos[@]}")" \
    -v r="$(min "${restics[@]}")" 'BEGIN {
    printf "| `pastiche recover` (root records from both buddies, metadata from one; Argon2id 64 MiB) | %.2f | | |\n", rc
    printf "| restore from one buddy (`--from-buddy`) | %.2f | %.0f | %.2fx restic local restore time |\n", o, b/o/1e6, o/r
    printf "| restore from two buddies (default after a recovery) | %.2f | %.0f | %.2fx restic local restore time |\n", t, b/t/1e6, t/r
    printf "| restic restore from a local repository | %.2f | %.0f | |\n", r, b/r/1e6
}'
