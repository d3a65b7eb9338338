# The step timeline (trace_dir, worker/ps_trace.h): a pipeline job (P = 2,
# M = 4) writes one Chrome trace-event file per worker for the first
# trace_steps steps. Each must parse as JSON and show the schedule the
# trainer runs: per step, stage 0 runs its 4 forwards (micro-batches 0..3)
# before any backward, then 4 backwards, each after a wait for the stage
# after; stage 1 runs 4 forward+backward passes, each after a wait for the
# stage before; each stage pushes each of its slices once a step, as many
# as its log says it holds: stage 0 within its last backward, stage 1 only
# after it sent the last micro-batch's gradient back (964841b); every span
# lies inside its step. A
# data-parallel job of fewer steps than trace_steps still completes its
# file. tools/trace_summary.py sums each file's shares to 100%. A
# trace_dir that cannot be made stops the worker naming it; a sparse model
# refuses the option.
. "$(dirname "$0")/lib.sh"
job() { # name workers steps [--set ...]
    local name=$1 n=$2 steps=$3; shift 3
    timeout 120 "$BIN/ps-launch" --servers 1 --workers "$n" \
        --config "$SRC/deploy/examples/fashion-mlp.conf" --set max_steps="$steps" \
        --set eval_every=0 --set progress_every_s=0 --set test_data= --set test_labels= \
        --set trace_dir="$WORK/$name" "$@" >"$WORK/$name.out" 2>"$WORK/$name.log" ||
        fail "$name: ps-launch exited $?"
}
job pipe 2 8 --set pipeline_stages=2 --set micro_batches=4 --set batch_size=64 \
    --set trace_steps=5 --set pipeline_timeout_ms=20000
job dp 1 3 --set trace_steps=10
"$PY" - "$WORK" <<'PYEOF' || fail "the timelines do not show the steps as run"
import json, re, sys
w = sys.argv[1]

def load(path):
    ev = json.load(open(path))
    spans = [e for e in ev if e["ph"] == "X"]
    steps = sorted((e for e in spans if e["name"] == "step"), key=lambda e: e["ts"])
    inner = [[e for e in spans if e["name"] != "step" and s["ts"] - 1 <= e["ts"]
              and e["ts"] + e["dur"] <= s["ts"] + s["dur"] + 1] for s in steps]
    assert sum(map(len, inner)) == len(spans) - len(steps), f"{path}: a span outside its step"
    label = [e for e in ev if e["ph"] == "M"][0]["args"]["name"]
    return label, steps, [sorted(i, key=lambda e: e["ts"]) for i in inner]

def named(spans, name):
    return [e for e in spans if e["name"] == name]

tables = []
for stage in (0, 1):
    label, steps, inner = load(f"{w}/pipe/worker-{stage}.json")
    assert label == f"worker {stage} (replica 0, stage {stage} of 2)", label
    assert [s["args"]["clock"] for s in steps] == list(range(5)), (stage, steps)
    pushed = []
    for k, spans in enumerate(inner):
        if stage == 0:
            fw, bw = named(spans, "forward"), named(spans, "backward")
            assert [e["args"]["micro"] for e in fw] == [0, 1, 2, 3], (k, fw)
            assert [e["args"]["micro"] for e in bw] == [0, 1, 2, 3], (k, bw)
            assert fw[-1]["ts"] + fw[-1]["dur"] <= bw[0]["ts"] + 1, f"step {k}: GPipe order"
            waits = named(spans, "wait stage after")
        else:
            fb = named(spans, "forward+backward")
            assert [e["args"]["micro"] for e in fb] == [0, 1, 2, 3], (k, fb)
            waits = named(spans, "wait stage before")
        assert [e["args"]["micro"] for e in waits] == [0, 1, 2, 3], (stage, k, waits)
        pushes = named(spans, "push")
        ids = [e["args"]["table"] for e in pushes]
        assert len(ids) == len(set(ids)) >= 2, (stage, k, ids)
        if stage == 0:  # each as soon as the last backward makes it
            last = bw[-1]
            assert all(last["ts"] <= e["ts"] and e["ts"] + e["dur"] <= last["ts"] + last["dur"] + 1
                       for e in pushes), f"step {k}: a push outside the last backward"
        else:  # after the last micro-batch's gradient went back to stage 0
            sent = [e for e in named(spans, "send") if e["args"]["micro"] == 3][0]
            assert all(e["ts"] >= sent["ts"] + sent["dur"] - 1 for e in pushes), \
                f"step {k}: stage 1 pushed before it sent micro-batch 3's gradient"
        pushed.append(sorted(ids))
    assert all(p == pushed[0] for p in pushed), (stage, pushed)
    tables.append(set(pushed[0]))
