# Chaos under BSP: runs of one job (2 shards, 2 workers, checkpoints every
# 20 clocks, ps-launch restarting whatever dies) hit by random events from a
# seeded schedule: kill -9 of a shard or a worker, SIGSTOP/SIGCONT of either
# or of every worker at once (past the heartbeat timeout or not), a worker
# held back at its start.
# Every run must end either with exit 0 and the very model of an
# uninterrupted run, or with a non-zero exit and an error line naming what
# was lost. Exit 0 with a different model fails the test at once.
# PS_CHAOS_RUNS (default 6) runs, PS_CHAOS_SEED (default 1) the schedule;
# the counts are printed.
. "$(dirname "$0")/lib.sh"
RUNS=${PS_CHAOS_RUNS:-6}
SEED=${PS_CHAOS_SEED:-1}
JOB=(--servers 2 --workers 2 --config "$SRC/deploy/examples/fashion-mlp.conf"
     --set hidden=64 --set max_steps=300 --set eval_every=0 --set eval_every_steps=50
     --set heartbeat_ms=200 --set server_timeout_ms=0 --set request_timeout_ms=30000
     --server-set checkpoint_every=20 --server-set heartbeat_timeout_ms=1000
     --server-set lost_rank_timeout_ms=6000 --timeout 240)

"$BIN/ps-launch" "${JOB[@]}" --save-model "$WORK/plain" >"$WORK/plain.out" 2>"$WORK/plain.log" ||
    fail "uninterrupted run exited $?"

"$PY" - "$BIN/ps-launch" "$WORK" "$RUNS" "$SEED" "${JOB[@]}" <<'PYEOF' || fail "chaos: see above"
import json, os, random, re, signal, subprocess, sys, time
import numpy as np

launch, work, runs, seed, job = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5:]
meta = json.load(open(f"{work}/plain/model.json"))
ref = {t["file"]: np.load(f"{work}/plain/{t['file']}") for t in meta["tables"]}

def pids(log, kind, index):
    """The newest pid of shard/worker `index` in the launch log, or None."""
    pat = (rf"ps-server\[(\d+)\] I ready: endpoint .* shard {index} of" if kind == "shard"
           else rf"ps-worker\[(\d+)\] I worker {index} of")
    found = re.findall(pat, open(log, errors="replace").read())
    return int(found[-1]) if found else None

def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False

def signal_pid(pid, sig):
    """True if the signal was sent (the process may have exited meanwhile)."""
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False

def same_model(d):
    try:
        return max(float(np.abs(np.load(f"{d}/{f}") - v).max()) for f, v in ref.items()) == 0.0
    except (OSError, ValueError):
        return False

rng = random.Random(seed)
counts = {"exact": 0, "failed loudly": 0}
for run in range(runs):
    name = f"run{run}"
    log, out, model = f"{work}/{name}.log", f"{work}/{name}.out", f"{work}/{name}"
    events = []
    for _ in range(rng.randint(1, 3)):
        kind = rng.choice(["shard", "worker", "shard", "worker", "every worker"])
        action = "stop" if kind == "every worker" else rng.choice(["kill", "stop", "stop"])
        events.append((rng.uniform(0.0, 2.5), kind, rng.randint(0, 1), action, rng.uniform(0.2, 3.0)))
    events.sort()
    p = subprocess.Popen([launch, *job, "--restart-servers", "--restart-workers",
                          "--save-model", model], stdout=open(out, "w"), stderr=open(log, "w"))
    stopped = []
    try:
        # t = 0 once both workers have started (a "late start" is a stop at 0)
        deadline = time.time() + 60
        while (pids(log, "worker", 0) is None or pids(log, "worker", 1) is None) and p.poll() is None:
            if time.time() > deadline:
                sys.exit(f"{name}: workers did not start in 60 s")
            time.sleep(0.02)
        t0 = time.time()
        done = []
        for at, kind, idx, action, hold in events:
            while time.time() - t0 < at and p.poll() is None:
                time.sleep(0.01)
            targets = ([pids(log, "worker", 0), pids(log, "worker", 1)] if kind == "every worker"
                       else [pids(log, kind, idx)])
            targets = [t for t in targets if t is not None and alive(t)]
            if p.poll() is not None or not targets:
                continue
            what_hit = kind if kind == "every worker" else f"{kind} {idx}"
            if action == "kill":
                if signal_pid(targets[0], signal.SIGKILL):
                    done.append(f"kill {what_hit} at {at:.1f}s")
                continue
            hit = [t for t in targets if signal_pid(t, signal.SIGSTOP)]
            stopped += hit
            time.sleep(hold)
            for t in hit:
                signal_pid(t, signal.SIGCONT)
                stopped.remove(t)
            if hit:
                done.append(f"stop {what_hit} {hold:.1f}s at {at:.1f}s")
        rc = p.wait(timeout=240)
    finally:
        for pid in stopped:
            signal_pid(pid, signal.SIGCONT)
        if p.poll() is None:
            p.terminate()
            p.wait(timeout=30)
    what = ", ".join(done) or "nothing landed"
    if rc == 0:
        if not same_model(model):
            sys.exit(f"{name} ({what}): exit 0 with a model that differs from the uninterrupted run's")
        counts["exact"] += 1
        print(f"{name}: {what}: exit 0, exact model")
    else:
        errors = [l for l in open(log, errors="replace") if re.search(r"\] E ", l)]
        if not errors:
            sys.exit(f"{name} ({what}): exit {rc} without an error line")
        counts["failed loudly"] += 1
        print(f"{name}: {what}: exit {rc}: {errors[0].split('] E ', 1)[1].strip()[:160]}")
print(f"chaos: {runs} runs (seed {seed}): {counts['exact']} exact, {counts['failed loudly']} "
      f"failed loudly, 0 wrong")
PYEOF
pass "chaos: $RUNS runs, each exact or failed loudly"
