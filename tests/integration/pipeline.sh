# Pipeline stages (#20) are exact: the MLP, the CNN and the GPT (dropout
# 0.1) trained 20 SGD steps with (D=1, P=2), (D=2, P=2) and P=3 (and a
# user's cut, M = 1, 2 and 3 micro-batches, CURVE between the stages, and
# pipeline_recompute, the forward recomputed in backward, on P=3) give
# the model of the data-parallel job with the same global batch (24; the
# GPT 8) and seed (it_pipeline: the MLP and the CNN; it_pipeline_gpt: the
# GPT): the exported tables agree to 1e-5 (NumPy), while another seed
# gives another model. Every stage's summary reports its replica, stage,
# busy time and bubble fraction; the CNN's balance cuts before flatten;
# bad pipelines (world, micro_batches, stage_layers) stop at startup.
. "$(dirname "$0")/lib.sh"
run() { # name config workers batch [--set ...]
    local name=$1 conf=$2 n=$3 b=$4; shift 4
    timeout 240 "$BIN/ps-launch" --servers 2 --workers "$n" \
        --config "$SRC/deploy/examples/$conf" --set optimizer=sgd --set lr=0.05 \
        --set lr_schedule=constant --set weight_decay=0 --set max_steps=20 \
        --set batch_size="$b" --set eval_every=0 --set eval_every_steps=0 \
        --set progress_every_s=0 --set test_data= --set test_labels= \
        --set pipeline_timeout_ms=20000 "$@" --save-model "$WORK/$name" \
        >"$WORK/$name.out" 2>"$WORK/$name.log" || fail "$name: ps-launch exited $?"
}
p() { echo --set pipeline_stages="$1"; }
SET=${PS_PIPELINE_SET:-dense} # dense: the MLP and the CNN; gpt: the GPT (it_pipeline_gpt)
if [ "$SET" = dense ]; then
    run mlp_dp1 fashion-mlp.conf 1 24
    run mlp_dp2 fashion-mlp.conf 2 12
    run mlp_p2 fashion-mlp.conf 2 24 $(p 2)
    run mlp_d2p2 fashion-mlp.conf 4 12 $(p 2)
    run mlp_p3 fashion-mlp.conf 3 24 $(p 3)
    run mlp_p2_user fashion-mlp.conf 2 24 $(p 2) --set stage_layers=3 --set micro_batches=3
    run mlp_p2_m1 fashion-mlp.conf 2 24 $(p 2) --set micro_batches=1
    run mlp_p2_seed fashion-mlp.conf 2 24 $(p 2) --set seed=2
    run mlp_p2_curve fashion-mlp.conf 2 24 $(p 2) --curve # the stages' links over CURVE
    run mlp_p3_recompute fashion-mlp.conf 3 24 $(p 3) --set pipeline_recompute=yes
    run cnn_dp1 fashion-cnn.conf 1 24
    run cnn_p2 fashion-cnn.conf 2 24 $(p 2)
    run cnn_d2p2 fashion-cnn-pipeline.conf 4 12 # the example config: P = 2
    run cnn_p3 fashion-cnn.conf 3 24 $(p 3)
    run cnn_p3_recompute fashion-cnn.conf 3 24 $(p 3) --set pipeline_recompute=yes
    # bad pipelines stop at startup, saying why (no servers needed)
    refused() { # MESSAGE ps-worker-args...
        local want=$1 rc=0; shift
        timeout 60 "$BIN/ps-worker" --config "$SRC/deploy/examples/fashion-mlp.conf" \
            --servers tcp://127.0.0.1:1 --test-data= --test-labels= --pipeline-dir "$WORK" "$@" \
            >"$WORK/refused.out" 2>&1 || rc=$?
        [ $rc -ne 0 ] && grep -qF -- "$want" "$WORK/refused.out" ||
            fail "ps-worker $* (exit $rc): no '$want' in: $(tail -2 "$WORK/refused.out")"
    }
    refused "the world of 3 workers must be a multiple of it" --world 3 --pipeline-stages 2
    refused "micro_batches 99: more than batch_size 32" --world 2 --pipeline-stages 2 \
        --micro-batches 99
    refused "stage 1 (layers 6..6) would own no parameters" --world 2 --pipeline-stages 2 \
        --stage-layers 6
    refused "stage_layers '2,3': needs 1 comma-separated" --world 2 --pipeline-stages 2 \
        --stage-layers 2,3
    refused "inside a residual" --world 2 --pipeline-stages 2 --model net --input 784 \
        --layers "dense(8) residual[ dense(8) relu ] dense(10) cross_entropy" --stage-layers 3
    grep -q "stage 1 of 2): layers 7..12 ('flatten'" "$WORK/cnn_p2.log" ||
        fail "the CNN's balance does not cut before flatten: $(grep -o 'stage 1 of 2).*' "$WORK/cnn_p2.log")"
