#!/usr/bin/env bash
# run_stream.sh [BUILD_DIR] [GB] [DIR] - a click data set of about GB
# gigabytes (default 10) of LIBSVM text, written by ps-clickgen as 16 files
# in DIR (default a new directory under /var/tmp; deleted at the end), is
# trained by 2 streaming workers (stream yes, each reading 8 of the files)
# against 2 shards, sparse LR with FTRL, 1 epoch, batch 1024. Prints, per
# worker, its peak RSS (getrusage = VmHWM), the bytes of the data it read
# against the data set, /proc/self/io's rchar and read_bytes, its reader
# wait against its wall time; then rank 0's test AUC against the true
# model's. Not in CI (tests/integration/stream.sh is its 50 MB version).
# Needs about GB gigabytes free in DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
gb=${2:-10}
BIN=$PWD/$build/bin
CONF=$PWD/deploy/examples/click-lr.conf
data=${3:-$(mktemp -d /var/tmp/ps-stream.XXXXXX)}
mkdir -p "$data"
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work" "$data"
}
trap cleanup EXIT
free_gb=$(df -P -BG "$data" | awk 'NR==2{print int($4)}')
[ "$free_gb" -gt "$(/usr/bin/python3 -c "print(int($gb) + 2)")" ] || { echo "run_stream: $data has ${free_gb} GB free" >&2; exit 1; }

# ps-clickgen defaults write about 69 bytes per sample
rows=$(/usr/bin/python3 -c "print(int($gb * 1e9 / 69))")
t0=$SECONDS
"$BIN/ps-clickgen" --rows "$rows" --parts 16 --test_rows 50000 --out "$data/train.svm" \
    --test_out "$data/test.svm" --truth "$data/truth.json" > "$work/gen.log"
size=$(cat "$data"/train.svm.* | wc -c)
echo "data: $rows samples, $size bytes in 16 files, written in $((SECONDS - t0)) s"

eps=""
for s in 0 1; do
    "$BIN/ps-server" --shard $s --shards 2 --port 0 --ready-file "$work/s$s.ready" \
        2>"$work/s$s.log" &
    pids+=($!)
done
for s in 0 1; do
    deadline=$((SECONDS + 10))
    until [ -f "$work/s$s.ready" ]; do
        [ $SECONDS -lt $deadline ] || { echo "shard $s not ready in 10 s" >&2; exit 1; }
        sleep 0.05
    done
    eps+="${eps:+,}$(awk '/^endpoint/{print $2}' "$work/s$s.ready")"
done
t0=$SECONDS
workers=()
for r in 0 1; do
    "$BIN/ps-worker" --servers "$eps" --rank $r --world 2 --config "$CONF" --stream yes \
        --train_data "$data/train.svm.*" --test_data "$data/test.svm" --epochs 1 \
        --batch_size 1024 --eval_every 0 --job stream-bench > "$work/w$r.out" 2> "$work/w$r.log" &
    workers+=($!)
    pids+=($!)
done
for p in "${workers[@]}"; do
    wait "$p" || { tail -5 "$work"/w*.log >&2; exit 1; }
done
echo "trained in $((SECONDS - t0)) s (2 workers x 2 shards)"
/usr/bin/python3 - "$work" "$size" "$data/truth.json" <<'PYEOF'
import json, sys
work, size, truth = sys.argv[1], int(sys.argv[2]), json.load(open(sys.argv[3]))
for r in (0, 1):
    d = [json.loads(l) for l in open(f"{work}/w{r}.out") if '"event":"done"' in l][-1]
    print(f"worker {r}: peak RSS {d['peak_rss_bytes'] / 2**20:.0f} MiB, data read "
          f"{d['data_bytes'] / size:.3f} of {size} bytes, rchar {d['io_rchar']}, read_bytes "
          f"{d['io_read_bytes']}, reader wait {d['reader_wait_s']:.2f} s of {d['wall_s']:.0f} s "
          f"({100 * d['reader_wait_s'] / d['wall_s']:.2f}%), {d['steps']} steps, "
          f"{d['samples']} samples")
    if r == 0:
        print(f"test AUC {d['test_auc']:.4f} (true model {truth['test_auc']:.4f})")
PYEOF
