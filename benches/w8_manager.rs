//! Benchmark W8: calls on objects held by a manager process, against CPython's
//! `multiprocessing.Manager()` (Linux only; elsewhere the binary says so and exits).
//!
//! The rows, in µs per pair of calls made by this process on proxies (the manager's server
//! process started once, by the default start method, and unpinned, as CPython's):
//!
//! - `DictProxy<u32, u64>`: `d.set(&k, &i)` then `d.get(&k)` (k cycles over 100 keys);
//! - `QueueProxy<u64>`: `q.put(&i)` then `q.get()`;
//! - `Proxy<Counter>`, an object of the program's own type (`impl Managed`): `Add(i)` then
//!   `Total`;
//! - CPython 3's `Manager().dict()` (`d[k] = i; d[k]`), `Manager().Queue()` (`q.put(i);
//!   q.get()`) and a `Counter` registered on a `SyncManager` (`c.add(i); c.total()`), fork
//!   context, from `bench/python/w8_manager.py`, run after the Rust rows;
//! - the floor a call on this machine is held to (issue 19): two round trips through two
//!   `multiprocess::Queue<u64>` (one each way) with a spawned echo child, unpinned as the
//!   manager is. A call is one round trip to the manager; the target table gives each row's
//!   call (half a pair) against one such round trip, and each row against CPython's.
//!
//! Each row: one warmup batch, then 20 batches of 2000 pairs, the rows' batches interleaved; a
//! sample is a batch's mean time per pair; the report gives median, p10 and p90.
//!
//! ```text
//! cargo bench --bench w8_manager
//! cargo bench --bench w8_manager -- --batches 5 --no-python --no-write
//! ```
//!
//! Options: `--batches N` (`W8_BATCHES`), `--batch-size N` (`W8_BATCH_SIZE`), `--no-python`,
//! `--no-write` (`W8_NO_WRITE=1`), `--md PATH`, `--only TEXT`.

fn main() {
    multiprocess::init();
    #[cfg(target_os = "linux")]
    if let Err(e) = w8::run() {
        eprintln!("w8: {e}");
        std::process::exit(1);
    }
    #[cfg(not(target_os = "linux"))]
    eprintln!("w8: this benchmark runs on Linux only");
}

#[cfg(target_os = "linux")]
mod common;

#[cfg(target_os = "linux")]
mod w8 {
    use super::common::{
        BenchOptions, CpuUse, Stats, command_line, disturbance_line, interleave, machine, ratio,
        write_md,
    };
    use std::path::Path;
    use std::process::Command;
    use std::time::Instant;

    const BEGIN: &str = "<!-- w8:begin -->";
    const END: &str = "<!-- w8:end -->";

    type Batch = Box<dyn FnMut(usize) -> Result<f64, String>>;

    /// The floor's echo child: sends back what it gets until `u64::MAX`.
    fn echo(rx: multiprocess::Queue<u64>, tx: multiprocess::Queue<u64>) {
        while let Ok(v) = rx.get() {
            if v == u64::MAX || tx.put(&v).is_err() {
                break;
            }
        }
    }

    /// The own-type row's object: Python's registered `Counter`.
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Counter {
        total: u64,
    }

    #[derive(serde::Serialize, serde::Deserialize)]
    enum CounterCall {
        Add(u64),
        Total,
    }

    impl multiprocess::managers::Managed for Counter {
        type Call = CounterCall;
        type Reply = u64;
        fn handle(&mut self, call: CounterCall) -> u64 {
            if let CounterCall::Add(i) = call {
                self.total = self.total.wrapping_add(i);
            }
            self.total
        }
    }

    struct Row {
        key: &'static str,
        label: &'static str,
        batch: Batch,
        samples: Vec<f64>,
        error: Option<String>,
    }

