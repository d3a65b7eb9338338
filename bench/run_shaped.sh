#!/usr/bin/env bash
# run_shaped.sh - multi-host jobs simulated on this machine: every "host" a
# network namespace with its own address on a bridge (tests/integration/
# lib.sh netns_build), every host's link shaped to a rate each way
# (netns_shape: tc tbf on both ends of its veth, a full-duplex NIC on a
# switch). Hosts: s0, s1 (shards), w0, w1 (workers), one process each.
# Across hosts the servers speak CURVE only, so every job here uses it.
#
#   hosts    (#18 target 5) the 2 x 2 Fashion-MNIST MLP job
#            (deploy/examples/fashion-mlp.conf, STEPS steps) at RATE
#            (default 10gbit), trained by the binaries of --build and of
#            --old-build (the baseline commit's), rounds interleaved (old,
#            new, old, new, ...): each round's training seconds (the
#            slower worker's wall_s), then new/old per round and of the
#            medians. The same-host path is off on the new binaries
#            (same_host no): namespaces share the boot id, pid namespace
#            and uid, which is what the same-host check compares, so it
#            would map shared memory and bypass the shaped links; each
#            round checks that no request went through it (shm_requests).
#   pushpull bench_pushpull --bytes BYTES (default 1048576; all: every
#            size it knows, 64 KB to 16 MB) (ps against raw ZeroMQ, one
#            process) in a namespace whose loopback is shaped to RATE: both
#            directions share that one queue, unlike the hosts' links.
#   pipeline (#20 throughput) 1 shard (s0), 2 workers (w0, w1), links at
#            RATE (default 1gbit): the MLP 784-2048-2048-2048-10 (10.2 M
#            parameters), SGD, global batch BATCH, STEPS steps, (a) data
#            parallel D=2 P=1 against (b) D=1 P=2 with M micro-batches
#            (pipeline_bind on the workers' namespace addresses, so the
#            activations cross the shaped links too), rounds interleaved:
#            samples/s of each (global samples over the slowest worker's
#            wall_s), the ratio, and each stage's bubble_fraction beside
#            GPipe's (P-1)/(M+P-1).
#   smoke    a few steps of hosts and pipeline, new binaries only (ctest
#            label bench); exits 77 (skip) where namespaces cannot be made.
#
# Usage: bench/run_shaped.sh WHAT [--build DIR] [--old-build DIR]
#        [--rounds R] [--steps S] [--rate RATE] [--batch B] [--micro M]
#        [--bytes BYTES|all]
# Namespaces are named with this script's PID and deleted on exit, also on
# failure; only processes this script started are ended, by PID.
set -euo pipefail
what=${1:?usage: bench/run_shaped.sh hosts|pushpull|pipeline|smoke [options]}
shift
build=build old_build="" rounds=3 steps="" rate="" batch=256 micro=4 bytes=1048576
while [ $# -gt 0 ]; do
    case $1 in
    --build) build=$2 ;;
    --old-build) old_build=$2 ;;
    --rounds) rounds=$2 ;;
    --steps) steps=$2 ;;
    --rate) rate=$2 ;;
    --batch) batch=$2 ;;
    --micro) micro=$2 ;;
    --bytes) bytes=$2 ;;
    *) echo "run_shaped.sh: unknown option '$1'" >&2; exit 2 ;;
    esac
    shift 2
done
case $what in
hosts) : "${steps:=2000}" "${rate:=10gbit}"
    [ -n "$old_build" ] || { echo "run_shaped.sh hosts: needs --old-build DIR (the baseline's build)" >&2; exit 2; } ;;
pushpull) : "${rate:=10gbit}" ;;
pipeline) : "${steps:=30}" "${rate:=1gbit}" ;;
smoke) : "${rate:=1gbit}" ;;
*) echo "run_shaped.sh: WHAT is hosts, pushpull, pipeline or smoke, not '$what'" >&2; exit 2 ;;
esac
build=$(cd "$build" && pwd)
[ -z "$old_build" ] || old_build=$(cd "$old_build" && pwd)
cd "$(dirname "$0")/.."
export PS_BIN=$build/bin PS_SRC=$PWD PS_PYTHON=/usr/bin/python3
. tests/integration/lib.sh
[ "$(id -u)" -eq 0 ] || { echo "SKIP: network namespaces need root"; exit 77; }
netns_probe || { echo "SKIP: this machine forbids network namespaces: $(cat "$WORK/probe.log")"; exit 77; }

