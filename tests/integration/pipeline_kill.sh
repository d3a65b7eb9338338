# A pipeline stage killed -9 mid-job (#20): its peer's wait for it ends at
# pipeline_timeout_ms with an error naming the stage and the rank it
# waited for, the job fails (ps-launch exits non-zero) within a deadline,
# and no model is saved. Never a hang. A shard killed -9 and restarted
# (ps-launch --restart-servers) makes the stages fail loudly too: a stage
# cannot rejoin alone yet. Before the kill, ps-ctl show workers
# lists replica 0 of each stage (job launch.stage<s>, rank = replica).
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
"$BIN/ps-ctl" -s "$sock" show workers >"$WORK/workers.txt" || fail "ps-ctl show workers failed"
grep -Eq '^launch\.stage0 +0 ' "$WORK/workers.txt" && grep -Eq '^launch\.stage1 +0 ' "$WORK/workers.txt" ||
    fail "show workers does not list stage 0 and stage 1 of replica 0: $(cat "$WORK/workers.txt")"
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

# a shard killed -9 and restarted: the stage that meets it says it cannot rejoin
"$BIN/ps-launch" --servers 2 --workers 2 --restart-servers yes \
    --config "$SRC/deploy/examples/fashion-mlp.conf" --set pipeline_stages=2 \
    --set max_steps=100000 --set eval_every=0 --set test_data= --set test_labels= \
    --set progress_every_s=1 --set pipeline_timeout_ms=$TIMEOUT_MS --server-set checkpoint_every=20 \
    --timeout 120 >"$WORK/shard.out" 2>"$WORK/shard.log" &
LAUNCH_PID=$!
STARTED_PIDS+=("$LAUNCH_PID")
wait_for "$WORK/shard.log" "worker 0: epoch 1 step" 60
shard=$(grep -o "ps-server\[[0-9]*\] I ready: endpoint .* shard 0 of" "$WORK/shard.log" | head -1 |
    grep -o '\[[0-9]*\]' | tr -d '[]')
[ -n "$shard" ] || fail "no pid for shard 0"
kill -KILL "$shard"
killed_at=$SECONDS
rc=0
wait "$LAUNCH_PID" || rc=$?
took=$((SECONDS - killed_at))
check "$rc != 0"
grep -q "a shard restarted .*a pipeline stage cannot rejoin alone yet" "$WORK/shard.log" ||
    fail "no stage said it cannot rejoin after the shard's restart"
check "$took <= $TIMEOUT_MS / 1000 + 15"
pass "kill -9 of shard 0 (restarted): ps-launch exit $rc after ${took} s: $(grep -o 'worker [0-9] (replica 0, stage [0-9]): a shard restarted' "$WORK/shard.log" | head -1)"
