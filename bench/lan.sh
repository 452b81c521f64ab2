#!/usr/bin/env bash
# Boxes on one LAN with no addresses typed: N appliance daemons (default 6),
# each in its own network namespace, veth links to one Linux bridge, all
# with `pairing = "auto"` and the same secret, `buddies = 2`. Measures:
#   - seconds from the daemons' start until every box has paired with its
#     two buddies (keys pinned), and until it has shipped them a full copy;
#   - the overlay socket's traffic (beacons, both Pastry overlays, pairing:
#     UDP payload bytes and datagrams, DATA/lan/overlay.json) per node per
#     hour, over a steady window after pairing (WINDOW seconds, default 600).
# Needs root and iproute2. Prints Markdown.
#
#   sudo bench/lan.sh [N] [WINDOW]     (PASTICHE_BIN=path: that binary, no build)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
n="${1:-6}"
window="${2:-600}"
work="${BENCH_WORK:-/tmp/pastiche-lan-bench}"
pastiche="${PASTICHE_BIN:-${CARGO_TARGET_DIR:-$here/target}/release/pastiche}"
prefix="pstb$$"
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)" >&2; exit 1; }
[ -n "${PASTICHE_BIN:-}" ] || (cd "$here" && cargo build --release -q -p pastiche-appliance --bin pastiche)
rm -rf "$work"; mkdir -p "$work"
cp "$pastiche" "$work/pastiche"

pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    for i in $(seq 0 $((n - 1))); do ip netns delete "$prefix-$i" 2>/dev/null || true; done
    ip netns delete "$prefix-sw" 2>/dev/null || true
}
trap cleanup EXIT

ip netns add "$prefix-sw"
ip -n "$prefix-sw" link add br0 type bridge
ip -n "$prefix-sw" link set br0 up
export PASTICHE_PASSWORD=bench PASTICHE_KDF_MIB=8 PASTICHE_LOG=info
head -c 4000000 /dev/urandom > "$work/shared.bin"
for i in $(seq 0 $((n - 1))); do
    ns="$prefix-$i"
    ip netns add "$ns"
    ip -n "$prefix-sw" link add "p$i" type veth peer name eth0 netns "$ns"
    ip -n "$prefix-sw" link set "p$i" master br0
    ip -n "$prefix-sw" link set "p$i" up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "10.78.0.$((10 + i))/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" route add default dev eth0
    box="$work/box$i"; mkdir -p "$box/src"
    # Half the boxes share a file (so coverage tells them apart), each has its own.
    if [ $((i % 2)) = 0 ]; then cp "$work/shared.bin" "$box/src/"; fi
    head -c 1000000 /dev/urandom > "$box/src/own.bin"
    "$work/pastiche" --data "$box/data" --quiet init --name "bench$i.lan.example" >/dev/null
    "$work/pastiche" --data "$box/data" --quiet backup "$box/src" >/dev/null
    cat > "$box/data/pastiche.toml" <<TOML
[backup]
paths = ["$box/src"]
schedule = "daily 02:30"
[http]
listen = "off"
[overlay]
buddies = 2
pairing = "auto"
pairing_secret = "bench-office-secret"
TOML
done
start=$(date +%s.%N)
for i in $(seq 0 $((n - 1))); do
    ip netns exec "$prefix-$i" "$work/pastiche" --data "$work/box$i/data" --threads 2 daemon \
        >/dev/null 2>"$work/daemon$i.log" &
    pids+=($!)
done

count() {  # how many boxes have 2 buddies with a pinned key (and, with "shipped", a snapshot)
    python3 - "$work" "$n" "$1" <<'PY'
import json, sys
work, n, what = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ok = 0
for i in range(n):
    try:
        b = json.load(open(f"{work}/box{i}/data/buddies.json"))
    except Exception:
        continue
    good = [e for e in b if e.get("key") and (what != "shipped" or e.get("snapshot"))]
    ok += len(good) >= 2
print(ok)
PY
}
paired=""; shipped=""
deadline=$(( $(date +%s) + 600 ))
while [ -z "$shipped" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "not paired within 600 s" >&2; tail -n 20 "$work"/daemon*.log >&2; exit 1; }
    now=$(date +%s.%N)
    if [ -z "$paired" ] && [ "$(count paired)" = "$n" ]; then paired=$(awk "BEGIN{print $now - $start}"); fi
    if [ "$(count shipped)" = "$n" ]; then shipped=$(awk "BEGIN{print $now - $start}"); fi
    sleep 0.5
done

traffic() {  # total sent+received bytes and datagrams of each box, one line each
    python3 - "$work" "$n" <<'PY'
import json, sys
work, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    t = json.load(open(f"{work}/box{i}/data/lan/overlay.json"))["traffic"]
    print(t["sent_bytes"], t["received_bytes"], t["sent_datagrams"], t["received_datagrams"])
PY
}
sleep 60
before="$(traffic)"
sleep "$window"
after="$(traffic)"
python3 - "$window" "$paired" "$shipped" "$n" <<PY
import sys
window, paired, shipped, n = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
b = [list(map(int, l.split())) for l in """$before""".splitlines()]
a = [list(map(int, l.split())) for l in """$after""".splitlines()]
per_hour = lambda i, k: (a[i][k] - b[i][k]) * 3600 / window
sent = [per_hour(i, 0) for i in range(n)]
recv = [per_hour(i, 1) for i in range(n)]
dgrams = [per_hour(i, 2) + per_hour(i, 3) for i in range(n)]
print(f"| boxes | start to paired (all) | start to full copy shipped (all) | overlay traffic per node per hour, sent + received (mean, max) | datagrams per node per hour (mean) |")
print("|---|---|---|---|---|")
tot = [s + r for s, r in zip(sent, recv)]
print(f"| {n} | {paired:.1f} s | {shipped:.1f} s | {sum(tot)/n/1024:.0f} KiB, {max(tot)/1024:.0f} KiB (sent {sum(sent)/n/1024:.0f} KiB) | {sum(dgrams)/n:.0f} |")
PY
