#!/usr/bin/env bash
# What the secure channel costs: ship (`pastiche sync`) and restore from a
# buddy on loopback with two `pastiche` binaries, the one before the channel
# (BASE) and this one (NEW), on the same tree, their runs interleaved. Each
# figure is the best of RUNS runs (default 2). Also prints the time to
# connect (TCP, channel handshake and hello) from `buddy list`'s probe.
#
#   bench/channel_cost.sh BASE_PASTICHE NEW_PASTICHE [SOURCE_TREE]
#
# BASE and NEW may also be two builds that both have the channel (a change
# to the channel measured before and after): each pairs the way it can.
set -euo pipefail
base="$1"; new="$2"; src="${3:-/usr/lib/x86_64-linux-gnu}"
work="${BENCH_WORK:-/tmp/pastiche-channel-bench}"
runs="${RUNS:-2}"
# Restores are written to RESTORE_TO (default: a tmpfs), so that what is
# measured is the channel and the pipeline, not the disk's file system:
# on ext4 a restore right after deleting the previous one was up to 50%
# slower (ext4 skips inodes freed in the last minutes when it creates
# files), which made the first run of all the best by far.
targets="${RESTORE_TO:-/dev/shm/pastiche-channel-restores}"
rm -rf "$targets"; mkdir -p "$targets"
trap 'rm -rf "$targets"' EXIT
export PASTICHE_PASSWORD=bench PASTICHE_KDF_MIB=8
find "$src" -type f -exec cat {} + > /dev/null 2>&1 || true
bytes=$(du -sb "$src" | cut -f1)
secs() { sync; /usr/bin/time -f "%e" -o "$work/t" "$@" >/dev/null 2>"$work/err" || { cat "$work/err"; exit 1; }; cat "$work/t"; }
min() { printf '%s\n' "$@" | sort -g | head -1; }
declare -A ships restores
for i in $(seq "$runs"); do
    for which in base new; do
        bin="${!which}"
        rm -rf "$work"; mkdir -p "$work"
        port=$((20000 + RANDOM % 20000))
        "$bin" --data "$work/a" --quiet init --name a.bench >/dev/null
        "$bin" --data "$work/b" --quiet init --name b.bench >/dev/null
        "$bin" --data "$work/a" --quiet backup "$src" >/dev/null
        "$bin" --data "$work/b" serve --listen "127.0.0.1:$port" 2>/dev/null & pid=$!
        sleep 1
        # Binaries since pairing codes need one (`buddy invite` on the
        # buddy, `buddy add --code` on the client); the one before the
        # channel has no such command and pairs on first contact.
        if "$bin" buddy invite --help >/dev/null 2>&1; then
            code=$("$bin" --data "$work/b" buddy invite | tail -1)
            "$bin" --data "$work/a" --quiet buddy add "127.0.0.1:$port" --code "$code" >/dev/null
        else
            "$bin" --data "$work/a" --quiet buddy add "127.0.0.1:$port" >/dev/null
        fi
        ships[$which]+="$(secs "$bin" --data "$work/a" --quiet sync) "
        restores[$which]+="$(secs "$bin" --data "$work/a" --quiet restore latest --target "$targets/$which-$i" --from-buddy "127.0.0.1:$port") "
        rm -rf "${targets:?}/$which-$i"
        kill "$pid"; wait "$pid" 2>/dev/null || true
    done
done
echo "source: $src, $(du -sh "$src" | cut -f1); runs: ship base ${ships[base]}/ new ${ships[new]}; restore base ${restores[base]}/ new ${restores[new]}"
awk -v b="$bytes" -v sb="$(min ${ships[base]})" -v sn="$(min ${ships[new]})" \
    -v rb="$(min ${restores[base]})" -v rn="$(min ${restores[new]})" 'BEGIN {
    printf "| ship to a buddy (`sync`) | %.2f s, %.0f MB/s | %.2f s, %.0f MB/s | %.0f%% |\n", sb, b/sb/1e6, sn, b/sn/1e6, 100*sb/sn
    printf "| restore from the buddy | %.2f s, %.0f MB/s | %.2f s, %.0f MB/s | %.0f%% |\n", rb, b/rb/1e6, rn, b/rn/1e6, 100*rb/rn
}'
