"""Client: one worker's connection to every shard of a job (libps_client).

Ops start and return at once (init_table and the job ops excepted);
wait() takes the replies. A NumPy array given to an op is lent to the C
side until wait() returns: gradients are sent straight from it (zero-copy)
and parameters written straight into it, so it must not change (grad) or
be read (out) before then. The Client keeps a reference to each array
until then, so a temporary cannot be freed under the C side.

Not thread-safe, like the C client: one thread drives a Client.
"""
import ctypes
import json
import os
import signal
import threading

import numpy as np

from . import errors
from ._lib import ErrBuf, Opts, lib, libc_free
from .errors import PsError, check
from .optim import Optimizer

DTYPES = {"f32": 0, "f16": 1, "bf16": 2}
FLAG_AFTER_ALL_DONE = 0x1
FLAG_SKIP = 0x2
FLAG_SKIPPED = 0x4
FLAG_NO_CREATE = 0x8
OP_SAVE, OP_STATS, OP_SHUTDOWN = 9, 11, 12

# The environment ps-worker reads (ps_worker_config_env) for rank and world,
# and what ps-launch --worker-command adds: the servers and the job.
RANK_VARS = ("PS_RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK")
WORLD_VARS = ("PS_WORLD", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE")


def _env_int(names, fallback):
    for n in names:
        v = os.environ.get(n)
        if v:
            try:
                return int(v)
            except ValueError:
                raise ValueError("environment %s=%r is not a number" % (n, v)) from None
    return fallback


def _fingerprint_text(fp):
    if fp is None:
        return ""
    if isinstance(fp, str):
        return fp if not fp or fp.endswith("\n") else fp + "\n"
    lines = []
    for k in sorted(fp):
        v = str(fp[k])
        if "\n" in str(k) or "=" in str(k) or "\n" in v:
            raise ValueError("fingerprint %r=%r: keys hold no '=' or newline, values no newline"
                             % (k, v))
        lines.append("%s=%s\n" % (k, v))
    return "".join(lines)


def _f32_in(a, n, what):
    """a as a C-contiguous float32 array of n elements: a itself when it is
    one (no copy), else a converted copy."""
    arr = np.ascontiguousarray(a, dtype=np.float32)
    if arr.size != n:
        raise ValueError("%s has %d elements, the table %d" % (what, arr.size, n))
    return arr


def _f32_out(a, n, what):
    """a itself, which the C side writes: it must be C-contiguous float32,
    writable, of n elements (a copy would receive the values instead)."""
    if not isinstance(a, np.ndarray) or a.dtype != np.float32 or not a.flags.c_contiguous \
            or not a.flags.writeable:
        raise TypeError("%s must be a writable C-contiguous float32 numpy array" % what)
    if a.size != n:
        raise ValueError("%s has %d elements, the table %d" % (what, a.size, n))
    return a


def _fptr(a):
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_float))


def _u64ptr(a):
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_uint64))


