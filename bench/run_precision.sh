#!/usr/bin/env bash
# run_precision.sh - bench_precision on plain loopback, then inside network
# namespaces whose loopback is shaped to real link rates (tc tbf), so the
# wire costs what a network costs. Root only for the shaped runs; every
# address stays 127.0.0.1 inside a namespace this script creates and deletes.
# Usage: bench/run_precision.sh [BUILD_DIR] [RATE ...]   (default rates: 10gbit 1gbit)
set -euo pipefail
build=${1:-build}; shift || true
rates=("$@"); [ ${#rates[@]} -gt 0 ] || rates=(10gbit 1gbit)
bench="$build/bin/bench_precision"
echo "# link: loopback (unshaped)"
"$bench"
if [ "$(id -u)" -ne 0 ]; then echo "# shaped runs need root; skipped"; exit 0; fi
for rate in "${rates[@]}"; do
    ns="psbench$$"
    ip netns add "$ns"
    trap 'ip netns del "$ns" 2>/dev/null || true' EXIT
    ip -n "$ns" link set lo up
    ip netns exec "$ns" tc qdisc add dev lo root tbf rate "$rate" burst 4mb latency 100ms
    echo "# link: loopback shaped to $rate"
    ip netns exec "$ns" "$bench" --seconds 2 | grep '"push_pull"' | \
        sed "s/^{/{\"link\":\"$rate\",/"
    ip netns del "$ns"
done
