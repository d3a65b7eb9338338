# An fp16 job whose loss scale is absurd overflows, skips those steps on
# every worker, halves the scale until it fits, and still learns.
. "$(dirname "$0")/lib.sh"
timeout -k 10 240 "$BIN/ps-launch" --servers 2 --workers 2 \
    --config "$SRC/deploy/examples/fashion-softmax.conf" --set precision=fp16 \
    --set loss_scale=1e12 --set max_steps=400 --set lr_schedule=constant \
    >"$WORK/out" 2>"$WORK/launch.log" || fail "ps-launch exited $?"
skipped=$(json "$WORK/out" skipped_steps)
check "$skipped >= 10"
grep -q "overflowed at clock 0; step skipped" "$WORK/launch.log" || fail "server did not log the skip"
check "$(grep -c 'fp16 overflow at clock' "$WORK/launch.log") == $skipped"
check "$(json "$WORK/out" test_accuracy) > 0.75"
pass "fp16 with loss scale 1e12: $skipped steps skipped, then accuracy $(json "$WORK/out" test_accuracy)"
