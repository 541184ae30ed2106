//! Benchmark W6: locks (Linux only; elsewhere the binary says so and exits).
//!
//! **(a) Uncontended acquire + release, one process.** A sample is one batch of acquire +
//! release pairs (1,000,000 by default) in the bench process; its value is pairs per second.
//! Rows: `multiprocess::Lock` (`acquire()` + `release()`, and `drop(lock.guard())`);
//! a raw futex word in shared memory (compare-and-swap 0 → 1, then swap to 0 and `FUTEX_WAKE`
//! only if the old value says someone sleeps: Drepper's three-state mutex); a process-shared
//! `pthread_mutex_t` in shared memory; and CPython's `multiprocessing.Lock` (`acquire()` +
//! `release()`), from `bench/python/w6_locks.py`.
//!
//! **(b) Two processes increment one shared counter under its lock, 1,000,000 times in total**
//! (500,000 each). A sample starts two fresh children (by `fork`), releases them together, and
//! times from the first child's start to the last child's end (`CLOCK_MONOTONIC`, read in the
//! children); its value is increments per second, and the counter must end at 1,000,000. Rows:
//! `multiprocess::Value<u64>` with `*v.lock()? += 1` (children by `ctx.process_closure`); a
//! counter in shared memory under a raw futex word (Drepper's mutex, sleeping at once, and the
//! same spinning up to 100 times before sleeping); a counter under a process-shared
//! `pthread_mutex_t`; and CPython's `Value('Q')` with `with v.get_lock(): v.value += 1`.
//! Placements: both children on CPU 0, one on CPU 0 and one on CPU 1, unpinned.
//!
//! Rows of each part are interleaved in rounds. The report gives median, p10 and p90 of the
//! samples in millions of operations per second, ratios to the raw futex word and to CPython in
//! the same run, and the issue's targets.
//!
//! ```text
//! cargo bench --bench w6_locks                       # 20 batches of 1,000,000; 10 contended runs
//! cargo bench --bench w6_locks -- --no-python --only uncontended --no-write
//! ```
//!
//! Options: `--batches N` (`W6_BATCHES`; the contended part makes half as many runs),
//! `--batch-size N` (`W6_BATCH_SIZE`, uncontended pairs per batch), `--no-python`,
//! `--no-write` (`W6_NO_WRITE=1`), `--md PATH`, `--only TEXT` (repeatable, matched against
//! "part: label [placement]"). The report says how much CPU other programs used while the Rust
//! rows ran and flags more than 10% of a CPU as disturbed.

fn main() {
    multiprocess::init();
    #[cfg(target_os = "linux")]
    w6::main();
    #[cfg(not(target_os = "linux"))]
    eprintln!("w6: this benchmark runs on Linux only (its floors are Linux's)");
}

#[cfg(target_os = "linux")]
mod common;

#[cfg(target_os = "linux")]
mod w6 {
    use super::common::{
        BenchOptions, CpuUse, Stats, fork_child, futex_wait, futex_wake, monotonic_ns, pin, ratio,
        report_head, shared_pages, wait_child, write_md,
    };
    use std::path::Path;
    use std::process::Command;
    use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    /// Increments per contended run, split evenly between the two processes.
    const INCREMENTS: u64 = 1_000_000;

    pub(crate) fn main() {
        if let Err(e) = run() {
            eprintln!("w6: {e}");
            std::process::exit(1);
        }
    }

    // -------------------------------------------------------------------------------------------
    // Raw locks

