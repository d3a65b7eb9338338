# The same-host data path (shared regions instead of TCP for dense pushes
# and pulls; docs/architecture.md "Same host"):
# 1. BSP jobs of 1 and 2 workers (fp32, and bf16 with 2) on it train the
#    model of the same jobs over TCP bit for bit, and the workers' and the
#    shard's counters say the regions (and their doorbells) carried them;
#    with same_host_bell off the headers go over ZeroMQ, same model; with
#    same_host off on the shard the offer is refused, said why, and the
#    job is on TCP;
# 2. a worker killed -9 mid-run: the shard unmaps its region (none leaks in
#    /proc/PID/maps) and closes its doorbell (no pipe left open), maps its
#    restarted process's, keeps serving, and unmaps every region once the
#    job ends;
# 3. the shard killed -9 mid-run and restarted: the workers' regions and
#    doorbells are taken by the new process and the model equals the TCP
#    job's.
. "$(dirname "$0")/lib.sh"
CONF="$SRC/deploy/examples/fashion-mlp.conf"

launch() { # NAME WORKERS [ps-launch args...]
    local name=$1 n=$2; shift 2
    timeout -k 10 120 "$BIN/ps-launch" --servers 1 --workers "$n" --config "$CONF" \
        --set optimizer=sgd --set lr=0.05 --set max_steps=40 --set batch_size=$((64 / n)) \
        --set eval_every=0 --save-model "$WORK/$name" "$@" \
        >"$WORK/$name.out" 2>"$WORK/$name.log" || fail "$name: ps-launch exited $?"
}
shm_requests() { json "$WORK/$1.out" shm_requests; }
bell_requests() { json "$WORK/$1.out" bell_requests; }

# 1. exact, and used
launch tcp1 1 --set same_host=no
launch shm1 1
launch tcp2 2 --set same_host=no
launch shm2 2
launch tcpbf 2 --set same_host=no --set precision=bf16
launch shmbf 2 --set precision=bf16
launch nobell2 2 --server-set same_host_bell=no
launch refused 2 --server-set same_host=no
for run in tcp1 tcp2 tcpbf refused; do check "$(shm_requests $run) == 0"; done
check "$(shm_requests nobell2) >= 40 * 6 and $(bell_requests nobell2) == 0"
for run in shm1 shm2 shmbf; do
    # every step: 6 slices' PUSH_PULLs (and the first pulls) per worker,
    # each header down the doorbell unless its pipe was full
    check "$(shm_requests $run) >= 40 * 6 and $(bell_requests $run) >= 40 * 6"
    grep -c "worker 0's shared region mapped" "$WORK/$run.log" >/dev/null ||
        fail "$run: the shard did not say it mapped a region"
done
grep -c "same-host path (shared memory, doorbell)" "$WORK/shm2.log" >/dev/null || fail "shm2: workers silent"
grep -c "same-host path (shared memory)" "$WORK/nobell2.log" >/dev/null || fail "nobell2: workers silent"
grep -c "stays on TCP: same_host is off on this shard" "$WORK/refused.log" >/dev/null ||
    fail "refused: the shard did not say why"
grep -c "no same-host path: shard 0: same_host is off" "$WORK/refused.log" >/dev/null ||
    fail "refused: the workers did not say why"
models_equal "$WORK/tcp1" "$WORK/shm1" || fail "1 worker: shared regions and TCP differ"
models_equal "$WORK/tcp2" "$WORK/shm2" || fail "2 workers: shared regions and TCP differ"
models_equal "$WORK/tcpbf" "$WORK/shmbf" || fail "bf16: shared regions and TCP differ"
models_equal "$WORK/tcp2" "$WORK/refused" || fail "refused: the TCP fallback differs"
models_equal "$WORK/tcp2" "$WORK/nobell2" || fail "2 workers: regions without doorbells and TCP differ"
pass "1x1, 2x1 and 2x1 bf16 BSP on shared regions = TCP bit for bit ($(shm_requests shm2) requests through the regions, $(bell_requests shm2) rung); without doorbells too; refused when the shard says no"

