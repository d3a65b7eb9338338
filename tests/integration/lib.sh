# lib.sh - helpers for integration tests: real binaries on 127.0.0.1 with
# run-time ports, a private work directory, deadlines on every wait, and
# teardown that ends only the processes this test started (by PID).
set -euo pipefail
# Under pipefail, never `cmd | grep -q PAT`: grep -q exits at the first
# match, cmd may then die of SIGPIPE and fail the pipeline (seen with
# `ps-server --help`, 4 KB: 81 of 300 runs). `| grep -c PAT >/dev/null`
# reads to the end.
BIN=${PS_BIN:?PS_BIN must point at build/bin}
SRC=${PS_SRC:?PS_SRC must point at the source tree}
PY=${PS_PYTHON:-/usr/bin/python3}
[ -x "$PY" ] || PY=/usr/bin/python3
FM=/usr/share/datasets/fashion-mnist
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ps-it.XXXXXX")
STARTED_PIDS=()

cleanup() {
    local rc=$?
    for pid in "${STARTED_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${STARTED_PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [ $rc -ne 0 ]; then
        for log in "$WORK"/*.log; do
            [ -f "$log" ] || continue
            echo "---- $log (last 30 lines)" >&2
            tail -n 30 "$log" >&2
        done
    fi
    [ -n "${PS_KEEP_WORK:-}" ] || rm -rf "$WORK"; [ -n "${PS_KEEP_WORK:-}" ] && echo "work dir kept: $WORK" >&2
    exit $rc
}
trap cleanup EXIT

# cleanup_also 'CODE': the EXIT trap runs CODE (its failures ignored), then
# cleanup, keeping the test's exit status. set +e first: under set -e a
# failing command in CODE, or the (exit $rc) that restores a failing
# status, would end the trap before cleanup and leave the test's
# processes running.
cleanup_also() {
    trap "rc=\$?; set +e; $1; (exit \$rc); cleanup" EXIT
}

fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "ok ($SECONDS s): $*"; }

# start_server NAME SHARD SHARDS [flags...]: starts ps-server, waits (10 s
# deadline) for its ready file, and sets EP_<NAME> to its endpoint.
start_server() {
    local name=$1 shard=$2 shards=$3; shift 3
    local ready="$WORK/$name.ready"
    "$BIN/ps-server" --shard "$shard" --shards "$shards" --port 0 --ready-file "$ready" "$@" \
        2>"$WORK/$name.log" &
    local pid=$!
    STARTED_PIDS+=("$pid")
    local deadline=$((SECONDS + 10))
    until [ -f "$ready" ]; do
        kill -0 "$pid" 2>/dev/null || fail "server $name exited before it was ready"
        [ $SECONDS -lt $deadline ] || fail "server $name not ready after 10 s"
        sleep 0.05
    done
    printf -v "EP_$name" '%s' "$(awk '/^endpoint/{print $2}' "$ready")"
    printf -v "PID_$name" '%s' "$pid"
}

# wait_for FILE PATTERN SECONDS: until a line of FILE matches, or fail.
# PS_TIME_SCALE (default 1) stretches the deadline for slow builds (TSan).
TIME_SCALE=${PS_TIME_SCALE:-1}
wait_for() { # FILE PATTERN SECONDS
    local deadline=$((SECONDS + $3 * TIME_SCALE))
    until grep -q -- "$2" "$1" 2>/dev/null; do
        [ $SECONDS -lt $deadline ] || fail "no '$2' in $1 after $3 s"
        sleep 0.05
    done
}

# wait_stats SOCK SECTION PATTERN SECONDS OUT: polls `ps-ctl show SECTION`
# into OUT until it holds a line matching the extended regex PATTERN. The
# stats socket serves snapshots the shard's loop publishes every poll_ms, so
# an event a test has just seen (a join, an eval, a refusal) may not be in
# the section yet: one read right after it is a race.
wait_stats() {
    local deadline=$((SECONDS + $4 * TIME_SCALE))
    until "$BIN/ps-ctl" -s "$1" show "$2" >"$5" 2>&1 && grep -Eq -- "$3" "$5"; do
        [ $SECONDS -lt $deadline ] || fail "show $2 on $1 has no line like '$3' after $4 s: $(cat "$5")"
        sleep 0.05
    done
}

# proc_state PID: its state letter (R, S, T, Z...), nothing once reaped.
proc_state() {
    local line
    { read -r line <"/proc/$1/stat"; } 2>/dev/null || return 0
    line=${line##*) }
    echo "${line%% *}"
}

# wait_stopped PID WHAT: until process PID is stopped (a failpoint's
# SIGSTOP, common/ps_proc.h), or fail naming WHAT (120 s, scaled).
wait_stopped() {
    local deadline=$((SECONDS + 120 * TIME_SCALE))
    until [ "$(proc_state "$1")" = T ]; do
        kill -0 "$1" 2>/dev/null || fail "$2 (pid $1) ended before its failpoint"
        [ $SECONDS -lt $deadline ] || fail "$2 (pid $1) never reached its failpoint"
        sleep 0.05
    done
}

# children_of PID: the pids of the processes whose parent is PID.
children_of() {
    local f line fields
    for f in /proc/[0-9]*/stat; do
        { read -r line <"$f"; } 2>/dev/null || continue
        read -r -a fields <<<"${line##*) }" # state ppid ...
        [ "${fields[1]}" != "$1" ] || echo "${f//[^0-9]/}"
    done
}

