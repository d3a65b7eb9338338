# A model that does not fit one worker's memory budget trains with
# pipeline_stages 2 (#20): a wide MLP (784-2048-2048-2048-10, 10.2 M
# parameters, deploy/examples/fashion-mlp-budget.conf). The budget is set
# between the two estimates this build gives (a data-parallel worker's
# and the larger stage's, read from their refusals under a 1 MB budget, so
# the test holds under the sanitizers too): one data-parallel worker is
# then refused before it allocates (exit not 0, the message names the
# budget, its parts and pipeline_stages), and P = 2 trains under the same
# budget: every stage's estimate and measured peak RSS are below it, and
# the model equals the data-parallel job's (no budget) within 1e-5 after
# 20 steps. A sparse model refuses the option.
. "$(dirname "$0")/lib.sh"
run() { # name workers [--set ...]
    local name=$1 n=$2; shift 2
    timeout 120 "$BIN/ps-launch" --servers 1 --workers "$n" \
        --config "$SRC/deploy/examples/fashion-mlp-budget.conf" --set max_steps=20 \
        --set progress_every_s=0 --set pipeline_timeout_ms=20000 "$@" \
        --save-model "$WORK/$name" >"$WORK/$name.out" 2>"$WORK/$name.log"
}
refused() { # name workers budget [--set ...]: must exit non-zero naming the budget
    local name=$1 n=$2 budget=$3 rc=0; shift 3
    run "$name" "$n" --set memory_budget_mb="$budget" "$@" || rc=$?
    [ $rc -ne 0 ] || fail "$name: trained (exit 0) over memory_budget_mb $budget"
    grep -qF "memory_budget_mb $budget: " "$WORK/$name.log" ||
        fail "$name: exit $rc without naming memory_budget_mb $budget: $(tail -2 "$WORK/$name.log")"
}
estimate() { # log: the largest 'would hold about X MB'
    grep -o 'would hold about [0-9.]* MB' "$1" | grep -o '[0-9.]*' | sort -n | tail -1
}
# a sparse model's rows are not sized: the option is refused for it, not ignored
rc=0
timeout 60 "$BIN/ps-worker" --config "$SRC/deploy/examples/click-lr.conf" \
    --servers tcp://127.0.0.1:1 --memory-budget-mb 100 >"$WORK/sparse.out" 2>&1 || rc=$?
[ $rc -ne 0 ] && grep -qF "memory_budget_mb: for the dense models" "$WORK/sparse.out" ||
    fail "a sparse model with memory_budget_mb (exit $rc): $(tail -1 "$WORK/sparse.out")"
refused dp_1mb 1 1 --set pipeline_stages=1
refused p2_1mb 2 1
e1=$(estimate "$WORK/dp_1mb.log") e2=$(estimate "$WORK/p2_1mb.log")
[ "$(grep -c 'would hold about' "$WORK/p2_1mb.log")" -ge 1 ] || fail "p2_1mb: no stage's estimate"
budget=$("$PY" -c "import sys; a, b = map(float, sys.argv[1:]); assert a - b > 20, (a, b); print(int((a + b) / 2))" "$e1" "$e2") ||
    fail "the larger stage's estimate ($e2 MB) is not well below the data-parallel worker's ($e1 MB)"
echo "estimates: data-parallel worker $e1 MB, larger stage of P=2 $e2 MB; budget $budget MB"
refused dp_budget 1 "$budget" --set pipeline_stages=1
for want in "this worker would hold about" "parameters 40.1 MB, their gradients 40.1 MB" \
    "pipeline_stages P would split"; do
    grep -qF -- "$want" "$WORK/dp_budget.log" ||
        fail "the refusal lacks '$want': $(grep -m1 memory_budget "$WORK/dp_budget.log")"
done
run dp 1 --set pipeline_stages=1 --set memory_budget_mb=0 || fail "dp: ps-launch exited $?"
run p2 2 --set memory_budget_mb="$budget" ||
    fail "p2 under memory_budget_mb $budget: exit $?: $(grep -m1 -i error "$WORK/p2.log")"
"$PY" - "$WORK" "$budget" <<'PYEOF' || fail "a stage is over the budget or the models differ"
import json, re, sys, numpy as np
w, budget = sys.argv[1], float(sys.argv[2])
log = open(f"{w}/p2.log").read()
est = [float(x) for x in re.findall(r"memory estimate ([0-9.]+) MB within memory_budget_mb", log)]
rss = [float(x) for x in re.findall(r"peak RSS ([0-9.]+) MB", log)]
print(f"budget {budget} MB; the stages' estimates {est} MB; their peak RSS {rss} MB")
assert len(est) == 2 and len(rss) == 2, (est, rss)
assert max(rss) < budget and max(est) <= budget, (est, rss)
def load(run):
    meta = json.load(open(f"{w}/{run}/model.json"))
    assert meta["steps"] == 20, meta["steps"]
    return {t["name"]: np.load(f"{w}/{run}/{t['file']}") for t in meta["tables"]}
a, b = load("p2"), load("dp")
assert a.keys() == b.keys(), (sorted(a), sorted(b))
d = max(float(np.abs(a[n] - b[n]).max()) for n in a)
print(f"p2 vs dp: max abs difference {d:.3g}")
assert d <= 1e-5, d
PYEOF
pass "pipeline_budget: 10.2 M parameters refused at P=1 under $budget MB, trained at P=2 within it, exact"
