# Across real addresses: one network namespace per "machine" (2 servers, 2
# workers) joined by a bridge, each on its own IP inside namespaces this test
# creates and deletes; train to the end and read a server's stats socket.
# Exit 77 (a ctest skip) with the reason only where namespaces are forbidden.
. "$(dirname "$0")/lib.sh"
command -v ip >/dev/null || { echo "SKIP: iproute2 (ip) is not installed"; exit 77; }
tag=$$
# iproute2 mounts /run/netns on first use; if this test is what made it a
# mount point, unmount it at the end (in a chroot it would otherwise stay
# in the chroot's tree and keep its owner from deleting the root)
had_netns_mount=0
mountpoint -q /run/netns 2>/dev/null && had_netns_mount=1
netns_cleanup() {
    for h in s0 s1 w0 w1; do ip netns del "ps$h$tag" 2>/dev/null || true; done
    ip netns del "psbr$tag" 2>/dev/null || true
    ip netns del "psprobe$tag" 2>/dev/null || true
    if [ $had_netns_mount = 0 ] && mountpoint -q /run/netns 2>/dev/null; then
        umount -l /run/netns 2>/dev/null || true
    fi
}
# keep the test's own exit status through both cleanups
trap 'rc=$?; netns_cleanup; (exit $rc); cleanup' EXIT
probe="psprobe$tag"
if ! ip netns add "$probe" 2>"$WORK/probe.log"; then
    echo "SKIP: this machine forbids network namespaces: $(cat "$WORK/probe.log")"; exit 77
fi
ip netns del "$probe"

BR="psbr$tag"
HOSTS=(s0 s1 w0 w1)
declare -A IP=([s0]=10.250.$((tag % 200)).1 [s1]=10.250.$((tag % 200)).2 [w0]=10.250.$((tag % 200)).3 [w1]=10.250.$((tag % 200)).4)
# net CMD...: a step of building the test network; if the machine will not
# let us (a chroot without /run/netns, no bridge module...), skip with why.
net() {
    "$@" 2>>"$WORK/net.log" || {
        echo "SKIP: cannot build the test network here: '$*' failed: $(tail -1 "$WORK/net.log")"
        exit 77
    }
}

net ip netns add "$BR"
net ip -n "$BR" link add br0 type bridge
net ip -n "$BR" link set br0 up
i=0
for h in "${HOSTS[@]}"; do
    ns="ps$h$tag"
    net ip netns add "$ns"
    net ip link add "v$i$tag" type veth peer name "b$i$tag"
    net ip link set "v$i$tag" netns "$ns"
    net ip link set "b$i$tag" netns "$BR"
    net ip -n "$BR" link set "b$i$tag" master br0 up
    net ip -n "$ns" link set "v$i$tag" name eth0
    net ip -n "$ns" addr add "${IP[$h]}/24" dev eth0
    net ip -n "$ns" link set eth0 up
    net ip -n "$ns" link set lo up
    i=$((i + 1))
done

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
        --model softmax --lr 0.1 --max_steps 300 --eval_every_steps 100 --job netns \
        --curve-server-key-file "$WORK/server.pub" --curve-secret-file "$WORK/worker-$r.secret" \
        >"$WORK/w$r.out" 2>"$WORK/w$r.log" &
    pids+=("$!")
    STARTED_PIDS+=("$!")
done
wait_for "$WORK/w0.out" '"event":"eval"' 60
"$BIN/ps-ctl" -s "$WORK/s0.sock" show workers > "$WORK/workers.txt" || fail "ps-ctl show workers"
grep -qE "^netns +0 +live +${IP[w0]}" "$WORK/workers.txt" || fail "worker 0 not seen from ${IP[w0]}: $(cat "$WORK/workers.txt")"
grep -qE "^netns +1 +live +${IP[w1]}" "$WORK/workers.txt" || fail "worker 1 not seen from ${IP[w1]}"
for p in "${pids[@]}"; do wait "$p" || fail "worker exited $?"; done
check "$(json "$WORK/w0.out" test_accuracy) > 0.7"
"$BIN/ps-ctl" -s "$WORK/s1.sock" show info | grep -cE "^requests_PUSH_PULL:[1-9]" >/dev/null || fail "shard 1 served nothing"
pass "CURVE: 2 servers + 2 workers on ${IP[s0]}..${IP[w1]} in 5 namespaces: accuracy $(json "$WORK/w0.out" test_accuracy); show workers saw the workers' own addresses"
