#!/usr/bin/env bash
# run_torch_cnn.sh - the PyTorch CNN of examples/torch_fashion_cnn.py on
# Fashion-MNIST, 2 training processes with one thread each, batch 32 per
# process (global 64), Adam 2e-3 with a cosine schedule: through ps (2
# Python workers, psclient.pytorch, 1 shard, BSP; with the backward-hook
# overlap and without) against the very same script under PyTorch
# DistributedDataParallel (gloo). The runs are interleaved, round by round,
# the order turned each round, so every variant sees the same machine.
# Prints per run and then per variant (medians over the rounds):
# seconds per epoch of training (evaluation excluded) and training seconds
# to 90% test accuracy (evaluated by rank 0 every 300 steps and at each
# epoch's end), each with its ratio to DDP.
# Usage: bench/run_torch_cnn.sh [BUILD_DIR] [ROUNDS] [EPOCHS]
set -euo pipefail
# absolute: the workers are started by ps-launch, each in /bin/sh
build=$(cd "${1:-build}" && pwd)
rounds=${2:-2}
epochs=${3:-5}
py=/usr/bin/python3
"$py" -c "import torch" 2>/dev/null || { echo "# python3-torch not installed; skipped"; exit 0; }
src=$(cd "$(dirname "$0")/.." && pwd)
[ -x "$build/bin/ps-launch" ] || { echo "no $build/bin/ps-launch: build first" >&2; exit 1; }
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] ||
    { echo "# dataset-fashion-mnist not installed; skipped"; exit 0; }
ex="$src/examples/torch_fashion_cnn.py"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export PYTHONPATH="$src/python" PYTHONDONTWRITEBYTECODE=1 OMP_NUM_THREADS=1
export PS_CLIENT_LIB="$build/lib/libps_client.so.1"
args="--epochs $epochs --batch 32 --eval-every 300"

run() { # VARIANT ROUND
    local out="$work/$1.$2.out"
    case $1 in
    ps) "$build/bin/ps-launch" --servers 1 --workers 2 \
            --worker-command "$py $ex $args" >"$out" 2>"$work/$1.$2.log" ;;
    ps_no_overlap) "$build/bin/ps-launch" --servers 1 --workers 2 \
            --worker-command "$py $ex $args --no-overlap" >"$out" 2>"$work/$1.$2.log" ;;
    ddp) "$py" "$ex" $args --ddp 2 >"$out" 2>"$work/$1.$2.log" ;;
    esac
}

variants=(ps ddp ps_no_overlap)
for r in $(seq "$rounds"); do
    if [ $((r % 2)) -eq 1 ]; then order=("${variants[@]}"); else order=(ps_no_overlap ddp ps); fi
    for v in "${order[@]}"; do
        run "$v" "$r" || { echo "# $v round $r failed:"; tail -20 "$work/$v.$r.log"; exit 1; }
    done
done

"$py" - "$work" "$rounds" <<'PYEOF'
import json, statistics, sys
w, rounds = sys.argv[1], int(sys.argv[2])
def figures(v, r):
    ev = [json.loads(l) for l in open(f"{w}/{v}.{r}.out") if l.startswith('{"event": "eval"')]
    ends = [e["train_s"] for e in ev if float(e["epoch"]).is_integer()]
    per_epoch = [b - a for a, b in zip([0.0] + ends, ends)]
    to90 = next((e["train_s"] for e in ev if e["test_accuracy"] >= 0.90), None)
    return {"seconds_per_epoch": statistics.median(per_epoch) if per_epoch else None,
            "train_s_to_90pct": to90, "final_accuracy": ev[-1]["test_accuracy"] if ev else None}
res = {v: [figures(v, r) for r in range(1, rounds + 1)] for v in ("ps", "ps_no_overlap", "ddp")}
for v, runs in res.items():
    for r, f in enumerate(runs, 1):
        print(json.dumps({"bench": "torch_cnn", "variant": v, "round": r, **f}))
def med(v, k):
    xs = [f[k] for f in res[v] if f[k] is not None]
    return statistics.median(xs) if xs else None
for v in ("ps", "ps_no_overlap"):
    for k in ("seconds_per_epoch", "train_s_to_90pct"):
        a, b = med(v, k), med("ddp", k)
        print(json.dumps({"bench": "torch_cnn", "metric": k, "variant": v, "value": a,
                          "baseline": "torch_ddp_gloo", "baseline_value": b,
                          "ratio": a / b if a and b else None}))
PYEOF
