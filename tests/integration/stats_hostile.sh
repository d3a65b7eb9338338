# The real ps-server's stats socket and /metrics under hostile clients:
# 1. headless Chromium opens /metrics (its request is over 600 bytes);
# 2. 300 slow HTTP and 300 slow line clients: all but the caps are refused
#    at once, the rest are closed by the deadlines (10 s), a worker trains
#    meanwhile, memory stays bounded;
# 3. a client floods commands and never reads: memory stays bounded and
#    ps-ctl is answered meanwhile;
# 4. SIGTERM with every kind of client still connected exits at once.
. "$(dirname "$0")/lib.sh"
CTL="$BIN/ps-ctl"
command -v chromium >/dev/null || fail "chromium missing (tools/setup.sh installs it)"
# Under AddressSanitizer freed replies sit in its 256 MB quarantine and count
# as RSS; keep it small so the figures below measure the server, not ASan.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=4"

start_server h 0 1 --stats-socket "$WORK/h.sock" --stats-port 0 --metrics-port 0
mport=$(awk '/^metrics_port/{print $2}' "$WORK/h.ready")
sport=$(awk '/^stats_port/{print $2}' "$WORK/h.ready")
check "$mport > 0 and $sport > 0"
rss() { awk '/^VmRSS/{print $2}' "/proc/$PID_h/status"; }

# 1. a real browser
timeout -k 10 90 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$WORK/chromium-profile" --dump-dom "http://127.0.0.1:$mport/metrics" \
    >"$WORK/dom.html" 2>"$WORK/chromium.log" || fail "chromium exited $?"
grep -q "ps_build_info{version=" "$WORK/dom.html" || fail "Chromium did not see the metrics: $(head -c 300 "$WORK/dom.html")"
pass "headless Chromium shows /metrics ($(grep -c '^ps_' "$WORK/dom.html") ps_ lines in its DOM)"

# 2. slow clients (and a worker training meanwhile)
base=$(rss)
"$PY" - "$WORK/h.sock" "$mport" "$sport" >"$WORK/slow.txt" <<'PYEOF' &
import socket, sys, time
path, mport, sport = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def unix():
    s = socket.socket(socket.AF_UNIX); s.connect(path); return s
def tcp(port):
    s = socket.create_connection(("127.0.0.1", port)); return s
def send(s, data):
    try:
        s.sendall(data)
    except OSError:
        pass  # refused over a cap and closed already: its reply is read below
clients = []
for i in range(300):
    h = tcp(mport); send(h, b"GET /metr"); clients.append(("http", h))
    l = unix() if i % 2 else tcp(sport); send(l, b"show in"); clients.append(("line", l))
time.sleep(0.5)
refused = {"http": 0, "line": 0}
for kind, s in clients:
    s.setblocking(False)
    try:
        data = s.recv(4096)
    except BlockingIOError:
        continue
    except ConnectionError:
        data = b""
    if data.startswith(b"HTTP/1.1 503 ") or data.startswith(b"error: too many clients"):
        refused[kind] += 1
print("refused", refused["http"], refused["line"], flush=True)
deadline = time.time() + 25
left = [s for _, s in clients]
while left and time.time() < deadline:
    still = []
    for s in left:
        try:
            if s.recv(4096) == b"":
                continue
        except BlockingIOError:
            still.append(s); continue
        except ConnectionError:
            continue
    left = still
    time.sleep(0.1)
print("open_after", len(left), "closed_s", round(25 - (deadline - time.time()), 1), flush=True)
PYEOF
slow=$!
STARTED_PIDS+=("$slow")
wait_for "$WORK/slow.txt" "^refused" 30
rss_slow=$(rss)
"$BIN/ps-worker" --servers "$EP_h" $(fashion_flags) --model softmax --lr 0.1 --max_steps 50 \
    >"$WORK/w.out" 2>"$WORK/w.log" || fail "worker exited $? while slow clients were connected"
wait "$slow" || fail "slow-client script failed"
read -r _ http_refused line_refused < <(grep '^refused' "$WORK/slow.txt")
check "$http_refused >= 300 - 32 and $line_refused == 300 - 64"
grep -q "^open_after 0 " "$WORK/slow.txt" || fail "slow clients still open: $(cat "$WORK/slow.txt")"
check "$rss_slow - $base < 16 * 1024"
pass "300+300 slow clients: $http_refused HTTP and $line_refused line refused at once, the rest closed after $(awk '/open_after/{print $4}' "$WORK/slow.txt") s; RSS ${base} -> ${rss_slow} KB; a worker trained meanwhile"

# 3. a flooding client that never reads (TCP stats port)
base=$(rss)
"$PY" - "$sport" >"$WORK/flood.txt" <<'PYEOF' &
import socket, sys, time, select
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.setblocking(False)
chunk = b"show info\nmetrics\nshow config\n" * 1000
sent, stalled = 0, time.time()
while sent < 64 << 20 and time.time() - stalled < 2:
    try:
        sent += s.send(chunk); stalled = time.time()
    except BlockingIOError:
        select.select([], [s], [], 0.1)
print("sent", sent, flush=True)
time.sleep(30)  # hold the connection, never reading; the test ends us first
PYEOF
flood=$!
STARTED_PIDS+=("$flood")
wait_for "$WORK/flood.txt" "^sent" 30
rss_flood=$(rss)
t0=$(date +%s%N)
"$CTL" -s "$WORK/h.sock" --timeout 2000 show info | grep -c "^role:server" >/dev/null || fail "show info not answered during the flood"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
sent=$(awk '/^sent/{print $2}' "$WORK/flood.txt")
check "$rss_flood - $base < 16 * 1024"
check "$sent < 32 << 20"
pass "flood: $sent bytes of commands taken (kernel buffers + server) before the sends blocked; RSS ${base} -> ${rss_flood} KB; show info answered in ${ms} ms"

# 4. SIGTERM with slow, partial and flooding clients connected
"$PY" - "$WORK/h.sock" "$mport" <<'PYEOF' &
import socket, sys, time
hold = []
for i in range(20):
    u = socket.socket(socket.AF_UNIX); u.connect(sys.argv[1]); u.sendall(b"show info\nshow in"); hold.append(u)
    h = socket.create_connection(("127.0.0.1", int(sys.argv[2]))); h.sendall(b"GET /"); hold.append(h)
time.sleep(30)
PYEOF
holder=$!
STARTED_PIDS+=("$holder")
sleep 0.3 # let the holder connect; what is measured below has its own deadline
t0=$(date +%s%N)
kill -TERM "$PID_h"
deadline=$((SECONDS + 5))
while kill -0 "$PID_h" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || fail "ps-server still running 5 s after SIGTERM"
    sleep 0.02
done
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
wait "$PID_h" || fail "server exited $? after SIGTERM"
check "$ms < 2000"
grep -q "shutdown: signal 15" "$WORK/h.log" || fail "no shutdown line"
pass "SIGTERM with 40 partial clients and a flooder connected: exited 0 in ${ms} ms"
