#!/usr/bin/env bash
# run_vs_torch.sh - time to 85% test accuracy on Fashion-MNIST, MLP
# 784-256-128-10, Adam lr 1e-3, global batch 64, 2 training processes with
# one thread each: ps (1 shard + 2 workers, BSP) against PyTorch
# DistributedDataParallel (gloo), both run here, now. Both evaluate the test
# set every 100 steps on rank 0; times count from the start of training.
# Needs Debian's python3-torch. Usage: bench/run_vs_torch.sh [BUILD_DIR]
set -euo pipefail
build=${1:-build}
py=/usr/bin/python3
"$py" -c "import torch" 2>/dev/null || { echo "# python3-torch not installed; skipped"; exit 0; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$build/bin/ps-launch" --servers 1 --workers 2 --config deploy/examples/fashion-mlp.conf \
    --set epochs=2 --set eval_every_steps=100 --set lr_schedule=constant \
    >"$work/ps.out" 2>/dev/null
OMP_NUM_THREADS=1 "$py" bench/torch_ddp.py --epochs 2 --eval-every 100 >"$work/torch.out" 2>/dev/null
"$py" - "$work" <<'PYEOF'
import json, sys
w = sys.argv[1]
def events(name):
    return [json.loads(l) for l in open(f"{w}/{name}.out") if l.startswith("{")]
def first_at(ev, target=0.85):
    for e in ev:
        if e.get("event") == "eval" and e["test_accuracy"] >= target:
            return e["wall_s"], e["steps"]
    return None, None
ps, th = events("ps"), events("torch")
ps_t, ps_s = first_at(ps)
th_t, th_s = first_at(th)
ps_epoch = [e["epoch_s"] for e in ps if e.get("event") == "epoch"]
th_wall = [e["wall_s"] for e in th if e.get("event") == "epoch"]
th_epoch = [b - a for a, b in zip([0] + th_wall, th_wall)]
print(json.dumps({"bench": "vs_torch", "metric": "seconds_to_85pct", "ps": ps_t, "ps_steps": ps_s,
                  "baseline": "torch_ddp_gloo", "baseline_value": th_t, "baseline_steps": th_s,
                  "ratio": (ps_t / th_t) if ps_t and th_t else None}))
print(json.dumps({"bench": "vs_torch", "metric": "seconds_per_epoch", "ps": ps_epoch,
                  "baseline": "torch_ddp_gloo", "baseline_value": th_epoch,
                  "ratio": sum(ps_epoch) / sum(th_epoch) if th_epoch else None}))
PYEOF
