# Done-when: the shipped MLP config (784-256-128-10), 2 servers x 2 workers,
# reaches test accuracy >= 0.885 within 10 epochs; the exported model loads
# in NumPy and reproduces that accuracy.
. "$(dirname "$0")/lib.sh"
timeout -k 10 800 "$BIN/ps-launch" --servers 2 --workers 2 \
    --config "$SRC/deploy/examples/fashion-mlp.conf" --save-model "$WORK/model" \
    >"$WORK/out" 2>"$WORK/launch.log" || fail "ps-launch exited $?"
acc=$(json "$WORK/out" test_accuracy)
check "$acc >= 0.885"
check "$(json "$WORK/out" bytes_sent) > 0 and $(json "$WORK/out" bytes_received) > 0"
"$PY" - "$WORK/model" "$FM" "$acc" <<'PYEOF' || fail "exported model does not reproduce the accuracy"
import gzip, json, sys, numpy as np
d, fm, acc = sys.argv[1], sys.argv[2], float(sys.argv[3])
meta = json.load(open(f"{d}/model.json"))
t = {x["name"]: np.load(f"{d}/{x['file']}") for x in meta["tables"]}
assert t["dense1.W"].shape == (784, 256) and t["dense3.b"].shape == (10,)
x = np.frombuffer(gzip.open(f"{fm}/t10k-images-idx3-ubyte.gz").read()[16:], np.uint8)
x = x.reshape(-1, 784).astype(np.float32) / 255
y = np.frombuffer(gzip.open(f"{fm}/t10k-labels-idx1-ubyte.gz").read()[8:], np.uint8)
h = np.maximum(x @ t["dense1.W"] + t["dense1.b"], 0)
h = np.maximum(h @ t["dense2.W"] + t["dense2.b"], 0)
got = float(((h @ t["dense3.W"] + t["dense3.b"]).argmax(1) == y).mean())
print(f"numpy accuracy of the exported model {got:.4f} (worker said {acc:.4f})")
assert abs(got - acc) < 1e-3
PYEOF
grep '"event":"epoch"' "$WORK/out" | "$PY" -c '
import json, sys
for l in sys.stdin:
    e = json.loads(l)
    print("epoch %d: test accuracy %.4f, %.2f s, %.0f samples/s" % (e["epoch"], e["test_accuracy"], e["epoch_s"], e["samples_per_s"]))'
pass "mlp test accuracy $acc"

# Mixed precision: fp16 and bf16 runs of the same config and seed end within
# 0.5 accuracy points of the fp32 run, moving at most 0.55x its bytes.
for p in fp16 bf16; do
    timeout -k 10 800 "$BIN/ps-launch" --servers 2 --workers 2 \
        --config "$SRC/deploy/examples/fashion-mlp.conf" --set precision=$p \
        >"$WORK/$p.out" 2>"$WORK/$p.log" || fail "$p: ps-launch exited $?"
    pacc=$(json "$WORK/$p.out" test_accuracy)
    ratio=$("$PY" -c "print(($(json "$WORK/$p.out" bytes_sent) + $(json "$WORK/$p.out" bytes_received)) / ($(json "$WORK/out" bytes_sent) + $(json "$WORK/out" bytes_received)))")
    check "abs($pacc - $acc) <= 0.005"
    check "$ratio <= 0.55"
    pass "$p: test accuracy $pacc (fp32 $acc), bytes ratio $ratio, skipped steps $(json "$WORK/$p.out" skipped_steps)"
done
