"""Benchmark W3 (CPython side): one-way throughput of 64-byte messages, one producer process
(the parent) and one consumer process (a child started with the 'fork' context).

For each queue kind (multiprocessing.Queue and multiprocessing.SimpleQueue) and placement, one
consumer child lives for the whole run. A batch is timed from its first put until the consumer,
having got the batch's last message (first byte 1), sends the batch's count back on a
Pipe(duplex=False). The value of a batch is its messages per second; the report gives the median,
p10 and p90 of the per-batch rates in millions of messages per second. Batches of all rows are
interleaved in rounds, after one warmup batch per row.

Placements: 'same' pins both to CPU 0, 'split' the parent to CPU 0 and the consumer to CPU 1
(skipped on one CPU), 'free' leaves both to the scheduler.

Usage: python3 w3_queue_throughput.py [--batches N] [--batch-size N] [--placements free,same,split]

Prints exactly one JSON object on stdout, e.g.
{"python": "3.11.7", "results": {"Queue": {"same": {"median_mps", "p10_mps", "p90_mps", "n"},
...}, "SimpleQueue": {...}}}; the Rust bench (benches/w3_queue_throughput.rs) merges it.
"""
import argparse
import json
import multiprocessing
import os
import platform
import sys
import time

MSG = 64
ORDINARY = bytes(MSG)
LAST = b"\x01" + bytes(MSG - 1)
STOP = b"\x02" + bytes(MSG - 1)
PLACEMENTS = {"free": None, "same": (0, 0), "split": (0, 1)}


def consumer(q, ack):
    get = q.get
    count = 0
    while True:
        m = get()
        mark = m[0]
        if mark == 2:
            break
        count += 1
        if mark == 1:
            ack.send_bytes(count.to_bytes(8, "little"))
            count = 0


def percentile(sorted_vals, q):
    pos = (len(sorted_vals) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (pos - lo)


def batch(q, ack, n):
    put = q.put
    t0 = time.perf_counter_ns()
    for _ in range(n - 1):
        put(ORDINARY)
    put(LAST)
    got = int.from_bytes(ack.recv_bytes(), "little")
    elapsed = time.perf_counter_ns() - t0
    if got != n:
        sys.exit(f"w3: the consumer counted {got} of {n}")
    return n / (elapsed / 1e9) / 1e6


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=20000)
    ap.add_argument("--placements", default="same,split,free")
    args = ap.parse_args()
    if args.batches < 1 or args.batch_size < 1:
        sys.exit("w3: --batches and --batch-size must be >= 1")
    placements = [p.strip() for p in args.placements.split(",") if p.strip()]
    all_cpus = os.sched_getaffinity(0)
    if len(all_cpus) < 2:
        placements = [p for p in placements if p != "split"]
    ctx = multiprocessing.get_context("fork")
    rows = []
    for kind in ("Queue", "SimpleQueue"):
        for name in placements:
            q = ctx.Queue() if kind == "Queue" else ctx.SimpleQueue()
            ack_r, ack_w = ctx.Pipe(duplex=False)
            p = ctx.Process(target=consumer, args=(q, ack_w))
            p.start()
            ack_w.close()
            pins = PLACEMENTS[name]
            if pins is not None:
                os.sched_setaffinity(p.pid, {pins[1]})
            rows.append((kind, name, pins, q, ack_r, p, []))

    def one(row, n):
        _, _, pins, q, ack, _, _ = row
        if pins is not None:
            os.sched_setaffinity(0, {pins[0]})
        try:
            return batch(q, ack, n)
        finally:
            if pins is not None:
                os.sched_setaffinity(0, all_cpus)

    print(f"w3: {len(rows)} rows x (1 warmup + {args.batches} batches of {args.batch_size})",
          file=sys.stderr)
    for row in rows:
        one(row, args.batch_size)
    for r in range(args.batches):
        for i in range(len(rows)):
            row = rows[(i + r) % len(rows)]
            row[6].append(one(row, args.batch_size))
    results = {}
    for kind, name, _, q, _, p, rates in reversed(rows):
        q.put(STOP)
        p.join()
        if p.exitcode != 0:
            sys.exit(f"w3: consumer {kind}/{name} exited with {p.exitcode}")
        rates.sort()
        results.setdefault(kind, {})[name] = {
            "median_mps": round(percentile(rates, 50), 4),
            "p10_mps": round(percentile(rates, 10), 4),
            "p90_mps": round(percentile(rates, 90), 4), "n": len(rates)}
    print(json.dumps({"python": platform.python_version(), "results": results}))


if __name__ == "__main__":
    main()
