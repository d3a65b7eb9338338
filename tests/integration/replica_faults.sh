# A holder that never answers never stalls training: shard 0's holder
# (shard 1 in its peers list) is a TCP port that takes connections and the
# bytes and says nothing, with replica_timeout_ms at 10 minutes and
# replica_inflight_mb at 1. The BSP job (2 workers, a checkpoint every 10
# clocks) finishes within 2 minutes anyway; shard 0 wrote its checkpoints,
# none was acknowledged, the oldest queued ones were skipped to keep the
# bound, and at SIGTERM it exits at once (a wait for a holder is given up);
# shard 1, whose holder (shard 0) is fine, had its files acknowledged.
. "$(dirname "$0")/lib.sh"
cd "$WORK"
read -r -a PORT <<<"$("$PY" -c '
import socket
ss = [socket.socket() for _ in range(2)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))')"
# the silent holder: accepts, reads, never writes
"$PY" -c '
import socket, sys, threading
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", 0)); l.listen(16)
open(sys.argv[1] + ".tmp", "w").write(str(l.getsockname()[1]))
import os; os.rename(sys.argv[1] + ".tmp", sys.argv[1])
def drain(c):
    while c.recv(65536): pass
while True:
    c, _ = l.accept(); threading.Thread(target=drain, args=(c,), daemon=True).start()
' sink.port &
STARTED_PIDS+=("$!")
wait_for sink.port . 10
servers="tcp://127.0.0.1:${PORT[0]},tcp://127.0.0.1:${PORT[1]}"
peers_0="tcp://127.0.0.1:${PORT[0]},tcp://127.0.0.1:$(cat sink.port)"
# shard 0 kept its disk (a job's directory in its state_dir): it does not
# fetch at its start, which would wait replica_timeout_ms for this holder
mkdir -p s0.state/earlier-job
for s in 0 1; do
    mkdir -p "s$s.state"
    peers=$servers
    [ $s = 0 ] && peers=$peers_0
    "$BIN/ps-server" --port "${PORT[$s]}" --shard $s --shards 2 --peers "$peers" \
        --state-dir "$WORK/s$s.state" --checkpoint-every 10 --replica-timeout-ms 600000 \
        --replica-inflight-mb 1 --stats-socket "$WORK/s$s.sock" --ready-file "$WORK/s$s.ready" \
        2>"$WORK/s$s.log" &
    STARTED_PIDS+=("$!")
    printf -v "SHARD_PID_$s" '%s' "$!"
done
for s in 0 1; do wait_for "s$s.ready" endpoint 10; done
t0=$SECONDS
wp=()
for r in 0 1; do
    timeout $((120 * TIME_SCALE)) "$BIN/ps-worker" --servers "$servers" --rank $r --world 2 \
        --config "$SRC/deploy/examples/fashion-mlp.conf" --hidden 256,128 --max_steps 300 \
        --eval_every 0 --job slow >"w$r.out" 2>"w$r.log" &
    wp+=("$!")
    STARTED_PIDS+=("$!")
done
for p in "${wp[@]}"; do wait "$p" || fail "a worker exited $? (124: not done within 120 s)"; done
train_s=$((SECONDS - t0))
info() { "$BIN/ps-ctl" -s "$1" show info | awk -F: -v k="$2" '$1 == k {print $2}'; }
written=$(info s0.sock checkpoints_written)
acked0=$(info s0.sock replicas_acked)
skipped0=$(info s0.sock replicas_skipped)
acked1=$(info s1.sock replicas_acked)
check "$written >= 30 and $acked0 == 0 and $skipped0 > 0 and $acked1 > 0"
t1=$SECONDS
kill -TERM "$SHARD_PID_0"
wait "$SHARD_PID_0" || fail "shard 0 exited $? at SIGTERM"
check "$SECONDS - $t1 <= 10"
pass "holder silent (replica_timeout_ms 600000): 300 BSP steps in $train_s s; shard 0 wrote $written checkpoints, 0 acknowledged, $skipped0 skipped (replica_inflight_mb 1); shard 1: $acked1 acknowledged; shard 0 ended $((SECONDS - t1)) s after SIGTERM"
