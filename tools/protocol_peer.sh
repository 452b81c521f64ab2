#!/usr/bin/env bash
# Runs tools/protocol_checks.py: tools/protocol_peer.py, an independent client written from
# docs/PROTOCOL.md and SPEC.md, against a real `pastiche serve` on a free
# loopback port: channel handshake, pairing, uploads, a committed epoch,
# reads opened per SPEC, and the attacks of issue 8. Any disagreement with
# the documentation fails the run.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
pastiche="${PASTICHE:-$here/target/release/pastiche}"
[ -x "$pastiche" ] || { echo "protocol_peer: $pastiche not built (cargo build --release -p pastiche-appliance --bin pastiche)"; exit 1; }
work="$(mktemp -d)"
pid=""
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
export PASTICHE_PASSWORD=protocol-peer PASTICHE_KDF_MIB=8

"$pastiche" --data "$work/buddy" --quiet init --name buddy.protocol-peer.test >/dev/null
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# No overlay (nothing sent onto the host's network) and no status page.
"$pastiche" --data "$work/buddy" serve --listen "127.0.0.1:$port" --overlay off --http off 2>"$work/serve.log" & pid=$!
listening=""
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && { listening=1; break; }
    kill -0 "$pid" 2>/dev/null || { cat "$work/serve.log"; echo "protocol_peer: pastiche serve died"; exit 1; }
    sleep 0.1
done
[ -n "$listening" ] || { cat "$work/serve.log"; echo "protocol_peer: pastiche serve not listening after 10 s"; exit 1; }
# PROTOCOL_PEER_LOG=1 shows the server's log even when every scenario agrees.
status=0
python3 "$here/tools/protocol_checks.py" "127.0.0.1:$port" "$work/buddy" "$pastiche" || status=$?
if [ "$status" -ne 0 ] || [ -n "${PROTOCOL_PEER_LOG:-}" ]; then
    echo "--- pastiche serve's log:"
    cat "$work/serve.log"
fi
exit "$status"
