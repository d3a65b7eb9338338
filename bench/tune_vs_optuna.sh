#!/usr/bin/env bash
# tune_vs_optuna.sh [BUILD_DIR] - ps-tune's random and hyperband studies
# against Optuna's RandomSampler (Debian's python3-optuna), same space (lr
# log-uniform in [1e-4, 1e-1], hidden width in {32, 64, 128, 256}), same
# budget (12 trials of at most 1 epoch), the same real jobs (ps-launch, 1
# server, 2 workers, Fashion-MNIST MLP on a 12,000-sample subset, 10%
# validation split). Prints one JSON line per study and the comparison.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
BIN=$PWD/$build/bin
FM=/usr/share/datasets/fashion-mnist
/usr/bin/python3 -c "import optuna" 2>/dev/null || {
    echo "needs Debian's python3-optuna: apt-get install python3-optuna" >&2; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/space" <<'SPACE'
lr      log(1e-4, 1e-1)
hidden  choice(32, 64, 128, 256)
SPACE
sets=(--set train_subset=12000)
for strategy in random hyperband; do
    "$BIN/ps-tune" --space "$work/space" --config deploy/examples/fashion-mlp.conf \
        --study "$work/$strategy" --strategy "$strategy" --max-trials 12 --epochs 1 \
        --servers 1 --workers 2 --seed "${SEED:-1}" "${sets[@]}" > "$work/$strategy.out" 2>"$work/$strategy.log"
    /usr/bin/python3 - "$work/$strategy/summary.json" <<'PYEOF'
import json, sys
s = json.load(open(sys.argv[1]))
print(json.dumps({"bench": "ps_tune_" + s["strategy"], "trials": s["trials"],
                  "epochs_spent": round(s["epochs_spent"], 2), "best_val_accuracy": s["best_metric"],
                  "best_params": s["best_params"], "wall_s": round(s["wall_s"], 1)}))
PYEOF
done | tee "$work/ours.jsonl"
/usr/bin/python3 bench/optuna_random.py "$BIN" deploy/examples/fashion-mlp.conf 12 "${SEED:-1}" \
    "${sets[@]}" | tee "$work/optuna.jsonl"
/usr/bin/python3 - "$work/ours.jsonl" "$work/optuna.jsonl" <<'PYEOF'
import json, sys
ours = {r["bench"]: r for r in map(json.loads, open(sys.argv[1]))}
opt = json.loads(open(sys.argv[2]).read())
r, h = ours["ps_tune_random"], ours["ps_tune_hyperband"]
print(json.dumps({
    "random_minus_optuna_points": round(100 * (r["best_val_accuracy"] - opt["best_val_accuracy"]), 2),
    "hyperband_minus_random_points": round(100 * (h["best_val_accuracy"] - r["best_val_accuracy"]), 2),
    "hyperband_epochs_fraction_of_random": round(h["epochs_spent"] / r["epochs_spent"], 3)}))
PYEOF
