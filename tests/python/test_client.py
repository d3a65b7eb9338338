"""psclient against real ps-server shards on 127.0.0.1: every optimizer as
applied equals its NumPy reimplementation (SGD exactly), BSP sums and
divides by the summed sample count, sparse rows by uint64 key, the job's
fingerprint, errors as exceptions with the server's message, Ctrl-C ends
a wait, the context manager's BYE ends the job."""
import gc
import os
import signal
import threading
import time
import unittest
import weakref

import numpy as np

import pstest
from numpy_optim import Reference

import psclient
from psclient import errors, optim

SEED = int(os.environ.get("PS_TEST_SEED", "7"))
N = 9000  # above PS_SHARD_MIN_SPLIT * 2: two chunks, one per shard


def key_shard(key, n_shards):
    """docs/protocol.md: murmur3's 64-bit finaliser of the key, mod n."""
    m = (1 << 64) - 1
    h = key
    h ^= h >> 33
    h = (h * 0xff51afd7ed558ccd) & m
    h ^= h >> 33
    h = (h * 0xc4ceb9fe1a85ec53) & m
    h ^= h >> 33
    return h % n_shards


def spec_of(kind, o):
    cls = {"sgd": optim.SGD, "momentum": optim.Momentum, "adagrad": optim.Adagrad,
           "rmsprop": optim.RMSprop, "adam": optim.Adam, "adamw": optim.AdamW}[kind]
    kw = {k: v for k, v in o.items() if k != "lr"}
    return cls(lr=o["lr"], **kw)


