# Regression is regression: an MLP with loss mse on a CSV whose targets are
# whole numbers (like sklearn's diabetes target, 25..346) is trained as a
# regression with one output and reports test_mae, well below the error of
# predicting the mean, saying so in the log; `task regression` with a
# classifier model is refused, naming both.
. "$(dirname "$0")/lib.sh"
"$PY" - "$WORK" <<'PYEOF'
import sys, numpy as np
rng = np.random.default_rng(5)
def make(n, path):
    x = rng.normal(size=(n, 6))
    y = np.rint(150 + 40 * x[:, 0] - 25 * x[:, 1] + 15 * x[:, 2] * x[:, 3] + rng.normal(scale=5, size=n))
    y = np.clip(y, 25, 346)
    np.savetxt(path, np.column_stack([x, y]), delimiter=",", fmt="%.6g")
    return y
ytr = make(4000, f"{sys.argv[1]}/train.csv")
yte = make(1000, f"{sys.argv[1]}/test.csv")
open(f"{sys.argv[1]}/baseline", "w").write(str(float(np.abs(yte - ytr.mean()).mean())))
PYEOF
baseline=$(cat "$WORK/baseline")
common=(--data_format csv --train_data "$WORK/train.csv" --test_data "$WORK/test.csv"
        --label_column -1 --standardize yes --epochs 30 --batch_size 32 --optimizer adam --lr 0.01)

start_server s 0 1
"$BIN/ps-worker" --servers "$EP_s" --job reg --model mlp --hidden 32 --loss mse "${common[@]}" \
    >"$WORK/reg.out" 2>"$WORK/reg.log" || fail "regression job exited $?"
grep -q "training a regression" "$WORK/reg.log" || fail "the task choice is not logged"
mae=$(json "$WORK/reg.out" test_mae)
check "$mae < 0.5 * $baseline"
check "'test_accuracy' not in open('$WORK/reg.out').read().split('\"event\":\"done\"')[-1]"
pass "mlp + mse on whole-number targets: regression, test_mae $mae (predicting the mean: $baseline)"

rc=0
"$BIN/ps-worker" --servers "$EP_s" --job reg-bad --model softmax --task regression "${common[@]}" \
    >"$WORK/bad.out" 2>"$WORK/bad.log" || rc=$?
check "$rc != 0"
grep -q "task regression: model softmax is a classifier" "$WORK/bad.log" || fail "no clear refusal"
pass "task regression with model softmax: refused (exit $rc)"
