//! Benchmark W4: a 64 MiB message there and back through a duplex connection between two
//! processes (Linux only; elsewhere the binary says so and exits).
//!
//! The parent sends 64 MiB; a child, living for the whole run, receives the whole message and
//! sends it back; the parent receives it. A sample is one batch of round trips (2 by default);
//! its value is (2 × 64 MiB) / (mean round-trip time), in GB/s (10^9 bytes per second). The
//! rows' batches are interleaved in rounds, after one warmup batch per row. The rows:
//!
//! - `multiprocess::pipe()` with `send_bytes` and `recv_bytes_into` into buffers allocated
//!   once (both sides), the efficient path;
//! - the same with `send_bytes` and `recv_bytes()` (a fresh `Vec` per message, both sides);
//! - the OS floor: a raw `socketpair(AF_UNIX, SOCK_STREAM)` with the 4 MiB `SO_SNDBUF` /
//!   `SO_RCVBUF` that `pipe()` asks for, `write`/`read` loops on buffers allocated once (no
//!   framing: both sides know the length);
//! - two allocating floors on the same socketpair: each side reads every message into a fresh
//!   `Vec::with_capacity(64 MiB)` (the least an allocating receive costs: the new pages'
//!   first-touch faults), and the same after `madvise(MADV_HUGEPAGE)` on the fresh buffer;
//! - CPython's `multiprocessing.Pipe()` (duplex, fork context) with `send_bytes` and
//!   `recv_bytes_into` into a `bytearray` allocated once, and with `recv_bytes()`; from
//!   `bench/python/w4_bulk.py`, run after the Rust rows.
//!
//! Children of the multiprocess rows are forked with `ctx.process_closure`; the floor's child
//! with `fork`. Both processes are left to the scheduler (unpinned). The received bytes are
//! checked (first, middle and last byte, which the parent changes every round trip). The
//! message is written in full before the run, so the sender reads real memory (not the kernel's
//! zero page, as an untouched `calloc` buffer would give it).
//!
//! ```text
//! cargo bench --bench w4_bulk                         # 20 batches × 2 round trips a row
//! cargo bench --bench w4_bulk -- --batches 5 --no-python --no-write
//! cargo bench --bench w4_bulk -- --only recv_bytes_into --md /tmp/b.md
//! ```
//!
//! Options: `--batches N` (`W4_BATCHES`), `--batch-size N` (round trips per batch,
//! `W4_BATCH_SIZE`), `--no-python`, `--no-write` (`W4_NO_WRITE=1`), `--md PATH`, `--only TEXT`
//! (repeatable, matched against the label). The report says how much CPU other programs used
//! while the Rust rows ran and flags more than 10% of a CPU as disturbed.

fn main() {
    multiprocess::init();
    #[cfg(target_os = "linux")]
    w4::main();
    #[cfg(not(target_os = "linux"))]
    eprintln!("w4: this benchmark runs on Linux only (its floors are Linux's)");
}

#[cfg(target_os = "linux")]
mod common;

#[cfg(target_os = "linux")]
mod w4 {
    use super::common::{
        BenchOptions, CpuUse, Stats, fork_child, os_err, ratio, read_all, report_head, wait_child,
        write_all, write_md,
    };
    use std::os::fd::RawFd;
    use std::path::Path;
    use std::process::Command;
    use std::time::{Duration, Instant};

    /// The message: 64 MiB.
    const SIZE: usize = 64 << 20;
    /// What `pipe()` asks for (src/sys/unix/mod.rs, `enlarge_buffers`).
    const SOCKET_BUFFER: libc::c_int = 4 << 20;

    pub(crate) fn main() {
        if let Err(e) = run() {
            eprintln!("w4: {e}");
            std::process::exit(1);
        }
    }

    type Batch = Box<dyn FnMut(usize) -> Result<Duration, String>>;
    type Finish = Box<dyn FnOnce() -> Result<(), String>>;

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Key {
        Into,
        Alloc,
        Floor,
        PyInto,
        PyAlloc,
        Other,
    }

    struct Row {
        key: Key,
        label: String,
        batch: Option<Batch>,
        finish: Option<Finish>,
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

