# Shards that crash, restart or come back wrong never give a silent wrong
# model (BSP, checkpoints every 20 clocks):
# 1. kill -9 shard 1 mid-run, ps-launch restarts it: the saved model equals
#    an uninterrupted run's (max abs difference 0);
# 2. the same in fp16 with a dynamic loss scale that changes during the run
#    (loss_scale_window 30): the scaler is restored and replayed, same model;
# 3. two crashes, the second after the first rollback: the files of the
#    undone history are gone, so the second rollback finds a common
#    checkpoint; same model;
# 4. a shard restarted with a wrong --shard is refused and, long past the
#    heartbeat timeout, has deleted nothing: restarted right, the job
#    finishes with the same model;
# 5. kill -9 and an immediate restart on the same port, three times, while
#    a checkpoint writer (19 MB: hidden 2048 with Adam state) is forked every
#    clock, so one is nearly always running: the port is free each time;
#    and a writer stopped mid-write ends with its server's kill -9;
# 6. ASP: a worker lost for good no longer freezes the job's clock, so the
#    checkpoints go on advancing.
# (Corrupt and truncated checkpoints: tests/unit/test_checkpoint.c.)
. "$(dirname "$0")/lib.sh"
CONF="$SRC/deploy/examples/fashion-mlp.conf"

run() { # NAME [extra ps-launch args]
    local name=$1; shift
    "$BIN/ps-launch" --servers 2 --workers 2 --config "$CONF" \
        --set hidden=128 --set max_steps=500 --set eval_every=0 --set eval_every_steps=100 \
        --set heartbeat_ms=200 --server-set checkpoint_every=20 --timeout 300 \
        --save-model "$WORK/$name" "$@" >"$WORK/$name.out" 2>"$WORK/$name.log" &
    LAUNCH_PID=$!
    STARTED_PIDS+=("$LAUNCH_PID")
}

shard_pid() { # LOG SHARD [NTH]: the pid of the NTH (default: last) start of that shard
    grep -o "ps-server\[[0-9]*\] I ready: endpoint .* shard $2 of 2" "$1" | tail -n "${3:-1}" |
        head -1 | grep -o '\[[0-9]*\]' | tr -d '[]'
}

same_model() { # REF NAME
    models_equal "$WORK/$1" "$WORK/$2" || fail "$2: the model differs from $1's"
}

kill_shard() { # LOG SHARD: kill -9 its current process
    local victim
    victim=$(shard_pid "$1" "$2")
    [ -n "$victim" ] || fail "no pid for shard $2"
    kill -KILL "$victim"
}

# 1. one crash
run plain
wait "$LAUNCH_PID" || fail "uninterrupted run exited $?"
run killed --restart-servers
wait_for "$WORK/killed.out" '"event":"eval"' 120
kill_shard "$WORK/killed.log" 1
wait_for "$WORK/killed.log" "restored from checkpoint at clock" 30
# the workers resume: with a rollback when the other shard got ahead of the
# restored checkpoint, without one when the kill landed on a checkpoint
wait_for "$WORK/killed.log" "worker [01]: rejoined at clock" 60
wait "$LAUNCH_PID" || fail "run with a killed shard exited $?"
same_model plain killed
pass "shard 1 killed and restarted: $(grep -o 'restored from checkpoint at clock [0-9]*' "$WORK/killed.log" | head -1), same model"

# 2. fp16 with a loss scale that changes
FP16=(--set precision=fp16 --set loss_scale=65536 --set loss_scale_window=30)
run fp16_plain "${FP16[@]}"
wait "$LAUNCH_PID" || fail "uninterrupted fp16 run exited $?"
check "$(json "$WORK/fp16_plain.out" skipped_steps) > 0"
run fp16_killed "${FP16[@]}" --restart-servers
wait_for "$WORK/fp16_killed.out" '"event":"eval"' 120
kill_shard "$WORK/fp16_killed.log" 0
wait_for "$WORK/fp16_killed.log" "worker [01]: rejoined at clock" 60
wait "$LAUNCH_PID" || fail "fp16 run with a killed shard exited $?"
same_model fp16_plain fp16_killed
pass "fp16, loss scale changing ($(json "$WORK/fp16_plain.out" skipped_steps) skipped steps), shard 0 killed: same model"

