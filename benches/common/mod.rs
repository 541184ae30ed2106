//! Helpers shared by the benchmark harnesses: options from the environment, percentiles, how
//! quiet the machine was while we measured, the machine's description, and writing one block of
//! BENCHMARKS.md.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use std::time::Instant;

pub(crate) fn env_usize(name: &str) -> Result<Option<usize>, String> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .map(Some)
            .map_err(|_| format!("{name}={v:?} is not a number")),
        Err(_) => Ok(None),
    }
}

/// Says how long the Rust rows of `bench` took since `started` and how much CPU other programs
/// used meanwhile (since `cpu`); returns that share of one CPU.
pub(crate) fn report_rust_rows(bench: &str, started: Instant, cpu: &CpuUse) -> f64 {
    eprintln!(
        "{bench}: Rust rows took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let others = cpu.others_since();
    eprintln!(
        "{bench}: other programs used {:.0}% of a CPU during the Rust rows",
        others * 100.0
    );
    others
}

/// Linear-interpolated percentile of sorted values, as the Python script computes it.
/// Samples rows interleaved: one warm-up batch per row, then `batches` rounds in which every
/// row takes one batch, starting each round one row further, so that drift of the machine hits
/// every row alike. Then finishes the rows last to first (later children may hold copies of
/// earlier rows' descriptors).
pub(crate) fn interleave<R>(
    rows: &mut [R],
    batches: usize,
    mut sample: impl FnMut(&mut R, bool),
    mut finish: impl FnMut(&mut R),
) {
    for r in rows.iter_mut() {
        sample(r, true);
    }
    let n = rows.len();
    for round in 0..batches {
        for i in 0..n {
            sample(&mut rows[(i + round) % n], false);
        }
    }
    for r in rows.iter_mut().rev() {
        finish(r);
    }
}

pub(crate) fn percentile(sorted: &[f64], q: f64) -> f64 {
    let pos = (sorted.len() - 1) as f64 * q / 100.0;
    let lo = pos as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

pub(crate) fn command_line(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

pub(crate) fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".into());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "?".into());
    let rustc = command_line("rustc", &["--version"]).unwrap_or_else(|| "rustc ?".into());
    format!("nproc {cpus}; Linux {kernel}; {model}; {rustc}")
}

pub(crate) fn ratio(a: f64, b: Option<f64>) -> String {
    match b {
        Some(b) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "—".into(),
    }
}

/// Replaces the generated block between the markers `begin` and `end` in `path` (or appends
/// one).
pub(crate) fn write_md(path: &Path, begin: &str, end: &str, block: &str) -> Result<(), String> {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let new_block = format!("{begin}\n{block}{end}");
    let new = match (old.find(begin), old.find(end)) {
        (Some(b), Some(e)) if b < e => {
            format!("{}{new_block}{}", &old[..b], &old[e + end.len()..])
        }
        _ if old.is_empty() => format!("# Benchmarks\n\n{new_block}\n"),
        _ => format!("{}\n\n{new_block}\n", old.trim_end()),
    };
    std::fs::write(path, new).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// CPU seconds spent by the whole machine (busy time over all CPUs) and by this process's
/// tree: itself, its reaped children, and every live descendant with what it reaped (a fork
/// server, its served children, a resource tracker: processes we do not reap until the end, whose
/// CPU `RUSAGE_CHILDREN` does not hold yet), so that the difference is what other programs took
/// during the run.
pub(crate) struct CpuUse {
    machine: f64,
    ours: f64,
    at: Instant,
}

impl CpuUse {
    pub(crate) fn now() -> CpuUse {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let machine = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| {
                let line = s.lines().next()?.strip_prefix("cpu ")?.to_owned();
                let f: Vec<f64> = line
                    .split_whitespace()
                    .map(|x| x.parse().unwrap_or(0.0))
                    .collect();
                // user nice system idle iowait irq softirq steal: busy = all but idle, iowait.
                Some(f.iter().take(8).sum::<f64>() - f.get(3)? - f.get(4)?)
            })
            .unwrap_or(0.0)
            / hz;
        let mut ours = 0.0;
        for who in [libc::RUSAGE_SELF, libc::RUSAGE_CHILDREN] {
            // SAFETY: getrusage fills the zeroed struct we pass.
            let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
            if unsafe { libc::getrusage(who, &mut ru) } == 0 {
                let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
                ours += tv(ru.ru_utime) + tv(ru.ru_stime);
            }
        }
        ours += descendants_cpu(hz);
        CpuUse {
            machine,
            ours,
            at: Instant::now(),
        }
    }

    /// The share of one CPU that other programs used since `self` (0.5 = half a CPU).
    pub(crate) fn others_since(&self) -> f64 {
        let now = CpuUse::now();
        let wall = now.at.duration_since(self.at).as_secs_f64().max(1e-9);
        ((now.machine - self.machine) - (now.ours - self.ours)).max(0.0) / wall
    }
}

/// CPU seconds of this process's live descendants, each with the children it reaped
/// (`utime + stime + cutime + cstime` from `/proc/PID/stat`).
fn descendants_cpu(hz: f64) -> f64 {
    let me = std::process::id();
    let mut procs: Vec<(u32, u32, f64)> = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    for entry in dir.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The fields after the command (which may hold spaces and parentheses).
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        // state ppid ... utime(14) stime(15) cutime(16) cstime(17), counted from 3.
        let num = |i: usize| {
            f.get(i - 3)
                .and_then(|x| x.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let ppid = num(4) as u32;
        procs.push((pid, ppid, (num(14) + num(15) + num(16) + num(17)) / hz));
    }
    let mut tree = vec![me];
    let mut total = 0.0;
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        for &(pid, ppid, cpu) in &procs {
            if ppid == parent && pid != me {
                tree.push(pid);
                total += cpu;
            }
        }
        i += 1;
    }
    total
}

// ---------------------------------------------------------------------------------------------
// Added for W3 and W6: options, statistics, CPU placement, raw process and futex helpers.

/// The options every W3/W6-style bench takes (as W2's): `--batches N`, `--batch-size N`,
/// `--no-python`, `--no-write`, `--md PATH`, `--only TEXT` (repeatable), and the same as
/// `<PREFIX>_BATCHES`, `<PREFIX>_BATCH_SIZE`, `<PREFIX>_NO_WRITE` in the environment.
pub(crate) struct BenchOptions {
    pub(crate) batches: usize,
    pub(crate) batch_size: usize,
    pub(crate) python: bool,
    pub(crate) write: bool,
    pub(crate) only: Vec<String>,
    pub(crate) md: std::path::PathBuf,
    /// The command line to quote in the report.
    pub(crate) command: String,
}

impl BenchOptions {
    pub(crate) fn parse(
        bench: &str,
        prefix: &str,
        batches: usize,
        batch_size: usize,
    ) -> Result<BenchOptions, String> {
        let var = |s: &str| format!("{prefix}_{s}");
        let mut o = BenchOptions {
            batches: env_usize(&var("BATCHES"))?.unwrap_or(batches),
            batch_size: env_usize(&var("BATCH_SIZE"))?.unwrap_or(batch_size),
            python: true,
            write: std::env::var_os(var("NO_WRITE")).is_none_or(|v| v.is_empty() || v == "0"),
            only: Vec::new(),
            md: Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md"),
            command: String::new(),
        };
        let mut shown = Vec::new();
        for v in ["BATCHES", "BATCH_SIZE", "NO_WRITE"] {
            if let Ok(x) = std::env::var(var(v)) {
                shown.push(format!("{}={x}", var(v)));
            }
        }
        shown.push(format!("cargo bench --bench {bench}"));
        let mut ours = Vec::new();
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = |name: &str| -> Result<String, String> {
                let v = args.next().ok_or(format!("{name} needs a value"))?;
                ours.push(if v.contains(' ') {
                    format!("{name} {v:?}")
                } else {
                    format!("{name} {v}")
                });
                Ok(v)
            };
            let number = |v: String| {
                v.parse::<usize>()
                    .map_err(|_| format!("{v:?} is not a number"))
            };
            match arg.as_str() {
                "--batches" => o.batches = number(value("--batches")?)?,
                "--batch-size" => o.batch_size = number(value("--batch-size")?)?,
                "--md" => o.md = value("--md")?.into(),
                "--only" => o.only.push(value("--only")?),
                "--no-python" => {
                    o.python = false;
                    ours.push(arg);
                }
                "--no-write" => {
                    o.write = false;
                    ours.push(arg);
                }
                _ => {}
            }
        }
        if o.batches == 0 || o.batch_size == 0 {
            return Err("--batches and --batch-size must be at least 1".into());
        }
        if !ours.is_empty() {
            shown.push("--".into());
            shown.extend(ours);
        }
        o.command = shown.join(" ");
        Ok(o)
    }

    /// Whether a row named `name` is kept by the `--only` filters.
    pub(crate) fn keeps(&self, name: &str) -> bool {
        self.only.iter().all(|s| name.contains(s.as_str()))
    }
}

/// Median, p10 and p90 of some samples.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stats {
    pub(crate) median: f64,
    pub(crate) p10: f64,
    pub(crate) p90: f64,
    pub(crate) n: usize,
}

