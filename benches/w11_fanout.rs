//! Benchmark W11: fan-out. Start N processes (default 256) at once, wait until every one has
//! reported, join them all: against CPython's `multiprocessing` and the OS floors (Linux only;
//! elsewhere the binary says so and exits).
//!
//! Rows (a sample is one whole fan-out, timed from before the first start to after the last
//! join):
//!
//! - `multiprocess` spawn / fork / forkserver: N × `ctx.process(report, (q.clone(), i))` +
//!   `start`, where `report` puts `i` on the `Queue<u32>` `q`; then N × `q.get()` (every `i`
//!   checked), then N × `join`;
//! - `multiprocess` spawn `Pool` of N: `Pool::builder().processes(N).initializer(report_pid,
//!   (path,))`, where `report_pid` sends the worker's pid as a datagram to the Unix socket at
//!   `path` (a pool's initializer arguments cannot carry a `Queue`); N reports (N distinct
//!   pids checked), `close` + `join`;
//! - the OS floors: N × `fork` (the child `_exit(0)`s) then N × `waitpid`; and N ×
//!   `posix_spawn` of this binary in a mode that exits right after `multiprocess::init()` (as
//!   W1's floor), then N × `waitpid`;
//! - CPython's fork / spawn / forkserver / spawn `Pool(N)`, the same work, from
//!   `bench/python/w11_fanout.py`, run after the Rust rows.
//!
//! After the Rust rows the bench checks that nothing is left: descriptors (`/proc/self/fd`)
//! and threads (`/proc/self/task`) as many as before them (the fork server, started before the
//! baseline, is the one child that stays; one fork start before the baseline opens the null
//! device descriptor the fork method keeps), and `waitpid(-1, WNOHANG)` finds no child to reap.
//!
//! ```text
//! cargo bench --bench w11_fanout
//! cargo bench --bench w11_fanout -- --procs 64 --batches 3 --no-python --no-write
//! ```
//!
//! Options: `--procs N` (`W11_PROCS`, default 256), `--batches N` (`W11_BATCHES`: samples per
//! Rust row, default 10), `--py-samples N` (default 3), `--no-python`, `--no-write`
//! (`W11_NO_WRITE=1`), `--md PATH`, `--only TEXT`.

fn main() {
    multiprocess::init();
    #[cfg(target_os = "linux")]
    if let Err(e) = w11::main() {
        eprintln!("w11: {e}");
        std::process::exit(1);
    }
    #[cfg(not(target_os = "linux"))]
    eprintln!("w11: this benchmark runs on Linux only");
}

#[cfg(target_os = "linux")]
mod common;

#[cfg(target_os = "linux")]
mod w11 {
    use super::common::{
        BenchOptions, CpuUse, Stats, command_line, count_entries, disturbance_line, env_usize,
        interleave, machine, os_err, python_json, wait_child, write_md,
    };
    use multiprocess::{Context, Pool, Process, Queue};
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::time::{Duration, Instant};

    const BEGIN: &str = "<!-- w11:begin -->";
    const END: &str = "<!-- w11:end -->";
    /// Set in the environment of the `posix_spawn` floor's children: exit right after `init()`.
    const EXIT_AT_ONCE: &str = "W11_EXIT_AT_ONCE";
    const LIMIT: Duration = Duration::from_secs(600);

    fn report(q: Queue<u32>, i: u32) {
        // An error here shows as a missing report in the parent.
        let _ = q.put(&i);
    }

    /// The pool's initializer: sends the worker's pid to the parent's datagram socket (a pool's
    /// initializer arguments cannot carry a `Queue`, see BENCHMARKS.md).
    fn empty() {}

    fn report_pid(path: String) {
        if let Ok(s) = std::os::unix::net::UnixDatagram::unbound() {
            let _ = s.send_to(&std::process::id().to_le_bytes(), path);
        }
    }

    fn err(e: multiprocess::Error) -> String {
        e.to_string()
    }

    type Sample = Box<dyn FnMut(usize) -> Result<Duration, String>>;

