#!/usr/bin/env bash
# run_layers_vs_torch.sh - one training step (forward + backward, no
# optimizer) of the layer library against PyTorch on this machine, one
# thread each: ps's net_driver on OpenBLAS (OPENBLAS_NUM_THREADS=1) and
# torch.set_num_threads(1), the same models (tests/python/torch_nets.py),
# float32. Rounds alternate ps and torch so both see the same machine load;
# the ratio is of medians, ps / torch (< 1: ps is faster).
#   cnn: 1x28x28 conv2d(32,3,pad=1) relu maxpool(2) conv2d(64,3,pad=1) relu
#        maxpool(2) flatten dense(128) relu dense(10), batch 64
#   gpt: 4 layers, 4 heads, 128 wide, block 128, batch 8
# Debian's OpenBLAS falls back to its Prescott kernels on CPUs it does not
# know (docs/operations.md); then pass OPENBLAS_CORETYPE (e.g. SkylakeX).
# Usage: bench/run_layers_vs_torch.sh [BUILD_DIR] [ROUNDS]
set -euo pipefail
build=${1:-build}
rounds=${2:-5}
py=/usr/bin/python3
src=$(cd "$(dirname "$0")/.." && pwd)
driver="$build/bin/net_driver"
[ -x "$driver" ] || { echo "# $driver missing: build the net_driver target"; exit 1; }
"$py" -c "import torch" 2>/dev/null || { echo "# python3-torch not installed; skipped"; exit 0; }
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
cnn_in=1x28x28
cnn="conv2d(32,3,pad=1) relu maxpool(2) conv2d(64,3,pad=1) relu maxpool(2) flatten dense(128) relu dense(10) cross_entropy"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for r in $(seq "$rounds"); do
  "$driver" bench --spec "$cnn_in" "$cnn" --batch 64 --steps 10 >>"$work/ps_cnn"
  "$py" "$src/bench/torch_layers.py" --spec "$cnn_in" "$cnn" --batch 64 --steps 10 >>"$work/torch_cnn"
  "$driver" bench --gpt 4,4,128,128 --batch 8 --steps 5 >>"$work/ps_gpt"
  "$py" "$src/bench/torch_layers.py" --gpt 4,4,128,128 --batch 8 --steps 5 >>"$work/torch_gpt"
done
core=$("$py" - <<'PYEOF'
import ctypes, ctypes.util
lib = ctypes.CDLL(ctypes.util.find_library("openblas") or "libopenblas.so.0")
lib.openblas_get_corename.restype = ctypes.c_char_p
print(lib.openblas_get_corename().decode())
PYEOF
)
"$py" - "$work" "$core" "$(lscpu | sed -n 's/^Model name: *//p')" <<'PYEOF'
import json, statistics, sys
w, core, cpu = sys.argv[1:4]
def med(name):
    return statistics.median(json.loads(l)["ms_per_step"] for l in open(f"{w}/{name}"))
for model in ("cnn", "gpt"):
    ps, th = med(f"ps_{model}"), med(f"torch_{model}")
    print(json.dumps({"bench": "layers_vs_torch", "model": model, "metric": "ms_per_step",
                      "ps": ps, "baseline": "torch_1_thread", "baseline_value": th,
                      "ratio": round(ps / th, 3), "openblas_core": core, "cpu": cpu}))
PYEOF
