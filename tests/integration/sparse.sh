# Sparse logistic regression (hashed features, FTRL) by 2 workers against 4
# shards on click-like data from a known model: test AUC within 0.01 of the
# true model's own AUC under BSP and under ASP; the keys spread evenly over
# the shards; a malformed LIBSVM line is named by file:line.
. "$(dirname "$0")/lib.sh"
cd "$WORK"
"$BIN/ps-clickgen" --rows 1000000 --test_rows 50000 --out train.svm --test_out test.svm \
    --truth truth.json > gen.log || fail "ps-clickgen failed"
truth=$("$PY" -c "import json; print(json.load(open('truth.json'))['test_auc'])")

for mode in bsp asp; do
    staleness=$([ $mode = bsp ] && echo 0 || echo -1)
    "$BIN/ps-launch" --servers 4 --workers 2 --config "$SRC/deploy/examples/click-lr.conf" \
        --set train_data=train.svm --set test_data=test.svm --set max_staleness=$staleness \
        --set epochs=3 --job click-$mode > $mode.out 2> $mode.log &
    launch=$!
    STARTED_PIDS+=("$launch")
    if [ $mode = bsp ]; then
        # while it trains: every shard holds about a quarter of the keys
        wait_for $mode.out '"event":"epoch"' 120
        dir=$(grep -o "stats sockets [^ ]*/server-N.sock" $mode.log | head -1 |
              sed 's/stats sockets //; s|/server-N.sock||')
        for s in 0 1 2 3; do
            "$BIN/ps-ctl" -s "$dir/server-$s.sock" --json show tables > tables-$s.json ||
                fail "show tables on shard $s"
        done
        "$PY" - <<'PYEOF' || fail "keys not balanced over the shards"
import json
keys = [sum(t["keys_here"] for t in json.load(open(f"tables-{s}.json")) if t["kind"] == "sparse")
        for s in range(4)]
mean = sum(keys) / 4
assert mean > 1000 and all(abs(k - mean) <= 0.1 * mean for k in keys), keys
print("keys per shard:", keys)
PYEOF
    fi
    wait "$launch" || fail "$mode job failed"
    auc=$(json $mode.out test_auc)
    check "abs($auc - $truth) <= 0.01"
    pass "$mode: test AUC $auc vs the true model's $truth ($(json $mode.out wall_s) s)"
done

# A validation split for ps-tune: held out of training on every worker,
# scored by rank 0 (val_auc) at evals_per_epoch points and at the end.
head -n 100000 train.svm > small.svm
"$BIN/ps-launch" --servers 2 --workers 2 --config "$SRC/deploy/examples/click-lr.conf" \
    --set train_data=small.svm --set test_data=test.svm --set epochs=1 --set val_fraction=0.2 \
    --set evals_per_epoch=2 > val.out 2> val.log || fail "validation-split job failed"
"$PY" - <<'PYEOF' || fail "validation split"
import json
ev = [json.loads(l) for l in open("val.out")]
start = [e for e in ev if e["event"] == "start"][0]
assert start["train_samples"] + start["val_samples"] == 100000, start
assert abs(start["val_samples"] - 20000) < 600, start
evals = [e for e in ev if e["event"] == "eval"]
done = ev[-1]
assert len(evals) >= 1 and all(0.5 < e["val_auc"] <= 1 for e in evals), evals
assert done["event"] == "done" and 0.5 < done["val_auc"] <= 1, done
PYEOF
pass "validation split: $(grep -o '"val_samples":[0-9]*' val.out), final $(grep -o '"val_auc":[0-9.]*' val.out | tail -1)"

# A malformed line: the worker names file and line and exits 65.
head -n 1000 train.svm > bad.svm
echo "1 17:1 oops" >> bad.svm
start_server s0 0 1
rc=0
timeout -k 10 60 "$BIN/ps-worker" --servers "$EP_s0" --config "$SRC/deploy/examples/click-lr.conf" \
    --train_data bad.svm --test_data "" > bad.out 2> bad.log || rc=$?
check "$rc == 65"
grep -q "bad.svm:1001: feature 'oops' is not INDEX:VALUE" bad.log || fail "no file:line error: $(cat bad.log)"
pass "malformed LIBSVM: $(grep -o 'bad.svm:1001:.*' bad.log)"
