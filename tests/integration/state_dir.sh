# A checkpoint directory that cannot take checkpoints is found at once:
# a read-only one or a full one stops ps-server at start, naming the
# directory and the cause; one that fills up during a job makes every
# failed checkpoint a logged error and a counted metric while training
# goes on. Runs in a private mount namespace with small tmpfs mounts
# (skipped, with the reason, where mounts are not permitted).
if [ -z "${PS_IN_MOUNT_NS:-}" ]; then
    probe=$(mktemp -d)
    if ! unshare -m sh -c "mount -t tmpfs -o size=64k t '$probe'" 2>/dev/null; then
        rmdir "$probe"
        echo "skip: cannot make a private mount namespace with tmpfs here"
        exit 77
    fi
    rmdir "$probe"
    exec env PS_IN_MOUNT_NS=1 unshare -m --propagation private bash "$0" "$@"
fi
. "$(dirname "$0")/lib.sh"
cleanup_also 'umount "$WORK/ro" "$WORK/full" "$WORK/small" 2>/dev/null'

mkdir -p "$WORK/ro" "$WORK/full" "$WORK/small"
mount -t tmpfs -o size=1m,ro ro "$WORK/ro"
mount -t tmpfs -o size=64k full "$WORK/full"
head -c 65536 /dev/zero > "$WORK/full/filler" 2>/dev/null || true
mount -t tmpfs -o size=3m small "$WORK/small"

for d in ro full; do
    rc=0
    timeout -k 10 10 "$BIN/ps-server" --port 0 --state-dir "$WORK/$d/state" 2>"$WORK/$d.log" || rc=$?
    check "$rc != 0 and $rc != 124"
    grep -q "state_dir '$WORK/$d/state'" "$WORK/$d.log" || fail "$d: the directory is not named: $(cat "$WORK/$d.log")"
    pass "$d state_dir: exit $rc at start: $(grep -o "state_dir.*" "$WORK/$d.log" | head -1)"
done

# a 3 MB state_dir and checkpoints of about 2.5 MB each: the second fails
start_server s 0 1 --state-dir "$WORK/small/state" --checkpoint-every 20 --stats-socket "$WORK/s.sock"
"$BIN/ps-worker" --servers "$EP_s" $(fashion_flags) --model mlp --hidden 256 --max_steps 200 \
    --eval_every 0 >"$WORK/w.out" 2>"$WORK/w.log" || fail "training stopped when checkpoints failed"
grep -q "No space left on device" "$WORK/s.log" || fail "no ENOSPC in the server log"
failed=$("$BIN/ps-ctl" -s "$WORK/s.sock" metrics | awk '/^ps_checkpoints_total\{result="failed"\}/{print $2}')
check "${failed:-0} >= 1"
pass "state_dir full during a job: $failed checkpoints failed, each logged ($(grep -o "E .\{0,100\}No space left on device" "$WORK/s.log" | head -1)); training finished"
