#!/usr/bin/env bash
# run_overlap.sh - what slicing weight matrices buys (worker option
# slice_elems: row blocks pushed as backprop makes them, awaited only when
# forward reads them) against one piece per matrix (slice_elems=0).
# ps-launch trains the Fashion-MNIST MLP for one epoch, 1 shard, batch 64,
# BSP, 1 and 2 workers; the two settings take turns for ROUNDS rounds and
# the medians are compared. First on plain loopback, then (root only)
# inside a network namespace whose loopback is shaped to RATE with tc tbf,
# so the wire costs what a network costs.
# Usage: bench/run_overlap.sh [BUILD_DIR] [RATE] [ROUNDS]   (default build 5gbit 3)
set -euo pipefail
build=${1:-build}
rate=${2:-5gbit}
rounds=${3:-3}
py=/usr/bin/python3

# samples/s of rank 0's epoch event; $1 = command prefix (e.g. ip netns exec NS)
run() {
    local prefix=$1 workers=$2 slice=$3
    $prefix "$build/bin/ps-launch" --servers 1 --workers "$workers" \
        --config deploy/examples/fashion-mlp.conf --set batch_size=64 --set epochs=1 \
        --set eval_every=0 --set progress_every_s=0 --set "slice_elems=$slice" 2>/dev/null |
        "$py" -c '
import json, sys
for line in sys.stdin:
    if line.startswith("{"):
        e = json.loads(line)
        if e.get("event") == "epoch" and e.get("rank") == 0:
            print(e["samples_per_s"])'
}

compare() {
    local link=$1 prefix=$2
    for workers in 1 2; do
        local on=() off=()
        for ((r = 0; r < rounds; r++)); do
            off+=("$(run "$prefix" "$workers" 0)")
            on+=("$(run "$prefix" "$workers" 32768)")
        done
        "$py" - "$link" "$workers" "${off[*]}" "${on[*]}" <<'PYEOF'
import json, statistics, sys
link, workers, off, on = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4].split()
off = statistics.median(map(float, off)); on = statistics.median(map(float, on))
print(json.dumps({"bench": "overlap", "link": link, "workers": workers,
                  "slices_samples_per_s": round(on, 1), "baseline": "slice_elems=0",
                  "baseline_samples_per_s": round(off, 1), "ratio": round(on / off, 3)}))
PYEOF
    done
}

compare loopback ""
if [ "$(id -u)" -ne 0 ]; then echo "# shaped runs need root; skipped"; exit 0; fi
ns="psoverlap$$"
ip netns add "$ns"
trap 'ip netns del "$ns" 2>/dev/null || true' EXIT
ip -n "$ns" link set lo up
# a small burst, so that every step's megabyte really waits for the link
ip netns exec "$ns" tc qdisc add dev lo root tbf rate "$rate" burst 128kb latency 50ms
compare "$rate" "ip netns exec $ns"
