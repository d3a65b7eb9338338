# A worker given a bad data file exits non-zero naming the file, the server
# keeps serving the next worker; a worker with no server times out clearly.
. "$(dirname "$0")/lib.sh"
start_server s0 0 1
head -c 5000 "$FM/train-images-idx3-ubyte.gz" > "$WORK/truncated.gz"
rc=0
timeout -k 10 60 "$BIN/ps-worker" --servers "$EP_s0" $(fashion_flags) --model softmax \
    --train_data "$WORK/truncated.gz" >"$WORK/bad.out" 2>"$WORK/bad.log" || rc=$?
check "$rc == 65"
grep -q "truncated.gz" "$WORK/bad.log" || fail "error does not name the file"
pass "truncated IDX: exit $rc, $(grep -o "E .*" "$WORK/bad.log" | head -1)"

printf 'a,b,y\n1,2,3\n4,5\n' > "$WORK/ragged.csv"
rc=0
timeout -k 10 60 "$BIN/ps-worker" --servers "$EP_s0" --model linear --data_format csv \
    --train_data "$WORK/ragged.csv" >"$WORK/ragged.out" 2>"$WORK/ragged.log" || rc=$?
check "$rc == 65"
grep -q "ragged.csv:3:" "$WORK/ragged.log" || fail "error does not name file:line"
pass "ragged CSV: $(grep -o "ragged.csv:3:.*" "$WORK/ragged.log")"

timeout -k 10 120 "$BIN/ps-worker" --servers "$EP_s0" $(fashion_flags) --model softmax --lr 0.1 \
    --max_steps 100 --job after-errors >"$WORK/good.out" 2>"$WORK/good.log" \
    || fail "server stopped serving after bad workers"
check "$(json "$WORK/good.out" test_accuracy) > 0.6"
kill -0 "$PID_s0" || fail "server died"
pass "server still serves: $(json "$WORK/good.out" steps) steps"

# Wrong shard count: the worker lists 2 servers but the server says 1 of 1.
rc=0
timeout -k 10 60 "$BIN/ps-worker" --servers "$EP_s0,$EP_s0" $(fashion_flags) --model softmax \
    --request_timeout_ms 5000 >"$WORK/mismatch.out" 2>"$WORK/mismatch.log" || rc=$?
check "$rc != 0"
grep -q "is shard 0 of 1, but worker 0 lists it as shard 0 of 2" "$WORK/mismatch.log" || fail "no shard mismatch message"
pass "shard list mismatch refused"

# No server at all: a clear timeout within the deadline, not a hang.
port=$("$PY" -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
rc=0
start=$SECONDS
timeout -k 10 60 "$BIN/ps-worker" --servers "tcp://127.0.0.1:$port" $(fashion_flags) --model softmax \
    --request_timeout_ms 1000 >"$WORK/noserver.out" 2>"$WORK/noserver.log" || rc=$?
check "$rc == 69"
grep -q "no reply to HELLO after 1000 ms" "$WORK/noserver.log" || fail "timeout message missing"
pass "no server: exit $rc after $((SECONDS - start)) s: $(grep -o "shard 0.*" "$WORK/noserver.log")"
