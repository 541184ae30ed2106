"""Benchmark W4 (CPython side): a 64 MiB message there and back through a duplex
multiprocessing.Pipe() between two processes (the child started with the 'fork' context).

For each row one echo child lives for the whole run: it receives a whole message and sends it
back. Rows: 'recv_bytes_into' (both sides receive into a bytearray allocated once, and send it
with send_bytes), 'recv_bytes' (both sides receive a new bytes object per message). A batch is
some round trips; its value is (2 x 64 MiB) / (mean round-trip time) in GB/s (10^9 bytes/s).
Batches of the rows are interleaved in rounds, after one warmup batch per row.

Usage: python3 w4_bulk.py [--batches N] [--batch-size N]

Prints exactly one JSON object on stdout:
{"python": "3.11.7", "results": {"recv_bytes_into": {"median_gbps", "p10_gbps", "p90_gbps", "n"},
"recv_bytes": {...}}}; the Rust bench (benches/w4_bulk.rs) merges it.
"""
import argparse
import json
import multiprocessing
import platform
import sys
import time

SIZE = 64 << 20


def echo_into(conn):
    buf = bytearray(SIZE)
    view = memoryview(buf)
    while True:
        n = conn.recv_bytes_into(buf)
        if n != SIZE:
            break
        conn.send_bytes(view[:n])


def echo_alloc(conn):
    while True:
        m = conn.recv_bytes()
        if len(m) != SIZE:
            break
        conn.send_bytes(m)


def percentile(sorted_vals, q):
    pos = (len(sorted_vals) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (pos - lo)


class Row:
    def __init__(self, ctx, name):
        self.name = name
        self.conn, theirs = ctx.Pipe()
        target = echo_into if name == "recv_bytes_into" else echo_alloc
        self.p = ctx.Process(target=target, args=(theirs,))
        self.p.start()
        theirs.close()
        self.out = bytearray(SIZE)
        self.back = bytearray(SIZE)
        self.round = 0
        self.rates = []

    def batch(self, n):
        t0 = time.perf_counter_ns()
        for _ in range(n):
            self.round += 1
            m = self.round % 251 + 1
            self.out[0] = self.out[SIZE // 2] = self.out[SIZE - 1] = m
            self.conn.send_bytes(self.out)
            if self.name == "recv_bytes_into":
                got = self.conn.recv_bytes_into(self.back)
                b = self.back
            else:
                b = self.conn.recv_bytes()
                got = len(b)
            if got != SIZE or b[0] != m or b[SIZE // 2] != m or b[SIZE - 1] != m:
                sys.exit(f"w4: bad echo in {self.name}")
        elapsed = time.perf_counter_ns() - t0
        return 2 * SIZE * n / (elapsed / 1e9) / 1e9

    def stop(self):
        self.conn.send_bytes(b"\0")
        self.p.join()
        if self.p.exitcode != 0:
            sys.exit(f"w4: echo child {self.name} exited with {self.p.exitcode}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=2)
    args = ap.parse_args()
    if args.batches < 1 or args.batch_size < 1:
        sys.exit("w4: --batches and --batch-size must be >= 1")
    ctx = multiprocessing.get_context("fork")
    rows = [Row(ctx, name) for name in ("recv_bytes_into", "recv_bytes")]
    print(f"w4: {len(rows)} rows x (1 warmup + {args.batches} batches of {args.batch_size})",
          file=sys.stderr)
    for row in rows:
        row.batch(args.batch_size)
    for r in range(args.batches):
        for i in range(len(rows)):
            row = rows[(i + r) % len(rows)]
            row.rates.append(row.batch(args.batch_size))
    results = {}
    for row in reversed(rows):
        row.stop()
        rates = sorted(row.rates)
        results[row.name] = {
            "median_gbps": round(percentile(rates, 50), 4),
            "p10_gbps": round(percentile(rates, 10), 4),
            "p90_gbps": round(percentile(rates, 90), 4), "n": len(rates)}
    print(json.dumps({"python": platform.python_version(), "results": results}))


if __name__ == "__main__":
    main()
