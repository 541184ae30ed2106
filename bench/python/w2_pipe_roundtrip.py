"""Benchmark W2 (CPython side): round trip of an 8-byte message between two processes.

A child started with the 'fork' context echoes every message it receives on one end of
``multiprocessing.Pipe()`` (duplex); the parent times

    conn.send_bytes(b"pingpong"); conn.recv_bytes()

in batches (default 20 batches of 2000 round trips, after one warmup batch) and reports the
median, p10 and p90 of the per-batch mean time per round trip, in microseconds. The child stops
on the message b"stop!!!!".

Each placement gets its own child, and the batches of the placements are interleaved:
'free' leaves both processes to the scheduler, 'same' pins both to CPU 0, 'split' pins the
parent to CPU 0 and the child to CPU 1 (skipped on a single-CPU machine).

Usage: python3 w2_pipe_roundtrip.py [--batches N] [--batch-size N] [--queue-batch-size N] [--methods fork,spawn]
                                    [--placements free,same,split]

Prints exactly one JSON object on stdout (diagnostics go to stderr), e.g.
{"python": "3.11.7", "results": {"fork": {"free": {"median_us", "p10_us", "p90_us", "n"},
"same": {...}, "split": {...}}, "fork_queue": {...}}}, n being the number of batches.
"fork_queue" is the round trip of an int through two multiprocessing.Queue() (one each way,
fork context, one echo child per placement), in batches of --queue-batch-size (default a quarter
of --batch-size, since a Queue round trip is much slower). The Rust bench harness (benches/w2_pipe_roundtrip.rs) runs this
script and merges the numbers into its table.
"""
import argparse
import json
import multiprocessing
import os
import platform
import sys
import time

MESSAGE = b"pingpong"
STOP = b"stop!!!!"


def echo(conn):
    while True:
        m = conn.recv_bytes()
        if m == STOP:
            break
        conn.send_bytes(m)


def echo_queue(qin, qout):
    while True:
        v = qin.get()
        if v is None:
            break
        qout.put(v)


def queue_batch(qs, n):
    down, up = qs
    put, get = down.put, up.get
    t0 = time.perf_counter_ns()
    for i in range(n):
        put(i)
        m = get()
    elapsed = time.perf_counter_ns() - t0
    if m != n - 1:
        sys.exit(f"w2: wrong queue echo {m!r}")
    return elapsed / n / 1000.0


def percentile(sorted_vals, q):
    """Linear-interpolated percentile, q in [0, 100]."""
    pos = (len(sorted_vals) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (pos - lo)


def batch(conn, n):
    send, recv = conn.send_bytes, conn.recv_bytes
    t0 = time.perf_counter_ns()
    for _ in range(n):
        send(MESSAGE)
        m = recv()
    elapsed = time.perf_counter_ns() - t0
    if m != MESSAGE:
        sys.exit(f"w2: wrong echo {m!r}")
    return elapsed / n / 1000.0


PLACEMENTS = {"free": None, "same": (0, 0), "split": (0, 1)}
ALL_CPUS = None


def bench(method, batches, size, placements, queue=False):
    """One echo child per placement, their batches interleaved in rounds."""
    global ALL_CPUS
    ALL_CPUS = os.sched_getaffinity(0)
    ctx = multiprocessing.get_context(method)
    rows = []
    for name in placements:
        if queue:
            ours = (ctx.Queue(), ctx.Queue())
            p = ctx.Process(target=echo_queue, args=ours)
            p.start()
        else:
            ours, theirs = ctx.Pipe()
            p = ctx.Process(target=echo, args=(theirs,))
            p.start()
            theirs.close()
        pins = PLACEMENTS[name]
        if pins is not None:
            os.sched_setaffinity(p.pid, {pins[1]})
        rows.append((name, pins, ours, p, []))

    def one(pins, ours, n):
        if pins is not None:
            os.sched_setaffinity(0, {pins[0]})
        try:
            return queue_batch(ours, n) if queue else batch(ours, n)
        finally:
            if pins is not None:
                os.sched_setaffinity(0, ALL_CPUS)

    for _, pins, ours, _, _ in rows:
        one(pins, ours, size)  # warmup
    for r in range(batches):
        for i in range(len(rows)):
            _, pins, ours, _, means = rows[(i + r) % len(rows)]
            means.append(one(pins, ours, size))
    results = {}
    for name, _, ours, p, means in reversed(rows):
        if queue:
            ours[0].put(None)
        else:
            ours.send_bytes(STOP)
        p.join()
        if p.exitcode != 0:
            sys.exit(f"w2: echo child under {method!r} exited with {p.exitcode}")
        means.sort()
        results[name] = {"median_us": round(percentile(means, 50), 3),
                         "p10_us": round(percentile(means, 10), 3),
                         "p90_us": round(percentile(means, 90), 3), "n": len(means)}
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=2000)
    ap.add_argument("--queue-batch-size", type=int, default=0,
                    help="round trips per Queue batch (default: a quarter of --batch-size)")
    ap.add_argument("--methods", default="fork")
    ap.add_argument("--placements", default="free,same,split",
                    help="free: unpinned; same: parent and child on CPU 0; split: CPU 0 and CPU 1")
    args = ap.parse_args()
    if args.batches < 1 or args.batch_size < 1:
        sys.exit("w2: --batches and --batch-size must be >= 1")
    results = {}
    for m in [m.strip() for m in args.methods.split(",") if m.strip()]:
        print(f"w2: {m}: {args.batches} batches of {args.batch_size}", file=sys.stderr)
        placements = [p.strip() for p in args.placements.split(",") if p.strip()]
        if len(os.sched_getaffinity(0)) < 2:
            placements = [p for p in placements if p != "split"]
        results[m] = bench(m, args.batches, args.batch_size, placements)
        qsize = args.queue_batch_size or max(1, args.batch_size // 4)
        print(f"w2: {m} Queue: {args.batches} batches of {qsize}", file=sys.stderr)
        results[m + "_queue"] = bench(m, args.batches, qsize, placements, queue=True)
    print(json.dumps({"python": platform.python_version(), "results": results}))


if __name__ == "__main__":
    main()
