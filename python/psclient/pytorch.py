"""PyTorch on ps: every parameter of a torch.nn.Module becomes a dense table
whose optimizer runs on the servers.

    net = Net()
    client = psclient.Client(fingerprint={"script": "train.py", "batch_size": 64})
    model = psclient.pytorch.DistributedModule(net, client, psclient.optim.Adam(lr=1e-3))
    while not model.finished:
        while model.clock < steps:
            x, y = batch(model.clock)             # the data position follows the clock
            F.cross_entropy(model(x), y, reduction="sum").backward()
            model.step()                          # push gradients, pull parameters
        model.finish()                            # DONE; the final model once all are done
    model.leave()

Gradients are sums over the batch (reduction="sum"; loss_reduction="mean"
multiplies a mean's gradient by the batch size): the servers divide the
round's summed gradient by the round's summed sample count, so under BSP
N workers with batch b train exactly the model one worker with batch N*b
would (up to float summation order).

With overlap (the default) each parameter's gradient is pushed the moment
autograd has accumulated it (a hook on its AccumulateGrad node), so the
first layers' backward runs while the last layers' gradients are on the
wire; step() then only waits for the new parameters, which are written
straight into the parameters' own memory (no copies).

Recovery: when a shard restarts, this worker is declared dead, or the job
is rolled back, step() brings every shard to one clock (rolling back to a
checkpoint when needed, exactly under BSP), pulls the parameters there and
sets model.clock back: the loop above then replays from that clock, so the
data must be a function of the clock (as in the example). Any other error
is raised: a wrong model is never produced silently.

Module buffers (BatchNorm's running statistics) are not parameters and
stay local to each worker.

Each table is named after its parameter (table_name()): the shards show
the name in their stats and logs, the table id is what identifies it.
"""
import re

import torch

from .errors import PsError
from .client import FLAG_AFTER_ALL_DONE
from .optim import Optimizer


# what the shards accept as a table name (docs/protocol.md, TableSpec)
NAME_MAX = 63
_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9._:\[\]-]")


def table_name(table_id, name):
    """The name table table_id gets for the parameter called name. The
    shards refuse a name that is not 1-63 of [A-Za-z0-9._:-] and brackets,
    or that starts with '.' or '-' (libps_client refuses it before sending
    it), while a parameter's name is any string PyTorch allows (a
    ModuleDict key may hold spaces, a deep model's names run long): other
    bytes become '_', and a longer name keeps its end, the most specific
    part ("layers.11.attn.out_proj.weight"), after the table id, so that
    two cut names still differ. The full name is in the fingerprint."""
    safe = _NOT_IN_NAME.sub("_", name)
    if len(safe) > NAME_MAX:
        head = "t%d:" % table_id
        safe = head + safe[len(safe) - (NAME_MAX - len(head)):]
    if not safe or safe[0] in ".-":
        safe = ("t%d:" % table_id + safe)[:NAME_MAX]
    return safe


def _numpy(t):
    """The float32 numpy view of a CPU tensor's memory (shared, no copy)."""
    return t.detach().numpy()


