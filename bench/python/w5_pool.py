"""Benchmarks W5, W5b, W5c and W7 (CPython side): process pools.

W5 / W5b (x -> x*x, 2 workers, fork context), rows:
  pool_map_default   Pool(2).map(square, range(N))                      (default chunksize)
  ppe_map_big        ProcessPoolExecutor(2).map(square, range(N), chunksize=ceil(N/8))
  pool_map_chunk1    Pool(2).map(square, range(N/10), chunksize=1)
  ppe_map_default    ProcessPoolExecutor(2).map(square, range(N/50))    (default chunksize, 1)
  pool_apply_async   [Pool(2).apply_async(square, (x,)) for x in range(N/10)], then get() each
A sample is one whole call (results checked); its value is items per second.

W5c (part w5c; 2 workers, fork context): row pool_apply_big, --w5c-tasks tasks (10,000)
  [Pool(2).apply_async(grow, (b,)) for each task], then get() each in order, where b is 256 KiB
  of bytes (0, 1, ..., 250, 0, 1, ...) and grow(b) returns b * 4 (1 MiB); each result's length
  and one byte are checked, and it is dropped once checked. A sample's value is tasks per second
  (1.25 MiB moved a task); --w5c-batches samples (3) after a warmup of a tenth of the tasks (a
  whole sample takes ~25 s).

W7: a task is a pure-Python loop of a 64-bit hash, its length calibrated to ~1 ms here; rows
w7_pool1 and w7_pool2 map --w7-tasks tasks with Pool(1) and Pool(2) (default chunksize); a
sample's value is the map's time in seconds.

Rows of each part are interleaved in rounds after one warmup sample per row; the pools are made
once. Usage: python3 w5_pool.py [--batches N] [--items N] [--w7-tasks N] [--w5c-tasks N]
[--w5c-batches N] [--parts w5,w5c,w7]

Prints exactly one JSON object on stdout: {"python": "3.11.7", "w7_iters": .., "w7_task_ms": ..,
"results": {"pool_map_default": {"median_ips", "p10_ips", "p90_ips", "n"}, ..., "pool_apply_big": ..,
"w7_pool1": {"median_s", "p10_s", "p90_s", "n"}, ...}}; the Rust bench (benches/w5_pool.rs)
merges it.
"""
import argparse
import concurrent.futures
import json
import multiprocessing
import platform
import sys
import time

MASK = (1 << 64) - 1
WORKERS = 2
# W5c: the argument's length; a result is 4 times as long.
W5C_ARG = 256 * 1024


def square(x):
    return x * x


def grow(b):
    return b * 4


def burn(task):
    seed, iters = task
    x = seed
    for _ in range(iters):
        x = (x + 0x9E3779B97F4A7C15) & MASK
        z = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        x = z ^ (z >> 27)
    return x


