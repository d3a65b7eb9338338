#!/usr/bin/python3
"""test_export.py - a model ps exported, rebuilt by someone else: for each
exported directory (model.json + .npy tables) and its ONNX file,

  - ps's own logits on a batch (net_driver run: ps_export_load + forward);
  - PyTorch (float64) rebuilding the net from model.json's graph alone
    (layer kinds, arguments, table prefixes), and for a GPT also from its
    "gpt" config through nanoGPT's layout (torch_nets.GPT);
  - the ONNX file: Debian's python3-onnx checker (full_check, with shape
    inference), then a small NumPy interpreter of the operators ps writes,
    in float64;

must agree to 1e-4 of the logits' largest magnitude. Exit 77 (skipped)
without numpy, torch or onnx.

Usage: test_export.py NET_DRIVER DIR ONNX [DIR ONNX ...]"""
import json
import math
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import onnx
    import onnx.numpy_helper
    import torch
    import torch.nn as nn
except ImportError as e:
    print(f"# {e}: skipped")
    sys.exit(77)

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_nets  # noqa: E402

TOL = 1e-4
BATCH = 5


# ---- PyTorch from model.json's graph ----

class Residual(nn.Module):
    def __init__(self, body):
        super().__init__()
        self.body = body

    def forward(self, x):
        return x + self.body(x)


class Add(nn.Module):
    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x):
        return x + self.w


class Gather(nn.Module):
    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x):
        return self.w[x.long()]


def linear(t, prefix, bias=True):
    w = t[f"{prefix}.W"]
    m = nn.Linear(w.shape[0], w.shape[1], bias=bias)
    with torch.no_grad():
        m.weight.copy_(w.t())
        if bias:
            m.bias.copy_(t[f"{prefix}.b"])
    return m


