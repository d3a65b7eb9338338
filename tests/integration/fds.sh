# A shard short of descriptors says so and recovers: with a 128-descriptor
# limit and 200 connections that never start a handshake, it warns once
# open descriptors pass 90% of the limit (a worker's HELLO would otherwise
# hang with no word on either side), closes them after handshake_timeout_ms
# (2 s here) although the client keeps them open, and a worker then trains.
. "$(dirname "$0")/lib.sh"
command -v prlimit >/dev/null || { echo "skip: no prlimit"; exit 77; }
ready="$WORK/s.ready"
prlimit --nofile=128:128 "$BIN/ps-server" --port 0 --ready-file "$ready" \
    --handshake-timeout-ms 2000 2>"$WORK/s.log" &
srv=$!
STARTED_PIDS+=("$srv")
wait_for "$ready" endpoint 10
ep=$(awk '/^endpoint/{print $2}' "$ready")
port=${ep##*:}
"$PY" - "$port" "$WORK/s.log" <<'PYEOF' || fail "no warning about descriptors"
import socket, sys, time
port, log = int(sys.argv[1]), sys.argv[2]
conns = []
for _ in range(200):
    s = socket.socket()
    s.settimeout(5)
    s.connect(("127.0.0.1", port))  # the kernel's backlog takes it even when accept fails
    conns.append(s)
deadline = time.time() + 20
want = "descriptors open: new connections will fail"
while time.time() < deadline and want not in open(log).read():
    time.sleep(0.05)
if want not in open(log).read():
    sys.exit(f"no '{want}' in the server log")
# the server hangs up on every one that never handshook (recv -> b"")
closed, deadline = set(), time.time() + 30
while len(closed) < len(conns) and time.time() < deadline:
    for i, s in enumerate(conns):
        if i in closed:
            continue
        s.setblocking(False)
        try:
            if s.recv(16) == b"":
                closed.add(i)
        except BlockingIOError:
            pass
        except OSError:
            closed.add(i)
    time.sleep(0.05)
if len(closed) < len(conns):
    sys.exit(f"{len(conns) - len(closed)} of {len(conns)} idle connections still open after 30 s")
PYEOF
grep -o "[0-9]* of 128 descriptors open" "$WORK/s.log" | head -1 > "$WORK/seen"
"$BIN/ps-worker" --servers "$ep" $(fashion_flags) --model softmax --max_steps 50 --eval_every 0 \
    >"$WORK/w.out" 2>"$WORK/w.log" || fail "a worker could not train after the flood: $(tail -2 "$WORK/w.log")"
kill -0 "$srv" || fail "the server died"
pass "128-descriptor limit, 200 idle connections: warned ($(cat "$WORK/seen")), closed them all, then a worker trained"
