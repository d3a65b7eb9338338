#!/usr/bin/env bash
# demo.sh - set up, build, and train the Fashion-MNIST MLP on a local
# cluster of 2 servers and 2 workers; the trained model goes to model/.
# The workers stream: the data set is converted once (ps-convert, into
# build/data/) to binary records, and each worker reads only its half of
# them, a reader thread a few batches ahead of training (docs/data.md).
# PS_DEMO_IN_MEMORY=1 trains as before, every worker holding it all.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
conf=deploy/examples/fashion-mlp.conf
if [ -n "${PS_DEMO_IN_MEMORY:-}" ]; then
    exec build/bin/ps-launch --servers 2 --workers 2 --config "$conf" --save-model model "$@"
fi
fm=/usr/share/datasets/fashion-mnist
data=build/data
mkdir -p "$data"
for set in train t10k; do
    out="$data/fashion-$set.rec"
    [ -s "$out" ] && continue
    build/bin/ps-convert --from idx --input "$fm/$set-images-idx3-ubyte.gz" \
        --labels "$fm/$set-labels-idx1-ubyte.gz" --out "$out.tmp" > /dev/null
    mv "$out.tmp" "$out"
done
exec build/bin/ps-launch --servers 2 --workers 2 --config "$conf" --set stream=yes \
    --set data_format=records --set train_data="$data/fashion-train.rec" --set train_labels= \
    --set test_data="$data/fashion-t10k.rec" --set test_labels= --save-model model "$@"
