#!/usr/bin/env bash
# run_sparse_ckpt_cost.sh [BUILD_DIR] [KEYS] [EVERY] [ROUNDS] - what
# checkpointing costs a sparse job: bench/run_sparse_scale.sh (KEYS distinct
# keys, default 20,000,000, FTRL, through 4 shards) without checkpoints and
# with a checkpoint every EVERY clocks (default 20; a clock is one batch of
# 100,000 keys), ROUNDS times (default 3) interleaved, fresh shards each
# run. Prints each run's keys/s and the ratio with/without of each pair,
# then the median ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
keys=${2:-20000000}
every=${3:-20}
rounds=${4:-3}
ratios=()
for r in $(seq "$rounds"); do
    plain=$(bench/run_sparse_scale.sh "$build" "$keys" | grep '"sparse_scale"')
    ckpt_out=$(PS_CHECKPOINT_EVERY=$every bench/run_sparse_scale.sh "$build" "$keys")
    ckpt=$(echo "$ckpt_out" | grep '"sparse_scale"')
    files=$(echo "$ckpt_out" | grep '"sparse_scale_checkpoints"')
    a=$(echo "$plain" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["keys_per_s"])')
    b=$(echo "$ckpt" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["keys_per_s"])')
    ratio=$(/usr/bin/python3 -c "print(round($b / $a, 4))")
    ratios+=("$ratio")
    echo "{\"round\":$r,\"keys_per_s_without\":$a,\"keys_per_s_with\":$b,\"ratio\":$ratio,\"checkpoints\":$files}"
done
/usr/bin/python3 -c "import statistics,sys; r=[float(x) for x in sys.argv[1:]]; print('{\"bench\":\"sparse_checkpoint_cost\",\"keys\":$keys,\"every\":$every,\"median_ratio\":%s,\"ratios\":%s}' % (statistics.median(r), r))" "${ratios[@]}"