# wait_gone PID WHAT: until PID has ended (gone or a zombie), or fail
# naming WHAT (10 s, scaled).
wait_gone() {
    local s deadline=$((SECONDS + 10 * TIME_SCALE))
    until s=$(proc_state "$1") && { [ -z "$s" ] || [ "$s" = Z ]; }; do
        [ $SECONDS -lt $deadline ] || fail "$2 (pid $1) still runs 10 s on"
        sleep 0.05
    done
}

# lose_host PID: kill -9 PID (a child of this shell) and every process it
# forked at once, as losing its machine would, and return once none runs.
# PID is stopped first so that it forks nothing while its children are
# listed.
lose_host() {
    local k kids
    kill -STOP "$1" 2>/dev/null || true
    read -r -a kids <<<"$(children_of "$1" | tr '\n' ' ')"
    kill -KILL "$1" "${kids[@]}" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    for k in "${kids[@]}"; do wait_gone "$k" "process $k, forked by the lost $1"; done
}

# json FILE KEY: the value of KEY in the last {"event":"done"} line of FILE.
json() {
    "$PY" - "$1" "$2" <<'PYEOF'
import json, sys
done = [json.loads(l) for l in open(sys.argv[1]) if '"event":"done"' in l]
if not done:
    sys.exit("no done line in " + sys.argv[1])
print(done[-1][sys.argv[2]])
PYEOF
}

# check EXPR...: evaluates a Python boolean expression; fails with it if false.
# models_equal DIR_A DIR_B: the two saved models (ps-launch --save-model)
# are bit for bit the same; prints the largest difference.
models_equal() {
    "$PY" - "$1" "$2" <<'PYEOF'
import json, sys, numpy as np
a, b = sys.argv[1], sys.argv[2]
meta = json.load(open(f"{a}/model.json"))
diff = max(float(np.abs(np.load(f"{a}/{t['file']}") - np.load(f"{b}/{t['file']}")).max())
           for t in meta["tables"])
print(f"max abs difference between {a} and {b}: {diff}")
sys.exit(0 if diff == 0.0 else 1)
PYEOF
}

# sparse_rows_diff A B: max abs difference of two sparse models saved by
# save_model (sparse_keys.txt + sparse_rows.npy: the rows of the test set's
# keys); fails if the keys differ or nothing was trained.
sparse_rows_diff() {
    "$PY" - "$1" "$2" <<'PYEOF'
import sys, numpy as np
a, b = sys.argv[1], sys.argv[2]
ka, kb = (np.loadtxt(f"{d}/sparse_keys.txt", dtype=np.uint64) for d in (a, b))
assert ka.shape == kb.shape and (ka == kb).all(), "different keys"
ra, rb = (np.load(f"{d}/sparse_rows.npy") for d in (a, b))
assert ra.shape == rb.shape and ra.shape[0] == len(ka) and ra.dtype == np.float32, (ra.shape, rb.shape)
assert np.abs(ra).max() > 1e-3, "nothing was trained"
print(float(np.abs(ra - rb).max()))
PYEOF
}

check() {
    "$PY" -c "import sys; sys.exit(0 if ($*) else 1)" || fail "expected: $*"
}

