#!/usr/bin/python3
"""trace_summary.py - where the traced steps' time went, per worker.

Reads the timelines ps-worker writes with trace_dir (DIR/worker-RANK.json,
Chrome trace-event JSON; span names in worker/ps_trace.h) and prints, for
each worker, the mean step and each kind of span's share of the steps'
time, counting every span's own time only (a forward's time excludes the
server waits inside it, a backward's the pushes inside it), so the shares
add up to 100%. "step (other)" is what no inner span covers (gathering the
batch, bookkeeping). A step abandoned for a recovery is a step here too.

Usage: tools/trace_summary.py [--skip N] [--json] DIR_OR_FILE...
  --skip N  leave out each worker's first N traced steps (warm-up)
  --json    one JSON object per worker instead of the table
Exit 1 if no file holds a traced step.
"""
import argparse
import decimal
import glob
import json
import os
import sys

ORDER = ["forward", "backward", "forward+backward", "wait server", "push",
         "wait stage before", "wait stage after", "send", "step (other)"]


def files_of(paths):
    out = []
    for p in paths:
        out += sorted(glob.glob(os.path.join(p, "worker-*.json"))) if os.path.isdir(p) else [p]
    return out


def ns(us):
    """A timestamp or duration (us, three decimals) as integer ns: exact,
    where a double of CLOCK_MONOTONIC us loses ns after some 50 days up."""
    return int(us * 1000)


def summarise(path, skip):
    with open(path, encoding="utf-8") as f:
        events = json.load(f, parse_float=decimal.Decimal)
    label = next((e["args"]["name"] for e in events if e.get("ph") == "M"), path)
    spans = sorted(((ns(e["ts"]), ns(e["dur"]), e["name"]) for e in events if e.get("ph") == "X"),
                   key=lambda s: (s[0], -s[1]))
    steps = [s for s in spans if s[2] == "step"][skip:]
    if not steps:
        return None
    lo, hi = steps[0][0], steps[-1][0] + steps[-1][1]
    own = {}
    stack = []  # open spans, outermost first: [end, name, own time so far]

    def close_until(ts):
        while stack and stack[-1][0] <= ts:
            end, name, t = stack.pop()
            key = "step (other)" if name == "step" else name
            own[key] = own.get(key, 0) + t

    for ts, dur, name in spans:
        if ts < lo or ts >= hi:
            continue
        close_until(ts)
        if not stack and name != "step":
            continue  # outside every step (not written by ps-worker)
        if stack:
            stack[-1][2] -= dur
        stack.append([ts + dur, name, dur])
    close_until(hi)
    total = sum(s[1] for s in steps)
    return {"file": path, "worker": label, "steps": len(steps),
            "step_ms": total / len(steps) / 1e6,
            "share": {k: own[k] / total for k in ORDER if k in own}}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--skip", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("paths", nargs="+")
    a = ap.parse_args()
    found = 0
    for path in files_of(a.paths):
        try:
            s = summarise(path, a.skip)
        except OSError as exc:
            print(f"trace_summary: {path}: {exc.strerror}", file=sys.stderr)
            continue
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            print(f"trace_summary: {path}: not a ps-worker timeline: {exc}", file=sys.stderr)
            continue
        if s is None:
            print(f"trace_summary: {path}: no traced step after --skip {a.skip}", file=sys.stderr)
            continue
        found += 1
        if a.json:
            print(json.dumps(s))
            continue
        print(f"{s['worker']}: {s['steps']} steps, {s['step_ms']:.3f} ms a step")
        print("  " + "  ".join(f"{k} {v * 100:.1f}%" for k, v in s["share"].items()))
    return 0 if found else 1


if __name__ == "__main__":
    sys.exit(main())
