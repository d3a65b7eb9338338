# Deadlines and retries: an idle server stops at once on SIGTERM; a worker
# whose server dies (and is not restarted) ends with a clear error within
# server_timeout_ms; 3 workers on 1000 samples with batch 64 (uneven split)
# finish; requests retried across a stalled (SIGSTOPped) server are applied
# once: the model equals an undisturbed run's, and each resend is logged; a
# worker with no server says what it waits for, every 5 s.
. "$(dirname "$0")/lib.sh"

# 1. idle server, SIGTERM
start_server idle 0 1
kill -TERM "$PID_idle"
start=$SECONDS
wait "$PID_idle" || fail "idle server exited $? on SIGTERM"
check "$SECONDS - $start <= 2"
grep -q "shutdown: signal 15" "$WORK/idle.log" || fail "no shutdown line"
pass "idle server: SIGTERM -> exit 0 in $((SECONDS - start)) s"

# 2. the server dies under a running worker
start_server lone 0 1
"$BIN/ps-worker" --servers "$EP_lone" $(fashion_flags) --model mlp --hidden 256,128 \
    --epochs 5 --eval_every_steps 50 --server_timeout_ms 2000 --heartbeat_ms 200 \
    >"$WORK/orphan.out" 2>"$WORK/orphan.log" &
wpid=$!
STARTED_PIDS+=("$wpid")
wait_for "$WORK/orphan.out" '"event":"eval"' 60
kill -KILL "$PID_lone"
start=$SECONDS
rc=0
wait "$wpid" || rc=$?
check "$rc == 69"
check "$SECONDS - $start <= 2 + 4"
grep -q "shard silent for [0-9]* ms (no heartbeat replies)" "$WORK/orphan.log" || fail "no clear message"
pass "server killed under a worker: exit $rc after $((SECONDS - start)) s: $(grep -o "shard 0 .*" "$WORK/orphan.log" | head -1 | cut -c1-150)"

# 3. uneven partitions: 1000 samples, 3 workers, batch 64
"$BIN/ps-datagen" --kind binary --rows 1000 --test_rows 500 --out "$WORK/u.csv" \
    --test_out "$WORK/ut.csv" >/dev/null
timeout -k 10 120 "$BIN/ps-launch" --servers 2 --workers 3 \
    --config "$SRC/deploy/examples/logistic-regression.conf" --set batch_size=64 \
    --set train_data="$WORK/u.csv" --set test_data="$WORK/ut.csv" \
    >"$WORK/uneven.out" 2>"$WORK/uneven.log" || fail "uneven job exited $?"
check "$(json "$WORK/uneven.out" steps) == 5 * 6"
pass "3 workers x batch 64 on 1000 samples: $(json "$WORK/uneven.out" steps) steps, accuracy $(json "$WORK/uneven.out" test_accuracy)"

# 4. retries across a stalled server are applied once
run_pair() { # NAME [stall]
    start_server "$1" 0 1
    local ep_var="EP_$1" pid_var="PID_$1"
    "$BIN/ps-worker" --servers "${!ep_var}" $(fashion_flags) --model softmax --lr 0.1 \
        --max_steps 1000 --eval_every_steps 100 --request_timeout_ms 300 --request_retries 4 \
        --server_timeout_ms 0 --save_model "$WORK/$1.model" >"$WORK/$1.out" 2>"$WORK/$1.wlog" &
    local w=$!
    STARTED_PIDS+=("$w")
    if [ "${2:-}" = stall ]; then
        wait_for "$WORK/$1.out" '"event":"eval"' 60
        kill -STOP "${!pid_var}"
        sleep 1   # the stall itself is what is being tested: longer than the 300 ms deadline
        kill -CONT "${!pid_var}"
    fi
    wait "$w" || fail "$1: worker exited $?"
}
run_pair calm
run_pair stalled stall
"$PY" - "$WORK" <<'PYEOF' || fail "retried run differs"
import json, sys, numpy as np
w = sys.argv[1]
meta = json.load(open(f"{w}/calm.model/model.json"))
diff = max(float(np.abs(np.load(f"{w}/calm.model/{t['file']}") - np.load(f"{w}/stalled.model/{t['file']}")).max())
           for t in meta["tables"])
assert diff == 0.0, diff
PYEOF
grep -q "no reply from shard 0 .* resending (attempt 2 of 5)" "$WORK/stalled.wlog" ||
    fail "the resends were silent"
pass "server stalled 1 s under 300 ms deadlines with retries: same model as an undisturbed run; $(grep -c resending "$WORK/stalled.wlog") resends logged"

# 5. a worker whose server is not there says so every few seconds
port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$BIN/ps-worker" --servers "tcp://127.0.0.1:$port" $(fashion_flags) --model softmax --max_steps 10 \
    --request_timeout_ms 60000 >"$WORK/nobody.out" 2>"$WORK/nobody.log" &
nobody=$!
STARTED_PIDS+=("$nobody")
wait_for "$WORK/nobody.log" "shard 0 'tcp://127.0.0.1:$port': no reply to HELLO after .* s so far, sending HELLO again" 20
kill -TERM "$nobody"
pass "no server: $(grep -o "shard 0 'tcp.*sending HELLO again" "$WORK/nobody.log" | head -1)"