impl Stats {
    pub(crate) fn of(samples: &[f64]) -> Option<Stats> {
        if samples.is_empty() {
            return None;
        }
        let mut v = samples.to_vec();
        v.sort_by(f64::total_cmp);
        Some(Stats {
            median: percentile(&v, 50.0),
            p10: percentile(&v, 10.0),
            p90: percentile(&v, 90.0),
            n: v.len(),
        })
    }

    /// Reads `{"median": .., "p10": .., "p90": .., "n": ..}` with the given key suffix
    /// (e.g. `_mps` for `median_mps`).
    pub(crate) fn from_json(v: &serde_json::Value, suffix: &str) -> Option<Stats> {
        let num = |k: &str| v[format!("{k}{suffix}")].as_f64();
        Some(Stats {
            median: num("median")?,
            p10: num("p10")?,
            p90: num("p90")?,
            n: v["n"].as_u64()? as usize,
        })
    }
}

/// Writes all of `buf` to `fd`.
pub(crate) fn write_all(fd: std::os::fd::RawFd, buf: &[u8]) -> Result<(), String> {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: writes from a valid buffer of the given length.
        let r = unsafe { libc::write(fd, buf[done..].as_ptr().cast(), buf.len() - done) };
        if r <= 0 {
            return Err(os_err("write"));
        }
        done += r as usize;
    }
    Ok(())
}

