//! Benchmark W12: the async forms (cargo feature `tokio`) against the blocking ones, and the
//! executor against CPython's `concurrent.futures.ProcessPoolExecutor` (Linux only; elsewhere
//! the binary says so and exits).
//!
//! Lines and rows:
//!
//! - **Connection round trip**: one spawned echo child (blocking `recv_bytes`/`send_bytes`)
//!   for the whole run; rows: blocking `send_bytes` + `recv_bytes` of 8 bytes, and
//!   `send_bytes_async` + `recv_bytes_async` awaited on a current-thread tokio runtime.
//! - **Queue round trip**: one spawned echo child taking `u64`s from one `Queue` with the
//!   blocking `get` and putting them into another; rows: blocking `put` + `get`, and
//!   `put_async` + `get_async` on the same runtime.
//!
//! A sample of these is a batch of round trips and its value the batch's mean time per round
//! trip, in µs.
//!
//! - **Executor submit + result**: `ProcessPoolExecutor::new(2)` (made once; workers started
//!   by the default start method), a sample submits `W12_TASKS` tasks `square(x)` one by one,
//!   then calls `result()` on each future in order (checked); its value is tasks per
//!   second. CPython's row: `bench/python/w12_executor.py`, the same with
//!   `ProcessPoolExecutor(2)` (fork context), run after the Rust rows.
//!
//! The Rust rows' samples are interleaved in rounds after one warmup sample each. The report
//! gives median, p10 and p90, the ratios to the issue's targets (async ≤ 1.3× the blocking
//! Connection round trip, ≤ 2× the blocking Queue round trip; executor ≥ 10× CPython's), and
//! how much CPU other programs used meanwhile; it is written between `<!-- w12:begin -->` and
//! `<!-- w12:end -->` in BENCHMARKS.md. Unpinned (the scheduler's placement).
//!
//! ```text
//! cargo bench --features tokio --bench w12_async            # 20 batches × 2000, 10,000 tasks
//! W12_BATCHES=10 W12_BATCH_SIZE=500 W12_TASKS=2000 cargo bench --features tokio --bench w12_async -- --no-write
//! ```
//!
//! Options: `--batches N` (`W12_BATCHES`), `--batch-size N` (`W12_BATCH_SIZE`), `W12_TASKS`,
//! `--no-python`, `--no-write` (`W12_NO_WRITE=1`), `--md PATH`.

fn main() {
    // The spawned children run their targets inside init() and exit there.
    multiprocess::init();
    #[cfg(target_os = "linux")]
    if let Err(e) = w12::main() {
        eprintln!("w12: {e}");
        std::process::exit(1);
    }
    #[cfg(not(target_os = "linux"))]
    eprintln!("w12: this benchmark runs on Linux only");
}

/// The executor's task.
pub fn square(x: u64) -> u64 {
    x.wrapping_mul(x)
}

#[cfg(target_os = "linux")]
mod common;

#[cfg(target_os = "linux")]
mod w12 {
    use std::path::Path;
    use std::process::Command;
    use std::time::Instant;

    use multiprocess::executor::ProcessPoolExecutor;
    use multiprocess::{Connection, Process, Queue, pipe};

    use super::common::{
        BenchOptions, CpuUse, Stats, env_usize, interleave, report_head, report_rust_rows, write_md,
    };

    const BEGIN: &str = "<!-- w12:begin -->";
    const END: &str = "<!-- w12:end -->";

    /// Echoes every message until end of file.
    fn echo(conn: Connection) {
        while let Ok(m) = conn.recv_bytes() {
            if conn.send_bytes(&m).is_err() {
                break;
            }
        }
    }

    /// Moves every number from `from` to `to` until `u64::MAX`.
    fn echo_queue(from: Queue<u64>, to: Queue<u64>) {
        while let Ok(x) = from.get() {
            if x == u64::MAX || to.put(&x).is_err() {
                break;
            }
        }
    }

    #[derive(Clone, Copy, PartialEq)]
    enum Kind {
        ConnBlocking,
        ConnAsync,
        QueueBlocking,
        QueueAsync,
        Executor,
    }

    struct Row {
        kind: Kind,
        line: &'static str,
        label: String,
        unit: &'static str,
        samples: Vec<f64>,
        stats: Option<Stats>,
    }