class Client:
    """A worker of job `job` at `servers` (list or "tcp://a:1,tcp://b:2",
    shard i at position i).

    Left out, servers, job, rank and world come from the environment
    ps-launch --worker-command sets: PS_SERVERS, PS_JOB, and rank/world
    from PS_RANK/PS_WORLD (or Slurm's SLURM_PROCID/SLURM_NTASKS, Open
    MPI's OMPI_COMM_WORLD_RANK/SIZE), as ps-worker reads them; then rank 0
    of 1.

    max_staleness: 0 BSP, s > 0 SSP, -1 ASP. dtype: "f32", "f16", "bf16"
    on the wire (the shards keep fp32). fingerprint: a dict (or key=value
    lines) of what defines the job (shapes, optimizer, batch size, seed,
    data...): every shard refuses a worker whose fingerprint differs from
    the job's, naming the option. CURVE: curve_server_key_file (the
    servers' public key) and curve_secret_file (this worker's pair), as
    written by ps-keygen; PS_CURVE_SERVER_KEY_FILE and PS_CURVE_SECRET_FILE
    in the environment otherwise.

    A Client is a context manager: leaving the block says BYE (after a
    clean exit) and closes the sockets.
    """

    def __init__(self, servers=None, job=None, rank=None, world=None, *, max_staleness=0,
                 timeout_ms=60000, heartbeat_ms=1000, server_timeout_ms=15000, retries=2,
                 dtype="f32", fingerprint=None, curve_server_key_file=None,
                 curve_secret_file=None, loss_scale=0.0, loss_scale_window=2000):
        self._c = None
        servers = servers if servers is not None else os.environ.get("PS_SERVERS")
        if not servers:
            raise ValueError("no servers: pass servers= or set PS_SERVERS "
                             "(ps-launch --worker-command does)")
        if not isinstance(servers, str):
            servers = ",".join(servers)
        self.servers = servers
        self.job = job if job is not None else os.environ.get("PS_JOB", "python")
        self.rank = int(rank) if rank is not None else _env_int(RANK_VARS, 0)
        self.world = int(world) if world is not None else _env_int(WORLD_VARS, 1)
        if not 0 <= self.rank < self.world:
            raise ValueError("rank %d must be below world %d" % (self.rank, self.world))
        if dtype not in DTYPES:
            raise ValueError("dtype %r: one of %s" % (dtype, ", ".join(DTYPES)))
        self.max_staleness = int(max_staleness)
        self.dtype = dtype
        self._fingerprint = _fingerprint_text(fingerprint)
        self._tables = {}   # id -> ("dense", n_elems) or ("sparse", dim)
        self._held = []     # arrays lent to requests in flight
        self._said_hello = False
        self._broken = None  # the error after which only recover() or close() make sense
        self._pipe_r, self._pipe_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

        o = Opts()
        lib.ps_client_opts_defaults(ctypes.byref(o))
        self._job_b = self.job.encode()
        o.job = self._job_b
        o.rank, o.world = self.rank, self.world
        o.max_staleness = self.max_staleness
        o.timeout_ms, o.heartbeat_ms = int(timeout_ms), int(heartbeat_ms)
        o.server_timeout_ms, o.retries = int(server_timeout_ms), int(retries)
        o.dtype = DTYPES[dtype]
        o.loss_scale, o.loss_scale_window = float(loss_scale), int(loss_scale_window)
        o.stop_fd = self._pipe_r
        self._keys = self._load_keys(curve_server_key_file, curve_secret_file)
        if self._keys:
            o.curve_server_key, o.curve_public_key, o.curve_secret_key = self._keys
        self._fp_b = self._fingerprint.encode()
        o.fingerprint = self._fp_b
        err = ErrBuf()
        c = lib.ps_client_new(self.servers.encode(), ctypes.byref(o), ctypes.byref(err))
        if not c:
            self._close_pipe()
            raise PsError.from_code(err.code or -2, err.msg.decode(errors="replace"))
        self._c = ctypes.c_void_p(c)
        self._pid = os.getpid()
        self.clock = 0

    @staticmethod
    def _load_keys(server_file, secret_file):
        server_file = server_file or os.environ.get("PS_CURVE_SERVER_KEY_FILE")
        secret_file = secret_file or os.environ.get("PS_CURVE_SECRET_FILE")
        if not server_file and not secret_file:
            return None
        if not server_file or not secret_file:
            raise ValueError("CURVE needs both curve_server_key_file and curve_secret_file")
        err = ErrBuf()
        srv, pub, sec = (ctypes.create_string_buffer(41) for _ in range(3))
        check(lib.ps_client_load_key(server_file.encode(), srv, None, ctypes.byref(err)), err)
        check(lib.ps_client_load_key(secret_file.encode(), pub, sec, ctypes.byref(err)), err)
        return srv.value, pub.value, sec.value

    # ---- life ----

    def _handle(self, recovering=False):
        if self._c is None:
            raise PsError.from_code(-2, "the client is closed")
        if os.getpid() != self._pid:
            raise PsError.from_code(-2, "a Client belongs to the process that made it "
                                    "(this is a forked child)")
        if self._broken is not None and not (recovering and self._broken.recoverable):
            raise PsError.from_code(-2, "the client cannot go on after: %s (close it%s)"
                                    % (self._broken, ", or recover()"
                                       if self._broken.recoverable else ""))
        return self._c

    def close(self):
        """Stops heartbeats and closes every socket; safe twice. Requests in
        flight are abandoned. In a forked child (a DataLoader worker, say)
        it only forgets the client: ZeroMQ's context belongs to the parent,
        and tearing it down here would hang."""
        if self._c is not None:
            if os.getpid() == self._pid:
                lib.ps_client_destroy(ctypes.byref(self._c))
            self._c = None
        self._held = []
        self._close_pipe()

    def _close_pipe(self):
        for fd in (self._pipe_r, self._pipe_w):
            if fd is not None and fd >= 0:
                os.close(fd)
        self._pipe_r = self._pipe_w = -1

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None and self._said_hello and self._c is not None \
                    and self._broken is None:
                self.bye()
        finally:
            self.close()
        return False

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    @property
    def n_shards(self):
        return lib.ps_client_n_shards(self._handle())

    @property
    def buffers_held(self):
        """How many of the arrays lent to requests ZeroMQ still reads. 0
        after a wait() that succeeded; after one that failed, the client
        keeps them until recover(), hello() or close()."""
        return lib.ps_client_buffers_held(self._c) if self._c is not None else 0

    @property
    def job_id(self):
        """The job's id, as shard 0 gave it (0 before hello)."""
        return lib.ps_client_job_id(self._handle())

    @property
    def fingerprint(self):
        return self._fingerprint

    def set_fingerprint(self, fingerprint):
        """Replaces the fingerprint; only before the first hello()."""
        text = _fingerprint_text(fingerprint)
        if self._said_hello:
            raise PsError.from_code(-2, "the fingerprint is fixed once HELLO was sent")
        check(lib.ps_client_set_fingerprint(self._handle(), text.encode()))
        self._fingerprint = text

    # ---- waits: the one place a signal can interrupt ----

    def _call_waiting(self, fn, *args):
        """Calls a C function that waits, with Python's signal wake-up
        descriptor pointed at the client's stop pipe (main thread only):
        Ctrl-C ends the wait at once, and Python then raises
        KeyboardInterrupt as usual. Returns (rc, err)."""
        err = ErrBuf()
        try:
            while True:
                os.read(self._pipe_r, 512)
        except (BlockingIOError, OSError):
            pass
        old = None
        if threading.current_thread() is threading.main_thread():
            try:
                old = signal.set_wakeup_fd(self._pipe_w)
            except ValueError:
                old = None
            if old not in (None, -1):
                signal.set_wakeup_fd(old)  # the program has its own: keep it
                old = None
        try:
            rc = fn(*args, ctypes.byref(err))
        finally:
            if old is not None:
                signal.set_wakeup_fd(old)
        return rc, err

    def _wait_call(self, fn, *args, recovering=False):
        """A waiting call. After an error (or an interrupt) the requests in
        flight are in an unknown state, so the client refuses every op but
        close() (and, after a recoverable error, recover())."""
        handle = self._handle(recovering)
        try:
            rc, err = self._call_waiting(fn, handle, *args)
            check(rc, err)
        except BaseException as e:
            self._broken = e if isinstance(e, PsError) else PsError.from_code(-15, repr(e))
            raise
        self._broken = None

    # ---- joining ----

    def hello(self):
        """Joins (or rejoins) the job on every shard; returns the clock to
        resume at (0 for a new job) and sets self.clock to it. Raises
        ECONFLICT naming the option when the fingerprint, world or
        staleness differ from the job's, EFINISHED when the job ended.
        Under BSP a rejoin takes back this rank's pushes to rounds still in
        progress: replay from the returned clock."""
        clock = ctypes.c_int64(0)
        self._said_hello = True
        try:
            self._wait_call(lib.ps_client_hello, ctypes.byref(clock), recovering=True)
        finally:
            self._let_go()  # it forgot the requests of a failed wait
        self.clock = clock.value
        return self.clock

    def recover(self, exact=True):
        """After a recoverable error (EDEAD, ERESTARTED, ESTALE): forgets the
        requests in flight, rejoins, brings every shard to one clock (rolling
        back to the newest checkpoint they all hold when they differ), and
        returns that clock (also self.clock). The caller pulls its
        parameters there and replays from it. exact: roll back whenever the
        shards' clocks differ at all (BSP, or after a shard restart)."""
        clock = ctypes.c_int64(0)
        self._said_hello = True
        try:
            self._wait_call(lib.ps_client_recover, ctypes.c_bool(exact), ctypes.byref(clock),
                            recovering=True)
        finally:
            self._let_go()
        self.clock = clock.value
        return self.clock

    # ---- dense tables ----

    def init_table(self, table_id, name, init, optimizer):
        """Defines dense table table_id (init's shape; initial values from
        init) with a server-side optimizer. The first worker to define it
        wins; later definitions must match in name and size (ECONFLICT).
        Waits for every shard."""
        if not isinstance(optimizer, Optimizer):
            raise TypeError("optimizer must be a psclient.optim spec (SGD, Adam, ...)")
        if optimizer.kind == "ftrl":
            raise ValueError("ftrl is for sparse tables")
        arr = np.ascontiguousarray(init, dtype=np.float32)
        shape = arr.shape if arr.ndim else (1,)
        if arr.size == 0:
            raise ValueError("table %r is empty" % name)
        dims = (ctypes.c_uint64 * len(shape))(*shape)
        spec = optimizer.to_c()
        self._held.append(arr)  # sent zero-copy, like a gradient
        self._wait_call(lib.ps_client_init_table, ctypes.c_uint32(table_id), name.encode(),
                        dims, len(shape), ctypes.byref(spec), _fptr(arr))
        self._let_go()
        self._tables[table_id] = ("dense", arr.size)

    def _dense(self, table_id):
        kind = self._tables.get(table_id)
        if not kind or kind[0] != "dense":
            raise PsError.from_code(-9, "table %d is not a dense table of this client"
                                    % table_id)
        return kind[1]

    def pull(self, table_id, clock, out, flags=0):
        """Starts PULL of the table at clock into out (float32, whole
        table), written during wait()."""
        n = self._dense(table_id)
        out = _f32_out(out, n, "out")
        check(lib.ps_client_pull(self._handle(), table_id, clock, flags, _fptr(out)))
        self._held.append(out)
        return out

    def push(self, table_id, clock, grad, n_samples, flags=0):
        """Starts PUSH of grad (the gradient summed over n_samples samples)
        for clock; the shards divide by the n_samples of the round."""
        n = self._dense(table_id)
        g = _f32_in(grad, n, "grad")
        check(lib.ps_client_push(self._handle(), table_id, clock, _fptr(g), int(n_samples),
                                 ctypes.c_float(1.0), flags))
        self._held.append(g)

    def push_pull(self, table_id, clock, grad, n_samples, out, flags=0):
        """Starts PUSH_PULL: grad (summed over n_samples) for clock, and
        the parameters of clock + 1 into out, once readable (under BSP:
        once every live worker pushed clock)."""
        n = self._dense(table_id)
        g = _f32_in(grad, n, "grad")
        out = _f32_out(out, n, "out")
        check(lib.ps_client_push_pull(self._handle(), table_id, clock, _fptr(g), int(n_samples),
                                      ctypes.c_float(1.0), flags, _fptr(out)))
        self._held += [g, out]
        return out

    def wait(self):
        """Waits for every request in flight; raises the first error (a
        PsError naming shard, op, table and clock). After a recoverable one
        call recover(); after any other, close the client."""
        try:
            self._wait_call(lib.ps_client_wait)
        finally:
            self._let_go()

    def _let_go(self):
        """Drops the arrays lent to requests once ZeroMQ reads none of them:
        after a failed wait() it may still (a request queued for a shard
        that is gone is sent when the shard is back), until recover(),
        hello() or close()."""
        if self._c is not None and lib.ps_client_buffers_held(self._c) == 0:
            self._held = []

    def wait_table(self, table_id):
        """Waits until no request for table_id is in flight (its out is then
        written); the others may still be on the way."""
        self._wait_call(lib.ps_client_wait_table, ctypes.c_uint32(table_id))

    @property
    def reply_flags(self):
        """OR of the flags of the replies since the last wait() began
        (FLAG_SKIPPED: a round was skipped)."""
        return lib.ps_client_reply_flags(self._handle())

    # ---- sparse tables ----

    def init_sparse(self, table_id, name, dim, optimizer, init_scale=0.0, seed=0):
        """Defines sparse table table_id: uint64 keys -> rows of dim floats,
        made on first touch uniform in [-init_scale, init_scale] from
        (seed, table_id, key). optimizer: SGD, Adagrad or FTRL (FTRL needs
        init_scale 0)."""
        if optimizer.kind not in ("sgd", "adagrad", "ftrl", "momentum", "rmsprop", "adam",
                                  "adamw"):
            raise ValueError("no sparse optimizer %r" % optimizer.kind)
        spec = optimizer.to_c()
        self._wait_call(lib.ps_client_init_sparse, ctypes.c_uint32(table_id), name.encode(),
                        ctypes.c_uint32(dim), ctypes.byref(spec), ctypes.c_double(init_scale),
                        ctypes.c_uint64(seed))
        self._tables[table_id] = ("sparse", int(dim))

    def _sparse(self, table_id, keys):
        kind = self._tables.get(table_id)
        if not kind or kind[0] != "sparse":
            raise PsError.from_code(-9, "table %d is not a sparse table of this client"
                                    % table_id)
        k = np.ascontiguousarray(keys, dtype=np.uint64).reshape(-1)
        if len(np.unique(k)) != len(k):
            raise ValueError("sparse keys must be distinct")
        return kind[1], k

    def sparse_pull(self, table_id, clock, keys, out=None, flags=0):
        """Starts SPARSE_PULL of the rows of keys (distinct uint64) at clock
        into out (len(keys) x dim float32; made if None), written during
        wait(). FLAG_NO_CREATE: unseen keys read their start value and are
        not stored."""
        dim, k = self._sparse(table_id, keys)
        if out is None:
            out = np.empty((len(k), dim), dtype=np.float32)
        out = _f32_out(out, len(k) * dim, "out")
        check(lib.ps_client_sparse_pull(self._handle(), table_id, clock, flags, _u64ptr(k),
                                        len(k), _fptr(out)))
        self._held += [k, out]
        return out

    def sparse_push(self, table_id, clock, keys, grads):
        """Starts SPARSE_PUSH of gradient rows (len(keys) x dim, row i for
        keys[i]) for clock. The shards apply each row as given (no division
        by a sample count)."""
        dim, k = self._sparse(table_id, keys)
        g = _f32_in(grads, len(k) * dim, "grads")
        check(lib.ps_client_sparse_push(self._handle(), table_id, clock, _u64ptr(k), len(k),
                                        _fptr(g)))

    # ---- the end, and the rest ----

    def done(self):
        """Tells every shard this worker pushed its last clock: barriers stop
        waiting for it. Waits for the replies."""
        self._wait_call(lib.ps_client_done)

    def bye(self):
        """Stops heartbeats and leaves the job (bounded: at most 5 s);
        when every rank said BYE the shards end the job."""
        lib.ps_client_stop_heartbeats(self._handle())
        self._wait_call(lib.ps_client_bye)

    def report(self, samples, loss):
        """Progress the next heartbeats carry (shown by ps-ctl show workers)."""
        lib.ps_client_report(self._handle(), int(samples), float(loss))

    def stats(self, shard=0):
        """Shard's `show info` document (STATS), as a dict."""
        doc = ctypes.c_void_p()
        self._wait_call(lib.ps_client_admin, ctypes.c_uint32(shard), OP_STATS,
                        ctypes.byref(doc))
        try:
            return json.loads(ctypes.string_at(doc.value).decode()) if doc.value else {}
        finally:
            libc_free(doc)

    @property
    def bytes_sent(self):
        return lib.ps_client_bytes_sent(self._handle())

    @property
    def bytes_received(self):
        return lib.ps_client_bytes_received(self._handle())


__all__ = ["Client", "DTYPES", "FLAG_AFTER_ALL_DONE", "FLAG_SKIP", "FLAG_SKIPPED",
           "FLAG_NO_CREATE", "errors"]
