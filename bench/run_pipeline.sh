#!/usr/bin/env bash
# run_pipeline.sh - pipeline stages (#20), two figures:
# 1. the bubble: an MLP whose two stages do equal work (and the timeline
#    of its M = 4 steps), one whose stage 1 has more, and the CNN
#    (deploy/examples/fashion-cnn.conf), as 2 stages, 1 replica, STEPS SGD
#    steps, for M = 1, 2, 4, 8 micro-batches: the measured bubble_fraction
#    (time stages waited for each other over the steps' time, mean of the
#    stages) and each stage's busy time, next to GPipe's (P-1)/(M+P-1);
#    each M twice, interleaved: stages keeping every micro-batch's
#    activations (the default) and pipeline_recompute yes (stage 0
#    recomputes each forward in backward);
#    and the same MLP at M = 8 with the stages handing over through FIFOs
#    (the default on one host) and through ZeroMQ, in turn;
# 2. memory: a wide MLP (784-2048-2048-2048-10, 10.2 M parameters), the
#    data-parallel worker (1 worker) against the largest stage of P = 2
#    (M = 1, M = 4, M = 4 recomputing): peak RSS of the largest worker, as a ratio.
# 1 shard, loopback, no shaping (this is not the throughput bench: that
# needs shaped namespaces and is not built).
# Usage: bench/run_pipeline.sh [BUILD_DIR] [STEPS]   (default build 60)
set -euo pipefail
build=${1:-build}
steps=${2:-60}
py=/usr/bin/python3

summary() { # config [--set ...]: the job's summary line
    local conf=$1; shift
    "$build/bin/ps-launch" --servers 1 --config "deploy/examples/$conf" --set optimizer=sgd \
        --set lr=0.01 --set lr_schedule=constant --set max_steps="$steps" --set eval_every=0 \
        --set eval_every_steps=0 --set progress_every_s=0 --set test_data= --set test_labels= \
        "$@" 2>/dev/null | grep '"event":"done"' | tail -1
}

bubble() { # name config batch [--set ...]
    local name=$1 conf=$2 b=$3; shift 3
    echo "# bubble: $name, P=2, D=1, batch $b, $steps steps"
    for m in 1 2 4 8; do
        for recompute in no yes; do
            [ "$m" = 1 ] && [ "$recompute" = yes ] && continue # one micro-batch: nothing to keep
            line=$(summary "$conf" --workers 2 --set batch_size="$b" --set pipeline_stages=2 \
                --set micro_batches="$m" --set pipeline_recompute="$recompute" "$@")
            "$py" - "$m" "$recompute" "$line" <<'PYEOF'
import json, sys
m, rec, s, p = int(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3]), 2
print(f"M={m} recompute {rec:3}: bubble_fraction {s['bubble_fraction']:.3f} (GPipe (P-1)/(M+P-1) = "
      f"{(p - 1) / (m + p - 1):.3f}); stage busy ms {s['stage_busy_ms']}; wall {s['wall_s']:.1f} s; "
      f"peak RSS {s['peak_rss_bytes'] / 1e6:.1f} MB")
PYEOF
        done
    done
}
# stages of equal work: 784-512x4-10 cuts after dense2, 1.59 M multiply-adds
# a sample each way (the timeline below shows their compute within a few %)
equal=(--set hidden=512,512,512,512)
bubble "MLP 784-512-512-512-512-10" fashion-mlp.conf 128 "${equal[@]}"
# where the M = 4 step's time goes, stage by stage (tools/trace_summary.py)
echo "# timeline: that MLP, M=4, the last $((steps * 2 / 3)) of $steps steps"
tl=$(mktemp -d)
summary fashion-mlp.conf --workers 2 --set batch_size=128 "${equal[@]}" --set pipeline_stages=2 \
    --set micro_batches=4 --set trace_dir="$tl" --set trace_steps="$steps" >/dev/null
"$py" tools/trace_summary.py --skip $((steps / 3)) "$tl"
rm -rf "$tl"
# the hand-over: FIFOs between the stages (the default on one host) against
# ZeroMQ, M = 8 (16 hand-overs a step), interleaved, 4x the steps
echo "# hand-over: that MLP, M=8, $((steps * 4)) steps, FIFOs vs ZeroMQ (pipeline_same_host yes/no)"
for round in 1 2 3; do
    for same in yes no; do
        line=$(steps=$((steps * 4)) summary fashion-mlp.conf --workers 2 --set batch_size=128 \
            "${equal[@]}" --set pipeline_stages=2 --set micro_batches=8 --set pipeline_same_host=$same)
        "$py" - "$round" "$same" "$line" <<'PYEOF'
import json, sys
r, same, s = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
print(f"round {r} same_host {same:3}: bubble_fraction {s['bubble_fraction']:.3f}; "
      f"stage busy ms {s['stage_busy_ms']}; wall {s['wall_s']:.2f} s")
PYEOF
    done
done
# 784-1024x4-10 cuts after dense2 too, but stage 1 then has 1.3x the work
bubble "MLP 784-1024-1024-1024-1024-10" fashion-mlp.conf 64 --set hidden=1024,1024,1024,1024
# the CNN's balance by parameters gives stage 0 the convolutions, most of the work
bubble "CNN (fashion-cnn.conf)" fashion-cnn.conf 32

echo "# memory: MLP 784-2048-2048-2048-10, batch 32, $steps steps, peak RSS of the largest worker"
wide=(--set hidden=2048,2048,2048 --set batch_size=32)
dp=$(summary fashion-mlp.conf --workers 1 "${wide[@]}")
p2m1=$(summary fashion-mlp.conf --workers 2 "${wide[@]}" --set pipeline_stages=2 --set micro_batches=1)
p2m4=$(summary fashion-mlp.conf --workers 2 "${wide[@]}" --set pipeline_stages=2 --set micro_batches=4)
p2m4r=$(summary fashion-mlp.conf --workers 2 "${wide[@]}" --set pipeline_stages=2 --set micro_batches=4 \
    --set pipeline_recompute=yes)
"$py" - "$dp" "$p2m1" "$p2m4" "$p2m4r" <<'PYEOF'
import json, sys
dp, m1, m4, m4r = (json.loads(a)["peak_rss_bytes"] / 1e6 for a in sys.argv[1:5])
print(f"data-parallel worker {dp:.1f} MB; largest stage of P=2: M=1 {m1:.1f} MB ({m1 / dp:.2f}x), "
      f"M=4 {m4:.1f} MB ({m4 / dp:.2f}x), M=4 recomputing {m4r:.1f} MB ({m4r / dp:.2f}x)")
PYEOF
