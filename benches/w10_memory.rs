//! Benchmark W10: memory per process, against CPython's `multiprocessing` (Linux only; elsewhere
//! the binary says so and exits).
//!
//! Per-process rows, in KiB from `/proc/PID/smaps_rollup` (USS = `Private_Clean +
//! Private_Dirty`, PSS, RSS), one sample per process started, the rows interleaved in rounds:
//!
//! - an idle child started by each start method (`ctx.process(idle, (ready, stop))`: `idle`
//!   sets the `ready` event and waits on `stop`), measured once `ready` is set;
//! - both workers of a `Pool` of 2 (spawn, the default; and fork), idle after each ran one 50 ms
//!   task;
//! - the manager's server process (`Manager::start()`, holding one dict);
//! - the fork server process (measured after each forkserver child).
//!
//! Parent probes, each in a fresh process (this binary with `W10_PROBE=KIND`): the growth of the
//! parent's RSS and USS, threads, descriptors and mappings when it makes a `Pool` of 2 (one
//! map run), a `Queue` (one put + get), a `Manager` (one dict); and a `Pool` of 64 (spawn and
//! fork), whose 64 workers' USS is summed: the total a 64-worker pool costs.
//!
//! CPython's equivalents come from `bench/python/w10_memory.py`, run after the Rust rows.
//!
//! ```text
//! cargo bench --bench w10_memory
//! cargo bench --bench w10_memory -- --batches 3 --no-python --no-write
//! ```
//!
//! Options: `--batches N` (`W10_BATCHES`: samples per row, default 10), `--no-python`,
//! `--no-write` (`W10_NO_WRITE=1`), `--md PATH`, `--only TEXT`.

fn main() {
    multiprocess::init();
    #[cfg(target_os = "linux")]
    if let Err(e) = w10::main() {
        eprintln!("w10: {e}");
        std::process::exit(1);
    }
    #[cfg(not(target_os = "linux"))]
    eprintln!("w10: this benchmark runs on Linux only (it reads /proc/PID/smaps_rollup)");
}

#[cfg(target_os = "linux")]
mod common;

#[cfg(target_os = "linux")]
mod w10 {
    use super::common::{
        BenchOptions, CpuUse, ProcMem, Stats, command_line, count_entries, disturbance_line,
        interleave, machine, proc_mem, python_json, write_md,
    };
    use multiprocess::{Context, Event, Manager, Pool};
    use std::collections::BTreeMap;
    use std::time::{Duration, Instant};

    const BEGIN: &str = "<!-- w10:begin -->";
    const END: &str = "<!-- w10:end -->";
    /// Set in the environment of a probe process: which object it makes.
    const PROBE: &str = "W10_PROBE";
    /// How long a process is left alone before it is measured.
    const SETTLE: Duration = Duration::from_millis(50);
    const LIMIT: Duration = Duration::from_secs(60);
    const PROBES: [&str; 5] = ["pool2", "queue", "manager", "pool64_spawn", "pool64_fork"];
    const PROBE_RUNS: usize = 3;

    /// The idle child: says it is up, then waits.
    fn idle(ready: Event, stop: Event) {
        ready.set();
        stop.wait();
    }

    /// A pool task that keeps its worker busy long enough for the other worker to take the next.
    fn nap(ms: u64) -> u64 {
        std::thread::sleep(Duration::from_millis(ms));
        ms
    }

    fn ctx(method: &str) -> Result<Context, String> {
        multiprocess::get_context(
            method
                .parse()
                .map_err(|e: multiprocess::Error| e.to_string())?,
        )
        .map_err(|e| e.to_string())
    }

    fn mem(pid: Option<u32>) -> Result<ProcMem, String> {
        proc_mem(&pid.ok_or("no pid")?.to_string())
    }

    // -------------------------------------------------------------------------------------------
    // Samplers: each returns the measured processes of one sample.

