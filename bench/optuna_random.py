#!/usr/bin/python3
"""Optuna's RandomSampler over the same space and budget as a ps-tune study,
each trial the same real job (ps-launch, same config, same validation split):
the baseline for ps-tune's search strategies (bench/tune_vs_optuna.sh).

usage: optuna_random.py BIN_DIR CONFIG TRIALS SEED [--set KEY=VALUE ...]
Prints one JSON line: best val_accuracy, its params, wall time."""
import json
import subprocess
import sys
import time

import optuna

bin_dir, config, n_trials, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
sets = sys.argv[5:]


def objective(trial):
    lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    hidden = trial.suggest_categorical("hidden", [32, 64, 128, 256])
    cmd = [f"{bin_dir}/ps-launch", "--servers", "1", "--workers", "2", "--config", config,
           "--job", f"optuna-{trial.number}", "--set", "epochs=1", "--set", "val_fraction=0.1",
           "--set", f"lr={lr}", "--set", f"hidden={hidden}"] + sets
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=3600).stdout
    done = [json.loads(l) for l in out.splitlines() if '"event":"done"' in l]
    if not done or "val_accuracy" not in done[-1]:
        raise RuntimeError(f"trial {trial.number} reported no val_accuracy")
    return done[-1]["val_accuracy"]


optuna.logging.set_verbosity(optuna.logging.WARNING)
t0 = time.time()
study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=seed))
study.optimize(objective, n_trials=n_trials)
print(json.dumps({"bench": "optuna_random", "trials": n_trials, "epochs_spent": n_trials,
                  "best_val_accuracy": round(study.best_value, 6), "best_params": study.best_params,
                  "wall_s": round(time.time() - t0, 1)}))
