#!/usr/bin/env bash
# run_nets_vs_torch.sh - the example CNN and GPT jobs, ps against PyTorch
# DistributedDataParallel (gloo) on this machine, now:
#   ps:    ps-launch, 2 servers x 2 workers, deploy/examples/fashion-cnn.conf
#          or text-gpt.conf (BLAS 1 thread per worker);
#   torch: bench/torch_nets_ddp.py, 2 processes of 1 thread, the same model,
#          init (ps's initial tables), data order (ps's) and recipe.
# Runs alternate (ps, torch, ps, torch, ...) ROUNDS times so both see the
# same machine load. Prints JSON lines: per run, then the comparison
#   cnn: test accuracy after EPOCHS epochs (ps - torch, in points) and
#        seconds per epoch (medians, ps / torch);
#   gpt: validation loss after STEPS steps (ps / torch) and tokens per
#        second of training (medians, ps / torch; > 1: ps is faster).
# Both sides run the same OpenBLAS kernels (PyTorch's matrix products go
# through the system OpenBLAS; its convolutions are oneDNN's): ps-worker
# picks them at run time (blas_core auto, docs/operations.md) and PyTorch
# gets OPENBLAS_CORETYPE set to what the ps workers logged. Export
# OPENBLAS_CORETYPE to pin both.
# Usage: bench/run_nets_vs_torch.sh cnn|gpt [BUILD_DIR] [ROUNDS] [EPOCHS|STEPS]
set -euo pipefail
model=${1:?usage: run_nets_vs_torch.sh cnn|gpt [BUILD_DIR] [ROUNDS] [EPOCHS|STEPS]}
build=${2:-build}
rounds=${3:-1}
src=$(cd "$(dirname "$0")/.." && pwd)
py=/usr/bin/python3
"$py" -c "import torch" 2>/dev/null || { echo "# python3-torch not installed; skipped"; exit 0; }
[ -x "$build/bin/net_driver" ] || { echo "# $build/bin/net_driver missing (BUILD_TESTING)"; exit 1; }
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
case $model in
cnn) len=${4:-10}; ps_set=(--set epochs="$len"); th_set=(--epochs "$len") ;;
gpt) len=${4:-1500}; ps_set=(--set max_steps="$len" --set eval_every_steps=0); th_set=(--steps "$len") ;;
*) echo "usage: run_nets_vs_torch.sh cnn|gpt ..." >&2; exit 2 ;;
esac
conf=$src/deploy/examples/$([ "$model" = cnn ] && echo fashion-cnn.conf || echo text-gpt.conf)
for r in $(seq "$rounds"); do
    "$build/bin/ps-launch" --servers 2 --workers 2 --config "$conf" --set progress_every_s=0 \
        "${ps_set[@]}" >"$work/ps$r.out" 2>"$work/ps$r.log"
    core=$(sed -n "s/.*worker 0 of 2: OpenBLAS core '\([A-Za-z0-9]*\)'.*/\1/p" "$work/ps$r.log" | head -1)
    [ -n "$core" ] || { echo "no 'OpenBLAS core' line in the ps workers' log" >&2; exit 1; }
    OPENBLAS_CORETYPE=$core "$py" "$src/bench/torch_nets_ddp.py" "$model" --net-driver "$build/bin/net_driver" \
        "${th_set[@]}" >"$work/torch$r.out" 2>"$work/torch$r.log"
done
"$py" - "$work" "$model" "$rounds" "$len" "$(lscpu | sed -n 's/^Model name: *//p')" \
    "$core" <<'PYEOF'
import json, statistics, sys
w, model, rounds, length, cpu, core = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
def events(name):
    return [json.loads(l) for l in open(f"{w}/{name}") if l.startswith("{")]
runs = []
for r in range(1, rounds + 1):
    ps, th = events(f"ps{r}.out"), events(f"torch{r}.out")
    ps_done = [e for e in ps if e["event"] == "done"][-1]
    th_done = [e for e in th if e["event"] == "done"][-1]
    ps_epochs = [e for e in ps if e["event"] == "epoch"]
    if model == "cnn":
        th_epochs = [e for e in th if e["event"] == "epoch"]
        run = {"ps_test_accuracy": ps_done["test_accuracy"], "torch_test_accuracy": th_epochs[-1]["test_accuracy"],
               "ps_epoch_s": statistics.median(e["epoch_s"] for e in ps_epochs),
               "torch_epoch_s": statistics.median(e["epoch_s"] for e in th_epochs)}
    else:
        train_s = sum(e["epoch_s"] for e in ps_epochs)
        run = {"ps_val_loss": ps_done["val_loss"], "torch_val_loss": th_done["val_loss"],
               "ps_tokens_per_s": ps_done["steps"] * 16 * 128 / train_s,
               "torch_tokens_per_s": th_done["tokens_per_s"]}
    run["ps_peak_rss_mb"] = ps_done["peak_rss_bytes"] / 1e6
    runs.append(run)
    print(json.dumps({"bench": "nets_vs_torch", "model": model, "round": r, **run}))
med = lambda k: statistics.median(r[k] for r in runs)
if model == "cnn":
    out = {"metric": "test_accuracy_after_epochs", "epochs": length, "ps": med("ps_test_accuracy"),
           "baseline_value": med("torch_test_accuracy"),
           "difference_points": round(100 * (med("ps_test_accuracy") - med("torch_test_accuracy")), 2),
           "seconds_per_epoch": med("ps_epoch_s"), "baseline_seconds_per_epoch": med("torch_epoch_s"),
           "epoch_time_ratio": round(med("ps_epoch_s") / med("torch_epoch_s"), 3)}
else:
    out = {"metric": "val_loss_after_steps", "steps": length, "ps": med("ps_val_loss"),
           "baseline_value": med("torch_val_loss"), "ratio": round(med("ps_val_loss") / med("torch_val_loss"), 4),
           "tokens_per_s": med("ps_tokens_per_s"), "baseline_tokens_per_s": med("torch_tokens_per_s"),
           "speed_ratio": round(med("ps_tokens_per_s") / med("torch_tokens_per_s"), 3)}
print(json.dumps({"bench": "nets_vs_torch", "model": model, **out, "baseline": "torch_1.13_ddp_gloo_2proc",
                  "ps_peak_rss_mb": med("ps_peak_rss_mb"), "rounds": rounds, "cpu": cpu,
                  "openblas_coretype": core}))
PYEOF