if [ "$what" = pushpull ]; then
    ns="pspp$$"
    ip netns add "$ns" 2>"$WORK/net.log" || { echo "SKIP: cannot add namespace: $(cat "$WORK/net.log")"; exit 77; }
    cleanup_also 'ip netns del "$ns" 2>/dev/null'
    ip -n "$ns" link set lo up
    ip netns exec "$ns" tc qdisc add dev lo root tbf rate "$rate" burst 1mb latency 50ms
    size=(--bytes "$bytes")
    [ "$bytes" != all ] || size=()
    echo "# bench_pushpull ${size[*]} --seconds 3, loopback shaped to $rate (tbf, burst 1mb)"
    for ((r = 0; r < rounds; r++)); do
        ip netns exec "$ns" "$build/bin/bench_pushpull" "${size[@]}" --seconds 3
    done
    exit 0
fi

netns_build 10.252.$(($$ % 200)) s0 s1 w0 w1
# burst: a 10 Gbit/s bucket of 1 MB refills in 0.8 ms; 256 KB at 1 Gbit/s in 2 ms
burst=1mb
case $rate in *mbit | 1gbit | 2gbit) burst=256kb ;; esac
netns_shape "$rate" "$burst"
"$BIN/ps-keygen" "$WORK/server" 2>/dev/null
for r in 0 1; do "$BIN/ps-keygen" --role worker "$WORK/worker-$r" >>"$WORK/allow"; done
curve_w() { echo --curve-server-key-file "$WORK/server.pub" --curve-secret-file "$WORK/worker-$1.secret"; }

# servers BIN N FLAGS...: starts shards 0..N-1 on hosts s0.., sets SERVERS
# (their endpoints) and SPIDS
servers() {
    local bin=$1 n=$2 s eps=""; shift 2
    SPIDS=()
    for ((s = 0; s < n; s++)); do
        rm -f "$WORK/s$s.ready"
        ip netns exec "pss$s$$" "$bin/bin/ps-server" --bind "${NETNS_IP[s$s]}" --port 0 --shard $s \
            --shards "$n" --curve-secret-file "$WORK/server.secret" --allow-file "$WORK/allow" \
            --ready-file "$WORK/s$s.ready" "$@" 2>"$WORK/s$s.log" &
        SPIDS+=("$!")
        STARTED_PIDS+=("$!")
    done
    for ((s = 0; s < n; s++)); do
        local deadline=$((SECONDS + 20))
        until [ -s "$WORK/s$s.ready" ]; do
            kill -0 "${SPIDS[s]}" 2>/dev/null || fail "shard $s (host s$s) exited: $(tail -2 "$WORK/s$s.log")"
            [ $SECONDS -lt $deadline ] || fail "shard $s (host s$s) not ready after 20 s"
            sleep 0.05
        done
        eps+=${eps:+,}$(awk '/^endpoint/{print $2}' "$WORK/s$s.ready")
    done
    SERVERS=$eps
}
stop_servers() {
    local p
    for p in "${SPIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${SPIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
# workers BIN TAG FLAGS...: ranks 0 and 1 on w0 and w1 (world 2), until both
# end; a worker that fails fails the bench with its log. @IP@ in a flag
# becomes the worker's own address.
workers() {
    local bin=$1 tag=$2 r pids=(); shift 2
    for r in 0 1; do
        ip netns exec "psw$r$$" "$bin/bin/ps-worker" --servers "$SERVERS" --rank $r --world 2 \
            $(curve_w $r) --progress_every_s 0 "${@//@IP@/${NETNS_IP[w$r]}}" >"$WORK/$tag.w$r.out" 2>"$WORK/$tag.w$r.log" &
        pids+=("$!")
        STARTED_PIDS+=("$!")
    done
    for r in 0 1; do
        wait "${pids[r]}" || fail "$tag: worker $r (host w$r) exited $?: $(tail -3 "$WORK/$tag.w$r.log")"
    done
}
# done_field TAG KEY: KEY of both workers' done events, space-separated
done_field() { echo "$(json "$WORK/$1.w0.out" "$2") $(json "$WORK/$1.w1.out" "$2")"; }

# Rounds run in this shell, never in $(...): a subshell's STARTED_PIDS and
# failures would not reach the cleanup. Each appends its figure to a file.
hosts_round() { # old|new ROUND: appends the round's training seconds to $WORK/old|new
    local which=$1 round=$2 bin=$build off=(--same_host no)
    [ "$which" = new ] || { bin=$old_build; off=(); }
    local tag=$which$round r
    servers "$bin" 2 "${off[@]}"
    workers "$bin" "$tag" --config deploy/examples/fashion-mlp.conf --job "h$tag" \
        --max_steps "$steps" --eval_every 0 "${off[@]}"
    stop_servers
    # a same-host path here would bypass the links being measured
    if [ "$which" = new ]; then
        for r in 0 1; do
            check "$(json "$WORK/$tag.w$r.out" shm_requests) == 0"
        done
    fi
    "$PY" -c 'import sys; print(max(map(float, sys.argv[1:])))' $(done_field "$tag" wall_s) >>"$WORK/$which"
}

# link_check: what one TCP stream moves from host w0 to host s0 in about a
# second, so the figures below say what the shaped link really carried
link_check() {
    local bytes=$1
    rm -f "$WORK/link.port"
    ip netns exec "pss0$$" "$PY" - "${NETNS_IP[s0]}" "$WORK/link.port" >"$WORK/link.out" <<'PYEOF' &
import socket, sys, time
s = socket.socket()
s.bind((sys.argv[1], 0))
s.listen(1)
s.settimeout(20)
with open(sys.argv[2] + ".tmp", "w") as f:
    f.write(str(s.getsockname()[1]))
import os; os.rename(sys.argv[2] + ".tmp", sys.argv[2])
c, _ = s.accept()
c.settimeout(20)
n, t0 = 0, None
while True:
    b = c.recv(1 << 20)
    if not b:
        break
    t0 = t0 or time.monotonic()
    n += len(b)
print(f"{n * 8 / (time.monotonic() - t0) / 1e9:.2f}")
PYEOF
    local lpid=$!
    STARTED_PIDS+=("$lpid")
    wait_for "$WORK/link.port" "" 10
    ip netns exec "psw0$$" "$PY" - "${NETNS_IP[s0]}" "$(cat "$WORK/link.port")" "$bytes" <<'PYEOF'
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20)
buf, left = bytes(4 << 20), int(sys.argv[3])
while left > 0:
    c.sendall(buf[:left])
    left -= len(buf)
c.close()
PYEOF
    wait "$lpid" || fail "link check: the receiver on s0 failed"
    echo "# link check: one TCP stream w0 -> s0 moved $(cat "$WORK/link.out") Gbit/s (shaped to $rate)"
}
case $rate in
*gbit) link_check $((${rate%gbit} * 125000000)) ;;
*) link_check 20000000 ;;
esac