# 2. a worker killed -9 mid-run
regions() { # PID: shared regions mapped in that process
    grep -c "memfd:ps-shm" "/proc/$1/maps" || true
}
pipes() { # PID: pipes that process holds open
    find "/proc/$1/fd" -lname 'pipe:*' 2>/dev/null | wc -l
}
wait_regions() { # PID N SECONDS: N regions, and 3 pipes for each doorbell
    local deadline=$((SECONDS + $3))
    until [ "$(regions "$1")" -eq "$2" ] && [ "$(pipes "$1")" -eq $((PIPES0 + 3 * $2)) ]; do
        [ $SECONDS -lt $deadline ] ||
            fail "shard has $(regions "$1") regions mapped and $(pipes "$1") pipes open, not $2 and $((PIPES0 + 3 * $2)), after $3 s"
        sleep 0.05
    done
}
# checkpoints: a rejoining BSP worker may need the shard to roll back to one
start_server solo 0 1 --heartbeat_timeout_ms 1000 --state_dir "$WORK/state" --checkpoint_every 20
PIPES0=$(pipes "$PID_solo") # the shard's own, before any worker
worker() { # RANK NAME
    "$BIN/ps-worker" --servers "$EP_solo" $(fashion_flags) --model mlp --hidden 64 \
        --rank "$1" --world 2 --batch_size 32 --max_steps 1500 --eval_every 0 \
        --eval_every_steps 100 --heartbeat_ms 200 >"$WORK/$2.out" 2>"$WORK/$2.log" &
    WORKER_PID=$!
    STARTED_PIDS+=("$WORKER_PID")
}
worker 0 w0
w0=$WORKER_PID
worker 1 w1
w1=$WORKER_PID
wait_for "$WORK/w0.out" '"event":"eval"' 60
wait_regions "$PID_solo" 2 10
kill -KILL "$w1"
wait "$w1" 2>/dev/null || true
wait_for "$WORK/solo.log" "worker 1's shared region unmapped (the worker was declared dead)" 20
wait_regions "$PID_solo" 1 5
worker 1 w1b
w1b=$WORKER_PID
wait_for "$WORK/solo.log" "worker 1 rejoined" 30
wait_regions "$PID_solo" 2 10
wait "$w0" || fail "worker 0 exited $?"
wait "$w1b" || fail "restarted worker 1 exited $?"
check "$(json "$WORK/w1b.out" shm_requests) > 0"
wait_regions "$PID_solo" 0 10
ls -l "/proc/$PID_solo/fd" | grep -c memfd >/dev/null && fail "the shard keeps a memfd open"
kill -0 "$PID_solo" || fail "the shard died"
pass "worker killed -9: its region unmapped and doorbell closed, the restarted one's taken, none left after the job"

# 3. the shard killed -9 mid-run
recover() { # NAME [args]
    local name=$1; shift
    "$BIN/ps-launch" --servers 1 --workers 2 --config "$CONF" --set hidden=64 \
        --set max_steps=300 --set eval_every=0 --set eval_every_steps=100 \
        --set heartbeat_ms=200 --server-set checkpoint_every=20 --timeout 120 \
        --save-model "$WORK/$name" "$@" >"$WORK/$name.out" 2>"$WORK/$name.log" &
    LAUNCH_PID=$!
    STARTED_PIDS+=("$LAUNCH_PID")
}
recover plain --set same_host=no
wait "$LAUNCH_PID" || fail "uninterrupted TCP run exited $?"
recover killed --restart-servers
wait_for "$WORK/killed.out" '"event":"eval"' 60
victim=$(grep -o "ps-server\[[0-9]*\] I ready: endpoint" "$WORK/killed.log" | head -1 |
    grep -o '[0-9]*')
[ -n "$victim" ] || fail "no pid for the shard"
kill -KILL "$victim"
wait_for "$WORK/killed.log" "restored from checkpoint at clock" 30
wait "$LAUNCH_PID" || fail "run with a killed shard exited $?"
check "$(grep -c "shared region mapped (1024 MiB; same host, doorbell)" "$WORK/killed.log") >= 4"
check "$(bell_requests killed) > 0"
check "$(shm_requests killed) > 0"
models_equal "$WORK/plain" "$WORK/killed" || fail "the recovered job's model differs from TCP's"
pass "shard killed -9 on the shared path: regions mapped and doorbells opened again, the model equals the TCP run's"
