//! Benchmark W2: ping-pong round trip of an 8-byte message between two processes (Linux only;
//! elsewhere the binary says so and exits).
//!
//! Every row keeps one echo child alive for the whole run; the parent sends 8 bytes, the child
//! sends them back, and the parent waits for them: one round trip. A sample is one batch of
//! round trips (2000 by default) and its value is the batch's mean time per round trip; the
//! batches of all rows are interleaved in rounds, so drift of the machine hits every row alike.
//!
//! Each kind of row runs in three placements, because where the two processes run decides the
//! result more than anything else: both pinned to CPU 0 ("same CPU"), parent on CPU 0 and child
//! on CPU 1 ("CPUs 0 / 1", skipped on a one-CPU machine), and unpinned (the scheduler's choice,
//! which may change from batch to batch). The kinds:
//!
//! - `multiprocess::pipe()` with `send_bytes` / `recv_bytes()`, the child started with
//!   spawn and given its `Connection` as the argument; the same with `send(&u64)` /
//!   `recv::<u64>()`; the same with a forked child (`ctx.process_closure`); and two
//!   `pipe_one_way()` (simplex, OS pipes) with a spawned child;
//! - the OS floors, with a child made by raw `fork`: `write` / `read` of 8 bytes on a
//!   socketpair (what `pipe()` uses), and on a pair of pipes (what `pipe_one_way()` uses);
//! - a `multiprocess` connection from `connection::Listener` / `connection::client` over TCP
//!   (127.0.0.1) and over a Unix socket, the spawned child connecting; and the OS floor for TCP:
//!   raw `write` / `read` of 8 bytes over a loopback TCP connection with `TCP_NODELAY`, child by
//!   `fork` (issue 14, item 7: what TCP costs over a socketpair is the OS's; what our
//!   connection adds over raw TCP is ours);
//! - two `multiprocess::Queue<u64>`, one each way (`put` / `get`), the echo child started with
//!   spawn and given both queues as arguments;
//! - CPython's `multiprocessing.Pipe()` with `send_bytes` / `recv_bytes`, and two
//!   `multiprocessing.Queue()` with `put` / `get` of an int (fork context, a quarter of the
//!   batch size for the queues), from `bench/python/w2_pipe_roundtrip.py`, run after the Rust
//!   rows with the same placements.
//!
//! Two more rows have no second process (one thread does both ends, so nobody sleeps): raw
//! `write` + `read` twice on a socketpair, and `multiprocess` `send_bytes` + `recv_bytes` twice.
//! Their difference is what the library adds to a round trip in CPU alone.
//!
//! The table gives median, p10 and p90 of the per-batch means in microseconds per round trip,
//! and each median's ratio to the raw socketpair and raw pipes medians of the same placement
//! in the same run. The table, the command, the machine and the date are printed as Markdown and
//! written into `BENCHMARKS.md` between the `w2:begin` / `w2:end` markers.
//!
//! ```text
//! cargo bench --bench w2_pipe_roundtrip                            # 20 batches × 2000 a row
//! cargo bench --bench w2_pipe_roundtrip -- --batches 10 --batch-size 500 --no-write
//! cargo bench --bench w2_pipe_roundtrip -- --no-python --only "[same CPU]" --only "OS floor"
//! ```
//!
//! Options (after `--`; unknown ones such as cargo's `--bench` are ignored): `--batches N`
//! (`W2_BATCHES`), `--batch-size N` (`W2_BATCH_SIZE`), `--no-python`, `--no-write`
//! (`W2_NO_WRITE=1`), `--md PATH` (default `BENCHMARKS.md` in the crate root), `--only TEXT`
//! (repeatable: keep only the rows whose "label [placement]" contains every TEXT given, e.g. to
//! count one row's context switches under `perf stat`).
//!
//! The report also says how much CPU other programs took while the Rust rows ran (from
//! `/proc/stat` minus this process's and its reaped children's rusage; every echo child is
//! reaped before the figure is taken) and flags a run above 10% of a CPU as disturbed.

fn main() {
    // A spawned echo child runs its target inside init() and exits there.
    multiprocess::init();
    #[cfg(target_os = "linux")]
    w2::main();
    #[cfg(not(target_os = "linux"))]
    eprintln!("w2: this benchmark runs on Linux only (its floors are Linux's)");
}

#[cfg(target_os = "linux")]
mod common;

#[cfg(target_os = "linux")]
mod w2 {
    use super::common::{CpuUse, env_usize, percentile, ratio, report_head, write_all, write_md};
    use std::os::fd::{AsRawFd, OwnedFd, RawFd};
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::time::{Duration, Instant};

    use multiprocess::Connection;

