//! Benchmarks W5, W5b, W5c and W7: a pool of worker processes (Linux only; elsewhere the binary
//! says so and exits).
//!
//! **W5 / W5b: pool throughput on trivial work** (x → x·x over `u64`), with 2 workers (this
//! machine has 2 vCPUs). Lines:
//!
//! - "default chunks": `Pool::map(square, 0..1_000_000)` (Python's default chunksize,
//!   ceil(n / (4 × workers)) = 125,000);
//! - "chunksize 1": `Pool::map_chunked(square, 0..100_000, 1)`;
//! - "apply_async" (W5b): `Pool::apply_async(square, (x,))` for each of 100,000 items, then
//!   `get` of every result in order.
//!
//! Floors: the same squares in this process (`(0..n).map(square).collect()`); two workers forked
//! from this process with a pair of raw pipes each, the parent writing the items in chunks
//! (125,000 items per `write`, or one item per `write`) from one thread per worker and reading
//! the results from another, each worker reading one chunk (or one item) per `read` and writing
//! its squares back in one `write`. CPython rows (`bench/python/w5_pool.py`, run after the Rust
//! rows): `multiprocessing.Pool(2)` (fork context) `map` with the default chunksize and with
//! `chunksize=1`, `apply_async` per item, and `concurrent.futures.ProcessPoolExecutor(2)`'s
//! `map` with chunksize 125,000 (Pool's default for 1,000,000 items) over 1,000,000 items and
//! with its default chunksize (1) over 20,000 items (it does about 12,000 items/s; 100,000 would
//! take 8 s per batch).
//!
//! A sample is one whole call (`map`, or the 100,000 `apply_async` + `get`), results checked;
//! its value is items per second. The rows' samples are interleaved in rounds after one warmup
//! sample per row.
//!
//! **W5c: large arguments and results through `apply_async`**, on the same `Pool::new(2)`, after
//! the W5 / W5b rounds: `apply_async(grow, (b.clone(),))` for each of 10,000 tasks, where `b` is
//! a 256 KiB [`Bytes`](multiprocess::Bytes) (0, 1, …, 250, 0, 1, …) and `grow` returns it 4 times
//! over (1 MiB), then `get()` of each in order, checking its length and one byte and dropping
//! it. Two rows: `b` an `Arc<Bytes>` (the task's argument shared, as CPython's `bytes` object is
//! between its tasks: `clone` counts a reference; every task still encodes and sends all 256 KiB)
//! — the row the target is read from — and `b` a plain `Bytes`, cloned (256 KiB copied in the
//! caller) for each task. A sample's value is tasks per second; a task moves 1.25 MiB (≈ 13.1 GB a sample), and the
//! targets line also gives MB/s. A quarter of `--batches` samples (at least 3). CPython:
//! `Pool(2).apply_async(grow, (b,))` with `grow(b) = b * 4`, half as many samples (at least 3),
//! after a warmup of a tenth of the tasks (a whole sample takes ~25 s there). No floor.
//!
//! **W7: CPU-bound speedup from 1 to 2 workers.** A task is ~1 ms of pure computation (a chain
//! of splitmix64 steps, calibrated at start to 1 ms in this process); 1,500 tasks are mapped
//! (default chunksize) by `Pool::new(1)` and by `Pool::new(2)`; a sample is one `map`, its value
//! the time it took. The speedup is median(1 worker) ÷ median(2 workers). Floor: the same
//! tasks split over 1 or 2 forked processes (no pool, no messages). CPython: `Pool(1)` and
//! `Pool(2)` mapping a pure-Python task calibrated to ~1 ms the same way.
//!
//! ```text
//! cargo bench --bench w5_pool                 # W5: 20 samples a row; W7: 10 samples a row
//! cargo bench --bench w5_pool -- --no-python --only W7 --no-write
//! cargo bench --bench w5_pool -- --only "W5b" --md /tmp/b.md
//! W5C_TASKS=500 cargo bench --bench w5_pool -- --only W5c --no-write
//! ```
//!
//! Options: `--batches N` (`W5_BATCHES`; W7 takes half as many samples, at least 3),
//! `--batch-size N` (`W5_BATCH_SIZE`: the items of the default-chunks line, 1,000,000; the
//! chunksize-1 and apply_async lines take a tenth), `W5C_TASKS` (W5c's tasks a sample, 10,000),
//! `--no-python`, `--no-write` (`W5_NO_WRITE=1`), `--md PATH`, `--only TEXT` (repeatable, matched
//! against "W5 …", "W5b …", "W5c …" or "W7 …" followed by the label). The report says how much CPU
//! other programs used while the Rust rows ran (and while the CPython script ran) and flags more
//! than 10% of a CPU as disturbed.

fn main() {
    multiprocess::init();
    #[cfg(target_os = "linux")]
    w5::main();
    #[cfg(not(target_os = "linux"))]
    eprintln!("w5: this benchmark runs on Linux only (its floors are Linux's)");
}

/// The W5 work.
pub fn square(x: u64) -> u64 {
    x.wrapping_mul(x)
}

/// The W5c work: the argument 4 times over.
pub fn grow(b: multiprocess::Bytes) -> multiprocess::Bytes {
    multiprocess::Bytes(b.repeat(4))
}

