"""Benchmark W10 (CPython side): memory per process.

Per-process rows (KiB from /proc/PID/smaps_rollup: USS = Private_Clean + Private_Dirty, PSS,
RSS), one sample per started process, rows interleaved in rounds:

- ``spawn`` / ``fork`` / ``forkserver``: an idle child, ``ctx.Process(target=idle, args=(ready,
  stop))`` where ``idle`` sets ``ready`` and waits on ``stop``; measured once ``ready`` is set;
- ``pool_spawn`` / ``pool_fork``: both workers of ``ctx.Pool(2)``, idle after each ran one
  50 ms task (``map(nap, [0.05, 0.05], chunksize=1)``);
- ``manager_spawn`` / ``manager_fork``: the server process of ``ctx.Manager()`` holding one dict;
- ``forkserver_server``: the fork server process (measured after each forkserver child).

Parent probes (each in a fresh interpreter, ``--probe KIND``; multiprocessing's submodules are
imported before the baseline, so that the growth is the object's and not the code's): the
growth of the parent's RSS and USS, threads, descriptors and mappings when it makes a
``Pool(2)`` (spawn; one map run), a ``Queue()`` (one put + get, which starts its feeder thread),
a ``Manager()`` (spawn; one dict); and ``Pool(64)`` (spawn and fork: also the sum of its 64
workers' USS/PSS, idle after a map of 64 50 ms tasks).

Usage: python3 w10_memory.py [--samples N] [--probe-runs N] [--no-pool64]

Prints one JSON object: {"python": "3.11.7", "rows": {KEY: [{"rss", "pss", "uss"}, ...]},
"probes": {KIND: [{"rss", "uss", "threads", "fds", "maps", ...}, ...]}}.
"""
import argparse
import json
import multiprocessing as mp
import multiprocessing.forkserver
import multiprocessing.managers
import multiprocessing.pool
import multiprocessing.queues
import os
import platform
import subprocess
import sys
import time

SETTLE = 0.05


def smaps(pid):
    d = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                d[parts[0].rstrip(":")] = int(parts[1])
    return {"rss": d["Rss"], "pss": d["Pss"], "uss": d["Private_Clean"] + d["Private_Dirty"]}


BREAKDOWN = []


def breakdown(pid):
    """Unique KiB of a process by mapping (file name, [anon], [heap], [stack]), largest first."""
    by = {}
    name = ""
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            parts = line.split()
            if parts and "-" in parts[0] and not parts[0].endswith(":"):
                name = parts[5].rsplit("/", 1)[-1] if len(parts) > 5 else "[anon]"
            elif parts and parts[0] in ("Private_Clean:", "Private_Dirty:"):
                e = by.setdefault(name, [0, 0])
                e[0] += int(parts[1])
                if parts[0] == "Private_Dirty:":
                    e[1] += int(parts[1])
    return sorted(([k, v[0], v[1]] for k, v in by.items() if v[0] > 0), key=lambda e: -e[1])


def counts():
    with open("/proc/self/maps") as f:
        maps = sum(1 for _ in f)
    return {"threads": len(os.listdir("/proc/self/task")), "fds": len(os.listdir("/proc/self/fd")),
            "maps": maps}


def idle(ready, stop):
    ready.set()
    stop.wait()


def nap(s):
    time.sleep(s)
    return s


def child_sample(method):
    ctx = mp.get_context(method)
    ready, stop = ctx.Event(), ctx.Event()
    p = ctx.Process(target=idle, args=(ready, stop))
    p.start()
    if not ready.wait(60):
        p.kill()
        sys.exit(f"w10: {method} child did not start")
    time.sleep(SETTLE)
    m = smaps(p.pid)
    if method == "spawn" and not BREAKDOWN:
        BREAKDOWN.extend(breakdown(p.pid))
    server = None
    if method == "forkserver":
        server = smaps(multiprocessing.forkserver._forkserver._forkserver_pid)
    stop.set()
    p.join(60)
    if p.exitcode != 0:
        sys.exit(f"w10: {method} child ended with {p.exitcode}")
    return [m], server


