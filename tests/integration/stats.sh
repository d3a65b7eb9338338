# The stats socket and ps-ctl against a running job; its numbers agree with
# the worker's summary at the end; sd_notify: READY=1, STATUS= and
# WATCHDOG=1 arrive on a NOTIFY_SOCKET the test creates.
. "$(dirname "$0")/lib.sh"
CTL="$BIN/ps-ctl"

# 1. a launched job, queried while it runs
"$BIN/ps-launch" --servers 2 --workers 2 --config "$SRC/deploy/examples/fashion-mlp.conf" \
    --set hidden=128 --set epochs=2 --set eval_every_steps=100 --set heartbeat_ms=100 \
    --keep-state >"$WORK/job.out" 2>"$WORK/job.log" &
STARTED_PIDS+=("$!")
launch=$!
wait_for "$WORK/job.out" '"event":"eval"' 60
dir=$(grep -o "stats sockets [^ ]*/server-N.sock" "$WORK/job.log" | head -1 | sed 's/stats sockets //; s|/server-N.sock||')
sock="$dir/server-0.sock"
[ -S "$sock" ] || fail "no stats socket at '$sock'"
check "'$(stat -c %a "$sock")' == '660'"
"$CTL" -s "$sock" show workers > "$WORK/workers.txt" || fail "show workers failed"
grep -qE "^launch +0 +live +127.0.0.1" "$WORK/workers.txt" || fail "rank 0 not live in: $(cat "$WORK/workers.txt")"
grep -qE "^launch +1 +live" "$WORK/workers.txt" || fail "rank 1 not live"
# samples_per_s is a rate between heartbeats: wait (10 s) until both
# workers have reported progress since their previous one. The tables are a
# snapshot the shard publishes every poll_ms (100): one taken before the
# eval at step 100 can show clock 93 (ASan CI, 250 steps/s), so wait for a
# newer one too.
deadline=$((SECONDS + 10 * TIME_SCALE))
until "$CTL" -s "$sock" --json show workers > "$WORK/workers.json" &&
    "$PY" -c 'import json, sys; w = json.load(open(sys.argv[1])); sys.exit(0 if len(w) == 2 and all(x["samples_per_s"] > 0 and x["clock"] >= 100 for x in w) else 1)' "$WORK/workers.json"; do
    [ $SECONDS -lt $deadline ] || fail "no samples_per_s > 0 and clock >= 100 for both workers after 10 s: $(cat "$WORK/workers.json")"
    sleep 0.1
done
"$CTL" -s "$sock" --json show info > "$WORK/info.json"
"$CTL" -s "$sock" --json show tables > "$WORK/tables.json"
"$CTL" -s "$sock" show tables | grep -c "dense1.W" >/dev/null || fail "show tables lacks dense1.W"
"$CTL" -s "$sock" show config | grep -c "^shard 0" >/dev/null || fail "show config lacks shard"
"$CTL" -s "$sock" metrics > "$WORK/metrics.txt"
"$CTL" -s "$sock" help | grep -c "show workers" >/dev/null || fail "help"
"$CTL" -s "$sock" save | grep -c "ok: checkpoint requested" >/dev/null || fail "save"
rc=0; "$CTL" -s "$sock" show nonsense > "$WORK/bad.txt" || rc=$?
check "$rc == 1"
grep -q "error: unknown command" "$WORK/bad.txt" || fail "no error for a bad command"
"$PY" - "$WORK" <<'PYEOF' || fail "JSON replies"
import json, sys
w = sys.argv[1]
workers = json.load(open(f"{w}/workers.json"))
assert {x["rank"] for x in workers} == {0, 1}, workers
assert all(x["state"] == "live" and x["clock"] >= 100 for x in workers), workers
assert all(x["heartbeat_age_ms"] < 2000 and x["samples_per_s"] > 0 and x["loss"] > 0 for x in workers), workers
info = json.load(open(f"{w}/info.json"))
assert info["role"] == "server" and info["requests"]["PUSH_PULL"] > 0 and info["bytes_received"] > 0
tables = json.load(open(f"{w}/tables.json"))
# a weight matrix may travel as row slices: "dense1.W" or "dense1.W[0:112]", ...
assert any(t["name"].split("[")[0] == "dense1.W" and t["optimizer"] == "adam" for t in tables), tables
m = open(f"{w}/metrics.txt").read()
for needed in ('ps_requests_total{op="PUSH_PULL"}', "ps_push_seconds_bucket", "ps_pull_seconds_count",
               "ps_build_info{", "# TYPE ps_received_bytes_total counter"):
    assert needed in m, needed
PYEOF
wait "$launch" || fail "job exited $?"
rm -rf "$dir"
pass "ps-ctl show workers/info/tables/config, metrics, save, help and errors on a live job"

# 2. the numbers agree with the worker's summary (1 worker, 1 shard)
start_server s 0 1 --stats-socket "$WORK/s.sock" --metrics-port 0
"$BIN/ps-worker" --servers "$EP_s" $(fashion_flags) --model softmax --lr 0.1 --max_steps 200 \
    --heartbeat_ms 100 >"$WORK/one.out" 2>"$WORK/one.log" || fail "worker exited $?"