/// The W5c work on a shared argument (the bytes travel the same way: an `Arc` encodes as what
/// it holds).
pub fn grow_shared(b: std::sync::Arc<multiprocess::Bytes>) -> multiprocess::Bytes {
    multiprocess::Bytes(b.repeat(4))
}

#[cfg(target_os = "linux")]
mod common;

#[cfg(target_os = "linux")]
mod w5 {
    use super::common::{
        BenchOptions, CpuUse, Stats, command_line, disturbance_line, env_usize, fork_child,
        machine, os_err, ratio, read_all, wait_child, write_all, write_md,
    };
    use super::common::{burn, calibrate};
    use super::{grow, grow_shared, square};
    use multiprocess::{Bytes, Pool};
    use std::hint::black_box;
    use std::os::fd::RawFd;
    use std::path::Path;
    use std::process::Command;
    use std::time::{Duration, Instant};

    const WORKERS: usize = 2;
    /// W7: tasks per map, and the target length of one task.
    const W7_TASKS: u64 = 1500;
    const W7_TASK: Duration = Duration::from_millis(1);
    /// W5c: the argument's length (a result is 4 times as long), the bytes a task moves, and
    /// the default tasks a sample (`W5C_TASKS`).
    const W5C_ARG: usize = 256 * 1024;
    const W5C_MOVED: usize = 5 * W5C_ARG;
    const W5C_TASKS: usize = 10_000;

    pub(crate) fn main() {
        if let Err(e) = run() {
            eprintln!("w5: {e}");
            std::process::exit(1);
        }
    }

    /// One sample: (time, items).
    type Sample = Box<dyn FnMut() -> Result<(Duration, usize), String>>;
    type Finish = Box<dyn FnOnce() -> Result<(), String>>;

    /// The W5 line a row belongs to (for the ratios), or W7's worker count.
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    enum Line {
        Default,
        Chunk1,
        Apply,
        /// W5c: 256 KiB arguments, 1 MiB results.
        Big,
        W7(usize),
    }

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Who {
        Ours,
        Floor,
        /// CPython's `Pool` (the ratios' reference).
        PyPool,
        /// CPython's other rows.
        PyOther,
    }

    struct Row {
        line: Line,
        who: Who,
        label: String,
        sample: Option<Sample>,
        finish: Option<Finish>,
        /// Items per second (W5) or seconds per map (W7).
        values: Vec<f64>,
        external: Option<Stats>,
        error: Option<String>,
    }

    impl Row {
        fn new(line: Line, who: Who, label: String) -> Row {
            Row {
                line,
                who,
                label,
                sample: None,
                finish: None,
                values: Vec::new(),
                external: None,
                error: None,
            }
        }

        fn stats(&self) -> Option<Stats> {
            if self.error.is_some() {
                return None;
            }
            self.external.or_else(|| Stats::of(&self.values))
        }

        fn take(&mut self, warm: bool) {
            let (Some(sample), None) = (self.sample.as_mut(), &self.error) else {
                return;
            };
            match sample() {
                Ok((d, items)) if !warm => self.values.push(match self.line {
                    Line::W7(_) => d.as_secs_f64(),
                    _ => items as f64 / d.as_secs_f64(),
                }),
                Ok(_) => {}
                Err(e) => {
                    eprintln!("w5: {}: {e}", self.label);
                    self.error = Some(e);
                }
            }
        }

        fn finish(&mut self) {
            self.sample = None;
            if let Some(f) = self.finish.take()
                && let Err(e) = f()
            {
                eprintln!("w5: {}: {e}", self.label);
                self.error.get_or_insert(e);
            }
        }
    }

    fn e(e: multiprocess::Error) -> String {
        e.to_string()
    }

    fn check_squares(out: &[u64], n: usize) -> Result<(), String> {
        if out.len() != n {
            return Err(format!("{} results for {n} items", out.len()));
        }
        for k in [0, n / 3, n / 2, n - 1] {
            if out[k] != square(k as u64) {
                return Err(format!("result {k} is {}", out[k]));
            }
        }
        Ok(())
    }

    // -------------------------------------------------------------------------------------------
    // Raw pipes floor: two forked workers, chunks of items per write

