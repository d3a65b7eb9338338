# Done-when: linear regression on a CSV data set converges to within 2% of
# the least-squares solution's test MAE (computed here with NumPy).
. "$(dirname "$0")/lib.sh"
"$BIN/ps-datagen" --kind regression --rows 20000 --test_rows 4000 --features 20 --seed 11 \
    --out "$WORK/train.csv" --test_out "$WORK/test.csv" > "$WORK/truth.json"
timeout -k 10 250 "$BIN/ps-launch" --servers 2 --workers 2 \
    --config "$SRC/deploy/examples/linear-regression.conf" \
    --set train_data="$WORK/train.csv" --set test_data="$WORK/test.csv" \
    >"$WORK/out" 2>"$WORK/launch.log" || fail "ps-launch exited $?"
mae=$(json "$WORK/out" test_mae)
ls_mae=$("$PY" - "$WORK" <<'PYEOF'
import sys, numpy as np
w = sys.argv[1]
tr = np.loadtxt(f"{w}/train.csv", delimiter=",", skiprows=1)
te = np.loadtxt(f"{w}/test.csv", delimiter=",", skiprows=1)
X = np.c_[tr[:, :-1], np.ones(len(tr))]
coef = np.linalg.lstsq(X, tr[:, -1], rcond=None)[0]
print(np.abs(np.c_[te[:, :-1], np.ones(len(te))] @ coef - te[:, -1]).mean())
PYEOF
)
check "$mae <= 1.02 * $ls_mae"
pass "linear regression test MAE $mae vs least squares $ls_mae"
