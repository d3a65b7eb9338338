#!/usr/bin/python3
"""A PyTorch CNN on Fashion-MNIST, trained through ps: every parameter is a
table on the servers, which run Adam; this script computes gradients.

    ps-launch --servers 2 --workers 2 --worker-command 'python3 torch_fashion_cnn.py'

ps-launch puts the servers, job, rank and world in the environment
(PS_SERVERS, PS_JOB, PS_RANK, PS_WORLD); psclient.Client reads them. The
same script runs the baseline under PyTorch DDP (gloo), which the
benchmark compares against: --ddp N spawns N processes on 127.0.0.1.

Each step takes one global batch of world x --batch samples (a permutation
seeded by --seed and the epoch), cut into world slices: worker r trains
on slice r. Under BSP, 2 workers with --batch 32 therefore train exactly
what 1 worker with --batch 64 does. The batch is a function of the clock
alone, so after a recovery (a shard restarted from its checkpoint, say)
the replayed steps are the very steps of an uninterrupted run.

Prints JSON lines on stdout: rank 0 {"event":"eval",...} every
--eval-every steps and at each epoch's end, every rank {"event":"done",...}
last (ps-launch folds those into its job summary).
--save FILE writes the final parameters (rank 0, .npz).
"""
import argparse
import gzip
import json
import os
import socket
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

FM = "/usr/share/datasets/fashion-mnist"


def load(kind, data_dir):
    with gzip.open(os.path.join(data_dir, "%s-images-idx3-ubyte.gz" % kind)) as f:
        raw = f.read()
    if int.from_bytes(raw[:4], "big") != 0x803:
        raise SystemExit("%s: not an IDX image file" % kind)
    img = np.frombuffer(raw[16:], np.uint8).reshape(-1, 1, 28, 28)
    with gzip.open(os.path.join(data_dir, "%s-labels-idx1-ubyte.gz" % kind)) as f:
        lab = np.frombuffer(f.read()[8:], np.uint8)
    if len(img) != len(lab):
        raise SystemExit("%s: %d images but %d labels" % (kind, len(img), len(lab)))
    return torch.tensor(img / 255.0, dtype=torch.float32), torch.tensor(lab, dtype=torch.long)


def make_net(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 32, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(512, 128), torch.nn.ReLU(),
        torch.nn.Linear(128, 10))


class Batches:
    """The global batch of each clock: steps_per_epoch of them per epoch,
    from a permutation seeded by (seed, epoch); worker r's slice of it."""

    def __init__(self, n, batch, rank, world, seed):
        self.n, self.batch, self.rank, self.world, self.seed = n, batch, rank, world, seed
        self.global_batch = batch * world
        self.steps_per_epoch = n // self.global_batch
        self._epoch, self._perm = -1, None

    def indices(self, clock):
        epoch, s = divmod(clock, self.steps_per_epoch)
        if epoch != self._epoch:
            self._perm = np.random.RandomState([self.seed, epoch]).permutation(self.n)
            self._epoch = epoch
        start = s * self.global_batch + self.rank * self.batch
        return torch.from_numpy(self._perm[start:start + self.batch])


def evaluate(net, tx, ty):
    with torch.no_grad():
        return (net(tx).argmax(1) == ty).float().mean().item()


def emit(**ev):
    print(json.dumps(ev), flush=True)


