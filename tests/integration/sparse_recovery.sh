# A sparse job (hashed logistic regression, FTRL, BSP) loses a process and
# still ends with the model of an uninterrupted run (the rows of every key
# of the test set bit for bit, test AUC and logloss equal to the last
# printed digit, after as many steps):
# 1. kill -9 shard 1: its rows come back from its checkpoints (full and
#    incremental files, sparse_full_every=3) and the workers replay the
#    steps after the restored clock;
# 2. kill -9 worker 1, ps-launch restarts it: the new process resumes at
#    the job's clock (before, it was let in at clock 0 and mixed its
#    replayed steps into the model).
# 3. batches so small (1 sample) that most shards get no key of a step:
#    every shard still gets each rank's push and pull, so BSP rounds close
#    (before, the job hung at the first step a shard had no key of).
# 4. under ASP, kill -9 shard 1: it comes back from its checkpoint and the
#    job finishes (ASP promises no exactness).
# (Rows bit for bit through a chain of deltas: tests/unit/test_checkpoint.c.)
# PS_TEST_STREAM=yes (it_sparse_recovery_stream) runs it all with stream yes:
# the workers' readers restart at the clock they are sent back to.
. "$(dirname "$0")/lib.sh"
STREAM=${PS_TEST_STREAM:-no}
cd "$WORK"
"$BIN/ps-clickgen" --rows 120000 --test_rows 20000 --out train.svm --test_out test.svm \
    --truth truth.json > gen.log || fail "ps-clickgen failed"

run() { # NAME [extra ps-launch args]
    local name=$1; shift
    "$BIN/ps-launch" --servers 2 --workers 2 --config "$SRC/deploy/examples/click-lr.conf" \
        --set train_data=train.svm --set test_data=test.svm --set epochs=3 --set hash_bits=20 --set stream="$STREAM" \
        --set heartbeat_ms=200 --server-set checkpoint_every=10 --server-set sparse_full_every=3 \
        --server-set log_level=debug --set save_model="$WORK/$name.model" --timeout 300 "$@" \
        >"$name.out" 2>"$name.log" &
    LAUNCH_PID=$!
    STARTED_PIDS+=("$LAUNCH_PID")
}

"$BIN/ps-launch" --servers 4 --workers 2 --config "$SRC/deploy/examples/click-lr.conf" \
    --set train_data=train.svm --set test_data=test.svm --set batch_size=1 --set max_steps=300 --set stream="$STREAM" \
    --timeout 60 >tiny.out 2>tiny.log || fail "batch_size 1 over 4 shards: exit $? ($(grep -m1 ' E ' tiny.log))"
check "$(json tiny.out steps) == 300"
pass "batch_size 1 over 4 shards: 300 BSP steps, shards without a key of a step included"

run plain
wait "$LAUNCH_PID" || fail "uninterrupted sparse run exited $?"
grep -q "incremental checkpoint at clock" plain.log || fail "no incremental checkpoint written"

run killed --restart-servers
wait_for killed.out '"event":"epoch"' 120
victim=$(grep -o "ps-server\[[0-9]*\] I ready: endpoint .* shard 1 of 2" killed.log | tail -1 |
         grep -o '\[[0-9]*\]' | tr -d '[]')
[ -n "$victim" ] || fail "no pid for shard 1"
kill -KILL "$victim"
wait_for killed.log "restored from checkpoint at clock [0-9]* (0 chunks, 1 sparse tables" 60
wait_for killed.log "worker [01]: rejoined at clock" 60
wait "$LAUNCH_PID" || fail "sparse run with a killed shard exited $?"
same_model() { # NAME: its rows and its summary as the uninterrupted run's
    local k a b d
    d=$(sparse_rows_diff "$WORK/plain.model" "$WORK/$1.model") || fail "$1: rows not comparable"
    check "$d == 0.0"
    for k in test_auc test_logloss steps; do
        a=$(json plain.out $k) b=$(json "$1.out" $k)
        [ "$a" = "$b" ] || fail "$1: $k $b, uninterrupted $a"
    done
}
same_model killed
restored=$(grep -o "restored from checkpoint at clock [0-9]*" killed.log | head -1)
pass "shard 1 killed mid-job: $restored, rows bit for bit, test AUC $(json killed.out test_auc) and logloss $(json killed.out test_logloss) as uninterrupted"

run wkilled --restart-workers
wait_for wkilled.out '"event":"epoch"' 120
victim=$(grep -o "ps-worker\[[0-9]*\] I worker 1 of" wkilled.log | head -1 | grep -o '[0-9]\+' | head -1)
[ -n "$victim" ] || fail "no pid for worker 1"
kill -KILL "$victim"
wait_for wkilled.log "worker 1: job '[^']*' is at clock [0-9]*; resuming there" 60
wait "$LAUNCH_PID" || fail "sparse run with a killed worker exited $?"
same_model wkilled
pass "worker 1 killed mid-job and restarted: $(grep -o "is at clock [0-9]*; resuming there" wkilled.log | head -1), same AUC and logloss"

# 4. ASP (max_staleness -1): kill -9 shard 1; the restarted shard comes back
#    from its checkpoint and the job finishes (no exactness under ASP: the
#    pushes in flight at the kill are lost or applied once).
run asp --restart-servers --set max_staleness=-1
wait_for asp.out '"event":"epoch"' 120
victim=$(grep -o "ps-server\[[0-9]*\] I ready: endpoint .* shard 1 of 2" asp.log | tail -1 |
         grep -o '\[[0-9]*\]' | tr -d '[]')
[ -n "$victim" ] || fail "asp: no pid for shard 1"
kill -KILL "$victim"
wait_for asp.log "restored from checkpoint at clock [0-9]*" 60
wait "$LAUNCH_PID" || fail "ASP sparse run with a killed shard exited $?"
check "$(json asp.out steps) == $(json plain.out steps)"
check "abs($(json asp.out test_auc) - $(json plain.out test_auc)) < 0.01"
pass "ASP: shard 1 killed mid-job, restored, the job finished: AUC $(json asp.out test_auc) (uninterrupted BSP $(json plain.out test_auc))"