# each stage pushes every slice it holds on the wire, as its log says
log = open(f"{w}/pipe.log").read()
stage_of = dict(re.findall(r"ps-worker\[(\d+)\] I worker \d+ \(replica 0, stage (\d) of 2\)", log))
for pid, n in re.findall(r"ps-worker\[(\d+)\] I worker 0: job .* \((\d+) slices on the wire\)", log):
    assert len(tables[int(stage_of[pid])]) == int(n), (stage_of[pid], n, tables)
label, steps, inner = load(f"{w}/dp/worker-0.json")
assert label == "worker 0" and len(steps) == 3, (label, len(steps))
assert all(len(named(s, "forward+backward")) == 1 for s in inner), inner
print(f"pipeline: stage 0 pushes tables {sorted(tables[0])}, stage 1 {sorted(tables[1])}; "
      f"data parallel: 3 steps of 3 traced (trace_steps 10)")
PYEOF
"$PY" "$SRC/tools/trace_summary.py" --json "$WORK/pipe" "$WORK/dp" >"$WORK/summary.out" ||
    fail "trace_summary.py exited $?"
"$PY" - "$WORK/summary.out" <<'PYEOF' || fail "trace_summary.py: shares do not add up"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert len(rows) == 3, rows
for r in rows:
    total = sum(r["share"].values())
    assert abs(total - 1) < 0.005 and r["step_ms"] > 0, r
    assert all(v >= 0 for v in r["share"].values()), r
    print(f"{r['worker']}: {r['steps']} steps, shares sum to {total:.4f}")
PYEOF
mkdir "$WORK/empty"
for none in "$WORK/empty" "$WORK/missing.json"; do
    rc=0
    "$PY" "$SRC/tools/trace_summary.py" "$none" >"$WORK/none.out" 2>&1 || rc=$?
    [ $rc -eq 1 ] || fail "trace_summary.py on $none (no timeline) exited $rc"
done
# a directory that cannot be made: the worker stops before it trains, naming it
rc=0
timeout 60 "$BIN/ps-worker" --config "$SRC/deploy/examples/fashion-mlp.conf" \
    --servers tcp://127.0.0.1:1 --trace-dir "$WORK/missing/deeper" >"$WORK/bad.out" 2>&1 || rc=$?
[ $rc -ne 0 ] && grep -c "trace_dir '$WORK/missing/deeper': cannot create it" "$WORK/bad.out" >/dev/null ||
    fail "trace_dir that cannot be made (exit $rc): $(tail -1 "$WORK/bad.out")"
rc=0
timeout 60 "$BIN/ps-worker" --config "$SRC/deploy/examples/click-lr.conf" \
    --servers tcp://127.0.0.1:1 --trace-dir "$WORK/sparse" >"$WORK/sparse.out" 2>&1 || rc=$?
[ $rc -ne 0 ] && grep -c "trace_dir: for the dense models" "$WORK/sparse.out" >/dev/null ||
    fail "a sparse model with trace_dir (exit $rc): $(tail -1 "$WORK/sparse.out")"
pass "timelines: pipeline schedule, pushes and steps as run; summary; bad trace_dir refused"
