#!/usr/bin/env python3
"""PyTorch peer of build/bin/lab_bench_attention: one attention core, forward + backward, at
growing sequence lengths, on q, k, v [B, H, T, D] fp32 with requires_grad. Two implementations:
torch-sdpa (torch.nn.functional.scaled_dot_product_attention: PyTorch's fused CPU kernel) and
torch-composite (softmax(q k^T / sqrt(D), causal mask) v, which materialises the [T, T] scores).
Prints one JSON line per (implementation, length): time of the fastest of --reps repetitions after
one warm-up, and the peak of resident memory growth (ru_maxrss; only increases, so it is a lower
bound once an earlier length used more).
"""
import argparse
import json
import math
import resource
import time

import torch
import torch.nn.functional as F


def composite(q, k, v, causal):
    T = q.shape[-2]
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if causal:
        mask = torch.ones(T, T, dtype=torch.bool).triu(1)
        scores = scores.masked_fill(mask, float("-inf"))
    return scores.softmax(-1) @ v


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seq-lens", default="512,1024,2048,4096")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--non-causal", action="store_true")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    causal = not args.non_causal
    for T in (int(t) for t in args.seq_lens.split(",")):
        shape = (args.batch, args.heads, T, args.head_dim)
        gen = torch.Generator().manual_seed(7)
        q, k, v, dout = (torch.randn(shape, generator=gen) for _ in range(4))
        for t in (q, k, v):
            t.requires_grad_(True)
        for name in ("sdpa", "composite"):
            best = float("inf")
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            for rep in range(args.reps + 1):
                start = time.perf_counter()
                if name == "sdpa":
                    out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
                else:
                    out = composite(q, k, v, causal)
                out.backward(dout)
                ms = (time.perf_counter() - start) * 1e3
                if rep > 0:
                    best = min(best, ms)
                q.grad = k.grad = v.grad = None
            grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024.0
            print(json.dumps({"impl": f"torch-{name}", "seq_len": T, "ms": best, "peak_mb": grown,
                              "threads": args.threads}), flush=True)


if __name__ == "__main__":
    main()
