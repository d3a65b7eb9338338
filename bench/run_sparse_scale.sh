#!/usr/bin/env bash
# run_sparse_scale.sh [BUILD_DIR] [KEYS] - pushes KEYS (default 20,000,000)
# distinct keys (FTRL, dim 1) through 4 ps-server processes on 127.0.0.1,
# then reads each shard's key count, table bytes and resident memory from
# its stats socket: keys per shard against the mean, and bytes per key =
# RSS growth / keys (everything: rows, FTRL state, hash index, allocator).
# PS_CHECKPOINT_EVERY=N gives each shard a state_dir and a checkpoint every
# N clocks (bench/run_sparse_ckpt_cost.sh compares with and without).
# PS_STEADY_SECONDS=S then trains S seconds on the full table (pull + push
# of known keys) and prints that phase's keys/s too (sparse_steady).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
keys=${2:-20000000}
BIN=$PWD/$build/bin
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
eps=""
for s in 0 1 2 3; do
    "$BIN/ps-server" --shard $s --shards 4 --port 0 --ready-file "$work/s$s.ready" \
        --stats-socket "$work/s$s.sock" --heartbeat-timeout-ms 60000 \
        ${PS_CHECKPOINT_EVERY:+--state-dir "$work/state-$s" --checkpoint-every "$PS_CHECKPOINT_EVERY"} \
        2>"$work/s$s.log" &
    pids+=($!)
done
for s in 0 1 2 3; do
    for _ in $(seq 100); do [ -f "$work/s$s.ready" ] && break; sleep 0.1; done
    eps+="${eps:+,}$(awk '/^endpoint/{print $2}' "$work/s$s.ready")"
done
info() { "$BIN/ps-ctl" -s "$work/s$1.sock" --json show info; }
for s in 0 1 2 3; do info $s > "$work/before-$s.json"; done
mkfifo "$work/hold"
PS_BENCH_HOLD=1 "$BIN/bench_sparse" --endpoints "$eps" --keys "$keys" --batch 100000 \
    ${PS_STEADY_SECONDS:+--seconds "$PS_STEADY_SECONDS"} \
    < "$work/hold" > "$work/bench.out" &
bench=$!
pids+=($bench)
exec 3>"$work/hold"
until grep -q sparse_scale "$work/bench.out" 2>/dev/null; do
    kill -0 $bench 2>/dev/null || { echo "bench_sparse failed" >&2; exit 1; }
    sleep 0.5
done
sleep 1.5 # one stats publication period after the last push
for s in 0 1 2 3; do
    info $s > "$work/after-$s.json"
    "$BIN/ps-ctl" -s "$work/s$s.sock" --json show tables > "$work/tables-$s.json"
done
if [ -n "${PS_CHECKPOINT_EVERY:-}" ]; then
    # the files the shards hold while the job lives (its end removes them)
    n=$(find "$work" -path '*/state-*/scale/ckpt-*.psc' | wc -l)
    bytes=$(find "$work" -path '*/state-*/scale/ckpt-*.psc' -printf '%s\n' | awk '{s+=$1} END {print s+0}')
    echo "{\"bench\":\"sparse_scale_checkpoints\",\"every\":$PS_CHECKPOINT_EVERY,\"files_held\":$n,\"bytes_held\":$bytes}" >> "$work/ckpt.out"
fi
echo >&3
wait $bench
/usr/bin/python3 - "$work" <<'PYEOF'
import json, sys
w = sys.argv[1]
bench = json.loads(open(f"{w}/bench.out").read().splitlines()[-1])
print(json.dumps(bench))
for line in open(f"{w}/bench.out").read().splitlines():
    if '"sparse_steady"' in line:
        print(line)
try:
    ck = json.loads(open(f"{w}/ckpt.out").read())
    ck["written"] = sum(json.load(open(f"{w}/after-{s}.json")).get("checkpoints_written", 0)
                        for s in range(4))
    print(json.dumps(ck))
except FileNotFoundError:
    pass
keys, growth, table_bytes = [], [], []
for s in range(4):
    before = json.load(open(f"{w}/before-{s}.json"))["rss_bytes"]
    after = json.load(open(f"{w}/after-{s}.json"))["rss_bytes"]
    t = [x for x in json.load(open(f"{w}/tables-{s}.json")) if x["kind"] == "sparse"][0]
    keys.append(t["keys_here"]); growth.append(after - before); table_bytes.append(t["bytes"])
mean = sum(keys) / 4
print(json.dumps({"bench": "sparse_scale_memory", "keys_total": sum(keys), "keys_per_shard": keys,
                  "max_deviation_from_mean": round(max(abs(k - mean) for k in keys) / mean, 4),
                  "rss_bytes_per_key": round(sum(growth) / sum(keys), 2),
                  "table_bytes_per_key": round(sum(table_bytes) / sum(keys), 2),
                  "rss_growth_mb_per_shard": [round(g / 2**20) for g in growth]}))
PYEOF