# 3. two crashes
run twice --restart-servers
wait_for "$WORK/twice.out" '"event":"eval"' 120
kill_shard "$WORK/twice.log" 1
wait_for "$WORK/twice.log" "worker [01]: rejoined at clock" 60
wait_for "$WORK/twice.out" '"steps":300' 120
kill_shard "$WORK/twice.log" 0
wait_for "$WORK/twice.log" "shard 0 of 2" 30
wait "$LAUNCH_PID" || fail "run with two shard crashes exited $?"
same_model plain twice
pass "two shard crashes: $(grep -c 'rejoined at clock' "$WORK/twice.log") rejoins, same model"

# 4. a shard restarted wrong, then right
start_server a 0 2 --state-dir "$WORK/state-a" --checkpoint-every 20 --heartbeat-timeout-ms 1000
start_server b 1 2 --state-dir "$WORK/state-b" --checkpoint-every 20 --heartbeat-timeout-ms 1000
port_b=${EP_b##*:}
worker() { # RANK TAG
    "$BIN/ps-worker" --config "$CONF" --servers "$EP_a,tcp://127.0.0.1:$port_b" --rank "$1" \
        --world 2 --hidden 128 --max_steps 500 --eval_every 0 --eval_every_steps 100 \
        --heartbeat_ms 200 --server_timeout_ms 0 --request_timeout_ms 20000 --job wrong \
        --save_model "$WORK/wrong.$2.$1" >"$WORK/wrong.$2.$1.out" 2>"$WORK/wrong.$2.$1.log" &
    STARTED_PIDS+=("$!")
    LAST_WORKER=$!
}
worker 0 first; w0=$LAST_WORKER
worker 1 first; w1=$LAST_WORKER
wait_for "$WORK/wrong.first.0.out" '"event":"eval"' 120
kill -KILL "$PID_b"
wait "$PID_b" 2>/dev/null || true
files_before=$(ls "$WORK/state-b/wrong" | wc -l)
check "$files_before > 0"
"$BIN/ps-server" --shard 0 --shards 2 --port "$port_b" --state-dir "$WORK/state-b" \
    --checkpoint-every 20 --heartbeat-timeout-ms 1000 2>"$WORK/bwrong.log" &
bad=$!
STARTED_PIDS+=("$bad")
# the workers refuse it, loudly
for p in $w0 $w1; do
    rc=0; wait "$p" || rc=$?
    check "$rc != 0"
done
grep -q "is shard 0 of 2, but" "$WORK/wrong.first.0.log" ||
    fail "worker 0 does not say the shard is the wrong one"
# the stimulus: five heartbeat timeouts of the wrong shard holding the job's files
"$PY" -c 'import time; time.sleep(5)'
kill -TERM "$bad"
wait "$bad" 2>/dev/null || true
check "$(ls "$WORK/state-b/wrong" | wc -l) >= $files_before"
start_server b2 1 2 --port "$port_b" --state-dir "$WORK/state-b" --checkpoint-every 20 \
    --heartbeat-timeout-ms 1000
worker 0 again; w0=$LAST_WORKER
worker 1 again; w1=$LAST_WORKER
for p in $w0 $w1; do wait "$p" || fail "restarted worker (pid $p) exited $?"; done
same_model plain wrong.again.0
pass "a shard restarted with a wrong --shard: the workers refused it, it deleted nothing; restarted right with the workers: same model"

# 5. immediate restarts on the same port while checkpoint writers run
start_server c 0 1 --state-dir "$WORK/state-c" --checkpoint-every 1
port_c=${EP_c##*:}
"$BIN/ps-worker" --config "$CONF" --servers "$EP_c" --hidden 2048 --max_steps 100000 \
    --eval_every 0 --heartbeat_ms 200 --server_timeout_ms 0 --request_timeout_ms 60000 \
    --job rebind >"$WORK/rebind.out" 2>"$WORK/rebind.log" &
rw=$!
STARTED_PIDS+=("$rw")
newest_ckpt() { # DIR: the newest checkpoint clock there (-1 if none)
    ls "$1" 2>/dev/null | sed -n 's/^ckpt-0*\([0-9][0-9]*\)\.psc$/\1/p' | sort -n | tail -1 | grep . || echo -1
}
wait_ckpt_past() { # CLOCK: until the worker trained past it (checkpoint files), 60 s
    local deadline=$((SECONDS + 60))
    until [ "$(newest_ckpt "$WORK/state-c/rebind")" -gt "$1" ]; do
        [ $SECONDS -lt $deadline ] || fail "no checkpoint past clock $1 after 60 s"
        sleep 0.05
    done
}
pid=$PID_c
at=0
for k in 1 2 3; do
    wait_ckpt_past $((at + 5))
    kill -KILL "$pid"
    wait "$pid" 2>/dev/null || true
    at=$(newest_ckpt "$WORK/state-c/rebind")
    start_server "c$k" 0 1 --port "$port_c" --state-dir "$WORK/state-c" --checkpoint-every 1
    pv="PID_c$k"; pid=${!pv}
done
wait_ckpt_past $((at + 5))
kill -0 "$rw" || fail "the worker did not survive the restarts"
pass "kill -9 and an immediate restart on port $port_c, three times, with a writer forked every clock"

# 5b. a checkpoint writer dies with its server: one caught and stopped
# mid-write (so it cannot simply finish) is gone soon after the server's
# kill -9
writer=""
deadline=$((SECONDS + 30))
while [ -z "$writer" ]; do
    [ $SECONDS -lt $deadline ] || fail "no checkpoint writer of shard c3 seen in 30 s"
    for k in $(children_of "$pid"); do
        kill -STOP "$k" 2>/dev/null || continue
        until st=$(proc_state "$k") && [ "$st" != R ] && [ "$st" != S ] && [ "$st" != D ]; do
            [ $SECONDS -lt $deadline ] || fail "writer $k not stopped 30 s after SIGSTOP"
            sleep 0.01
        done
        [ "$st" = T ] || continue # it had ended before the SIGSTOP
        writer=$k
        STARTED_PIDS+=("$k")
        break
    done
    [ -n "$writer" ] || sleep 0.01
done
kill -KILL "$pid"
wait "$pid" 2>/dev/null || true
wait_gone "$writer" "the checkpoint writer stopped mid-write, after its server's kill -9,"
kill -TERM "$rw"
pass "a checkpoint writer stopped mid-write ended with its server's kill -9"

# 6. ASP: the clock goes on without a lost worker. Worker 1 is lost, and
# declared dead, before worker 0 starts: worker 0's 3000 steps can take less
# than the heartbeat timeout, and a worker lost after its peer finished
# tests nothing.
start_server d 0 1 --state-dir "$WORK/state-d" --checkpoint-every 50 --heartbeat-timeout-ms 1000
asp_worker() {
    "$BIN/ps-worker" --config "$CONF" --servers "$EP_d" --rank "$1" --world 2 --hidden 128 \
        --max_steps 3000 --eval_every 0 --max_staleness -1 --heartbeat_ms 200 --job asp \
        >"$WORK/asp$1.out" 2>"$WORK/asp$1.log" &
    STARTED_PIDS+=("$!")
    eval "asp$1=$!"
}
asp_worker 1
wait_for "$WORK/d.log" "worker 1 joined" 60
kill -KILL "$asp1"
wait_for "$WORK/d.log" "worker 1 declared dead" 30
asp_worker 0
wait "$asp0" || fail "ASP worker 0 exited $?"
newest=$(ls "$WORK/state-d/asp" | sed 's/ckpt-0*\([0-9]*\)\.psc/\1/' | sort -n | tail -1)
check "${newest:-0} >= 2500"
pass "ASP, worker 1 lost: checkpoints went on to clock $newest"
