#!/usr/bin/env bash
# demo.sh - set up, build, and train the Fashion-MNIST MLP on a local
# cluster of 2 servers and 2 workers; the trained model goes to model/.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
exec build/bin/ps-launch --servers 2 --workers 2 \
  --config deploy/examples/fashion-mlp.conf --save-model model "$@"
