#!/usr/bin/env bash
# Whole-process timings of pastiche, restic and borgbackup on the same tree,
# in one run: first backup, re-backup after small edits in the middle of
# ~200 files, full restore. Prints a Markdown table (time, peak RSS, ratio to
# Borg). Used for docs/BENCHMARKS.md.
#
#   bench/compare.sh [SOURCE_TREE]
#
# SOURCE_TREE defaults to a copy of this machine's installed software and
# documentation (/usr/lib/x86_64-linux-gnu, /usr/share/doc, /usr/lib/python3.11).
# Needs restic and borgbackup (apt-get install restic borgbackup time).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
work="${BENCH_WORK:-/tmp/pastiche-bench}"
pastiche="$here/target/release/pastiche"
rm -rf "$work"
mkdir -p "$work"
src="$work/src"
if [ $# -ge 1 ]; then
    cp -a "$1" "$src"
else
    mkdir -p "$src"
    cp -a /usr/lib/x86_64-linux-gnu "$src/lib"
    cp -a /usr/share/doc "$src/doc"
    cp -a /usr/lib/python3.11 "$src/py"
fi
(cd "$here" && cargo build --release -q -p pastiche-appliance --bin pastiche)

export PASTICHE_PASSWORD=bench RESTIC_PASSWORD=bench BORG_PASSPHRASE=bench
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
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
find "$src" -type f -exec cat {} + > /dev/null

measure pastiche_first "$pastiche" --data "$work/pastiche" --quiet backup "$src"
measure restic_first restic -q --repo "$work/restic" backup "$src"
measure borg_first borg create "$work/borg::first" "$src"

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
find "$src" -type f -exec cat {} + > /dev/null

measure pastiche_second "$pastiche" --data "$work/pastiche" --quiet backup "$src"
measure restic_second restic -q --repo "$work/restic" backup "$src"
measure borg_second borg create "$work/borg::second" "$src"

for tool in pastiche restic borg; do rm -rf "$work/restore-$tool"; mkdir -p "$work/restore-$tool"; done
measure pastiche_restore "$pastiche" --data "$work/pastiche" --quiet restore latest --target "$work/restore-pastiche"
measure restic_restore restic -q --repo "$work/restic" restore latest --target "$work/restore-restic"
measure borg_restore bash -c "cd '$work/restore-borg' && borg extract '$work/borg::second'"

# Every restore must equal the source.
for tool in pastiche restic borg; do
    diff -r --no-dereference "$src" "$work/restore-$tool$src" >/dev/null || { echo "$tool restore differs"; exit 1; }
done

size() { du -sb "$1" | cut -f1; }
echo
echo "source: $(du -sh "$src" | cut -f1), $(find "$src" -type f | wc -l) files; machine: $(nproc) cores, $(lscpu | sed -n 's/Model name: *//p')"
echo "repository sizes: pastiche $(size "$work/pastiche"), restic $(size "$work/restic"), borg $(size "$work/borg") bytes"
echo
echo "| step | pastiche s | restic s | borg s | pastiche / borg | pastiche / restic | peak RSS pastiche / restic / borg (MiB) |"
echo "|---|---|---|---|---|---|---|"
for step in first second restore; do
    read -r _ ps pm < <(grep "^pastiche_$step " "$work/results")
    read -r _ rs rm_ < <(grep "^restic_$step " "$work/results")
    read -r _ bs bm < <(grep "^borg_$step " "$work/results")
    awk -v s="$step" -v ps="$ps" -v rs="$rs" -v bs="$bs" -v pm="$pm" -v rm="$rm_" -v bm="$bm" 'BEGIN {
        printf "| %s | %.2f | %.2f | %.2f | %.2fx | %.2fx | %d / %d / %d |\n", s, ps, rs, bs, ps/bs, ps/rs, pm/1024, rm/1024, bm/1024 }'
done
