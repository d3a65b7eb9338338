# Workers that die or stall under BSP never give a silent wrong model:
# 1. kill -9 worker 2 and nothing restarts it: the job fails, naming worker 2,
#    once lost_rank_timeout_ms passes (it no longer finishes without it);
# 2. the same with ps-launch --restart-workers: the new process takes rank 2
#    back and the model equals an uninterrupted run's;
# 3. SIGSTOP worker 1 past the heartbeat timeout, SIGCONT: declared dead,
#    rejoins, same model;
# 4. SIGSTOP every worker past the timeout (silence is not the end of a
#    job): the shards keep the job, the workers rejoin, same model;
# 5. kill -9 a shard after the last step, once its final checkpoint is
#    written, while every worker stands between its final model and its
#    BYE (held there by the failpoint worker.before_bye: the window is a
#    few ms wide, and from outside the job used to end before the kill
#    landed), and restart it: every worker exits 0 within seconds (BYE is
#    bounded), ps-launch stops the restarted shard cleanly, same model.
. "$(dirname "$0")/lib.sh"
TIMEOUT_MS=2000
LOST_MS=3000

worker_pid() { # LOG RANK
    grep -o "ps-worker\[[0-9]*\] I worker $2 of" "$1" | head -1 | grep -o '[0-9]\+' | head -1
}
server_pid() { # LOG SHARD
    grep -o "ps-server\[[0-9]*\] I ready: endpoint .* shard $2 of" "$1" | head -1 |
        grep -o '\[[0-9]*\]' | tr -d '[]'
}

run_job() { # NAME [extra ps-launch args]
    local name=$1; shift
    "$BIN/ps-launch" --servers 2 --workers 3 --config "$SRC/deploy/examples/fashion-mlp.conf" \
        --set max_steps=400 --set eval_every=0 --set eval_every_steps=50 --set heartbeat_ms=200 \
        --set hidden=128 --server-set heartbeat_timeout_ms=$TIMEOUT_MS \
        --server-set lost_rank_timeout_ms=$LOST_MS --server-set checkpoint_every=25 \
        --timeout 200 --save-model "$WORK/$name.model" "$@" \
        >"$WORK/$name.out" 2>"$WORK/$name.log" &
    LAUNCH_PID=$!
    STARTED_PIDS+=("$LAUNCH_PID")
}

same_model() { # NAME: its saved model equals the uninterrupted run's, bit for bit
    models_equal "$WORK/plain.model" "$WORK/$1.model" ||
        fail "$1: the model differs from the uninterrupted run's"
}

run_job plain
wait "$LAUNCH_PID" || fail "uninterrupted run exited $?"

# 1. kill -9 worker 2, no restart
run_job kill
wait_for "$WORK/kill.out" '"event":"eval"' 60
victim=$(worker_pid "$WORK/kill.log" 2)
[ -n "$victim" ] || fail "no pid for worker 2"
kill -KILL "$victim"
killed_at=$SECONDS
rc=0
wait "$LAUNCH_PID" || rc=$?
took=$((SECONDS - killed_at))
check "$rc != 0"
grep -q "worker 2 of job 'launch' was lost" "$WORK/kill.log" || fail "the error does not name worker 2"
check "$took <= ($TIMEOUT_MS + $LOST_MS) / 1000 + 10"
[ ! -e "$WORK/kill.model/model.json" ] || fail "a model was saved without worker 2"
pass "kill -9 worker 2 (BSP, no restart): ps-launch exit $rc after ${took} s: $(grep -o "worker 2 of job 'launch' was lost[^:]*" "$WORK/kill.log" | head -1)"

# 2. kill -9 worker 2 with --restart-workers
run_job restart --restart-workers
wait_for "$WORK/restart.out" '"event":"eval"' 60
victim=$(worker_pid "$WORK/restart.log" 2)
kill -KILL "$victim"
wait "$LAUNCH_PID" || fail "job with a restarted worker exited $?"
check "$(json "$WORK/restart.out" worker_restarts) == 1"
check "$(json "$WORK/restart.out" lost_workers) == []"
same_model restart
pass "kill -9 worker 2, restarted: $(grep -o 'worker 2 rejoined from .* at clock [0-9]*' "$WORK/restart.log" | head -1), same model"

# 3. SIGSTOP worker 1 past the timeout, then SIGCONT
run_job stop
wait_for "$WORK/stop.out" '"event":"eval"' 60
victim=$(worker_pid "$WORK/stop.log" 1)
kill -STOP "$victim"
wait_for "$WORK/stop.log" "worker 1 declared dead" 30
kill -CONT "$victim"
wait_for "$WORK/stop.log" "worker 1: rejoined at clock" 30
wait "$LAUNCH_PID" || fail "job with a stopped worker exited $?"
check "$(json "$WORK/stop.out" lost_workers) == []"
same_model stop
pass "SIGSTOP/SIGCONT worker 1: declared dead, $(grep -o 'rejoined at clock [0-9]*' "$WORK/stop.log" | head -1), same model"

# 4. SIGSTOP every worker past the timeout
run_job silent
wait_for "$WORK/silent.out" '"event":"eval"' 60
victims="$(worker_pid "$WORK/silent.log" 0) $(worker_pid "$WORK/silent.log" 1) $(worker_pid "$WORK/silent.log" 2)"
for v in $victims; do kill -STOP "$v"; done
for r in 0 1 2; do wait_for "$WORK/silent.log" "worker $r declared dead" 30; done
for v in $victims; do kill -CONT "$v"; done
wait "$LAUNCH_PID" || fail "job whose workers were all silent exited $?"
if grep -q "dropped\|job ended" "$WORK/silent.log" | grep -v "said BYE"; then fail "a shard dropped the job"; fi
same_model silent
pass "every worker silent past the timeout: the job kept its state, same model"

# 5. a shard killed after the last step and restarted
export PS_FAILPOINTS=worker.before_bye
run_job final --restart-servers
unset PS_FAILPOINTS
held=""
for r in 0 1 2; do
    wait_for "$WORK/final.log" "worker $r of" 60
    pid=$(worker_pid "$WORK/final.log" $r)
    [ -n "$pid" ] || fail "no pid for worker $r"
    wait_stopped "$pid" "worker $r (worker.before_bye)"
    held="$held $pid"
done
wait_for "$WORK/final.log" "final checkpoint at clock 400 written" 60
victim=$(server_pid "$WORK/final.log" 1)
[ -n "$victim" ] || fail "no pid for shard 1"
kill -KILL "$victim"
killed_at=$SECONDS
for pid in $held; do kill -CONT "$pid"; done
wait "$LAUNCH_PID" || fail "job whose shard died after the last step exited $?"
took=$((SECONDS - killed_at))
check "$took <= 15"
same_model final
pass "shard 1 killed after the last step: job finished ${took} s later, same model"
