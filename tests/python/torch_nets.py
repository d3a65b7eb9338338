"""torch_nets.py - the models of ps's layer library written in PyTorch:
a translation of the spec language (worker/ps_netspec.h) into nn modules,
and a nanoGPT-style GPT with ps's table names. Used by test_net_torch.py
(equivalence) and bench/torch_layers.py (speed). Each model exposes
`tables`: ps table name -> (parameter, transposed) where transposed means
ps stores the matrix as in x out and nn.Linear as out x in."""
import math
import re

import torch
import torch.nn as nn
import torch.nn.functional as F

ARGS = {  # kind -> [(name, default or None if required)], as ps_layer.c's table
    "dense": [("out", None), ("bias", 1)],
    "conv2d": [("out", None), ("k", None), ("stride", 1), ("pad", 0), ("bias", 1)],
    "maxpool": [("k", None), ("stride", 0)],
    "avgpool": [("k", None), ("stride", 0)],
    "dropout": [("p", None)],
    "layernorm": [("eps", 1e-5)],
    "embed": [("vocab", None), ("dim", None)],
    "attention": [("heads", None)],
}
PREFIX = {"dense": "dense", "conv2d": "conv", "layernorm": "ln", "embed": "embed",
          "posembed": "pos", "attention": "attn"}
LOSSES = ("cross_entropy", "mse", "bce")


def parse_input(text):
    m = re.fullmatch(r"\s*tokens\((\d+)\)\s*", text)
    if m:
        return ("tokens", int(m.group(1)))
    dims = [int(v) for v in text.strip().split("x")]
    return ({1: "vec", 2: "seq", 3: "img"}[len(dims)], *dims)


def parse_layers(text):
    """Nested list of (kind, {arg: value}); a residual is ("residual", [...])."""
    stack, cur = [], []
    for m in re.finditer(r"\]|(\w+)(?:\(([^()]*)\))?\s*(\[)?", text):
        if m.group(0) == "]":
            body, cur = cur, stack.pop()
            cur.append(("residual", body))
            continue
        kind, argtext, bracket = m.group(1), m.group(2), m.group(3)
        if kind == "residual":
            assert bracket
            stack.append(cur)
            cur = []
            continue
        args = {n: d for n, d in ARGS.get(kind, [])}
        pos = 0
        for a in (argtext or "").split(","):
            if not a.strip():
                continue
            if "=" in a:
                k, v = a.split("=")
                args[k.strip()] = float(v)
            else:
                args[ARGS[kind][pos][0]] = float(a)
                pos += 1
        cur.append((kind, args))
    assert not stack
    return cur


class Residual(nn.Module):
    def __init__(self, body):
        super().__init__()
        self.body = body

    def forward(self, x):
        return x + self.body(x)


class PosEmbed(nn.Module):
    def __init__(self, t, d):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(t, d))

    def forward(self, x):
        return x + self.weight


class Tokens(nn.Module):
    def __init__(self, emb):
        super().__init__()
        self.emb = emb

    def forward(self, x):
        return self.emb(x.long())


class CausalSelfAttention(nn.Module):
    """nanoGPT's attention (without its dropouts): qkv, per-head causal
    softmax(q k^T / sqrt(hd)) v, proj."""

    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(d // self.heads)
        mask = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, d)
        return self.proj(y)


def build_seq(layers, shape, counts, tables):
    """nn.Sequential for layers on per-sample shape; returns (module, shape)."""
    mods = []
    for kind, args in layers:
        name = None
        if kind in PREFIX:
            counts[kind] = counts.get(kind, 0) + 1
            name = f"{PREFIX[kind]}{counts[kind]}"
        if kind == "residual":
            body, out = build_seq(args, shape, counts, tables)
            assert out == shape
            mods.append(Residual(body))
            continue
        if kind in LOSSES:
            continue
        m, shape = build_one(kind, args, shape)
        mods.append(m)
        register(kind, name, m, tables)
    return nn.Sequential(*mods), shape