    pub fn main() -> Result<(), String> {
        let mut o = BenchOptions::parse("w12_async", "W12", 20, 2000)?;
        o.command = o
            .command
            .replace("cargo bench", "cargo bench --features tokio");
        let tasks = env_usize("W12_TASKS")?.unwrap_or(10_000).max(1);
        if tasks != 10_000 {
            o.command = format!("W12_TASKS={tasks} {}", o.command);
        }
        let size = o.batch_size;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("a tokio runtime: {e}"))?;
        let (ours, theirs) = pipe().map_err(|e| e.to_string())?;
        let mut conn_child = Process::new(echo, (theirs,));
        conn_child.start().map_err(|e| e.to_string())?;
        let (q_out, q_back) = (
            Queue::<u64>::new().map_err(|e| e.to_string())?,
            Queue::<u64>::new().map_err(|e| e.to_string())?,
        );
        let mut queue_child = Process::new(echo_queue, (q_out.clone(), q_back.clone()));
        queue_child.start().map_err(|e| e.to_string())?;
        let executor = ProcessPoolExecutor::new(2).map_err(|e| e.to_string())?;
        let msg = 0x0123_4567_89ab_cdefu64.to_le_bytes();

        let row = |kind, line, label: &str, unit| Row {
            kind,
            line,
            label: label.to_owned(),
            unit,
            samples: Vec::new(),
            stats: None,
        };
        let mut rows = vec![
            row(
                Kind::ConnBlocking,
                "Connection round trip",
                "blocking `send_bytes` + `recv_bytes`, 8 bytes",
                "µs",
            ),
            row(
                Kind::ConnAsync,
                "Connection round trip",
                "`send_bytes_async` + `recv_bytes_async`, 8 bytes (current-thread tokio)",
                "µs",
            ),
            row(
                Kind::QueueBlocking,
                "Queue round trip",
                "blocking `put` + `get` of a `u64`",
                "µs",
            ),
            row(
                Kind::QueueAsync,
                "Queue round trip",
                "`put_async` + `get_async` of a `u64` (current-thread tokio)",
                "µs",
            ),
            row(
                Kind::Executor,
                "Executor submit + result",
                &format!(
                    "multiprocess `ProcessPoolExecutor::new(2)`, `submit(square, (x,))` × {tasks}, then `result()` each"
                ),
                "k tasks/s",
            ),
        ];

        let cpu = CpuUse::now();
        let started = Instant::now();
        let mut failure = None;
        interleave(
            &mut rows,
            o.batches,
            |r, warmup| {
                if failure.is_some() {
                    return;
                }
                let n = if warmup { size / 4 + 1 } else { size };
                let t = Instant::now();
                let run = || -> multiprocess::Result<f64> {
                    match r.kind {
                        Kind::ConnBlocking => {
                            for _ in 0..n {
                                ours.send_bytes(&msg)?;
                                assert_eq!(ours.recv_bytes()?, msg);
                            }
                        }
                        Kind::ConnAsync => rt.block_on(async {
                            for _ in 0..n {
                                ours.send_bytes_async(&msg).await?;
                                assert_eq!(ours.recv_bytes_async().await?, msg);
                            }
                            Ok::<(), multiprocess::Error>(())
                        })?,
                        Kind::QueueBlocking => {
                            for x in 0..n as u64 {
                                q_out.put(&x)?;
                                assert_eq!(q_back.get()?, x);
                            }
                        }
                        Kind::QueueAsync => rt.block_on(async {
                            for x in 0..n as u64 {
                                q_out.put_async(&x).await?;
                                assert_eq!(q_back.get_async().await?, x);
                            }
                            Ok::<(), multiprocess::Error>(())
                        })?,
                        Kind::Executor => {
                            let k = if warmup { tasks / 10 + 1 } else { tasks };
                            let futures = (0..k as u64)
                                .map(|x| executor.submit(super::square, (x,)))
                                .collect::<multiprocess::Result<Vec<_>>>()?;
                            for (x, f) in futures.iter().enumerate() {
                                assert_eq!(f.result()?, (x as u64) * (x as u64));
                            }
                            return Ok(k as f64 / t.elapsed().as_secs_f64() / 1e3);
                        }
                    }
                    Ok(t.elapsed().as_secs_f64() * 1e6 / n as f64)
                };
                match run() {
                    Ok(v) if !warmup => r.samples.push(v),
                    Ok(_) => {}
                    Err(e) => failure = Some(format!("{}: {e}", r.label)),
                }
            },
            |_| {},
        );
        let others = report_rust_rows("w12", started, &cpu);
        if let Some(e) = failure {
            return Err(e);
        }
        drop(ours);
        let _ = q_out.put(&u64::MAX);
        conn_child.join().map_err(|e| e.to_string())?;
        queue_child.join().map_err(|e| e.to_string())?;
        executor.shutdown(true, false);
        for r in &mut rows {
            r.stats = Stats::of(&r.samples);
        }

