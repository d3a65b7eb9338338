#!/usr/bin/env bash
# run_vs_torch.sh - Fashion-MNIST MLP 784-256-128-10, global batch 64, EPOCHS
# epochs, test set every 100 steps on rank 0 (times count from the start of
# training), on this one host, three ways per round, interleaved:
#   ps         ps-launch, 1 shard + 2 workers (BSP, one BLAS thread each:
#              what ps-launch picks on 2 cores)
#   torch_ddp  PyTorch DistributedDataParallel (gloo), 2 processes x 1 thread
#   torch_1p   PyTorch in one process, as many threads as cores (#18 target
#              3: a user with one machine could just do this)
# The recipe: adam (Adam lr 1e-3, the demo's) or sgd (SGD lr 0.01, momentum
# 0.9), constant rate. Prints per round and variant seconds to 85% test
# accuracy and seconds per epoch, then the medians and ps's ratio to each
# baseline (< 1: ps faster). Needs Debian's python3-torch.
# Usage: bench/run_vs_torch.sh [BUILD_DIR] [RECIPE] [ROUNDS] [EPOCHS]   (build adam 1 2)
set -euo pipefail
build=${1:-build}
recipe=${2:-adam}
rounds=${3:-1}
epochs=${4:-2}
py=/usr/bin/python3
"$py" -c "import torch" 2>/dev/null || { echo "# python3-torch not installed; skipped"; exit 0; }
case "$recipe" in
adam) ps_opt=(--set optimizer=adam --set lr=0.001) th_opt=(--optimizer adam --lr 0.001) ;;
sgd) ps_opt=(--set optimizer=momentum --set lr=0.01 --set momentum=0.9)
    th_opt=(--optimizer sgd --lr 0.01 --momentum 0.9) ;;
*) echo "run_vs_torch.sh: recipe '$recipe': adam or sgd" >&2; exit 2 ;;
esac
cores=$(nproc)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Debian's OpenBLAS falls back to slow generic kernels on some Intel CPUs
# (PyTorch here uses it for its sgemm); ps-worker picks its core itself
# (blas_core auto). The baselines get the core ps-worker picked, so that
# both sides run the same kernels: unset, torch_1p took 8.7 s an epoch on
# the Xeon, 3.7-4.8 s with it set.
"$build/bin/ps-launch" --servers 1 --workers 1 --config deploy/examples/fashion-mlp.conf \
    --set max_steps=1 --set eval_every=0 --set test_data= --set test_labels= >/dev/null 2>"$work/core.log" || true
core=$(grep -o "OpenBLAS core '[A-Za-z0-9]*'" "$work/core.log" | head -1 | cut -d"'" -f2 || true)
export OPENBLAS_CORETYPE=${TORCH_OPENBLAS_CORETYPE:-$core}
echo "# $recipe recipe, $rounds round(s), $epochs epochs, $cores cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); OpenBLAS core for torch: '${OPENBLAS_CORETYPE}' (ps-worker picked '$core')"
for r in $(seq "$rounds"); do
    # the order turns each round, so no variant always runs first
    order=(ps torch_ddp torch_1p)
    for ((k = 1; k < r; k++)); do order=("${order[@]:1}" "${order[0]}"); done
    for v in "${order[@]}"; do
        case $v in
        ps) "$build/bin/ps-launch" --servers 1 --workers 2 --config deploy/examples/fashion-mlp.conf \
                --set epochs=$epochs --set eval_every_steps=100 --set lr_schedule=constant "${ps_opt[@]}" \
                >"$work/$v.$r.out" 2>/dev/null ;;
        torch_ddp) OMP_NUM_THREADS=1 "$py" bench/torch_ddp.py --epochs $epochs --eval-every 100 \
                "${th_opt[@]}" >"$work/$v.$r.out" 2>/dev/null ;;
        torch_1p) OMP_NUM_THREADS=$cores "$py" bench/torch_ddp.py --epochs $epochs --eval-every 100 \
                --world 1 --threads "$cores" "${th_opt[@]}" >"$work/$v.$r.out" 2>/dev/null ;;
        esac
    done
done
"$py" - "$work" "$rounds" "$recipe" <<'PYEOF'
import json, statistics, sys
w, rounds, recipe = sys.argv[1], int(sys.argv[2]), sys.argv[3]
names = ["ps", "torch_ddp", "torch_1p"]
def events(v, r):
    return [json.loads(l) for l in open(f"{w}/{v}.{r}.out") if l.startswith("{")]
def to85(ev):
    for e in ev:
        if e.get("event") == "eval" and e["test_accuracy"] >= 0.85:
            return e["wall_s"]
    return None
def per_epoch(v, ev):
    if v == "ps":
        return [e["epoch_s"] for e in ev if e.get("event") == "epoch"]
    wall = [e["wall_s"] for e in ev if e.get("event") == "epoch"]
    return [b - a for a, b in zip([0] + wall, wall)]
res = {v: {"to85": [], "epoch": []} for v in names}
for r in range(1, rounds + 1):
    for v in names:
        ev = events(v, r)
        t, ep = to85(ev), per_epoch(v, ev)
        res[v]["to85"].append(t)
        res[v]["epoch"].append(sum(ep) / len(ep) if ep else None)
        print(f"round {r} {v:9s}: 85% after {t if t is None else round(t, 2)} s; "
              f"{[round(x, 2) for x in ep]} s per epoch")
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None
for metric in ("to85", "epoch"):
    m = {v: med(res[v][metric]) for v in names}
    out = {"bench": "vs_torch", "recipe": recipe, "rounds": rounds,
           "metric": "seconds_to_85pct" if metric == "to85" else "seconds_per_epoch",
           **{v: m[v] for v in names}}
    for b in ("torch_ddp", "torch_1p"):
        out["ratio_vs_" + b] = m["ps"] / m[b] if m["ps"] and m[b] else None
    print(json.dumps(out))
PYEOF