class DistributedModule(torch.nn.Module):
    """Wraps module: its parameters live on the servers of client's job.

    optimizer: a psclient.optim spec applied by the servers to every
    parameter (or a dict name -> spec, with "*" as the default).
    table_base: the first table id used (parameters take consecutive ids,
    in named_parameters() order). loss_reduction: "sum" (the default; the
    loss is a sum over the batch) or "mean". overlap: push each gradient
    from a backward hook (True) or all at step() (False).

    The fingerprint sent to the shards gets one line per parameter (name,
    shape) and the optimizer's, beside what the client was given (batch
    size, seed, data...): a worker of another model is refused, naming
    the first differing line.
    """

    def __init__(self, module, client, optimizer, *, table_base=0, loss_reduction="sum",
                 overlap=True):
        super().__init__()
        if loss_reduction not in ("sum", "mean"):
            raise ValueError("loss_reduction is 'sum' or 'mean'")
        if client.dtype == "f16":
            raise ValueError("psclient.pytorch does not run fp16's dynamic loss scaling: use "
                             "dtype 'bf16' (fp32's range) or 'f32'")
        self.module = module
        self.client = client
        self.loss_reduction = loss_reduction
        self.overlap = overlap
        self.params = []
        for name, p in module.named_parameters():
            if not p.requires_grad:
                continue
            if p.dtype != torch.float32 or p.device.type != "cpu" or not p.is_contiguous():
                raise TypeError("parameter %r: ps tables are contiguous float32 CPU tensors, "
                                "this one is %s on %s" % (name, p.dtype, p.device))
            self.params.append((name, p))
        if not self.params:
            raise ValueError("the module has no trainable parameters")
        self.ids = [table_base + i for i in range(len(self.params))]
        self.optimizers = [self._optimizer_for(optimizer, name) for name, _ in self.params]
        self.n_samples = 0          # the batch of the current step (set by forward)
        self.finished = False
        self.recoveries = 0
        self._sent = [False] * len(self.params)
        self._pending_error = None
        client.set_fingerprint(client.fingerprint + self._fingerprint())
        self._hooks = []
        self._join()
        if overlap:
            self._install_hooks()

    # ---- setup ----

    @staticmethod
    def _optimizer_for(optimizer, name):
        if isinstance(optimizer, Optimizer):
            return optimizer
        spec = optimizer.get(name, optimizer.get("*"))
        if not isinstance(spec, Optimizer):
            raise TypeError("no optimizer for parameter %r (give one, or '*')" % name)
        return spec

    def _fingerprint(self):
        lines = ["torch.world=%d" % self.client.world,
                 "torch.loss_reduction=%s" % self.loss_reduction,
                 "torch.params=%d" % len(self.params)]
        for tid, (name, p), opt in zip(self.ids, self.params, self.optimizers):
            shape = "x".join(str(d) for d in p.shape) or "1"
            oneline = opt.fingerprint().strip().replace("\n", ",")
            lines.append("torch.param.%d=%s %s %s" % (tid, name, shape, oneline))
        return "\n".join(lines) + "\n"

    def _join(self):
        """HELLO (under BSP through recover(exact): a worker started into a
        job whose shards disagree brings them to one clock first), the
        tables defined from this worker's values (the first definition
        wins), and the parameters pulled from where the job is."""
        c = self.client
        clock = c.recover(exact=True) if c.max_staleness == 0 else c.hello()
        with torch.no_grad():
            for tid, (name, p), opt in zip(self.ids, self.params, self.optimizers):
                c.init_table(tid, table_name(tid, name), _numpy(p), opt)
        self._pull_all(clock)

    def _pull_all(self, clock, flags=0):
        with torch.no_grad():
            for tid, (_, p) in zip(self.ids, self.params):
                self.client.pull(tid, clock, _numpy(p), flags)
        self.client.wait()
        self.clock = clock

    def _install_hooks(self):
        for i, (_, p) in enumerate(self.params):
            # the AccumulateGrad node of p: its hook runs once p.grad holds
            # this backward's whole gradient (every use of p summed)
            acc = p.view_as(p).grad_fn.next_functions[0][0]
            self._hooks.append((acc, acc.register_hook(self._hook(i))))

    def _hook(self, i):
        def on_grad_ready(*_):
            if self._pending_error is None:
                try:
                    self._send(i)
                except PsError as e:  # raised from step(), not from inside autograd
                    self._pending_error = e
        return on_grad_ready

    # ---- the step ----

    def forward(self, *args, **kw):
        """The module's forward; notes the batch size (args[0].shape[0]) as
        the step's sample count unless n_samples was set."""
        if args and hasattr(args[0], "shape") and len(args[0].shape):
            self.n_samples = int(args[0].shape[0])
        return self.module(*args, **kw)

    def _send(self, i):
        tid, (_, p) = self.ids[i], self.params[i]
        if p.grad is None:  # unused this step: under BSP every table pushes every clock
            p.grad = torch.zeros_like(p)
        if self.loss_reduction == "mean":
            p.grad.mul_(self.n_samples)
        g = p.grad if p.grad.is_contiguous() else p.grad.contiguous()
        self.client.push_pull(tid, self.clock, _numpy(g), self.n_samples, _numpy(p))
        self._sent[i] = True

    def step(self):
        """Pushes what the hooks have not, waits for the parameters of
        clock + 1 (written into the module's parameters) and advances the
        clock; clears the gradients. True after a step, False after a
        recovery set the clock back (replay from model.clock)."""
        if self.n_samples <= 0:
            raise ValueError("no samples in this step (call the model on a batch first)")
        if not any(self._sent) and all(p.grad is None for _, p in self.params):
            raise ValueError("step() without a backward() since the last step: no gradients")
        try:
            if self._pending_error is not None:
                raise self._pending_error
            for i in range(len(self.params)):
                if not self._sent[i]:
                    self._send(i)
            self.client.wait()
        except PsError as e:
            self._pending_error = None
            self._clear()
            if not e.recoverable:
                raise
            self._recover(e)
            return False
        self._clear()
        self.clock += 1
        return True

    def _clear(self):
        self._sent = [False] * len(self.params)
        for _, p in self.params:
            p.grad = None  # the C side let go of it (wait returned)

    def _recover(self, why):
        """Rejoins after a recoverable error and pulls the parameters at the
        clock the shards agree on; again if that is cut short too."""
        for _ in range(100):
            self.recoveries += 1
            exact = self.client.max_staleness == 0 or why.name == "ERESTARTED"
            try:
                clock = self.client.recover(exact=exact)
                self._pull_all(clock)
                return
            except PsError as e:
                if not e.recoverable:
                    raise
                why = e
        raise why

    def finish(self):
        """After the last step: DONE, then the final parameters once every
        worker is done. Sets finished and returns True, or returns False
        when a recovery sent the clock back (train on from model.clock)."""
        try:
            self.client.done()
            self._pull_all(self.clock, FLAG_AFTER_ALL_DONE)
        except PsError as e:
            if not e.recoverable:
                raise
            self._recover(e)
            return False
        self.finished = True
        return True

    def leave(self):
        """BYE: this worker leaves the job (the model is final); when every
        rank has left, the shards end the job. A failed BYE is not an
        error of the model: the shards end the job at their job TTL."""
        for _, h in self._hooks:
            h.remove()
        self._hooks = []
        try:
            self.client.bye()
        except PsError as e:
            return e
        return None

    def state_numpy(self):
        """name -> a copy of each parameter as a numpy array."""
        return {name: _numpy(p).copy() for name, p in self.params}