def pool_sample(method):
    ctx = mp.get_context(method)
    with ctx.Pool(2) as pool:
        pool.map(nap, [0.05, 0.05], chunksize=1)
        time.sleep(SETTLE)
        ms = [smaps(w.pid) for w in pool._pool]
        pool.close()
        pool.join()
    return ms


def manager_sample(method):
    m = mp.get_context(method).Manager()
    d = m.dict()
    d[1] = 1
    time.sleep(SETTLE)
    mem = smaps(m._process.pid)
    del d
    m.shutdown()
    return [mem]


def probe(kind):
    """Runs in a fresh interpreter: the parent's growth for one kind of object."""
    before_mem, before = smaps("self"), counts()
    keep = []
    workers = []
    if kind == "pool2":
        pool = mp.get_context("spawn").Pool(2)
        pool.map(nap, [0.05, 0.05], chunksize=1)
        keep.append(pool)
    elif kind == "queue":
        q = mp.Queue()
        q.put(1)
        q.get()
        keep.append(q)
    elif kind == "manager":
        m = mp.get_context("spawn").Manager()
        keep += [m, m.dict()]
    elif kind in ("pool64_spawn", "pool64_fork"):
        pool = mp.get_context(kind.split("_")[1]).Pool(64)
        pool.map(nap, [0.05] * 64, chunksize=1)
        keep.append(pool)
        workers = [w.pid for w in pool._pool]
    else:
        sys.exit(f"w10: unknown probe {kind}")
    time.sleep(SETTLE)
    after_mem, after = smaps("self"), counts()
    out = {"rss": after_mem["rss"] - before_mem["rss"], "uss": after_mem["uss"] - before_mem["uss"]}
    for k in after:
        out[k] = after[k] - before[k]
    if workers:
        ms = [smaps(pid) for pid in workers]
        out["workers"] = len(ms)
        out["workers_uss"] = sum(m["uss"] for m in ms)
        out["workers_pss"] = sum(m["pss"] for m in ms)
    for obj in keep:
        if isinstance(obj, mp.pool.Pool):
            obj.close()
            obj.join()
        elif isinstance(obj, mp.managers.BaseManager):
            obj.shutdown()
    print(json.dumps(out))


def run_probe(kind):
    out = subprocess.run([sys.executable, __file__, "--probe", kind], capture_output=True,
                         text=True, check=False)
    if out.returncode != 0:
        sys.exit(f"w10: probe {kind} failed: {out.stderr.strip()}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--probe-runs", type=int, default=3)
    ap.add_argument("--probe", default=None)
    ap.add_argument("--no-pool64", action="store_true")
    args = ap.parse_args()
    if args.probe:
        probe(args.probe)
        return
    samplers = {
        "spawn": lambda: child_sample("spawn"),
        "fork": lambda: child_sample("fork"),
        "forkserver": lambda: child_sample("forkserver"),
        "pool_spawn": lambda: (pool_sample("spawn"), None),
        "pool_fork": lambda: (pool_sample("fork"), None),
        "manager_spawn": lambda: (manager_sample("spawn"), None),
        "manager_fork": lambda: (manager_sample("fork"), None),
    }
    rows = {k: [] for k in samplers}
    rows["forkserver_server"] = []
    keys = list(samplers)
    for k in keys:  # warmup (starts the fork server)
        samplers[k]()
    for rnd in range(args.samples):
        for i in range(len(keys)):
            k = keys[(i + rnd) % len(keys)]
            ms, server = samplers[k]()
            rows[k] += ms
            if server is not None:
                rows["forkserver_server"].append(server)
    kinds = ["pool2", "queue", "manager"]
    if not args.no_pool64:
        kinds += ["pool64_spawn", "pool64_fork"]
    probes = {k: [] for k in kinds}
    for _ in range(args.probe_runs):
        for k in kinds:
            if k.startswith("pool64") and len(probes[k]) >= 1:
                continue  # one run of the 64-worker pools is enough
            probes[k].append(run_probe(k))
    print(json.dumps({"python": platform.python_version(), "rows": rows, "probes": probes,
                      "breakdown": BREAKDOWN}))


if __name__ == "__main__":
    main()
