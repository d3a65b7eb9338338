"""Helpers for the Python tests: real ps-server processes on 127.0.0.1 with
ports chosen at run time (each writes its endpoint to a ready file, which
we wait for against a deadline), stopped by the PID we started.

ctest passes PS_BIN (build/bin), PS_SRC (the source tree) and PS_CLIENT_LIB
(build/lib/libps_client.so.1); sys.path gets the source tree's python/.
"""
import os
import signal
import subprocess
import sys
import tempfile
import time

BIN = os.environ.get("PS_BIN", "")
SRC = os.environ.get("PS_SRC", os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(SRC, "python"))
sys.dont_write_bytecode = True
# PS_TIME_SCALE stretches deadlines for slow (sanitizer) builds, as in lib.sh
TIME_SCALE = float(os.environ.get("PS_TIME_SCALE", "1"))


def wait_until(cond, timeout_s, what):
    """Polls cond() until it is true or the deadline passes (then fails,
    naming what was awaited)."""
    deadline = time.monotonic() + timeout_s * TIME_SCALE
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("no %s after %.0f s" % (what, timeout_s * TIME_SCALE))
        time.sleep(0.02)


class Servers:
    """n ps-server shards of one cluster, each in its own directory."""

    def __init__(self, n, *args):
        if not BIN:
            raise SystemExit("PS_BIN is not set (run through ctest)")
        self.n = n
        self.args = list(args)
        self.dir = tempfile.mkdtemp(prefix="ps-py.")
        self.procs = [None] * n
        self.ports = [0] * n
        self.endpoints = [""] * n
        for i in range(n):
            self.start(i)

    def start(self, i):
        ready = os.path.join(self.dir, "server-%d.ready" % i)
        if os.path.exists(ready):
            os.unlink(ready)
        log = open(os.path.join(self.dir, "server-%d.log" % i), "ab")
        cmd = [os.path.join(BIN, "ps-server"), "--shard", str(i), "--shards", str(self.n),
               "--port", str(self.ports[i]), "--ready-file", ready,
               "--state-dir", os.path.join(self.dir, "state-%d" % i)] + self.args
        self.procs[i] = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
        log.close()

        def endpoint():
            if self.procs[i].poll() is not None:
                raise AssertionError("server %d exited (%s) before it was ready:\n%s"
                                     % (i, self.procs[i].returncode, self.log(i)))
            if not os.path.exists(ready):
                return None
            for line in open(ready):
                if line.startswith("endpoint "):
                    return line.split()[1]
            return None
        self.endpoints[i] = wait_until(endpoint, 10, "ready file from server %d" % i)
        self.ports[i] = int(self.endpoints[i].rsplit(":", 1)[1])

    @property
    def servers(self):
        return ",".join(self.endpoints)

    def log(self, i):
        try:
            return open(os.path.join(self.dir, "server-%d.log" % i)).read()[-4000:]
        except OSError:
            return ""

    def kill(self, i, sig=signal.SIGKILL):
        p = self.procs[i]
        if p and p.poll() is None:
            p.send_signal(sig)
            p.wait(timeout=10)

    def stop(self):
        for p in self.procs:
            if p and p.poll() is None:
                p.terminate()
        for p in self.procs:
            if p is None:
                continue
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        subprocess.run(["rm", "-rf", self.dir])

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


def free_port():
    """A loopback port nobody listens on (bound, then let go)."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
