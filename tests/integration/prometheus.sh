# /metrics passes `promtool check metrics`, and a real Prometheus server
# scrapes a live ps-server: a counter queried back through Prometheus's HTTP
# API equals the one the server itself reports.
. "$(dirname "$0")/lib.sh"
for t in promtool prometheus; do
    command -v $t >/dev/null || fail "$t missing (tools/setup.sh installs prometheus)"
done
free_port() { "$PY" -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])"; }
http_get() { "$PY" -c "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())" "$1"; }

start_server m 0 1 --metrics-port 0 --stats-socket "$WORK/m.sock"
mport=$(awk '/^metrics_port/{print $2}' "$WORK/m.ready")
check "$mport > 0"
"$BIN/ps-worker" --servers "$EP_m" $(fashion_flags) --model softmax --lr 0.1 --max_steps 100 \
    >"$WORK/w.out" 2>"$WORK/w.log" || fail "worker exited $?"
wait_for_metric() { # wait until the server's own /metrics shows the BYE
    local deadline=$((SECONDS + 10))
    until http_get "http://127.0.0.1:$mport/metrics" | grep -c 'ps_requests_total{op="BYE"} 1' >/dev/null; do
        [ $SECONDS -lt $deadline ] || fail "/metrics never showed the BYE"
        sleep 0.05
    done
}
wait_for_metric
http_get "http://127.0.0.1:$mport/metrics" > "$WORK/metrics.txt"
promtool check metrics < "$WORK/metrics.txt" > "$WORK/promtool.txt" 2>&1 || { cat "$WORK/promtool.txt" >&2; fail "promtool check metrics"; }
[ ! -s "$WORK/promtool.txt" ] || { cat "$WORK/promtool.txt" >&2; fail "promtool found problems"; }
want=$(awk '$1=="ps_requests_total{op=\"PUSH_PULL\"}"{print $2}' "$WORK/metrics.txt")
check "$want > 0"
pass "GET /metrics is clean for promtool ($(grep -c '^ps_' "$WORK/metrics.txt") samples)"

pport=$(free_port)
cat > "$WORK/prometheus.yml" <<YML
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: ps
    static_configs:
      - targets: ['127.0.0.1:$mport']
YML
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
    --web.listen-address="127.0.0.1:$pport" >"$WORK/prometheus.log" 2>&1 &
STARTED_PIDS+=("$!")
deadline=$((SECONDS + 60))
got=""
until [ -n "$got" ]; do
    [ $SECONDS -lt $deadline ] || fail "Prometheus never returned ps_requests_total"
    got=$(http_get "http://127.0.0.1:$pport/api/v1/query?query=ps_requests_total%7Bop%3D%22PUSH_PULL%22%7D" 2>/dev/null \
        | "$PY" -c "import json,sys; r=json.load(sys.stdin)['data']['result']; print(r[0]['value'][1] if r else '')" 2>/dev/null || true)
    [ -n "$got" ] || sleep 0.2
done
check "$got == $want"
pass "Prometheus scraped ps-server: ps_requests_total{op=\"PUSH_PULL\"} = $got, as the server reports"
