#!/usr/bin/python3
"""torch_nets_ddp.py - the PyTorch DistributedDataParallel (gloo) baseline of
bench/run_nets_vs_torch.sh: the example jobs' models and recipes, 2
processes on 127.0.0.1, one thread each, float32.

  cnn: deploy/examples/fashion-cnn.conf's spec (torch_nets.SpecNet), Adam
       lr 1e-3, cosine to 0 over the run, global batch 64, E epochs; rank 0
       evaluates the test set after each epoch.
  gpt: deploy/examples/text-gpt.conf's GPT (torch_nets.GPT: nanoGPT's layout,
       untied head, no dropout) on the fortunes, AdamW (beta2 0.99, weight
       decay 0.1 on every tensor, as ps's servers apply it), 100 warm-up
       steps then cosine to min_lr, global batch 16 windows of 129 bytes,
       N steps; rank 0 evaluates the held-out tenth at the end.

Both start from ps's initial tables (net_driver init, the job seed) and see
ps's data in ps's order (net_driver order: the trainer's shuffle of each
epoch, cut into global batches and each batch into one slice per rank), so
the runs differ only in arithmetic (and the CNN in its dropout masks). The
learning rate follows ps's schedule (server/ps_optim.c: ps_optim_lr).
Prints JSON lines: {"event":"epoch"|"eval"|"done",...}.

Usage: torch_nets_ddp.py cnn|gpt --net-driver PATH [--epochs E] [--steps N]"""
import argparse
import gzip
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "python"))
import torch_nets  # noqa: E402

FM = "/usr/share/datasets/fashion-mnist"
FORTUNES = "/usr/share/games/fortunes"
CNN_IN = "1x28x28"
CNN = ("conv2d(32,3,pad=1) relu maxpool(2) conv2d(64,3,pad=1) relu maxpool(2) flatten "
       "dropout(0.25) dense(128) relu dense(10) cross_entropy")
GPT = dict(n_layer=4, n_head=4, n_embd=128, block_size=128)
SEED = 1


def ps_lr(t, lr, total, warmup=0, min_lr=0.0):
    """ps_optim_lr: linear warm-up over `warmup` updates, then cosine."""
    if warmup and t < warmup:
        return lr * (t + 1) / warmup
    span = total - warmup if total > warmup else 1
    frac = min((t - warmup) / span, 1.0)
    return min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * frac))


def ps_order(driver, n, epoch, work):
    path = f"{work}/order{epoch}.npy"
    subprocess.run([driver, "order", str(n), str(SEED), str(epoch), path], check=True)
    return torch.from_numpy(np.load(path).astype(np.int64))


def ps_init(driver, model, work, spec_args):
    d = f"{work}/init"
    subprocess.run([driver, "init", d, *spec_args, "--seed", str(SEED)], check=True)
    torch_nets.load_tables(model, {n: np.load(f"{d}/{n}.npy") for n in model.tables})


def idx(kind):
    img = np.frombuffer(gzip.open(f"{FM}/{kind}-images-idx3-ubyte.gz").read()[16:], np.uint8)
    lab = np.frombuffer(gzip.open(f"{FM}/{kind}-labels-idx1-ubyte.gz").read()[8:], np.uint8)
    return (torch.tensor(img.reshape(-1, 784) / 255.0, dtype=torch.float32),
            torch.tensor(lab, dtype=torch.float32))


def corpus():
    """ps_text_open of the directory: regular files, no *.dat, no dot files, name order."""
    names = sorted(n for n in os.listdir(FORTUNES) if not n.startswith(".") and not n.endswith(".dat")
                   and os.path.isfile(f"{FORTUNES}/{n}") and not os.path.islink(f"{FORTUNES}/{n}"))
    return np.frombuffer(b"".join(open(f"{FORTUNES}/{n}", "rb").read() for n in names), np.uint8)


