# Done-when: softmax regression on Fashion-MNIST, 2 servers x 2 workers,
# 10 epochs, reaches test accuracy >= 0.835.
. "$(dirname "$0")/lib.sh"
timeout -k 10 500 "$BIN/ps-launch" --servers 2 --workers 2 \
    --config "$SRC/deploy/examples/fashion-softmax.conf" \
    >"$WORK/out" 2>"$WORK/launch.log" || fail "ps-launch exited $?"
check "$(grep -c '"event":"epoch"' "$WORK/out") == 10"
acc=$(json "$WORK/out" test_accuracy)
check "$acc >= 0.835"
pass "softmax test accuracy $acc"
