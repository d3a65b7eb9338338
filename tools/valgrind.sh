#!/usr/bin/env bash
# valgrind.sh [BUILD_DIR] - Valgrind memcheck over the unit tests and a short
# real job (one ps-server, one ps-worker training softmax for 30 steps on
# Fashion-MNIST over 127.0.0.1). Fails on any memory error or definite leak.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
VG=(valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect)
for t in config wire optim table model data npy file log half loss_scale checkpoint client_server; do
    "${VG[@]}" "$build/bin/test_$t" >/dev/null 2>"$build/valgrind-$t.log" ||
        { echo "FAIL: valgrind test_$t" >&2; cat "$build/valgrind-$t.log" >&2; exit 1; }
    echo "valgrind: test_$t clean"
done
work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
# Under Valgrind every thread runs in turn and ~20x slower: generous
# liveness timeouts, so a slow heartbeat is not taken for a dead worker.
"${VG[@]}" "$build/bin/ps-server" --port 0 --ready-file "$work/ready" \
    --heartbeat-timeout-ms 600000 2>"$work/server.log" &
server=$!
for _ in $(seq 300); do [ -f "$work/ready" ] && break; sleep 0.1; done
[ -f "$work/ready" ] || { echo "FAIL: ps-server under valgrind not ready in 30 s" >&2; exit 1; }
ep=$(awk '/^endpoint/{print $2}' "$work/ready")
FM=/usr/share/datasets/fashion-mnist
# blas_core openblas: auto may execute the worker again with other kernels,
# and that run would escape Valgrind (no --trace-children).
"${VG[@]}" "$build/bin/ps-worker" --servers "$ep" --model softmax --max_steps 30 --lr 0.1 \
    --blas_core openblas \
    --data_format idx --train_data $FM/train-images-idx3-ubyte.gz \
    --train_labels $FM/train-labels-idx1-ubyte.gz --test_data $FM/t10k-images-idx3-ubyte.gz \
    --test_labels $FM/t10k-labels-idx1-ubyte.gz --request_timeout_ms 120000 --server_timeout_ms 0 \
    >"$work/worker.out" 2>"$work/worker.log" ||
    { echo "FAIL: ps-worker under valgrind" >&2; cat "$work/worker.log" >&2; exit 1; }
kill -TERM "$server"
rc=0; wait "$server" || rc=$?
[ $rc -eq 0 ] || { echo "FAIL: ps-server under valgrind exited $rc" >&2; cat "$work/server.log" >&2; exit 1; }
echo "valgrind: ps-server and ps-worker (30 steps) clean"
