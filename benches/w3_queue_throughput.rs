//! Benchmark W3: one-way throughput of 64-byte messages from one producer process to one
//! consumer process (Linux only; elsewhere the binary says so and exits).
//!
//! The parent is the producer; every row keeps one consumer child for the whole run. A sample is
//! one batch of messages (100,000 by default): the parent starts the clock, sends the batch (its
//! last message carries a mark), and stops the clock when the consumer, having received the
//! marked message, writes the batch's message count back on a raw pipe. The sample's value is
//! messages per second over the batch; the batches of all rows are interleaved in rounds. The
//! acknowledgement costs one wake-up per batch (under 0.1 ms, against 5–100 ms per batch).
//!
//! The payload is a `Vec<u8>` of 64 bytes (the counterpart of a Python `bytes` object; serde has
//! no fixed-size array of 64 bytes); its first byte says "ordinary", "last of the batch" or
//! "stop". The rows:
//!
//! - `multiprocess::Queue<Vec<u8>>` and `SimpleQueue<Vec<u8>>` (`put(&v)` / `get()`), and
//!   `Queue<String>` with 64-byte strings (the same first byte, as a character),
//!   `pipe()` and `pipe_one_way()` with `send_bytes` / `recv_bytes()` (one frame per
//!   message); the consumer is a forked child (`ctx.process_closure`) holding the other end;
//! - raw floors, consumer by `fork`: one `write` of 64 bytes per message on a socketpair (the
//!   consumer reads up to 64 KiB at a time), 64 messages per `write` (4 KiB writes), and an SPSC
//!   ring of 4096 slots of 64 bytes in shared memory, written directly (each side spins, yielding
//!   the CPU every 64 spins, and the consumer sleeps on a futex only after 1 ms without
//!   messages, i.e. between batches);
//! - CPython's `multiprocessing.Queue` and `SimpleQueue` (fork context), from
//!   `bench/python/w3_queue_throughput.py`, run after the Rust rows with the same placements.
//!
//! Placements: both processes on CPU 0 ("same CPU"), producer on CPU 0 and consumer on CPU 1
//! ("CPUs 0 / 1"), and unpinned. The queue rows warm up with enough messages to go once around
//! their 64 MiB ring, so that first-touch page faults are not measured.
//!
//! ```text
//! cargo bench --bench w3_queue_throughput                    # 20 batches × 100,000 a row
//! cargo bench --bench w3_queue_throughput -- --batches 5 --batch-size 20000 --no-write
//! cargo bench --bench w3_queue_throughput -- --no-python --only Queue --only "[CPUs 0 / 1]"
//! ```
//!
//! Options: `--batches N` (`W3_BATCHES`), `--batch-size N` (`W3_BATCH_SIZE`), `--no-python`,
//! `--no-write` (`W3_NO_WRITE=1`), `--md PATH`, `--only TEXT` (repeatable, matched against
//! "label [placement]"). The report says how much CPU other programs used while the Rust rows
//! ran and flags more than 10% of a CPU as disturbed.

fn main() {
    multiprocess::init();
    #[cfg(target_os = "linux")]
    w3::main();
    #[cfg(not(target_os = "linux"))]
    eprintln!("w3: this benchmark runs on Linux only (its floors are Linux's)");
}

#[cfg(target_os = "linux")]
mod common;

#[cfg(target_os = "linux")]
mod w3 {
    use super::common::{
        BenchOptions, CpuUse, Stats, fork_child, futex_wake, pin, ratio, report_head, shared_pages,
        wait_child, write_all, write_md,
    };
    use std::io::{Read, Write};
    use std::os::fd::{AsRawFd, OwnedFd, RawFd};
    use std::path::Path;
    use std::process::Command;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{Duration, Instant};