    /// Drepper's futex mutex ("Futexes are tricky", mutex 3): 0 free, 1 locked, 2 locked with
    /// possible sleepers; `spins` tries before sleeping.
    fn futex_lock(w: &AtomicU32, spins: u32) {
        if w.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return;
        }
        for _ in 0..spins {
            std::hint::spin_loop();
            if w.load(Ordering::Relaxed) == 0
                && w.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return;
            }
        }
        while w.swap(2, Ordering::Acquire) != 0 {
            futex_wait(w, 2);
        }
    }

    fn futex_unlock(w: &AtomicU32) {
        if w.swap(0, Ordering::Release) == 2 {
            futex_wake(w, 1);
        }
    }

    /// A process-shared `pthread_mutex_t` at `at` (in shared memory).
    fn pthread_init(at: *mut u8) -> Result<*mut libc::pthread_mutex_t, String> {
        let m = at.cast::<libc::pthread_mutex_t>();
        // SAFETY: `at` is aligned shared memory large enough for a mutex; initialised once.
        unsafe {
            let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
            libc::pthread_mutexattr_init(&mut attr);
            libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED);
            let r = libc::pthread_mutex_init(m, &attr);
            libc::pthread_mutexattr_destroy(&mut attr);
            if r != 0 {
                return Err(format!("pthread_mutex_init: error {r}"));
            }
        }
        Ok(m)
    }

    // -------------------------------------------------------------------------------------------
    // Rows

    /// Runs `n` operations (or one contended run) and returns operations and time.
    type Sample = Box<dyn FnMut(usize) -> Result<(u64, Duration), String>>;

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Key {
        Ours,
        Futex,
        Python,
        Other,
    }

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Part {
        Uncontended,
        Contended,
    }

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Placement {
        One,
        Same,
        Split,
        Free,
    }

    impl Placement {
        fn pins(self) -> (Option<usize>, Option<usize>) {
            match self {
                Placement::Same => (Some(0), Some(0)),
                Placement::Split => (Some(0), Some(1)),
                Placement::One | Placement::Free => (None, None),
            }
        }
        fn label(self) -> &'static str {
            match self {
                Placement::One => "one process",
                Placement::Same => "both on CPU 0",
                Placement::Split => "CPUs 0 / 1",
                Placement::Free => "unpinned",
            }
        }
        fn python_name(self) -> &'static str {
            match self {
                Placement::One => "one",
                Placement::Same => "same",
                Placement::Split => "split",
                Placement::Free => "free",
            }
        }
    }

    struct Row {
        part: Part,
        key: Key,
        placement: Placement,
        label: String,
        sample: Option<Sample>,
        rates: Vec<f64>,
        external: Option<Stats>,
        error: Option<String>,
    }

    impl Row {
        fn stats(&self) -> Option<Stats> {
            if self.error.is_some() {
                return None;
            }
            self.external.or_else(|| Stats::of(&self.rates))
        }

        fn run(&mut self, n: usize, warm: bool) {
            let (Some(sample), None) = (self.sample.as_mut(), &self.error) else {
                return;
            };
            match sample(n) {
                Ok((ops, d)) if !warm => self.rates.push(ops as f64 / d.as_secs_f64() / 1e6),
                Ok(_) => {}
                Err(e) => {
                    eprintln!("w6: {} [{}]: {e}", self.label, self.placement.label());
                    self.error = Some(e);
                }
            }
        }
    }

    fn timed(n: usize, mut f: impl FnMut()) -> (u64, Duration) {
        let t = Instant::now();
        for _ in 0..n {
            f();
        }
        (n as u64, t.elapsed())
    }

    fn ours_uncontended(guard: bool) -> Result<Sample, String> {
        let lock = multiprocess::Lock::new().map_err(|e| e.to_string())?;
        Ok(Box::new(move |n| {
            let mut failed = false;
            let r = if guard {
                timed(n, || match lock.guard() {
                    Ok(g) => drop(g),
                    Err(_) => failed = true,
                })
            } else {
                timed(n, || {
                    if lock.acquire().is_err() || lock.release().is_err() {
                        failed = true;
                    }
                })
            };
            if failed {
                return Err("acquire or release failed".into());
            }
            Ok(r)
        }))
    }

    fn futex_uncontended() -> Result<Sample, String> {
        let base = shared_pages(4096)?;
        Ok(Box::new(move |n| {
            // SAFETY: an aligned word in a shared mapping that is never unmapped.
            let w = unsafe { &*base.cast::<AtomicU32>() };
            Ok(timed(n, || {
                futex_lock(w, 0);
                futex_unlock(w);
            }))
        }))
    }

    fn pthread_uncontended() -> Result<Sample, String> {
        let m = pthread_init(shared_pages(4096)?)?;
        Ok(Box::new(move |n| {
            Ok(timed(n, || {
                // SAFETY: an initialised process-shared mutex, locked then unlocked by us.
                unsafe {
                    libc::pthread_mutex_lock(m);
                    libc::pthread_mutex_unlock(m);
                }
            }))
        }))
    }

    /// Shared memory of a contended run: a "ready" count, a "go" word, and each child's start
    /// and end times, then the raw rows' lock and counter.
    struct Run {
        base: *mut u8,
    }

    const READY: usize = 0;
    const GO: usize = 1;
    /// Start/end times: four u64 from byte 64.
    const TIMES: usize = 64;
    /// The raw rows' lock (a word, or a pthread mutex) from byte 256, their counter at 512.
    const LOCK_AT: usize = 256;
    const COUNTER_AT: usize = 512;

    impl Run {
        fn word(&self, i: usize) -> &AtomicU32 {
            // SAFETY: aligned words at the start of a shared page that is never unmapped.
            unsafe { &*self.base.cast::<AtomicU32>().add(i) }
        }
        fn time(&self, i: usize) -> &AtomicU64 {
            // SAFETY: as above, from byte 64.
            unsafe { &*self.base.add(TIMES).cast::<AtomicU64>().add(i) }
        }
        fn counter(&self) -> &AtomicU64 {
            // SAFETY: as above.
            unsafe { &*self.base.add(COUNTER_AT).cast::<AtomicU64>() }
        }

        /// In a child: pins it, says it is ready, waits for "go", runs `work` timed.
        fn child(&self, which: usize, cpu: Option<usize>, work: impl FnOnce()) -> bool {
            if cpu.is_some() && pin(0, cpu).is_err() {
                return false;
            }
            self.word(READY).fetch_add(1, Ordering::SeqCst);
            futex_wake(self.word(READY), 1);
            while self.word(GO).load(Ordering::Acquire) == 0 {
                futex_wait(self.word(GO), 0);
            }
            self.time(2 * which)
                .store(monotonic_ns(), Ordering::Relaxed);
            work();
            self.time(2 * which + 1)
                .store(monotonic_ns(), Ordering::Relaxed);
            true
        }

        /// In the parent: resets, lets `start` make the two children, releases them together,
        /// lets `join` wait for them, and returns the time from first start to last end.
        fn sample<T>(
            &self,
            start: impl FnOnce() -> Result<T, String>,
            join: impl FnOnce(T) -> Result<(), String>,
        ) -> Result<Duration, String> {
            self.word(READY).store(0, Ordering::SeqCst);
            self.word(GO).store(0, Ordering::SeqCst);
            let children = start()?;
            loop {
                let r = self.word(READY).load(Ordering::SeqCst);
                if r >= 2 {
                    break;
                }
                futex_wait(self.word(READY), r);
            }
            self.word(GO).store(1, Ordering::Release);
            futex_wake(self.word(GO), u32::MAX);
            join(children)?;
            let t = |i| self.time(i).load(Ordering::Relaxed);
            let first = t(0).min(t(2));
            let last = t(1).max(t(3));
            Ok(Duration::from_nanos(last.saturating_sub(first).max(1)))
        }
    }

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Raw {
        Futex(u32),
        Pthread,
    }

    fn raw_contended(kind: Raw, placement: Placement) -> Result<Sample, String> {
        let run = Run {
            base: shared_pages(4096)?,
        };
        let (c0, c1) = placement.pins();
        // SAFETY: in the mapping; a pthread mutex fits in 256 bytes.
        let lock_at = unsafe { run.base.add(LOCK_AT) };
        let m = if kind == Raw::Pthread {
            Some(pthread_init(lock_at)?)
        } else {
            None
        };
        Ok(Box::new(move |_| {
            run.counter().store(0, Ordering::Relaxed);
            let base = run.base;
            let each = INCREMENTS / 2;
            let work = move || {
                let r = Run { base };
                // SAFETY: an aligned word in the shared page.
                let w = unsafe { &*lock_at.cast::<AtomicU32>() };
                let c = r.counter();
                for _ in 0..each {
                    match (kind, m) {
                        (Raw::Futex(spins), _) => futex_lock(w, spins),
                        // SAFETY: an initialised process-shared mutex.
                        (_, Some(m)) => unsafe {
                            libc::pthread_mutex_lock(m);
                        },
                        _ => unreachable!(),
                    }
                    // A plain read-modify-write under the lock (two accesses, not one atomic
                    // add), as `v.value += 1` does.
                    c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                    match m {
                        // SAFETY: as above; we hold it.
                        Some(m) => unsafe {
                            libc::pthread_mutex_unlock(m);
                        },
                        None => futex_unlock(w),
                    }
                }
            };
            let d = run.sample(
                || {
                    let mut pids = Vec::new();
                    for (i, cpu) in [(0, c0), (1, c1)] {
                        let r = Run { base };
                        // SAFETY: the bench is single-threaded; the child touches shared memory
                        // and makes system calls only.
                        pids.push(unsafe { fork_child(move || r.child(i, cpu, work)) }?);
                    }
                    Ok(pids)
                },
                |pids| pids.into_iter().try_for_each(wait_child),
            )?;
            let total = run.counter().load(Ordering::Relaxed);
            if total != INCREMENTS {
                return Err(format!("the counter ended at {total}, not {INCREMENTS}"));
            }
            Ok((INCREMENTS, d))
        }))
    }

    fn ours_contended(placement: Placement) -> Result<Sample, String> {
        let e = |e: multiprocess::Error| e.to_string();
        let ctx = multiprocess::get_context(multiprocess::StartMethod::Fork).map_err(e)?;
        let run = Run {
            base: shared_pages(4096)?,
        };
        let (c0, c1) = placement.pins();
        Ok(Box::new(move |_| {
            let v = multiprocess::Value::new(0u64).map_err(e)?;
            let base = run.base as usize;
            let each = INCREMENTS / 2;
            let d = run.sample(
                || {
                    let mut procs = Vec::new();
                    for (i, cpu) in [(0, c0), (1, c1)] {
                        let v = v.clone();
                        let mut p = ctx.process_closure(move || {
                            let r = Run {
                                base: base as *mut u8,
                            };
                            r.child(i, cpu, || {
                                for _ in 0..each {
                                    match v.lock() {
                                        Ok(mut g) => *g += 1,
                                        Err(_) => std::process::abort(),
                                    }
                                }
                            })
                        });
                        p.start().map_err(e)?;
                        procs.push(p);
                    }
                    Ok(procs)
                },
                |procs| {
                    for p in procs {
                        p.join().map_err(e)?;
                        if p.exitcode().map_err(e)? != Some(0) {
                            return Err(format!("child exitcode {:?}", p.exitcode()));
                        }
                    }
                    Ok(())
                },
            )?;
            let total = v.get().map_err(e)?;
            if total != INCREMENTS {
                return Err(format!("the Value ended at {total}, not {INCREMENTS}"));
            }
            Ok((INCREMENTS, d))
        }))
    }

    // -------------------------------------------------------------------------------------------
    // CPython

    fn run_python(o: &BenchOptions, runs: usize) -> Result<(String, Vec<Row>), String> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/python/w6_locks.py");
        let out = Command::new("python3")
            .arg(&script)
            .args(["--batches", &o.batches.to_string()])
            .args(["--batch-size", &o.batch_size.to_string()])
            .args(["--runs", &runs.to_string()])
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
        let mut add = |part, placement: Placement, label: String, v: &serde_json::Value| {
            if let Some(s) = Stats::from_json(v, "_mops") {
                rows.push(Row {
                    part,
                    key: Key::Python,
                    placement,
                    label,
                    sample: None,
                    rates: Vec::new(),
                    external: Some(s),
                    error: None,
                });
            }
        };
        add(
            Part::Uncontended,
            Placement::One,
            format!("CPython {version} `multiprocessing.Lock()`: `acquire()` + `release()`"),
            &json["results"]["uncontended"],
        );
        for placement in [Placement::Same, Placement::Split, Placement::Free] {
            add(
                Part::Contended,
                placement,
                format!(
                    "CPython {version} `Value('Q')`: `with v.get_lock(): v.value += 1` (its lock is an RLock), fork context"
                ),
                &json["results"]["contended"][placement.python_name()],
            );
        }
        Ok((version, rows))
    }

    // -------------------------------------------------------------------------------------------
    // Report

    fn find(rows: &[Row], part: Part, key: Key, placement: Placement) -> Option<f64> {
        rows.iter()
            .find(|r| r.part == part && r.key == key && r.placement == placement)
            .and_then(Row::stats)
            .map(|s| s.median)
    }

    fn table(rows: &[Row], part: Part) -> String {
        let unit = match part {
            Part::Uncontended => "M pairs/s",
            Part::Contended => "M increments/s",
        };
        let mut s = format!(
            "| row | placement | median {unit} | p10 | p90 | samples | ÷ raw futex word, same placement | × CPython, same placement |\n\
             |---|---|---:|---:|---:|---:|---:|---:|\n"
        );
        for r in rows.iter().filter(|r| r.part == part) {
            let futex = find(rows, part, Key::Futex, r.placement);
            let py = find(rows, part, Key::Python, r.placement);
            match r.stats() {
                Some(st) => {
                    s += &format!(
                        "| {} | {} | {:.2} | {:.2} | {:.2} | {} | {} | {} |\n",
                        r.label,
                        r.placement.label(),
                        st.median,
                        st.p10,
                        st.p90,
                        st.n,
                        ratio(st.median, futex),
                        ratio(st.median, py),
                    )
                }
                None => {
                    s += &format!(
                        "| {} | {} | {} | | | | | |\n",
                        r.label,
                        r.placement.label(),
                        r.error
                            .as_deref()
                            .map_or("no samples".into(), |e| format!("failed: {e}"))
                    )
                }
            }
        }
        s
    }

    fn targets(rows: &[Row]) -> String {
        let verdict = |ok: bool| if ok { "**met**" } else { "**not met**" };
        let mut s = String::from(
            "| target (from the issue) | placement | measured | verdict |\n|---|---|---|---|\n",
        );
        let u = |k| find(rows, Part::Uncontended, k, Placement::One);
        if let (Some(o), Some(f)) = (u(Key::Ours), u(Key::Futex)) {
            s += &format!(
                "| uncontended `Lock` ≥ 0.7× the futex word | one process | {o:.2} / {f:.2} M/s = {:.2}× | {} |\n",
                o / f,
                verdict(o / f >= 0.7)
            );
        }
        for placement in [Placement::Same, Placement::Split, Placement::Free] {
            let c = |k| find(rows, Part::Contended, k, placement);
            if let (Some(o), Some(p)) = (c(Key::Ours), c(Key::Python)) {
                s += &format!(
                    "| contended `Value` increments ≥ 10× CPython | {} | {o:.2} / {p:.2} M/s = {:.1}× | {} |\n",
                    placement.label(),
                    o / p,
                    verdict(o / p >= 10.0)
                );
            }
        }
        s
    }

    const BEGIN: &str = "<!-- w6:begin -->";
    const END: &str = "<!-- w6:end -->";

    fn run() -> Result<(), String> {
        let o = BenchOptions::parse("w6_locks", "W6", 20, 1_000_000)?;
        let runs = o.batches.div_ceil(2);
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let cpu = CpuUse::now();
        let started = Instant::now();

        type Make = Box<dyn Fn(Placement) -> Result<Sample, String>>;
        let mut specs: Vec<(Part, Key, Placement, &str, Make)> = vec![
            (
                Part::Uncontended,
                Key::Ours,
                Placement::One,
                "multiprocess `Lock`: `acquire()` + `release()`",
                Box::new(|_| ours_uncontended(false)),
            ),
            (
                Part::Uncontended,
                Key::Other,
                Placement::One,
                "multiprocess `Lock`: `drop(lock.guard()?)`",
                Box::new(|_| ours_uncontended(true)),
            ),
            (
                Part::Uncontended,
                Key::Futex,
                Placement::One,
                "raw futex word in shared memory: CAS 0→1, swap → 0 (wake only if contended)",
                Box::new(|_| futex_uncontended()),
            ),
            (
                Part::Uncontended,
                Key::Other,
                Placement::One,
                "process-shared `pthread_mutex_t`: lock + unlock",
                Box::new(|_| pthread_uncontended()),
            ),
        ];
        let mut placements = vec![Placement::Same];
        if cpus >= 2 {
            placements.push(Placement::Split);
        }
        placements.push(Placement::Free);
        for &p in &placements {
            specs.push((
                Part::Contended,
                Key::Ours,
                p,
                "multiprocess `Value<u64>`: `*v.lock()? += 1`",
                Box::new(ours_contended),
            ));
            specs.push((
                Part::Contended,
                Key::Futex,
                p,
                "raw futex word (Drepper's mutex, spins 100 times before sleeping) + counter in shared memory",
                Box::new(|p| raw_contended(Raw::Futex(100), p)),
            ));
            specs.push((
                Part::Contended,
                Key::Other,
                p,
                "raw futex word (Drepper's mutex, sleeps at once) + counter in shared memory",
                Box::new(|p| raw_contended(Raw::Futex(0), p)),
            ));
            specs.push((
                Part::Contended,
                Key::Other,
                p,
                "process-shared `pthread_mutex_t` + counter in shared memory",
                Box::new(|p| raw_contended(Raw::Pthread, p)),
            ));
        }
        let mut rows: Vec<Row> = Vec::new();
        for (part, key, placement, label, make) in specs {
            let part_name = match part {
                Part::Uncontended => "uncontended",
                Part::Contended => "contended",
            };
            if !o.keeps(&format!("{part_name}: {label} [{}]", placement.label())) {
                continue;
            }
            let (sample, error) = match make(placement) {
                Ok(s) => (Some(s), None),
                Err(e) => (None, Some(e)),
            };
            rows.push(Row {
                part,
                key,
                placement,
                label: label.into(),
                sample,
                rates: Vec::new(),
                external: None,
                error,
            });
        }
        eprintln!(
            "w6: uncontended: 1 warmup + {} batches of {} pairs; contended: 1 warmup + {runs} runs of {INCREMENTS} increments; rows interleaved",
            o.batches, o.batch_size
        );
        for part in [Part::Uncontended, Part::Contended] {
            let idx: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].part == part).collect();
            let rounds = if part == Part::Uncontended {
                o.batches
            } else {
                runs
            };
            for &i in &idx {
                rows[i].run(o.batch_size, true);
            }
            for round in 0..rounds {
                for k in 0..idx.len() {
                    rows[idx[(k + round) % idx.len()]].run(o.batch_size, false);
                }
            }
        }
        let others = super::common::report_rust_rows("w6", started, &cpu);

        let mut python_version = None;
        let mut notes = Vec::new();
        if o.python {
            let t = Instant::now();
            match run_python(&o, runs) {
                Ok((version, found)) => {
                    for row in found {
                        let at = rows
                            .iter()
                            .rposition(|r| r.part == row.part && r.placement == row.placement)
                            .map_or(rows.len(), |i| i + 1);
                        rows.insert(at, row);
                    }
                    python_version = Some(version);
                }
                Err(e) => {
                    eprintln!("w6: {e}");
                    notes.push(format!("CPython rows missing: {e}"));
                }
            }
            eprintln!("w6: CPython rows took {:.1} s", t.elapsed().as_secs_f64());
        }

        let cpython = python_version.as_ref().map(|v| {
            format!("{v} (`bench/python/w6_locks.py`, run by the bench after the Rust rows)")
        });
        let mut block = report_head(
            "W6: locks, uncontended and contended",
            &o.command,
            cpython,
            others,
        );
        block += &format!(
            "- (a) uncontended, one process: 1 warmup + {} batches of {} acquire + release pairs \
             each, rows interleaved; median, p10, p90 of the per-batch rate\n",
            o.batches, o.batch_size
        );
        block += &format!(
            "- (b) contended: per sample two fresh child processes, released together, each \
             make {} locked increments of one shared counter ({INCREMENTS} in all, checked); \
             timed from the first child's start to the last child's end; 1 warmup + {runs} \
             samples a row, rows interleaved\n\n",
            INCREMENTS / 2
        );
        block += "### (a) Uncontended acquire + release\n\n";
        block += &table(&rows, Part::Uncontended);
        block += "\n### (b) Two processes, 1,000,000 locked increments of a shared counter\n\n";
        block += &table(&rows, Part::Contended);
        block += "\n";
        block += &targets(&rows);
        for note in &notes {
            block += &format!("\n{note}\n");
        }
        println!("{block}");
        if o.write {
            write_md(&o.md, BEGIN, END, &block)?;
            eprintln!("w6: wrote the tables into {}", o.md.display());
        }
        Ok(())
    }
}
