# A pipeline stage killed -9 mid-job (#20): its peer's wait for it ends at
# pipeline_timeout_ms with an error naming the stage and the rank it
# waited for, the job fails (ps-launch exits non-zero) within a deadline,
# and no model is saved. Never a hang. Before the kill, ps-ctl show
# workers lists replica 0 of each stage (job launch.stage<s>, rank =
# replica), with the worker process's rank and its stage.
# A shard killed -9 mid-job and restarted (ps-launch --restart-servers):
# the stages agree where to resume (a sync round: the lowest clock any
# stage's job recovers to, every stage's job rolled back there), the job
# finishes and its model equals an uninterrupted run's, bit for bit. The
# same when a stage is stopped past the heartbeat timeout (declared dead)
# and continued. And a shard killed after every stage's last step, before
# their end barrier, that comes back at an older checkpoint (810 steps,
# checkpoints every 20: at 800): the barrier finds it and the stages
# replay the last 10 steps, same model.
. "$(dirname "$0")/lib.sh"
TIMEOUT_MS=3000
"$BIN/ps-launch" --servers 1 --workers 2 --config "$SRC/deploy/examples/fashion-mlp.conf" \
    --set pipeline_stages=2 --set max_steps=100000 --set eval_every=0 --set test_data= \
    --set test_labels= --set progress_every_s=1 --set pipeline_timeout_ms=$TIMEOUT_MS \
    --timeout 120 --save-model "$WORK/kill.model" >"$WORK/kill.out" 2>"$WORK/kill.log" &
LAUNCH_PID=$!
STARTED_PIDS+=("$LAUNCH_PID")
wait_for "$WORK/kill.log" "worker 0: epoch 1 step" 60
victim=$(grep -o "ps-worker\[[0-9]*\] I worker 1 (replica 0, stage 1 of 2)" "$WORK/kill.log" |
    head -1 | grep -o '\[[0-9]*\]' | tr -d '[]')
[ -n "$victim" ] || fail "no pid for the stage 1 worker"
# the servers list each stage as its job, each replica as its rank
sock=$(grep -o "stats sockets [^ ]*/server-N.sock" "$WORK/kill.log" | head -1 |
    sed 's/stats sockets //; s/server-N/server-0/')
# (the last two columns: the worker process's rank in the world, its stage)
wait_stats "$sock" workers '^launch\.stage0 +0 .* 0 +0/2 *$' 10 "$WORK/workers.txt"
wait_stats "$sock" workers '^launch\.stage1 +0 .* 1 +1/2 *$' 10 "$WORK/workers.txt"
kill -KILL "$victim"
killed_at=$SECONDS
rc=0
wait "$LAUNCH_PID" || rc=$?
took=$((SECONDS - killed_at))
check "$rc != 0"
grep -q "worker 0 (replica 0, stage 0): .* the stage after stage 1 (rank 1, " "$WORK/kill.log" ||
    fail "the error does not name stage 1 and rank 1"
check "$took <= $TIMEOUT_MS / 1000 + 15"
[ ! -e "$WORK/kill.model/model.json" ] || fail "a model was saved without stage 1"
pass "kill -9 of stage 1: ps-launch exit $rc after ${took} s: $(grep -o 'worker 0 (replica 0, stage 0): [^;]*' "$WORK/kill.log" | head -1)"

# a shard killed -9 and restarted: every stage resumes where the others can
pipe_job() { # NAME [extra ps-launch args]
    local name=$1; shift
    "$BIN/ps-launch" --servers 2 --workers 2 --config "$SRC/deploy/examples/fashion-mlp.conf" \
        --set pipeline_stages=2 --set micro_batches=2 --set max_steps=810 --set eval_every=0 \
        --set test_data= --set test_labels= --set progress_every_s=1 --set heartbeat_ms=200 \
        --set pipeline_timeout_ms=$TIMEOUT_MS --server-set checkpoint_every=20 \
        --server-set heartbeat_timeout_ms=1500 --server-set lost_rank_timeout_ms=30000 \
        --timeout 200 --save-model "$WORK/$name.model" "$@" >"$WORK/$name.out" 2>"$WORK/$name.log" &
    LAUNCH_PID=$!
    STARTED_PIDS+=("$LAUNCH_PID")
}
# wait_clock LOG CLOCK: until shard 0 has stage 1's job at CLOCK or past it
wait_clock() {
    local deadline=$((SECONDS + 60 * TIME_SCALE)) sock="" clock=0
    until [ "${clock:-0}" -ge "$2" ]; do
        [ $SECONDS -lt $deadline ] || fail "stage 1 never reached clock $2 ($1)"
        sock=$(grep -o "stats sockets [^ ]*/server-N.sock" "$1" | head -1 |
            sed 's/stats sockets //; s/server-N/server-0/' || true)
        if [ -n "$sock" ]; then
            clock=$("$BIN/ps-ctl" -s "$sock" show workers 2>/dev/null |
                awk '$1 == "launch.stage1" {print $5}' | head -1 || true)
        fi
        sleep 0.05
    done
}
pipe_job plain
wait "$LAUNCH_PID" || fail "the uninterrupted pipeline job exited $?"

