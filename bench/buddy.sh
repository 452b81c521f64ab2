#!/usr/bin/env bash
# Shipping to a buddy on loopback against local backup throughput, and
# restore from a buddy against restic's restore from a local repository, on
# the same tree. Each figure is the best of RUNS runs (default 3), the runs
# of the tools interleaved, because this VM's page-cache reclaim makes single
# runs of write-heavy steps vary by 2-3x. Prints a Markdown table.
#
#   bench/buddy.sh [SOURCE_TREE]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
work="${BENCH_WORK:-/tmp/pastiche-buddy-bench}"
runs="${RUNS:-3}"
pastiche="$here/target/release/pastiche"
rm -rf "$work"; mkdir -p "$work"
src="${1:-/usr/lib/x86_64-linux-gnu}"
(cd "$here" && cargo build --release -q -p pastiche-appliance --bin pastiche)
export PASTICHE_PASSWORD=bench RESTIC_PASSWORD=bench
find "$src" -type f -exec cat {} + > /dev/null 2>&1 || true
bytes=$(du -sb "$src" | cut -f1)

secs() { sync; /usr/bin/time -f "%e" -o "$work/t" "$@" >/dev/null 2>"$work/err" || { cat "$work/err"; exit 1; }; cat "$work/t"; }
min() { printf '%s\n' "$@" | sort -g | head -1; }
port=$((20000 + RANDOM % 20000))
serve() { "$pastiche" --data "$1" serve --listen "127.0.0.1:$port" >/dev/null 2>>"$work/serve.log" & echo $!; }

backups=(); ships=()
for i in $(seq "$runs"); do
    rm -rf "$work/a" "$work/b"
    "$pastiche" --data "$work/a" --quiet init --name a.bench >/dev/null
    "$pastiche" --data "$work/b" --quiet init --name b.bench >/dev/null
    backups+=("$(secs "$pastiche" --data "$work/a" --quiet backup "$src")")
    pid=$(serve "$work/b"); sleep 1
    code=$("$pastiche" --data "$work/b" buddy invite | tail -n 1)
    "$pastiche" --data "$work/a" --quiet buddy add "127.0.0.1:$port" --code "$code" >/dev/null
    ships+=("$(secs "$pastiche" --data "$work/a" --quiet sync)")
    kill "$pid"; wait "$pid" 2>/dev/null || true
done
restic init -q --repo "$work/restic" >/dev/null
restic -q --repo "$work/restic" backup "$src" >/dev/null
pid=$(serve "$work/b"); sleep 1
trap 'kill $pid 2>/dev/null || true' EXIT
froms=(); restics=()
for i in $(seq "$runs"); do
    rm -rf "$work/r1" "$work/r2"
    froms+=("$(secs "$pastiche" --data "$work/a" --quiet restore latest --target "$work/r1" --from-buddy "127.0.0.1:$port")")
    restics+=("$(secs restic -q --repo "$work/restic" restore latest --target "$work/r2")")
done
diff -r --no-dereference "$src" "$work/r1$src" >/dev/null || { echo "restore from the buddy differs"; exit 1; }

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