class Attention(nn.Module):
    def __init__(self, t, prefix, heads):
        super().__init__()
        self.heads = heads
        self.qkv = linear(t, f"{prefix}.qkv")
        self.proj = linear(t, f"{prefix}.proj")

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)
        q, k, v = (z.view(b, n, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        att = q @ k.transpose(-2, -1) / math.sqrt(d // self.heads)
        mask = torch.ones(n, n, dtype=torch.bool).tril()
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        return self.proj((att @ v).transpose(1, 2).reshape(b, n, d))


def build(items, t):
    mods = []
    for it in items:
        kind, a, name = it["kind"], it.get("args", {}), it.get("name")
        if kind == "residual":
            mods.append(Residual(build(it["body"], t)))
        elif kind == "dense":
            mods.append(linear(t, name, bool(a["bias"])))
        elif kind == "conv2d":
            w = t[f"{name}.W"]
            m = nn.Conv2d(w.shape[1], w.shape[0], a["k"], a["stride"], a["pad"], bias=bool(a["bias"]))
            with torch.no_grad():
                m.weight.copy_(w)
                if a["bias"]:
                    m.bias.copy_(t[f"{name}.b"])
            mods.append(m)
        elif kind in ("maxpool", "avgpool"):
            mods.append((nn.MaxPool2d if kind == "maxpool" else nn.AvgPool2d)(a["k"], a["stride"]))
        elif kind == "flatten":
            mods.append(nn.Flatten())
        elif kind in ("relu", "gelu", "tanh", "sigmoid"):
            mods.append({"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}[kind]())
        elif kind == "layernorm":
            g = t[f"{name}.g"]
            m = nn.LayerNorm(g.shape[0], eps=a["eps"])
            with torch.no_grad():
                m.weight.copy_(g)
                m.bias.copy_(t[f"{name}.b"])
            mods.append(m)
        elif kind == "embed":
            mods.append(Gather(t[f"{name}.W"]))
        elif kind == "posembed":
            mods.append(Add(t[f"{name}.W"]))
        elif kind == "attention":
            mods.append(Attention(t, name, a["heads"]))
        elif kind in ("dropout", "cross_entropy", "mse", "bce"):
            continue  # dropout is off outside training; the loss is not part of the logits
        else:
            raise ValueError(f"unknown layer kind {kind}")
    return nn.Sequential(*mods)


def torch_inputs(meta, rows):
    inp = meta["input"]
    if inp["kind"] == "tokens":
        return torch.from_numpy(rows[:, :inp["shape"][0]].astype(np.int64))
    return torch.from_numpy(rows.astype(np.float64)).view(rows.shape[0], *inp["shape"])


# ---- ONNX in NumPy ----

def conv(x, w, b, strides, pads):
    x = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    win = np.lib.stride_tricks.sliding_window_view(x, w.shape[2:], axis=(2, 3))
    win = win[:, :, ::strides[0], ::strides[1]]  # N C H W kh kw
    y = np.einsum("nchwij,ocij->nohw", win, w)
    return y + b.reshape(1, -1, 1, 1) if b is not None else y


def pool(x, k, s, op):
    win = np.lib.stride_tricks.sliding_window_view(x, k, axis=(2, 3))[:, :, ::s[0], ::s[1]]
    return op(win, axis=(4, 5))


def layernorm(x, g, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


def softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


ERF = np.frompyfunc(math.erf, 1, 1)


def run_node(n, v):
    a = {x.name: onnx.helper.get_attribute_value(x) for x in n.attribute}
    i = [v[name] for name in n.input]
    op = n.op_type
    if op == "MatMul":
        return [i[0] @ i[1]]
    if op in ("Add", "Mul", "Div"):
        return [{"Add": np.add, "Mul": np.multiply, "Div": np.divide}[op](i[0], i[1])]
    if op == "Conv":
        return [conv(i[0], i[1], i[2] if len(i) > 2 else None, a["strides"], a["pads"])]
    if op in ("MaxPool", "AveragePool"):
        return [pool(i[0], a["kernel_shape"], a["strides"], np.max if op == "MaxPool" else np.mean)]
    if op == "Flatten":
        return [i[0].reshape(i[0].shape[0], -1)]
    if op == "Relu":
        return [np.maximum(i[0], 0)]
    if op == "Tanh":
        return [np.tanh(i[0])]
    if op == "Sigmoid":
        return [1 / (1 + np.exp(-i[0]))]
    if op == "Erf":
        return [ERF(i[0]).astype(np.float64)]
    if op == "LayerNormalization":
        assert a.get("axis", -1) == -1
        return [layernorm(i[0], i[1], i[2], a["epsilon"])]
    if op == "Gather":
        return [np.take(i[0], i[1], axis=a.get("axis", 0))]
    if op == "Split":
        return np.split(i[0], np.cumsum(i[1])[:-1], axis=a["axis"])
    if op == "Reshape":
        shape = [d if d != 0 else i[0].shape[k] for k, d in enumerate(i[1])]
        return [i[0].reshape(shape)]
    if op == "Transpose":
        return [i[0].transpose(a["perm"])]
    if op == "Softmax":
        return [softmax(i[0], a.get("axis", -1))]
    if op == "Identity":
        return [i[0]]
    raise ValueError(f"operator {op} not in the interpreter")


def run_onnx(path, feed):
    m = onnx.load(path)
    onnx.checker.check_model(m, full_check=True)
    assert [o.version for o in m.opset_import] == [17], m.opset_import
    v = {t.name: onnx.numpy_helper.to_array(t).astype(np.float64) if t.data_type == 1
         else onnx.numpy_helper.to_array(t) for t in m.graph.initializer}
    (inp,) = m.graph.input
    v[inp.name] = feed
    for n in m.graph.node:
        for name, val in zip(n.output, run_node(n, v)):
            v[name] = val
    (out,) = m.graph.output
    return v[out.name], sorted({n.op_type for n in m.graph.node})


# ---- the comparison ----

def batch(meta, seed):
    rng = np.random.default_rng(seed)
    inp = meta["input"]
    if inp["kind"] == "tokens":
        return rng.integers(0, 256, size=(BATCH, inp["row_len"])).astype(np.float32)
    return rng.standard_normal((BATCH, inp["row_len"])).astype(np.float32)


def worst(a, b):
    return float(np.abs(a - b).max()) / max(float(np.abs(b).max()), 1.0)


def check(driver, d, onnx_path):
    meta = json.load(open(f"{d}/model.json"))
    tables = {t["name"]: torch.from_numpy(np.load(f"{d}/{t['file']}").astype(np.float64))
              for t in meta["tables"]}
    rows = batch(meta, 19)
    with tempfile.TemporaryDirectory() as w:
        np.save(f"{w}/x.npy", rows)
        subprocess.run([driver, "run", d, f"{w}/x.npy", f"{w}/out.npy"], check=True)
        ps = np.load(f"{w}/out.npy").astype(np.float64).reshape(BATCH, *meta["output"]["shape"])
    errs = {}
    with torch.no_grad():
        net = build(meta["graph"], tables).double().eval()
        errs["torch from graph"] = worst(net(torch_inputs(meta, rows)).numpy(), ps)
        if "gpt" in meta:
            g = meta["gpt"]
            gpt = torch_nets.GPT(g["n_layer"], g["n_head"], g["n_embd"], g["block_size"]).double()
            torch_nets.load_tables(gpt, {k: v.numpy() for k, v in tables.items()})
            z, _ = gpt.eval()(torch.from_numpy(rows.astype(np.float64)))
            errs["torch nanoGPT from gpt config"] = worst(z.numpy(), ps)
    feed = torch_inputs(meta, rows).numpy()
    z, ops = run_onnx(onnx_path, feed)
    errs["onnx (numpy)"] = worst(z, ps)
    what = meta.get("gpt") or meta["spec"]["layers"]
    print(f"{meta['model']} {what}: logits {ps.shape}; ONNX ops {', '.join(ops)}")
    for k, e in errs.items():
        print(f"  {k}: worst difference {e:.2e} of the largest logit")
    bad = [k for k, e in errs.items() if not e <= TOL]
    return bad


def main():
    if len(sys.argv) < 4 or len(sys.argv) % 2:
        sys.exit(__doc__)
    driver = sys.argv[1]
    failures = []
    for d, o in zip(sys.argv[2::2], sys.argv[3::2]):
        failures += [f"{d}: {k}" for k in check(driver, d, o)]
    if failures:
        sys.exit("FAIL: " + "; ".join(failures))
    print("ok: export and ONNX round trips agree with ps")


if __name__ == "__main__":
    main()
