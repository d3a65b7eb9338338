#!/usr/bin/env bash
# run_replica_cost.sh [BUILD_DIR] [ROUNDS] [EVERY] [MODEL] - what replicated
# checkpoints cost training: a BSP job of 2 workers on 2 shards (127.0.0.1,
# ports chosen at run time, a fresh state_dir each run) checkpointing every
# EVERY clocks (default 10), without replication and with every file copied
# to the other shard (peers, checkpoint_replicas 1), ROUNDS times (default
# 3) interleaved. MODEL is dense (default: the Fashion-MNIST MLP 784-256-
# 128-10 with Adam, 600 steps, a 1.4 MB checkpoint per shard) or sparse
# (hashed LR, FTRL, 2^20 keys, 2 epochs of 200,000 ps-clickgen rows).
# Prints worker 0's samples/s of each run and the ratio with/without of
# each pair, then the median ratio and the replicas acknowledged.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
rounds=${2:-3}
every=${3:-10}
model=${4:-dense}
bin=$build/bin
work=$(mktemp -d /tmp/ps-replica-bench.XXXXXX)
pids=()
trap 'for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait; rm -rf "$work"' EXIT
if [ "$model" = sparse ]; then
    "$bin/ps-clickgen" --rows 200000 --test_rows 1000 --out "$work/train.svm" \
        --test_out "$work/test.svm" --truth "$work/truth.json" >/dev/null
    worker_args=(--config deploy/examples/click-lr.conf --train_data "$work/train.svm"
        --test_data "$work/test.svm" --epochs 2 --hash_bits 20 --job bench)
else
    worker_args=(--config deploy/examples/fashion-mlp.conf --max_steps 600 --eval_every 0
        --job bench)
fi

free_ports() {
    /usr/bin/python3 -c '
import socket
ss = [socket.socket() for _ in range(2)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))'
}

run() { # NAME on|off: prints worker 0's samples/s, then the replicas shard 1 had acked
    local name=$1 repl=$2 s r
    local -a ports
    read -r -a ports <<<"$(free_ports)"
    local servers="tcp://127.0.0.1:${ports[0]},tcp://127.0.0.1:${ports[1]}"
    local peers=()
    [ "$repl" = on ] && peers=(--peers "$servers")
    pids=()
    for s in 0 1; do
        mkdir -p "$work/$name-s$s"
        "$bin/ps-server" --port "${ports[$s]}" --shard $s --shards 2 --state-dir "$work/$name-s$s" \
            --checkpoint-every "$every" --stats-socket "$work/$name-s$s.sock" \
            --ready-file "$work/$name-s$s.ready" --log-level warn "${peers[@]}" \
            2>"$work/$name-s$s.log" &
        pids+=("$!")
    done
    for s in 0 1; do
        for _ in $(seq 200); do [ -f "$work/$name-s$s.ready" ] && break; sleep 0.05; done
        [ -f "$work/$name-s$s.ready" ] || { echo "shard $s of $name not ready in 10 s" >&2; exit 1; }
    done
    local wp=()
    for r in 0 1; do
        "$bin/ps-worker" --servers "$servers" --rank $r --world 2 "${worker_args[@]}" \
            >"$work/$name-w$r.out" 2>"$work/$name-w$r.log" &
        wp+=("$!")
    done
    for p in "${wp[@]}"; do wait "$p"; done
    local acked
    acked=$("$bin/ps-ctl" -s "$work/$name-s1.sock" show info | awk -F: '$1 == "replicas_acked" {print $2}')
    for p in "${pids[@]}"; do kill -TERM "$p"; wait "$p" || true; done
    pids=()
    /usr/bin/python3 -c '
import json, sys
done = [json.loads(l) for l in open(sys.argv[1]) if "\"event\":\"done\"" in l][-1]
print(done["samples_per_s"], sys.argv[2])' "$work/$name-w0.out" "${acked:-0}"
}

ratios=()
for i in $(seq "$rounds"); do
    read -r a _ <<<"$(run "off$i" off)"
    read -r b acked <<<"$(run "on$i" on)"
    ratio=$(/usr/bin/python3 -c "print(round($b / $a, 4))")
    ratios+=("$ratio")
    echo "{\"round\":$i,\"model\":\"$model\",\"samples_per_s_without\":$a,\"samples_per_s_with\":$b,\"ratio\":$ratio,\"replicas_acked_by_shard_0\":$acked}"
done
/usr/bin/python3 -c "import statistics,sys; r=[float(x) for x in sys.argv[1:]]; print('{\"bench\":\"replica_cost\",\"model\":\"$model\",\"every\":$every,\"median_ratio\":%s,\"ratios\":%s}' % (statistics.median(r), r))" "${ratios[@]}"
