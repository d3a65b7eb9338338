# ps-tune runs real ps-launch jobs: grid enumerates exactly the product;
# random survives kill -9 and --resume finishes with exactly max_trials
# distinct trials; hyperband stops trials early and spends fewer epochs;
# the journal (JSON lines), summary and SVG report parse; a typo in the
# space is refused before any trial runs; a study whose every trial failed
# exits non-zero naming the first error; epochs come from the space file
# when --epochs is not given; the best trial's test metric is the mean of
# its executions.
. "$(dirname "$0")/lib.sh"
cd "$WORK"
TUNE_ANY_EPOCHS=("$BIN/ps-tune" --config "$SRC/deploy/examples/fashion-mlp.conf" --servers 1
      --workers 2 --set train_subset=3000 --set "train_data=$FM/train-images-idx3-ubyte.gz"
      --set "train_labels=$FM/train-labels-idx1-ubyte.gz")
TUNE=("${TUNE_ANY_EPOCHS[@]}" --epochs 1)

check_study() { # DIR TRIALS: valid journal/summary/SVG, TRIALS distinct ended trials
    "$PY" - "$1" "$2" <<'PYEOF' || fail "study $1 is not valid"
import json, sys, xml.etree.ElementTree as ET
d, want = sys.argv[1], int(sys.argv[2])
lines = [json.loads(l) for l in open(f"{d}/journal.jsonl")]
assert lines[0]["type"] == "study", lines[0]
trials = [l for l in lines if l["type"] == "trial"]
keys = [(t["trial_id"], t["execution"]) for t in trials]
assert len(keys) == len(set(keys)), f"a trial ran twice: {keys}"
assert len({t["trial_id"] for t in trials}) == want, f"{len(trials)} trials, want {want}"
assert all(t["status"] in ("finished", "stopped", "failed") for t in trials)
summary = json.load(open(f"{d}/summary.json"))
assert summary["trials"] == want and summary["best_trial"] >= 0, summary
root = ET.parse(f"{d}/report.svg").getroot()
assert root.tag == "{http://www.w3.org/2000/svg}svg", root.tag
assert len(root.findall(".//{http://www.w3.org/2000/svg}circle")) == sum(t["status"] != "failed" for t in trials)
PYEOF
}

# grid: 2 x 2 = 4 points, each exactly once
cat > grid.space <<'SPACE'
lr      choice(0.003, 0.01)
hidden  int(16, 32, 16)
SPACE
"${TUNE[@]}" --space grid.space --study grid --strategy grid > grid.out 2> grid.log || fail "grid study failed"
check_study grid 4
"$PY" - <<'PYEOF' || fail "grid is not the product"
import json
t = [json.loads(l) for l in open("grid/journal.jsonl")][1:]
got = sorted((x["params"]["lr"], x["params"]["hidden"]) for x in t)
assert got == sorted((lr, h) for lr in ("0.003", "0.01") for h in ("16", "32")), got
PYEOF
pass "grid: exactly the 4 points of 2 x 2; $(grep '^best:' grid.out)"

# random, killed with SIGKILL mid-study, then resumed
cat > random.space <<'SPACE'
lr      log(1e-3, 3e-2)
hidden  choice(16, 32, 64)
SPACE
"${TUNE[@]}" --space random.space --study rnd --strategy random --max-trials 6 > rnd1.out 2> rnd1.log &
tune=$!
STARTED_PIDS+=("$tune")
deadline=$((SECONDS + 120 * TIME_SCALE))
until [ "$(grep -c '"type":"trial"' rnd/journal.jsonl 2>/dev/null || true)" -ge 2 ]; do
    kill -0 "$tune" 2>/dev/null || fail "ps-tune ended before it could be killed"
    [ $SECONDS -lt $deadline ] || fail "no 2 trials in the journal after 120 s"
    sleep 0.05
done
kill -KILL "$tune"
wait "$tune" 2>/dev/null || true
before=$(grep -c '"type":"trial"' rnd/journal.jsonl)
check "$before < 6"
"${TUNE[@]}" --space random.space --study rnd --strategy random --max-trials 6 --resume \
    > rnd2.out 2> rnd2.log || fail "resume failed"
grep -q "($before replayed)" rnd2.log || fail "resume did not replay the journal"
check_study rnd 6
pass "random: killed after $before trials, --resume finished exactly 6 distinct trials"