def train_ps(args):
    """One worker of a ps job."""
    import psclient
    import psclient.pytorch
    psclient.log_init("torch-cnn")
    x, y = load("train", args.data)
    tx, ty = load("t10k", args.data)
    net = make_net(args.seed)
    # what defines this job beside the model's shapes and optimizer (which
    # DistributedModule adds): every worker must agree on these
    fp = {"script": "torch_fashion_cnn.py", "batch": args.batch, "seed": args.seed,
          "epochs": args.epochs, "steps": args.steps, "train_samples": len(x)}
    client = psclient.Client(fingerprint=fp, dtype=args.dtype, max_staleness=0,
                             heartbeat_ms=args.heartbeat_ms)
    batches = Batches(len(x), args.batch, client.rank, client.world, args.seed)
    total = args.steps or batches.steps_per_epoch * args.epochs
    # one update per BSP round: the cosine schedule runs over the whole job
    opt = psclient.optim.Adam(lr=args.lr, schedule="cosine", total_steps=total)
    model = psclient.pytorch.DistributedModule(net, client, opt, overlap=not args.no_overlap)
    rank = client.rank
    t0 = time.time()
    train_s = 0.0  # evaluation excluded
    t_step = time.time()
    while not model.finished:
        while model.clock < total:
            idx = batches.indices(model.clock)
            loss = F.cross_entropy(model(x[idx]), y[idx], reduction="sum")
            loss.backward()
            if model.step():
                client.report(model.clock * len(idx), loss.item() / len(idx))
            if rank == 0 and args.progress_every and model.clock % args.progress_every == 0:
                emit(event="progress", clock=model.clock, wall_s=time.time() - t0)
            end_of_epoch = model.clock % batches.steps_per_epoch == 0
            if rank == 0 and ((args.eval_every and model.clock % args.eval_every == 0)
                              or end_of_epoch):
                train_s += time.time() - t_step
                emit(event="eval", steps=model.clock, epoch=model.clock / batches.steps_per_epoch,
                     test_accuracy=evaluate(net, tx, ty), wall_s=time.time() - t0,
                     train_s=train_s)
                t_step = time.time()
        model.finish()
    acc = evaluate(net, tx, ty)
    if rank == 0 and args.save:
        np.savez(args.save, **model.state_numpy())
    model.leave()
    wall = time.time() - t0
    samples = model.clock * args.batch
    # every rank's summary: ps-launch sums samples and bytes over them
    emit(event="done", backend="ps", rank=rank, workers=batches.world, steps=model.clock,
         samples=samples, samples_per_s=samples / wall, test_accuracy=acc, wall_s=wall,
         bytes_sent=client.bytes_sent, bytes_received=client.bytes_received,
         recoveries=model.recoveries)
    client.close()


def ddp_worker(rank, world, port, args):
    """One process of the PyTorch DDP (gloo) baseline: the same data order,
    model, optimizer and evaluation."""
    import torch.distributed as dist
    torch.set_num_threads(args.threads)
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    x, y = load("train", args.data)
    tx, ty = load("t10k", args.data)
    net = make_net(args.seed)
    ddp = torch.nn.parallel.DistributedDataParallel(net)
    opt = torch.optim.Adam(ddp.parameters(), lr=args.lr)
    batches = Batches(len(x), args.batch, rank, world, args.seed)
    total = args.steps or batches.steps_per_epoch * args.epochs
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    t0 = time.time()
    train_s, t_step = 0.0, time.time()
    for clock in range(total):
        idx = batches.indices(clock)
        opt.zero_grad()
        F.cross_entropy(ddp(x[idx]), y[idx]).backward()  # DDP averages: the mean loss
        opt.step()
        sched.step()
        done = clock + 1
        if rank == 0 and ((args.eval_every and done % args.eval_every == 0)
                          or done % batches.steps_per_epoch == 0):
            train_s += time.time() - t_step
            emit(event="eval", steps=done, epoch=done / batches.steps_per_epoch,
                 test_accuracy=evaluate(net, tx, ty), wall_s=time.time() - t0, train_s=train_s)
            t_step = time.time()
    if rank == 0:
        emit(event="done", backend="ddp", workers=world, steps=total,
             test_accuracy=evaluate(net, tx, ty), wall_s=time.time() - t0)
    dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--steps", type=int, default=0, help="stop after this many steps (0: epochs)")
    ap.add_argument("--batch", type=int, default=32, help="samples per worker per step")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--eval-every", type=int, default=0, help="steps between evaluations")
    ap.add_argument("--progress-every", type=int, default=0, help="steps between progress lines")
    ap.add_argument("--dtype", default="f32", choices=["f32", "bf16"], help="values on the wire")
    ap.add_argument("--no-overlap", action="store_true", help="push every gradient at step()")
    ap.add_argument("--heartbeat-ms", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--data", default=FM, help="directory of the Fashion-MNIST IDX files")
    ap.add_argument("--save", help="rank 0 writes the final parameters here (.npz)")
    ap.add_argument("--ddp", type=int, default=0, metavar="N",
                    help="run the PyTorch DDP (gloo) baseline with N processes instead")
    args = ap.parse_args()
    if args.ddp:
        import torch.multiprocessing as mp
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        mp.spawn(ddp_worker, args=(args.ddp, port, args), nprocs=args.ddp, join=True)
        return 0
    torch.set_num_threads(args.threads)
    train_ps(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