    pub(crate) fn run() -> Result<(), String> {
        let o = BenchOptions::parse("w8_manager", "W8", 20, 2000)?;
        let e = |e: multiprocess::Error| e.to_string();
        let manager = multiprocess::Manager::start().map_err(e)?;
        let d = manager.dict::<u32, u64>().map_err(e)?;
        let q = manager.queue::<u64>().map_err(e)?;
        let counter = manager.create(&Counter { total: 0 }).map_err(e)?;
        let (down, up) = (
            multiprocess::Queue::<u64>::new().map_err(e)?,
            multiprocess::Queue::<u64>::new().map_err(e)?,
        );
        let mut echo_child = multiprocess::Process::new(echo, (down.clone(), up.clone()));
        echo_child.start().map_err(e)?;
        let stop = down.clone();
        let mut rows: Vec<Row> = Vec::new();
        let floor: Batch = Box::new(move |n| {
            let t = Instant::now();
            for i in 0..n as u64 {
                for _ in 0..2 {
                    down.put(&i).map_err(e)?;
                    if up.get().map_err(e)? != i {
                        return Err("the echo lost a value".into());
                    }
                }
            }
            Ok(t.elapsed().as_secs_f64() * 1e6 / n as f64)
        });
        let dict: Batch = Box::new(move |n| {
            let t = Instant::now();
            for i in 0..n as u64 {
                let k = (i % 100) as u32;
                d.set(&k, &i).map_err(e)?;
                if d.get(&k).map_err(e)? != Some(i) {
                    return Err("the dict lost a value".into());
                }
            }
            Ok(t.elapsed().as_secs_f64() * 1e6 / n as f64)
        });
        let queue: Batch = Box::new(move |n| {
            let t = Instant::now();
            for i in 0..n as u64 {
                q.put(&i).map_err(e)?;
                if q.get().map_err(e)? != i {
                    return Err("the queue lost a value".into());
                }
            }
            Ok(t.elapsed().as_secs_f64() * 1e6 / n as f64)
        });
        let own: Batch = Box::new(move |n| {
            let t = Instant::now();
            for i in 0..n as u64 {
                counter.call(&CounterCall::Add(i)).map_err(e)?;
                counter.call(&CounterCall::Total).map_err(e)?;
            }
            Ok(t.elapsed().as_secs_f64() * 1e6 / n as f64)
        });
        for (key, label, batch) in [
            (
                "floor",
                "floor: two round trips through two `Queue<u64>` (one each way), echo child by spawn",
                floor,
            ),
            (
                "dict",
                "multiprocess `DictProxy<u32, u64>`: `set(&k, &i)` + `get(&k)`",
                dict,
            ),
            (
                "queue",
                "multiprocess `QueueProxy<u64>`: `put(&i)` + `get()`",
                queue,
            ),
            (
                "own",
                "multiprocess `Proxy<Counter>` (`impl Managed`): `call(&Add(i))` + `call(&Total)`",
                own,
            ),
        ] {
            if o.keeps(label) {
                rows.push(Row {
                    key,
                    label,
                    batch,
                    samples: Vec::new(),
                    error: None,
                });
            }
        }
        let cpu = CpuUse::now();
        let size = o.batch_size;
        interleave(
            &mut rows,
            o.batches,
            |r, warmup| {
                if r.error.is_some() {
                    return;
                }
                match (r.batch)(size) {
                    Ok(us) if !warmup => r.samples.push(us),
                    Ok(_) => {}
                    Err(err) => r.error = Some(err),
                }
            },
            |_| {},
        );
        // The manager's process and the echo child count as ours once reaped.
        drop(manager);
        stop.put(&u64::MAX).map_err(e)?;
        echo_child.join().map_err(e)?;
        let others = cpu.others_since();
        eprintln!("w8: Rust rows done");

        let python = if o.python {
            python_rows(&o)
        } else {
            Err("skipped (--no-python)".into())
        };

        let mut block = String::from("## W8: calls on objects held by a manager process\n\n");
        block += &format!("- Command: `{}`\n", o.command);
        block += &format!("- Machine: {}\n", machine());
        block += &format!(
            "- Date: {}\n",
            command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_default()
        );
        block += &disturbance_line(others);
        block += &format!(
            "- Each row: 1 warmup batch + {} batches of {} pairs of calls from this process, the rows' batches interleaved; a sample is a batch's mean time per pair; the manager's server process is started once, unpinned\n\n",
            o.batches, o.batch_size
        );
        block += "| row | median µs per pair | p10 | p90 | batches | CPython ÷ ours |\n|---|---:|---:|---:|---:|---:|\n";
        let py = python.as_ref().ok();
        for r in &rows {
            let Some(s) = Stats::of(&r.samples) else {
                block += &format!(
                    "| {} | failed: {} | | | | |\n",
                    r.label,
                    r.error.as_deref().unwrap_or("no samples")
                );
                continue;
            };
            let theirs = py.and_then(|(_, m)| m.get(r.key)).map(|p: &Stats| p.median);
            block += &format!(
                "| {} | {:.2} | {:.2} | {:.2} | {} | {} |\n",
                r.label,
                s.median,
                s.p10,
                s.p90,
                s.n,
                theirs.map_or("—".into(), |t| ratio(t, Some(s.median)))
            );
        }
        match &python {
            Ok((version, m)) => {
                for (key, label) in [
                    ("dict", "`Manager().dict()`: `d[k] = i` + `d[k]`"),
                    ("queue", "`Manager().Queue()`: `q.put(i)` + `q.get()`"),
                    (
                        "own",
                        "`register('Counter', Counter)` on a `SyncManager`: `c.add(i)` + `c.total()`",
                    ),
                ] {
                    if let Some(s) = m.get(key) {
                        block += &format!(
                            "| CPython {version} {label}, fork context | {:.2} | {:.2} | {:.2} | {} | 1.00× |\n",
                            s.median, s.p10, s.p90, s.n
                        );
                    }
                }
            }
            Err(why) => block += &format!("\nCPython rows: {why}\n"),
        }
        block += &verdicts(&rows, py);
        print!("{block}");
        if o.write {
            write_md(&o.md, BEGIN, END, &block)?;
            eprintln!("w8: wrote the table into {}", o.md.display());
        }
        Ok(())
    }

