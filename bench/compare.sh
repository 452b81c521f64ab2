#!/usr/bin/env bash
# Whole-process timings and store sizes of pastiche, restic and borgbackup on
# the same tree, in one run: first backup, re-backup after small edits in the
# middle of ~200 files, full restore, and a backup of the same tree moved to
# a new path (no new data: what metadata costs). Prints Markdown tables
# (time, peak RSS, ratio to Borg; store size and growth at each step). Used
# for docs/BENCHMARKS.md.
#
#   bench/compare.sh [SOURCE_TREE]
#
# SOURCE_TREE defaults to a copy of this machine's installed software and
# documentation (/usr/lib/x86_64-linux-gnu, /usr/share/doc, /usr/lib/python3.11).
# Installs restic, borgbackup and time from Debian if they are missing.
# PASTICHE=/path/to/pastiche measures that binary instead of building one.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
work="${BENCH_WORK:-/tmp/pastiche-bench}"
# shellcheck source=bench/lib.sh
. "$here/bench/lib.sh"
compared_tools
if [ -z "${PASTICHE:-}" ]; then
    (cd "$here" && cargo build --release -q -p pastiche-appliance --bin pastiche)
fi
pastiche="${PASTICHE:-${CARGO_TARGET_DIR:-$here/target}/release/pastiche}"
for dir in "$work"/restore-*; do mountpoint -q "$dir" 2>/dev/null && umount "$dir"; done
rm -rf "$work"
mkdir -p "$work"
src="$work/src"
if [ $# -ge 1 ]; then
    cp -a "$1" "$src"
else
    default_tree "$src"
fi
"$pastiche" --data "$work/pastiche" --quiet init --name bench.example >/dev/null
restic init -q --repo "$work/restic" >/dev/null
borg init -e repokey "$work/borg" 2>/dev/null

# Runs a command, records "seconds kib" for it.
measure() {
    local label="$1"; shift
    sync
    /usr/bin/time -f "%e %M" -o "$work/time.$label" "$@" >/dev/null 2>"$work/err.$label" || {
        cat "$work/err.$label"; exit 1; }
    echo "$label $(cat "$work/time.$label")" >> "$work/results"
}

# Warm the page cache so every tool reads from memory alike.
warm "$src"

measure pastiche_first "$pastiche" --data "$work/pastiche" --quiet backup "$src"
measure restic_first restic -q --repo "$work/restic" backup "$src"
measure borg_first borg create "$work/borg::first" "$src"

size() { du -sb "$1" | cut -f1; }
# The chunk index: the snapshot, the log and the dense chunk run (docs/STORE.md).
index_size() { du -cb "$work/pastiche/store/"index.state "$work/pastiche/store/"index.log "$work/pastiche/store/"chunks-*.run 2>/dev/null | tail -1 | cut -f1; }
# Records the store size of every tool after a step.
sizes() {
    for tool in pastiche restic borg; do echo "$tool $1 $(size "$work/$tool")" >> "$work/sizes"; done
}
sizes first
index_first=$(index_size)
packs_first=$(size "$work/pastiche/store/packs")
# The object log, and meta.redb if the box made one.
meta_size() { du -cb $(ls -d "$work/pastiche/"objects.log "$work/pastiche/"meta.redb 2>/dev/null) | tail -1 | cut -f1; }
meta_first=$(meta_size)
chunks_first=$("$pastiche" --data "$work/pastiche" --json stats | python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["chunks"])')

# Small edits: 16 bytes inserted in the middle of ~200 files, 10 deleted, 5 added.
python3 - "$src" <<'PY'
import os, random, sys
root = sys.argv[1]
rng = random.Random(7)
files = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs
               if not os.path.islink(os.path.join(d, f)) and os.path.getsize(os.path.join(d, f)) > 4096)
for path in rng.sample(files, 200):
    data = open(path, "rb").read()
    mid = len(data) // 2
    open(path, "wb").write(data[:mid] + rng.randbytes(16) + data[mid:])
for path in rng.sample(files, 10):
    if os.path.exists(path):
        os.remove(path)
for i in range(5):
    open(os.path.join(root, f"new-{i}.bin"), "wb").write(rng.randbytes(200_000))
PY
warm "$src"

measure pastiche_second "$pastiche" --data "$work/pastiche" --quiet backup "$src"
measure restic_second restic -q --repo "$work/restic" backup "$src"
measure borg_second borg create "$work/borg::second" "$src"
sizes second

