#!/usr/bin/env bash
# check.sh - set up, build and run every test and checker:
#  1. the optimised build: every test (unit, integration, accuracy, bench
#     smoke) but the label long (the CNN's and the GPT's full accuracy runs,
#     15-25 min each here: `ctest -L long` runs them);
#  2. AddressSanitizer + UndefinedBehaviorSanitizer build: every test but the
#     long accuracy runs (they exercise the code paths of the short jobs);
#     with float-cast-overflow, which GCC's undefined leaves out (a double
#     outside the range of the integer it is cast to; clang's has it, which
#     is how the fuzz stage once caught one the tests had run past);
#  3. ThreadSanitizer build: the tests of the threaded parts (label threads:
#     64-client load, client/server threads, stats thread, heartbeat
#     threads; it_security, CURVE with its ZAP thread, is not among them:
#     see tests/CMakeLists.txt);
#  4. libFuzzer (clang, ASan, UBSan): each fuzz target for PS_FUZZ_SECONDS
#     (default 45) from its seed corpus;
#  5. Valgrind memcheck: the unit tests and a short real job.
# Before the builds: tools/lint.sh (clang-format layout, nesting depth).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
tools/lint.sh
(cd build && ctest --output-on-failure -j1 -LE long)

BUILD_DIR=build-asan BUILD_TYPE=Debug CMAKE_EXTRA="-DPS_SANITIZE=address,undefined,float-cast-overflow" \
    tools/setup.sh
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j1 -LE accuracy)

BUILD_DIR=build-tsan BUILD_TYPE=RelWithDebInfo CMAKE_EXTRA="-DPS_SANITIZE=thread" \
    BUILD_TARGETS=threads_tests tools/setup.sh
tsan_logs=$(mktemp -d)
(cd build-tsan && PS_TIME_SCALE=10 \
    TSAN_OPTIONS="suppressions=$PWD/../tests/sanitizers/tsan.supp log_path=$tsan_logs/tsan" \
    ctest --output-on-failure -j1 -L threads)
if compgen -G "$tsan_logs/tsan.*" >/dev/null; then
    echo "FAIL: ThreadSanitizer reports:" >&2
    cat "$tsan_logs"/tsan.* >&2
    exit 1
fi
rm -rf "$tsan_logs"

tools/fuzz.sh "${PS_FUZZ_SECONDS:-45}"
tools/valgrind.sh build
echo "check: all passed"
