#!/usr/bin/env bash
# Store size after one first backup of each tree given, with pastiche,
# restic and borgbackup (`du -sb` of each whole repository), as a Markdown
# row per tree with the ratios. Sizes do not depend on the machine's load.
#
#   bench/store_sizes.sh PASTICHE_BINARY TREE...
#
# Installs restic and borgbackup from Debian if they are missing.
set -euo pipefail
bin=$1; shift
work="${BENCH_WORK:-/tmp/pastiche-store-sizes}"
if ! command -v restic >/dev/null || ! command -v borg >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq restic borgbackup >/dev/null
fi
export PASTICHE_PASSWORD=bench RESTIC_PASSWORD=bench PASTICHE_KDF_MIB=8 BORG_PASSPHRASE=bench
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
trap 'rm -rf "$work"' EXIT
echo "| tree | source | pastiche MB | restic MB | borg MB | pastiche / restic | pastiche / borg |"
echo "|---|---|---|---|---|---|---|"
for src in "$@"; do
    rm -rf "$work"; mkdir -p "$work"
    "$bin" --data "$work/p" --quiet init --name sizes.example >/dev/null
    "$bin" --data "$work/p" --quiet backup "$src" >/dev/null
    restic init -q --repo "$work/r" >/dev/null
    restic -q --repo "$work/r" backup "$src" >/dev/null
    borg init -e repokey "$work/b" 2>/dev/null
    borg create "$work/b::first" "$src" 2>/dev/null
    size() { du -sb "$1" | cut -f1; }
    awk -v t="$src" -v n="$(find "$src" -type f | wc -l)" -v s="$(size "$src")" \
        -v p="$(size "$work/p")" -v r="$(size "$work/r")" -v b="$(size "$work/b")" 'BEGIN {
        printf "| `%s` | %.1f MB, %d files | %.1f | %.1f | %.1f | %.2fx | %.2fx |\n", t, s/1e6, n, p/1e6, r/1e6, b/1e6, p/r, p/b
    }'
done
