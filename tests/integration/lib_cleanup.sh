# lib.sh's teardown still ends a test's processes when the test fails and
# its extra exit code (cleanup_also) fails too: a child test starts a
# server, adds teardown code that fails (an umount of what is not mounted,
# as state_dir.sh's would on a second run), then fails on purpose. The
# child must exit with its own failing status and leave no server behind.
. "$(dirname "$0")/lib.sh"

cat >"$WORK/child.sh" <<CHILD
. "$SRC/tests/integration/lib.sh"
start_server s0 0 1
echo "\$PID_s0" >"$WORK/child.pid"
cleanup_also 'umount "$WORK/not-a-mount" 2>/dev/null; false'
fail "on purpose"
CHILD
rc=0
bash "$WORK/child.sh" 2>"$WORK/child.log" || rc=$?
pid=$(cat "$WORK/child.pid")
# its server: gone, or (pid reused) no longer a ps-server; one left running
# is this test's to end (cleanup ends what STARTED_PIDS holds)
deadline=$((SECONDS + 10)) left=no
while kill -0 "$pid" 2>/dev/null && grep -q ps-server "/proc/$pid/cmdline" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || { STARTED_PIDS+=("$pid"); left=yes; break; }
    sleep 0.05
done
[ $left = no ] || fail "the failed child left its server $pid running"
check "$rc == 1"
grep -q "FAIL: on purpose" "$WORK/child.log" || fail "the child did not fail where it should: $(cat "$WORK/child.log")"
pass "a failing test with failing extra teardown still ends its server and keeps its status"
