# BSP exactness of the example CNN and GPT, dropout included: N workers with
# per-worker batch b train the same model as one worker with batch N*b
# (20 SGD steps; the exported tables agree to 1e-5), while another seed
# (other init and other masks) gives another model.
. "$(dirname "$0")/lib.sh"
corpus="$WORK/corpus"
mkdir -p "$corpus"
head -c 80000 /usr/share/games/fortunes/fortunes > "$corpus/a" || fail "fortunes not installed"
run() { # name config servers workers batch [--set ...]
    local name=$1 conf=$2 k=$3 n=$4 b=$5; shift 5
    timeout 240 "$BIN/ps-launch" --servers "$k" --workers "$n" \
        --config "$SRC/deploy/examples/$conf" --set optimizer=sgd --set lr=0.05 \
        --set lr_schedule=constant --set warmup_steps=0 --set weight_decay=0 \
        --set max_steps=20 --set batch_size="$b" --set eval_every=0 --set eval_every_steps=0 \
        --set progress_every_s=0 "$@" --save-model "$WORK/$name" \
        >"$WORK/$name.out" 2>"$WORK/$name.log" || fail "$name: ps-launch exited $?"
}
# three cuts of the same global batches of 24 (the CNN has dropout(0.25));
# no test set: nothing to evaluate
cnn=(--set test_data= --set test_labels=)
run cnn1 fashion-cnn.conf 2 1 24 "${cnn[@]}"
run cnn3 fashion-cnn.conf 2 3 8 "${cnn[@]}"
run cnn4 fashion-cnn.conf 1 4 6 "${cnn[@]}"
run cnn_seed fashion-cnn.conf 2 3 8 "${cnn[@]}" --set seed=2
gpt=(--set train_data="$corpus" --set dropout=0.1 --set val_fraction=0.05)
run gpt1 text-gpt.conf 2 1 8 "${gpt[@]}"
run gpt2 text-gpt.conf 2 2 4 "${gpt[@]}"
run gpt_seed text-gpt.conf 2 2 4 "${gpt[@]}" --set seed=2
"$PY" - "$WORK" <<'PYEOF' || fail "models differ"
import json, sys, numpy as np
w = sys.argv[1]
def load(run):
    meta = json.load(open(f"{w}/{run}/model.json"))
    assert meta["steps"] == 20, meta["steps"]
    return {t["name"]: np.load(f"{w}/{run}/{t['file']}") for t in meta["tables"]}
def diff(a, b):
    assert a.keys() == b.keys()
    return max(float(np.abs(a[n] - b[n]).max()) for n in a)
for ref, others, seed in (("cnn1", ["cnn3", "cnn4"], "cnn_seed"), ("gpt1", ["gpt2"], "gpt_seed")):
    r = load(ref)
    for o in others:
        d = diff(load(o), r)
        print(f"{o} vs {ref}: max abs difference {d:.3g}")
        assert d <= 1e-5, f"{o} differs from {ref} by {d}"
    d = diff(load(seed), r)
    print(f"{seed} vs {ref}: max abs difference {d:.3g}")
    assert d > 1e-3, "another seed should give another model"
PYEOF
pass "BSP with dropout: cnn 1x24 == 3x8 == 4x6, gpt 1x8 == 2x4 within 1e-5"
