"""Server-side optimizers: what a table's shards apply to the gradient of
each round (docs/protocol.md "Optimizers" gives every formula). A spec is
plain data sent with INIT_TABLE; the workers never hold optimizer state.

    Adam(lr=1e-3, schedule="cosine", total_steps=1000, warmup_steps=100)

Schedules (every kind): "constant"; "step" (lr * gamma ** (t // step_size));
"cosine" (from lr to min_lr over total_steps updates); each after an
optional linear warm-up of warmup_steps updates.
"""
import ctypes

from ._lib import OptimSpec, lib

KINDS = ["sgd", "momentum", "adagrad", "rmsprop", "adam", "adamw", "ftrl"]
SCHEDULES = ["constant", "step", "cosine"]
_FIELDS = [f for f, _ in OptimSpec._fields_ if f not in ("kind", "schedule")]


class Optimizer:
    """One optimizer spec. Use the named subclasses; every field of
    ps_optim_spec_t can be given by keyword."""
    kind = None
    defaults = {}

    def __init__(self, lr, schedule="constant", **kw):
        if schedule not in SCHEDULES:
            raise ValueError("schedule %r: one of %s" % (schedule, ", ".join(SCHEDULES)))
        self.values = dict(self.defaults)
        self.values["lr"] = float(lr)
        self.schedule = schedule
        for k, v in kw.items():
            if k not in _FIELDS:
                raise TypeError("%s: no option %r (options: %s)"
                                % (type(self).__name__, k, ", ".join(_FIELDS)))
            self.values[k] = v
        if self.kind != "ftrl":
            why = lib.ps_optim_spec_check(ctypes.byref(self.to_c()))
            if why:
                raise ValueError("%s: %s" % (type(self).__name__, why.decode()))

    def to_c(self):
        spec = OptimSpec()
        spec.kind = KINDS.index(self.kind)
        spec.schedule = SCHEDULES.index(self.schedule)
        for k, v in self.values.items():
            setattr(spec, k, v)
        return spec

    def fingerprint(self):
        """key=value lines of this spec, for the job's fingerprint."""
        lines = ["optimizer=%s" % self.kind, "lr_schedule=%s" % self.schedule]
        lines += ["%s=%r" % (k, self.values[k]) for k in sorted(self.values)]
        return "\n".join(lines) + "\n"

    def __repr__(self):
        return "%s(%s)" % (type(self).__name__, ", ".join(
            "%s=%r" % kv for kv in sorted(self.values.items())))


class SGD(Optimizer):
    """w -= lr * (g + weight_decay * w)"""
    kind = "sgd"


class Momentum(Optimizer):
    """m = momentum * m + g'; w -= lr * m (nesterov: w -= lr * (g' + momentum * m))"""
    kind = "momentum"
    defaults = {"momentum": 0.9}


class Adagrad(Optimizer):
    kind = "adagrad"
    defaults = {"eps": 1e-8}


class RMSprop(Optimizer):
    kind = "rmsprop"
    defaults = {"rho": 0.99, "eps": 1e-8}


class Adam(Optimizer):
    kind = "adam"
    defaults = {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8}


class AdamW(Optimizer):
    """Adam with decoupled weight decay: w *= 1 - lr * weight_decay first."""
    kind = "adamw"
    defaults = {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.01}


class FTRL(Optimizer):
    """FTRL-proximal, per coordinate: sparse tables only."""
    kind = "ftrl"
    defaults = {"l1": 0.0, "l2": 0.0, "ftrl_beta": 1.0}
