#!/usr/bin/env bash
# First backups of several trees by pastiche, restic and borgbackup: wall
# time and store size of each, as one Markdown row per tree, with pastiche's
# time as a ratio to Borg's and its store as a ratio to restic's. For the
# kinds of data a box may hold (software, sources, already-compressed
# files): where `first_backup.sh` measures one tree well, this shows how
# the ratios move with the data. One run per tool and tree, page cache
# warmed before each; repeat `first_backup.sh` on a tree for its medians.
#
#   bench/corpora.sh TREE...
#
# PASTICHE=/path/to/pastiche measures that binary instead of building one.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
work="${BENCH_WORK:-/tmp/pastiche-corpora}"
# shellcheck source=bench/lib.sh
. "$here/bench/lib.sh"
[ $# -ge 1 ] || { echo "usage: bench/corpora.sh TREE..." >&2; exit 2; }
compared_tools
bench_pastiche

# first TOOL SRC: one first backup of SRC into a fresh repository at
# $work/TOOL; prints its wall seconds.
first() {
    local tool="$1" src="$2" repo="$work/$1"
    rm -rf "$repo"
    case "$tool" in
        pastiche)
            "$pastiche" --data "$repo" --quiet init --name bench.example >/dev/null
            set -- "$pastiche" --data "$repo" --quiet backup "$src" ;;
        restic)
            restic init -q --repo "$repo" >/dev/null
            set -- restic --repo "$repo" -q backup --compression auto "$src" ;;
        borg)
            borg init -e repokey "$repo" 2>/dev/null
            set -- borg create "$repo::first" "$src" ;;
    esac
    warm "$src"
    secs "$@"
}

# Store size in MB (decimal) of TOOL's repository.
store_mb() { du -sb "$work/$1" | awk '{ printf "%.1f", $1 / 1e6 }'; }

mkdir -p "$work"
echo "| tree | MB, files | pastiche s | restic s | Borg s | pastiche / Borg | pastiche MB | restic MB | Borg MB | pastiche / restic |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for src in "$@"; do
    src="$(cd "$src" && pwd)"
    size="$(du -sb --apparent-size "$src" | awk '{ printf "%.0f", $1 / 1e6 }')"
    files="$(find "$src" -type f | wc -l)"
    declare -A t mb
    for tool in pastiche restic borg; do
        t[$tool]="$(first "$tool" "$src")"
        mb[$tool]="$(store_mb "$tool")"
    done
    ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a / b }'; }
    echo "| $src | $size, $files | ${t[pastiche]} | ${t[restic]} | ${t[borg]} | $(ratio "${t[pastiche]}" "${t[borg]}") |" \
        "${mb[pastiche]} | ${mb[restic]} | ${mb[borg]} | $(ratio "${mb[pastiche]}" "${mb[restic]}") |"
done
rm -rf "$work"
