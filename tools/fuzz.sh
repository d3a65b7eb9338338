#!/bin/bash
# fuzz.sh [SECONDS] - builds the libFuzzer targets with clang, ASan and UBSan
# (in build-fuzz/) and runs each one for SECONDS (default 60) from its seed
# corpus in tests/fuzz/corpus/<target>. Exits non-zero on any crash, leak,
# sanitizer report or timeout; the reproducer is left in build-fuzz/findings.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
build=build-fuzz
cmake -S . -B "$build" -DCMAKE_C_COMPILER=clang -DPS_FUZZ=ON -DPS_SANITIZE=address,undefined \
    -DBUILD_TESTING=OFF >/dev/null
# the targets: every tests/fuzz/fuzz_*.c (as tests/fuzz/CMakeLists.txt finds them)
mapfile -t targets < <(ls tests/fuzz/fuzz_*.c | sed 's|.*/fuzz_||; s|\.c$||')
cmake --build "$build" -j"$(nproc)" --target "${targets[@]/#/fuzz_}" >/dev/null
mkdir -p "$build/findings"
status=0
for target in "${targets[@]}"; do
    work=$(mktemp -d)
    cp -r "tests/fuzz/corpus/$target/." "$work/"
    echo "== fuzz_$target: ${seconds} s from $(ls "$work" | wc -l) seeds"
    if ! ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        "$build/bin/fuzz_$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$build/findings/$target-" -print_final_stats=1 "$work" \
        >"$build/fuzz_$target.log" 2>&1; then
        echo "FAIL: fuzz_$target found a problem:" >&2
        grep -E "ERROR|SUMMARY|runtime error|Test unit written" "$build/fuzz_$target.log" | head -20 >&2
        status=1
    fi
    grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb" "$build/fuzz_$target.log" | tr '\n' ' '
    echo "corpus $(ls "$work" | wc -l)"
    rm -rf "$work"
done
exit $status
