#!/usr/bin/env python3
"""PyTorch's matmul peak (GFLOP/s) on this machine, fp32 and bf16: the denominator of the PyTorch
side's model FLOP utilisation in bench/run.sh and bench/bert.sh, as build/bin/lab_bench_matmul's
is labrun's.

It times c = a @ b on square n x n matrices exactly as lab_bench_matmul does: the same sizes
(default 1024, 2048 and 3072), the same thread count, one untimed call per size and dtype, then
the best of --repeats timed calls; the peak is the best size's best call (the median of that
size's calls is reported beside it). fp32 goes through PyTorch's CPU BLAS (MKL in the x86 wheels),
bf16 through its oneDNN (AMX or AVX-512 BF16 kernels where the CPU has them). Both accumulate in
f32; PyTorch's bf16 product is bf16 (what autocast's matmuls return) where lab_bench_matmul's is
f32, a difference in n^2 stores next to 2 n^3 FLOPs, negligible at these sizes.

Prints one JSON line on stdout:
  {"impl": "pytorch", "bench": "matmul", "threads": 2, "torch": "...", "sizes": [...],
   "repeats": 5, "peaks": {"f32": {"gflops": ..., "n": ..., "median_gflops": ...}, "bf16": {...}}}
"""

import argparse
import json
import statistics
import sys
import time

import torch

from bench_args import positive_int  # bench/, beside this script

DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16}


def sizes_list(text):
    sizes = [positive_int(item) for item in text.replace(",", " ").split()]
    if not sizes:
        raise argparse.ArgumentTypeError("needs at least one size")
    return sizes


def dtype_list(text):
    names = text.replace(",", " ").split()
    unknown = [name for name in names if name not in DTYPES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"'{text}': expected f32 and/or bf16")
    return names


def seconds_per_call(n, dtype, repeats, generator):
    """The times of `repeats` calls of a @ b after one untimed call (allocation, kernel choice)."""
    a = torch.randn(n, n, generator=generator).to(dtype)
    b = torch.randn(n, n, generator=generator).to(dtype)
    torch.matmul(a, b)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        times.append(time.perf_counter() - start)
    return times


def main(argv):
    parser = argparse.ArgumentParser(description="PyTorch's CPU matmul peak, fp32 and bf16; prints one JSON line.")
    parser.add_argument("--sizes", type=sizes_list, default=[1024, 2048, 3072],
                        help="square sizes n, comma- or space-separated (default: 1024,2048,3072, as lab_bench_matmul)")
    parser.add_argument("--repeats", type=positive_int, default=5, help="timed calls per size (the best counts)")
    parser.add_argument("--threads", type=positive_int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--dtypes", type=dtype_list, default=["f32", "bf16"], help="f32 and/or bf16 (default both)")
    arguments = parser.parse_args(argv)
    torch.set_num_threads(arguments.threads)
    generator = torch.Generator().manual_seed(1)

    peaks = {}
    for name in arguments.dtypes:
        best = None
        for n in arguments.sizes:
            times = seconds_per_call(n, DTYPES[name], arguments.repeats, generator)
            flops = 2.0 * n * n * n
            gflops, median_gflops = flops / min(times) / 1e9, flops / statistics.median(times) / 1e9
            if best is None or gflops > best["gflops"]:
                best = {"gflops": round(gflops, 1), "n": n, "median_gflops": round(median_gflops, 1)}
        peaks[name] = best
    print(json.dumps({"impl": "pytorch", "bench": "matmul", "threads": torch.get_num_threads(),
                      "torch": torch.__version__, "sizes": arguments.sizes, "repeats": arguments.repeats,
                      "peaks": peaks}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