if [ "$what" = hosts ]; then
    echo "# 2 x 2 fashion-mlp.conf, $steps steps, CURVE, each peer its own namespace, links $rate each way"
    echo "# old: $old_build  new: $build"
    for ((r = 0; r < rounds; r++)); do
        hosts_round old $r
        hosts_round new $r
        mapfile -t old <"$WORK/old"
        mapfile -t new <"$WORK/new"
        echo "round $r: old ${old[r]} s, new ${new[r]} s, new/old $("$PY" -c "print(round(${new[r]} / ${old[r]}, 3))")" \
            "(test accuracy old $(json "$WORK/old$r.w0.out" test_accuracy), new $(json "$WORK/new$r.w0.out" test_accuracy))"
    done
    "$PY" - "$rate" "$steps" "${old[*]}" "${new[*]}" <<'PYEOF'
import json, statistics, sys
rate, steps, old, new = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4].split()
old, new = [float(x) for x in old], [float(x) for x in new]
print(json.dumps({"bench": "shaped_hosts", "link": rate, "steps": steps,
                  "old_s": old, "new_s": new,
                  "ratio_per_round": [round(n / o, 3) for o, n in zip(old, new)],
                  "median_ratio_per_round": round(statistics.median(n / o for o, n in zip(old, new)), 3),
                  "ratio_of_medians": round(statistics.median(new) / statistics.median(old), 3)}))
PYEOF
    exit 0
fi