/// Reads exactly `buf.len()` bytes from `fd`; false on end of file or an error.
pub(crate) fn read_all(fd: std::os::fd::RawFd, buf: &mut [u8]) -> bool {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: reads into a valid buffer of the given length.
        let r = unsafe { libc::read(fd, buf[done..].as_mut_ptr().cast(), buf.len() - done) };
        if r <= 0 {
            return false;
        }
        done += r as usize;
    }
    true
}

/// The error of the last system call, named.
pub(crate) fn os_err(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

/// A set of one CPU (or of all CPUs), for `sched_setaffinity`.
pub(crate) fn cpu_set(cpu: Option<usize>) -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is plain data; the CPU_* helpers only touch the set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        match cpu {
            Some(c) => libc::CPU_SET(c, &mut set),
            None => {
                for c in 0..libc::CPU_SETSIZE as usize {
                    libc::CPU_SET(c, &mut set);
                }
            }
        }
        set
    }
}

/// Pins process (or thread) `pid` (0: the calling thread) to `cpu`, or unpins it with `None`.
pub(crate) fn pin(pid: libc::pid_t, cpu: Option<usize>) -> Result<(), String> {
    let set = cpu_set(cpu);
    // SAFETY: a valid set of the given size.
    if unsafe { libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set) } != 0 {
        return Err(os_err("sched_setaffinity"));
    }
    Ok(())
}

/// Waits for our child `pid`; an error unless it exited with status 0.
pub(crate) fn wait_child(pid: libc::pid_t) -> Result<(), String> {
    let mut status = 0;
    loop {
        // SAFETY: waitpid on our own child with a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return Err(os_err("waitpid"));
        }
    }
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(())
    } else {
        Err(format!("child {pid} ended with wait status {status:#x}"))
    }
}

/// `fork`s a child that runs `f` and `_exit`s with its result (0 or 1).
///
/// # Safety
/// The caller must be single-threaded (or `f` must be async-signal-safe).
pub(crate) unsafe fn fork_child(f: impl FnOnce() -> bool) -> Result<libc::pid_t, String> {
    // SAFETY: the caller guarantees that the child may run `f`.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(os_err("fork"));
    }
    if pid == 0 {
        let ok = f();
        // SAFETY: ends the child without running the parent's exit handlers.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    Ok(pid)
}

/// Anonymous memory shared with children forked after it is made (and never unmapped).
pub(crate) fn shared_pages(len: usize) -> Result<*mut u8, String> {
    // SAFETY: a fresh anonymous mapping; nothing else is touched.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(os_err("mmap"));
    }
    Ok(p.cast())
}

/// `FUTEX_WAIT` (shared, not private: the word is in memory shared between processes) while
/// `*word == expected`.
pub(crate) fn futex_wait(word: &std::sync::atomic::AtomicU32, expected: u32) {
    // SAFETY: the futex system call on a valid, aligned word, without a timeout.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            std::ptr::null::<libc::timespec>(),
        )
    };
}

