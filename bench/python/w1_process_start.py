"""Benchmark W1 (CPython side): process start + join latency.

Measures, for each start method ('fork', 'spawn', 'forkserver'), the wall time of

    p = ctx.Process(target=empty); p.start(); p.join()

where ``def empty(): pass`` and ``ctx = multiprocessing.get_context(method)``.
Each start+join is timed individually with time.perf_counter_ns after a few
warmup rounds (for forkserver the warmup also starts the server, so its one-time
start cost is excluded). Every child must exit with exitcode 0.

Usage: python3 w1_process_start.py [--iterations N] [--methods fork,spawn,forkserver] [--warmup W]

Prints exactly one JSON object on stdout (diagnostics go to stderr), e.g.
{"python": "3.11.7", "results": {"fork": {"median_us", "p10_us", "p90_us", "n"}, ...}}.
The Rust bench harness runs this script and merges the numbers into one table
alongside the `multiprocess` crate's results.
"""
import argparse
import json
import multiprocessing
import platform
import sys
import time

DEFAULT_ITERATIONS = {"fork": 200, "spawn": 30, "forkserver": 200}


def empty():
    pass


def percentile(sorted_vals, q):
    """Linear-interpolated percentile, q in [0, 100]."""
    pos = (len(sorted_vals) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (pos - lo)


def start_join(ctx):
    t0 = time.perf_counter_ns()
    p = ctx.Process(target=empty)
    p.start()
    p.join()
    elapsed = time.perf_counter_ns() - t0
    if p.exitcode != 0:
        sys.exit(f"w1: child under {ctx.get_start_method()!r} exited with {p.exitcode}")
    return elapsed


def bench(method, iterations, warmup):
    ctx = multiprocessing.get_context(method)
    for _ in range(warmup):
        start_join(ctx)
    samples = sorted(start_join(ctx) for _ in range(iterations))
    us = [s / 1000.0 for s in samples]
    return {"median_us": round(percentile(us, 50), 3), "p10_us": round(percentile(us, 10), 3),
            "p90_us": round(percentile(us, 90), 3), "n": len(us)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=None,
                    help="iterations per method (default: fork/forkserver 200, spawn 30)")
    ap.add_argument("--methods", default="fork,spawn,forkserver")
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    available = multiprocessing.get_all_start_methods()
    for m in methods:
        if m not in available:
            sys.exit(f"w1: start method {m!r} not available (have {available})")
    if (args.iterations is not None and args.iterations < 1) or args.warmup < 0:
        sys.exit("w1: --iterations must be >= 1 and --warmup >= 0")
    results = {}
    for m in methods:
        n = args.iterations if args.iterations is not None else DEFAULT_ITERATIONS[m]
        print(f"w1: {m}: warmup={args.warmup} iterations={n}", file=sys.stderr)
        results[m] = bench(m, n, max(args.warmup, 1 if m == "forkserver" else 0))
    print(json.dumps({"python": platform.python_version(), "results": results}))


if __name__ == "__main__":
    main()
