# The layer nets end to end, short: a few steps of the example CNN and GPT
# jobs (2 servers x 2 workers) and of the MLP, each exported as model.json +
# .npy and as ONNX. Checks the events carry each task's metrics and every
# worker's peak RSS, rebuilds all three from their exports in PyTorch and
# evaluates the ONNX files in NumPy (tests/python/test_export.py: the same
# logits as ps to 1e-4), and samples text from the GPT with ps-generate
# (seeded: same seed, same text).
. "$(dirname "$0")/lib.sh"
corpus="$WORK/corpus"
mkdir -p "$corpus"
# two files, read in name order; small, so the job starts fast
head -c 60000 /usr/share/games/fortunes/fortunes > "$corpus/a" || fail "fortunes not installed"
head -c 40000 /usr/share/games/fortunes/computers > "$corpus/b"
job() { # name config steps [--set ...]
    local name=$1 conf=$2 steps=$3; shift 3
    timeout 240 "$BIN/ps-launch" --servers 2 --workers 2 --config "$SRC/deploy/examples/$conf" \
        --set max_steps="$steps" --set eval_every_steps=0 --set progress_every_s=0 \
        --set export_onnx="$WORK/$name.onnx" --save-model "$WORK/$name" "$@" \
        >"$WORK/$name.out" 2>"$WORK/$name.log" || fail "$name: ps-launch exited $?"
}
job cnn fashion-cnn.conf 40
job gpt text-gpt.conf 12 --set train_data="$corpus" --set warmup_steps=2
job mlp fashion-mlp.conf 40
"$PY" - "$WORK" <<'PYEOF' || fail "events lack the task's metrics"
import json, math, sys
w = sys.argv[1]
def events(name):
    return [json.loads(l) for l in open(f"{w}/{name}.out") if l.startswith("{")]
for name, metrics in (("cnn", ["test_loss", "test_accuracy"]), ("mlp", ["test_loss", "test_accuracy"]),
                      ("gpt", ["val_loss", "val_accuracy", "val_bpb"])):
    ev = events(name)
    done = [e for e in ev if e["event"] == "done"][-1]
    epoch = [e for e in ev if e["event"] == "epoch"][-1]
    for m in metrics:
        assert m in done and m in epoch, (name, m, done, epoch)
    # the time the workers' steps were blocked on the servers: part of the epoch
    assert 0 < epoch["server_wait_s"] < epoch["epoch_s"], (name, epoch)
    assert done["peak_rss_bytes"] > 10e6, done
    print(f"{name}: {', '.join(f'{m} {done[m]:.4f}' for m in metrics)}; "
          f"largest worker peak RSS {done['peak_rss_bytes'] / 1e6:.1f} MB")
g = [e for e in events("gpt") if e["event"] == "epoch"][-1]
assert abs(g["val_bpb"] - g["val_loss"] / math.log(2)) < 1e-6, g
assert "test_mae" not in g and "test_bpb" not in g
c = [e for e in events("cnn") if e["event"] == "done"][-1]
assert c["test_accuracy"] > 0.3, c  # 40 steps of Adam: well above chance
PYEOF
for name in cnn gpt mlp; do
    grep -q "worker 1: peak RSS [0-9.]* MB" "$WORK/$name.log" || fail "$name: worker 1 logs no peak RSS"
done
rc=0
"$PY" "$SRC/tests/python/test_export.py" "$BIN/net_driver" "$WORK/mlp" "$WORK/mlp.onnx" \
    "$WORK/cnn" "$WORK/cnn.onnx" "$WORK/gpt" "$WORK/gpt.onnx" || rc=$?
[ $rc -eq 0 ] || [ $rc -eq 77 ] || fail "export round trips"
[ $rc -eq 0 ] || echo "export round trips skipped: python3-torch or python3-onnx missing (tools/setup.sh)"
gen() { "$BIN/ps-generate" --model "$WORK/gpt" --prompt "The " --length 64 "$@"; }
gen --seed 5 >"$WORK/g1" || fail "ps-generate exited $?"
gen --seed 5 >"$WORK/g2"
gen --seed 6 --top-k 5 >"$WORK/g3"
cmp -s "$WORK/g1" "$WORK/g2" || fail "the same seed gave other text"
! cmp -s "$WORK/g1" "$WORK/g3" || fail "another seed gave the same text"
[ "$(head -c 4 "$WORK/g1")" = "The " ] || fail "the output does not start with the prompt"
[ "$(wc -c < "$WORK/g1")" -eq 69 ] || fail "expected prompt + 64 bytes + newline"
"$BIN/ps-generate" --model "$WORK/cnn" 2>"$WORK/g.err" && fail "ps-generate took a classifier"
grep -q "is not a byte-level language model" "$WORK/g.err" || fail "no reason given for the CNN"
pass "cnn, gpt and mlp trained, exported, rebuilt (PyTorch, ONNX) and sampled"
