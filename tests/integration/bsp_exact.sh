# BSP exactness: N workers with per-worker batch b train the same model as
# one worker with batch N*b (50 SGD steps, MLP, compared with NumPy).
. "$(dirname "$0")/lib.sh"
run() { # name servers workers batch [extra --set ...]
    local name=$1 k=$2 n=$3 b=$4; shift 4
    timeout -k 10 240 "$BIN/ps-launch" --servers "$k" --workers "$n" \
        --config "$SRC/deploy/examples/fashion-mlp.conf" \
        --set optimizer=sgd --set lr=0.05 --set max_steps=50 --set batch_size="$b" \
        --set eval_every=0 "$@" --save-model "$WORK/$name" \
        >"$WORK/$name.out" 2>"$WORK/$name.log" || fail "$name: ps-launch exited $?"
}
run one 2 1 64
run two 2 2 32
run four 1 4 16
run other_seed 2 2 32 --set seed=2
"$PY" - "$WORK" <<'PYEOF' || fail "models differ"
import json, sys, numpy as np
w = sys.argv[1]
meta = json.load(open(f"{w}/one/model.json"))
names = [t["name"] for t in meta["tables"]]
assert len(names) == 6, names
def load(run):
    return {n: np.load(f"{w}/{run}/{n}.npy") for n in names}
ref = load("one")
for t in meta["tables"]:
    assert list(ref[t["name"]].shape) == t["shape"], (t, ref[t["name"]].shape)
    assert ref[t["name"]].dtype == np.float32
for run in ("two", "four"):
    diff = max(float(np.abs(load(run)[n] - ref[n]).max()) for n in names)
    print(f"{run}: max abs difference {diff:.3g}")
    assert diff <= 1e-5, f"{run} differs from one by {diff}"
diff = max(float(np.abs(load("other_seed")[n] - ref[n]).max()) for n in names)
print(f"other seed: max abs difference {diff:.3g}")
assert diff > 1e-3, "a different seed should give a different model"
PYEOF
pass "BSP 1x64 == 2x32 == 4x16 within 1e-5"
