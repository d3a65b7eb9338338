# Across real addresses: one network namespace per "machine" (2 servers, 2
# workers) joined by a bridge, each on its own IP inside namespaces this test
# creates and deletes; train to the end and read a server's stats socket.
# Exit 77 (a ctest skip) with the reason only where namespaces are forbidden.
. "$(dirname "$0")/lib.sh"
netns_probe || { echo "SKIP: this machine forbids network namespaces: $(cat "$WORK/probe.log")"; exit 77; }
tag=$$
netns_build 10.250.$((tag % 200)) s0 s1 w0 w1
declare -A IP
for h in s0 s1 w0 w1; do IP[$h]=${NETNS_IP[$h]}; done

# Across "machines" the servers speak CURVE only (a plain-text bind beyond
# loopback is refused): one server key pair, one per worker, an allow-list.
"$BIN/ps-keygen" "$WORK/server" 2>/dev/null
for r in 0 1; do "$BIN/ps-keygen" --role worker "$WORK/worker-$r" >> "$WORK/allow"; done
for s in 0 1; do
    ip netns exec "pss$s$tag" "$BIN/ps-server" --bind "${IP[s$s]}" --port 7000 --shard $s --shards 2 \
        --curve-secret-file "$WORK/server.secret" --allow-file "$WORK/allow" \
        --stats-socket "$WORK/s$s.sock" --ready-file "$WORK/s$s.ready" 2>"$WORK/s$s.log" &
    STARTED_PIDS+=("$!")
done
for s in 0 1; do wait_for "$WORK/s$s.ready" "endpoint" 10; done
servers="tcp://${IP[s0]}:7000,tcp://${IP[s1]}:7000"
pids=()
for r in 0 1; do
    ip netns exec "psw$r$tag" "$BIN/ps-worker" --servers "$servers" --rank $r --world 2 $(fashion_flags) \
        --model softmax --lr 0.1 --max_steps 600 --eval_every_steps 100 --job netns \
        --curve-server-key-file "$WORK/server.pub" --curve-secret-file "$WORK/worker-$r.secret" \
        >"$WORK/w$r.out" 2>"$WORK/w$r.log" &
    pids+=("$!")
    STARTED_PIDS+=("$!")
done
wait_for "$WORK/w0.out" '"event":"eval"' 60
# (the workers' table is a snapshot published every poll_ms: wait for it)
wait_stats "$WORK/s0.sock" workers "^netns +0 +live +${IP[w0]}" 10 "$WORK/workers.txt"
wait_stats "$WORK/s0.sock" workers "^netns +1 +live +${IP[w1]}" 10 "$WORK/workers.txt"
for p in "${pids[@]}"; do wait "$p" || fail "worker exited $?"; done
check "$(json "$WORK/w0.out" test_accuracy) > 0.7"
"$BIN/ps-ctl" -s "$WORK/s1.sock" show info | grep -cE "^requests_PUSH_PULL:[1-9]" >/dev/null || fail "shard 1 served nothing"
pass "CURVE: 2 servers + 2 workers on ${IP[s0]}..${IP[w1]} in 5 namespaces: accuracy $(json "$WORK/w0.out" test_accuracy); show workers saw the workers' own addresses"