    /// The message of every row.
    const MESSAGE: [u8; 8] = *b"pingpong";
    /// Tells an echo child to stop. (A stop message rather than end of file: a forked child also
    /// holds a copy of the parent's end, and later children copies of earlier rows' ends.)
    const STOP: [u8; 8] = *b"stop!!!!";
    /// The same for the `u64` rows.
    const STOP_U64: u64 = u64::MAX;

    /// Echo child: returns each byte message until [`STOP`] (or end of file).
    fn echo_bytes(conn: Connection) -> u64 {
        let mut n = 0;
        while let Ok(m) = conn.recv_bytes() {
            if m == STOP || conn.send_bytes(&m).is_err() {
                break;
            }
            n += 1;
        }
        n
    }

    /// Echo child: returns each `u64` until [`STOP_U64`] (or end of file).
    fn echo_u64(conn: Connection) -> u64 {
        let mut n = 0;
        while let Ok(v) = conn.recv::<u64>() {
            if v == STOP_U64 || conn.send(&v).is_err() {
                break;
            }
            n += 1;
        }
        n
    }

    pub(crate) fn main() {
        if let Err(e) = run() {
            eprintln!("w2: {e}");
            std::process::exit(1);
        }
    }

    // -------------------------------------------------------------------------------------------
    // Options

    struct Options {
        batches: usize,
        batch_size: usize,
        python: bool,
        write: bool,
        only: Vec<String>,
        md: PathBuf,
        command: String,
    }

    fn options() -> Result<Options, String> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut o = Options {
            batches: env_usize("W2_BATCHES")?.unwrap_or(20),
            batch_size: env_usize("W2_BATCH_SIZE")?.unwrap_or(2000),
            python: true,
            write: std::env::var_os("W2_NO_WRITE").is_none_or(|v| v.is_empty() || v == "0"),
            only: Vec::new(),
            md: root.join("BENCHMARKS.md"),
            command: String::new(),
        };
        let mut shown = Vec::new();
        for var in ["W2_BATCHES", "W2_BATCH_SIZE", "W2_NO_WRITE"] {
            if let Ok(v) = std::env::var(var) {
                shown.push(format!("{var}={v}"));
            }
        }
        shown.push("cargo bench --bench w2_pipe_roundtrip".into());
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
                "--batches" => o.batches = number(value("--batches")?)?,
                "--batch-size" => o.batch_size = number(value("--batch-size")?)?,
                "--md" => o.md = PathBuf::from(value("--md")?),
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

    // -------------------------------------------------------------------------------------------
    // Rows

    /// Runs `n` round trips and returns their total time.
    type Batch = Box<dyn FnMut(usize) -> Result<Duration, String>>;
    /// Ends a row's child (closing the parent's ends first) and checks how it ended.
    type Finish = Box<dyn FnOnce() -> Result<(), String>>;

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Key {
        MpBytes,
        MpU64,
        MpSimplex,
        RawSocket,
        RawPipe,
        /// Over TCP, ours and the OS's.
        Tcp,
        RawTcp,
        Queue,
        PyQueue,
        Other,
    }

    /// Where a row's two processes run.
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Placement {
        /// Wherever the scheduler puts them.
        Free,
        /// Both pinned to CPU 0.
        Same,
        /// Parent on CPU 0, child on CPU 1.
        Split,
        /// One thread, no second process.
        Alone,
    }

    impl Placement {
        fn pins(self) -> Pins {
            match self {
                Placement::Same => Some((0, 0)),
                Placement::Split => Some((0, 1)),
                Placement::Free | Placement::Alone => None,
            }
        }

        fn label(self) -> &'static str {
            match self {
                Placement::Free => "unpinned",
                Placement::Same => "same CPU",
                Placement::Split => "CPUs 0 / 1",
                Placement::Alone => "one thread",
            }
        }