# pipe_round dp|pp ROUND: appends "samples/s" (and, for pp, each stage's
# bubble_fraction, busy and pipe-wait seconds) to $WORK/dp|pp
pipe_round() {
    local which=$1 round=$2 tag=$1$2 r
    local common=(--model mlp --hidden 2048,2048,2048 --optimizer sgd --lr 0.01
        --lr_schedule constant --max_steps "$steps" --eval_every 0 --eval_every_steps 0
        --same_host no --seed 1 --data_format idx --train_data "$FM/train-images-idx3-ubyte.gz"
        --train_labels "$FM/train-labels-idx1-ubyte.gz")
    servers "$build" 1 --same_host no
    if [ "$which" = dp ]; then
        workers "$build" "$tag" "${common[@]}" --job "p$tag" --batch_size $((batch / 2))
    else
        mkdir -p "$WORK/pipe"
        workers "$build" "$tag" "${common[@]}" --job "p$tag" --batch_size "$batch" \
            --pipeline_stages 2 --micro_batches "$micro" --pipeline_dir "$WORK/pipe" \
            --pipeline_bind @IP@
    fi
    stop_servers
    for r in 0 1; do
        check "$(json "$WORK/$tag.w$r.out" shm_requests) == 0"
        check "$(json "$WORK/$tag.w$r.out" steps) == $steps"
    done
    "$PY" - "$which" "$((steps * batch))" "$WORK/$tag.w0.out" "$WORK/$tag.w1.out" >>"$WORK/$which" <<'PYEOF'
import json, sys
which, samples = sys.argv[1], int(sys.argv[2])
done = [[json.loads(l) for l in open(f) if '"event":"done"' in l][-1] for f in sys.argv[3:]]
out = {"samples_per_s": samples / max(d["wall_s"] for d in done)}
if which == "pp":
    out["stages"] = [{k: d[k] for k in ("stage", "bubble_fraction", "stage_busy_s", "pipe_wait_s")}
                     for d in sorted(done, key=lambda d: d["stage"])]
print(json.dumps(out))
PYEOF
}

if [ "$what" = pipeline ]; then
    echo "# MLP 784-2048-2048-2048-10, SGD, global batch $batch, $steps steps, 1 shard (s0), workers w0 w1,"
    echo "# CURVE, links $rate each way; dp: D=2 P=1 batch $((batch / 2)) each; pp: D=1 P=2 M=$micro"
    for ((r = 0; r < rounds; r++)); do
        pipe_round dp $r
        pipe_round pp $r
        "$PY" - "$WORK/dp" "$WORK/pp" "$r" "$micro" <<'PYEOF'
import json, sys
dp, pp = ([json.loads(l) for l in open(f)] for f in sys.argv[1:3])
r, m, p = int(sys.argv[3]), int(sys.argv[4]), 2
d, q = dp[r], pp[r]
st = "; ".join(f"stage {s['stage']} bubble {s['bubble_fraction']:.3f} busy {s['stage_busy_s']:.1f} s "
               f"pipe wait {s['pipe_wait_s']:.1f} s" for s in q["stages"])
print(f"round {r}: dp {d['samples_per_s']:.0f} samples/s, pp {q['samples_per_s']:.0f} samples/s, "
      f"pp/dp {q['samples_per_s'] / d['samples_per_s']:.3f}; {st} (GPipe {(p - 1) / (m + p - 1):.3f})")
PYEOF
    done
    "$PY" - "$WORK/dp" "$WORK/pp" "$rate" "$micro" "$batch" "$steps" <<'PYEOF'
import json, statistics, sys
dp, pp = ([json.loads(l) for l in open(f)] for f in sys.argv[1:3])
m, p = int(sys.argv[4]), 2
d = [x["samples_per_s"] for x in dp]
q = [x["samples_per_s"] for x in pp]
bub = [statistics.median(x["stages"][s]["bubble_fraction"] for x in pp) for s in range(p)]
print(json.dumps({"bench": "shaped_pipeline", "link": sys.argv[3], "micro_batches": m,
                  "global_batch": int(sys.argv[5]), "steps": int(sys.argv[6]),
                  "dp_samples_per_s": [round(x, 1) for x in d],
                  "pp_samples_per_s": [round(x, 1) for x in q],
                  "median_ratio_per_round": round(statistics.median(b / a for a, b in zip(d, q)), 3),
                  "ratio_of_medians": round(statistics.median(q) / statistics.median(d), 3),
                  "bubble_fraction_median_per_stage": [round(b, 3) for b in bub],
                  "gpipe_bubble": round((p - 1) / (m + p - 1), 3)}))
PYEOF
    exit 0
fi

if [ "$what" = smoke ]; then
    steps=50
    hosts_round new 0
    steps=3
    pipe_round dp 0
    pipe_round pp 0
    pass "2 x 2 MLP and the wide MLP (D=2 P=1, D=1 P=2) across 4 namespaces shaped to $rate, all over TCP"
fi
