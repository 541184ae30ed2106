//! Benchmark W1: start + join of a process that runs an empty function (Linux only; elsewhere
//! the binary says so and exits).
//!
//! One run measures, side by side and interleaved in rounds of one sample a row (so that the
//! machine's changes of state, which last milliseconds here, hit every row alike):
//!
//! - `multiprocess` spawn (`Process::new(empty, ())`, the default context) and fork
//!   (`get_context(multiprocess::StartMethod::Fork)?.process(empty, ())` and `.process_closure(|| ())`);
//! - the OS floors: raw `fork` + `_exit(0)` + `waitpid`, and `posix_spawn` + `waitpid` of this
//!   very binary in a mode that exits right after `multiprocess::init()` (the floor for spawn),
//!   plus `posix_spawn` of `/bin/true` for reference;
//! - `procspawn` (empty closure) and `crossmist` (empty `#[crossmist::func]`), measured by
//!   `bench/peers`, a program of their own that this bench builds (`cargo build --release` in
//!   that directory) and asks for one sample at a time (so their dependencies stay out of the
//!   crate's builds);
//! - CPython's `multiprocessing` fork / spawn / forkserver, from `bench/python/w1_process_start.py`.
//!
//! Each row is warmed up, then sampled; the table gives median, p10 and p90 in microseconds and
//! the ratio of each median to the `multiprocess` spawn median and to the `posix_spawn`
//! same-binary median. The table, the command, the machine and the date are printed as Markdown
//! and written into `BENCHMARKS.md` between the `w1:begin` / `w1:end` markers.
//!
//! ```text
//! cargo bench --bench w1_process_start                      # default: 200 samples a row
//! cargo bench --bench w1_process_start -- --samples 50      # quicker (or W1_SAMPLES=50)
//! cargo bench --bench w1_process_start -- --no-python --no-write
//! ```
//!
//! Options (after `--`; unknown ones such as cargo's `--bench` are ignored): `--samples N`
//! (`W1_SAMPLES`), `--warmup N` (`W1_WARMUP`), `--rounds N` (default: as many as samples, one
//! sample a row in each), `--py-iterations N` (`W1_PY_ITERATIONS`; default:
//! the script's own), `--no-python`, `--no-write` (`W1_NO_WRITE=1`), `--md PATH` (default
//! `BENCHMARKS.md` in the crate root), `--only TEXT` (repeatable: keep only the rows whose label
//! contains TEXT, e.g. to profile one row under `perf`), `--samples-out PATH` (every Rust row's
//! samples in the order taken, one `row<TAB>round<TAB>µs` line each: to see how the machine's
//! state moved during the run).
//!
//! The report also says how much CPU other programs took while the Rust rows ran (from
//! `/proc/stat` minus this process's and its children's rusage) and flags a run above 10% of a
//! CPU as disturbed. A row whose library fails (crossmist 1.1.2 panics on current toolchains)
//! is reported as failed; the others still run.

fn main() {
    // multiprocess's children are this binary again: they become themselves here.
    multiprocess::init();
    #[cfg(target_os = "linux")]
    w1::main();
    #[cfg(not(target_os = "linux"))]
    eprintln!(
        "w1: this benchmark runs on Linux only (its floors and comparison crates are Linux's)"
    );
}

#[cfg(target_os = "linux")]
mod common;

#[cfg(target_os = "linux")]
mod w1 {
    use super::common::{CpuUse, env_usize, percentile, ratio, report_head, write_md};
    use std::cell::RefCell;
    use std::ffi::{CString, OsStr};
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::ffi::OsStrExt;
    use std::path::{Path, PathBuf};
    use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
    use std::rc::Rc;
    use std::time::{Duration, Instant};

    /// Set in the environment of the `posix_spawn` same-binary child: exit right after `init()`.
    const EXIT_AT_ONCE: &str = "W1_EXIT_AT_ONCE";

    /// The empty target of every row.
    fn empty() {}

    /// The benchmark, after `multiprocess::init()` has let its own children through.
    pub(crate) fn main() {
        if std::env::var_os(EXIT_AT_ONCE).is_some() {
            // The floor for spawn: the same binary, started and brought up to just past init().
            std::process::exit(0);
        }
        if let Err(e) = run() {
            eprintln!("w1: {e}");
            std::process::exit(1);
        }
    }

