#!/usr/bin/env bash
# Fuzzes every target of this crate for SECONDS each (default 60).
#
#   fuzz/run.sh [SECONDS]
#
# Installs what it needs: a nightly toolchain (cargo-fuzz builds with
# sanitizer flags only nightly accepts) and cargo-fuzz. Inputs found are kept
# in fuzz/corpus/<target>/, crashes in fuzz/artifacts/<target>/; both are
# replayed by `cargo test` in this folder on any toolchain. Exits non-zero if
# a target crashed.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"

if ! rustup toolchain list | grep -q '^nightly'; then
    rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

# FUZZ_JOBS=N runs N processes per target (each logs to fuzz-K.log here).
parallel=()
if [ -n "${FUZZ_JOBS:-}" ]; then
    parallel=(-jobs="$FUZZ_JOBS" -workers="$FUZZ_JOBS")
fi
status=0
for target in $(cargo +nightly fuzz list); do
    mkdir -p "corpus/$target"
    echo "== fuzzing $target for ${seconds}s"
    if ! cargo +nightly fuzz run "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -max_len=140000 -print_final_stats=1 "${parallel[@]}"; then
        echo "!! $target crashed: see artifacts/$target/" >&2
        status=1
    fi
done
exit "$status"
