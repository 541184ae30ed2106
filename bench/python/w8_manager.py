"""Benchmark W8 (CPython side): calls on objects held by a multiprocessing Manager.

Rows, in µs per pair of calls made by the main process on proxies of a
``multiprocessing.Manager()`` (fork context, its server process started once):

- ``dict``: ``d[k] = i`` then ``d[k]`` (k cycles over 100 keys);
- ``queue``: ``q.put(i)`` then ``q.get()``;
- ``own``: ``c.add(i)`` then ``c.total()`` on a ``Counter`` registered with a ``SyncManager``
  subclass (``register('Counter', Counter)``).

Each row: one warmup batch, then ``--batches`` batches of ``--batch-size`` pairs, the rows'
batches interleaved; a sample is a batch's mean time per pair.

Usage: python3 w8_manager.py [--batches N] [--batch-size N]

Prints one JSON object on stdout: {"python": "3.11.7", "results": {"dict": {"median_us",
"p10_us", "p90_us", "n"}, "queue": {...}, "own": {...}}}; the Rust bench (benches/w8_manager.rs) merges it.
"""
import argparse
import json
import multiprocessing
import multiprocessing.managers
import platform
import time


class Counter:
    def __init__(self):
        self.n = 0

    def add(self, i):
        self.n += i

    def total(self):
        return self.n


class CounterManager(multiprocessing.managers.SyncManager):
    pass


CounterManager.register("Counter", Counter)


def percentile(sorted_vals, q):
    pos = (len(sorted_vals) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (pos - lo)


def stats(samples):
    s = sorted(samples)
    return {"median_us": round(percentile(s, 50), 3), "p10_us": round(percentile(s, 10), 3),
            "p90_us": round(percentile(s, 90), 3), "n": len(s)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=2000)
    a = ap.parse_args()
    manager = CounterManager(ctx=multiprocessing.get_context("fork"))
    manager.start()
    d = manager.dict()
    q = manager.Queue()
    c = manager.Counter()

    def dict_batch(n):
        t0 = time.perf_counter_ns()
        for i in range(n):
            d[i % 100] = i
            d[i % 100]
        return (time.perf_counter_ns() - t0) / 1e3 / n

    def queue_batch(n):
        t0 = time.perf_counter_ns()
        for i in range(n):
            q.put(i)
            q.get()
        return (time.perf_counter_ns() - t0) / 1e3 / n

    def own_batch(n):
        t0 = time.perf_counter_ns()
        for i in range(n):
            c.add(i)
            c.total()
        return (time.perf_counter_ns() - t0) / 1e3 / n

    rows = {"dict": dict_batch, "queue": queue_batch, "own": own_batch}
    samples = {k: [] for k in rows}
    for f in rows.values():
        f(a.batch_size)
    for _ in range(a.batches):
        for k, f in rows.items():
            samples[k].append(f(a.batch_size))
    manager.shutdown()
    print(json.dumps({"python": platform.python_version(),
                      "results": {k: stats(v) for k, v in samples.items()}}))


if __name__ == "__main__":
    main()
