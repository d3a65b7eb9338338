#!/usr/bin/env python3
"""ngram_bpb.py DIR VAL_FRACTION ORDER - bits per byte of the held-out tail
of a text corpus under an interpolated absolute-discount n-gram byte model
(discount 0.75, backing off to uniform over 256 bytes) counted on the
training part: the baseline a byte-level language model has to beat.

The corpus is read the way ps-worker's text reader does (worker/ps_text.c):
the regular files of DIR not starting with '.' nor ending in '.dat', in
name order, joined; the last round(VAL_FRACTION * n) bytes are validation.
Prints the bits per byte."""
import collections
import math
import os
import sys


def corpus(d):
    names = sorted(n for n in os.listdir(d)
                   if not n.startswith(".") and not n.endswith(".dat")
                   and os.path.isfile(os.path.join(d, n)) and not os.path.islink(os.path.join(d, n)))
    return b"".join(open(os.path.join(d, n), "rb").read() for n in names)


def bits_per_byte(train, val, order, discount=0.75):
    # For each context length k < order: count(ctx, byte), count(ctx) and
    # the number of distinct bytes seen after ctx.
    pair = [collections.Counter() for _ in range(order)]
    ctx_n = [collections.Counter() for _ in range(order)]
    ctx_types = [collections.Counter() for _ in range(order)]
    for i, b in enumerate(train):
        for k in range(min(order, i + 1)):
            ctx = train[i - k:i]
            if pair[k][(ctx, b)] == 0:
                ctx_types[k][ctx] += 1
            pair[k][(ctx, b)] += 1
            ctx_n[k][ctx] += 1
    bits = 0.0
    for i, b in enumerate(val):
        p = 1.0 / 256
        for k in range(min(order, i + 1)):
            ctx = val[i - k:i]
            n = ctx_n[k][ctx]
            if n:
                p = max(pair[k][(ctx, b)] - discount, 0) / n + discount * ctx_types[k][ctx] / n * p
        bits -= math.log2(p)
    return bits / len(val)


def main():
    d, frac, order = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    data = corpus(d)
    n_val = round(frac * len(data))
    print("%.4f" % bits_per_byte(data[:-n_val], data[-n_val:], order))


if __name__ == "__main__":
    main()