        fn python_name(self) -> &'static str {
            match self {
                Placement::Free => "free",
                Placement::Same => "same",
                Placement::Split => "split",
                Placement::Alone => "",
            }
        }
    }

    #[derive(Clone, Copy)]
    struct Stats {
        median: f64,
        p10: f64,
        p90: f64,
        n: usize,
    }

    struct Row {
        key: Key,
        placement: Placement,
        label: String,
        batch: Option<Batch>,
        finish: Option<Finish>,
        means_us: Vec<f64>,
        external: Option<Stats>,
        error: Option<String>,
    }

    impl Row {
        fn new(
            key: Key,
            placement: Placement,
            label: impl Into<String>,
            setup: Result<(Batch, Finish), String>,
        ) -> Row {
            let (batch, finish, error) = match setup {
                Ok((b, f)) => (Some(b), Some(f), None),
                Err(e) => (None, None, Some(e)),
            };
            Row {
                key,
                placement,
                label: label.into(),
                batch,
                finish,
                means_us: Vec::new(),
                external: None,
                error,
            }
        }

        fn stats(&self) -> Option<Stats> {
            if let Some(s) = self.external {
                return Some(s);
            }
            if self.error.is_some() || self.means_us.is_empty() {
                return None;
            }
            let mut v = self.means_us.clone();
            v.sort_by(f64::total_cmp);
            Some(Stats {
                median: percentile(&v, 50.0),
                p10: percentile(&v, 10.0),
                p90: percentile(&v, 90.0),
                n: v.len(),
            })
        }

        fn sample(&mut self, size: usize, warm: bool) {
            if self.error.is_some() {
                return;
            }
            let Some(batch) = self.batch.as_mut() else {
                return;
            };
            match batch(size) {
                Ok(d) if !warm => self.means_us.push(d.as_secs_f64() * 1e6 / size as f64),
                Ok(_) => {}
                Err(e) => {
                    eprintln!("w2: {}: {e}", self.label);
                    self.error = Some(e);
                }
            }
        }

        fn finish(&mut self) {
            self.batch = None;
            if let Some(f) = self.finish.take() {
                if let Err(e) = f() {
                    eprintln!("w2: {}: {e}", self.label);
                    self.error.get_or_insert(e);
                }
            }
        }
    }

    fn err(what: &str) -> String {
        format!("{what}: {}", std::io::Error::last_os_error())
    }

    /// Reads exactly `buf.len()` bytes; `Ok(false)` on end of file before the first byte.
    fn read_exact(fd: RawFd, buf: &mut [u8]) -> Result<bool, String> {
        let mut done = 0;
        while done < buf.len() {
            // SAFETY: reads into a valid buffer of the given length.
            let r = unsafe { libc::read(fd, buf[done..].as_mut_ptr().cast(), buf.len() - done) };
            if r == 0 && done == 0 {
                return Ok(false);
            }
            if r <= 0 {
                return Err(err("read"));
            }
            done += r as usize;
        }
        Ok(true)
    }

    /// A set of one CPU, for `sched_setaffinity`.
    fn cpu_set(cpu: Option<usize>) -> libc::cpu_set_t {
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

    fn set_affinity(cpu: Option<usize>) {
        let set = cpu_set(cpu);
        // SAFETY: valid set of the given size, for this thread.
        unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    }

    fn wait_pid(pid: libc::pid_t) -> Result<(), String> {
        let mut status = 0;
        loop {
            // SAFETY: waitpid on our own child with a valid out-pointer.
            let r = unsafe { libc::waitpid(pid, &mut status, 0) };
            if r == pid {
                break;
            }
            if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                return Err(err("waitpid"));
            }
        }
        if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
            Ok(())
        } else {
            Err(format!("echo child ended with wait status {status:#x}"))
        }
    }

    /// Where a row's two processes run: `(parent CPU, child CPU)`, or `None` for wherever the
    /// scheduler puts them.
    type Pins = Option<(usize, usize)>;

    fn pin_child(pid: libc::pid_t, pins: Pins) -> Result<(), String> {
        if let Some((_, c)) = pins {
            let set = cpu_set(Some(c));
            // SAFETY: valid set of the given size, for our own child.
            if unsafe { libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set) }
                != 0
            {
                return Err(err("sched_setaffinity"));
            }
        }
        Ok(())
    }

    /// Runs `batch` with the parent pinned as `pins` says (and unpinned again afterwards).
    fn pinned(pins: Pins, mut batch: Batch) -> Batch {
        Box::new(move |n| {
            if let Some((p, _)) = pins {
                set_affinity(Some(p));
            }
            let r = batch(n);
            if pins.is_some() {
                set_affinity(None);
            }
            r
        })
    }

    /// A raw echo child made by `fork`: it reads 8 bytes from `theirs.0` and writes them back to
    /// `theirs.1` until [`STOP`] or end of file. `ours` are the parent's ends (closed in the
    /// child).
    fn raw_row(
        ours: (OwnedFd, OwnedFd),
        theirs: (OwnedFd, OwnedFd),
        pins: Pins,
    ) -> Result<(Batch, Finish), String> {
        let (our_rx, our_tx) = ours;
        // SAFETY: the child calls only async-signal-safe functions (close, read, write, _exit).
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(err("fork"));
        }
        if pid == 0 {
            // SAFETY: closing our copies of the parent's ends; then the echo loop and _exit.
            unsafe {
                libc::close(our_rx.as_raw_fd());
                libc::close(our_tx.as_raw_fd());
                let (rx, tx) = (theirs.0.as_raw_fd(), theirs.1.as_raw_fd());
                let mut buf = [0u8; 8];
                // 8 bytes in one read and one write (atomic for pipes below PIPE_BUF, and a
                // socketpair delivers them together); anything else ends the child.
                let code = loop {
                    let r = libc::read(rx, buf.as_mut_ptr().cast(), 8);
                    if r == 0 || (r == 8 && buf == STOP) {
                        break 0;
                    }
                    if r != 8 || libc::write(tx, buf.as_ptr().cast(), 8) != 8 {
                        break 1;
                    }
                };
                libc::_exit(code);
            }
        }
        drop(theirs);
        pin_child(pid, pins)?;
        let (rx, tx) = (our_rx.as_raw_fd(), our_tx.as_raw_fd());
        let batch: Batch = Box::new(move |n| {
            let mut buf = [0u8; 8];
            let t = Instant::now();
            for _ in 0..n {
                write_all(tx, &MESSAGE)?;
                if !read_exact(rx, &mut buf)? {
                    return Err("the echo child closed its end".into());
                }
            }
            let d = t.elapsed();
            if buf != MESSAGE {
                return Err("wrong echo".into());
            }
            Ok(d)
        });
        let finish: Finish = Box::new(move || {
            write_all(our_tx.as_raw_fd(), &STOP)?;
            drop(our_rx);
            drop(our_tx);
            wait_pid(pid)
        });
        Ok((pinned(pins, batch), finish))
    }

    fn socketpair() -> Result<(OwnedFd, OwnedFd), String> {
        let (a, b) = std::os::unix::net::UnixStream::pair().map_err(|e| e.to_string())?;
        Ok((a.into(), b.into()))
    }

    fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
        let (r, w) = std::io::pipe().map_err(|e| e.to_string())?;
        Ok((r.into(), w.into()))
    }

    fn raw_socket(pins: Pins) -> Result<(Batch, Finish), String> {
        let (a, b) = socketpair()?;
        let (a2, b2) = (
            a.try_clone().map_err(|e| e.to_string())?,
            b.try_clone().map_err(|e| e.to_string())?,
        );
        raw_row((a, a2), (b, b2), pins)
    }

    /// A connected pair of TCP sockets over the loopback, both with `TCP_NODELAY` (as
    /// `multiprocess` sets on its own).
    fn tcp_pair() -> Result<(OwnedFd, OwnedFd), String> {
        let s = |e: std::io::Error| e.to_string();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(s)?;
        let a = std::net::TcpStream::connect(listener.local_addr().map_err(s)?).map_err(s)?;
        let (b, _) = listener.accept().map_err(s)?;
        a.set_nodelay(true).map_err(s)?;
        b.set_nodelay(true).map_err(s)?;
        Ok((a.into(), b.into()))
    }

    fn raw_tcp(pins: Pins) -> Result<(Batch, Finish), String> {
        let (a, b) = tcp_pair()?;
        let (a2, b2) = (
            a.try_clone().map_err(|e| e.to_string())?,
            b.try_clone().map_err(|e| e.to_string())?,
        );
        raw_row((a, a2), (b, b2), pins)
    }

    fn raw_pipes(pins: Pins) -> Result<(Batch, Finish), String> {
        let (down_r, down_w) = pipe()?;
        let (up_r, up_w) = pipe()?;
        raw_row((up_r, down_w), (down_r, up_w), pins)
    }

    /// One thread does both ends of a socketpair: write + read, twice, per "round trip".
    fn raw_inprocess(_: Pins) -> Result<(Batch, Finish), String> {
        let (a, b) = socketpair()?;
        let batch: Batch = Box::new(move |n| {
            let (a, b) = (a.as_raw_fd(), b.as_raw_fd());
            let mut buf = [0u8; 8];
            let t = Instant::now();
            for _ in 0..n {
                write_all(a, &MESSAGE)?;
                read_exact(b, &mut buf)?;
                write_all(b, &buf)?;
                read_exact(a, &mut buf)?;
            }
            Ok(t.elapsed())
        });
        Ok((batch, Box::new(|| Ok(()))))
    }

    /// One thread does both ends of a `multiprocess::pipe()`.
    fn mp_inprocess(_: Pins) -> Result<(Batch, Finish), String> {
        let (a, b) = multiprocess::pipe().map_err(|e| e.to_string())?;
        let batch: Batch = Box::new(move |n| {
            let t = Instant::now();
            let mut last = Vec::new();
            for _ in 0..n {
                a.send_bytes(&MESSAGE).map_err(|e| e.to_string())?;
                let m = b.recv_bytes().map_err(|e| e.to_string())?;
                b.send_bytes(&m).map_err(|e| e.to_string())?;
                last = a.recv_bytes().map_err(|e| e.to_string())?;
            }
            let d = t.elapsed();
            if last != MESSAGE {
                return Err("wrong echo".into());
            }
            Ok(d)
        });
        Ok((batch, Box::new(|| Ok(()))))
    }

    /// Echo child over two simplex pipes: returns each message from `rx` on `tx` until [`STOP`].
    fn echo_simplex(rx: Connection, tx: Connection) -> u64 {
        let mut n = 0;
        while let Ok(m) = rx.recv_bytes() {
            if m == STOP || tx.send_bytes(&m).is_err() {
                break;
            }
            n += 1;
        }
        n
    }

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Mode {
        Bytes,
        U64,
        /// Bytes over two `pipe_one_way()`s.
        Simplex,
        /// Bytes over a `Listener` / `client` connection (the child connects; no authkey, as
        /// the pipes have none): over TCP, or else a Unix socket.
        Listener {
            tcp: bool,
        },
    }

    /// A listener row's address: TCP on the loopback (a free port), or a Unix socket file.
    fn listener_address(tcp: bool) -> multiprocess::connection::Address {
        if tcp {
            return multiprocess::connection::Address::Tcp(([127, 0, 0, 1], 0).into());
        }
        let path = std::env::temp_dir().join(format!("w2-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        multiprocess::connection::Address::Unix(path)
    }

    /// Echo child of a listener row: connects to `address`, then as [`echo_bytes`].
    fn echo_client(address: multiprocess::connection::Address) -> u64 {
        match multiprocess::connection::client(&address, None) {
            Ok(conn) => echo_bytes(conn),
            Err(_) => u64::MAX,
        }
    }

    /// A `multiprocess` echo child (spawn: `Process` with the Connection(s) as arguments; fork:
    /// a closure capturing them), and the parent's ends.
    fn mp_row(method: &'static str, mode: Mode, pins: Pins) -> Result<(Batch, Finish), String> {
        let e = |e: multiprocess::Error| e.to_string();
        let ctx = multiprocess::get_context(method.parse().map_err(e)?).map_err(e)?;
        let fork = method == "fork";
        let (rx, tx, mut p) = if let Mode::Listener { tcp } = mode {
            let listener =
                multiprocess::connection::Listener::bind(Some(listener_address(tcp)), None)
                    .map_err(e)?;
            let address = listener.address().clone();
            let mut p = ctx.process(echo_client, (address.clone(),));
            p.start().map_err(e)?;
            let conn = listener.accept().map_err(e)?;
            if let multiprocess::connection::Address::Unix(path) = &address {
                let _ = std::fs::remove_file(path);
            }
            (conn, None, p)
        } else if mode == Mode::Simplex {
            let (child_rx, parent_tx) = multiprocess::pipe_one_way().map_err(e)?;
            let (parent_rx, child_tx) = multiprocess::pipe_one_way().map_err(e)?;
            let p = if fork {
                ctx.process_closure(move || echo_simplex(child_rx, child_tx))
            } else {
                ctx.process(echo_simplex, (child_rx, child_tx))
            };
            (parent_rx, Some(parent_tx), p)
        } else {
            let (ours, theirs) = multiprocess::pipe().map_err(e)?;
            let p = match (fork, mode) {
                (true, Mode::U64) => ctx.process_closure(move || echo_u64(theirs)),
                (true, _) => ctx.process_closure(move || echo_bytes(theirs)),
                (false, Mode::U64) => ctx.process(echo_u64, (theirs,)),
                (false, _) => ctx.process(echo_bytes, (theirs,)),
            };
            (ours, None, p)
        };
        if p.pid().is_none() {
            p.start().map_err(e)?;
        }
        pin_child(p.pid().ok_or("no pid")? as libc::pid_t, pins)?;
        let ends = std::rc::Rc::new(std::cell::RefCell::new(Some((rx, tx))));
        let ends2 = ends.clone();
        let batch: Batch = Box::new(move |n| {
            let guard = ends.borrow();
            let (rx, tx) = guard.as_ref().ok_or("closed")?;
            let tx = tx.as_ref().unwrap_or(rx);
            let t = Instant::now();
            if mode == Mode::U64 {
                let mut last = 0;
                for i in 0..n as u64 {
                    tx.send(&i).map_err(e)?;
                    last = rx.recv::<u64>().map_err(e)?;
                }
                let d = t.elapsed();
                if last != n as u64 - 1 {
                    return Err(format!("wrong echo {last}"));
                }
                Ok(d)
            } else {
                let mut last = Vec::new();
                for _ in 0..n {
                    tx.send_bytes(&MESSAGE).map_err(e)?;
                    last = rx.recv_bytes().map_err(e)?;
                }
                let d = t.elapsed();
                if last != MESSAGE {
                    return Err("wrong echo".into());
                }
                Ok(d)
            }
        });
        let finish: Finish = Box::new(move || {
            if let Some((rx, tx)) = ends2.borrow_mut().take() {
                let tx = tx.as_ref().unwrap_or(&rx);
                if mode == Mode::U64 {
                    tx.send(&STOP_U64).map_err(e)?;
                } else {
                    tx.send_bytes(&STOP).map_err(e)?;
                }
            }
            p.join().map_err(e)?;
            match p.exitcode().map_err(e)? {
                Some(0) => Ok(()),
                other => Err(format!("echo child exitcode {other:?}")),
            }
        });
        Ok((pinned(pins, batch), finish))
    }

    /// Echo child over two queues: returns each `u64` from `rx` on `tx` until [`STOP_U64`].
    fn echo_queue(rx: multiprocess::Queue<u64>, tx: multiprocess::Queue<u64>) -> u64 {
        let mut n = 0;
        while let Ok(v) = rx.get() {
            if v == STOP_U64 || tx.put(&v).is_err() {
                break;
            }
            n += 1;
        }
        n
    }

    /// Two `multiprocess::Queue<u64>`s, one each way, with a spawned echo child that gets them
    /// as arguments.
    fn queue_row(pins: Pins) -> Result<(Batch, Finish), String> {
        let e = |e: multiprocess::Error| e.to_string();
        let ctx = multiprocess::get_context(multiprocess::StartMethod::Spawn).map_err(e)?;
        let down = multiprocess::Queue::<u64>::new().map_err(e)?;
        let up = multiprocess::Queue::<u64>::new().map_err(e)?;
        let mut p = ctx.process(echo_queue, (down.clone(), up.clone()));
        p.start().map_err(e)?;
        pin_child(p.pid().ok_or("no pid")? as libc::pid_t, pins)?;
        let stop = down.clone();
        let batch: Batch = Box::new(move |n| {
            let t = Instant::now();
            let mut last = 0;
            for i in 0..n as u64 {
                down.put(&i).map_err(e)?;
                last = up.get().map_err(e)?;
            }
            let d = t.elapsed();
            if last != n as u64 - 1 {
                return Err(format!("wrong echo {last}"));
            }
            Ok(d)
        });
        let finish: Finish = Box::new(move || {
            stop.put(&STOP_U64).map_err(e)?;
            p.join().map_err(e)?;
            match p.exitcode().map_err(e)? {
                Some(0) => Ok(()),
                other => Err(format!("echo child exitcode {other:?}")),
            }
        });
        Ok((pinned(pins, batch), finish))
    }

    // -------------------------------------------------------------------------------------------
    // CPython

    /// Runs the CPython script; returns its version and its (placement, stats) pairs.
    #[allow(clippy::type_complexity)]
    fn run_python(o: &Options) -> Result<(String, Vec<(Key, Placement, Stats)>), String> {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/python/w2_pipe_roundtrip.py");
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
        for (key, placement) in [Key::Other, Key::PyQueue]
            .into_iter()
            .flat_map(|k| [Placement::Same, Placement::Split, Placement::Free].map(move |p| (k, p)))
        {
            let r = if key == Key::PyQueue {
                &json["results"]["fork_queue"][placement.python_name()]
            } else {
                &json["results"]["fork"][placement.python_name()]
            };
            let num = |k: &str| r[k].as_f64();
            if let (Some(median), Some(p10), Some(p90), Some(n)) = (
                num("median_us"),
                num("p10_us"),
                num("p90_us"),
                r["n"].as_u64(),
            ) {
                let n = n as usize;
                found.push((
                    key,
                    placement,
                    Stats {
                        median,
                        p10,
                        p90,
                        n,
                    },
                ));
            }
        }
        Ok((json["python"].as_str().unwrap_or("?").to_owned(), found))
    }

    // -------------------------------------------------------------------------------------------
    // How quiet the machine was (as in W1)

    // -------------------------------------------------------------------------------------------
    // Report

    fn median_of(rows: &[Row], key: Key, placement: Placement) -> Option<f64> {
        rows.iter()
            .find(|r| r.key == key && r.placement == placement)
            .and_then(Row::stats)
            .map(|s| s.median)
    }

    fn table(rows: &[Row]) -> String {
        let mut s = String::from(
            "| row | placement | median µs | p10 µs | p90 µs | batches | ÷ raw socketpair, same placement | ÷ raw pipes, same placement |\n\
             |---|---|---:|---:|---:|---:|---:|---:|\n",
        );
        for r in rows {
            // The one-thread rows compare with the same-CPU floors.
            let floor_placement = match r.placement {
                Placement::Alone => Placement::Same,
                p => p,
            };
            let sock = median_of(rows, Key::RawSocket, floor_placement);
            let pipe = median_of(rows, Key::RawPipe, floor_placement);
            match (r.stats(), &r.error) {
                (Some(st), _) => {
                    s += &format!(
                        "| {} | {} | {:.2} | {:.2} | {:.2} | {} | {} | {} |\n",
                        r.label,
                        r.placement.label(),
                        st.median,
                        st.p10,
                        st.p90,
                        st.n,
                        ratio(st.median, sock),
                        ratio(st.median, pipe),
                    )
                }
                (None, Some(e)) => {
                    s += &format!(
                        "| {} | {} | failed: {e} | | | | | |\n",
                        r.label,
                        r.placement.label()
                    )
                }
                (None, None) => {
                    s += &format!(
                        "| {} | {} | no samples | | | | | |\n",
                        r.label,
                        r.placement.label()
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
        for placement in [Placement::Same, Placement::Split, Placement::Free] {
            let m = |k| median_of(rows, k, placement);
            // Each Pipe against the OS object it is made of: `pipe()` a socketpair,
            // `pipe_one_way()` a pipe.
            for (key, what, floor_key, floor) in [
                (
                    Key::MpBytes,
                    "`pipe()`, `send_bytes`/`recv_bytes`",
                    Key::RawSocket,
                    "socketpair",
                ),
                (
                    Key::MpU64,
                    "`pipe()`, `send`/`recv` of a u64",
                    Key::RawSocket,
                    "socketpair",
                ),
                (
                    Key::MpSimplex,
                    "two `pipe_one_way()`, `send_bytes`/`recv_bytes`",
                    Key::RawPipe,
                    "pipes",
                ),
                // Issue 14, item 7: what a TCP connection adds is ours to fix; TCP's own cost
                // over a socketpair is the OS's.
                (
                    Key::Tcp,
                    "`Listener`/`client` over TCP, `send_bytes`/`recv_bytes`",
                    Key::RawTcp,
                    "TCP",
                ),
            ] {
                if let (Some(mp), Some(f)) = (m(key), m(floor_key)) {
                    let r = mp / f;
                    s += &format!(
                        "| Connection ({what}) within 1.2× of raw {floor} | {} | {mp:.2} / {f:.2} µs = {r:.2}× | {} |\n",
                        placement.label(),
                        verdict(r <= 1.2)
                    );
                }
            }
        }
        // The issue's Queue target is for a peer awake on another core.
        if let Some(q) = median_of(rows, Key::Queue, Placement::Split) {
            s += &format!(
                "| Queue round trip ≤ 2 µs, peer on another core | CPUs 0 / 1 | {q:.2} µs | {} |\n",
                verdict(q <= 2.0)
            );
            if let Some(py) = median_of(rows, Key::PyQueue, Placement::Split) {
                s += &format!(
                    "| Queue round trip ≥ 20× faster than CPython's Queue | CPUs 0 / 1 | {py:.2} / {q:.2} µs = {:.1}× | {} |\n",
                    py / q,
                    verdict(py / q >= 20.0)
                );
            }
        }
        s
    }

    const BEGIN: &str = "<!-- w2:begin -->";
    const END: &str = "<!-- w2:end -->";

    // -------------------------------------------------------------------------------------------

    fn run() -> Result<(), String> {
        let o = options()?;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let cpu = CpuUse::now();
        let started = Instant::now();

        type Setup = fn(Pins) -> Result<(Batch, Finish), String>;
        let kinds: Vec<(Key, &str, Setup)> = vec![
            (
                Key::MpBytes,
                "multiprocess `pipe()`, `send_bytes`/`recv_bytes`, child by spawn (Connection as argument)",
                |p| mp_row("spawn", Mode::Bytes, p),
            ),
            (
                Key::MpU64,
                "multiprocess `pipe()`, `send(&u64)`/`recv::<u64>()`, child by spawn",
                |p| mp_row("spawn", Mode::U64, p),
            ),
            (
                Key::Other,
                "multiprocess `pipe()`, `send_bytes`/`recv_bytes`, child by fork (`process_closure`)",
                |p| mp_row("fork", Mode::Bytes, p),
            ),
            (
                Key::MpSimplex,
                "multiprocess two `pipe_one_way()`, `send_bytes`/`recv_bytes`, child by spawn",
                |p| mp_row("spawn", Mode::Simplex, p),
            ),
            (
                Key::RawSocket,
                "OS floor: raw socketpair, `write`/`read` 8 bytes, child by `fork`",
                raw_socket,
            ),
            (
                Key::RawPipe,
                "OS floor: raw pair of pipes, `write`/`read` 8 bytes, child by `fork`",
                raw_pipes,
            ),
            (
                Key::Tcp,
                "multiprocess `Listener` / `client` over TCP (127.0.0.1), `send_bytes`/`recv_bytes`, child by spawn (it connects)",
                |p| mp_row("spawn", Mode::Listener { tcp: true }, p),
            ),
            (
                Key::Other,
                "multiprocess `Listener` / `client` over a Unix socket, `send_bytes`/`recv_bytes`, child by spawn (it connects)",
                |p| mp_row("spawn", Mode::Listener { tcp: false }, p),
            ),
            (
                Key::RawTcp,
                "OS floor: raw TCP over 127.0.0.1 (`TCP_NODELAY`), `write`/`read` 8 bytes, child by `fork`",
                raw_tcp,
            ),
            (
                Key::Queue,
                "multiprocess two `Queue<u64>` (one each way), `put`/`get`, child by spawn (queues as arguments)",
                queue_row,
            ),
        ];
        let mut placements = vec![Placement::Same];
        if cpus >= 2 {
            placements.push(Placement::Split);
        }
        placements.push(Placement::Free);
        let mut specs: Vec<(Key, Placement, &str, Setup)> = Vec::new();
        for &placement in &placements {
            for &(key, label, setup) in &kinds {
                specs.push((key, placement, label, setup));
            }
        }
        specs.push((
            Key::Other,
            Placement::Alone,
            "no wake-up: raw socketpair `write`+`read` twice, both ends in one thread",
            raw_inprocess,
        ));
        specs.push((
            Key::Other,
            Placement::Alone,
            "no wake-up: multiprocess `send_bytes`+`recv_bytes` twice, both ends in one thread",
            mp_inprocess,
        ));
        if !o.only.is_empty() {
            specs.retain(|(_, placement, label, _)| {
                let name = format!("{label} [{}]", placement.label());
                o.only.iter().all(|s| name.contains(s.as_str()))
            });
        }
        let mut rows: Vec<Row> = specs
            .into_iter()
            .map(|(key, placement, label, setup)| {
                Row::new(key, placement, label, setup(placement.pins()))
            })
            .collect();
        eprintln!(
            "w2: {} rows × (1 warmup + {} batches of {} round trips), interleaved",
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
        let others = super::common::report_rust_rows("w2", started, &cpu);

        let mut python_version = None;
        let mut notes = Vec::new();
        if o.python {
            let t = Instant::now();
            match run_python(&o) {
                Ok((version, found)) => {
                    // Next to the Rust rows of the same placement.
                    for (key, placement, stats) in found {
                        let at = rows
                            .iter()
                            .rposition(|r| r.placement == placement)
                            .map_or(rows.len(), |i| i + 1);
                        rows.insert(
                            at,
                            Row {
                                key,
                                placement,
                                label: if key == Key::PyQueue {
                                    format!(
                                        "CPython {version} two `multiprocessing.Queue()` (one each way), `put`/`get` of an int, fork context"
                                    )
                                } else {
                                    format!(
                                        "CPython {version} `multiprocessing.Pipe()`, `send_bytes`/`recv_bytes`, fork context"
                                    )
                                },
                                batch: None,
                                finish: None,
                                means_us: Vec::new(),
                                external: Some(stats),
                                error: None,
                            },
                        );
                    }
                    python_version = Some(version);
                }
                Err(e) => {
                    eprintln!("w2: {e}");
                    notes.push(format!("CPython rows missing: {e}"));
                }
            }
            eprintln!("w2: CPython rows took {:.1} s", t.elapsed().as_secs_f64());
        }

        let cpython = python_version.as_ref().map(|v| {
            format!(
                "{v} (`bench/python/w2_pipe_roundtrip.py`, run by the bench after the Rust rows)"
            )
        });
        let mut block = report_head(
            "W2: round trip of an 8-byte message between two processes",
            &o.command,
            cpython,
            others,
        );
        block += &format!(
            "- Each row: one echo child for the whole run; 1 warmup batch + {} batches of {} round \
             trips, the rows' batches interleaved; the figures are the median, p10 and p90 of the \
             per-batch mean, in µs per round trip\n\n",
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
            eprintln!("w2: wrote the table into {}", o.md.display());
        }
        Ok(())
    }
}