    fn child_sample(method: &str) -> Result<Vec<(&'static str, ProcMem)>, String> {
        let e = |e: multiprocess::Error| e.to_string();
        let ready = Event::new().map_err(e)?;
        let stop = Event::new().map_err(e)?;
        let mut p = ctx(method)?.process(idle, (ready.clone(), stop.clone()));
        p.start().map_err(e)?;
        if !ready.wait_timeout(LIMIT) {
            let _ = p.kill();
            return Err(format!("the {method} child did not start"));
        }
        std::thread::sleep(SETTLE);
        let child = mem(p.pid());
        if method == "spawn" {
            let mut b = BREAKDOWN.lock().unwrap_or_else(|e| e.into_inner());
            if b.is_none() {
                *b = p.pid().and_then(|pid| breakdown(pid).ok());
            }
        }
        let server = if method == "forkserver" {
            Some(mem(multiprocess::forkserver::server_pid()))
        } else {
            None
        };
        stop.set();
        p.join_timeout(LIMIT).map_err(e)?;
        match p.exitcode() {
            Ok(Some(0)) => {}
            other => return Err(format!("the {method} child ended with {other:?}")),
        }
        let mut out = vec![(method_key(method), child?)];
        if let Some(s) = server {
            out.push(("forkserver_server", s?));
        }
        Ok(out)
    }

    /// Where the USS of the first spawned child is, by mapping.
    static BREAKDOWN: std::sync::Mutex<Option<Vec<(String, f64, f64)>>> =
        std::sync::Mutex::new(None);

    /// The unique KiB of process `pid` by mapping (`/proc/PID/smaps`), with the dirty part: a
    /// file's mappings by the file's name, anonymous ones as `[anon]` (thread stacks and
    /// allocator arenas among them), `[heap]`, `[stack]`; largest first.
    pub(crate) fn breakdown(pid: u32) -> Result<Vec<(String, f64, f64)>, String> {
        let path = format!("/proc/{pid}/smaps");
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        let mut by: BTreeMap<String, (f64, f64)> = BTreeMap::new();
        let mut name = String::new();
        for line in text.lines() {
            let mut it = line.split_whitespace();
            let first = it.next().unwrap_or("");
            if first.contains('-') && !first.ends_with(':') {
                let rest: Vec<&str> = it.collect();
                name = match rest.get(4) {
                    Some(n) => n.rsplit('/').next().unwrap_or(n).to_string(),
                    None => "[anon]".into(),
                };
            } else if first == "Private_Clean:" || first == "Private_Dirty:" {
                let kib: f64 = it.next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
                let e = by.entry(name.clone()).or_default();
                e.0 += kib;
                if first == "Private_Dirty:" {
                    e.1 += kib;
                }
            }
        }
        let mut v: Vec<(String, f64, f64)> = by
            .into_iter()
            .filter(|(_, k)| k.0 > 0.0)
            .map(|(n, (k, d))| (n, k, d))
            .collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok(v)
    }

