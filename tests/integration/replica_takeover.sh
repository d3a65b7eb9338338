# A machine is lost and nothing with it: 2 shards, each in its own network
# namespace, replicate every checkpoint to each other (checkpoint_replicas
# 1, CURVE between them as for the workers); 2 workers (their own
# namespaces) train a dense MLP and a sparse LR job at once, BSP. Mid-run
# shard 1 is killed (-9) and its whole state_dir deleted; a replacement
# with an empty state_dir takes its address, fetches its checkpoints from
# shard 0 and serves; both jobs finish with the model of an uninterrupted
# run: bit for bit (max abs difference 0.0), the dense tables and the
# sparse rows of every key the test set holds, and the sparse job's test
# AUC, logloss and accuracy as printed, after as many steps.
# Also prints the time from the replacement's start to serving.
# Without network namespaces (not root, no iproute2) the same runs on
# 127.0.0.1 with ports chosen at run time; PS_REPLICA_LOOPBACK=1 forces it.
. "$(dirname "$0")/lib.sh"
tag=$$
HOSTS=(s0 s1 w0 w1)
declare -A IP NS
mode=netns
if [ -n "${PS_REPLICA_LOOPBACK:-}" ]; then
    mode=loopback
elif ! netns_probe; then
    mode=loopback
    echo "note: no network namespaces here ($(cat "$WORK/probe.log")): on 127.0.0.1"
fi

if [ $mode = netns ]; then
    netns_build 10.251.$((tag % 200)) "${HOSTS[@]}"
    for h in "${HOSTS[@]}"; do IP[$h]=${NETNS_IP[$h]}; NS[$h]="ip netns exec ps$h$tag"; done
    PORT=(7000 7000)
    # across machines CURVE only: one server key pair (also the shards' key
    # towards each other: role shard), one key per worker
    "$BIN/ps-keygen" "$WORK/server" 2>/dev/null
    for r in 0 1; do "$BIN/ps-keygen" --role worker "$WORK/worker-$r" >>"$WORK/allow"; done
    echo "shard $(awk '/^public/{print $2}' "$WORK/server.pub") shards" >>"$WORK/allow"
    SRV_SEC=(--curve-secret-file "$WORK/server.secret" --allow-file "$WORK/allow")
    wrk_sec() { echo --curve-server-key-file "$WORK/server.pub" --curve-secret-file "$WORK/worker-$1.secret"; }
else
    for h in "${HOSTS[@]}"; do IP[$h]=127.0.0.1; NS[$h]=""; done
    read -r -a PORT <<<"$("$PY" -c '
import socket
ss = [socket.socket() for _ in range(2)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))')"
    SRV_SEC=()
    wrk_sec() { :; }
fi
servers="tcp://${IP[s0]}:${PORT[0]},tcp://${IP[s1]}:${PORT[1]}"

cd "$WORK"
"$BIN/ps-clickgen" --rows 40000 --test_rows 10000 --out train.svm --test_out test.svm \
    --truth truth.json >gen.log || fail "ps-clickgen failed"

start_shard() { # RUN SHARD: shard SHARD of run RUN, state in RUN-sSHARD.state
    local run=$1 s=$2
    mkdir -p "$run-s$s.state"
    rm -f "$run-s$s.ready"
    ${NS[s$s]} "$BIN/ps-server" --bind "${IP[s$s]}" --port "${PORT[$s]}" --shard "$s" --shards 2 \
        --peers "$servers" --state-dir "$WORK/$run-s$s.state" --checkpoint-every 10 \
        --sparse-full-every 3 --heartbeat-timeout-ms 3000 --log-level debug \
        --stats-socket "$WORK/$run-s$s.sock" --ready-file "$WORK/$run-s$s.ready" "${SRV_SEC[@]}" \
        2>>"$WORK/$run-s$s.log" &
    local pid=$!
    STARTED_PIDS+=("$pid")
    printf -v "SHARD_PID_$s" '%s' "$pid"
}

WPIDS=()
start_workers() { # RUN
    local run=$1 r
    for r in 0 1; do
        ${NS[w$r]} "$BIN/ps-worker" --servers "$servers" --rank $r --world 2 --job mlp \
            --config "$SRC/deploy/examples/fashion-mlp.conf" --hidden 128 --max_steps 600 \
            --eval_every 0 --eval_every_steps 100 --heartbeat_ms 200 \
            --save_model "$WORK/$run-mlp" $(wrk_sec $r) >"$run-mlp-w$r.out" 2>"$run-mlp-w$r.log" &
        WPIDS+=("$!")
        STARTED_PIDS+=("$!")
        ${NS[w$r]} "$BIN/ps-worker" --servers "$servers" --rank $r --world 2 --job lr \
            --config "$SRC/deploy/examples/click-lr.conf" --train_data train.svm \
            --test_data test.svm --epochs 8 --hash_bits 18 --heartbeat_ms 200 $(wrk_sec $r) \
            --save_model "$WORK/$run-lr" >"$run-lr-w$r.out" 2>"$run-lr-w$r.log" &
        WPIDS+=("$!")
        STARTED_PIDS+=("$!")
    done
}

