#!/usr/bin/env bash
# blas_core.sh - ps-worker's run-time choice of OpenBLAS kernels: with
# blas_core auto, a CPU that OpenBLAS does not recognise (its generic
# 'Prescott' kernels) runs the AVX-512 or AVX2 kernels it can; the worker
# executes itself again under the same PID; OPENBLAS_CORETYPE set by the
# user wins; blas_core openblas keeps OpenBLAS's own pick.
source "$(dirname "$0")/lib.sh"

# run_worker NAME [flags...]: a worker that logs its kernels and then fails
# to reach a server nobody runs; sets CORE_<NAME> (the core its rank line
# names) and checks every log line came from the PID that was started.
run_worker() {
    local name=$1; shift
    "$BIN/ps-worker" --servers tcp://127.0.0.1:1 --model softmax --data_format idx \
        --train_data "$FM/train-images-idx3-ubyte.gz" --train_labels "$FM/train-labels-idx1-ubyte.gz" \
        --request_timeout_ms "${HELLO_MS:-50}" --request_retries 0 "$@" 2>"$WORK/$name.log" &
    local pid=$!
    STARTED_PIDS+=("$pid")
    local deadline=$((SECONDS + 60 * TIME_SCALE)) comm=""
    while kill -0 "$pid" 2>/dev/null; do
        # Once the rank line is out the worker waits HELLO_MS for a reply:
        # time to read the name the kernel gives the process after exec.
        if [ -z "$comm" ] && grep -sc "worker 0 of 1: OpenBLAS" "$WORK/$name.log" >/dev/null; then
            comm=$(cat "/proc/$pid/comm" 2>/dev/null || true)
        fi
        [ $SECONDS -lt $deadline ] || fail "$name: worker $pid did not end in $((60 * TIME_SCALE)) s"
        sleep 0.05
    done
    wait "$pid" || true
    local core
    core=$(sed -n "s/.*worker 0 of 1: OpenBLAS core '\([A-Za-z0-9]*\)'.*/\1/p" "$WORK/$name.log")
    [ -n "$core" ] || fail "$name: no 'OpenBLAS core' line in the worker's log"
    local pids
    pids=$(sed -n 's/.* ps-worker\[\([0-9]*\)\] .*/\1/p' "$WORK/$name.log" | sort -u)
    [ "$pids" = "$pid" ] || fail "$name: log lines from PID(s) $pids, not the started $pid"
    printf -v "CORE_$name" '%s' "$core"
    printf -v "COMM_$name" '%s' "$comm"
}

run_worker own --blas_core openblas
flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
has() { for f in "$@"; do [[ $flags == *" $f "* ]] || return 1; done; }
expected=$CORE_own
if [ "$CORE_own" = Prescott ]; then
    if has avx512f avx512cd avx512bw avx512dq avx512vl; then expected=SkylakeX
    elif has avx2 fma; then expected=Haswell; fi
fi
echo "OpenBLAS picks '$CORE_own' here; blas_core auto should run '$expected'"

HELLO_MS=5000 run_worker auto
[ "$CORE_auto" = "$expected" ] || fail "blas_core auto ran '$CORE_auto', expected '$expected'"
[ "$COMM_auto" = ps-worker ] || fail "after blas_core auto the process is named '$COMM_auto', not ps-worker"
if [ "$expected" != "$CORE_own" ]; then
    grep -c "OpenBLAS picked '$CORE_own' for this CPU; blas_core auto runs '$expected'" \
        "$WORK/auto.log" >/dev/null || fail "auto: the log does not say why the kernels changed"
fi
pass "blas_core auto runs '$CORE_auto' (OpenBLAS alone: '$CORE_own'), same PID, still named ps-worker"

OPENBLAS_CORETYPE=Prescott run_worker user
[ "$CORE_user" = Prescott ] || fail "OPENBLAS_CORETYPE=Prescott set by the user ran '$CORE_user'"
pass "a user's OPENBLAS_CORETYPE wins over blas_core auto"

if has avx2 fma; then
    run_worker named --blas_core Haswell
    [ "$CORE_named" = Haswell ] || fail "blas_core Haswell ran '$CORE_named'"
    pass "blas_core Haswell runs Haswell"
fi

"$BIN/ps-worker" --blas_core Pentium --servers tcp://127.0.0.1:1 2>"$WORK/bad.log" && fail "blas_core Pentium accepted"
grep -c "blas_core" "$WORK/bad.log" >/dev/null || fail "bad blas_core: the error does not name the option"
pass "an unknown blas_core is refused naming the option"