    fn fan_out(ctx: Context) -> Sample {
        Box::new(move |n| {
            let q = Queue::<u32>::new().map_err(err)?;
            let t = Instant::now();
            let mut ps: Vec<Process> = (0..n as u32)
                .map(|i| ctx.process(report, (q.clone(), i)))
                .collect();
            for p in ps.iter_mut() {
                p.start().map_err(err)?;
            }
            let mut seen = vec![false; n];
            for _ in 0..n {
                let i = q.get_timeout(true, Some(LIMIT)).map_err(err)? as usize;
                if i >= n || std::mem::replace(&mut seen[i], true) {
                    return Err(format!("unexpected report {i}"));
                }
            }
            for p in &ps {
                p.join_timeout(LIMIT).map_err(err)?;
            }
            let d = t.elapsed();
            for p in &ps {
                match p.exitcode() {
                    Ok(Some(0)) => {}
                    other => return Err(format!("a child ended with {other:?}")),
                }
            }
            Ok(d)
        })
    }

    fn pool_fan_out() -> Sample {
        Box::new(|n| {
            let path = std::env::temp_dir().join(format!("w11-{}.sock", std::process::id()));
            let _ = std::fs::remove_file(&path);
            let sock = std::os::unix::net::UnixDatagram::bind(&path)
                .map_err(|e| format!("bind {}: {e}", path.display()))?;
            sock.set_read_timeout(Some(LIMIT))
                .map_err(|e| e.to_string())?;
            let name = path.to_string_lossy().into_owned();
            let t = Instant::now();
            let pool = Pool::builder()
                .processes(n)
                .initializer(report_pid, (name,))
                .build()
                .map_err(err)?;
            let mut pids = std::collections::HashSet::new();
            let mut buf = [0u8; 4];
            for _ in 0..n {
                match sock.recv(&mut buf) {
                    Ok(4) => pids.insert(u32::from_le_bytes(buf)),
                    Ok(k) => return Err(format!("a report of {k} bytes")),
                    Err(e) => return Err(format!("waiting for reports: {e}")),
                };
            }
            pool.close();
            pool.join().map_err(err)?;
            let d = t.elapsed();
            drop(sock);
            let _ = std::fs::remove_file(&path);
            if pids.len() != n {
                return Err(format!("{} distinct workers reported, not {n}", pids.len()));
            }
            Ok(d)
        })
    }

    fn fork_floor() -> Sample {
        Box::new(|n| {
            let t = Instant::now();
            let mut pids = Vec::with_capacity(n);
            for _ in 0..n {
                // SAFETY: the child only calls _exit, which is async-signal-safe.
                let pid = unsafe { libc::fork() };
                if pid == 0 {
                    // SAFETY: _exit has no preconditions and never returns.
                    unsafe { libc::_exit(0) };
                }
                if pid < 0 {
                    return Err(os_err("fork"));
                }
                pids.push(pid);
            }
            for pid in pids {
                wait_child(pid)?;
            }
            Ok(t.elapsed())
        })
    }

    /// N × `posix_spawn` of this binary (which exits after `init()`) then N × `waitpid`; argv
    /// and the environment are prepared once, outside the timed part.
    fn posix_spawn_floor() -> Result<Sample, String> {
        let cstr = |s: &[u8]| CString::new(s).map_err(|e| e.to_string());
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let path = cstr(exe.as_os_str().as_bytes())?;
        let mut env = Vec::new();
        for (k, v) in std::env::vars_os() {
            env.push(cstr(&[k.as_bytes(), b"=", v.as_bytes()].concat())?);
        }
        env.push(cstr(format!("{EXIT_AT_ONCE}=1").as_bytes())?);
        Ok(Box::new(move |n| {
            let argv = [path.as_ptr().cast_mut(), std::ptr::null_mut()];
            let envp: Vec<*mut libc::c_char> = env
                .iter()
                .map(|s| s.as_ptr().cast_mut())
                .chain([std::ptr::null_mut()])
                .collect();
            let t = Instant::now();
            let mut pids = Vec::with_capacity(n);
            for _ in 0..n {
                let mut pid: libc::pid_t = 0;
                // SAFETY: a valid path and NULL-terminated argv/envp arrays of C strings that
                // outlive the call; no file actions or attributes.
                let r = unsafe {
                    libc::posix_spawn(
                        &mut pid,
                        path.as_ptr(),
                        std::ptr::null(),
                        std::ptr::null(),
                        argv.as_ptr(),
                        envp.as_ptr(),
                    )
                };
                if r != 0 {
                    return Err(format!(
                        "posix_spawn: {}",
                        std::io::Error::from_raw_os_error(r)
                    ));
                }
                pids.push(pid);
            }
            for pid in pids {
                wait_child(pid)?;
            }
            Ok(t.elapsed())
        }))
    }

