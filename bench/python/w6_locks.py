"""Benchmark W6 (CPython side): multiprocessing locks.

(a) Uncontended: ``lock.acquire(); lock.release()`` on a ``multiprocessing.Lock()`` in one
process, in batches (default 20 batches of 1,000,000 pairs after one warmup batch); reports the
median, p10 and p90 of the per-batch rate in millions of pairs per second.

(b) Contended: two processes (fork context) each run ``with v.get_lock(): v.value += 1``
500,000 times on one ``Value('Q', 0)`` (whose default lock is an RLock). Each run starts two
fresh children, which wait on a Barrier with the parent so they start together, and record
``time.perf_counter_ns()`` (CLOCK_MONOTONIC on Linux) before and after their loop in a shared
array; a run's time is from the first start to the last end, and the Value must end at
1,000,000. Placements: 'same' (both children on CPU 0), 'split' (CPU 0 and CPU 1), 'free'
(unpinned); the placements' runs are interleaved, after one warmup run each. Reports millions of
increments per second.

Usage: python3 w6_locks.py [--batches N] [--batch-size N] [--runs N] [--placements same,split,free]

Prints one JSON object on stdout: {"python": "3.11.7", "results": {"uncontended": {"median_mops",
"p10_mops", "p90_mops", "n"}, "contended": {"same": {...}, "split": {...}, "free": {...}}}}; the
Rust bench (benches/w6_locks.rs) merges it.
"""
import argparse
import json
import multiprocessing
import os
import platform
import sys
import time

INCREMENTS = 1_000_000
PLACEMENTS = {"free": (None, None), "same": (0, 0), "split": (0, 1)}


def percentile(sorted_vals, q):
    pos = (len(sorted_vals) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (pos - lo)


def stats(rates):
    rates = sorted(rates)
    return {"median_mops": round(percentile(rates, 50), 4),
            "p10_mops": round(percentile(rates, 10), 4),
            "p90_mops": round(percentile(rates, 90), 4), "n": len(rates)}


def uncontended(batches, size):
    lock = multiprocessing.get_context("fork").Lock()
    acquire, release = lock.acquire, lock.release

    def batch():
        t0 = time.perf_counter_ns()
        for _ in range(size):
            acquire()
            release()
        return size / ((time.perf_counter_ns() - t0) / 1e9) / 1e6

    batch()
    return stats([batch() for _ in range(batches)])


def worker(v, times, which, cpu, barrier, each):
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    barrier.wait()
    lock = v.get_lock()
    t0 = time.perf_counter_ns()
    for _ in range(each):
        with lock:
            v.value += 1
    t1 = time.perf_counter_ns()
    times[2 * which] = t0
    times[2 * which + 1] = t1


def contended_run(ctx, pins):
    v = ctx.Value("Q", 0)
    times = ctx.RawArray("Q", 4)
    barrier = ctx.Barrier(3)
    procs = [ctx.Process(target=worker,
                         args=(v, times, i, pins[i], barrier, INCREMENTS // 2))
             for i in range(2)]
    for p in procs:
        p.start()
    barrier.wait()
    for p in procs:
        p.join()
        if p.exitcode != 0:
            sys.exit(f"w6: a worker exited with {p.exitcode}")
    if v.value != INCREMENTS:
        sys.exit(f"w6: the Value ended at {v.value}, not {INCREMENTS}")
    elapsed = max(times[1], times[3]) - min(times[0], times[2])
    return INCREMENTS / (elapsed / 1e9) / 1e6


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--placements", default="same,split,free")
    args = ap.parse_args()
    if min(args.batches, args.batch_size, args.runs) < 1:
        sys.exit("w6: --batches, --batch-size and --runs must be >= 1")
    placements = [p.strip() for p in args.placements.split(",") if p.strip()]
    if len(os.sched_getaffinity(0)) < 2:
        placements = [p for p in placements if p != "split"]
    print(f"w6: uncontended {args.batches} x {args.batch_size}", file=sys.stderr)
    results = {"uncontended": uncontended(args.batches, args.batch_size)}
    ctx = multiprocessing.get_context("fork")
    print(f"w6: contended {args.runs} runs x {placements}", file=sys.stderr)
    for name in placements:
        contended_run(ctx, PLACEMENTS[name])  # warmup
    rates = {name: [] for name in placements}
    for r in range(args.runs):
        for i in range(len(placements)):
            name = placements[(i + r) % len(placements)]
            rates[name].append(contended_run(ctx, PLACEMENTS[name]))
    results["contended"] = {name: stats(rs) for name, rs in rates.items()}
    print(json.dumps({"python": platform.python_version(), "results": results}))


if __name__ == "__main__":
    main()
