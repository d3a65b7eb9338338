# Done-when: the example CNN (deploy/examples/fashion-cnn.conf), 2 servers x
# 2 workers, reaches test accuracy >= 0.91 within 10 epochs, and every
# worker reports its peak RSS.
. "$(dirname "$0")/lib.sh"
timeout 2300 "$BIN/ps-launch" --servers 2 --workers 2 \
    --config "$SRC/deploy/examples/fashion-cnn.conf" --set progress_every_s=0 \
    >"$WORK/out" 2>"$WORK/launch.log" || fail "ps-launch exited $?"
check "$(grep -c '"event":"epoch"' "$WORK/out") == 10"
acc=$(json "$WORK/out" test_accuracy)
rss=$(json "$WORK/out" peak_rss_bytes)
grep '"event":"epoch"' "$WORK/out" | "$PY" -c '
import json, sys
for l in sys.stdin:
    e = json.loads(l)
    print("epoch %d: test accuracy %.4f, %.1f s" % (e["epoch"], e["test_accuracy"], e["epoch_s"]))'
grep -o "worker [0-9]: peak RSS [0-9.]* MB" "$WORK/launch.log" || fail "no peak RSS logged"
check "$acc >= 0.91"
check "$rss > 0"
pass "cnn test accuracy $acc"
