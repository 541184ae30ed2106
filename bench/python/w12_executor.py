"""Benchmark W12 (CPython side): concurrent.futures.ProcessPoolExecutor submit + result.

Row ppe_submit: with ProcessPoolExecutor(2) (fork context, made once), a sample submits
--tasks tasks square(x) for x in range(tasks) one by one (executor.submit(square, x)), then
calls result() on each future in order and checks it. Its value is tasks per second over the
whole sample. One warmup sample, then --batches samples.

Usage: python3 w12_executor.py [--batches N] [--tasks N]

Prints exactly one JSON object on stdout: {"python": "3.11.7", "results": {"ppe_submit":
{"median_tps", "p10_tps", "p90_tps", "n"}}}; the Rust bench (benches/w12_async.rs) merges it.
"""
import argparse
import concurrent.futures
import json
import multiprocessing
import platform
import sys
import time

WORKERS = 2


def square(x):
    return x * x


def percentile(sorted_vals, q):
    pos = (len(sorted_vals) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (pos - lo)


def sample(executor, n):
    t0 = time.perf_counter()
    futures = [executor.submit(square, x) for x in range(n)]
    for x, f in enumerate(futures):
        if f.result() != x * x:
            sys.exit("w12: wrong result")
    return n / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--tasks", type=int, default=10_000)
    a = ap.parse_args()
    ctx = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(WORKERS, mp_context=ctx) as executor:
        sample(executor, max(1, a.tasks // 10))
        values = sorted(sample(executor, a.tasks) for _ in range(a.batches))
    out = {
        "python": platform.python_version(),
        "results": {
            "ppe_submit": {
                "median_tps": round(percentile(values, 50), 1),
                "p10_tps": round(percentile(values, 10), 1),
                "p90_tps": round(percentile(values, 90), 1),
                "n": len(values),
            }
        },
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