# Each tool restores onto a journalled ext4 of its own, made for the run, as
# a NAS's data disk is. On this kind of VM the root file system is ext4
# without a journal, which will not reuse an inode freed in the last 60 s
# (300 s while its table block is dirty) and reads an inode table block for
# every candidate it skips: each file a restore there creates pays for the
# files removed shortly before, by this script's cleanup or a tool run just
# before, so the tool that restores first pays the most (docs/BENCHMARKS.md,
# stops 17 and 24). RESTORE_ON_WORK=1 restores under $work instead; so does
# a run that cannot make a loop device.
restore_fs() {
    local dir="$work/restore-$1" img="$work/restore-$1.img"
    rm -rf "$dir"
    mkdir -p "$dir"
    [ -z "${RESTORE_ON_WORK:-}" ] && [ "$(id -u)" = 0 ] && command -v mkfs.ext4 >/dev/null || return 0
    truncate -s "$(( $(du -sb "$src" | cut -f1) * 2 + (1 << 30) ))" "$img"
    # Inode tables and journal written now: left to ext4's lazy init, they
    # are written in the background while the first tool restores. The loop
    # device reads and writes its file directly, as a disk would, instead of
    # caching every block twice (the file system's pages and the file's).
    if mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$img" && mount -o loop "$img" "$dir"; then
        echo "$dir" >> "$work/mounts"
        losetup --direct-io=on "$(losetup -j "$img" | cut -d: -f1)" || echo "loop device of $dir without direct I/O" >&2
        return 0
    fi
    echo "cannot mount a loop file system; restoring under $work" >&2
    rm -f "$img"
}
unmount_restores() {
    [ -f "$work/mounts" ] || return 0
    while read -r dir; do umount "$dir" 2>/dev/null || true; done < "$work/mounts"
    rm -f "$work/mounts" "$work"/restore-*.img
}
trap unmount_restores EXIT
for tool in pastiche restic borg; do restore_fs "$tool"; done
sync
measure pastiche_restore "$pastiche" --data "$work/pastiche" --quiet restore latest --target "$work/restore-pastiche"
measure restic_restore restic -q --repo "$work/restic" restore latest --target "$work/restore-restic"
measure borg_restore bash -c "cd '$work/restore-borg' && borg extract '$work/borg::second'"

# Every restore must equal the source.
for tool in pastiche restic borg; do
    diff -r --no-dereference "$src" "$work/restore-$tool$src" >/dev/null || { echo "$tool restore differs"; exit 1; }
done

# The same tree under a new path: no new data, only metadata.
moved="$work/moved"
mv "$src" "$moved"
measure pastiche_moved "$pastiche" --data "$work/pastiche" --quiet backup "$moved"
measure restic_moved restic -q --repo "$work/restic" backup "$moved"
measure borg_moved borg create "$work/borg::moved" "$moved"
sizes moved
mv "$moved" "$src"

echo
echo "source: $(du -sh "$src" | cut -f1) ($(du -sb "$src" | cut -f1) bytes), $(find "$src" -type f | wc -l) files; machine: $(nproc) cores, $(lscpu | sed -n 's/Model name: *//p')"
echo "pastiche store after the first backup: $packs_first bytes of packs, $index_first of chunk index" \
    "($chunks_first chunks: $((index_first / chunks_first)) bytes per chunk), $meta_first of metadata;" \
    "at the end: $(index_size) of chunk index, $(meta_size) of metadata"
echo
echo "| store size, MB | pastiche | restic | borg | pastiche / restic |"
echo "|---|---|---|---|---|"
for step in first second moved; do
    read -r _ _ p < <(grep "^pastiche $step " "$work/sizes")
    read -r _ _ r < <(grep "^restic $step " "$work/sizes")
    read -r _ _ b < <(grep "^borg $step " "$work/sizes")
    awk -v s="$step" -v p="$p" -v r="$r" -v b="$b" 'BEGIN {
        printf "| after %s backup | %.1f | %.1f | %.1f | %.2fx |\n", s, p/1e6, r/1e6, b/1e6, p/r }'
done
for pair in "first second" "second moved"; do
    set -- $pair
    read -r _ _ p1 < <(grep "^pastiche $1 " "$work/sizes"); read -r _ _ p2 < <(grep "^pastiche $2 " "$work/sizes")
    read -r _ _ r1 < <(grep "^restic $1 " "$work/sizes"); read -r _ _ r2 < <(grep "^restic $2 " "$work/sizes")
    read -r _ _ b1 < <(grep "^borg $1 " "$work/sizes"); read -r _ _ b2 < <(grep "^borg $2 " "$work/sizes")
    awk -v s="$2" -v p="$((p2 - p1))" -v r="$((r2 - r1))" -v b="$((b2 - b1))" 'BEGIN {
        ratio = r >= 10000 ? sprintf("%.2fx", p/r) : "(restic grew < 10 kB)"
        printf "| growth of the %s backup | %.2f | %.2f | %.2f | %s |\n", s, p/1e6, r/1e6, b/1e6, ratio }'
done
echo
echo "| step | pastiche s | restic s | borg s | pastiche / borg | pastiche / restic | peak RSS pastiche / restic / borg (MiB) |"
echo "|---|---|---|---|---|---|---|"
for step in first second restore moved; do
    read -r _ ps pm < <(grep "^pastiche_$step " "$work/results")
    read -r _ rs rm_ < <(grep "^restic_$step " "$work/results")
    read -r _ bs bm < <(grep "^borg_$step " "$work/results")
    awk -v s="$step" -v ps="$ps" -v rs="$rs" -v bs="$bs" -v pm="$pm" -v rm="$rm_" -v bm="$bm" 'BEGIN {
        printf "| %s | %.2f | %.2f | %.2f | %.2fx | %.2fx | %d / %d / %d |\n", s, ps, rs, bs, ps/bs, ps/rs, pm/1024, rm/1024, bm/1024 }'
done
