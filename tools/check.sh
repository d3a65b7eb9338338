#!/usr/bin/env bash
# check.sh - set up, build and run the whole test suite twice: an optimised
# build (every test), then an AddressSanitizer + UndefinedBehaviorSanitizer
# build (every test but the long accuracy runs, which exercise the same code
# paths as the short jobs).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
(cd build && ctest --output-on-failure -j1)
BUILD_DIR=build-asan BUILD_TYPE=Debug CMAKE_EXTRA="-DPS_SANITIZE=address,undefined" tools/setup.sh
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j1 -LE accuracy)