    // -------------------------------------------------------------------------------------------
    // Options

    struct Options {
        samples: usize,
        warmup: usize,
        rounds: usize,
        py_iterations: Option<usize>,
        python: bool,
        write: bool,
        /// Only the rows whose label contains one of these (for profiling one row).
        only: Vec<String>,
        /// Where to write every sample in the order taken (`--samples-out`).
        samples_out: Option<PathBuf>,
        md: PathBuf,
        /// The command line as given, for the report.
        command: String,
    }

    fn options() -> Result<Options, String> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut o = Options {
            samples: env_usize("W1_SAMPLES")?.unwrap_or(200),
            warmup: env_usize("W1_WARMUP")?.unwrap_or(10),
            rounds: 0, // every sample its own round, unless `--rounds`
            py_iterations: env_usize("W1_PY_ITERATIONS")?,
            python: true,
            write: std::env::var_os("W1_NO_WRITE").is_none_or(|v| v.is_empty() || v == "0"),
            md: root.join("BENCHMARKS.md"),
            only: Vec::new(),
            samples_out: None,
            command: String::new(),
        };
        let mut shown = Vec::new();
        for var in ["W1_SAMPLES", "W1_WARMUP", "W1_PY_ITERATIONS", "W1_NO_WRITE"] {
            if let Ok(v) = std::env::var(var) {
                shown.push(format!("{var}={v}"));
            }
        }
        shown.push("cargo bench --bench w1_process_start".into());
        let mut ours = Vec::new();
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = |name: &str| -> Result<String, String> {
                let v = args.next().ok_or(format!("{name} needs a value"))?;
                ours.push(format!("{name} {v}"));
                Ok(v)
            };
            let number = |v: String| {
                v.parse::<usize>()
                    .map_err(|_| format!("{v:?} is not a number"))
            };
            match arg.as_str() {
                "--samples" => o.samples = number(value("--samples")?)?,
                "--rounds" => o.rounds = number(value("--rounds")?)?,
                "--warmup" => o.warmup = number(value("--warmup")?)?,
                "--py-iterations" => o.py_iterations = Some(number(value("--py-iterations")?)?),
                "--md" => o.md = PathBuf::from(value("--md")?),
                "--only" => o.only.push(value("--only")?),
                "--samples-out" => o.samples_out = Some(PathBuf::from(value("--samples-out")?)),
                "--no-python" => {
                    o.python = false;
                    ours.push(arg);
                }
                "--no-write" => {
                    o.write = false;
                    ours.push(arg);
                }
                _ => {} // cargo's `--bench`, libtest-style filters: not ours
            }
        }
        if o.samples == 0 {
            return Err("--samples must be at least 1".into());
        }
        if o.rounds == 0 {
            o.rounds = o.samples;
        }
        o.rounds = o.rounds.min(o.samples);
        if !ours.is_empty() {
            shown.push("--".into());
            shown.extend(ours);
        }
        o.command = shown.join(" ");
        Ok(o)
    }

    // -------------------------------------------------------------------------------------------
    // Rows

    /// One timed start + join; returns the elapsed time (checks happen outside the timed part).
    type Probe = Box<dyn FnMut() -> Result<Duration, String>>;

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Key {
        MpSpawn,
        MpFork,
        MpForkserver,
        RawFork,
        PosixSpawnSelf,
        CpythonFork,
        CpythonForkserver,
        Procspawn,
        Crossmist,
        Other,
    }

    struct Row {
        key: Key,
        label: String,
        probe: Option<Probe>,
        samples_us: Vec<f64>,
        /// Filled for rows measured elsewhere (CPython): median, p10, p90, n.
        external: Option<Stats>,
        error: Option<String>,
    }

    #[derive(Clone, Copy)]
    struct Stats {
        median: f64,
        p10: f64,
        p90: f64,
        n: usize,
    }

    impl Row {
        fn new(key: Key, label: impl Into<String>, probe: Probe) -> Row {
            Row {
                key,
                label: label.into(),
                probe: Some(probe),
                samples_us: Vec::new(),
                external: None,
                error: None,
            }
        }

        fn stats(&self) -> Option<Stats> {
            if let Some(s) = self.external {
                return Some(s);
            }
            if self.error.is_some() || self.samples_us.is_empty() {
                return None;
            }
            let mut v = self.samples_us.clone();
            v.sort_by(f64::total_cmp);
            Some(Stats {
                median: percentile(&v, 50.0),
                p10: percentile(&v, 10.0),
                p90: percentile(&v, 90.0),
                n: v.len(),
            })
        }

        /// Runs the probe `n` times, recording samples unless `warm`.
        fn sample(&mut self, n: usize, warm: bool) {
            let Some(probe) = self.probe.as_mut() else {
                return;
            };
            if self.error.is_some() {
                return;
            }
            for _ in 0..n {
                match probe() {
                    Ok(d) if !warm => self.samples_us.push(d.as_secs_f64() * 1e6),
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("w1: {}: {e}", self.label);
                        self.error = Some(e);
                        return;
                    }
                }
            }
        }
    }

    fn exit_status_ok(status: libc::c_int) -> Result<(), String> {
        if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
            Ok(())
        } else {
            Err(format!("child ended with wait status {status:#x}"))
        }
    }

    fn wait_pid(pid: libc::pid_t) -> Result<libc::c_int, String> {
        let mut status = 0;
        loop {
            // SAFETY: waitpid on our own child with a valid out-pointer.
            let r = unsafe { libc::waitpid(pid, &mut status, 0) };
            if r == pid {
                return Ok(status);
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(format!("waitpid: {e}"));
            }
        }
    }

    fn mp_spawn() -> Probe {
        Box::new(|| {
            let t = Instant::now();
            let mut p = multiprocess::Process::new(empty, ());
            p.start().map_err(|e| e.to_string())?;
            p.join().map_err(|e| e.to_string())?;
            let d = t.elapsed();
            match p.exitcode() {
                Ok(Some(0)) => Ok(d),
                other => Err(format!("exitcode {other:?}")),
            }
        })
    }

    /// A served child (the server is started before the samples, by the warm-up).
    fn mp_forkserver() -> Result<Probe, String> {
        let ctx = multiprocess::get_context(multiprocess::StartMethod::Forkserver)
            .map_err(|e| e.to_string())?;
        Ok(Box::new(move || {
            let t = Instant::now();
            let mut p = ctx.process(empty, ());
            p.start().map_err(|e| e.to_string())?;
            p.join().map_err(|e| e.to_string())?;
            let d = t.elapsed();
            match p.exitcode() {
                Ok(Some(0)) => Ok(d),
                other => Err(format!("exitcode {other:?}")),
            }
        }))
    }

    fn mp_fork(closure: bool) -> Result<Probe, String> {
        let ctx = multiprocess::get_context(multiprocess::StartMethod::Fork)
            .map_err(|e| e.to_string())?;
        Ok(Box::new(move || {
            let t = Instant::now();
            let mut p = if closure {
                ctx.process_closure(|| ())
            } else {
                ctx.process(empty, ())
            };
            p.start().map_err(|e| e.to_string())?;
            p.join().map_err(|e| e.to_string())?;
            let d = t.elapsed();
            match p.exitcode() {
                Ok(Some(0)) => Ok(d),
                other => Err(format!("exitcode {other:?}")),
            }
        }))
    }

    fn raw_fork() -> Probe {
        Box::new(|| {
            let t = Instant::now();
            // SAFETY: the child only calls _exit, which is async-signal-safe.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                // SAFETY: _exit has no preconditions and never returns.
                unsafe { libc::_exit(0) };
            }
            if pid < 0 {
                return Err(format!("fork: {}", std::io::Error::last_os_error()));
            }
            let status = wait_pid(pid)?;
            let d = t.elapsed();
            exit_status_ok(status).map(|()| d)
        })
    }

    /// `posix_spawn(path, argv, envp)` + `waitpid`, with everything prepared once, outside the
    /// timed part.
    fn posix_spawn(path: &OsStr, argv0: &OsStr, extra_env: Option<&str>) -> Result<Probe, String> {
        let cstr = |s: &[u8]| CString::new(s).map_err(|e| e.to_string());
        let path = cstr(path.as_bytes())?;
        let argv = [cstr(argv0.as_bytes())?];
        let mut env = Vec::new();
        for (k, v) in std::env::vars_os() {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            env.push(cstr(&kv)?);
        }
        if let Some(kv) = extra_env {
            env.push(cstr(kv.as_bytes())?);
        }
        let argv_ptrs: Vec<*mut libc::c_char> = argv
            .iter()
            .map(|s| s.as_ptr().cast_mut())
            .chain([std::ptr::null_mut()])
            .collect();
        let env_ptrs: Vec<*mut libc::c_char> = env
            .iter()
            .map(|s| s.as_ptr().cast_mut())
            .chain([std::ptr::null_mut()])
            .collect();
        Ok(Box::new(move || {
            // (`argv` and `env` own the strings the pointer arrays point into.)
            let _keep = (&argv, &env);
            let mut pid: libc::pid_t = 0;
            let t = Instant::now();
            // SAFETY: valid NUL-terminated path, NULL-terminated argv/envp arrays of C strings that
            // outlive the call; no file actions or attributes.
            let r = unsafe {
                libc::posix_spawn(
                    &mut pid,
                    path.as_ptr(),
                    std::ptr::null(),
                    std::ptr::null(),
                    argv_ptrs.as_ptr(),
                    env_ptrs.as_ptr(),
                )
            };
            if r != 0 {
                return Err(format!(
                    "posix_spawn: {}",
                    std::io::Error::from_raw_os_error(r)
                ));
            }
            let status = wait_pid(pid)?;
            let d = t.elapsed();
            exit_status_ok(status).map(|()| d)
        }))
    }

    /// The program measuring the other crates' rows (`bench/peers`), running beside this bench
    /// for the whole run.
    struct Peers {
        child: Child,
        ask: ChildStdin,
        answers: BufReader<ChildStdout>,
    }

    impl Peers {
        fn peers_dir() -> PathBuf {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/peers")
        }

        /// Builds `bench/peers` (release, quietly) and starts it.
        fn start() -> Result<Peers, String> {
            let dir = Self::peers_dir();
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            eprintln!("w1: building bench/peers (procspawn, crossmist)");
            let built = Command::new(cargo)
                .args(["build", "--release", "--quiet", "--manifest-path"])
                .arg(dir.join("Cargo.toml"))
                .env_remove("CARGO_TARGET_DIR")
                .status()
                .map_err(|e| format!("running cargo for bench/peers: {e}"))?;
            if !built.success() {
                return Err(format!("bench/peers did not build ({built})"));
            }
            let mut child = Command::new(dir.join("target/release/w1-peers"))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .map_err(|e| format!("starting bench/peers: {e}"))?;
            let (Some(ask), Some(answers)) = (child.stdin.take(), child.stdout.take()) else {
                return Err("bench/peers without its pipes".into());
            };
            Ok(Peers {
                child,
                ask,
                answers: BufReader::new(answers),
            })
        }

        /// One sample of `row`, taken by the program.
        fn sample(&mut self, row: &str) -> Result<Duration, String> {
            writeln!(self.ask, "{row}").map_err(|e| format!("asking bench/peers: {e}"))?;
            let mut line = String::new();
            match self.answers.read_line(&mut line) {
                Ok(0) => return Err("bench/peers ended".into()),
                Ok(_) => {}
                Err(e) => return Err(format!("reading bench/peers: {e}")),
            }
            let line = line.trim();
            if let Some(e) = line.strip_prefix("error: ") {
                return Err(e.to_owned());
            }
            line.parse::<f64>()
                .map(|us| Duration::from_secs_f64(us / 1e6))
                .map_err(|_| format!("bench/peers answered {line:?}"))
        }

        /// Ends the program and reaps it, so that its CPU time (and its children's) counts as
        /// this bench's, not as another program's.
        fn end(self) {
            let Peers { mut child, ask, .. } = self;
            drop(ask);
            let _ = child.wait();
        }

        /// The version of `name` that `bench/peers` is locked to.
        fn version(name: &str) -> String {
            locked_version(&Self::peers_dir().join("Cargo.lock"), name)
        }
    }

    /// A row sampled by `bench/peers` (or failing with why it is not running).
    fn peers_row(peers: &Rc<RefCell<Result<Peers, String>>>, row: &'static str) -> Probe {
        let peers = Rc::clone(peers);
        Box::new(move || match &mut *peers.borrow_mut() {
            Ok(p) => p.sample(row),
            Err(e) => Err(e.clone()),
        })
    }

    // -------------------------------------------------------------------------------------------
    // CPython

    struct Python {
        version: String,
        rows: Vec<Row>,
        note: Option<String>,
    }

    fn run_python(o: &Options) -> Python {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/python/w1_process_start.py");
        let mut cmd = Command::new("python3");
        cmd.arg(&script);
        if let Some(n) = o.py_iterations {
            cmd.args(["--iterations", &n.to_string()]);
        }
        let failed = |note: String| Python {
            version: "?".into(),
            rows: Vec::new(),
            note: Some(note),
        };
        let out = match cmd.output() {
            Ok(out) => out,
            Err(e) => return failed(format!("python3 could not be run: {e}")),
        };
        if !out.status.success() {
            return failed(format!(
                "{} failed ({}): {}",
                script.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let json: serde_json::Value = match serde_json::from_slice(&out.stdout) {
            Ok(v) => v,
            Err(e) => return failed(format!("unreadable output of the CPython script: {e}")),
        };
        let version = json["python"].as_str().unwrap_or("?").to_owned();
        let mut rows = Vec::new();
        for method in ["fork", "spawn", "forkserver"] {
            let r = &json["results"][method];
            let num = |k: &str| r[k].as_f64();
            let (Some(median), Some(p10), Some(p90), Some(n)) = (
                num("median_us"),
                num("p10_us"),
                num("p90_us"),
                r["n"].as_u64(),
            ) else {
                continue;
            };
            rows.push(Row {
                key: match method {
                    "fork" => Key::CpythonFork,
                    "forkserver" => Key::CpythonForkserver,
                    _ => Key::Other,
                },
                label: format!("CPython {version} `multiprocessing` {method}"),
                probe: None,
                samples_us: Vec::new(),
                external: Some(Stats {
                    median,
                    p10,
                    p90,
                    n: n as usize,
                }),
                error: None,
            });
        }
        Python {
            version,
            rows,
            note: None,
        }
    }

    // -------------------------------------------------------------------------------------------
    // How quiet the machine was

    // -------------------------------------------------------------------------------------------
    // Report

    /// The version of a dependency as resolved in Cargo.lock.
    fn locked_version(lockfile: &Path, name: &str) -> String {
        let lock = std::fs::read_to_string(lockfile).unwrap_or_default();
        let needle = format!("name = \"{name}\"\nversion = \"");
        lock.find(&needle)
            .and_then(|i| {
                let rest = &lock[i + needle.len()..];
                rest.find('"').map(|j| rest[..j].to_owned())
            })
            .unwrap_or_else(|| "?".into())
    }

    fn fmt_us(v: f64) -> String {
        if v >= 10_000.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.1}")
        }
    }

    fn median_of(rows: &[Row], key: Key) -> Option<f64> {
        rows.iter()
            .find(|r| r.key == key)
            .and_then(Row::stats)
            .map(|s| s.median)
    }

    fn table(rows: &[Row]) -> String {
        let mp = median_of(rows, Key::MpSpawn);
        let floor = median_of(rows, Key::PosixSpawnSelf);
        let mut s = String::from(
            "| row | median µs | p10 µs | p90 µs | n | ÷ multiprocess spawn | ÷ posix_spawn same binary |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
        );
        for r in rows {
            match (r.stats(), &r.error) {
                (Some(st), _) => {
                    s += &format!(
                        "| {} | {} | {} | {} | {} | {} | {} |\n",
                        r.label,
                        fmt_us(st.median),
                        fmt_us(st.p10),
                        fmt_us(st.p90),
                        st.n,
                        ratio(st.median, mp),
                        ratio(st.median, floor),
                    )
                }
                (None, Some(e)) => s += &format!("| {} | failed: {e} | | | | | |\n", r.label),
                (None, None) => s += &format!("| {} | no samples | | | | | |\n", r.label),
            }
        }
        s
    }

    fn targets(rows: &[Row]) -> String {
        let m = |k| median_of(rows, k);
        let verdict = |ok: bool| if ok { "**met**" } else { "**not met**" };
        let mut s =
            String::from("| target (from the issue) | measured | verdict |\n|---|---|---|\n");
        if let (Some(mp), Some(floor)) = (m(Key::MpSpawn), m(Key::PosixSpawnSelf)) {
            let r = mp / floor;
            s += &format!(
                "| spawn within 1.5× of posix_spawn of the same binary + wait | {} / {} µs = {r:.2}× | {} |\n",
                fmt_us(mp),
                fmt_us(floor),
                verdict(r <= 1.5)
            );
        }
        for (key, name) in [(Key::Procspawn, "procspawn"), (Key::Crossmist, "crossmist")] {
            if let (Some(mp), Some(other)) = (m(Key::MpSpawn), m(key)) {
                s += &format!(
                    "| spawn faster than {name} | {} vs {} µs ({:.2}× of {name}) | {} |\n",
                    fmt_us(mp),
                    fmt_us(other),
                    mp / other,
                    verdict(mp < other)
                );
            }
        }
        if let (Some(f), Some(raw)) = (m(Key::MpFork), m(Key::RawFork)) {
            let r = f / raw;
            s += &format!(
                "| fork within 1.5× of raw fork + _exit + waitpid | {} / {} µs = {r:.2}× | {} |\n",
                fmt_us(f),
                fmt_us(raw),
                verdict(r <= 1.5)
            );
        }
        if let (Some(f), Some(py)) = (m(Key::MpForkserver), m(Key::CpythonForkserver)) {
            // No target in the issue: reported for comparison.
            s += &format!(
                "| (no target) forkserver against CPython forkserver | {} / {} µs = {:.1}× faster | — |\n",
                fmt_us(py),
                fmt_us(f),
                py / f
            );
        }
        if let (Some(f), Some(py)) = (m(Key::MpFork), m(Key::CpythonFork)) {
            let r = py / f;
            s += &format!(
                "| fork ≥ 10× faster than CPython fork | {} / {} µs = {r:.1}× faster | {} |\n",
                fmt_us(py),
                fmt_us(f),
                verdict(r >= 10.0)
            );
        }
        s
    }

    /// Writes every Rust row's samples in the order taken: `label<TAB>round<TAB>µs` lines.
    fn write_samples(path: &Path, rows: &[Row], o: &Options) -> Result<(), String> {
        let mut out = String::new();
        for row in rows {
            let mut taken = 0;
            for round in 0..o.rounds {
                let per = o.samples / o.rounds + usize::from(round < o.samples % o.rounds);
                for us in row.samples_us.iter().skip(taken).take(per) {
                    out += &format!("{}\t{round}\t{us:.1}\n", row.label);
                }
                taken += per;
            }
        }
        std::fs::write(path, out).map_err(|e| format!("writing {}: {e}", path.display()))
    }

    const BEGIN: &str = "<!-- w1:begin -->";
    const END: &str = "<!-- w1:end -->";

    // -------------------------------------------------------------------------------------------

    fn run() -> Result<(), String> {
        let o = options()?;
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let argv0 = std::env::args_os()
            .next()
            .unwrap_or_else(|| exe.clone().into_os_string());
        let procspawn_v = Peers::version("procspawn");
        let crossmist_v = Peers::version("crossmist");
        // Started below if one of its rows is kept.
        let peers = Rc::new(RefCell::new(Err("bench/peers not started".into())));

        let mut rows = vec![
            Row::new(
                Key::PosixSpawnSelf,
                "OS floor: `posix_spawn` this binary (exits after `init()`) + `waitpid`",
                posix_spawn(exe.as_os_str(), &argv0, Some(&format!("{EXIT_AT_ONCE}=1")))?,
            ),
            Row::new(
                Key::Other,
                "OS reference: `posix_spawn` `/bin/true` + `waitpid`",
                posix_spawn(OsStr::new("/bin/true"), OsStr::new("true"), None)?,
            ),
            Row::new(
                Key::RawFork,
                "OS floor: `fork` + `_exit(0)` + `waitpid`",
                raw_fork(),
            ),
            Row::new(
                Key::MpSpawn,
                "multiprocess spawn: `Process::new(empty, ())` + start + join",
                mp_spawn(),
            ),
            Row::new(
                Key::MpFork,
                "multiprocess fork: `ctx.process(empty, ())` + start + join",
                mp_fork(false)?,
            ),
            Row::new(
                Key::Other,
                "multiprocess fork: `ctx.process_closure(\\|\\| ())` + start + join",
                mp_fork(true)?,
            ),
            Row::new(
                Key::MpForkserver,
                "multiprocess forkserver: `ctx.process(empty, ())` + start + join",
                mp_forkserver()?,
            ),
            Row::new(
                Key::Procspawn,
                format!("procspawn {procspawn_v}: `spawn((), \\|()\\| ())` + join"),
                peers_row(&peers, "procspawn"),
            ),
            Row::new(
                Key::Crossmist,
                format!("crossmist {crossmist_v}: empty `#[func]` `.spawn()` + join"),
                peers_row(&peers, "crossmist"),
            ),
        ];

        if !o.only.is_empty() {
            rows.retain(|r| o.only.iter().any(|s| r.label.contains(s.as_str())));
        }
        if rows
            .iter()
            .any(|r| matches!(r.key, Key::Procspawn | Key::Crossmist))
        {
            *peers.borrow_mut() = Peers::start();
        }
        eprintln!(
            "w1: {} rows × ({} warmup + {} samples in {} rounds)",
            rows.len(),
            o.warmup,
            o.samples,
            o.rounds
        );
        let cpu = CpuUse::now();
        let started = Instant::now();
        for r in rows.iter_mut() {
            r.sample(o.warmup, true);
        }
        // Rounds: every row gets a slice of its samples in each round (one sample, by default),
        // the order rotating, so that the machine's changes of state spread evenly over the
        // rows. Here a state lasts milliseconds (a slice of 20 samples a row was mostly in one:
        // the fork rows' medians moved 75 → 110 µs from one round to the next, and a run's
        // ratio of two rows depended on which of their slices fell in which state).
        let n = rows.len();
        for round in 0..o.rounds {
            let per = o.samples / o.rounds + usize::from(round < o.samples % o.rounds);
            for i in 0..n {
                rows[(i + round) % n].sample(per, false);
            }
        }
        if let Some(path) = &o.samples_out {
            write_samples(path, &rows, &o)?;
        }
        if let Ok(p) = peers.replace(Err("bench/peers ended".into())) {
            p.end();
        }
        // Measured over the Rust rows only: there every child is ours and reaped by us, so its CPU
        // time is in our rusage. (CPython's forkserver is reaped by init, so its work would count
        // as another program's.)
        let others = super::common::report_rust_rows("w1", started, &cpu);

        let mut notes = Vec::new();
        let mut python_version = None;
        if o.python {
            let t = Instant::now();
            let py = run_python(&o);
            eprintln!("w1: CPython rows took {:.1} s", t.elapsed().as_secs_f64());
            if let Some(note) = py.note {
                eprintln!("w1: {note}");
                notes.push(format!("CPython rows missing: {note}"));
            }
            python_version = Some(py.version);
            rows.extend(py.rows);
        }

        let cpython = python_version
            .as_ref()
            .map(|v| format!("{v} (`bench/python/w1_process_start.py`, run by the bench)"));
        let mut block = report_head(
            "W1: start + join of a process running an empty function",
            &o.command,
            cpython,
            others,
        );
        block += &format!(
            "- Rust rows: {} warmup + {} samples each, interleaved in {} rounds; CPython rows: the \
         script's own iterations (n column)\n\n",
            o.warmup, o.samples, o.rounds
        );
        block += &table(&rows);
        block += "\n";
        block += &targets(&rows);
        for note in &notes {
            block += &format!("\n{note}\n");
        }

        println!("{block}");
        if o.write {
            write_md(&o.md, BEGIN, END, &block)?;
            eprintln!("w1: wrote the table into {}", o.md.display());
        }
        Ok(())
    }
}