wait_workers() { # RUN
    for p in "${WPIDS[@]}"; do wait "$p" || fail "$1: a worker exited $? ($(grep -h -m1 ' E ' "$1"-*-w*.log))"; done
    WPIDS=()
}

stat_of() { # SOCK KEY: a field of show info (0 if not there yet)
    "$BIN/ps-ctl" -s "$1" show info 2>/dev/null | awk -F: -v k="$2" '$1 == k {print $2}' | grep . || echo 0
}

# uninterrupted
for s in 0 1; do start_shard plain $s; done
for s in 0 1; do wait_for "plain-s$s.ready" endpoint 10; done
start_workers plain
wait_workers plain
acked=$(stat_of plain-s1.sock replicas_acked)
check "$acked > 0"
for s in 0 1; do
    pid_var=SHARD_PID_$s
    kill -TERM "${!pid_var}"
    wait "${!pid_var}" || fail "plain shard $s exited $? at SIGTERM"
done

# shard 1's machine is lost mid-run
for s in 0 1; do start_shard lost $s; done
for s in 0 1; do wait_for "lost-s$s.ready" endpoint 10; done
start_workers lost
wait_for lost-mlp-w0.out '"event":"eval"' 120
deadline=$((SECONDS + 60 * TIME_SCALE))
until [ "$(stat_of lost-s1.sock replicas_acked)" -ge 4 ]; do
    [ $SECONDS -lt $deadline ] || fail "shard 1 had no 4 replicas acknowledged by shard 0 after 60 s"
    sleep 0.1
done
"$BIN/ps-ctl" -s lost-s0.sock show checkpoints >held.txt
grep -qE "^ +0 +1 +replica +(mlp|lr) " held.txt || fail "shard 0 lists no replica for shard 1: $(cat held.txt)"
"$BIN/ps-ctl" -s lost-s1.sock show checkpoints >own.txt
grep -qE "^ +1 +1 +own .* 0 *$" own.txt || fail "shard 1 lists no checkpoint acknowledged by shard 0: $(cat own.txt)"
# the machine goes with everything on it, a checkpoint writer the shard
# forked too (left running, it wrote into the state_dir being deleted)
lose_host "$SHARD_PID_1" # reaped: its port is free
rm -rf "lost-s1.state" "lost-s1.sock"
t0=$("$PY" -c 'import time; print(time.time())')
start_shard lost 1
wait_for lost-s1.ready endpoint $((10 + 2 * 10))
t1=$("$PY" -c 'import time; print(time.time())')
grep -q "fetched [0-9]* checkpoint files ([0-9]* bytes) from shard 0" lost-s1.log || fail "the replacement fetched nothing"
wait_for lost-mlp-w0.log "worker [01]: rejoined at clock" 60
t2=$("$PY" -c 'import time; print(time.time())')
wait_workers lost
models_equal "$WORK/plain-mlp" "$WORK/lost-mlp" || fail "dense MLP: the model differs from the uninterrupted run's"
d=$(sparse_rows_diff "$WORK/plain-lr" "$WORK/lost-lr") || fail "sparse LR: rows not comparable"
check "$d == 0.0"
for k in test_auc test_logloss test_accuracy steps; do
    a=$(json plain-lr-w0.out $k) b=$(json lost-lr-w0.out $k)
    [ "$a" = "$b" ] || fail "sparse LR: $k $b, uninterrupted $a"
done
for s in 0 1; do # the survivor and the replacement end cleanly (sanitizer builds: no report)
    pid_var=SHARD_PID_$s
    kill -TERM "${!pid_var}"
    wait "${!pid_var}" || fail "shard $s exited $? at SIGTERM after the takeover"
done
fetched=$(grep -o "fetched [0-9]* checkpoint files ([0-9]* bytes) from shard 0 .* in [0-9]* ms" lost-s1.log)
serve_s=$("$PY" -c "print(f'{$t1 - $t0:.2f}')")
rejoin_s=$("$PY" -c "print(f'{$t2 - $t0:.2f}')")
pass "$mode: shard 1's machine lost mid-run, replacement with an empty state_dir: $fetched; serving ${serve_s} s after its start, workers rejoined at ${rejoin_s} s; dense MLP and sparse LR rows max abs diff 0.0, sparse LR AUC $(json lost-lr-w0.out test_auc) logloss $(json lost-lr-w0.out test_logloss) as uninterrupted"
