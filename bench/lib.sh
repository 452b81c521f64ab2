# Helpers shared by the buddy benchmarks (sourced, not run): timing, the
# binary, buddies served on loopback, and checking a restored tree.
#
# Before sourcing: `here` (the repository) and `work` (a scratch directory).

# The binary: $PASTICHE when set, else a release build of this tree.
bench_pastiche() {
    if [ -z "${PASTICHE:-}" ]; then
        (cd "$here" && cargo build --release -q -p pastiche-appliance --bin pastiche)
        PASTICHE="$here/target/release/pastiche"
    fi
    pastiche="$PASTICHE"
}

# default_tree DIR: the benchmarks' default source tree, copied into DIR:
# this machine's installed libraries, documentation and Python library.
default_tree() {
    mkdir -p "$1"
    cp -a /usr/lib/x86_64-linux-gnu "$1/lib"
    cp -a /usr/share/doc "$1/doc"
    cp -a /usr/lib/python3.11 "$1/py"
}

# compared_tools: restic, borgbackup and GNU time (Debian packages),
# installed if missing, and the passwords every tool's repository uses.
compared_tools() {
    if ! command -v restic >/dev/null || ! command -v borg >/dev/null || [ ! -x /usr/bin/time ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq restic borgbackup time >/dev/null
    fi
    export PASTICHE_PASSWORD=bench RESTIC_PASSWORD=bench BORG_PASSPHRASE=bench
    export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
}

# Reads every file of a tree once, so the first run does not pay for the disk.
warm() {
    if [ -n "${UNCACHED:-}" ]; then
        uncached
    else
        find "$1" -type f -exec cat {} + > /dev/null 2>&1 || true
    fi
}

# With UNCACHED=1, warm() empties the page cache instead (root only), so a
# run reads its tree from disk, as a first backup of data nobody touched
# lately does, or any run after Borg (which drops the pages it read).
uncached() { sync; echo 3 > /proc/sys/vm/drop_caches; }

# With COLD_MEMORY=MiB set, takes that much memory into a file in /dev/shm
# (freeing the previous one first), so the pages freed most recently (the
# last run's store, its process) are in use and the next run gets memory
# that has lain free a while: on a virtual machine the host may have taken
# such pages back, and a first touch costs several microseconds per page,
# as on a freshly booted box. Without it, a run reuses the pages the one
# before it freed, and that cost never shows.
cold_memory() {
    [ -n "${COLD_MEMORY:-}" ] || return 0
    rm -f /dev/shm/pastiche-bench-cold
    dd if=/dev/zero of=/dev/shm/pastiche-bench-cold bs=1M count="$COLD_MEMORY" status=none
}

# Seconds a command takes (stdout dropped; its stderr shown if it fails).
secs() { sync; /usr/bin/time -f "%e" -o "$work/t" "$@" >/dev/null 2>"$work/err" || { cat "$work/err"; exit 1; }; cat "$work/t"; }

# The smallest of its arguments.
min() { printf '%s\n' "$@" | sort -g | head -1; }

# A free-looking loopback port base.
random_port() { echo $((20000 + RANDOM % 20000)); }

# Servers started by `serve_buddy`, killed on exit.
bench_pids=()
trap 'kill "${bench_pids[@]}" 2>/dev/null || true' EXIT

# serve_buddy DATA PORT: `pastiche serve` for the box in DATA on loopback;
# its pid is in $served.
serve_buddy() {
    "$pastiche" --data "$1" serve --listen "127.0.0.1:$2" --http off >/dev/null 2>>"$work/serve.log" &
    served=$!
    bench_pids+=("$served")
    for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null && return 0; sleep 0.1; done
    echo "pastiche serve on port $2 did not start"; cat "$work/serve.log"; exit 1
}

# pair_buddy BOX BUDDY PORT: BUDDY invites, BOX adds it with the code.
pair_buddy() {
    local code
    code=$("$pastiche" --data "$2" buddy invite | tail -n 1)
    "$pastiche" --data "$1" --quiet buddy add "127.0.0.1:$3" --code "$code" >/dev/null
}

# same_tree SOURCE RESTORED_ROOT WHAT: the restore recreated SOURCE under RESTORED_ROOT.
same_tree() { diff -r --no-dereference "$1" "$2$1" >/dev/null || { echo "$3 differs"; exit 1; }; }