sleep_until_published() { # the loop publishes every poll_ms (100 ms): wait for the BYE
    local deadline=$((SECONDS + 10))
    until "$CTL" -s "$WORK/s.sock" show info | grep -c "requests_BYE:1" >/dev/null; do
        [ $SECONDS -lt $deadline ] || fail "stats never showed the BYE"
        sleep 0.05
    done
}
sleep_until_published
"$CTL" -s "$WORK/s.sock" --json show info > "$WORK/final.json"
"$PY" - "$WORK" <<'PYEOF' || fail "stats disagree with the summary"
import json, sys
w = sys.argv[1]
info = json.load(open(f"{w}/final.json"))
done = [json.loads(l) for l in open(f"{w}/one.out") if '"done"' in l][-1]
assert info["bytes_received"] == done["bytes_sent"], (info["bytes_received"], done["bytes_sent"])
assert info["bytes_sent"] == done["bytes_received"], (info["bytes_sent"], done["bytes_received"])
assert info["requests"]["PUSH_PULL"] == done["steps"] * 2, (info["requests"], done["steps"])
assert info["last_job_clock"] == done["steps"], (info["last_job_clock"], done["steps"])
print(f"server received {info['bytes_received']} = worker sent {done['bytes_sent']}; "
      f"{info['requests']['PUSH_PULL']} PUSH_PULL = {done['steps']} steps x 2 tables; "
      f"final clock {info['last_job_clock']} = {done['steps']} steps")
PYEOF

pass "server counters equal the worker's summary"

# 3. sd_notify
"$PY" - "$BIN" "$WORK" <<'PYEOF' || fail "sd_notify"
import os, socket, subprocess, sys, time
bin_dir, work = sys.argv[1], sys.argv[2]
path = f"{work}/notify.sock"
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
s.settimeout(0.2)
env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC="400000")
p = subprocess.Popen([f"{bin_dir}/ps-server", "--port", "0"], env=env, stderr=subprocess.DEVNULL)
seen, deadline = set(), time.time() + 10
try:
    while time.time() < deadline and not {"READY=1", "STATUS", "WATCHDOG=1"} <= seen:
        try:
            msg = s.recv(4096).decode()
        except socket.timeout:
            continue
        for line in msg.split("\n"):
            seen.add("STATUS" if line.startswith("STATUS=") else line)
finally:
    p.terminate()
    p.wait(timeout=5)
assert {"READY=1", "STATUS", "WATCHDOG=1"} <= seen, seen
print("received", sorted(x for x in seen if x in ("READY=1", "STATUS", "WATCHDOG=1")))
PYEOF
pass "READY=1, STATUS= and WATCHDOG=1 received on NOTIFY_SOCKET"

# 4. under systemd (JOURNAL_STREAM names fd 2's dev:ino) log lines carry <N>
# priorities, no timestamp; an inherited JOURNAL_STREAM with stderr sent to a
# file (another inode) keeps timestamps and pids
: > "$WORK/journal.log"
JOURNAL_STREAM=$(stat -c %d:%i "$WORK/journal.log") "$BIN/ps-server" --port 0 \
    --ready-file "$WORK/j.ready" 2>>"$WORK/journal.log" &
jpid=$!
STARTED_PIDS+=("$jpid")
wait_for "$WORK/j.ready" endpoint 10
kill -TERM "$jpid"
wait "$jpid" || fail "server exited $?"
grep -q "^<6>ready: endpoint 'tcp://" "$WORK/journal.log" || fail "no <6> prefix: $(head -2 "$WORK/journal.log")"
! grep -q "^20[0-9][0-9]-" "$WORK/journal.log" || fail "timestamps under journald"
JOURNAL_STREAM=8:1234 "$BIN/ps-server" --port 0 --ready-file "$WORK/f.ready" 2>"$WORK/notjournal.log" &
jpid=$!
STARTED_PIDS+=("$jpid")
wait_for "$WORK/f.ready" endpoint 10
kill -TERM "$jpid"
wait "$jpid" || fail "server exited $?"
grep -qE "^20[0-9][0-9]-.*ps-server\[$jpid\] I ready: endpoint" "$WORK/notjournal.log" \
    || fail "JOURNAL_STREAM of another stream trusted: $(head -2 "$WORK/notjournal.log")"
pass "journald lines: $(head -1 "$WORK/journal.log" | cut -c1-60); a file gets timestamps"

# 5. a worker's own stats socket
start_server ws 0 1
"$BIN/ps-worker" --servers "$EP_ws" $(fashion_flags) --model mlp --hidden 128 --epochs 1 \
    --eval_every_steps 100 --stats_socket "$WORK/worker.sock" >"$WORK/ws.out" 2>"$WORK/ws.log" &
wp=$!
STARTED_PIDS+=("$wp")
wait_for "$WORK/ws.out" '"event":"eval"' 60
"$CTL" -s "$WORK/worker.sock" show info > "$WORK/winfo.txt" || fail "worker show info"
grep -q "^role:worker" "$WORK/winfo.txt" && grep -qE "^clock:[1-9]" "$WORK/winfo.txt" || fail "worker info: $(cat "$WORK/winfo.txt")"
"$CTL" -s "$WORK/worker.sock" show tables | grep -c "dense1.W" >/dev/null || fail "worker tables"
"$CTL" -s "$WORK/worker.sock" metrics | grep -c "^ps_worker_samples_total [1-9]" >/dev/null || fail "worker metrics"
wait "$wp" || fail "worker exited $?"
pass "ps-ctl against a worker: $(grep -E '^(clock|samples_per_s):' "$WORK/winfo.txt" | tr '\n' ' ')"