CASES = [
    ("sgd", {"lr": 0.1}),
    ("sgd", {"lr": 0.05, "weight_decay": 0.01}),
    ("sgd", {"lr": 0.1, "schedule": "cosine", "total_steps": 4, "min_lr": 0.01,
             "warmup_steps": 2}),
    ("sgd", {"lr": 0.2, "schedule": "step", "step_size": 2, "gamma": 0.5}),
    ("momentum", {"lr": 0.05, "momentum": 0.9}),
    ("momentum", {"lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.001}),
    ("adagrad", {"lr": 0.1, "eps": 1e-8}),
    ("rmsprop", {"lr": 0.01, "rho": 0.9, "eps": 1e-8}),
    ("adam", {"lr": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}),
    ("adam", {"lr": 0.01, "beta1": 0.8, "beta2": 0.99, "eps": 1e-7, "weight_decay": 0.01}),
    ("adamw", {"lr": 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.1}),
]


class ClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # every test is a job of its own, all from 127.0.0.1: above the
        # shards' default budgets of 16 jobs, 8 per client (docs/security.md)
        cls.cluster = pstest.Servers(2, "--max_jobs", "64", "--max_jobs_per_client", "64")

    @classmethod
    def tearDownClass(cls):
        cls.cluster.stop()

    def client(self, job, **kw):
        kw.setdefault("timeout_ms", 20000)
        return psclient.Client(self.cluster.servers, job, **kw)

    def test_every_optimizer_matches_numpy(self):
        rng = np.random.default_rng(SEED)
        for i, (kind, o) in enumerate(CASES):
            with self.subTest(kind=kind, opts=o, seed=SEED):
                init = rng.standard_normal(N).astype(np.float32)
                ref = Reference(kind, init, **spec_of(kind, o).values,
                                schedule=o.get("schedule", "constant"))
                with self.client("optim-%d" % i) as c:
                    clock = c.hello()
                    w = init.copy()
                    c.init_table(0, "w", w, spec_of(kind, o))
                    for step in range(5):
                        g = rng.standard_normal(N).astype(np.float32) * 3
                        n = (1, 3, 7, 2, 5)[step]
                        c.push_pull(0, clock + step, g, n, w)
                        c.wait()
                        want = ref.step(g, n)
                        if kind == "sgd":
                            np.testing.assert_array_equal(w, want)
                        else:
                            self.assertLessEqual(float(np.max(np.abs(w - want))), 1e-6)
                    self.assertEqual(ref.t, 5)

    def test_bsp_sums_pushes_and_divides_by_summed_samples(self):
        rng = np.random.default_rng(SEED + 1)
        init = rng.standard_normal(N).astype(np.float32)
        grads = [rng.standard_normal(N).astype(np.float32) for _ in range(2)]
        counts = [3, 5]
        out = [init.copy(), init.copy()]
        failures = []

        def worker(r):
            try:
                with self.client("bsp", rank=r, world=2, fingerprint={"case": "bsp"}) as c:
                    clock = c.hello()
                    c.init_table(0, "w", init, optim.SGD(lr=0.5))
                    c.push_pull(0, clock, grads[r], counts[r], out[r])
                    c.wait()
            except Exception as e:  # reported by the main thread
                failures.append(e)
        threads = [threading.Thread(target=worker, args=(r,)) for r in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(failures, [])
        want = Reference("sgd", init, lr=0.5).step(grads[0] + grads[1], sum(counts))
        np.testing.assert_array_equal(out[0], want)
        np.testing.assert_array_equal(out[1], want)

    def test_sparse_rows_by_uint64_key(self):
        rng = np.random.default_rng(SEED + 2)
        keys = rng.integers(0, 2**64, size=200, dtype=np.uint64)
        keys = np.unique(keys)
        with self.client("sparse") as c:
            clock = c.hello()
            c.init_sparse(0, "emb", 4, optim.SGD(lr=0.1))
            c.init_sparse(1, "rand", 3, optim.Adagrad(lr=0.1), init_scale=0.5, seed=11)
            rows = c.sparse_pull(0, clock, keys)
            r1 = c.sparse_pull(1, clock, keys[:50], flags=psclient.FLAG_NO_CREATE)
            c.wait()
            np.testing.assert_array_equal(rows, np.zeros((len(keys), 4), np.float32))
            self.assertTrue(np.all(np.abs(r1) <= 0.5) and np.any(r1 != 0))
            again = c.sparse_pull(1, clock, keys[:50][::-1])
            c.wait()
            np.testing.assert_array_equal(again[::-1], r1)  # a start value is a function of the key
            g = rng.standard_normal((len(keys), 4)).astype(np.float32)
            c.sparse_push(0, clock, keys, g)
            c.wait()
            after = c.sparse_pull(0, clock + 1, keys)
            c.wait()
            np.testing.assert_array_equal(after, np.float32(0) - np.float32(0.1) * g)
            self.assertEqual(c.stats(1)["shard"], 1)
        # the keys went to both shards: docs/protocol.md's key -> shard map
        shards = {key_shard(int(k), 2) for k in keys}
        self.assertEqual(shards, {0, 1})

    def test_push_then_pull_of_the_next_clock(self):
        rng = np.random.default_rng(SEED + 3)
        init = rng.standard_normal(N).astype(np.float32)
        g = rng.standard_normal(N).astype(np.float32)
        with self.client("push") as c:
            clock = c.hello()
            c.init_table(0, "w", init, optim.Momentum(lr=0.1, momentum=0.5))
            c.push(0, clock, g, 4)
            c.wait()
            w = np.empty(N, np.float32)
            c.pull(0, clock + 1, w)
            c.wait()
        ref = Reference("momentum", init, lr=0.1, momentum=0.5)
        np.testing.assert_array_equal(w, ref.step(g, 4))

    def test_fingerprint_mismatch_is_refused_naming_the_option(self):
        with self.client("fp", rank=0, world=2, fingerprint={"batch": 32, "seed": 1}) as a:
            a.hello()
            b = self.client("fp", rank=1, world=2, fingerprint={"batch": 64, "seed": 1})
            with self.assertRaises(errors.ECONFLICT) as cm:
                b.hello()
            b.close()
            self.assertIn("batch", cm.exception.message)
            self.assertEqual(cm.exception.code, -11)

    def test_errors_are_exceptions_with_messages(self):
        with self.client("errs") as c:
            clock = c.hello()
            w = np.zeros(10, np.float32)
            c.init_table(0, "w", w, optim.SGD(lr=0.1))
            with self.assertRaises(TypeError):
                c.pull(0, clock, np.zeros(10, np.float64))
            with self.assertRaises(ValueError):
                c.pull(0, clock, np.zeros(11, np.float32))
            with self.assertRaises(errors.ENOTABLE):
                c.pull(5, clock, w)
            with self.assertRaises(errors.ECONFLICT) as cm:
                c.init_table(0, "w", np.zeros(12, np.float32), optim.SGD(lr=0.1))
            self.assertIn("10 elements, not 12", cm.exception.message)
            # after an error the client refuses to go on (only close)
            with self.assertRaises(errors.EINVAL):
                c.pull(0, clock, w)
        # (a new job: rank 0 of "errs" stays held by the closed client until
        # the shards declare it dead; one live owner per rank)
        with self.client("errs2") as c:
            clock = c.hello()
            c.init_table(0, "w", w, optim.SGD(lr=0.1))
            c.push(0, clock, np.full(10, np.nan, np.float32), 1)
            with self.assertRaises(errors.ENONFINITE) as cm:
                c.wait()
            self.assertIn("shard", cm.exception.message)
        with self.assertRaises(ValueError):
            optim.Adam(lr=-1)
        with self.assertRaises(errors.EINVAL):
            psclient.Client("not an endpoint", "x")

    def test_bad_table_names_are_refused_not_cut(self):
        # libps_client checks a name before sending anything: a long one
        # used to be cut to fit, silently
        w = np.zeros(4, np.float32)
        for i, (name, why) in enumerate((("x" * 64, "1 to 63 bytes, not 64"),
                                         ("a b", "byte 0x20 at 1"),
                                         ("-w", "must not start with '-'"))):
            with self.client("names%d" % i) as c:
                c.hello()
                with self.assertRaises(errors.EINVAL) as cm:
                    c.init_table(0, name, w, optim.SGD(lr=0.1))
                self.assertIn(why, cm.exception.message)
        with self.client("names3") as c:
            clock = c.hello()
            c.init_table(0, "x" * 63, w, optim.SGD(lr=0.1))
            c.pull(0, clock, w)
            c.wait()

    def test_silent_server_times_out_naming_it(self):
        ep = "tcp://127.0.0.1:%d" % pstest.free_port()
        c = psclient.Client(ep, "nobody", timeout_ms=300, heartbeat_ms=0)
        t0 = time.monotonic()
        with self.assertRaises(errors.ETIME) as cm:
            c.hello()
        c.close()
        self.assertLess(time.monotonic() - t0, 10 * pstest.TIME_SCALE)
        self.assertIn(ep, cm.exception.message)

    def test_a_failed_wait_keeps_the_gradients_zeromq_still_reads(self):
        # A stopped shard reads nothing: once the kernel's buffers are full
        # the pushes wait in ZeroMQ, which reads them from our arrays. (A
        # failed wait() dropped them, and a shard back later was sent a
        # freed tensor: py_torch under ASan, heap-use-after-free in send.)
        n = 1 << 20  # 4 MB a push; a chunk's second push goes over TCP
        with pstest.Servers(1) as one:
            c = psclient.Client(one.servers, "held", retries=0, heartbeat_ms=0,
                                timeout_ms=int(2000 * pstest.TIME_SCALE))
            c.hello()
            c.init_table(0, "w", np.zeros(n, np.float32), optim.SGD(lr=0.1))
            one.procs[0].send_signal(signal.SIGSTOP)
            try:
                refs = []
                for clock in range(12):  # 44 MB over TCP: more than the kernel takes
                    g = np.full(n, clock + 1, np.float32)
                    c.push(0, clock, g, 1)
                    refs.append(weakref.ref(g))
                    del g
                with self.assertRaises(errors.ETIME):
                    c.wait()
                gc.collect()
                self.assertGreater(c.buffers_held, 0)  # frames: a push is several chunks
                self.assertEqual([r for r in refs if r() is None], [])
                c.close()  # lets go of every socket's queue
                gc.collect()
                self.assertEqual([r for r in refs if r() is not None], [])
            finally:
                one.procs[0].send_signal(signal.SIGCONT)

    def test_sigint_ends_a_blocked_wait(self):
        # rank 1 never comes: the BSP pull of clock 1 is parked on the shards
        with self.client("sigint", rank=0, world=2, timeout_ms=60000) as c:
            clock = c.hello()
            w = np.zeros(10, np.float32)
            c.init_table(0, "w", w, optim.SGD(lr=0.1))
            c.push_pull(0, clock, np.ones(10, np.float32), 1, w)
            timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
            t0 = time.monotonic()
            timer.start()
            with self.assertRaises(KeyboardInterrupt):
                c.wait()
            timer.join()
            self.assertLess(time.monotonic() - t0, 5 * pstest.TIME_SCALE)

    def test_context_manager_says_bye_and_the_job_ends(self):
        fp = {"case": "bye"}
        with self.client("bye", fingerprint=fp) as c:
            clock = c.hello()
            w = np.ones(4, np.float32)
            c.init_table(0, "w", w, optim.SGD(lr=0.5))
            c.push_pull(0, clock, np.full(4, 2, np.float32), 2, w)
            c.wait()
            np.testing.assert_array_equal(w, np.full(4, 0.5, np.float32))
            self.assertNotEqual(c.job_id, 0)
        late = self.client("bye", fingerprint=fp)
        with self.assertRaises(errors.EFINISHED):
            late.hello()
        late.close()

    def test_forked_child_leaves_the_parents_client_alone(self):
        c = self.client("fork")
        c.hello()
        pid = os.fork()
        if pid == 0:  # the child: what a DataLoader worker's exit does
            code = 0
            try:
                c.n_shards
                code = 2  # it should have refused
            except errors.EINVAL:
                pass
            c.close()
            os._exit(code)
        status = None
        deadline = time.monotonic() + 10 * pstest.TIME_SCALE
        while status is None:
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                status = st
            elif time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                self.fail("the forked child hung closing its parent's client")
            else:
                time.sleep(0.02)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0)
        self.assertEqual(c.n_shards, 2)  # the parent's client still works
        c.close()

    def test_rank_world_servers_and_job_from_the_environment(self):
        env = {"PS_SERVERS": self.cluster.servers, "PS_JOB": "envjob", "PS_RANK": "1",
               "PS_WORLD": "3"}
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            c = psclient.Client()
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        self.assertEqual((c.rank, c.world, c.job, c.n_shards), (1, 3, "envjob", 2))
        c.close()
        with self.assertRaises(ValueError):
            psclient.Client(self.cluster.servers, "x", rank=3, world=3)


if __name__ == "__main__":
    unittest.main(verbosity=2)