    type PyRows = (String, std::collections::HashMap<&'static str, Stats>);

    /// Issue 19's targets for each manager row: ≥ 10× CPython's same row, and a call (half a
    /// pair) within 2× of a `Queue` round trip (half the floor row's pair).
    fn verdicts(rows: &[Row], py: Option<&PyRows>) -> String {
        let median = |key: &str| {
            rows.iter()
                .find(|r| r.key == key)
                .and_then(|r| Stats::of(&r.samples))
                .map(|s| s.median)
        };
        let verdict = |met: bool| if met { "**met**" } else { "**not met**" };
        let floor = median("floor");
        let mut out = String::from("\n| target (issue 19) | measured | verdict |\n|---|---|---|\n");
        for (key, name) in [("dict", "dict"), ("queue", "queue"), ("own", "own type")] {
            let Some(ours) = median(key) else { continue };
            if let Some(theirs) = py.and_then(|(_, m)| m.get(key)).map(|s| s.median) {
                out += &format!(
                    "| {name}: ≥ 10× CPython | {theirs:.2} / {ours:.2} µs = {:.1}× | {} |\n",
                    theirs / ours,
                    verdict(theirs / ours >= 10.0)
                );
            }
            if let Some(floor) = floor {
                out += &format!(
                    "| {name}: a call within 2× of a `Queue` round trip | {:.3} / {:.3} µs = {:.2}× | {} |\n",
                    ours / 2.0,
                    floor / 2.0,
                    ours / floor,
                    verdict(ours / floor <= 2.0)
                );
            }
        }
        out
    }

    fn python_rows(o: &BenchOptions) -> Result<PyRows, String> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/python/w8_manager.py");
        let out = Command::new("python3")
            .arg(script)
            .args(["--batches", &o.batches.to_string()])
            .args(["--batch-size", &o.batch_size.to_string()])
            .output()
            .map_err(|e| format!("python3 did not run: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "the script failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("the script's output is not JSON: {e}"))?;
        let version = v["python"].as_str().unwrap_or("?").to_string();
        let mut m = std::collections::HashMap::new();
        for key in ["dict", "queue", "own"] {
            if let Some(s) = Stats::from_json(&v["results"][key], "_us") {
                m.insert(key, s);
            }
        }
        Ok((version, m))
    }
}
