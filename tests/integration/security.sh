# CURVE and roles, end to end with the real binaries: an allowed worker
# trains; an unknown key, a plain-text client and a monitor key are each
# refused with a clear error on both sides; removing a key and sending
# SIGHUP locks out a worker that is already connected.
. "$(dirname "$0")/lib.sh"
cd "$WORK"
"$BIN/ps-keygen" server 2>/dev/null
for k in w0 w1; do "$BIN/ps-keygen" --role worker "$k" >> allow; done
"$BIN/ps-keygen" --role monitor mon >> allow
"$BIN/ps-keygen" --role admin adm >> allow
"$BIN/ps-keygen" stranger 2>/dev/null
test "$(stat -c %a server.secret)" = 600 || fail "secret key file is not mode 600"
start_server s0 0 1 --curve-secret-file server.secret --allow-file allow --stats-socket "$WORK/s0.sock"
wait_for s0.log "CURVE on: 4 keys" 5
key() { awk '/^public/{print $2}' "$1.pub"; }

worker() { # NAME KEY [flags]: a short softmax job over CURVE
    local name=$1 k=$2; shift 2
    timeout -k 10 120 "$BIN/ps-worker" --servers "$EP_s0" $(fashion_flags) --model softmax --lr 0.1 \
        --curve-server-key-file server.pub --curve-secret-file "$k.secret" \
        --request_timeout_ms 3000 --job "$name" "$@" >"$name.out" 2>"$name.log"
}

worker allowed w0 --max_steps 50 || fail "allowed worker failed"
check "$(json allowed.out test_accuracy) > 0.5"
pass "allowed worker trained over CURVE: accuracy $(json allowed.out test_accuracy)"

rc=0; worker stranger stranger --max_steps 50 || rc=$?
check "$rc == 77"
grep -q "refused our CURVE key" stranger.log || fail "worker side: no clear refusal"
grep -qF "refused CURVE client from 127.0.0.1 with key $(key stranger)" s0.log ||
    fail "server side: refusal not logged with address and key"
test "$(grep -cF "with key $(key stranger)" s0.log)" -eq 1 || fail "refusal logged more than once"
pass "unknown key refused: $(grep -o "shard 0.*" stranger.log | head -1)"

rc=0
timeout -k 10 60 "$BIN/ps-worker" --servers "$EP_s0" $(fashion_flags) --model softmax --max_steps 5 \
    --request_timeout_ms 3000 --job plain >plain.out 2>plain.log || rc=$?
check "$rc == 77"
grep -q "requires CURVE" plain.log || fail "plain-text client: no clear error"
wait_for s0.log "handshake failed on .*\(security mechanism mismatch\|protocol error\)" 5
pass "plain-text client refused: $(grep -o "shard 0.*" plain.log | head -1)"

rc=0; worker monitor mon --max_steps 5 || rc=$?
check "$rc == 77"
grep -q "role monitor, which may not HELLO" monitor.log || fail "monitor key could join a job"
"$BIN/ps-ctl" -e "$EP_s0" --server-key server.pub --key mon.secret info > info.json
check "__import__('json').load(open('info.json'))['security'] == 'curve'"
rc=0; "$BIN/ps-ctl" -e "$EP_s0" --server-key server.pub --key mon.secret shutdown 2>mon-shutdown.err || rc=$?
check "$rc == 1"
grep -q "may not SHUTDOWN" mon-shutdown.err || fail "monitor could ask for SHUTDOWN"
pass "monitor key: reads stats, may not push or shut down"

# A connected worker loses access when its key leaves the list.
worker victim w1 --epochs 50 --progress_every_s 0 &
victim=$!
STARTED_PIDS+=("$victim")
wait_for s0.log "job 'victim': worker 0 joined" 30
grep -v " w1$" allow > allow.new && mv allow.new allow
kill -HUP "$PID_s0"
wait_for s0.log "allow-list 'allow' reloaded, 3 keys" 10
rc=0
deadline=$((SECONDS + 30 * TIME_SCALE))
while kill -0 "$victim" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || fail "worker still running $((30 * TIME_SCALE)) s after its key was removed"
    sleep 0.1
done
wait "$victim" || rc=$?
check "$rc == 77"
grep -q "not on shard 0's allow-list any more" victim.log || fail "locked-out worker: no clear error"
rc=0; worker again w1 --max_steps 5 || rc=$?
check "$rc == 77"
pass "SIGHUP without w1: connected worker locked out (exit $rc), reconnect refused"

wait_stats "$WORK/s0.sock" info "^handshakes_refused:[1-9]" 10 info.txt
wait_stats "$WORK/s0.sock" info "^errors_EAUTH:[1-9]" 10 info.txt
kill -0 "$PID_s0" || fail "server died"
"$BIN/ps-ctl" -e "$EP_s0" --server-key server.pub --key adm.secret shutdown >/dev/null
deadline=$((SECONDS + 10 * TIME_SCALE))
while kill -0 "$PID_s0" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || fail "admin SHUTDOWN did not stop the server"
    sleep 0.05
done
pass "admin key shut the server down; $(grep -E '^(handshakes_|errors_E)' info.txt | tr '\n' ' ')"

# Binding a non-loopback address in plain text is refused unless insecure.
rc=0; "$BIN/ps-server" --bind 0.0.0.0 --port 0 2>bind.err || rc=$?
check "$rc == 78"
grep -q "refusing to bind '0.0.0.0' in plain text" bind.err || fail "no refusal for a plain non-loopback bind"
pass "plain-text bind on 0.0.0.0 refused without --insecure"

# ps-launch --curve: a whole local job (2 shards, 2 workers) over CURVE.
"$BIN/ps-launch" --servers 2 --workers 2 --curve --config "$SRC/deploy/examples/fashion-softmax.conf" \
    --set max_steps=40 --set epochs=1 --keep-state >launch.out 2>launch.log || fail "ps-launch --curve failed"
state=$(grep -o "CURVE on, keys in '[^']*'" launch.log | sed "s/.*keys in '//; s/'$//")
[ -f "$state/allow" ] || fail "no allow-list in the launch state"
test "$(grep -c '^worker ' "$state/allow")" -eq 2 || fail "allow-list should hold 2 worker keys"
check "$(json launch.out test_accuracy) > 0.5"
rm -rf "$(dirname "$state")"
pass "ps-launch --curve: 2 shards x 2 workers trained over CURVE, accuracy $(json launch.out test_accuracy)"