/// `FUTEX_WAKE` of up to `n` sleepers on `word` (`u32::MAX`: all; the kernel takes an `int`,
/// and a negative count would wake only one).
pub(crate) fn futex_wake(word: &std::sync::atomic::AtomicU32, n: u32) {
    let n = n.min(i32::MAX as u32) as libc::c_int;
    // SAFETY: the futex system call on a valid, aligned word.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, n) };
}

/// `CLOCK_MONOTONIC` in nanoseconds: the same clock in every process of the machine.
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the struct we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The head of a bench's report block: its `title`, then the lines every report has: the
/// command, the machine, CPython's (`cpython`: what follows "CPython: ", when its rows ran),
/// the date, and other programs' CPU use during the Rust rows (`others`, see
/// [`disturbance_line`]).
pub(crate) fn report_head(
    title: &str,
    command: &str,
    cpython: Option<String>,
    others: f64,
) -> String {
    let date = command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_else(|| "?".into());
    let mut block = format!("## {title}\n\n");
    block += &format!("- Command: `{command}`\n");
    block += &format!("- Machine: {}\n", machine());
    if let Some(c) = cpython {
        block += &format!("- CPython: {c}\n");
    }
    block += &format!("- Date: {date}\n");
    block += &disturbance_line(others);
    block
}

/// The report line about other programs' CPU use, flagging a busy machine.
pub(crate) fn disturbance_line(others: f64) -> String {
    format!(
        "- Other programs' CPU use during the Rust rows: {:.0}% of one CPU{}\n",
        others * 100.0,
        if others > 0.1 {
            " — **the machine was busy: these numbers are disturbed; rerun on a quiet machine**"
        } else {
            ""
        }
    )
}

/// W7's and W9's CPU-bound task: `iters` splitmix64 steps from `seed` (a dependent chain: no
/// vectorising, no closed form).
pub fn burn(task: (u64, u64)) -> u64 {
    let (seed, iters) = task;
    let mut x = seed;
    for _ in 0..iters {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x = z ^ (z >> 31);
    }
    x
}

/// The number of [`burn`] steps that take `task` here (best of 5 measurements).
pub(crate) fn calibrate(task: std::time::Duration) -> u64 {
    let probe = 1u64 << 20;
    let best = (0..5)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(burn(std::hint::black_box((1, probe))));
            t.elapsed()
        })
        .min()
        .unwrap_or(std::time::Duration::from_millis(1));
    (probe as f64 * task.as_secs_f64() / best.as_secs_f64().max(1e-9)) as u64
}

// ---------------------------------------------------------------------------------------------
// Added for W10 and W11: memory and descriptors of a process, and running a CPython script.

/// What `/proc/PID/smaps_rollup` says about a process, in KiB: resident, proportional (shared
/// pages divided among their sharers) and unique (`Private_Clean + Private_Dirty`) set sizes.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ProcMem {
    pub(crate) rss: f64,
    pub(crate) pss: f64,
    pub(crate) uss: f64,
}

/// Reads `/proc/<pid>/smaps_rollup` (`pid` is a number or `self`).
pub(crate) fn proc_mem(pid: &str) -> Result<ProcMem, String> {
    let path = format!("/proc/{pid}/smaps_rollup");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("reading {path}: {e}"))?;
    let mut m = ProcMem::default();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let (Some(key), Some(kib)) = (it.next(), it.next().and_then(|v| v.parse::<f64>().ok()))
        else {
            continue;
        };
        match key {
            "Rss:" => m.rss = kib,
            "Pss:" => m.pss = kib,
            "Private_Clean:" | "Private_Dirty:" => m.uss += kib,
            _ => {}
        }
    }
    Ok(m)
}

/// The number of entries of a directory such as `/proc/self/fd` or `/proc/self/task` (0 when
/// it cannot be read).
pub(crate) fn count_entries(dir: &str) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

/// Runs `bench/python/<script>` with `args` under `python3` and reads the one JSON object it
/// prints on stdout.
pub(crate) fn python_json(script: &str, args: &[String]) -> Result<serde_json::Value, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("bench/python")
        .join(script);
    let out = Command::new("python3")
        .arg(&path)
        .args(args)
        .output()
        .map_err(|e| format!("python3 did not run: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed ({}): {}",
            path.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("the output of {script} is not JSON: {e}"))
}