fashion_flags() {
    echo --data_format idx --train_data "$FM/train-images-idx3-ubyte.gz" \
        --train_labels "$FM/train-labels-idx1-ubyte.gz" \
        --test_data "$FM/t10k-images-idx3-ubyte.gz" --test_labels "$FM/t10k-labels-idx1-ubyte.gz"
}

# ---- network namespaces, one per "machine" (netns.sh, replica_takeover.sh,
# bench/run_shaped.sh)
# netns_probe: true if this machine lets us make network namespaces (why
# not, if not, in $WORK/probe.log).
netns_probe() {
    command -v ip >/dev/null || { echo "iproute2 (ip) is not installed" >"$WORK/probe.log"; return 1; }
    ip netns add "psprobe$$" 2>"$WORK/probe.log" || return 1
    ip netns del "psprobe$$"
}
# netns_build PREFIX HOST...: a namespace "ps$HOST$$" per HOST, joined by a
# bridge (namespace "psbr$$"), HOST number i (from 0) at PREFIX.(i+1)/24;
# sets NETNS_IP[HOST] and installs the cleanup (namespaces deleted,
# /run/netns unmounted if this test mounted it, then lib.sh's cleanup). A
# step the machine refuses exits 77 (a ctest skip) naming it.
declare -A NETNS_IP
NETNS_HOSTS=()
NETNS_HAD_MOUNT=0
netns_cleanup() {
    for h in "${NETNS_HOSTS[@]}"; do ip netns del "ps$h$$" 2>/dev/null || true; done
    ip netns del "psbr$$" 2>/dev/null || true
    # iproute2 mounts /run/netns on first use; if this test is what made it
    # a mount point, unmount it (in a chroot it would otherwise stay in the
    # chroot's tree and keep its owner from deleting the root); not while
    # another test's namespaces are in it (ctest -j: that would cut them off)
    if [ $NETNS_HAD_MOUNT = 0 ] && mountpoint -q /run/netns 2>/dev/null &&
        [ -z "$(ls -A /run/netns 2>/dev/null)" ]; then
        umount -l /run/netns 2>/dev/null || true
    fi
}
netns_step() {
    "$@" 2>>"$WORK/net.log" || {
        echo "SKIP: cannot build the test network here: '$*' failed: $(tail -1 "$WORK/net.log")"
        exit 77
    }
}
netns_build() {
    local prefix=$1 i=0 h ns; shift
    NETNS_HOSTS=("$@")
    mountpoint -q /run/netns 2>/dev/null && NETNS_HAD_MOUNT=1
    cleanup_also netns_cleanup
    netns_step ip netns add "psbr$$"
    netns_step ip -n "psbr$$" link add br0 type bridge
    netns_step ip -n "psbr$$" link set br0 up
    for h in "$@"; do
        ns="ps$h$$"
        NETNS_IP[$h]=$prefix.$((i + 1))
        netns_step ip netns add "$ns"
        netns_step ip link add "v$i$$" type veth peer name "b$i$$"
        netns_step ip link set "v$i$$" netns "$ns"
        netns_step ip link set "b$i$$" netns "psbr$$"
        netns_step ip -n "psbr$$" link set "b$i$$" master br0 up
        netns_step ip -n "$ns" link set "v$i$$" name eth0
        netns_step ip -n "$ns" addr add "${NETNS_IP[$h]}/24" dev eth0
        netns_step ip -n "$ns" link set eth0 up
        netns_step ip -n "$ns" link set lo up
        i=$((i + 1))
    done
}
# netns_shape RATE BURST: after netns_build, every host's link limited to
# RATE each way, as a full-duplex NIC on a switch: tc tbf on the host's
# eth0 (what it sends) and on its bridge port (what it receives). BURST is
# the bucket; it must hold a GSO segment (>= 64kb) or big packets stall.
netns_shape() {
    local rate=$1 burst=$2 i
    for ((i = 0; i < ${#NETNS_HOSTS[@]}; i++)); do
        netns_step ip netns exec "ps${NETNS_HOSTS[i]}$$" \
            tc qdisc replace dev eth0 root tbf rate "$rate" burst "$burst" latency 50ms
        netns_step ip netns exec "psbr$$" \
            tc qdisc replace dev "b$i$$" root tbf rate "$rate" burst "$burst" latency 50ms
    done
}
