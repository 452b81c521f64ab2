#!/usr/bin/env bash
# 3 MiB backed up to and restored from the firmware buddy in QEMU over a
# TAP link that loses LOSS percent of the frames each way (the set-up of
# hil-tests/tests/firmware_netns.rs, by hand), with the Linux side's TCP
# counters (nstat) after each step. Needs root, qemu-system-arm, iproute2.
#
#   bench/firmware_lossy.sh [LOSS_PERCENT] [FIRMWARE_ELF]     (default 5, the built image)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
loss="${1:-5}"
elf="${2:-$here/firmware/target/thumbv7em-none-eabihf/release/pastiche-firmware}"
work="${BENCH_WORK:-/tmp/pastiche-firmware-lossy}"
bin="$here/target/release"
(cd "$here" && cargo build --release -q -p pastiche-appliance --bin pastiche -p hil-tests --bin netbridge)
[ $# -ge 2 ] || (cd "$here/firmware" && cargo build --release -q)
rm -rf "$work"; mkdir -p "$work/tree/docs"
head -c 2945728 /dev/urandom > "$work/tree/big.bin"
for i in 0 1 2 3 4 5 6 7; do head -c $((20000 + i * 1000)) /dev/urandom > "$work/tree/docs/file$i.dat"; done
ns="pst-bench-$$"
ip netns add "$ns"
cleanup() { kill "${qemu:-}" "${bridge:-}" 2>/dev/null || true; wait 2>/dev/null || true; ip netns delete "$ns"; }
trap cleanup EXIT
ip -n "$ns" link set lo up
ip -n "$ns" tuntap add dev ptap0 mode tap
ip -n "$ns" addr add 10.0.2.2/24 dev ptap0
ip -n "$ns" link set ptap0 up
ip netns exec "$ns" "$bin/netbridge" --tap ptap0 --local 127.0.0.1:40001 --peer 127.0.0.1:40002 \
    --loss "$loss" --stats "$work/bridge.stats" >/dev/null 2>&1 &
bridge=$!
ip netns exec "$ns" qemu-system-arm -M mps2-an386 -nographic -monitor none -serial null \
    -semihosting-config enable=on,target=native -kernel "$elf" \
    -append "disk=$work/disk.img log=$work/fw.defmt quota_mib=512 dhcp=off ip=10.0.2.15/24 gw=10.0.2.2 pair=bench-secret" \
    -netdev socket,id=n0,udp=127.0.0.1:40001,localaddr=127.0.0.1:40002 -net nic,netdev=n0 </dev/null >/dev/null 2>&1 &
qemu=$!
sleep 3
p() { ip netns exec "$ns" env PASTICHE_PASSWORD=x PASTICHE_KDF_MIB=8 "$bin/pastiche" --data "$work/box" --threads 2 --quiet "$@"; }
counters() {
    ip netns exec "$ns" nstat | grep -E 'TcpRetransSegs|TCPTimeouts|TCPLossProbes|TCPSackRecovery |TCPFastRetrans|TCPWinProbe' \
        | awk '{printf "%s=%s ", $1, $2} END {print ""}'
}
p init --name bench.example >/dev/null
p buddy add 10.0.2.15:7467 --code bench-secret >/dev/null
ip netns exec "$ns" nstat -n
t0=$(date +%s.%N); p backup "$work/tree"; t1=$(date +%s.%N)
echo "backup + ship of 3 MiB at ${loss}% loss: $(echo "$t1 - $t0" | bc) s"; counters
t0=$(date +%s.%N); p restore latest --target "$work/out" --from-buddy 10.0.2.15:7467; t1=$(date +%s.%N)
echo "restore of 3 MiB at ${loss}% loss: $(echo "$t1 - $t0" | bc) s"; counters
diff -r "$work/tree" "$work/out$work/tree" && echo "restored tree identical"
echo "bridge: $(cat "$work/bridge.stats")"
