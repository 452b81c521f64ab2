#!/usr/bin/env bash
# The status page under a small load: wrk against the page, the JSON API and
# /metrics of a real daemon on loopback (the box's own user, no login), a box
# with SNAPSHOTS snapshots (default 30) and one buddy. Prints a Markdown table
# of requests/s and latency percentiles.
#
#   bench/http.sh            (PASTICHE=path/to/pastiche to skip the build)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
work="${BENCH_WORK:-/tmp/pastiche-http-bench}"
snapshots="${SNAPSHOTS:-30}"
duration="${DURATION:-10s}"
pastiche="${PASTICHE:-}"
if [ -z "$pastiche" ]; then
    (cd "$here" && cargo build --release -q -p pastiche-appliance --bin pastiche)
    pastiche="${CARGO_TARGET_DIR:-$here/target}/release/pastiche"
fi
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
rm -rf "$work"; mkdir -p "$work/src"
export PASTICHE_PASSWORD=bench PASTICHE_KDF_MIB=8
"$pastiche" --data "$work/a" --quiet init --name a.bench >/dev/null
"$pastiche" --data "$work/b" --quiet init --name b.bench >/dev/null
for i in $(seq "$snapshots"); do
    head -c 200000 /dev/urandom > "$work/src/file-$i"
    "$pastiche" --data "$work/a" --quiet backup "$work/src" >/dev/null
done
port=$((20000 + RANDOM % 20000))
"$pastiche" --data "$work/b" daemon --listen "127.0.0.1:$port" --http off 2>>"$work/b.log" & bpid=$!
trap 'kill $bpid 2>/dev/null || true' EXIT
sleep 1
"$pastiche" --data "$work/a" --quiet buddy add "127.0.0.1:$port" >/dev/null
"$pastiche" --data "$work/a" daemon --listen "127.0.0.1:$((port + 1))" --http "127.0.0.1:$((port + 2))" 2>>"$work/a.log" & apid=$!
trap 'kill $apid $bpid 2>/dev/null || true' EXIT
until curl -sf "http://127.0.0.1:$((port + 2))/api/health" >/dev/null; do sleep 0.2; done
sleep 3
echo "| route | requests/s | p50 | p90 | p99 |"
echo "| --- | ---: | ---: | ---: | ---: |"
for path in / /api/overview /api/snapshots /metrics; do
    out=$(wrk -t2 -c8 -d"$duration" --latency "http://127.0.0.1:$((port + 2))$path")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p() { awk -v q="$1" '$1 == q {print $2}' <<<"$out"; }
    echo "| \`GET $path\` | $rps | $(p 50%) | $(p 90%) | $(p 99%) |"
done
