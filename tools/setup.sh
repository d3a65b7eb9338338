#!/usr/bin/env bash
# setup.sh - installs what ps needs on Debian 12 (build tools, libraries,
# the Fashion-MNIST data set, NumPy for the tests' independent checks) and
# builds it into build/. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
PACKAGES=(
  build-essential cmake pkg-config      # compiler and build
  libzmq3-dev                           # transport (ZeroMQ)
  libprotobuf-c-dev protobuf-c-compiler # message headers
  libopenblas-dev                       # sgemm for forward/backward
  libuv1-dev                            # stats socket event loop
  zlib1g-dev                            # gzip IDX files
  libcmocka-dev                         # unit tests
  dataset-fashion-mnist                 # the real data set for the demo and tests
  python3-numpy                         # tests check exported .npy models independently; psclient
  fortunes                              # the text corpus of the GPT example and its tests
  python3-onnx                          # onnx.proto for --export-onnx (generated at build time), the checker
  python3-torch                         # psclient.pytorch; tests rebuild exported nets in PyTorch; bench/
  systemd                               # systemd-analyze verify of the shipped units
  iproute2                              # network-namespace test and shaped-link benchmarks
  prometheus                            # promtool check metrics, and a real scrape in a test
  clang libclang-rt-14-dev              # libFuzzer targets (tools/fuzz.sh)
  clang-format                          # the code's layout, checked by tools/lint.sh
  libjansson-dev                        # JSON: events, stats documents, model.json, journals
  valgrind                              # memcheck run of the tests (tools/check.sh)
  help2man                              # man pages generated from each program's --help
  lintian                               # the .deb is checked against Debian policy (install test)
  chromium                              # a real browser opens /metrics (stats_hostile test)
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
BUILD=${BUILD_DIR:-build}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" ${CMAKE_EXTRA:-}
cmake --build "$BUILD" -j"$(nproc)" ${BUILD_TARGETS:+--target $BUILD_TARGETS}
