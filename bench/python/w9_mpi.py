"""Benchmark W9 (CPython side): mpi4py.futures' MPIPoolExecutor on the ranks of an MPI job.

Run in mpi4py.futures' SPMD mode, the counterpart of a `multiprocess` pool over MPI ranks:

    mpirun -n 3 python3 -m mpi4py.futures bench/python/w9_mpi.py [--items N] [--batches N]

Rank 0 runs this script with an MPIPoolExecutor whose 2 workers are ranks 1 and 2. Row
ppe_mpi_map: executor.map(square, range(N), chunksize=ceil(N/8)) (the chunks of Python's
Pool default for 2 workers, as W5's ProcessPoolExecutor row), results checked; a sample's value
is items per second; one warmup, then --batches samples.

Prints exactly one JSON object on stdout: {"python": "3.11.7", "mpi4py": "4.1.2", "results":
{"ppe_mpi_map": {"median_ips", "p10_ips", "p90_ips", "n"}}}; benches/w9_mpi.rs merges it.
"""
import argparse
import json
import math
import platform
import time

import mpi4py
from mpi4py.futures import MPIPoolExecutor

MASK = (1 << 64) - 1


def square(x):
    return (x * x) & MASK


def percentile(sorted_values, q):
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--batches", type=int, default=5)
    args = parser.parse_args()
    n = args.items
    chunksize = math.ceil(n / 8)
    values = []
    with MPIPoolExecutor() as executor:
        for i in range(args.batches + 1):
            t = time.perf_counter()
            out = list(executor.map(square, range(n), chunksize=chunksize))
            d = time.perf_counter() - t
            assert len(out) == n and out[-1] == square(n - 1)
            if i > 0:
                values.append(n / d)
    values.sort()
    print(json.dumps({
        "python": platform.python_version(),
        "mpi4py": mpi4py.__version__,
        "results": {
            "ppe_mpi_map": {
                "median_ips": percentile(values, 50),
                "p10_ips": percentile(values, 10),
                "p90_ips": percentile(values, 90),
                "n": len(values),
            }
        },
    }))


if __name__ == "__main__":
    main()