else
    corpus="$WORK/corpus"
    mkdir -p "$corpus"
    head -c 80000 /usr/share/games/fortunes/fortunes > "$corpus/a" || fail "fortunes not installed"
    gpt=(--set train_data="$corpus" --set dropout=0.1 --set val_fraction=0 --set warmup_steps=0)
    run gpt_dp1 text-gpt.conf 1 8 "${gpt[@]}"
    run gpt_p2 text-gpt.conf 2 8 "${gpt[@]}" $(p 2)
    run gpt_d2p2 text-gpt.conf 4 4 "${gpt[@]}" $(p 2) --set micro_batches=2
    run gpt_p3 text-gpt.conf 3 8 "${gpt[@]}" $(p 3)
    run gpt_p3_recompute text-gpt.conf 3 8 "${gpt[@]}" $(p 3) --set pipeline_recompute=yes
    run gpt_p2_seed text-gpt.conf 2 8 "${gpt[@]}" $(p 2) --set seed=2
fi
"$PY" - "$WORK" <<'PYEOF' || fail "models differ"
import json, os, sys, numpy as np
w = sys.argv[1]
def load(run):
    meta = json.load(open(f"{w}/{run}/model.json"))
    assert meta["steps"] == 20, meta["steps"]
    return {t["name"]: np.load(f"{w}/{run}/{t['file']}") for t in meta["tables"]}
def diff(a, b):
    assert a.keys() == b.keys(), (sorted(a), sorted(b))
    return max(float(np.abs(a[n] - b[n]).max()) for n in a)
for ref, others, seed in (
        ("mlp_dp1", ["mlp_dp2", "mlp_p2", "mlp_d2p2", "mlp_p3", "mlp_p2_user", "mlp_p2_m1",
                     "mlp_p2_curve", "mlp_p3_recompute"],
         "mlp_p2_seed"),
        ("cnn_dp1", ["cnn_p2", "cnn_d2p2", "cnn_p3", "cnn_p3_recompute"], None),
        ("gpt_dp1", ["gpt_p2", "gpt_d2p2", "gpt_p3", "gpt_p3_recompute"], "gpt_p2_seed")):
    if not os.path.exists(f"{w}/{ref}"):
        continue  # the other set
    r = load(ref)
    for o in others:
        d = diff(load(o), r)
        print(f"{o} vs {ref}: max abs difference {d:.3g}")
        assert d <= 1e-5, f"{o} differs from {ref} by {d}"
    if seed:
        d = diff(load(seed), r)
        print(f"{seed} vs {ref}: max abs difference {d:.3g}")
        assert d > 1e-3, "another seed should give another model"
PYEOF
# every stage of the 2 x 2 job reports its place and its bubble
[ "$SET" = dense ] || { pass "pipeline: gpt 1x8 == P2 == 2x(P2, M=2) == P3 == P3 recomputing within 1e-5"; exit 0; }
"$PY" - "$WORK/cnn_d2p2.out" <<'PYEOF' || fail "the summary lacks the pipeline's figures"
import json, sys
done = [json.loads(l) for l in open(sys.argv[1]) if '"event":"done"' in l]
s = done[-1]
print("summary:", {k: s.get(k) for k in ("bubble_fraction", "stage_busy_ms", "samples")})
assert 0 < s["bubble_fraction"] < 1, s
assert len(s["stage_busy_ms"]) == 2 and min(s["stage_busy_ms"]) > 0, s
assert s["samples"] == 20 * 24, s
PYEOF
pass "pipeline: mlp 1x24 == 2x12 == P2 == 2x(P2) == P3 == P2 cut at 3 / M=3 == P2 M=1 == P3 recomputing, cnn 1x24 == P2 == 2x(P2) == P3 == P3 recomputing, within 1e-5"
