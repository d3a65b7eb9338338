#!/usr/bin/env python3
"""PyTorch baselines for bench/run_vs_torch.sh.

Fashion-MNIST MLP 784-256-128-10 (ReLU), global batch 64, Adam lr 1e-3 (or
--optimizer sgd with --lr and --momentum). --world 2 (default): Distributed-
DataParallel (gloo) over 2 processes on 127.0.0.1, --threads each (1);
--world 1: plain PyTorch in this one process, no process group, with
--threads intra-op threads (the single-process baseline). Rank 0 evaluates
the test set every --eval-every steps. Prints JSON lines:
{"event":"eval",...} with the wall time since training started, then
{"event":"done",...}.
"""
import argparse, gzip, json, os, socket, sys, time

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

FM = "/usr/share/datasets/fashion-mnist"


def load(kind):
    img = np.frombuffer(gzip.open(f"{FM}/{kind}-images-idx3-ubyte.gz").read()[16:], np.uint8)
    lab = np.frombuffer(gzip.open(f"{FM}/{kind}-labels-idx1-ubyte.gz").read()[8:], np.uint8)
    return torch.tensor(img.reshape(-1, 784) / 255.0, dtype=torch.float32), torch.tensor(lab, dtype=torch.long)


def worker(rank, world, port, args):
    torch.set_num_threads(args.threads)
    # ps's optimizer flushes subnormals (docs/architecture.md): without the
    # same, a moment decaying on a border pixel's weight slows torch alone
    torch.set_flush_denormal(not args.keep_denormals)
    if world > 1:
        os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
        dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(args.seed)
    x, y = load("train")
    tx, ty = load("t10k")
    model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 128),
                                torch.nn.ReLU(), torch.nn.Linear(128, 10))
    ddp = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    if args.optimizer == "adam":
        opt = torch.optim.Adam(ddp.parameters(), lr=args.lr or 1e-3)
    else:
        opt = torch.optim.SGD(ddp.parameters(), lr=args.lr or 0.01, momentum=args.momentum)
    per = args.batch // world
    loss_fn = torch.nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(args.seed)
    t0, step = time.time(), 0
    for epoch in range(args.epochs):
        perm = torch.randperm(len(x), generator=g)
        for s in range(0, len(x) - args.batch + 1, args.batch):
            idx = perm[s + rank * per: s + (rank + 1) * per]
            opt.zero_grad()
            loss_fn(ddp(x[idx]), y[idx]).backward()
            opt.step()
            step += 1
            if rank == 0 and step % args.eval_every == 0:
                with torch.no_grad():
                    acc = (model(tx).argmax(1) == ty).float().mean().item()
                print(json.dumps({"event": "eval", "steps": step, "test_accuracy": acc,
                                  "wall_s": time.time() - t0}), flush=True)
        if rank == 0:
            print(json.dumps({"event": "epoch", "epoch": epoch + 1, "wall_s": time.time() - t0}), flush=True)
    if rank == 0:
        print(json.dumps({"event": "done", "steps": step, "wall_s": time.time() - t0}), flush=True)
    if world > 1:
        dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--world", type=int, default=2, help="processes (1: no DDP)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--optimizer", choices=["adam", "sgd"], default="adam")
    ap.add_argument("--lr", type=float, default=0.0, help="0: 1e-3 (adam), 0.01 (sgd)")
    ap.add_argument("--momentum", type=float, default=0.9, help="sgd")
    ap.add_argument("--keep-denormals", action="store_true",
                    help="leave subnormal floats unflushed (ps flushes them in its optimizer)")
    args = ap.parse_args()
    if args.world == 1:
        worker(0, 1, 0, args)
        return
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    mp.spawn(worker, args=(args.world, port, args), nprocs=args.world, join=True)


if __name__ == "__main__":
    main()