        fn sample(&mut self, size: usize, warm: bool) {
            let (Some(batch), None) = (self.batch.as_mut(), &self.error) else {
                return;
            };
            match batch(size) {
                Ok(d) if !warm => self
                    .rates
                    .push((2 * SIZE * size) as f64 / d.as_secs_f64() / 1e9),
                Ok(_) => {}
                Err(e) => {
                    eprintln!("w4: {}: {e}", self.label);
                    self.error = Some(e);
                }
            }
        }

        fn finish(&mut self) {
            self.batch = None;
            if let Some(f) = self.finish.take()
                && let Err(e) = f()
            {
                eprintln!("w4: {}: {e}", self.label);
                self.error.get_or_insert(e);
            }
        }
    }

    /// Marks the message of round trip `i` (first, middle and last byte), so that an echo of a
    /// stale buffer is caught.
    fn stamp(buf: &mut [u8], i: usize) -> u8 {
        let m = (i % 251) as u8 + 1;
        buf[0] = m;
        buf[SIZE / 2] = m;
        buf[SIZE - 1] = m;
        m
    }

    /// The message the parent sends: 64 MiB written in full, so that every page is memory of
    /// its own (as CPython's `bytearray(SIZE)`, which is zeroed by `memset`). A `vec![0; SIZE]`
    /// comes from `calloc`, fresh untouched pages: the kernel would read all but the stamped
    /// pages from the one shared zero page, a 4 KiB source always in cache.
    ///
    /// Rows allocate it (and their receive buffers) in their first batch, the warm-up, after
    /// every row's child has been forked: a buffer allocated before a later row's `fork` is
    /// shared copy-on-write with that child, and the first time another process pins its pages
    /// (`process_vm_readv`) the kernel unshares them page by page, each with a TLB-flush
    /// interrupt to the owner's CPU: a one-off cost per page that a setup order would charge to
    /// whichever rows came first.
    fn message() -> Vec<u8> {
        vec![0x5a; SIZE]
    }

    fn check(buf: &[u8], len: usize, m: u8) -> Result<(), String> {
        if len != SIZE || buf[0] != m || buf[SIZE / 2] != m || buf[SIZE - 1] != m {
            return Err(format!("bad echo: {len} bytes, marks wrong or stale"));
        }
        Ok(())
    }

    // -------------------------------------------------------------------------------------------
    // multiprocess rows

    fn mp_row(reuse: bool) -> Result<(Batch, Finish), String> {
        let e = |e: multiprocess::Error| e.to_string();
        let ctx = multiprocess::get_context(multiprocess::StartMethod::Fork).map_err(e)?;
        let (ours, theirs) = multiprocess::pipe().map_err(e)?;
        // A 1-byte message stops the child.
        let mut p = if reuse {
            ctx.process_closure(move || {
                let mut buf = vec![0u8; SIZE];
                while let Ok(n) = theirs.recv_bytes_into(&mut buf, 0) {
                    if n != SIZE || theirs.send_bytes(&buf[..n]).is_err() {
                        break;
                    }
                }
            })
        } else {
            ctx.process_closure(move || {
                while let Ok(m) = theirs.recv_bytes() {
                    if m.len() != SIZE || theirs.send_bytes(&m).is_err() {
                        break;
                    }
                }
            })
        };
        p.start().map_err(e)?;
        let ours = std::rc::Rc::new(ours);
        let ours2 = ours.clone();
        let mut out = Vec::new();
        let mut back = Vec::new();
        let mut round = 0usize;
        let batch: Batch = Box::new(move |n| {
            if out.is_empty() {
                out = message();
                back = if reuse { vec![0u8; SIZE] } else { Vec::new() };
            }
            let t = Instant::now();
            for _ in 0..n {
                round += 1;
                let m = stamp(&mut out, round);
                ours.send_bytes(&out).map_err(e)?;
                if reuse {
                    let len = ours.recv_bytes_into(&mut back, 0).map_err(e)?;
                    check(&back, len, m)?;
                } else {
                    let got = ours.recv_bytes().map_err(e)?;
                    check(&got, got.len(), m)?;
                }
            }
            Ok(t.elapsed())
        });
        let finish: Finish = Box::new(move || {
            ours2.send_bytes(&[0]).map_err(e)?;
            p.join().map_err(e)?;
            match p.exitcode().map_err(e)? {
                Some(0) => Ok(()),
                other => Err(format!("echo child exitcode {other:?}")),
            }
        });
        Ok((batch, finish))
    }

