# BSP, SSP and ASP jobs each finish and learn (softmax on Fashion-MNIST,
# 400 steps, 2 servers x 2 workers through ps-launch).
. "$(dirname "$0")/lib.sh"
for s in 0 2 -1; do
    out="$WORK/run$s.out"
    timeout -k 10 240 "$BIN/ps-launch" --servers 2 --workers 2 \
        --config "$SRC/deploy/examples/fashion-softmax.conf" \
        --set max_staleness=$s --set max_steps=400 --set lr_schedule=constant \
        >"$out" 2>"$WORK/launch$s.log" || fail "max_staleness $s: ps-launch exited $?"
    acc=$(json "$out" test_accuracy)
    steps=$(json "$out" steps)
    check "$steps == 400"
    # BSP's model is the same every run (0.8019); SSP's and ASP's depend on
    # timing: 0.745-0.82 seen on a loaded 2-core machine (2026-12-02). An
    # untrained model scores 0.10, one that learns wrongly far below these.
    if [ "$s" = 0 ]; then check "$acc > 0.75"; else check "$acc > 0.70"; fi
    pass "max_staleness $s: 400 steps, test accuracy $acc"
done
