#!/usr/bin/python3
"""test_net_torch.py - ps's layer library against PyTorch: for each model,
net_driver writes ps's parameters, a batch, its logits, summed loss and
every parameter gradient; the same model in PyTorch (torch_nets.py), in
float64 with those parameters, must give the same numbers to 1e-4 of each
tensor's largest magnitude. Exit 77 (skipped) without PyTorch.

Usage: test_net_torch.py NET_DRIVER"""
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import torch
except ImportError:
    print("# numpy or torch missing: skipped")
    sys.exit(77)

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_nets  # noqa: E402

TOL = 1e-4
MODELS = [
    ("mlp", ["--spec", "20", "dense(32) relu dense(16) tanh dense(5) cross_entropy"]),
    ("cnn", ["--spec", "1x12x12", "conv2d(8,3,pad=1) relu maxpool(2) conv2d(16,3,stride=2,pad=1) "
             "relu avgpool(2) flatten dense(32) gelu dense(10) cross_entropy"]),
    ("cnn-ln-mse", ["--spec", "3x9x9", "conv2d(4,3,bias=0) sigmoid maxpool(3,stride=2) flatten "
                    "dense(12) layernorm dense(1) mse"]),
    ("mlp-onehot-mse", ["--spec", "6", "dense(8) tanh dense(4) mse"]),
    ("logistic", ["--spec", "6", "dense(8) tanh dense(1) bce"]),
    ("transformer-spec", ["--spec", "tokens(12)", "embed(256,32) posembed residual[ layernorm "
                          "attention(4) ] residual[ layernorm dense(128) gelu dense(32) ] "
                          "layernorm dense(256,bias=0) cross_entropy"]),
    ("gpt", ["--gpt", "2,4,32,16"]),
]


def torch_model(args):
    if args[0] == "--gpt":
        return torch_nets.GPT(*[int(v) for v in args[1].split(",")])
    return torch_nets.SpecNet(args[1], args[2])


def rel_err(a, b):
    scale = max(float(np.abs(b).max()), 1e-30)
    diff = float(np.abs(a - b).max())
    return diff, diff / scale


def compare(driver, name, args, batch):
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([driver, "dump", d, *args, "--batch", str(batch), "--seed", "3"], check=True)
        tables = [line.split() for line in open(f"{d}/tables.txt")]
        names = [t[0] for t in tables]
        params = {n: np.load(f"{d}/p{i}.npy").astype(np.float64) for i, n in enumerate(names)}
        grads = {n: np.load(f"{d}/g{i}.npy").astype(np.float64) for i, n in enumerate(names)}
        x = torch.from_numpy(np.load(f"{d}/x.npy").astype(np.float64))
        y = torch.from_numpy(np.load(f"{d}/y.npy").astype(np.float64))
        out = np.load(f"{d}/out.npy").astype(np.float64)
        loss = float(open(f"{d}/loss.txt").read())
    model = torch_model(args).double()
    torch_nets.load_tables(model, params)
    model.train()
    z, tloss = model(x, y)
    tloss.backward()
    failures = []
    o_abs, o_rel = rel_err(out, z.detach().reshape(out.shape).numpy())
    l_rel = abs(loss - tloss.item()) / abs(tloss.item())
    worst = (0.0, 0.0, "")
    for n in names:
        param, transposed = model.tables[n]
        g = param.grad.detach()
        g = (g.t() if transposed else g).reshape(grads[n].shape).numpy()
        a, r = rel_err(grads[n], g)
        if r > worst[1]:
            worst = (a, r, n)
        if r > TOL:
            failures.append(f"{n}: max abs {a:.3g}, rel {r:.3g}")
    if o_rel > TOL:
        failures.append(f"logits: max abs {o_abs:.3g}, rel {o_rel:.3g}")
    if l_rel > TOL:
        failures.append(f"loss: ps {loss:.9g} torch {tloss.item():.9g}")
    print(f"{name:17s} params {sum(v.size for v in params.values()):6d}  logits abs {o_abs:.2e} "
          f"rel {o_rel:.2e}  loss rel {l_rel:.2e}  grads worst abs {worst[0]:.2e} rel "
          f"{worst[1]:.2e} ({worst[2]})")
    return failures


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    torch.manual_seed(0)
    bad = 0
    for name, args in MODELS:
        for f in compare(sys.argv[1], name, args, 4 if name in ("gpt", "transformer-spec") else 8):
            print(f"FAIL {name}: {f}")
            bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
