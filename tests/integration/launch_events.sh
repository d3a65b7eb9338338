# ps-launch reads the event lines of a --worker-command worker, a foreign
# program that may print anything: numbers no int64 holds, a stage past
# the end, lines that are not events, a line of 200 KB. It must summarise
# what it can (the job's summary still one JSON line on stdout) and exit
# with the workers' status, never trip on the numbers (this test's
# sanitizer build stops at undefined behaviour).
. "$(dirname "$0")/lib.sh"

cat >"$WORK/worker.sh" <<'W'
echo 'not json'
echo '{"event":5}'
head -c 200000 /dev/zero | tr '\0' 'x'; echo
if [ "$PS_RANK" = 0 ]; then
    echo '{"event":"done","rank":0,"stage":0,"replica":0,"stage_busy_s":1e300,"samples":9e18,"bytes_sent":9e18,"bubble_fraction":0.5,"steps":-9.3e18}'
else
    echo '{"event":"done","rank":1,"stage":1e300,"stage_busy_s":-1e300,"samples":9e18,"peak_rss_bytes":1e308,"bytes_sent":9e18}'
fi
W
rc=0
timeout -k 10 120 "$BIN/ps-launch" --servers 1 --workers 2 --worker-command "sh $WORK/worker.sh" \
    >"$WORK/out.log" 2>"$WORK/launch.log" || rc=$?
check "$rc == 0"
summary=$(grep '"event":"done"' "$WORK/out.log" | tail -1)
[ -n "$summary" ] || fail "no summary line: $(cat "$WORK/out.log")"
echo "$summary" | "$PY" -c 'import json, sys; e = json.loads(sys.stdin.read())
assert e["event"] == "done" and e["samples"] >= 0 and e["bytes_sent"] >= 0, e' ||
    fail "the summary is not one JSON event: $summary"
pass "hostile event lines from a foreign worker: summarised, exit 0 ($summary)"

# the same workers failing: ps-launch says so
sed -i 's/^fi$/fi\nexit 3/' "$WORK/worker.sh"
rc=0
timeout -k 10 120 "$BIN/ps-launch" --servers 1 --workers 2 --worker-command "sh $WORK/worker.sh" \
    >"$WORK/out2.log" 2>"$WORK/launch2.log" || rc=$?
check "$rc != 0 and $rc != 124"
pass "the same workers exiting 3: ps-launch exits $rc"