    struct Row {
        key: &'static str,
        label: String,
        sample: Sample,
        secs: Vec<f64>,
        error: Option<String>,
    }

    /// Descriptors, threads, and whether `waitpid(-1, WNOHANG)` reaped a child (its pid).
    fn leftovers() -> (usize, usize, i32) {
        let mut status = 0;
        // SAFETY: waitpid with a valid out-pointer; WNOHANG never blocks.
        let reaped = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        (
            count_entries("/proc/self/fd"),
            count_entries("/proc/self/task"),
            reaped,
        )
    }

    fn fmt_ms(s: f64) -> String {
        let ms = s * 1e3;
        if ms >= 1000.0 {
            format!("{ms:.0}")
        } else {
            format!("{ms:.1}")
        }
    }

    pub(crate) fn main() -> Result<(), String> {
        if std::env::var_os(EXIT_AT_ONCE).is_some() {
            std::process::exit(0);
        }
        let mut o = BenchOptions::parse("w11_fanout", "W11", 10, 1)?;
        let mut procs = env_usize("W11_PROCS")?.unwrap_or(256);
        let mut py_samples = 3;
        let mut args = std::env::args().skip(1);
        while let Some(a) = args.next() {
            let mut num = |name: &str| -> Result<usize, String> {
                let v = args.next().ok_or(format!("{name} needs a value"))?;
                v.parse().map_err(|_| format!("{v:?} is not a number"))
            };
            match a.as_str() {
                "--procs" => procs = num("--procs")?,
                "--py-samples" => py_samples = num("--py-samples")?,
                _ => {}
            }
        }
        if procs == 0 {
            return Err("--procs must be at least 1".into());
        }
        if procs != 256 && !o.command.contains("W11_PROCS") {
            o.command += &format!(
                "{} --procs {procs}",
                if o.command.contains(" -- ") {
                    ""
                } else {
                    " --"
                }
            );
        }
        let ctx = |m: &str| multiprocess::get_context(m.parse().map_err(err)?).map_err(err);
        let mut rows = vec![
            Row::new(
                "floor_spawn",
                format!(
                    "OS floor: {procs} × `posix_spawn` this binary (exits after `init()`), then {procs} × `waitpid`"
                ),
                posix_spawn_floor()?,
            ),
            Row::new(
                "floor_fork",
                format!("OS floor: {procs} × `fork` + `_exit(0)`, then {procs} × `waitpid`"),
                fork_floor(),
            ),
            Row::new(
                "spawn",
                format!(
                    "multiprocess spawn: {procs} × `process(report, (q, i))` + start, {procs} reports, {procs} joins"
                ),
                fan_out(ctx("spawn")?),
            ),
            Row::new(
                "fork",
                "multiprocess fork: the same".into(),
                fan_out(ctx("fork")?),
            ),
            Row::new(
                "forkserver",
                "multiprocess forkserver: the same".into(),
                fan_out(ctx("forkserver")?),
            ),
            Row::new(
                "pool_spawn",
                format!(
                    "multiprocess spawn `Pool` of {procs}: build (initializer sends its pid on a Unix datagram socket), {procs} reports, close + join"
                ),
                pool_fan_out(),
            ),
        ];
        rows.retain(|r| o.keeps(&r.label));
        // The fork server stays for the whole program: start it before the baseline. So does
        // the null-device descriptor the fork method keeps for its children's stdin (opened at
        // the first fork): one fork start before the baseline too.
        multiprocess::forkserver::ensure_running().map_err(err)?;
        let mut first = ctx("fork")?.process(empty, ());
        first.start().map_err(err)?;
        first.join().map_err(err)?;
        let before = leftovers();
        eprintln!(
            "w11: {} rows × (1 warmup + {} samples) of {procs} processes",
            rows.len(),
            o.batches
        );
        let cpu = CpuUse::now();
        let started = Instant::now();
        interleave(
            &mut rows,
            o.batches,
            |r, warm| {
                if r.error.is_some() {
                    return;
                }
                match (r.sample)(procs) {
                    Ok(d) if !warm => r.secs.push(d.as_secs_f64()),
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("w11: {}: {e}", r.key);
                        r.error = Some(e);
                    }
                }
            },
            |_| {},
        );
        let others = super::common::report_rust_rows("w11", started, &cpu);
        // Threads that end after their last message (a pool's) get a moment to go.
        let mut after = leftovers();
        for _ in 0..50 {
            if after.0 <= before.0 && after.1 <= before.1 {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
            after = leftovers();
        }

        let py = if o.python {
            let t = Instant::now();
            let v = python_json(
                "w11_fanout.py",
                &[
                    "--procs".into(),
                    procs.to_string(),
                    "--samples".into(),
                    py_samples.to_string(),
                ],
            );
            eprintln!("w11: CPython rows took {:.1} s", t.elapsed().as_secs_f64());
            v
        } else {
            Err("skipped (--no-python)".into())
        };
        let py_version = py
            .as_ref()
            .ok()
            .and_then(|v| v["python"].as_str())
            .unwrap_or("?")
            .to_string();
        let py_stats = |key: &str| -> Option<Stats> {
            let v = py.as_ref().ok()?;
            let s: Vec<f64> = v["results"][key]
                .as_array()?
                .iter()
                .filter_map(|x| x.as_f64())
                .collect();
            Stats::of(&s)
        };
        let ours = |key: &str| {
            rows.iter()
                .find(|r| r.key == key)
                .and_then(|r| Stats::of(&r.secs))
        };
        let floor = |key: &str| {
            if key == "fork" || key == "forkserver" {
                ours("floor_fork")
            } else {
                ours("floor_spawn")
            }
        };

        let date =
            command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_else(|| "?".into());
        let mut b = String::new();
        b += &format!(
            "## W11: fan-out: {procs} processes started at once, all reports, all joined\n\n"
        );
        b += &format!("- Command: `{}`\n", o.command);
        b += &format!("- Machine: {}\n", machine());
        if py.is_ok() {
            b += &format!(
                "- CPython: {py_version} (`bench/python/w11_fanout.py`, run by the bench after the Rust rows, 1 warmup of {} processes + {py_samples} samples a row)\n",
                (procs / 10).max(1)
            );
        }
        b += &format!("- Date: {date}\n");
        b += &disturbance_line(others);
        b += &format!(
            "- Rust rows: 1 warmup + {} samples each, interleaved in rounds; a sample is one whole fan-out of {procs} processes, from before the first start to after the last join; per process = the median ÷ {procs}. The floor of a row is `fork`'s for fork and forkserver (whose server forks each child), `posix_spawn`'s for spawn and the pool\n",
            o.batches
        );
        b += &format!(
            "- Left after the Rust rows: descriptors {} → {}, threads {} → {}, `waitpid(-1, WNOHANG)` {}{}\n\n",
            before.0,
            after.0,
            before.1,
            after.1,
            match after.2 {
                0 => "found no child to reap (the fork server runs)".to_string(),
                -1 => "found no child".to_string(),
                pid => format!("reaped a leftover child ({pid})"),
            },
            if after.0 > before.0 || after.1 > before.1 || after.2 > 0 {
                " — **something was left**"
            } else {
                ""
            }
        );
        b += "| row | median ms | p10 ms | p90 ms | n | µs per process | ÷ floor | CPython ÷ this |\n|---|---:|---:|---:|---:|---:|---:|---:|\n";
        let pn = procs as f64;
        for r in &rows {
            let Some(s) = Stats::of(&r.secs) else {
                b += &format!(
                    "| {} | failed: {} | | | | | | |\n",
                    r.label,
                    r.error.as_deref().unwrap_or("no samples")
                );
                continue;
            };
            let fl = if r.key.starts_with("floor") {
                "1.00×".to_string()
            } else {
                floor(r.key).map_or("—".into(), |f| format!("{:.2}×", s.median / f.median))
            };
            let vs =
                py_stats(r.key).map_or("—".into(), |p| format!("{:.1}×", p.median / s.median));
            b += &format!(
                "| {} | {} | {} | {} | {} | {:.0} | {fl} | {vs} |\n",
                r.label,
                fmt_ms(s.median),
                fmt_ms(s.p10),
                fmt_ms(s.p90),
                s.n,
                s.median / pn * 1e6,
            );
        }
        for (key, label) in [
            ("fork", "fork"),
            ("spawn", "spawn"),
            ("forkserver", "forkserver"),
            ("pool_spawn", "spawn `Pool(N)` (initializer reports)"),
        ] {
            if let Some(s) = py_stats(key) {
                b += &format!(
                    "| CPython {py_version} {label} | {} | {} | {} | {} | {:.0} | {} | 1.0× |\n",
                    fmt_ms(s.median),
                    fmt_ms(s.p10),
                    fmt_ms(s.p90),
                    s.n,
                    s.median / pn * 1e6,
                    floor(key).map_or("—".into(), |f| format!("{:.2}×", s.median / f.median)),
                );
            }
        }
        b += "\n| target (issue 19) | measured | verdict |\n|---|---|---|\n";
        let verdict = |ok: bool| if ok { "**met**" } else { "**not met**" };
        for (key, what) in [
            ("spawn", "spawn"),
            ("fork", "fork"),
            ("forkserver", "forkserver"),
            ("pool_spawn", "spawn `Pool`"),
        ] {
            let Some(s) = ours(key) else { continue };
            if let Some(p) = py_stats(key) {
                let r = p.median / s.median;
                // Where CPython itself is within 10× of the OS floor, 10× CPython would mean
                // beating the floor: the verdict says so.
                let below_floor = floor(key)
                    .filter(|f| p.median / f.median < 10.0)
                    .map_or(String::new(), |f| {
                        format!(
                            " (out of reach: CPython is {:.2}× the floor, so 10× CPython is {:.2}× the floor)",
                            p.median / f.median,
                            p.median / 10.0 / f.median
                        )
                    });
                b += &format!(
                    "| {what}: ≥ 10× CPython | {} / {} ms = {r:.1}× | {}{below_floor} |\n",
                    fmt_ms(p.median),
                    fmt_ms(s.median),
                    verdict(r >= 10.0)
                );
            }
            if let Some(f) = floor(key) {
                let r = s.median / f.median;
                b += &format!(
                    "| {what}: ≤ 1.5× the floor | {} / {} ms = {r:.2}× | {} |\n",
                    fmt_ms(s.median),
                    fmt_ms(f.median),
                    verdict(r <= 1.5)
                );
            }
        }
        let clean = after.0 <= before.0 && after.1 <= before.1 && after.2 <= 0;
        b += &format!(
            "| nothing left: no descriptor, thread or zombie | fds {} → {}, threads {} → {}, reaped {} | {} |\n",
            before.0,
            after.0,
            before.1,
            after.1,
            if after.2 > 0 { "a child" } else { "none" },
            verdict(clean)
        );
        if let Err(e) = &py {
            b += &format!("\nCPython rows missing: {e}\n");
        }
        println!("{b}");
        if o.write {
            write_md(&o.md, BEGIN, END, &b)?;
            eprintln!("w11: wrote the table into {}", o.md.display());
        }
        Ok(())
    }

    impl Row {
        fn new(key: &'static str, label: String, sample: Sample) -> Row {
            Row {
                key,
                label,
                sample,
                secs: Vec::new(),
                error: None,
            }
        }
    }
}
