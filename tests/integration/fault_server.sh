# Kill -9 one of 2 shards in the middle of a BSP Fashion-MNIST job that
# checkpoints every 20 clocks; ps-launch restarts it with the same command.
# The job finishes, and its saved model equals that of an uninterrupted run
# with the same seed (max abs difference 0). (Corrupt and truncated
# checkpoints: tests/unit/test_checkpoint.c.)
. "$(dirname "$0")/lib.sh"

run() { # NAME [extra ps-launch args]
    local name=$1; shift
    "$BIN/ps-launch" --servers 2 --workers 2 --config "$SRC/deploy/examples/fashion-mlp.conf" \
        --set hidden=128 --set max_steps=500 --set eval_every=0 --set eval_every_steps=100 \
        --set heartbeat_ms=200 --server-set checkpoint_every=20 --timeout 300 \
        --save-model "$WORK/$name" "$@" >"$WORK/$name.out" 2>"$WORK/$name.log" &
    LAUNCH_PID=$!
    STARTED_PIDS+=("$LAUNCH_PID")
}

run plain
wait "$LAUNCH_PID" || fail "uninterrupted run exited $?"

run killed --restart-servers
wait_for "$WORK/killed.out" '"event":"eval"' 120
victim=$(grep -o 'ps-server\[[0-9]*\] I ready: endpoint .* shard 1 of 2' "$WORK/killed.log" | head -1 | grep -o '\[[0-9]*\]' | tr -d '[]')
[ -n "$victim" ] || fail "no pid for shard 1"
kill -KILL "$victim"
killed_at=$(date +%s.%N)
wait_for "$WORK/killed.log" "restored from checkpoint at clock" 30
# the workers resume: with a rollback when the other shard got ahead of the
# restored checkpoint, without one when the kill landed on a checkpoint
wait_for "$WORK/killed.log" "worker [01]: rejoined at clock" 60
wait "$LAUNCH_PID" || fail "run with a killed shard exited $?"
restored=$(grep -o 'restored from checkpoint at clock [0-9]*' "$WORK/killed.log" | head -1)
rollback=$(grep -o 'rolled back to clock [0-9]*' "$WORK/killed.log" | head -1)

"$PY" - "$WORK" <<'PYEOF' || fail "models differ"
import json, sys, numpy as np
w = sys.argv[1]
meta = json.load(open(f"{w}/plain/model.json"))
diff = max(float(np.abs(np.load(f"{w}/plain/{t['file']}") - np.load(f"{w}/killed/{t['file']}")).max())
           for t in meta["tables"])
print(f"max abs difference after a shard crash: {diff}")
assert diff == 0.0, diff
PYEOF
pass "shard 1 killed and restarted: $restored, ${rollback:-no rollback needed}, job finished with the uninterrupted model"