    const MSG: usize = 64;
    const ORDINARY: u8 = 0;
    const LAST: u8 = 1;
    const STOP: u8 = 2;
    /// Messages that go once around a queue's default 64 MiB ring (72 bytes each: a 4-byte
    /// header, a 1-byte postcard length, 64 bytes and 3 bytes of padding to a multiple of 4).
    const QUEUE_WARMUP: usize = (64 << 20) / 72 + 1;

    pub(crate) fn main() {
        if let Err(e) = run() {
            eprintln!("w3: {e}");
            std::process::exit(1);
        }
    }

    type Batch = Box<dyn FnMut(usize) -> Result<Duration, String>>;
    type Finish = Box<dyn FnOnce() -> Result<(), String>>;

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Key {
        Queue,
        Batched,
        /// `Queue<Bytes>`, one `put`/`get` per message.
        Single,
        Simple,
        Ring,
        Other,
    }

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Placement {
        Same,
        Split,
        Free,
    }

    impl Placement {
        fn pins(self) -> Option<(usize, usize)> {
            match self {
                Placement::Same => Some((0, 0)),
                Placement::Split => Some((0, 1)),
                Placement::Free => None,
            }
        }
        fn label(self) -> &'static str {
            match self {
                Placement::Same => "same CPU",
                Placement::Split => "CPUs 0 / 1",
                Placement::Free => "unpinned",
            }
        }
        fn python_name(self) -> &'static str {
            match self {
                Placement::Same => "same",
                Placement::Split => "split",
                Placement::Free => "free",
            }
        }
    }

    struct Row {
        key: Key,
        placement: Placement,
        label: String,
        warmup: usize,
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
            let n = if warm { self.warmup.max(size) } else { size };
            match batch(n) {
                Ok(d) if !warm => self.rates.push(n as f64 / d.as_secs_f64() / 1e6),
                Ok(_) => {}
                Err(e) => {
                    eprintln!("w3: {} [{}]: {e}", self.label, self.placement.label());
                    self.error = Some(e);
                }
            }
        }

        fn finish(&mut self) {
            self.batch = None;
            if let Some(f) = self.finish.take()
                && let Err(e) = f()
            {
                eprintln!("w3: {}: {e}", self.label);
                self.error.get_or_insert(e);
            }
        }
    }

    // -------------------------------------------------------------------------------------------
    // The acknowledgement pipe and the consumer's side of a batch

    fn ack_pipe() -> Result<(std::io::PipeReader, std::io::PipeWriter), String> {
        std::io::pipe().map_err(|e| e.to_string())
    }

    fn send_ack(ack: &mut std::io::PipeWriter, count: u64) -> bool {
        ack.write_all(&count.to_le_bytes()).is_ok()
    }

    /// Waits for the consumer's count of the batch and checks it.
    fn recv_ack(ack: &mut std::io::PipeReader, n: usize) -> Result<(), String> {
        let mut b = [0u8; 8];
        ack.read_exact(&mut b)
            .map_err(|e| format!("reading the consumer's acknowledgement: {e}"))?;
        match u64::from_le_bytes(b) {
            got if got == n as u64 => Ok(()),
            got => Err(format!("the consumer counted {got} messages of {n}")),
        }
    }

    /// The consumer's bookkeeping: counts messages and acknowledges the last of each batch.
    struct Counter {
        count: u64,
        ack: std::io::PipeWriter,
    }

    impl Counter {
        /// False when the consumer should stop.
        fn on(&mut self, mark: u8) -> bool {
            match mark {
                STOP => false,
                LAST => {
                    self.count += 1;
                    let ok = send_ack(&mut self.ack, self.count);
                    self.count = 0;
                    ok
                }
                _ => {
                    self.count += 1;
                    true
                }
            }
        }
    }

    fn pin_self(pins: Option<(usize, usize)>) -> Result<(), String> {
        if let Some((p, _)) = pins {
            pin(0, Some(p))?;
        }
        Ok(())
    }

    fn unpin_self(pins: Option<(usize, usize)>) {
        if pins.is_some() {
            let _ = pin(0, None);
        }
    }

    fn pin_child(pid: libc::pid_t, pins: Option<(usize, usize)>) -> Result<(), String> {
        if let Some((_, c)) = pins {
            pin(pid, Some(c))?;
        }
        Ok(())
    }

    /// Wraps a batch: pins the producer for it, times it up to the acknowledgement.
    fn timed(
        pins: Option<(usize, usize)>,
        mut ack: std::io::PipeReader,
        mut send: impl FnMut(usize) -> Result<(), String> + 'static,
    ) -> Batch {
        Box::new(move |n| {
            pin_self(pins)?;
            let t = Instant::now();
            let r = send(n).and_then(|()| recv_ack(&mut ack, n));
            let d = t.elapsed();
            unpin_self(pins);
            r.map(|()| d)
        })
    }

    fn mark(i: usize, n: usize) -> u8 {
        if i + 1 == n { LAST } else { ORDINARY }
    }

    // -------------------------------------------------------------------------------------------
    // multiprocess rows

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Mp {
        Queue,
        QueueMany,
        QueueBytes,
        QueueString,
        Simple,
        Duplex,
        Simplex,
    }

    fn mp_row(kind: Mp, pins: Option<(usize, usize)>) -> Result<(Batch, Finish), String> {
        let e = |e: multiprocess::Error| e.to_string();
        let ctx = multiprocess::get_context(multiprocess::StartMethod::Fork).map_err(e)?;
        let (ack_r, ack_w) = ack_pipe()?;
        let mut c = Counter {
            count: 0,
            ack: ack_w,
        };
        type Put = Box<dyn FnMut(&Vec<u8>) -> Result<(), String>>;
        let (mut p, mut put): (multiprocess::Process, Put) = match kind {
            Mp::Queue => {
                let q = multiprocess::Queue::<Vec<u8>>::new().map_err(e)?;
                let theirs = q.clone();
                let p = ctx.process_closure(move || {
                    while let Ok(m) = theirs.get() {
                        if !c.on(m[0]) {
                            break;
                        }
                    }
                });
                (p, Box::new(move |m| q.put(m).map_err(e)))
            }
            Mp::QueueMany => {
                let q = multiprocess::Queue::<multiprocess::Bytes>::new().map_err(e)?;
                let theirs = q.clone();
                let p = ctx.process_closure(move || {
                    while let Ok(ms) = theirs.get_many(64, None) {
                        for m in ms {
                            if !c.on(m[0]) {
                                return;
                            }
                        }
                    }
                });
                // Collects 64 messages (or up to a batch's last one) per `put_many`, in 64
                // reused buffers (no allocation per message on our side either).
                let mut slots = vec![multiprocess::Bytes(vec![0u8; MSG]); 64];
                let mut filled = 0;
                (
                    p,
                    Box::new(move |m: &Vec<u8>| {
                        slots[filled].copy_from_slice(m);
                        filled += 1;
                        if filled == 64 || m[0] != ORDINARY {
                            q.put_many(&slots[..filled]).map_err(e)?;
                            filled = 0;
                        }
                        Ok(())
                    }),
                )
            }
            Mp::QueueBytes => {
                let q = multiprocess::Queue::<multiprocess::Bytes>::new().map_err(e)?;
                let theirs = q.clone();
                let p = ctx.process_closure(move || {
                    while let Ok(m) = theirs.get() {
                        if !c.on(m[0]) {
                            break;
                        }
                    }
                });
                let mut b = multiprocess::Bytes(vec![0u8; MSG]);
                (
                    p,
                    Box::new(move |m: &Vec<u8>| {
                        b.copy_from_slice(m);
                        q.put(&b).map_err(e)
                    }),
                )
            }
            Mp::QueueString => {
                let q = multiprocess::Queue::<String>::new().map_err(e)?;
                let theirs = q.clone();
                let p = ctx.process_closure(move || {
                    while let Ok(m) = theirs.get() {
                        if !c.on(m.as_bytes()[0]) {
                            break;
                        }
                    }
                });
                // The control byte (ORDINARY, LAST or STOP: ASCII) first, then 63 letters: one
                // string made beforehand for each (no work per message on our side).
                let made = [ORDINARY, LAST, STOP].map(|b| {
                    std::iter::once(char::from(b))
                        .chain(std::iter::repeat_n('x', MSG - 1))
                        .collect::<String>()
                });
                (
                    p,
                    Box::new(move |m: &Vec<u8>| q.put(&made[usize::from(m[0])]).map_err(e)),
                )
            }
            Mp::Simple => {
                let q = multiprocess::SimpleQueue::<Vec<u8>>::new().map_err(e)?;
                let theirs = q.clone();
                let p = ctx.process_closure(move || {
                    while let Ok(m) = theirs.get() {
                        if !c.on(m[0]) {
                            break;
                        }
                    }
                });
                (p, Box::new(move |m| q.put(m).map_err(e)))
            }
            Mp::Duplex | Mp::Simplex => {
                let (rx, tx) = if kind == Mp::Duplex {
                    multiprocess::pipe()
                } else {
                    multiprocess::pipe_one_way()
                }
                .map_err(e)?;
                let p = ctx.process_closure(move || {
                    while let Ok(m) = rx.recv_bytes() {
                        if !c.on(m[0]) {
                            break;
                        }
                    }
                });
                (p, Box::new(move |m: &Vec<u8>| tx.send_bytes(m).map_err(e)))
            }
        };
        p.start().map_err(e)?;
        pin_child(p.pid().ok_or("no pid")? as libc::pid_t, pins)?;
        let put = std::rc::Rc::new(std::cell::RefCell::new(move |m: &Vec<u8>| put(m)));
        let put2 = put.clone();
        let batch = timed(pins, ack_r, move |n| {
            let mut m = vec![0u8; MSG];
            let mut put = put.borrow_mut();
            for i in 0..n {
                m[0] = mark(i, n);
                (*put)(&m)?;
            }
            Ok(())
        });
        let finish: Finish = Box::new(move || {
            let mut m = vec![0u8; MSG];
            m[0] = STOP;
            (*put2.borrow_mut())(&m)?;
            p.join().map_err(e)?;
            match p.exitcode().map_err(e)? {
                Some(0) => Ok(()),
                other => Err(format!("consumer exitcode {other:?}")),
            }
        });
        Ok((batch, finish))
    }

    // -------------------------------------------------------------------------------------------
    // Raw floors

    /// A raw consumer on a socketpair: reads up to 64 KiB at a time and looks at the mark of
    /// every 64-byte message in it.
    fn stream_consumer(fd: RawFd, mut c: Counter) -> bool {
        let mut buf = vec![0u8; 64 << 10];
        let mut at = 0usize; // offset of the next message's first byte within the stream
        let mut pos = 0usize; // stream offset of buf[0]
        loop {
            // SAFETY: reads into a valid buffer of the given length.
            let r = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
            if r <= 0 {
                return r == 0;
            }
            let end = pos + r as usize;
            while at < end {
                if !c.on(buf[at - pos]) {
                    return true;
                }
                at += MSG;
            }
            pos = end;
        }
    }

    fn raw_stream(
        per_write: usize,
        pins: Option<(usize, usize)>,
    ) -> Result<(Batch, Finish), String> {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().map_err(|e| e.to_string())?;
        let (ours, theirs): (OwnedFd, OwnedFd) = (ours.into(), theirs.into());
        let (ack_r, ack_w) = ack_pipe()?;
        let our_fd = ours.as_raw_fd();
        // SAFETY: the bench is single-threaded; the child only reads, writes and exits.
        let pid = unsafe {
            fork_child(|| {
                libc::close(our_fd);
                stream_consumer(
                    theirs.as_raw_fd(),
                    Counter {
                        count: 0,
                        ack: ack_w,
                    },
                )
            })
        }?;
        drop(theirs);
        pin_child(pid, pins)?;
        let fd = ours.as_raw_fd();
        let mut buf = vec![0u8; MSG * per_write];
        let batch = timed(pins, ack_r, move |n| {
            let mut i = 0;
            while i < n {
                let k = per_write.min(n - i);
                for j in 0..k {
                    buf[j * MSG] = mark(i + j, n);
                }
                write_all(fd, &buf[..k * MSG])?;
                i += k;
            }
            Ok(())
        });
        let finish: Finish = Box::new(move || {
            let mut m = [0u8; MSG];
            m[0] = STOP;
            write_all(ours.as_raw_fd(), &m)?;
            drop(ours);
            wait_child(pid)
        });
        Ok((batch, finish))
    }

    /// The SPSC ring: words in the first page (tail, head and the consumer's "asleep" flag on
    /// separate cache lines), then `SLOTS` slots of 64 bytes.
    const SLOTS: u32 = 4096;
    const TAIL: usize = 0;
    const HEAD: usize = 32;
    const ASLEEP: usize = 64;

    struct Spsc {
        base: *mut u8,
    }

    impl Spsc {
        fn word(&self, i: usize) -> &AtomicU32 {
            // SAFETY: the first page holds aligned words, shared and never unmapped.
            unsafe { &*self.base.cast::<AtomicU32>().add(i) }
        }
        fn slot(&self, i: u32) -> *mut u8 {
            // SAFETY: inside the mapping (4096 + SLOTS * 64 bytes).
            unsafe { self.base.add(4096 + (i % SLOTS) as usize * MSG) }
        }
    }

    /// Spins (yielding the CPU every 64 tries) until `ready()`; after `sleep_after` without
    /// success, calls `idle()` (which may sleep) and starts again.
    fn spin_yield(
        mut ready: impl FnMut() -> bool,
        sleep_after: Option<Duration>,
        mut idle: impl FnMut(),
    ) {
        let mut start = Instant::now();
        loop {
            for _ in 0..64 {
                if ready() {
                    return;
                }
                std::hint::spin_loop();
            }
            // SAFETY: sched_yield has no preconditions.
            unsafe { libc::sched_yield() };
            if let Some(limit) = sleep_after
                && start.elapsed() >= limit
            {
                idle();
                start = Instant::now();
            }
        }
    }

    fn raw_ring(pins: Option<(usize, usize)>) -> Result<(Batch, Finish), String> {
        let ring = Spsc {
            base: shared_pages(4096 + SLOTS as usize * MSG)?,
        };
        let (ack_r, ack_w) = ack_pipe()?;
        let base = ring.base;
        // SAFETY: single-threaded; the child touches only the shared mapping and the pipe.
        let pid = unsafe {
            fork_child(move || {
                let r = Spsc { base };
                let mut c = Counter {
                    count: 0,
                    ack: ack_w,
                };
                let mut head = 0u32;
                let mut m = [0u8; MSG];
                loop {
                    spin_yield(
                        || r.word(TAIL).load(Ordering::Acquire) != head,
                        Some(Duration::from_millis(1)),
                        || {
                            r.word(ASLEEP).store(1, Ordering::SeqCst);
                            if r.word(TAIL).load(Ordering::SeqCst) == head {
                                // Bounded, in case the producer's wake-up crossed our flag.
                                let ts = libc::timespec {
                                    tv_sec: 0,
                                    tv_nsec: 1_000_000,
                                };
                                libc::syscall(
                                    libc::SYS_futex,
                                    r.word(TAIL).as_ptr(),
                                    libc::FUTEX_WAIT,
                                    head,
                                    &ts,
                                );
                            }
                            r.word(ASLEEP).store(0, Ordering::SeqCst);
                        },
                    );
                    std::ptr::copy_nonoverlapping(r.slot(head), m.as_mut_ptr(), MSG);
                    head = head.wrapping_add(1);
                    r.word(HEAD).store(head, Ordering::Release);
                    if !c.on(m[0]) {
                        return true;
                    }
                }
            })
        }?;
        pin_child(pid, pins)?;
        let ring = std::rc::Rc::new(ring);
        let ring2 = ring.clone();
        let mut tail = 0u32;
        let mut put = move |r: &Spsc, m: &[u8; MSG]| {
            spin_yield(
                || tail.wrapping_sub(r.word(HEAD).load(Ordering::Acquire)) < SLOTS,
                None,
                || {},
            );
            // SAFETY: the slot is free (the consumer is past it) and 64 bytes long.
            unsafe { std::ptr::copy_nonoverlapping(m.as_ptr(), r.slot(tail), MSG) };
            tail = tail.wrapping_add(1);
            r.word(TAIL).store(tail, Ordering::Release);
            if r.word(ASLEEP).load(Ordering::Relaxed) != 0 {
                futex_wake(r.word(TAIL), 1);
            }
        };
        let put = std::rc::Rc::new(std::cell::RefCell::new(move |r: &Spsc, m: &[u8; MSG]| {
            put(r, m)
        }));
        let put2 = put.clone();
        let batch = timed(pins, ack_r, move |n| {
            let mut m = [0u8; MSG];
            let mut put = put.borrow_mut();
            for i in 0..n {
                m[0] = mark(i, n);
                (*put)(&ring, &m);
            }
            Ok(())
        });
        let finish: Finish = Box::new(move || {
            let mut m = [0u8; MSG];
            m[0] = STOP;
            (*put2.borrow_mut())(&ring2, &m);
            wait_child(pid)
        });
        Ok((batch, finish))
    }

    // -------------------------------------------------------------------------------------------
    // CPython

    /// CPython's version and its rows' figures.
    type PythonRows = (String, Vec<(Key, Placement, Stats)>);

    fn run_python(o: &BenchOptions) -> Result<PythonRows, String> {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/python/w3_queue_throughput.py");
        let out = Command::new("python3")
            .arg(&script)
            .args(["--batches", &o.batches.to_string()])
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
        for (key, name) in [(Key::Queue, "Queue"), (Key::Simple, "SimpleQueue")] {
            for placement in [Placement::Same, Placement::Split, Placement::Free] {
                if let Some(s) =
                    Stats::from_json(&json["results"][name][placement.python_name()], "_mps")
                {
                    found.push((key, placement, s));
                }
            }
        }
        Ok((json["python"].as_str().unwrap_or("?").to_owned(), found))
    }

    // -------------------------------------------------------------------------------------------
    // Report

    fn find(rows: &[Row], key: Key, placement: Placement, python: bool) -> Option<f64> {
        rows.iter()
            .find(|r| r.key == key && r.placement == placement && r.external.is_some() == python)
            .and_then(Row::stats)
            .map(|s| s.median)
    }

    fn table(rows: &[Row]) -> String {
        let mut s = String::from(
            "| row | placement | median M msgs/s | p10 | p90 | batches | × CPython Queue, same placement | ÷ raw SPSC ring, same placement |\n\
             |---|---|---:|---:|---:|---:|---:|---:|\n",
        );
        for r in rows {
            let py = find(rows, Key::Queue, r.placement, true);
            let ring = find(rows, Key::Ring, r.placement, false);
            match (r.stats(), &r.error) {
                (Some(st), _) => {
                    s += &format!(
                        "| {} | {} | {:.3} | {:.3} | {:.3} | {} | {} | {} |\n",
                        r.label,
                        r.placement.label(),
                        st.median,
                        st.p10,
                        st.p90,
                        st.n,
                        ratio(st.median, py),
                        ratio(st.median, ring),
                    )
                }
                (None, e) => {
                    s += &format!(
                        "| {} | {} | {} | | | | | |\n",
                        r.label,
                        r.placement.label(),
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
        let mut s = String::from(
            "| target (from the issue) | placement | measured | verdict |\n|---|---|---|---|\n",
        );
        for placement in [Placement::Same, Placement::Split, Placement::Free] {
            let Some(q) = find(rows, Key::Queue, placement, false) else {
                continue;
            };
            s += &format!(
                "| Queue ≥ 10 M msgs/s | {} | {q:.3} M msgs/s | {} |\n",
                placement.label(),
                verdict(q >= 10.0)
            );
            let py = find(rows, Key::Queue, placement, true);
            if let Some(py) = py {
                s += &format!(
                    "| Queue ≥ 30× CPython's Queue | {} | {q:.3} / {py:.3} = {:.1}× | {} |\n",
                    placement.label(),
                    q / py,
                    verdict(q / py >= 30.0)
                );
            }
            if let Some(b) = find(rows, Key::Single, placement, false) {
                s += &format!(
                    "| Queue ≥ 10 M msgs/s, one `put`/`get` of a 64-byte `Bytes` | {} | {b:.3} M msgs/s | {} |\n",
                    placement.label(),
                    verdict(b >= 10.0)
                );
                if let Some(py) = py {
                    s += &format!(
                        "| Queue ≥ 30× CPython's Queue, one `put`/`get` of a `Bytes` | {} | {b:.3} / {py:.3} = {:.1}× | {} |\n",
                        placement.label(),
                        b / py,
                        verdict(b / py >= 30.0)
                    );
                }
            }
            if let Some(b) = find(rows, Key::Batched, placement, false) {
                s += &format!(
                    "| Queue ≥ 10 M msgs/s, batched (`put_many`/`get_many`, `Bytes`) | {} | {b:.3} M msgs/s | {} |\n",
                    placement.label(),
                    verdict(b >= 10.0)
                );
                if let Some(py) = py {
                    s += &format!(
                        "| Queue ≥ 30× CPython's Queue, batched | {} | {b:.3} / {py:.3} = {:.1}× | {} |\n",
                        placement.label(),
                        b / py,
                        verdict(b / py >= 30.0)
                    );
                }
            }
        }
        s
    }

    const BEGIN: &str = "<!-- w3:begin -->";
    const END: &str = "<!-- w3:end -->";

    fn run() -> Result<(), String> {
        let o = BenchOptions::parse("w3_queue_throughput", "W3", 20, 100_000)?;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let cpu = CpuUse::now();
        let started = Instant::now();

        type Setup = fn(Option<(usize, usize)>) -> Result<(Batch, Finish), String>;
        let kinds: Vec<(Key, &str, usize, Setup)> = vec![
            (
                Key::Queue,
                "multiprocess `Queue<Vec<u8>>`, `put`/`get` of a 64-byte `Vec`",
                QUEUE_WARMUP,
                |p| mp_row(Mp::Queue, p),
            ),
            (
                Key::Batched,
                "multiprocess `Queue<Bytes>`, 64-byte messages, `put_many` / `get_many` of up to 64",
                QUEUE_WARMUP,
                |p| mp_row(Mp::QueueMany, p),
            ),
            (
                Key::Single,
                "multiprocess `Queue<Bytes>`, `put`/`get` of 64 bytes (serde bytes, not a sequence)",
                QUEUE_WARMUP,
                |p| mp_row(Mp::QueueBytes, p),
            ),
            (
                Key::Other,
                "multiprocess `Queue<String>`, `put`/`get` of a 64-byte `String`",
                QUEUE_WARMUP,
                |p| mp_row(Mp::QueueString, p),
            ),
            (
                Key::Simple,
                "multiprocess `SimpleQueue<Vec<u8>>`, `put`/`get` of a 64-byte `Vec`",
                QUEUE_WARMUP,
                |p| mp_row(Mp::Simple, p),
            ),
            (
                Key::Other,
                "multiprocess `pipe()`, `send_bytes`/`recv_bytes`, one frame per message",
                0,
                |p| mp_row(Mp::Duplex, p),
            ),
            (
                Key::Other,
                "multiprocess `pipe_one_way()`, `send_bytes`/`recv_bytes`, one frame per message",
                0,
                |p| mp_row(Mp::Simplex, p),
            ),
            (
                Key::Other,
                "OS floor: socketpair, one 64-byte `write` per message",
                0,
                |p| raw_stream(1, p),
            ),
            (
                Key::Other,
                "OS floor: socketpair, 64 messages per `write`",
                0,
                |p| raw_stream(64, p),
            ),
            (
                Key::Ring,
                "hardware floor: SPSC ring of 64-byte slots in shared memory, written directly",
                0,
                raw_ring,
            ),
        ];
        let mut placements = vec![Placement::Same];
        if cpus >= 2 {
            placements.push(Placement::Split);
        }
        placements.push(Placement::Free);
        let mut rows = Vec::new();
        for &placement in &placements {
            for &(key, label, warmup, setup) in &kinds {
                if !o.keeps(&format!("{label} [{}]", placement.label())) {
                    continue;
                }
                let (batch, finish, error) = match setup(placement.pins()) {
                    Ok((b, f)) => (Some(b), Some(f), None),
                    Err(e) => (None, None, Some(e)),
                };
                rows.push(Row {
                    key,
                    placement,
                    label: label.into(),
                    warmup,
                    batch,
                    finish,
                    rates: Vec::new(),
                    external: None,
                    error,
                });
            }
        }
        eprintln!(
            "w3: {} rows × (1 warmup + {} batches of {} messages), interleaved",
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
        let others = super::common::report_rust_rows("w3", started, &cpu);

        let mut python_version = None;
        let mut notes = Vec::new();
        if o.python {
            let t = Instant::now();
            match run_python(&o) {
                Ok((version, found)) => {
                    for (key, placement, stats) in found {
                        let at = rows
                            .iter()
                            .rposition(|r| r.placement == placement)
                            .map_or(rows.len(), |i| i + 1);
                        let what = if key == Key::Queue {
                            "Queue"
                        } else {
                            "SimpleQueue"
                        };
                        rows.insert(
                            at,
                            Row {
                                key,
                                placement,
                                label: format!(
                                    "CPython {version} `multiprocessing.{what}`, `put`/`get` of 64-byte `bytes`, fork context"
                                ),
                                warmup: 0,
                                batch: None,
                                finish: None,
                                rates: Vec::new(),
                                external: Some(stats),
                                error: None,
                            },
                        );
                    }
                    python_version = Some(version);
                }
                Err(e) => {
                    eprintln!("w3: {e}");
                    notes.push(format!("CPython rows missing: {e}"));
                }
            }
            eprintln!("w3: CPython rows took {:.1} s", t.elapsed().as_secs_f64());
        }

        let cpython = python_version.as_ref().map(|v| format!("{v} (`bench/python/w3_queue_throughput.py`, run by the bench after the Rust rows; its own batch size)"));
        let mut block = report_head(
            "W3: one-way throughput of 64-byte messages, one producer and one consumer process",
            &o.command,
            cpython,
            others,
        );
        block += &format!(
            "- Each row: one consumer child for the whole run; 1 warmup batch (queue rows: {QUEUE_WARMUP} \
             messages, once around the ring) + {} batches of {} messages, the rows' batches \
             interleaved; a batch is timed until the consumer acknowledges its last message; \
             the figures are the median, p10 and p90 of the per-batch rate, in millions of \
             messages per second\n\n",
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
            eprintln!("w3: wrote the table into {}", o.md.display());
        }
        Ok(())
    }
}
