#!/usr/bin/env bash
# run_ckpt_per_minute.sh [BUILD_DIR] [KEYS] [SECONDS] [ROUNDS] [INTERVAL_S] -
# what a checkpoint every INTERVAL_S seconds (default 60) costs a sparse job
# in its steady state: bench/run_sparse_scale.sh fills a table of KEYS
# distinct keys (default 20,000,000; FTRL, 4 shards), then trains SECONDS
# (default 180) on it, each clock a pull and a push of 100,000 known keys
# (no compute between: the worst case for the checkpoint's share). Each of
# ROUNDS (default 3) rounds runs once without checkpoints, then once with a
# checkpoint every N clocks, N = INTERVAL_S x the clocks per second the
# run without measured; fresh shards each run. Prints each pair's steady
# keys/s and ratio (with / without), the checkpoints written, and the median.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
keys=${2:-20000000}
secs=${3:-180}
rounds=${4:-3}
interval=${5:-60}
py=/usr/bin/python3
field() { $py -c "import json,sys; print(json.loads(sys.stdin.read())[\"$1\"])"; }
ratios=()
for r in $(seq "$rounds"); do
    plain=$(PS_STEADY_SECONDS=$secs bench/run_sparse_scale.sh "$build" "$keys" | grep '"sparse_steady"')
    a=$(echo "$plain" | field keys_per_s)
    cps=$(echo "$plain" | field clocks_per_s)
    every=$($py -c "print(max(1, round($interval * $cps)))")
    out=$(PS_STEADY_SECONDS=$secs PS_CHECKPOINT_EVERY=$every bench/run_sparse_scale.sh "$build" "$keys")
    b=$(echo "$out" | grep '"sparse_steady"' | field keys_per_s)
    written=$(echo "$out" | grep '"sparse_scale_checkpoints"' | field written)
    ratio=$($py -c "print(round($b / $a, 4))")
    ratios+=("$ratio")
    echo "{\"round\":$r,\"keys_per_s_without\":$a,\"keys_per_s_with\":$b,\"every_clocks\":$every,\"checkpoints_written\":$written,\"ratio\":$ratio}"
done
$py -c "import statistics,sys; r=[float(x) for x in sys.argv[1:]]; print('{\"bench\":\"checkpoint_per_minute_cost\",\"keys\":$keys,\"seconds\":$secs,\"interval_s\":$interval,\"median_ratio\":%s,\"ratios\":%s}' % (statistics.median(r), r))" "${ratios[@]}"