    // -------------------------------------------------------------------------------------------
    // The OS floor

    /// How the floor's two sides receive.
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Recv {
        /// Into a buffer allocated once.
        Reused,
        /// Into a fresh `Vec::with_capacity(64 MiB)` per message (what an allocating receive
        /// at least costs: the new pages' first-touch faults).
        Fresh,
        /// The same, after `madvise(MADV_HUGEPAGE)` on the new buffer (this kernel's
        /// transparent huge pages are `madvise` only).
        FreshHuge,
    }

    /// Reads a whole message into a fresh buffer.
    fn read_fresh(fd: RawFd, huge: bool) -> Option<Vec<u8>> {
        let mut v = Vec::<u8>::with_capacity(SIZE);
        if huge {
            // Whole 2 MiB pages inside the buffer.
            let start = (v.as_mut_ptr() as usize).next_multiple_of(2 << 20);
            let end = (v.as_mut_ptr() as usize + SIZE) & !((2 << 20) - 1);
            if end > start {
                // SAFETY: advice on pages of our own allocation.
                unsafe {
                    libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE)
                };
            }
        }
        let mut done = 0;
        while done < SIZE {
            // SAFETY: reads into the vector's spare capacity.
            let r = unsafe { libc::read(fd, v.as_mut_ptr().add(done).cast(), SIZE - done) };
            if r <= 0 {
                return None;
            }
            done += r as usize;
        }
        // SAFETY: the first SIZE bytes were written by read.
        unsafe { v.set_len(SIZE) };
        Some(v)
    }

    fn raw_row(recv: Recv) -> Result<(Batch, Finish), String> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: socketpair fills the two-element array.
        if unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) } != 0 {
            return Err(os_err("socketpair"));
        }
        for fd in fds {
            for option in [libc::SO_SNDBUF, libc::SO_RCVBUF] {
                // SAFETY: setsockopt on our socket with a pointer to a live c_int.
                let r = unsafe {
                    libc::setsockopt(
                        fd,
                        libc::SOL_SOCKET,
                        option,
                        (&SOCKET_BUFFER as *const libc::c_int).cast(),
                        std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                    )
                };
                if r != 0 {
                    return Err(os_err("setsockopt"));
                }
            }
        }
        let (ours, theirs) = (fds[0], fds[1]);
        // Allocated before the fork: the child only makes system calls.
        let mut child_buf = vec![0u8; SIZE];
        // SAFETY: the bench is single-threaded here; the child only reads and writes.
        let pid = unsafe {
            fork_child(move || {
                libc::close(ours);
                // A 1-byte message (then end of file) stops it: read the first byte apart.
                loop {
                    if recv != Recv::Reused {
                        let Some(m) = read_fresh(theirs, recv == Recv::FreshHuge) else {
                            return true;
                        };
                        if write_all(theirs, &m).is_err() {
                            return false;
                        }
                        continue;
                    }
                    if !read_all(theirs, &mut child_buf[..1]) {
                        return true;
                    }
                    if !read_all(theirs, &mut child_buf[1..]) {
                        return true;
                    }
                    if write_all(theirs, &child_buf).is_err() {
                        return false;
                    }
                }
            })
        }?;
        // SAFETY: the child's end is not ours to use.
        unsafe { libc::close(theirs) };
        let mut out = Vec::new();
        let mut back = Vec::new();
        let mut round = 0usize;
        let batch: Batch = Box::new(move |n| {
            if out.is_empty() {
                out = message();
                back = vec![0u8; SIZE];
            }
            let t = Instant::now();
            for _ in 0..n {
                round += 1;
                let m = stamp(&mut out, round);
                if write_all(ours, &out).is_err() {
                    return Err(os_err("write"));
                }
                if recv == Recv::Reused {
                    if !read_all(ours, &mut back) {
                        return Err(os_err("read"));
                    }
                    check(&back, SIZE, m)?;
                } else {
                    let got =
                        read_fresh(ours, recv == Recv::FreshHuge).ok_or_else(|| os_err("read"))?;
                    check(&got, SIZE, m)?;
                }
            }
            Ok(t.elapsed())
        });
        let finish: Finish = Box::new(move || {
            let _ = write_all(ours, &[0]);
            // SAFETY: our end, closed once: the child sees end of file.
            unsafe { libc::close(ours) };
            wait_child(pid)
        });
        Ok((batch, finish))
    }

    // -------------------------------------------------------------------------------------------
    // CPython

    type PythonRows = (String, Vec<(Key, Stats)>);

    fn run_python(o: &BenchOptions) -> Result<PythonRows, String> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/python/w4_bulk.py");
        let out = Command::new("python3")
            .arg(&script)
            .args(["--batches", &o.batches.to_string()])
            .args(["--batch-size", &o.batch_size.to_string()])
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
        let mut found = Vec::new();
        for (key, name) in [
            (Key::PyInto, "recv_bytes_into"),
            (Key::PyAlloc, "recv_bytes"),
        ] {
            if let Some(s) = Stats::from_json(&json["results"][name], "_gbps") {
                found.push((key, s));
            }
        }
        Ok((json["python"].as_str().unwrap_or("?").to_owned(), found))
    }

    // -------------------------------------------------------------------------------------------
    // Report

    fn find(rows: &[Row], key: Key) -> Option<f64> {
        rows.iter()
            .find(|r| r.key == key)
            .and_then(Row::stats)
            .map(|s| s.median)
    }

    fn table(rows: &[Row]) -> String {
        let mut s = String::from(
            "| row | median GB/s (2 × 64 MiB ÷ round trip) | p10 | p90 | batches | × CPython `recv_bytes_into` | × CPython `recv_bytes` | ÷ raw socketpair |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        let (pi, pa, fl) = (
            find(rows, Key::PyInto),
            find(rows, Key::PyAlloc),
            find(rows, Key::Floor),
        );
        for r in rows {
            match (r.stats(), &r.error) {
                (Some(st), _) => {
                    s += &format!(
                        "| {} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} |\n",
                        r.label,
                        st.median,
                        st.p10,
                        st.p90,
                        st.n,
                        ratio(st.median, pi),
                        ratio(st.median, pa),
                        ratio(st.median, fl),
                    )
                }
                (None, e) => {
                    s += &format!(
                        "| {} | {} | | | | | | |\n",
                        r.label,
                        e.as_deref()
                            .map_or("no samples".into(), |e| format!("failed: {e}"))
                    )
                }
            }
        }
        s
    }

    fn targets(rows: &[Row]) -> String {
        let verdict = |ok: bool| if ok { "**met**" } else { "**not met**" };
        let mut s =
            String::from("| target (from the issue) | measured | verdict |\n|---|---|---|\n");
        for (key, what) in [
            (Key::Into, "`send_bytes` + `recv_bytes_into`"),
            (Key::Alloc, "`send_bytes` + `recv_bytes`"),
        ] {
            let Some(g) = find(rows, key) else {
                continue;
            };
            s += &format!(
                "| ≥ 5 GB/s ({what}) | {g:.2} GB/s | {} |\n",
                verdict(g >= 5.0)
            );
            // Against CPython's faster receiving call (its `recv_bytes_into` copies through a
            // `BytesIO`, so it is the slower one in 3.11).
            let py = [find(rows, Key::PyInto), find(rows, Key::PyAlloc)]
                .into_iter()
                .flatten()
                .max_by(f64::total_cmp);
            if let Some(py) = py {
                s += &format!(
                    "| ≥ 5× CPython ({what}, against CPython's faster row) | {g:.2} / {py:.2} = {:.1}× | {} |\n",
                    g / py,
                    verdict(g / py >= 5.0)
                );
            }
        }
        s
    }

    const BEGIN: &str = "<!-- w4:begin -->";
    const END: &str = "<!-- w4:end -->";

    fn run() -> Result<(), String> {
        let o = BenchOptions::parse("w4_bulk", "W4", 20, 2)?;
        let cpu = CpuUse::now();
        let started = Instant::now();
        type Setup = fn() -> Result<(Batch, Finish), String>;
        let kinds: Vec<(Key, &str, Setup)> = vec![
            (
                Key::Into,
                "multiprocess `pipe()`, `send_bytes` + `recv_bytes_into` (buffers allocated once)",
                || mp_row(true),
            ),
            (
                Key::Alloc,
                "multiprocess `pipe()`, `send_bytes` + `recv_bytes` (a new `Vec` per message)",
                || mp_row(false),
            ),
            (
                Key::Floor,
                "OS floor: raw socketpair, 4 MiB `SO_SNDBUF`/`SO_RCVBUF`, `write`/`read` loops, buffers allocated once",
                || raw_row(Recv::Reused),
            ),
            (
                Key::Other,
                "OS floor, allocating: the same socketpair, each side reads into a fresh `Vec::with_capacity(64 MiB)` per message",
                || raw_row(Recv::Fresh),
            ),
            (
                Key::Other,
                "OS floor, allocating + `madvise(MADV_HUGEPAGE)` on each fresh buffer (THP is `madvise`-only here)",
                || raw_row(Recv::FreshHuge),
            ),
        ];
        let mut rows = Vec::new();
        for &(key, label, setup) in &kinds {
            if !o.keeps(label) {
                continue;
            }
            let (batch, finish, error) = match setup() {
                Ok((b, f)) => (Some(b), Some(f), None),
                Err(e) => (None, None, Some(e)),
            };
            rows.push(Row {
                key,
                label: label.into(),
                batch,
                finish,
                rates: Vec::new(),
                external: None,
                error,
            });
        }
        eprintln!(
            "w4: {} rows × (1 warmup + {} batches of {} round trips of 64 MiB), interleaved",
            rows.len(),
            o.batches,
            o.batch_size
        );
        super::common::interleave(
            &mut rows,
            o.batches,
            |r, warm| r.sample(o.batch_size, warm),
            Row::finish,
        );
        let others = super::common::report_rust_rows("w4", started, &cpu);

        let mut python_version = None;
        let mut notes = Vec::new();
        let mut py_others = None;
        if o.python {
            let t = Instant::now();
            let cpu = CpuUse::now();
            match run_python(&o) {
                Ok((version, found)) => {
                    for (key, stats) in found {
                        let what = if key == Key::PyInto {
                            "`send_bytes` + `recv_bytes_into` (a `bytearray` allocated once)"
                        } else {
                            "`send_bytes` + `recv_bytes()`"
                        };
                        rows.push(Row {
                            key,
                            label: format!(
                                "CPython {version} `multiprocessing.Pipe()`, {what}, fork context"
                            ),
                            batch: None,
                            finish: None,
                            rates: Vec::new(),
                            external: Some(stats),
                            error: None,
                        });
                    }
                    python_version = Some(version);
                }
                Err(e) => {
                    eprintln!("w4: {e}");
                    notes.push(format!("CPython rows missing: {e}"));
                }
            }
            py_others = Some(cpu.others_since());
            eprintln!("w4: CPython rows took {:.1} s", t.elapsed().as_secs_f64());
        }

        let cpython = python_version.as_ref().map(|v| format!("{v} (`bench/python/w4_bulk.py`, run by the bench after the Rust rows, same batches)"));
        let mut block = report_head(
            "W4: round trip of a 64 MiB message through a duplex connection between two processes",
            &o.command,
            cpython,
            others,
        );
        if let Some(p) = py_others {
            block += &format!(
                "- Other programs' CPU use during the CPython rows: {:.0}% of one CPU\n",
                p * 100.0
            );
        }
        block += &format!(
            "- Each row: one echo child for the whole run (unpinned); 1 warmup batch + {} batches of \
             {} round trips, the rows' batches interleaved; a round trip sends 64 MiB and receives \
             the child's echo of it; GB/s = 2 × 64 MiB (2 × 67,108,864 bytes) ÷ the mean round-trip \
             time of the batch, in 10^9 bytes per second; median, p10, p90 over the batches\n\n",
            o.batches, o.batch_size
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
            eprintln!("w4: wrote the table into {}", o.md.display());
        }
        Ok(())
    }
}