    fn pipe() -> Result<(RawFd, RawFd), String> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: pipe fills the two-element array.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            return Err(os_err("pipe"));
        }
        Ok((fds[0], fds[1]))
    }

    /// A `u64` slice as bytes.
    fn bytes_mut(v: &mut [u64]) -> &mut [u8] {
        // SAFETY: u64 has no padding, and u8 has alignment 1.
        unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast(), std::mem::size_of_val(v)) }
    }

    /// Items per `write` `chunk`; a batch maps `items` (a multiple of `chunk` × workers).
    fn raw_pipes_row(chunk: usize, items: usize) -> Result<(Sample, Finish), String> {
        if !items.is_multiple_of(chunk * WORKERS) {
            return Err(format!(
                "{items} items are not a multiple of {chunk} × {WORKERS}"
            ));
        }
        let mut to = Vec::new();
        let mut from = Vec::new();
        let mut pids = Vec::new();
        for _ in 0..WORKERS {
            let (task_r, task_w) = pipe()?;
            let (res_r, res_w) = pipe()?;
            let mut input = vec![0u64; chunk];
            let mut output = vec![0u64; chunk];
            // SAFETY: forked before any pool thread exists; the child only makes system calls
            // and arithmetic on buffers allocated before the fork.
            let pid = unsafe {
                fork_child(move || {
                    libc::close(task_w);
                    libc::close(res_r);
                    loop {
                        if !read_all(task_r, bytes_mut(&mut input)) {
                            return false;
                        }
                        if input[0] == u64::MAX {
                            return true;
                        }
                        for (o, &x) in output.iter_mut().zip(input.iter()) {
                            *o = square(x);
                        }
                        if write_all(res_w, bytes_mut(&mut output)).is_err() {
                            return false;
                        }
                    }
                })
            }?;
            // SAFETY: the child's ends.
            unsafe {
                libc::close(task_r);
                libc::close(res_w);
            }
            to.push(task_w);
            from.push(res_r);
            pids.push(pid);
        }
        let to2 = to.clone();
        let sample: Sample = Box::new(move || {
            let mut out = vec![0u64; items];
            let t = Instant::now();
            let ok = std::thread::scope(|s| {
                let mut parts: Vec<Vec<&mut [u64]>> = (0..WORKERS).map(|_| Vec::new()).collect();
                for (k, c) in out.chunks_mut(chunk).enumerate() {
                    parts[k % WORKERS].push(c);
                }
                let mut handles = Vec::new();
                for (w, part) in parts.into_iter().enumerate() {
                    let (tw, rr) = (to[w], from[w]);
                    handles.push(s.spawn(move || {
                        let mut buf = vec![0u64; chunk];
                        let mut k = w;
                        while k * chunk < items {
                            for (i, b) in buf.iter_mut().enumerate() {
                                *b = (k * chunk + i) as u64;
                            }
                            if write_all(tw, bytes_mut(&mut buf)).is_err() {
                                return false;
                            }
                            k += WORKERS;
                        }
                        true
                    }));
                    handles.push(
                        s.spawn(move || part.into_iter().all(|c| read_all(rr, bytes_mut(c)))),
                    );
                }
                handles.into_iter().all(|h| h.join().unwrap_or(false))
            });
            let d = t.elapsed();
            if !ok {
                return Err(os_err("raw pipe worker I/O"));
            }
            check_squares(&out, items)?;
            Ok((d, items))
        });
        let finish: Finish = Box::new(move || {
            let stop = vec![u64::MAX; chunk];
            for (&fd, &pid) in to2.iter().zip(&pids) {
                // SAFETY: the stop chunk as bytes.
                let b = unsafe {
                    std::slice::from_raw_parts(stop.as_ptr().cast::<u8>(), stop.len() * 8)
                };
                let _ = write_all(fd, b);
                wait_child(pid)?;
            }
            Ok(())
        });
        Ok((sample, finish))
    }

    // -------------------------------------------------------------------------------------------
    // W7 floor: the tasks split over forked processes

    fn forked_burn_row(procs: usize, iters: u64) -> Result<(Sample, Finish), String> {
        let sample: Sample = Box::new(move || {
            let t = Instant::now();
            let mut pids = Vec::new();
            for p in 0..procs as u64 {
                // SAFETY: the child only computes, then `_exit`s.
                let pid = unsafe {
                    fork_child(move || {
                        let mut acc = 0u64;
                        let mut i = p;
                        while i < W7_TASKS {
                            acc ^= burn((i, iters));
                            i += procs as u64;
                        }
                        black_box(acc);
                        true
                    })
                }?;
                pids.push(pid);
            }
            for pid in pids {
                wait_child(pid)?;
            }
            Ok((t.elapsed(), W7_TASKS as usize))
        });
        Ok((sample, Box::new(|| Ok(()))))
    }

    // -------------------------------------------------------------------------------------------
    // CPython

    struct PyOut {
        version: String,
        rows: Vec<Row>,
        w7_iters: Option<u64>,
        w7_task_ms: Option<f64>,
    }

    /// Runs the script's `parts` ("W5", "W5c", "W7"); W5c with `w5c` (tasks, samples).
    fn run_python(
        o: &BenchOptions,
        items: usize,
        w5c: (usize, usize),
        parts: &[&str],
    ) -> Result<PyOut, String> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/python/w5_pool.py");
        let out = Command::new("python3")
            .arg(&script)
            .args(["--batches", &(o.batches / 2).max(3).to_string()])
            .args(["--items", &items.to_string()])
            .args(["--w7-tasks", &W7_TASKS.to_string()])
            .args(["--w5c-tasks", &w5c.0.to_string()])
            .args(["--w5c-batches", &w5c.1.to_string()])
            .args(["--parts", &parts.join(",").to_lowercase()])
            .output()
            .map_err(|e| format!("python3 could not be run: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{} failed ({}): {}",
                script.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let json: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("unreadable output of the CPython script: {e}"))?;
        let version = json["python"].as_str().unwrap_or("?").to_owned();
        let mut rows = Vec::new();
        let n = |x: usize| fmt_count(x);
        let specs: Vec<(&str, Line, Who, String)> = vec![
            (
                "pool_map_default",
                Line::Default,
                Who::PyPool,
                format!(
                    "CPython {version} `Pool(2).map(square, range({}))`, default chunksize",
                    n(items)
                ),
            ),
            (
                "ppe_map_big",
                Line::Default,
                Who::PyOther,
                format!(
                    "CPython {version} `ProcessPoolExecutor(2).map(square, range({}), chunksize={})`",
                    n(items),
                    n(items.div_ceil(4 * WORKERS))
                ),
            ),
            (
                "pool_map_chunk1",
                Line::Chunk1,
                Who::PyPool,
                format!(
                    "CPython {version} `Pool(2).map(square, range({}), chunksize=1)`",
                    n(items / 10)
                ),
            ),
            (
                "ppe_map_default",
                Line::Chunk1,
                Who::PyOther,
                format!(
                    "CPython {version} `ProcessPoolExecutor(2).map(square, range({}))` (default chunksize 1)",
                    n(items / 50)
                ),
            ),
            (
                "pool_apply_async",
                Line::Apply,
                Who::PyPool,
                format!(
                    "CPython {version} `Pool(2).apply_async(square, (x,))` × {}, then `get()` each",
                    n(items / 10)
                ),
            ),
            (
                "pool_apply_big",
                Line::Big,
                Who::PyPool,
                format!(
                    "CPython {version} `Pool(2).apply_async(grow, (b,))` × {}, `b`: 256 KiB `bytes`, `grow(b)`: `b * 4` (1 MiB), then `get()` each",
                    n(w5c.0)
                ),
            ),
            (
                "w7_pool1",
                Line::W7(1),
                Who::PyPool,
                format!("CPython {version} `Pool(1).map(burn, tasks)`"),
            ),
            (
                "w7_pool2",
                Line::W7(2),
                Who::PyPool,
                format!("CPython {version} `Pool(2).map(burn, tasks)`"),
            ),
        ];
        for (key, line, who, label) in specs {
            let suffix = if matches!(line, Line::W7(_)) {
                "_s"
            } else {
                "_ips"
            };
            if let Some(s) = Stats::from_json(&json["results"][key], suffix) {
                let mut r = Row::new(line, who, label);
                r.external = Some(s);
                rows.push(r);
            }
        }
        Ok(PyOut {
            version,
            rows,
            w7_iters: json["w7_iters"].as_u64(),
            w7_task_ms: json["w7_task_ms"].as_f64(),
        })
    }

    // -------------------------------------------------------------------------------------------
    // Report

    fn fmt_count(n: usize) -> String {
        let s = n.to_string();
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        out
    }

    /// Thousands of items per second, to 3 significant digits or more.
    fn kips(v: f64) -> String {
        let k = v / 1e3;
        if k >= 100.0 {
            format!("{k:.0}")
        } else if k >= 10.0 {
            format!("{k:.1}")
        } else {
            format!("{k:.2}")
        }
    }

    fn find(rows: &[Row], line: Line, who: Who) -> Option<f64> {
        rows.iter()
            .find(|r| r.line == line && r.who == who)
            .and_then(Row::stats)
            .map(|s| s.median)
    }

    fn line_name(line: Line) -> &'static str {
        match line {
            Line::Default => "W5 default chunks",
            Line::Chunk1 => "W5 chunksize 1",
            Line::Apply => "W5b apply_async",
            Line::Big => "W5c apply_async 256 KiB → 1 MiB",
            Line::W7(_) => "W7",
        }
    }

    fn w5_table(rows: &[Row]) -> String {
        let mut s = String::from(
            "| line | row | median k items/s | p10 | p90 | samples | × CPython `Pool`, same line | ÷ raw pipes floor, same line |\n\
             |---|---|---:|---:|---:|---:|---:|---:|\n",
        );
        for r in rows.iter().filter(|r| !matches!(r.line, Line::W7(_))) {
            let py = find(rows, r.line, Who::PyPool);
            // The apply_async line's floor is one item per message, as for chunksize 1.
            let floor_line = if r.line == Line::Apply {
                Line::Chunk1
            } else {
                r.line
            };
            let floor = rows
                .iter()
                .find(|f| f.line == floor_line && f.who == Who::Floor && f.label.contains("pipes"))
                .and_then(Row::stats)
                .map(|s| s.median);
            match (r.stats(), &r.error) {
                (Some(st), _) => {
                    s += &format!(
                        "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
                        line_name(r.line),
                        r.label,
                        kips(st.median),
                        kips(st.p10),
                        kips(st.p90),
                        st.n,
                        ratio(st.median, py),
                        ratio(st.median, floor),
                    )
                }
                (None, e) => {
                    s += &format!(
                        "| {} | {} | {} | | | | | |\n",
                        line_name(r.line),
                        r.label,
                        e.as_deref()
                            .map_or("no samples".into(), |e| format!("failed: {e}"))
                    )
                }
            }
        }
        s
    }

    fn w5_targets(rows: &[Row]) -> String {
        let verdict = |ok: bool| if ok { "**met**" } else { "**not met**" };
        let mut s =
            String::from("| target (from the issue) | measured | verdict |\n|---|---|---|\n");
        for (line, target) in [
            (Line::Default, 10),
            (Line::Chunk1, 10),
            (Line::Apply, 10),
            (Line::Big, 5),
        ] {
            let Some(o) = find(rows, line, Who::Ours) else {
                continue;
            };
            let big = line == Line::Big;
            let unit = if big { "k tasks/s" } else { "k items/s" };
            // W5c's figures also in MB/s moved (ours, CPython's).
            let moved = |v: &[f64]| {
                if !big {
                    return String::new();
                }
                let mb: Vec<String> = v
                    .iter()
                    .map(|x| format!("{:.0}", x * W5C_MOVED as f64 / 1e6))
                    .collect();
                format!(" ({} MB/s moved)", mb.join(" / "))
            };
            let (measured, met) = match find(rows, line, Who::PyPool) {
                None => (
                    format!("{} {unit}{}; no CPython row", kips(o), moved(&[o])),
                    "—",
                ),
                Some(p) => (
                    format!(
                        "{} / {} {unit} = {:.1}×{}",
                        kips(o),
                        kips(p),
                        o / p,
                        moved(&[o, p])
                    ),
                    verdict(o / p >= f64::from(target)),
                ),
            };
            s += &format!(
                "| {}: ≥ {target}× CPython's `Pool` | {measured} | {met} |\n",
                line_name(line)
            );
        }
        s
    }

    fn w7_table(rows: &[Row]) -> String {
        let mut s = String::from(
            "| row | workers | median s per map | p10 | p90 | samples | speedup 1 → 2 workers (median ÷ median) |\n\
             |---|---:|---:|---:|---:|---:|---:|\n",
        );
        for r in rows.iter() {
            let Line::W7(w) = r.line else { continue };
            let speedup = if w == 2 {
                let one = rows
                    .iter()
                    .find(|o| o.line == Line::W7(1) && o.who == r.who)
                    .and_then(Row::stats)
                    .map(|s| s.median);
                match (one, r.stats()) {
                    (Some(a), Some(b)) => format!("{:.2}×", a / b.median),
                    _ => "—".into(),
                }
            } else {
                String::new()
            };
            match (r.stats(), &r.error) {
                (Some(st), _) => {
                    s += &format!(
                        "| {} | {w} | {:.3} | {:.3} | {:.3} | {} | {speedup} |\n",
                        r.label, st.median, st.p10, st.p90, st.n
                    )
                }
                (None, e) => {
                    s += &format!(
                        "| {} | {w} | {} | | | | |\n",
                        r.label,
                        e.as_deref()
                            .map_or("no samples".into(), |e| format!("failed: {e}"))
                    )
                }
            }
        }
        s
    }

    fn w7_targets(rows: &[Row]) -> String {
        let verdict = |ok: bool| if ok { "**met**" } else { "**not met**" };
        let mut s =
            String::from("| target (from the issue) | measured | verdict |\n|---|---|---|\n");
        let m = |w, who| find(rows, Line::W7(w), who);
        if let (Some(a), Some(b)) = (m(1, Who::Ours), m(2, Who::Ours)) {
            s += &format!(
                "| W7: speedup 1 → 2 workers ≥ 1.95× | {a:.3} / {b:.3} s = {:.2}× | {} |\n",
                a / b,
                verdict(a / b >= 1.95)
            );
        }
        s
    }

    const W5_BEGIN: &str = "<!-- w5:begin -->";
    const W5_END: &str = "<!-- w5:end -->";
    const W7_BEGIN: &str = "<!-- w7:begin -->";
    const W7_END: &str = "<!-- w7:end -->";

    /// Takes every row's warmup sample, then `rounds` interleaved rounds.
    fn interleave(rows: &mut [Row], rounds: usize) {
        for r in rows.iter_mut() {
            r.take(true);
        }
        let n = rows.len();
        for round in 0..rounds {
            for i in 0..n {
                rows[(i + round) % n].take(false);
            }
        }
        for r in rows.iter_mut().rev() {
            r.finish();
        }
    }

    /// W5c's argument: 256 KiB of 0, 1, …, 250, 0, 1, …
    fn w5c_arg() -> Bytes {
        Bytes((0..W5C_ARG).map(|i| (i % 251) as u8).collect())
    }

    /// A W5c sample: `items` tasks submitted by `submit`, then each result taken in order,
    /// its length and one byte checked, and dropped.
    fn big_sample(
        pool: std::rc::Rc<Pool>,
        items: usize,
        submit: impl Fn(&Pool) -> multiprocess::Result<multiprocess::AsyncResult<Bytes>> + 'static,
    ) -> Sample {
        Box::new(move || {
            let t = Instant::now();
            let pending = (0..items)
                .map(|_| submit(&pool))
                .collect::<Result<Vec<_>, _>>()
                .map_err(e)?;
            for (k, p) in pending.into_iter().enumerate() {
                let r = p.get().map_err(e)?;
                let j = k * 7919 % (4 * W5C_ARG);
                if r.len() != 4 * W5C_ARG || r[j] != (j % W5C_ARG % 251) as u8 {
                    return Err(format!("result {k} is wrong ({} bytes)", r.len()));
                }
            }
            Ok((t.elapsed(), items))
        })
    }

    /// The W5c row whose argument is shared (`Arc<Bytes>`); the target is read from it.
    const W5C_SHARED: &str = "`b`: `Arc<Bytes>`";

    fn pool_row(
        pool: &std::rc::Rc<Pool>,
        line: Line,
        items: usize,
        shared: bool,
    ) -> Result<(Sample, Finish), String> {
        let pool = pool.clone();
        let sample: Sample = match line {
            Line::Default | Line::Chunk1 => {
                let chunk1 = line == Line::Chunk1;
                Box::new(move || {
                    let t = Instant::now();
                    let out = if chunk1 {
                        pool.map_chunked(square, 0..items as u64, 1)
                    } else {
                        pool.map(square, 0..items as u64)
                    }
                    .map_err(e)?;
                    let d = t.elapsed();
                    check_squares(&out, items)?;
                    Ok((d, items))
                })
            }
            Line::Apply => Box::new(move || {
                let t = Instant::now();
                let pending = (0..items as u64)
                    .map(|x| pool.apply_async(square, (x,)))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(e)?;
                let out = pending
                    .iter()
                    .map(|p| p.get())
                    .collect::<Result<Vec<u64>, _>>()
                    .map_err(e)?;
                let d = t.elapsed();
                check_squares(&out, items)?;
                Ok((d, items))
            }),
            // Each result is checked and dropped as it is taken: all of them would be 10 GiB.
            Line::Big if shared => {
                let b = std::sync::Arc::new(w5c_arg());
                big_sample(pool, items, move |p| {
                    p.apply_async(grow_shared, (b.clone(),))
                })
            }
            Line::Big => {
                let b = w5c_arg();
                big_sample(pool, items, move |p| p.apply_async(grow, (b.clone(),)))
            }
            Line::W7(_) => return Err("not a W5 line".into()),
        };
        Ok((sample, Box::new(|| Ok(()))))
    }

    fn run() -> Result<(), String> {
        let mut o = BenchOptions::parse("w5_pool", "W5", 20, 1_000_000)?;
        let big = o.batch_size;
        let small = (big / 10).max(WORKERS);
        let w5c_tasks = match env_usize("W5C_TASKS")? {
            Some(0) => return Err("W5C_TASKS must be at least 1".into()),
            Some(n) => {
                o.command = format!("W5C_TASKS={n} {}", o.command);
                n
            }
            None => W5C_TASKS,
        };
        // W5c's samples: a quarter of the others' (CPython's: half of that), at least 3.
        let w5c_rounds = (o.batches / 4).max(3);
        let w5c_py_rounds = (w5c_rounds / 2).max(3);
        let date =
            command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_else(|| "?".into());

        // ---------------------------------------------------------------- W5 / W5b / W5c
        let w5_specs: Vec<(Line, Who, String)> = vec![
            (
                Line::Default,
                Who::Ours,
                format!(
                    "multiprocess `Pool::new(2)`, `map(square, 0..{})` (chunksize {})",
                    fmt_count(big),
                    fmt_count(big.div_ceil(4 * WORKERS))
                ),
            ),
            (
                Line::Default,
                Who::Floor,
                format!(
                    "raw pipes floor: 2 forked workers, {} items per `write` each way",
                    fmt_count(big.div_ceil(4 * WORKERS))
                ),
            ),
            (
                Line::Default,
                Who::Floor,
                format!(
                    "one-process floor: `(0..{}).map(square).collect()`",
                    fmt_count(big)
                ),
            ),
            (
                Line::Chunk1,
                Who::Ours,
                format!(
                    "multiprocess `Pool::new(2)`, `map_chunked(square, 0..{}, 1)`",
                    fmt_count(small)
                ),
            ),
            (
                Line::Chunk1,
                Who::Floor,
                format!(
                    "raw pipes floor: 2 forked workers, one item per `write` each way, {} items",
                    fmt_count(small)
                ),
            ),
            (
                Line::Apply,
                Who::Ours,
                format!(
                    "multiprocess `Pool::new(2)`, `apply_async(square, (x,))` × {}, then `get()` each",
                    fmt_count(small)
                ),
            ),
            (
                Line::Big,
                Who::Ours,
                format!(
                    "multiprocess `Pool::new(2)`, `apply_async(grow, (b.clone(),))` × {}, {W5C_SHARED} of 256 KiB (shared as CPython's `bytes`; each task still sends all of it), `grow(b)`: `b` 4 times (1 MiB), then `get()` each",
                    fmt_count(w5c_tasks)
                ),
            ),
            (
                Line::Big,
                Who::Ours,
                format!(
                    "multiprocess `Pool::new(2)`, `apply_async(grow, (b.clone(),))` × {}, `b`: 256 KiB `Bytes` (copied in the caller for each task), `grow(b)`: `b` 4 times (1 MiB), then `get()` each",
                    fmt_count(w5c_tasks)
                ),
            ),
        ];
        let w5_keep: Vec<bool> = w5_specs
            .iter()
            .map(|(l, _, label)| o.keeps(&format!("{} {label}", line_name(*l))))
            .collect();
        // The CPython script's parts to run.
        let mut py_parts = Vec::new();
        for (part, big_line) in [("W5", false), ("W5c", true)] {
            if w5_specs
                .iter()
                .zip(&w5_keep)
                .any(|((l, _, _), &k)| k && (*l == Line::Big) == big_line)
            {
                py_parts.push(part);
            }
        }
        let mut w5_rows: Vec<Row> = Vec::new();
        let mut w5_others = None;
        if w5_keep.iter().any(|&k| k) {
            let cpu = CpuUse::now();
            let started = Instant::now();
            // The forking floors first, before the pool's threads exist.
            let mut made: Vec<Option<Row>> = w5_specs.iter().map(|_| None).collect();
            for (i, (line, who, label)) in w5_specs.iter().enumerate() {
                if !w5_keep[i] || *who != Who::Floor || !label.contains("pipes") {
                    continue;
                }
                let (chunk, items) = if *line == Line::Default {
                    (big.div_ceil(4 * WORKERS), big)
                } else {
                    (1, small)
                };
                let mut r = Row::new(*line, *who, label.clone());
                match raw_pipes_row(chunk, items) {
                    Ok((s, f)) => {
                        r.sample = Some(s);
                        r.finish = Some(f);
                    }
                    Err(err) => r.error = Some(err),
                }
                made[i] = Some(r);
            }
            let needs_pool = w5_specs
                .iter()
                .zip(&w5_keep)
                .any(|((_, who, _), &k)| k && *who == Who::Ours);
            let pool = if needs_pool {
                Some(std::rc::Rc::new(Pool::new(WORKERS).map_err(e)?))
            } else {
                None
            };
            for (i, (line, who, label)) in w5_specs.iter().enumerate() {
                if !w5_keep[i] || made[i].is_some() {
                    continue;
                }
                let mut r = Row::new(*line, *who, label.clone());
                if *who == Who::Floor {
                    let n = big;
                    r.sample = Some(Box::new(move || {
                        let t = Instant::now();
                        let out: Vec<u64> = (0..n as u64).map(|x| square(black_box(x))).collect();
                        let d = t.elapsed();
                        check_squares(&out, n)?;
                        Ok((d, n))
                    }));
                } else if let Some(pool) = &pool {
                    let items = match line {
                        Line::Default => big,
                        Line::Big => w5c_tasks,
                        _ => small,
                    };
                    match pool_row(pool, *line, items, label.contains(W5C_SHARED)) {
                        Ok((s, f)) => {
                            r.sample = Some(s);
                            r.finish = Some(f);
                        }
                        Err(err) => r.error = Some(err),
                    }
                }
                made[i] = Some(r);
            }
            // W5c's row after the others' rounds, in rounds of its own.
            let (mut big_rows, rest): (Vec<Row>, Vec<Row>) = made
                .into_iter()
                .flatten()
                .partition(|r| r.line == Line::Big);
            w5_rows = rest;
            if !w5_rows.is_empty() {
                eprintln!(
                    "w5: {} rows × (1 warmup + {} samples), interleaved",
                    w5_rows.len(),
                    o.batches
                );
                interleave(&mut w5_rows, o.batches);
            }
            if !big_rows.is_empty() {
                eprintln!(
                    "w5: W5c: {} row × (1 warmup + {w5c_rounds} samples), {} tasks a sample",
                    big_rows.len(),
                    fmt_count(w5c_tasks)
                );
                interleave(&mut big_rows, w5c_rounds);
            }
            w5_rows.append(&mut big_rows);
            if let Some(pool) = pool {
                if let Ok(pool) = std::rc::Rc::try_unwrap(pool) {
                    pool.close();
                    pool.join().map_err(e)?;
                }
            }
            eprintln!(
                "w5: Rust W5 rows took {:.1} s",
                started.elapsed().as_secs_f64()
            );
            let others = cpu.others_since();
            eprintln!(
                "w5: other programs used {:.0}% of a CPU during them",
                others * 100.0
            );
            w5_others = Some(others);
        }

        // ---------------------------------------------------------------- W7
        let iters = calibrate(W7_TASK);
        let w7_rounds = (o.batches / 2).max(3);
        let w7_specs: Vec<(Line, Who, String)> = vec![
            (
                Line::W7(1),
                Who::Ours,
                "multiprocess `Pool::new(1).map(burn, tasks)`".into(),
            ),
            (
                Line::W7(2),
                Who::Ours,
                "multiprocess `Pool::new(2).map(burn, tasks)`".into(),
            ),
            (
                Line::W7(1),
                Who::Floor,
                "floor: the tasks in 1 forked process (no pool)".into(),
            ),
            (
                Line::W7(2),
                Who::Floor,
                "floor: the tasks split over 2 forked processes (no pool)".into(),
            ),
        ];
        let mut w7_rows: Vec<Row> = Vec::new();
        let mut w7_others = None;
        if w7_specs
            .iter()
            .any(|(l, _, label)| o.keeps(&format!("{} {label}", line_name(*l))))
        {
            py_parts.push("W7");
            let cpu = CpuUse::now();
            let started = Instant::now();
            for (line, who, label) in &w7_specs {
                if !o.keeps(&format!("{} {label}", line_name(*line))) {
                    continue;
                }
                let Line::W7(workers) = *line else { continue };
                let mut r = Row::new(*line, *who, label.clone());
                let made = if *who == Who::Floor {
                    forked_burn_row(workers, iters)
                } else {
                    Pool::new(workers).map_err(e).map(|pool| {
                        let sample: Sample = Box::new(move || {
                            let tasks = (0..W7_TASKS).map(|i| (i, iters));
                            let t = Instant::now();
                            let out = pool.map(burn, tasks).map_err(e)?;
                            let d = t.elapsed();
                            if out.len() != W7_TASKS as usize || out[7] != burn((7, iters)) {
                                return Err("wrong W7 results".into());
                            }
                            Ok((d, W7_TASKS as usize))
                        });
                        (sample, Box::new(|| Ok(())) as Finish)
                    })
                };
                match made {
                    Ok((s, f)) => {
                        r.sample = Some(s);
                        r.finish = Some(f);
                    }
                    Err(err) => r.error = Some(err),
                }
                w7_rows.push(r);
            }
            eprintln!(
                "w5: W7: {} rows × (1 warmup + {w7_rounds} samples), interleaved; {iters} steps a task",
                w7_rows.len()
            );
            interleave(&mut w7_rows, w7_rounds);
            eprintln!(
                "w5: Rust W7 rows took {:.1} s",
                started.elapsed().as_secs_f64()
            );
            let others = cpu.others_since();
            eprintln!(
                "w5: other programs used {:.0}% of a CPU during them",
                others * 100.0
            );
            w7_others = Some(others);
        }

        // ---------------------------------------------------------------- CPython
        let mut py = None;
        let mut py_others = None;
        let mut notes = Vec::new();
        if o.python && !py_parts.is_empty() {
            let t = Instant::now();
            let cpu = CpuUse::now();
            match run_python(&o, big, (w5c_tasks, w5c_py_rounds), &py_parts) {
                Ok(out) => py = Some(out),
                Err(err) => {
                    eprintln!("w5: {err}");
                    notes.push(format!("CPython rows missing: {err}"));
                }
            }
            py_others = Some(cpu.others_since());
            eprintln!("w5: CPython rows took {:.1} s", t.elapsed().as_secs_f64());
        }
        let mut py_version = None;
        let (mut py_iters, mut py_task_ms) = (None, None);
        if let Some(out) = py {
            py_version = Some(out.version.clone());
            py_iters = out.w7_iters;
            py_task_ms = out.w7_task_ms;
            for r in out.rows {
                if matches!(r.line, Line::W7(_)) {
                    w7_rows.push(r);
                } else {
                    w5_rows.push(r);
                }
            }
            // Each line's rows together.
            let order = |l: Line| match l {
                Line::Default => 0,
                Line::Chunk1 => 1,
                Line::Apply => 2,
                Line::Big => 3,
                Line::W7(w) => 4 + w,
            };
            w5_rows.sort_by_key(|r| order(r.line));
        }

        let head = |title: &str, others: f64| {
            let mut b = format!("## {title}\n\n");
            b += &format!("- Command: `{}`\n", o.command);
            b += &format!("- Machine: {}\n", machine());
            if let Some(v) = &py_version {
                b += &format!(
                    "- CPython: {v} (`bench/python/w5_pool.py`, run by the bench after the Rust rows, {} samples a row)\n",
                    (o.batches / 2).max(3)
                );
            }
            b += &format!("- Date: {date}\n");
            b += &disturbance_line(others);
            if let Some(p) = py_others {
                b += &format!(
                    "- Other programs' CPU use while the CPython script ran ({}): {:.0}% of one CPU{}\n",
                    match py_parts.split_last() {
                        Some((last, [])) => format!("its {last} part"),
                        Some((last, rest)) => {
                            format!("its {} and {last} parts together", rest.join(", "))
                        }
                        None => String::new(),
                    },
                    p * 100.0,
                    if p > 0.1 { " — **disturbed**" } else { "" }
                );
            }
            b
        };

        if let Some(others) = w5_others {
            let mut block = head(
                "W5 / W5b / W5c: pool throughput, x → x·x over `u64` and 256 KiB → 1 MiB `Bytes`, 2 workers (this machine has 2 vCPUs)",
                others,
            );
            block += &format!(
                "- Each Rust row: 1 warmup + {} samples, interleaved in rounds; a sample is one whole `map` (or all the \
                 `apply_async` calls and their `get`s), results checked; items/s = items ÷ the call's time; median, p10, \
                 p90 over the samples. Workers started by the default start method (spawn); the pool is made once\n",
                o.batches
            );
            if py_parts.contains(&"W5c") {
                block += &format!(
                    "- W5c: 1 warmup + {w5c_rounds} samples{}, after the other rows' rounds, on the same pool; an item is a \
                     task, which moves {} bytes (256 KiB argument + 1 MiB result); each result's length and one byte \
                     checked, then dropped\n",
                    if py_version.is_some() {
                        format!(
                            " (CPython: a warmup of a tenth of the tasks + {w5c_py_rounds} samples)"
                        )
                    } else {
                        String::new()
                    },
                    fmt_count(W5C_MOVED)
                );
            }
            block += "\n";
            block += &w5_table(&w5_rows);
            block += "\n";
            block += &w5_targets(&w5_rows);
            for note in &notes {
                block += &format!("\n{note}\n");
            }
            println!("{block}");
            if o.write {
                write_md(&o.md, W5_BEGIN, W5_END, &block)?;
                eprintln!("w5: wrote the W5 table into {}", o.md.display());
            }
        }
        if let Some(others) = w7_others {
            let mut block = head("W7: CPU-bound `map` speedup from 1 to 2 workers", others);
            block += &format!(
                "- A task: {iters} splitmix64 steps (≈ 1 ms in this process, calibrated at start); a map: {} tasks, \
                 default chunksize; 1 warmup + {w7_rounds} samples a row, interleaved; a sample is one `map` (or the forked \
                 floor's start-to-last-exit), in seconds{}\n\n",
                fmt_count(W7_TASKS as usize),
                match (py_iters, py_task_ms) {
                    (Some(i), Some(ms)) => format!(
                        "; CPython's task: a pure-Python loop of {i} steps of a 64-bit hash (≈ {ms:.2} ms measured in the script)"
                    ),
                    _ => String::new(),
                }
            );
            block += &w7_table(&w7_rows);
            block += "\n";
            block += &w7_targets(&w7_rows);
            for note in &notes {
                block += &format!("\n{note}\n");
            }
            println!("{block}");
            if o.write {
                write_md(&o.md, W7_BEGIN, W7_END, &block)?;
                eprintln!("w5: wrote the W7 table into {}", o.md.display());
            }
        }
        Ok(())
    }
}
