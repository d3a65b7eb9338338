#!/usr/bin/python3
"""torch_layers.py - one training step's forward + backward of a ps model
in PyTorch (float32, the models of tests/python/torch_nets.py), timed like
`net_driver bench`: 3 warm-up steps, then the mean of --steps. No optimizer
step on either side. Prints one JSON line.

Usage: torch_layers.py (--spec INPUT LAYERS | --gpt L,H,D,T) [--batch B] [--steps N] [--threads N]"""
import argparse
import json
import os
import sys
import time

import torch

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "python"))
import torch_nets  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", nargs=2)
    ap.add_argument("--gpt")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    if a.gpt:
        dims = [int(v) for v in a.gpt.split(",")]
        model = torch_nets.GPT(*dims)
        x = torch.randint(0, 256, (a.batch, dims[3] + 1)).float()
        y = torch.zeros(a.batch)
    else:
        model = torch_nets.SpecNet(*a.spec)
        shape = model.input
        x = torch.randn(a.batch, int(torch.tensor(shape[1:]).prod()))
        y = torch.randint(0, model.out_shape[-1], (a.batch,)).float()
    model.train()

    def step():
        model.zero_grad(set_to_none=False)
        _, loss = model(x, y)
        loss.backward()
        return loss.item()

    for _ in range(3):
        step()
    t0 = time.perf_counter()
    loss = sum(step() for _ in range(a.steps)) / a.steps
    ms = (time.perf_counter() - t0) * 1e3 / a.steps
    n = sum(p.numel() for p in model.parameters())
    print(json.dumps({"impl": "torch", "threads": torch.get_num_threads(), "batch": a.batch,
                      "steps": a.steps, "ms_per_step": round(ms, 3), "params": n, "loss": loss}))


if __name__ == "__main__":
    main()
