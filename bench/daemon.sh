#!/usr/bin/env bash
# The daemon at rest and as a server of the command line: its resident
# memory and CPU while idle, and the latency of CLI commands run through the
# control socket against the same commands run in-process (which open the
# box themselves: Argon2id of the passphrase, redb, lock). Prints Markdown.
#
#   bench/daemon.sh [IDLE_SECONDS]     (hyperfine if installed, else a loop)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
work="${BENCH_WORK:-/tmp/pastiche-daemon-bench}"
idle="${1:-60}"
pastiche="${CARGO_TARGET_DIR:-$here/target}/release/pastiche"
rm -rf "$work"; mkdir -p "$work/src"
(cd "$here" && cargo build --release -q -p pastiche-appliance --bin pastiche)
export PASTICHE_PASSWORD=bench PASTICHE_DATA="$work/box"
# A box with a few snapshots of a small tree, so `snapshots` has rows to print.
head -c 20000000 /dev/urandom > "$work/src/a.bin"
"$pastiche" --quiet init --name bench.example.org >/dev/null
for i in 1 2 3; do echo "$i" > "$work/src/n.txt"; "$pastiche" --quiet backup "$work/src" >/dev/null; done
cat > "$work/box/pastiche.toml" <<TOML
[backup]
paths = ["$work/src"]
schedule = "daily 02:30"
[serve]
listen = ["127.0.0.1:0"]
TOML

inproc() {  # median seconds of a command run in-process, N runs
    local n=$1; shift
    if command -v hyperfine >/dev/null; then
        hyperfine -N -w 2 -r "$n" --export-json "$work/h.json" "$*" >/dev/null 2>&1
        python3 -c 'import json,sys; print("%.4f" % json.load(open(sys.argv[1]))["results"][0]["median"])' "$work/h.json"
    else
        local t0 t1; t0=$(date +%s.%N); for _ in $(seq "$n"); do "$@" >/dev/null; done; t1=$(date +%s.%N)
        python3 -c "print('%.4f' % (($t1 - $t0) / $n))"
    fi
}

t_snap_local=$(inproc 20 "$pastiche" snapshots)
t_stats_local=$(inproc 20 "$pastiche" stats)

"$pastiche" daemon 2>"$work/daemon.log" & pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
until [ -S "$work/box/control.sock" ]; do sleep 0.05; done
sleep 2
t_snap_sock=$(inproc 50 "$pastiche" snapshots)
t_stats_sock=$(inproc 50 "$pastiche" stats)
t_status=$(inproc 50 "$pastiche" status)

# Idle: no job due, nobody connected.
sleep 3
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
c0=$(ticks); sleep "$idle"; c1=$(ticks)
rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
threads=$(awk '/Threads/ {print $2}' "/proc/$pid/status")
cpu=$(python3 -c "print('%.3f' % (100.0 * ($c1 - $c0) / $hz / $idle))")
kill -TERM $pid; wait $pid || true; trap - EXIT

echo "| what | figure |"
echo "|---|---|"
echo "| idle daemon: resident memory (VmRSS) | $((rss / 1024)) MiB ($rss KiB; peak $((hwm / 1024)) MiB) |"
echo "| idle daemon: CPU over ${idle} s | ${cpu} % of one core ($((c1 - c0)) ticks of 1/$hz s) |"
echo "| idle daemon: threads | $threads |"
echo "| \`pastiche snapshots\`, in-process (opens the box) | $(python3 -c "print('%.1f ms' % ($t_snap_local*1000))") |"
echo "| \`pastiche snapshots\`, through the daemon's control socket | $(python3 -c "print('%.1f ms' % ($t_snap_sock*1000))") |"
echo "| \`pastiche stats\`, in-process | $(python3 -c "print('%.1f ms' % ($t_stats_local*1000))") |"
echo "| \`pastiche stats\`, through the control socket | $(python3 -c "print('%.1f ms' % ($t_stats_sock*1000))") |"
echo "| \`pastiche status\` (control socket only) | $(python3 -c "print('%.1f ms' % ($t_status*1000))") |"
