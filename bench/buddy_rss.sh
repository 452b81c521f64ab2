#!/usr/bin/env bash
# Peak memory of a buddy (`pastiche serve`, with the secure channel) while
# SESSIONS client boxes (default 16) sync to it at once, each on two
# connections (chunks and objects: 32 busy sessions): each box backs up its
# own MB_EACH MiB (default 16) of random data first, then all the syncs start
# together. Prints the server's peak RSS (VmHWM) before and after. All
# clients come from 127.0.0.1, which may hold 32 connections.
#
#   bench/buddy_rss.sh
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
work="${BENCH_WORK:-/tmp/pastiche-rss-bench}"
sessions="${SESSIONS:-16}"
mb="${MB_EACH:-16}"
pastiche="$here/target/release/pastiche"
(cd "$here" && cargo build --release -q -p pastiche-appliance --bin pastiche)
rm -rf "$work"; mkdir -p "$work"
export PASTICHE_PASSWORD=bench PASTICHE_KDF_MIB=8
port=$((20000 + RANDOM % 20000))
"$pastiche" --data "$work/buddy" --quiet init --name buddy.bench >/dev/null
"$pastiche" --data "$work/buddy" serve --listen "127.0.0.1:$port" 2>"$work/serve.log" &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for i in $(seq "$sessions"); do
    mkdir -p "$work/src$i"
    head -c "$((mb << 20))" /dev/urandom > "$work/src$i/data.bin"
    "$pastiche" --data "$work/c$i" --quiet init --name "c$i.bench" >/dev/null
    "$pastiche" --data "$work/c$i" --quiet backup "$work/src$i" >/dev/null
    "$pastiche" --data "$work/c$i" --quiet buddy add "127.0.0.1:$port" >/dev/null
done
idle=$(awk '/VmHWM/ {print $2}' "/proc/$server/status")
start=$(date +%s.%N)
pids=()
for i in $(seq "$sessions"); do
    "$pastiche" --data "$work/c$i" --quiet sync >/dev/null 2>"$work/sync$i.err" & pids+=($!)
done
failed=0
for p in "${pids[@]}"; do wait "$p" || failed=$((failed + 1)); done
end=$(date +%s.%N)
peak=$(awk '/VmHWM/ {print $2}' "/proc/$server/status")
echo "client boxes: $sessions x $mb MiB, two sessions each; syncs failed: $failed; wall: $(echo "$end - $start" | bc) s"
echo "buddy peak RSS: idle $((idle / 1024)) MiB, after $sessions concurrent syncs $((peak / 1024)) MiB"