def build_one(kind, a, shape):
    if kind == "dense":
        width = shape[-1]
        return nn.Linear(width, int(a["out"]), bias=bool(a["bias"])), (*shape[:-1], int(a["out"]))
    if kind == "conv2d":
        c, h, w = shape
        k, s, p = int(a["k"]), int(a["stride"]), int(a["pad"])
        out = (int(a["out"]), (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1)
        return nn.Conv2d(c, int(a["out"]), k, s, p, bias=bool(a["bias"])), out
    if kind in ("maxpool", "avgpool"):
        k = int(a["k"])
        s = int(a["stride"]) or k
        c, h, w = shape
        cls = nn.MaxPool2d if kind == "maxpool" else nn.AvgPool2d
        return cls(k, s), (c, (h - k) // s + 1, (w - k) // s + 1)
    if kind == "flatten":
        return nn.Flatten(), (math.prod(shape),)
    if kind in ("relu", "gelu", "tanh", "sigmoid"):
        return {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}[kind](), shape
    if kind == "dropout":
        return nn.Dropout(a["p"]), shape
    if kind == "layernorm":
        return nn.LayerNorm(shape[-1], eps=a["eps"]), shape
    if kind == "embed":
        return Tokens(nn.Embedding(int(a["vocab"]), int(a["dim"]))), (shape[0], int(a["dim"]))
    if kind == "posembed":
        return PosEmbed(*shape), shape
    if kind == "attention":
        return CausalSelfAttention(shape[1], int(a["heads"])), shape
    raise ValueError(kind)


def register(kind, name, m, tables):
    if kind in ("dense",):
        tables[f"{name}.W"] = (m.weight, True)
        if m.bias is not None:
            tables[f"{name}.b"] = (m.bias, False)
    elif kind == "conv2d":
        tables[f"{name}.W"] = (m.weight, False)
        if m.bias is not None:
            tables[f"{name}.b"] = (m.bias, False)
    elif kind == "layernorm":
        tables[f"{name}.g"] = (m.weight, False)
        tables[f"{name}.b"] = (m.bias, False)
    elif kind == "embed":
        tables[f"{name}.W"] = (m.emb.weight, False)
    elif kind == "posembed":
        tables[f"{name}.W"] = (m.weight, False)
    elif kind == "attention":
        for part in ("qkv", "proj"):
            lin = getattr(m, part)
            tables[f"{name}.{part}.W"] = (lin.weight, True)
            tables[f"{name}.{part}.b"] = (lin.bias, False)


class SpecNet(nn.Module):
    """A ps spec as a PyTorch model: forward(rows, y) -> (logits, summed loss)."""

    def __init__(self, input_text, layers_text):
        super().__init__()
        self.input = parse_input(input_text)
        layers = parse_layers(layers_text)
        self.loss_kind = layers[-1][0]
        self.tables = {}
        shape = self.input[1:] if self.input[0] != "tokens" else (self.input[1],)
        self.body, self.out_shape = build_seq(layers, shape, {}, self.tables)

    def forward(self, rows, y):
        kind = self.input[0]
        if kind == "tokens":
            t = self.input[1]
            x, targets = rows[:, :t], rows[:, 1:].long()
        else:
            x, targets = rows.view(rows.shape[0], *self.input[1:]), y
        z = self.body(x)
        return z, summed_loss(self.loss_kind, z, targets)


def summed_loss(kind, z, y):
    """ps's losses: sums over samples; a sequence's loss is its mean over positions."""
    if kind == "cross_entropy" and z.dim() == 3:
        return F.cross_entropy(z.reshape(-1, z.shape[-1]), y.reshape(-1), reduction="sum") / z.shape[1]
    if kind == "cross_entropy":
        return F.cross_entropy(z, y.long(), reduction="sum")
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(z[:, 0], (y > 0).to(z.dtype), reduction="sum")
    if z.shape[1] == 1:
        return ((z[:, 0] - y) ** 2).sum()
    onehot = F.one_hot(y.long(), z.shape[1]).to(z.dtype)
    return ((z - onehot) ** 2).mean(dim=1).sum()


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d)
        self.attn = CausalSelfAttention(d, heads)
        self.ln_2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """nanoGPT's layout with an untied head and no dropout, vocabulary 256."""

    def __init__(self, n_layer, n_head, n_embd, block_size):
        super().__init__()
        self.t = block_size
        self.wte = nn.Embedding(256, n_embd)
        self.wpe = nn.Embedding(block_size, n_embd)
        self.h = nn.ModuleList(Block(n_embd, n_head) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)
        self.lm_head = nn.Linear(n_embd, 256, bias=False)
        self.tables = {"wte.W": (self.wte.weight, False), "wpe.W": (self.wpe.weight, False)}
        for i, b in enumerate(self.h):
            p = f"blocks.{i}"
            self.tables.update({
                f"{p}.ln1.g": (b.ln_1.weight, False), f"{p}.ln1.b": (b.ln_1.bias, False),
                f"{p}.attn.qkv.W": (b.attn.qkv.weight, True), f"{p}.attn.qkv.b": (b.attn.qkv.bias, False),
                f"{p}.attn.proj.W": (b.attn.proj.weight, True), f"{p}.attn.proj.b": (b.attn.proj.bias, False),
                f"{p}.ln2.g": (b.ln_2.weight, False), f"{p}.ln2.b": (b.ln_2.bias, False),
                f"{p}.mlp.fc.W": (b.mlp[0].weight, True), f"{p}.mlp.fc.b": (b.mlp[0].bias, False),
                f"{p}.mlp.proj.W": (b.mlp[2].weight, True), f"{p}.mlp.proj.b": (b.mlp[2].bias, False),
            })
        self.tables.update({"ln_f.g": (self.ln_f.weight, False), "ln_f.b": (self.ln_f.bias, False),
                            "head.W": (self.lm_head.weight, True)})

    def forward(self, rows, y=None):
        x, targets = rows[:, :self.t].long(), rows[:, 1:].long()
        h = self.wte(x) + self.wpe(torch.arange(self.t, device=rows.device))
        for b in self.h:
            h = b(h)
        z = self.lm_head(self.ln_f(h))
        return z, summed_loss("cross_entropy", z, targets)


def load_tables(model, values):
    """values: ps table name -> numpy array in ps's layout."""
    with torch.no_grad():
        assert set(values) == set(model.tables), (sorted(values), sorted(model.tables))
        for name, (param, transposed) in model.tables.items():
            v = torch.from_numpy(values[name]).to(param.dtype)
            param.copy_(v.t() if transposed else v.reshape(param.shape))
