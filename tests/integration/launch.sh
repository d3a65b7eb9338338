# ps-launch and the daemons' command lines: --help, config errors with
# file:line, a failing worker fails the job and stops everything.
. "$(dirname "$0")/lib.sh"
for b in ps-server ps-worker ps-launch ps-datagen ps-convert; do
    "$BIN/$b" --help > "$WORK/help.txt" || fail "$b --help exited $?"
    grep -q "Usage:" "$WORK/help.txt" || fail "$b --help has no usage"
done
grep -q -- "--max_staleness" <("$BIN/ps-worker" --help) || fail "worker help lacks options"
grep -q "default: 0.01" <("$BIN/ps-worker" --help) || fail "worker help lacks defaults"
"$BIN/ps-convert" --version | grep -c "^ps-convert " > /dev/null || fail "ps-convert --version"
pass "--help on every binary"

printf 'port 7000\nshards two\n' > "$WORK/bad.conf"
rc=0
"$BIN/ps-server" --config "$WORK/bad.conf" 2>"$WORK/badconf.log" || rc=$?
check "$rc == 78"
grep -q "bad.conf:2: 'shards two'" "$WORK/badconf.log" || fail "no file:line in config error"
pass "bad config: $(cat "$WORK/badconf.log")"

rc=0
timeout -k 10 60 "$BIN/ps-launch" --servers 2 --workers 2 \
    --config "$SRC/deploy/examples/fashion-softmax.conf" --set train_data=/nonexistent.gz \
    >"$WORK/fail.out" 2>"$WORK/fail.log" || rc=$?
check "$rc == 65"
grep -q "launch: worker . (pid [0-9]*) failed: exit status 65" "$WORK/fail.log" || fail "launch did not name the failed worker"
grep -q "job failed" "$WORK/fail.log" || fail "launch did not report failure"
for pid in $(grep -o 'ps-server\[[0-9]*\]' "$WORK/fail.log" | grep -o '[0-9]*' | sort -u); do
    ! kill -0 "$pid" 2>/dev/null || fail "server $pid still running after the failed job"
done
pass "failed worker fails the job (exit $rc) and the servers are stopped"

"$BIN/ps-datagen" --kind binary --rows 4000 --test_rows 1000 --out "$WORK/b.csv" \
    --test_out "$WORK/bt.csv" > "$WORK/truth.json"
timeout -k 10 120 "$BIN/ps-launch" --servers 1 --workers 3 \
    --config "$SRC/deploy/examples/logistic-regression.conf" \
    --set train_data="$WORK/b.csv" --set test_data="$WORK/bt.csv" \
    >"$WORK/logit.out" 2>"$WORK/logit.log" || fail "logistic job failed"
check "$(json "$WORK/logit.out" test_accuracy) > 0.7"
check "$(json "$WORK/logit.out" workers) == 3"
pass "logistic regression, 3 workers, uneven split of 4000 samples: accuracy $(json "$WORK/logit.out" test_accuracy)"

# rank 0, which saves the model, is lost (ASP: the others finish): no model
# is a failure, named, not exit 0 with lost_workers [0]
"$BIN/ps-launch" --servers 1 --workers 2 --config "$SRC/deploy/examples/fashion-mlp.conf" \
    --set hidden=64 --set max_steps=3000 --set eval_every=0 --set eval_every_steps=50 \
    --set max_staleness=-1 --set heartbeat_ms=200 --server-set heartbeat_timeout_ms=1000 \
    --save-model "$WORK/r0lost" >"$WORK/r0lost.out" 2>"$WORK/r0lost.log" &
launch=$!
STARTED_PIDS+=("$launch")
wait_for "$WORK/r0lost.out" '"event":"eval"' 60
victim=$(grep -o "ps-worker\[[0-9]*\] I worker 0 of" "$WORK/r0lost.log" | head -1 | grep -o '[0-9]\+' | head -1)
kill -KILL "$victim"
rc=0
wait "$launch" || rc=$?
check "$rc != 0"
grep -q "launch: no model: '$WORK/r0lost/model.json' is missing (worker 0, which saves it, was lost)" \
    "$WORK/r0lost.log" || fail "the missing model is not named"
pass "rank 0 lost under ASP with --save-model: exit $rc, $(grep -o 'no model: .*' "$WORK/r0lost.log")"

# no --servers / --workers: a layout for the cores this process may use, said
cores=$(nproc)
timeout -k 10 60 "$BIN/ps-launch" --config "$SRC/deploy/examples/fashion-mlp.conf" \
    --set hidden=16 --set max_steps=5 --set eval_every=0 >"$WORK/auto.out" 2>"$WORK/auto.log" ||
    fail "auto layout: ps-launch exited $?"
grep -q "layout: $(((cores + 7) / 8)) shard(s) x $cores worker(s) for the $cores cores here (auto" \
    "$WORK/auto.log" || fail "auto layout not said: $(grep -o 'layout: .*' "$WORK/auto.log")"
check "$(json "$WORK/auto.out" servers) == ($cores + 7) // 8 and $(json "$WORK/auto.out" workers) == $cores"
pass "auto layout: $(grep -o 'layout: [^(]*' "$WORK/auto.log")"