def rank_slice(order, step, g_full, n, rank, world):
    start = step * g_full
    g = min(n - start, g_full)
    return order[start + rank * g // world: start + (rank + 1) * g // world]


def train_cnn(rank, world, a, work):
    x, y = idx("train")
    tx, ty = idx("t10k")
    model = torch_nets.SpecNet(CNN_IN, CNN)
    ps_init(a.net_driver, model, work, ["--spec", CNN_IN, CNN])
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.Adam(ddp.parameters(), lr=1e-3)
    g_full = 64
    spe = (len(x) + g_full - 1) // g_full
    total = spe * a.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: ps_lr(t, 1.0, total))
    train_s = 0.0
    for epoch in range(1, a.epochs + 1):
        order = ps_order(a.net_driver, len(x), epoch, work)
        model.train()
        t0 = time.time()
        for step in range(spe):
            i = rank_slice(order, step, g_full, len(x), rank, world)
            opt.zero_grad()
            _, loss = ddp(x[i], y[i])
            (loss / max(len(i), 1)).backward()
            opt.step()
            sched.step()
        epoch_s = time.time() - t0
        train_s += epoch_s
        if rank == 0:
            model.eval()
            with torch.no_grad():
                z, tloss = model(tx, ty)
            acc = (z.argmax(1) == ty.long()).float().mean().item()
            print(json.dumps({"event": "epoch", "epoch": epoch, "epoch_s": epoch_s,
                              "test_loss": tloss.item() / len(tx), "test_accuracy": acc}), flush=True)
        dist.barrier()
    if rank == 0:
        print(json.dumps({"event": "done", "steps": total, "train_s": train_s}), flush=True)


def val_windows(data, n_train, t):
    """ps_text_val_dataset: consecutive windows of t + 1 bytes every t bytes of the tail."""
    n_val = len(data) - n_train
    n = (n_val - (t + 1)) // t + 1
    return torch.from_numpy(np.stack([data[n_train + i * t: n_train + i * t + t + 1]
                                      for i in range(n)]).astype(np.float32))


def train_gpt(rank, world, a, work):
    data = corpus()
    t = GPT["block_size"]
    n_train = len(data) - round(0.1 * len(data))
    n_windows = (n_train - (t + 1)) // t + 1
    starts = torch.arange(n_windows) * t
    model = torch_nets.GPT(GPT["n_layer"], GPT["n_head"], GPT["n_embd"], t)
    ps_init(a.net_driver, model, work, ["--gpt", f"{GPT['n_layer']},{GPT['n_head']},{GPT['n_embd']},{t}"])
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.AdamW(ddp.parameters(), lr=a.lr, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: ps_lr(s, a.lr, a.steps, warmup=100, min_lr=1e-4) / a.lr)
    g_full = 16
    spe = (n_windows + g_full - 1) // g_full
    tensor = torch.from_numpy(data.astype(np.float32))
    train_s, order, epoch = 0.0, None, 0
    t0 = time.time()
    for step in range(a.steps):
        if step // spe + 1 != epoch:
            train_s += time.time() - t0
            epoch = step // spe + 1
            order = ps_order(a.net_driver, n_windows, epoch, work)
            t0 = time.time()
        i = rank_slice(order, step % spe, g_full, n_windows, rank, world)
        rows = torch.stack([tensor[s: s + t + 1] for s in starts[i].tolist()])
        opt.zero_grad()
        _, loss = ddp(rows)
        (loss / len(i)).backward()
        opt.step()
        sched.step()
    train_s += time.time() - t0
    if rank == 0:
        val = val_windows(data, n_train, t)
        model.eval()
        total = 0.0
        with torch.no_grad():
            for s in range(0, len(val), 64):
                total += model(val[s: s + 64])[1].item()
        vloss = total / len(val)
        print(json.dumps({"event": "done", "steps": a.steps, "train_s": train_s,
                          "tokens_per_s": a.steps * g_full * t / train_s, "val_loss": vloss,
                          "val_bpb": vloss / math.log(2)}), flush=True)


def worker(rank, world, port, a):
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)  # as ps's optimizer does (docs/architecture.md)
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    with tempfile.TemporaryDirectory() as work:
        (train_cnn if a.model == "cnn" else train_gpt)(rank, world, a, work)
    dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", choices=["cnn", "gpt"])
    ap.add_argument("--net-driver", required=True)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--lr", type=float, default=3e-3)
    a = ap.parse_args()
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    mp.spawn(worker, args=(2, port, a), nprocs=2, join=True)


if __name__ == "__main__":
    main()