pipe_job shard --restart-servers yes --set trace_dir="$WORK/shard.trace" --set trace_steps=10000
wait_clock "$WORK/shard.log" 150
shard=$(grep -o "ps-server\[[0-9]*\] I ready: endpoint .* shard 0 of" "$WORK/shard.log" | head -1 |
    grep -o '\[[0-9]*\]' | tr -d '[]')
[ -n "$shard" ] || fail "no pid for shard 0"
kill -KILL "$shard"
wait "$LAUNCH_PID" || fail "the pipeline job whose shard was killed exited $?: $(grep ' E ' "$WORK/shard.log" | head -3)"
grep -q "stages resume at clock" "$WORK/shard.log" || fail "no stage said where the stages resume"
models_equal "$WORK/plain.model" "$WORK/shard.model" ||
    fail "the pipeline model after the shard's restart differs from the uninterrupted run's"
pass "kill -9 of shard 0 (restarted): $(grep -o 'the 2 stages resume at clock [0-9]*' "$WORK/shard.log" | head -1), same model"
# the timelines (trace_dir) of that job: the steps abandoned for the
# recovery and those replayed after it are steps too, every span inside one
"$PY" - "$WORK/shard.trace" <<'PYEOF' || fail "the timelines through the recovery do not nest in steps"
import json, sys
for stage in (0, 1):
    ev = json.load(open(f"{sys.argv[1]}/worker-{stage}.json"))
    spans = sorted((e for e in ev if e["ph"] == "X"), key=lambda e: (e["ts"], -e["dur"]))
    steps = [e for e in spans if e["name"] == "step"]
    ends, i = [s["ts"] + s["dur"] for s in steps], 0
    for e in spans:
        if e["name"] == "step":
            continue
        while i < len(steps) and ends[i] < e["ts"]:
            i += 1
        assert i < len(steps) and steps[i]["ts"] - 1 <= e["ts"] and e["ts"] + e["dur"] <= ends[i] + 1, \
            (stage, e)
    clocks = [s["args"]["clock"] for s in steps]
    assert len(steps) >= 810 and max(clocks) == 809, (stage, len(steps), max(clocks))
    print(f"stage {stage}: {len(steps)} steps traced for 810 clocks, "
          f"{len(clocks) - len(set(clocks))} of them again after the recovery")
PYEOF

# stage 1 stopped past the heartbeat timeout, then continued: declared dead, it rejoins
pipe_job stop
wait_clock "$WORK/stop.log" 150
victim=$(grep -o "ps-worker\[[0-9]*\] I worker 1 (replica 0, stage 1 of 2)" "$WORK/stop.log" |
    head -1 | grep -o '\[[0-9]*\]' | tr -d '[]')
[ -n "$victim" ] || fail "no pid for the stage 1 worker"
kill -STOP "$victim"
wait_for "$WORK/stop.log" "launch.stage1': worker 0 declared dead" 30
kill -CONT "$victim"
wait "$LAUNCH_PID" || fail "the pipeline job whose stage 1 was stopped exited $?: $(grep ' E ' "$WORK/stop.log" | head -3)"
models_equal "$WORK/plain.model" "$WORK/stop.model" ||
    fail "the pipeline model after stage 1 was declared dead differs from the uninterrupted run's"
pass "SIGSTOP/SIGCONT of stage 1 past the heartbeat timeout: $(grep -o 'the 2 stages resume at clock [0-9]*' "$WORK/stop.log" | head -1), same model"

# every stage past its last step, held before the end barrier; shard 0
# killed and restarted at its checkpoint of clock 800: the stages replay
export PS_FAILPOINTS=pipeline.before_barrier
pipe_job barrier --restart-servers yes
unset PS_FAILPOINTS
held=""
for r in 0 1; do
    wait_for "$WORK/barrier.log" "ps-worker\[[0-9]*\] I worker $r (replica 0, stage $r of 2)" 60
    pid=$(grep -o "ps-worker\[[0-9]*\] I worker $r (replica 0, stage $r of 2)" "$WORK/barrier.log" |
        head -1 | grep -o '\[[0-9]*\]' | tr -d '[]')
    wait_stopped "$pid" "stage $r (pipeline.before_barrier)"
    held="$held $pid"
done
shard=$(grep -o "ps-server\[[0-9]*\] I ready: endpoint .* shard 0 of" "$WORK/barrier.log" | head -1 |
    grep -o '\[[0-9]*\]' | tr -d '[]')
kill -KILL "$shard"
deadline=$((SECONDS + 60 * TIME_SCALE))
until [ "$(grep -c "I ready: endpoint .* shard 0 of" "$WORK/barrier.log")" -ge 2 ]; do
    [ $SECONDS -lt $deadline ] || fail "shard 0 was not restarted"
    sleep 0.05
done
for pid in $held; do kill -CONT "$pid"; done
wait "$LAUNCH_PID" || fail "the pipeline job whose shard went back before the barrier exited $?: $(grep ' E ' "$WORK/barrier.log" | head -3)"
grep -q "stages resume at clock 800" "$WORK/barrier.log" || fail "the stages did not replay from clock 800"
models_equal "$WORK/plain.model" "$WORK/barrier.model" ||
    fail "the pipeline model after the shard went back before the barrier differs"
pass "shard 0 killed after the last step, back at clock 800: the stages replayed the last 10 steps, same model"
