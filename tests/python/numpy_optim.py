"""The servers' optimizers reimplemented in NumPy from docs/protocol.md
("Optimizers"), fp32 operation by operation as the shards compute them,
for the tests to check the real servers against: an independent reading
of the documented formulas, not a copy of the C code's structure."""
import math

import numpy as np

f32 = np.float32


def lr_at(o, t):
    """The learning rate of update t (0-based), in double precision."""
    lr = o["lr"]
    warm = o.get("warmup_steps", 0)
    if warm and t < warm:
        return lr * (t + 1) / warm
    u = t - warm
    sched = o.get("schedule", "constant")
    if sched == "step":
        return lr * math.pow(o["gamma"], u // o["step_size"])
    if sched == "cosine":
        total = o["total_steps"]
        frac = 1.0 if u >= total else u / total
        lo = o.get("min_lr", 0.0)
        return lo + (lr - lo) * 0.5 * (1.0 + math.cos(math.pi * frac))
    return lr


class Reference:
    """One dense table's parameters and optimizer state."""

    def __init__(self, kind, params, **o):
        self.kind, self.o = kind, o
        self.w = np.array(params, dtype=f32)
        self.m = np.zeros_like(self.w)
        self.v = np.zeros_like(self.w)
        self.t = 0

    def step(self, grad_sum, n_samples):
        """One round: the summed gradient over n_samples samples."""
        o, w = self.o, self.w
        g = np.asarray(grad_sum, dtype=f32)
        scale = f32(1) / f32(n_samples)
        lr = f32(lr_at(o, self.t))
        wd = f32(o.get("weight_decay", 0.0))
        self.t += 1
        k = self.kind
        if k == "sgd":
            self.w = w - lr * (g * scale + wd * w)
        elif k == "momentum":
            mu = f32(o["momentum"])
            gi = g * scale + wd * w
            if o.get("nesterov"):
                self.m = mu * self.m + gi
                self.w = w - lr * (gi + mu * self.m)
            else:
                self.m = mu * self.m + gi
                self.w = w - lr * self.m
        elif k == "adagrad":
            gi = g * scale + wd * w
            self.m = self.m + gi * gi
            self.w = w - lr * gi / (np.sqrt(self.m) + f32(o["eps"]))
        elif k == "rmsprop":
            rho = f32(o["rho"])
            gi = g * scale + wd * w
            self.m = rho * self.m + (f32(1) - rho) * gi * gi
            self.w = w - lr * gi / (np.sqrt(self.m) + f32(o["eps"]))
        elif k in ("adam", "adamw"):
            b1, b2, eps = f32(o["beta1"]), f32(o["beta2"]), f32(o["eps"])
            t = float(self.t)
            step = f32(float(lr) / (1.0 - math.pow(o["beta1"], t)))
            inv_bc2 = f32(1.0 / math.sqrt(1.0 - math.pow(o["beta2"], t)))
            l2 = wd if k == "adam" else f32(0)
            decay = f32(1) - lr * wd if k == "adamw" else f32(1)
            gi = g * scale + l2 * w
            self.m = b1 * self.m + (f32(1) - b1) * gi
            self.v = b2 * self.v + (f32(1) - b2) * gi * gi
            self.w = w * decay - step * self.m / (np.sqrt(self.v) * inv_bc2 + eps)
        else:
            raise ValueError(k)
        assert self.w.dtype == f32
        return self.w