# hyperband over the same space: early stopping, fewer epochs
"${TUNE[@]}" --space random.space --study hb --strategy hyperband --max-trials 9 > hb.out 2> hb.log ||
    fail "hyperband study failed"
check_study hb 9
"$PY" - <<'PYEOF' || fail "hyperband stopped nothing early"
import json
s = json.load(open("hb/summary.json"))
assert s["stopped"] > 0 and s["epochs_spent"] < s["epochs_if_all_full"], s
PYEOF
pass "hyperband: $(grep -o '[0-9]* stopped early' hb.out), $(grep -o '[0-9.]* epochs spent = [0-9]*%' hb.out)"

# a typo in the space: refused up front, naming the file and line
printf 'lr log(1e-3, 3e-2)\nhiden choice(16, 32)\n' > typo.space
rc=0
"${TUNE[@]}" --space typo.space --study typo > typo.out 2> typo.log || rc=$?
check "$rc == 64"
grep -q "typo.space:2: 'hiden' is not a ps-worker option" typo.log || fail "the typo is not named: $(cat typo.log)"
[ ! -e typo ] || fail "a study was started for a space with a typo"
pass "typo in the space: exit $rc before any trial: $(head -1 typo.log)"

# every trial fails: non-zero, naming the first error
rc=0
"${TUNE[@]}" --space random.space --study allfail --max-trials 2 \
    --set train_labels=/nonexistent/labels.gz > allfail.out 2> allfail.log || rc=$?
check "$rc != 0"
grep -q "no trial finished (trial 0: " allfail.log || fail "no 'no trial finished' line: $(tail -3 allfail.log)"
pass "every trial failed: exit $rc: $(grep -o 'no trial finished.\{0,80\}' allfail.log)"

# epochs from the space file; two executions averaged for the test metric
printf 'lr choice(0.01)\nepochs 2\n' > ep.space
"${TUNE_ANY_EPOCHS[@]}" --space ep.space --study ep --max-trials 1 --executions-per-trial 2 \
    > ep.out 2> ep.log || fail "epochs study failed"
grep -q "epochs 2 from the space file wins over the job config's 10" ep.log || fail "the epochs choice is not logged"
"$PY" - <<'PYEOF' || fail "epochs or the test mean are wrong"
import json
t = [json.loads(l) for l in open("ep/journal.jsonl")][1:]
assert len(t) == 2 and all(x["epochs_spent"] == 2 for x in t), t
s = json.load(open("ep/summary.json"))
mean = sum(x["test_metric"] for x in t) / 2
assert abs(s["best_test_accuracy"] - mean) < 1e-9, (s, mean)
print(f"test accuracy of the two executions {[x['test_metric'] for x in t]}, reported {s['best_test_accuracy']}")
PYEOF
pass "epochs 2 from the space file; best test metric = mean of 2 executions"

# hostile values: data files whose names hold & < > " ' and a space; the
# SVG still parses as XML, the journal as JSON, and each trial's value
# comes back byte for byte
mkdir -p "$WORK/data"
a="$WORK/data/a&b<c>'q\" one.csv"; b="$WORK/data/x&amp;y\"].csv"
"$BIN/ps-datagen" --kind binary --rows 2000 --out "$a" --test_out "$WORK/data/test.csv" >/dev/null
cp "$a" "$b"
printf 'train_data choice(%s, %s)\n' "$a" "$b" > hostile.space
"$BIN/ps-tune" --config "$SRC/deploy/examples/logistic-regression.conf" --servers 1 --workers 1 \
    --epochs 1 --set "test_data=$WORK/data/test.csv" --space hostile.space --study hostile \
    --strategy grid > hostile.out 2> hostile.log || fail "hostile-values study failed: $(tail -3 hostile.log)"
"$PY" - "$a" "$b" <<'PYEOF' || fail "a hostile value broke the SVG or the journal"
import json, sys, xml.etree.ElementTree as ET
want = sorted(sys.argv[1:3])
t = [json.loads(l) for l in open("hostile/journal.jsonl")][1:]
got = sorted(x["params"]["train_data"] for x in t)
assert got == want, (got, want)
assert all(x["status"] == "finished" for x in t), t
root = ET.parse("hostile/report.svg").getroot()
titles = [e.text for e in root.iter("{http://www.w3.org/2000/svg}title")]
assert any(want[0] in (x or "") for x in titles), titles
json.load(open("hostile/summary.json"))
PYEOF
pass "values with & < > \" ' and spaces: journal, summary and SVG parse, values round-trip"