    fn method_key(method: &str) -> &'static str {
        match method {
            "spawn" => "spawn",
            "fork" => "fork",
            _ => "forkserver",
        }
    }

    /// Makes a pool of `n` workers and runs one 50 ms task on each, so that all are up.
    fn busy_pool(method: &str, n: usize) -> Result<Pool, String> {
        let e = |e: multiprocess::Error| e.to_string();
        let pool = Pool::builder()
            .processes(n)
            .context(ctx(method)?)
            .build()
            .map_err(e)?;
        let naps: Vec<u64> = pool.map_chunked(nap, vec![50u64; n], 1).map_err(e)?;
        if naps.len() != n {
            return Err(format!("map gave {} results for {n}", naps.len()));
        }
        Ok(pool)
    }

    fn close_pool(pool: Pool) -> Result<(), String> {
        pool.close();
        pool.join().map_err(|e| e.to_string())
    }

    fn pool_sample(method: &str) -> Result<Vec<(&'static str, ProcMem)>, String> {
        let pool = busy_pool(method, 2)?;
        std::thread::sleep(SETTLE);
        let key = if method == "spawn" {
            "pool_spawn"
        } else {
            "pool_fork"
        };
        let pids = pool.worker_pids();
        if pids.len() != 2 {
            return Err(format!("the pool has {} workers", pids.len()));
        }
        let ms: Result<Vec<_>, String> = pids.iter().map(|p| Ok((key, mem(Some(*p))?))).collect();
        close_pool(pool)?;
        ms
    }

    fn manager_sample() -> Result<Vec<(&'static str, ProcMem)>, String> {
        let e = |e: multiprocess::Error| e.to_string();
        let mut m = Manager::start().map_err(e)?;
        let d = m.dict::<u32, u32>().map_err(e)?;
        d.set(&1, &1).map_err(e)?;
        std::thread::sleep(SETTLE);
        let got = mem(m.process().and_then(|p| p.pid()));
        drop(d);
        m.shutdown().map_err(e)?;
        Ok(vec![("manager_spawn", got?)])
    }

    // -------------------------------------------------------------------------------------------
    // Parent probes (in a fresh process each)

    fn counts() -> [f64; 3] {
        let maps = std::fs::read_to_string("/proc/self/maps").map_or(0, |s| s.lines().count());
        [
            count_entries("/proc/self/task") as f64,
            count_entries("/proc/self/fd") as f64,
            maps as f64,
        ]
    }

    /// Runs in the probe process: makes one kind of object, prints the growth as JSON.
    fn probe(kind: &str) -> Result<(), String> {
        let e = |e: multiprocess::Error| e.to_string();
        let (m0, c0) = (proc_mem("self")?, counts());
        let mut pools = Vec::new();
        let mut managers = Vec::new();
        let mut queues = Vec::new();
        let mut dicts = Vec::new();
        let mut workers = Vec::new();
        match kind {
            "pool2" => pools.push(busy_pool("spawn", 2)?),
            "queue" => {
                let q = multiprocess::Queue::<u64>::new().map_err(e)?;
                q.put(&1).map_err(e)?;
                q.get().map_err(e)?;
                queues.push(q);
            }
            "manager" => {
                let m = Manager::start().map_err(e)?;
                dicts.push(m.dict::<u32, u32>().map_err(e)?);
                managers.push(m);
            }
            "pool64_spawn" | "pool64_fork" => {
                let pool = busy_pool(&kind[7..], 64)?;
                workers = pool.worker_pids();
                pools.push(pool);
            }
            other => return Err(format!("unknown probe {other:?}")),
        }
        std::thread::sleep(SETTLE);
        let (m1, c1) = (proc_mem("self")?, counts());
        let mut out = serde_json::json!({
            "rss": m1.rss - m0.rss,
            "uss": m1.uss - m0.uss,
            "threads": c1[0] - c0[0],
            "fds": c1[1] - c0[1],
            "maps": c1[2] - c0[2],
        });
        if !workers.is_empty() {
            let ms: Result<Vec<ProcMem>, String> = workers.iter().map(|p| mem(Some(*p))).collect();
            let ms = ms?;
            out["workers"] = ms.len().into();
            out["workers_uss"] = ms.iter().map(|m| m.uss).sum::<f64>().into();
            out["workers_pss"] = ms.iter().map(|m| m.pss).sum::<f64>().into();
            // In the order the pool lists them (for a reading by hand; not in the table).
            out["workers_uss_each"] = ms.iter().map(|m| m.uss).collect::<Vec<f64>>().into();
        }
        drop(dicts);
        for mut m in managers {
            m.shutdown().map_err(e)?;
        }
        for p in pools {
            close_pool(p)?;
        }
        println!("{out}");
        Ok(())
    }

    fn run_probe(kind: &str) -> Result<serde_json::Value, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let out = std::process::Command::new(exe)
            .env(PROBE, kind)
            .output()
            .map_err(|e| format!("probe {kind}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "probe {kind} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(text.lines().last().unwrap_or(""))
            .map_err(|e| format!("probe {kind}: not JSON: {e}"))
    }

    /// The median of one field over a probe's runs.
    fn probe_median(runs: &[serde_json::Value], field: &str) -> Option<f64> {
        let v: Vec<f64> = runs.iter().filter_map(|r| r[field].as_f64()).collect();
        Stats::of(&v).map(|s| s.median)
    }

    // -------------------------------------------------------------------------------------------
    // Report

    /// The per-process rows: key, what ours is, what CPython's is.
    const ROWS: [(&str, &str, &str); 7] = [
        (
            "spawn",
            "idle child, spawn",
            "`ctx.process(idle, (ready, stop))`",
        ),
        ("fork", "idle child, fork", "the same, fork context"),
        (
            "forkserver",
            "idle child, forkserver",
            "the same, forkserver context",
        ),
        (
            "pool_spawn",
            "idle `Pool` worker, spawn",
            "each worker of `Pool` of 2",
        ),
        (
            "pool_fork",
            "idle `Pool` worker, fork",
            "each worker of `Pool` of 2, fork context",
        ),
        (
            "manager_spawn",
            "manager process, spawn",
            "`Manager::start()` + one dict",
        ),
        (
            "forkserver_server",
            "fork server process",
            "after forkserver children",
        ),
    ];

    type Samples = BTreeMap<String, Vec<ProcMem>>;

    fn py_samples(v: &serde_json::Value) -> Samples {
        let mut out = Samples::new();
        if let Some(rows) = v["rows"].as_object() {
            for (k, list) in rows {
                let ms = list.as_array().into_iter().flatten().map(|m| ProcMem {
                    rss: m["rss"].as_f64().unwrap_or(0.0),
                    pss: m["pss"].as_f64().unwrap_or(0.0),
                    uss: m["uss"].as_f64().unwrap_or(0.0),
                });
                out.insert(k.clone(), ms.collect());
            }
        }
        out
    }

    fn stats(ms: &[ProcMem], f: fn(&ProcMem) -> f64) -> Option<Stats> {
        Stats::of(&ms.iter().map(f).collect::<Vec<_>>())
    }

    fn mib(kib: f64) -> String {
        format!("{:.2}", kib / 1024.0)
    }

    fn row_line(label: &str, ms: &[ProcMem], vs: Option<f64>) -> String {
        let (Some(u), Some(p), Some(r)) = (
            stats(ms, |m| m.uss),
            stats(ms, |m| m.pss),
            stats(ms, |m| m.rss),
        ) else {
            return format!("| {label} | no samples | | | | | | |\n");
        };
        let vs = vs.map_or("—".into(), |c| format!("{:.2}×", u.median / c));
        format!(
            "| {label} | {} | {} | {} | {} | {} | {} | {vs} |\n",
            mib(u.median),
            mib(u.p10),
            mib(u.p90),
            mib(p.median),
            mib(r.median),
            u.n
        )
    }

    pub(crate) fn main() -> Result<(), String> {
        if let Ok(kind) = std::env::var(PROBE) {
            return probe(&kind);
        }
        let o = BenchOptions::parse("w10_memory", "W10", 10, 1)?;
        type Sampler = Box<dyn FnMut() -> Result<Vec<(&'static str, ProcMem)>, String>>;
        let mut rows: Vec<(&str, Sampler)> = vec![
            ("spawn", Box::new(|| child_sample("spawn"))),
            ("fork", Box::new(|| child_sample("fork"))),
            ("forkserver", Box::new(|| child_sample("forkserver"))),
            ("pool_spawn", Box::new(|| pool_sample("spawn"))),
            ("pool_fork", Box::new(|| pool_sample("fork"))),
            ("manager_spawn", Box::new(manager_sample)),
        ];
        rows.retain(|(k, _)| o.keeps(k));
        let mut ours = Samples::new();
        let mut failed: Option<String> = None;
        let cpu = CpuUse::now();
        let started = Instant::now();
        interleave(
            &mut rows,
            o.batches,
            |(key, f), warm| {
                if failed.is_some() {
                    return;
                }
                match f() {
                    Ok(ms) if !warm => {
                        for (k, m) in ms {
                            ours.entry(k.to_string()).or_default().push(m);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => failed = Some(format!("{key}: {e}")),
                }
            },
            |_| {},
        );
        if let Some(e) = failed {
            return Err(e);
        }
        let mut probes: BTreeMap<&str, Vec<serde_json::Value>> = BTreeMap::new();
        for run in 0..PROBE_RUNS {
            for kind in PROBES {
                if kind.starts_with("pool64") && run > 0 {
                    continue;
                }
                probes.entry(kind).or_default().push(run_probe(kind)?);
            }
        }
        let others = super::common::report_rust_rows("w10", started, &cpu);

        let py = if o.python {
            let t = Instant::now();
            let v = python_json(
                "w10_memory.py",
                &["--samples".into(), o.batches.to_string()],
            );
            eprintln!("w10: CPython rows took {:.1} s", t.elapsed().as_secs_f64());
            v
        } else {
            Err("skipped (--no-python)".into())
        };
        let (py_version, py_rows, py_probes) = match &py {
            Ok(v) => (
                v["python"].as_str().unwrap_or("?").to_string(),
                py_samples(v),
                v["probes"].clone(),
            ),
            Err(e) => {
                eprintln!("w10: CPython rows missing: {e}");
                ("?".into(), Samples::new(), serde_json::Value::Null)
            }
        };

        let date =
            command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_else(|| "?".into());
        let mut b = String::new();
        b += "## W10: memory per process (USS / PSS from `/proc/PID/smaps_rollup`)\n\n";
        b += &format!("- Command: `{}`\n", o.command);
        b += &format!("- Machine: {}\n", machine());
        if py.is_ok() {
            b += &format!(
                "- CPython: {py_version} (`bench/python/w10_memory.py`, run by the bench after the Rust rows)\n"
            );
        }
        b += &format!("- Date: {date}\n");
        b += &disturbance_line(others);
        b += &format!(
            "- Per-process rows: 1 warmup + {} samples each (a new process per sample; a pool gives 2 samples), interleaved in rounds; a process is measured {} ms after it is idle. USS = `Private_Clean + Private_Dirty`; MiB = 1024 KiB\n\n",
            o.batches,
            SETTLE.as_millis()
        );
        b += "| row | USS median MiB | p10 | p90 | PSS median MiB | RSS median MiB | n | USS ÷ CPython's same row |\n|---|---:|---:|---:|---:|---:|---:|---:|\n";
        let med = |s: &Samples, k: &str| {
            s.get(k)
                .and_then(|ms| stats(ms, |m| m.uss))
                .map(|s| s.median)
        };
        for (key, what, how) in ROWS {
            let Some(ms) = ours.get(key) else { continue };
            b += &row_line(
                &format!("multiprocess {what}: {how}"),
                ms,
                med(&py_rows, key),
            );
        }
        for (key, what) in [
            ("spawn", "idle child, spawn"),
            ("fork", "idle child, fork"),
            ("forkserver", "idle child, forkserver"),
            ("pool_spawn", "idle `Pool(2)` worker, spawn"),
            ("pool_fork", "idle `Pool(2)` worker, fork"),
            ("manager_spawn", "`Manager()` process, spawn"),
            ("manager_fork", "`Manager()` process, fork"),
            ("forkserver_server", "fork server process"),
        ] {
            if let Some(ms) = py_rows.get(key) {
                b += &row_line(&format!("CPython {py_version} {what}"), ms, None);
            }
        }

        // Parent growth.
        b += &format!(
            "\nWhat the parent itself grows by when it makes one object (a fresh process per run; medians of {PROBE_RUNS} runs, the 64-worker pools 1 run; CPython's submodules imported before the baseline; KiB, counts):\n\n"
        );
        b += "| object | ours RSS + KiB | ours USS + KiB | ours threads + | ours fds + | ours mappings + | CPython RSS + KiB | CPython threads + | CPython fds + | CPython mappings + |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
        let fmt = |v: Option<f64>| v.map_or("—".into(), |x| format!("{x:.0}"));
        for (kind, label) in [
            ("pool2", "`Pool` of 2, spawn (one map run)"),
            ("queue", "`Queue` (one put + get)"),
            ("manager", "`Manager` (one dict)"),
            ("pool64_spawn", "`Pool` of 64, spawn"),
            ("pool64_fork", "`Pool` of 64, fork"),
        ] {
            let r = probes.get(kind).map(Vec::as_slice).unwrap_or_default();
            let p: Vec<serde_json::Value> = py_probes[kind].as_array().cloned().unwrap_or_default();
            b += &format!(
                "| {label} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                fmt(probe_median(r, "rss")),
                fmt(probe_median(r, "uss")),
                fmt(probe_median(r, "threads")),
                fmt(probe_median(r, "fds")),
                fmt(probe_median(r, "maps")),
                fmt(probe_median(&p, "rss")),
                fmt(probe_median(&p, "threads")),
                fmt(probe_median(&p, "fds")),
                fmt(probe_median(&p, "maps")),
            );
        }

        // The 64-worker pool in total.
        b += "\n| 64-worker pool, total | ours: workers' USS + parent's RSS growth | CPython: the same | ours ÷ CPython |\n|---|---:|---:|---:|\n";
        let total = |runs: &[serde_json::Value]| {
            Some(probe_median(runs, "workers_uss")? + probe_median(runs, "rss")?)
        };
        let mut totals = Vec::new();
        for (kind, label) in [("pool64_spawn", "spawn"), ("pool64_fork", "fork")] {
            let r = probes.get(kind).map(Vec::as_slice).unwrap_or_default();
            let p: Vec<serde_json::Value> = py_probes[kind].as_array().cloned().unwrap_or_default();
            let (t, pt) = (total(r), total(&p));
            b += &format!(
                "| {label} | {} MiB | {} MiB | {} |\n",
                t.map_or("—".into(), mib),
                pt.map_or("—".into(), mib),
                match (t, pt) {
                    (Some(t), Some(pt)) => format!("{:.2}×", t / pt),
                    _ => "—".into(),
                }
            );
            totals.push((label, t, pt));
        }

        // Verdicts.
        b += "\n| target (issue 19) | measured | verdict |\n|---|---|---|\n";
        let verdict = |ok: bool| if ok { "**met**" } else { "**not met**" };
        for (key, what, _) in ROWS {
            if let (Some(a), Some(c)) = (med(&ours, key), med(&py_rows, key)) {
                b += &format!(
                    "| {what}: USS ≤ ¼ of CPython's | {} / {} MiB = {:.2}× | {} |\n",
                    mib(a),
                    mib(c),
                    a / c,
                    verdict(a <= c / 4.0)
                );
            }
        }
        for (label, t, pt) in totals {
            if let (Some(t), Some(pt)) = (t, pt) {
                b += &format!(
                    "| 64-worker pool ({label}), total: ≤ ¼ of CPython's | {} / {} MiB = {:.2}× | {} |\n",
                    mib(t),
                    mib(pt),
                    t / pt,
                    verdict(t <= pt / 4.0)
                );
            }
        }
        let show = |v: &[(String, f64, f64)]| {
            v.iter()
                .take(6)
                .map(|(n, k, d)| format!("`{n}` {k:.0} ({d:.0} dirty)"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let ours_b = BREAKDOWN.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(v) = ours_b {
            b += &format!(
                "\nWhere an idle spawned child's USS is (private KiB by mapping, of which dirty, from `/proc/PID/smaps`, largest first; a file's pages that no other process maps count as private clean): ours: {}",
                show(&v)
            );
            if let Some(pv) = py.as_ref().ok().and_then(|v| v["breakdown"].as_array()) {
                let pv: Vec<(String, f64, f64)> = pv
                    .iter()
                    .filter_map(|e| {
                        Some((e[0].as_str()?.to_string(), e[1].as_f64()?, e[2].as_f64()?))
                    })
                    .collect();
                b += &format!("; CPython's: {}", show(&pv));
            }
            b += "\n";
        }
        if let Err(e) = &py {
            b += &format!("\nCPython rows missing: {e}\n");
        }
        println!("{b}");
        if o.write {
            write_md(&o.md, BEGIN, END, &b)?;
            eprintln!("w10: wrote the table into {}", o.md.display());
        }
        Ok(())
    }
}