        let mut notes = Vec::new();
        let mut python = None;
        if o.python {
            let cpu = CpuUse::now();
            let t = Instant::now();
            match run_python(&o, tasks) {
                Ok((version, stats)) => {
                    let others = cpu.others_since();
                    rows.push(Row {
                        kind: Kind::Executor,
                        line: "Executor submit + result",
                        label: format!(
                            "CPython {version} `ProcessPoolExecutor(2)` (fork), `submit(square, x)` × {tasks}, then `result()` each"
                        ),
                        unit: "k tasks/s",
                        samples: Vec::new(),
                        stats: Some(Stats {
                            median: stats.median / 1e3,
                            p10: stats.p10 / 1e3,
                            p90: stats.p90 / 1e3,
                            n: stats.n,
                        }),
                    });
                    python = Some((version, others, stats.n));
                }
                Err(e) => {
                    eprintln!("w12: {e}");
                    notes.push(format!("CPython row missing: {e}"));
                }
            }
            eprintln!("w12: CPython row took {:.1} s", t.elapsed().as_secs_f64());
        }

        let cpython = python.as_ref().map(|(v, py_others, n)| format!("{v} (`bench/python/w12_executor.py`, run by the bench after the Rust rows, 1 warmup + {n} samples; other programs' CPU use meanwhile: {:.0}% of one CPU)", py_others * 100.0));
        let mut block = report_head(
            "W12: async forms (cargo feature `tokio`) against the blocking ones; the executor against CPython's",
            &o.command,
            cpython,
            others,
        );
        block += &format!(
            "- Round-trip rows: one spawned echo child per line for the whole run (blocking on its side); 1 warmup batch + {} batches of {} round trips, interleaved in rounds with the other rows; a sample is a batch's mean time per round trip. Executor row: 1 warmup + {} samples of {tasks} tasks, interleaved likewise. Unpinned\n\n",
            o.batches, size, o.batches
        );
        block += "| line | row | unit | median | p10 | p90 | samples |\n";
        block += "|---|---|---|---:|---:|---:|---:|\n";
        for r in &rows {
            if let Some(s) = r.stats {
                block += &format!(
                    "| {} | {} | {} | {} | {} | {} | {} |\n",
                    r.line,
                    r.label,
                    r.unit,
                    num(s.median),
                    num(s.p10),
                    num(s.p90),
                    s.n
                );
            }
        }
        let median = |pick: &dyn Fn(&Row) -> bool| {
            rows.iter()
                .find(|r| pick(r))
                .and_then(|r| r.stats)
                .map(|s| s.median)
        };
        block += "\n| target (from the issue) | measured | verdict |\n|---|---|---|\n";
        let verdict = |ok: bool| if ok { "**met**" } else { "**not met**" };
        let mut target = |name: &str, a: Option<f64>, b: Option<f64>, ok: fn(f64) -> bool| {
            if let (Some(a), Some(b)) = (a, b) {
                let x = a / b;
                block += &format!(
                    "| {name} | {} / {} = {x:.2}× | {} |\n",
                    num(a),
                    num(b),
                    verdict(ok(x))
                );
            } else {
                block += &format!("| {name} | — | not measured |\n");
            }
        };
        target(
            "async 8-byte Connection round trip ≤ 1.3× the blocking one",
            median(&|r| r.kind == Kind::ConnAsync),
            median(&|r| r.kind == Kind::ConnBlocking),
            |x| x <= 1.3,
        );
        target(
            "`Queue::get_async` round trip ≤ 2× the blocking `get`",
            median(&|r| r.kind == Kind::QueueAsync),
            median(&|r| r.kind == Kind::QueueBlocking),
            |x| x <= 2.0,
        );
        target(
            "executor submit + result ≥ 10× CPython's `ProcessPoolExecutor`",
            median(&|r| r.kind == Kind::Executor && r.label.starts_with("multiprocess")),
            median(&|r| r.kind == Kind::Executor && r.label.starts_with("CPython")),
            |x| x >= 10.0,
        );
        for note in &notes {
            block += &format!("\n{note}\n");
        }
        println!("{block}");
        if o.write {
            write_md(&o.md, BEGIN, END, &block)?;
            eprintln!("w12: wrote the table into {}", o.md.display());
        }
        Ok(())
    }

    /// Three significant digits, as the other sections print them.
    fn num(x: f64) -> String {
        if x >= 100.0 {
            format!("{x:.0}")
        } else if x >= 10.0 {
            format!("{x:.1}")
        } else {
            format!("{x:.2}")
        }
    }

    /// Runs the CPython script; its version and the row's statistics in tasks per second.
    fn run_python(o: &BenchOptions, tasks: usize) -> Result<(String, Stats), String> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/python/w12_executor.py");
        let out = Command::new("python3")
            .arg(&script)
            .args(["--batches", &(o.batches / 2).max(3).to_string()])
            .args(["--tasks", &tasks.to_string()])
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
        let stats = Stats::from_json(&json["results"]["ppe_submit"], "_tps")
            .ok_or("the CPython script gave no ppe_submit row")?;
        Ok((version, stats))
    }
}
