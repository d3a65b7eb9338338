# Workers that die or stall do not hang the job: kill -9 one of 3 workers
# mid-run and the others finish within the heartbeat timeout plus a few
# seconds, with the summary naming the lost worker; SIGSTOP a worker past the
# timeout, then SIGCONT: it is declared dead, rejoins, and the job finishes.
. "$(dirname "$0")/lib.sh"
TIMEOUT_MS=2000

worker_pid() { # LOG RANK
    grep -o "ps-worker\[[0-9]*\] I worker $2 of" "$1" | head -1 | grep -o '[0-9]\+' | head -1
}

run_job() { # NAME
    "$BIN/ps-launch" --servers 2 --workers 3 --config "$SRC/deploy/examples/fashion-mlp.conf" \
        --set epochs=2 --set eval_every_steps=50 --set heartbeat_ms=200 \
        --set hidden=128 --server-set heartbeat_timeout_ms=$TIMEOUT_MS --timeout 200 \
        >"$WORK/$1.out" 2>"$WORK/$1.log" &
    LAUNCH_PID=$!
    STARTED_PIDS+=("$LAUNCH_PID")
}

# 1. kill -9 worker 2 once training is under way
run_job kill
wait_for "$WORK/kill.out" '"event":"eval"' 60
victim=$(worker_pid "$WORK/kill.log" 2)
[ -n "$victim" ] || fail "no pid for worker 2"
kill -KILL "$victim"
killed_at=$SECONDS
wait_for "$WORK/kill.log" "worker 2 declared dead" 30
declared=$((SECONDS - killed_at))
wait "$LAUNCH_PID" || fail "job with a killed worker exited $?"
check "$declared <= $TIMEOUT_MS / 1000 + 3"
check "$(json "$WORK/kill.out" lost_workers) == [2]"
check "$(json "$WORK/kill.out" test_accuracy) > 0.8"
pass "kill -9 worker 2: declared dead after ~${declared} s, job finished, lost_workers [2], accuracy $(json "$WORK/kill.out" test_accuracy)"

# 2. SIGSTOP worker 1 past the timeout, then SIGCONT
run_job stop
wait_for "$WORK/stop.out" '"event":"eval"' 60
victim=$(worker_pid "$WORK/stop.log" 1)
kill -STOP "$victim"
wait_for "$WORK/stop.log" "worker 1 declared dead" 30
kill -CONT "$victim"
wait_for "$WORK/stop.log" "worker 1: rejoined at clock" 30
wait "$LAUNCH_PID" || fail "job with a stopped worker exited $?"
check "$(json "$WORK/stop.out" lost_workers) == []"
check "$(json "$WORK/stop.out" test_accuracy) > 0.8"
pass "SIGSTOP/SIGCONT worker 1: declared dead, $(grep -o 'rejoined at clock [0-9]*' "$WORK/stop.log" | head -1), accuracy $(json "$WORK/stop.out" test_accuracy)"

# 3. kill -9 worker 2 and restart it with the same command: it rejoins at
#    the job's clock and the job finishes with all three.
start_server a 0 2 --heartbeat_timeout_ms $TIMEOUT_MS
start_server b 1 2 --heartbeat_timeout_ms $TIMEOUT_MS
start_worker() { # RANK LOGNAME
    "$BIN/ps-worker" --config "$SRC/deploy/examples/fashion-mlp.conf" --servers "$EP_a,$EP_b" \
        --rank "$1" --world 3 --hidden 128 --epochs 2 --eval_every_steps 50 --heartbeat_ms 200 \
        >"$WORK/$2.out" 2>"$WORK/$2.log" &
    STARTED_PIDS+=("$!")
    LAST_WORKER=$!
}
start_worker 0 w0; w0=$LAST_WORKER
start_worker 1 w1; w1=$LAST_WORKER
start_worker 2 w2; w2=$LAST_WORKER
wait_for "$WORK/w0.out" '"event":"eval"' 60
kill -KILL "$w2"
wait "$w2" 2>/dev/null || true
start_worker 2 w2b; w2b=$LAST_WORKER
wait_for "$WORK/a.log" "worker 2 rejoined" 30
for p in $w0 $w1 $w2b; do wait "$p" || fail "worker (pid $p) exited $?"; done
check "$(json "$WORK/w2b.out" steps) == $(json "$WORK/w0.out" steps)"
check "$(json "$WORK/w0.out" test_accuracy) > 0.8"
pass "kill -9 worker 2 and restart it: $(grep -o 'worker 2 rejoined from .* at clock [0-9]*' "$WORK/a.log" | head -1), all finished at step $(json "$WORK/w0.out" steps)"