def percentile(sorted_vals, q):
    pos = (len(sorted_vals) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (pos - lo)


def check(out, n):
    if len(out) != n or any(out[k] != k * k for k in (0, n // 3, n // 2, n - 1)):
        sys.exit("w5: wrong results")


def timed_items(n, fn):
    t0 = time.perf_counter()
    out = fn()
    d = time.perf_counter() - t0
    check(out, n)
    return n / d


def apply_big(pool, b, n):
    """W5c: n apply_async(grow, (b,)), then get() each in order (checked, then dropped)."""
    t0 = time.perf_counter()
    pending = [pool.apply_async(grow, (b,)) for _ in range(n)]
    for k in range(n):
        r = pending[k].get()
        pending[k] = None
        j = k * 7919 % (4 * W5C_ARG)
        if len(r) != 4 * W5C_ARG or r[j] != b[j % W5C_ARG]:
            sys.exit("w5: wrong W5c results")
    return n / (time.perf_counter() - t0)


def summarise(out, values, unit, digits):
    """Adds median, p10, p90 and n of each row's values to out["results"]."""
    for name, vals in values.items():
        vals.sort()
        out["results"][name] = {
            f"median_{unit}": round(percentile(vals, 50), digits),
            f"p10_{unit}": round(percentile(vals, 10), digits),
            f"p90_{unit}": round(percentile(vals, 90), digits), "n": len(vals)}


def interleave(rows, rounds):
    """rows: list of (name, sample function); returns {name: [values]}."""
    values = {name: [] for name, _ in rows}
    for _, f in rows:
        f()
    for r in range(rounds):
        for i in range(len(rows)):
            name, f = rows[(i + r) % len(rows)]
            values[name].append(f())
    return values


def calibrate():
    """Steps of burn() that take about 1 ms here (best of 5 at 2000 steps)."""
    probe = 2000
    best = min(timeit_once(probe) for _ in range(5))
    return max(1, int(probe * 1e-3 / best))


def timeit_once(iters):
    t0 = time.perf_counter()
    burn((1, iters))
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--w7-tasks", type=int, default=1500)
    ap.add_argument("--w5c-tasks", type=int, default=10_000)
    ap.add_argument("--w5c-batches", type=int, default=3)
    ap.add_argument("--parts", default="w5,w5c,w7")
    args = ap.parse_args()
    if min(args.batches, args.w5c_batches, args.w5c_tasks) < 1 or args.items < 50:
        sys.exit("w5: --batches, --w5c-batches and --w5c-tasks must be >= 1, --items >= 50")
    parts = set(p.strip() for p in args.parts.split(","))
    ctx = multiprocessing.get_context("fork")
    out = {"python": platform.python_version(), "results": {}}
    big, small, tiny = args.items, args.items // 10, args.items // 50
    if "w5" in parts:
        with ctx.Pool(WORKERS) as pool, concurrent.futures.ProcessPoolExecutor(
                WORKERS, mp_context=ctx) as ex:
            def apply_all():
                pending = [pool.apply_async(square, (x,)) for x in range(small)]
                return [p.get() for p in pending]
            rows = [
                ("pool_map_default",
                 lambda: timed_items(big, lambda: pool.map(square, range(big)))),
                ("ppe_map_big",
                 lambda: timed_items(big, lambda: list(ex.map(
                     square, range(big), chunksize=-(-big // (4 * WORKERS)))))),
                ("pool_map_chunk1",
                 lambda: timed_items(small, lambda: pool.map(square, range(small), chunksize=1))),
                ("ppe_map_default",
                 lambda: timed_items(tiny, lambda: list(ex.map(square, range(tiny))))),
                ("pool_apply_async", lambda: timed_items(small, apply_all)),
            ]
            print(f"w5: {len(rows)} rows x (1 warmup + {args.batches} samples)", file=sys.stderr)
            summarise(out, interleave(rows, args.batches), "ips", 1)
    if "w5c" in parts:
        b = (bytes(range(251)) * (W5C_ARG // 251 + 1))[:W5C_ARG]
        with ctx.Pool(WORKERS) as pool:
            print(f"w5: W5c 1 row x (1 short warmup + {args.w5c_batches} samples), "
                  f"{args.w5c_tasks} tasks a sample", file=sys.stderr)
            apply_big(pool, b, max(1, args.w5c_tasks // 10))
            vals = [apply_big(pool, b, args.w5c_tasks) for _ in range(args.w5c_batches)]
            summarise(out, {"pool_apply_big": vals}, "ips", 2)
    if "w7" in parts:
        iters = calibrate()
        t0 = time.perf_counter()
        burn((1, iters))
        out["w7_iters"] = iters
        out["w7_task_ms"] = round((time.perf_counter() - t0) * 1e3, 3)
        tasks = [(i, iters) for i in range(args.w7_tasks)]
        expect = burn(tasks[7])
        with ctx.Pool(1) as p1, ctx.Pool(2) as p2:
            def run(p):
                t = time.perf_counter()
                res = p.map(burn, tasks)
                d = time.perf_counter() - t
                if len(res) != len(tasks) or res[7] != expect:
                    sys.exit("w5: wrong W7 results")
                return d
            rows = [("w7_pool1", lambda: run(p1)), ("w7_pool2", lambda: run(p2))]
            print(f"w5: W7 2 rows x (1 warmup + {args.batches} samples), {iters} steps a task",
                  file=sys.stderr)
            summarise(out, interleave(rows, args.batches), "s", 4)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
