"""Benchmark W11 (CPython side): fan-out of many processes at once.

For each start method ('fork', 'spawn', 'forkserver') a sample starts N processes
(``ctx.Process(target=report, args=(q, i))``, where ``report`` puts ``i`` on the
``ctx.Queue()`` ``q``), gets the N reports, then joins all N; and ``pool_spawn`` makes a
spawn ``Pool(N)`` whose initializer puts the worker's pid on a queue, gets the N reports, then
closes and joins the pool. The time of a sample runs from before the first start to after the
last join. Every child must exit with 0 and every report must come.

Usage: python3 w11_fanout.py [--procs N] [--samples N] [--rows fork,spawn,forkserver,pool_spawn]

Prints one JSON object: {"python": "3.11.7", "procs": N, "results": {ROW: [seconds, ...]}}.
"""
import argparse
import json
import multiprocessing as mp
import os
import platform
import sys
import time


def report(q, i):
    q.put(i)


def report_pid(q):
    q.put(os.getpid())


def fan_out(method, n):
    ctx = mp.get_context(method)
    q = ctx.Queue()
    t0 = time.perf_counter()
    ps = [ctx.Process(target=report, args=(q, i)) for i in range(n)]
    for p in ps:
        p.start()
    got = sorted(q.get(timeout=600) for _ in range(n))
    for p in ps:
        p.join()
    dt = time.perf_counter() - t0
    if got != list(range(n)) or any(p.exitcode != 0 for p in ps):
        sys.exit(f"w11: {method}: missing reports or failed children")
    q.close()
    q.join_thread()
    return dt


def pool(n):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    t0 = time.perf_counter()
    p = ctx.Pool(n, initializer=report_pid, initargs=(q,))
    got = {q.get(timeout=600) for _ in range(n)}
    p.close()
    p.join()
    dt = time.perf_counter() - t0
    if len(got) != n:
        sys.exit(f"w11: pool: {len(got)} distinct workers reported, not {n}")
    q.close()
    q.join_thread()
    return dt


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--procs", type=int, default=256)
    ap.add_argument("--samples", type=int, default=3)
    ap.add_argument("--rows", default="fork,spawn,forkserver,pool_spawn")
    args = ap.parse_args()
    rows = [r for r in args.rows.split(",") if r]
    run = {r: (lambda r=r: pool(args.procs) if r == "pool_spawn" else fan_out(r, args.procs))
           for r in rows}
    results = {r: [] for r in rows}
    for r in rows:  # warmup: one fan-out of a tenth of the processes (starts the fork server)
        if r == "pool_spawn":
            pool(max(1, args.procs // 10))
        else:
            fan_out(r, max(1, args.procs // 10))
    for rnd in range(args.samples):
        for i in range(len(rows)):
            r = rows[(i + rnd) % len(rows)]
            t = run[r]()
            print(f"w11: {r}: {t:.3f} s", file=sys.stderr)
            results[r].append(t)
    print(json.dumps({"python": platform.python_version(), "procs": args.procs,
                      "results": results}))


if __name__ == "__main__":
    main()
