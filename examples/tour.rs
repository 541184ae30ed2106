//! A guided tour of `multiprocess`, Python's `multiprocessing` rebuilt in Rust.
//!
//! Run it with `cargo run --release --example tour`. It replays the seed tutorial's examples
//! (§1.3–§1.4.4, with their sleeps scaled down), then walks through the rest of `Process`: names,
//! daemons and authentication keys, joins with a timeout, `terminate` and `kill`, exit codes,
//! panics, typed results, `current_process`/`parent_process`, `active_children`, `cpu_count`,
//! the fork start method with a capturing closure, `wait` on sentinels, and the exit policy.
//!
//! The seed's sleeps are multiplied by `SEED_SLEEP_SCALE` (default 0.1 here, so the whole tour
//! takes a few seconds; set it to 1 for the seed's real timings).
//!
//! Everything here is self-contained: every target a child runs is defined in this file,
//! because a spawned child runs this same program again and finds its target inside it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use multiprocess::{Connection, Error, Process, Run, Waitable};
use serde::{Deserialize, Serialize};

// =============================================================================================
// Helpers

/// The sleep multiplier for the seed's examples: `SEED_SLEEP_SCALE`, default 0.1. Spawned
/// children inherit the environment, so they compute the same value.
fn scale() -> f64 {
    std::env::var("SEED_SLEEP_SCALE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .unwrap_or(0.1)
}

/// Sleeps `sec` seconds of the seed's time (times the scale).
fn seed_sleep(sec: u64) {
    std::thread::sleep(Duration::from_secs_f64(sec as f64 * scale()));
}

/// Python's `randint(lo, hi)` (both ends included), one splitmix64 step seeded with the pid and
/// the clock: plenty for a demo, and no dependency.
fn randint(lo: u64, hi: u64) -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut z = (u64::from(std::process::id()) << 32 ^ nanos).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    lo + z % (hi - lo + 1)
}

/// The pid of this process's parent, as the library knows it (`os.getppid()`).
fn ppid() -> u32 {
    multiprocess::parent_process()
        .expect("only children call this")
        .pid()
}

/// Prints a section header and its explanation.
fn section(title: &str, text: &str) {
    println!();
    println!("=== {title} ===");
    for line in text.lines() {
        println!("  {line}");
    }
    println!();
}

/// Milliseconds since `t`.
fn ms(t: Instant) -> u128 {
    t.elapsed().as_millis()
}

// =============================================================================================
// Targets: what the children run

/// §1.3: `def test(): pass`.
fn test_pass() {}

/// §1.4.1: sleep a random 0–4 s, print the parent's pid and ours, then `Testing`.
fn test_random_sleep() {
    seed_sleep(randint(0, 4));
    println!("{} ------- {}", ppid(), std::process::id());
    println!("Testing");
}

/// §1.4.2's global `a = 10`.
static A_142: AtomicU64 = AtomicU64::new(10);

/// §1.4.2's `worker(sec)`.
fn worker_142(sec: u64) {
    println!("{}", A_142.load(Ordering::Relaxed));
    seed_sleep(sec);
    println!("worker ......");
    println!("{}", A_142.load(Ordering::Relaxed));
}

/// §1.4.3's global `a = 100`.
static A_143: AtomicU64 = AtomicU64::new(100);

/// §1.4.3's keyword arguments `{'sec': 2, 'msg': "child process"}`.
#[derive(Serialize, Deserialize)]
struct Kwargs {
    sec: u64,
    msg: String,
}

/// §1.4.3's `worker(sec, msg)`.
fn worker_143(Kwargs { sec, msg }: Kwargs) {
    println!("{}", A_143.load(Ordering::Relaxed));
    seed_sleep(sec);
    println!("{} ------- {}", ppid(), std::process::id());
    println!("{msg}");
    println!("{}", A_143.load(Ordering::Relaxed));
}

/// §1.4.4's `test(name)`.
fn test_guard(name: String) {
    println!("Process ID: {} ({name})", std::process::id());
    println!("Parent Process ID: {}", ppid());
}

/// Python's subclass overriding `run`: an upper-casing echo.
#[derive(Serialize, Deserialize)]
struct Shouter {
    words: String,
}

impl Run for Shouter {
    type Output = String;
    fn run(self) -> String {
        println!(
            "    [child {}] shouting {:?}",
            std::process::id(),
            self.words
        );
        self.words.to_uppercase()
    }
}

/// Sleeps `ms` milliseconds (not scaled).
fn nap(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// Sleeps, then returns `ms` (so a result shows which child it was).
fn nap_and_return(ms: u64) -> u64 {
    nap(ms);
    ms
}

/// Ends the process with `code` through `multiprocess::exit` (Python's `sys.exit(code)`).
fn exit_with(code: i32) {
    multiprocess::exit(code)
}

/// Panics with `message`.
fn boom(message: String) -> u64 {
    panic!("{message}")
}

/// A typed result.
fn square(x: u64) -> u64 {
    x * x
}

/// What a child knows about itself and its parent.
#[derive(Debug, Serialize, Deserialize)]
struct Who {
    name: String,
    pid: u32,
    ident: Vec<u64>,
    daemon: bool,
    authkey: Vec<u8>,
    parent_name: Option<String>,
    parent_pid: Option<u32>,
    parent_alive: Option<bool>,
}

/// Reports `current_process()` and `parent_process()` as the child sees them.
fn whoami() -> Who {
    let me = multiprocess::current_process();
    let parent = multiprocess::parent_process();
    Who {
        name: me.name(),
        pid: me.pid(),
        ident: me.ident(),
        daemon: me.daemon(),
        authkey: me.authkey().to_vec(),
        parent_name: parent.as_ref().map(|p| p.name().to_owned()),
        parent_pid: parent.as_ref().map(|p| p.pid()),
        parent_alive: parent.as_ref().map(|p| p.is_alive()),
    }
}

/// Reads a global: under spawn a child sees its initial value, under fork the parent's current one.
fn read_a_142() -> u64 {
    A_142.load(Ordering::Relaxed)
}

/// Starts a daemonic grandchild that would sleep a minute, and returns its pid at once. When this
/// child's target returns, the exit policy terminates the grandchild.
fn start_daemon_grandchild() -> u32 {
    let mut g = Process::new(nap, (60_000,))
        .with_name("sleepy-daemon")
        .with_daemon(true);
    g.start().expect("starting the grandchild");
    g.pid().expect("started")
}

/// Starts a non-daemonic grandchild sleeping `ms`, and returns its name at once. The exit policy
/// makes this child wait for it before exiting.
fn start_grandchild(ms: u64) -> String {
    let mut g = Process::new(nap, (ms,));
    g.start().expect("starting the grandchild");
    g.name()
}

/// Tries to start a child (from a daemonic process, where Python forbids it).
fn try_to_start_child() -> String {
    match Process::new(nap, (1,)).start() {
        Ok(()) => "started a child".into(),
        Err(e) => format!("Err({e})"),
    }
}

// =============================================================================================
// Pipes and listeners

/// Answers each number with its square until it gets 0.
fn squarer(conn: Connection) -> u32 {
    let mut answered = 0;
    while let Ok(n) = conn.recv::<u64>() {
        if n == 0 {
            break;
        }
        conn.send(&(n * n)).expect("parent is listening");
        answered += 1;
    }
    answered
}

fn pipes_and_listeners() -> multiprocess::Result<()> {
    section(
        "Pipe and Connection",
        "pipe() gives two connected ends. An end passed as a Process argument arrives working\n\
         in the child: its OS handle travels beside the arguments (SCM_RIGHTS on Unix,\n\
         DuplicateHandle on Windows). Messages are framed exactly as CPython frames them.",
    );
    let (ours, theirs) = multiprocess::pipe()?;
    let mut p = Process::new(squarer, (theirs,)).with_name("squarer");
    p.start()?;
    for n in [3u64, 12, 99] {
        ours.send(&n)?;
        println!("  sent {n}, the child answered {}", ours.recv::<u64>()?);
    }
    ours.send(&0u64)?;
    println!("  the child answered {} questions", p.result::<u32>()?);

    let (a, b) = multiprocess::pipe()?;
    let t = Instant::now();
    let ready = multiprocess::wait(&[&a, &b], Some(Duration::from_millis(50)))?;
    println!("  wait() on two quiet ends: {ready:?} after {} ms", ms(t));
    b.send_bytes(b"ping")?;
    println!(
        "  after a send: ready = {:?}",
        multiprocess::wait(&[&a, &b], None)?
    );
    println!("  received {:?}", String::from_utf8_lossy(&a.recv_bytes()?));

    section(
        "Large messages",
        "Between the two ends of one pipe, a message of 1 MiB or more is copied straight from\n\
         the sender's memory into the receiver's buffer, by both processes at once (Linux:\n\
         process_vm_readv/writev); a late receiver gets it through the stream as before.",
    );
    let (ours, theirs) = multiprocess::pipe()?;
    let mut p = Process::new(echo_large, (theirs,)).with_name("echo");
    p.start()?;
    let message = vec![0x5au8; 32 << 20];
    let mut back = vec![0u8; message.len()];
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        ours.send_bytes(&message)?;
        let n = ours.recv_bytes_into(&mut back, 0)?;
        assert!(n == message.len() && back == message, "echo differs");
        best = best.min(t.elapsed().as_secs_f64());
    }
    ours.send_bytes(b"")?;
    p.join()?;
    println!(
        "  32 MiB there and back: {:.1} ms at best of 5 ({:.1} GB/s counting both ways)",
        best * 1e3,
        2.0 * message.len() as f64 / best / 1e9
    );

    section(
        "Listener and Client with an authkey",
        "Listener/client speak CPython's challenge protocol (HMAC, mutual), so either end can be\n\
         a Python program. A wrong key fails on both sides with Python's messages.",
    );
    let address = multiprocess::connection::Address::Tcp(([127, 0, 0, 1], 0).into());
    match multiprocess::connection::Listener::bind(Some(address), Some(b"tour key")) {
        Err(e) => println!("  (not on this platform yet: {e})"),
        Ok(listener) => {
            let address = listener.address().clone();
            let wrong = address.clone();
            let client = std::thread::spawn(move || {
                let conn = multiprocess::connection::client(&address, Some(b"tour key"))?;
                conn.send(&"hello over TCP")?;
                let denied = multiprocess::connection::client(&wrong, Some(b"wrong key"));
                Ok::<_, multiprocess::Error>(denied.err())
            });
            let conn = listener.accept()?;
            println!(
                "  listener {:?} received {:?}",
                listener.address(),
                conn.recv::<String>()?
            );
            let refused = listener.accept().err();
            let denied = client.join().expect("client thread")?;
            println!(
                "  wrong key, listener side: {}",
                refused.map_or("accepted?!".into(), |e| e.to_string())
            );
            println!(
                "  wrong key, client side:   {}",
                denied.map_or("accepted?!".into(), |e| e.to_string())
            );
        }
    }
    Ok(())
}

fn echo_large(conn: Connection) {
    let mut buf = vec![0u8; 32 << 20];
    while let Ok(n) = conn.recv_bytes_into(&mut buf, 0) {
        if n == 0 || conn.send_bytes(&buf[..n]).is_err() {
            break;
        }
    }
}

fn produce(q: multiprocess::Queue<String>, id: u32) {
    for i in 0..3 {
        q.put(&format!("producer {id}, item {i}")).expect("put");
    }
}

fn add_under_lock(counter: multiprocess::Value<u64>, times: u32) {
    for _ in 0..times {
        *counter.lock().expect("lock") += 1;
    }
}

fn hold_and_die(lock: multiprocess::Lock, held: multiprocess::Event) {
    lock.acquire().expect("acquire");
    held.set();
    std::thread::sleep(Duration::from_secs(60));
}

fn write_greeting(name: String) {
    let mut shm = multiprocess::SharedMemory::attach(&name).expect("attach");
    shm.buf_mut()[..5].copy_from_slice(b"hello");
}

fn shared_state() -> multiprocess::Result<()> {
    section(
        "Queue",
        "A Queue is a ring in shared memory: put() copies the value in (or fails at once if it\n\
         cannot be encoded), so a producer may exit right after it; Python's 'joining processes\n\
         that use queues' deadlock cannot happen. Each producer's order is kept.",
    );
    let q = multiprocess::Queue::<String>::new()?;
    let mut producers: Vec<Process> = (1..=2)
        .map(|id| Process::new(produce, (q.clone(), id)))
        .collect();
    for p in &mut producers {
        p.start()?;
        p.join()?; // joined before anything is read: no deadlock
    }
    println!(
        "  both producers exited; {} items wait in the queue",
        q.qsize()
    );
    while let Ok(item) = q.get_nowait() {
        println!("  got {item:?}");
    }

    section(
        "Lock and Value",
        "Four processes add 10,000 each to a shared counter under its lock. The lock is a word\n\
         in shared memory: no system call unless processes contend.",
    );
    let counter = multiprocess::Value::new(0u64)?;
    let mut adders: Vec<Process> = (0..4)
        .map(|_| Process::new(add_under_lock, (counter.clone(), 10_000u32)))
        .collect();
    let t = Instant::now();
    for p in &mut adders {
        p.start()?;
    }
    for p in &mut adders {
        p.join()?;
    }
    println!("  counter = {} after {} ms", counter.get()?, ms(t));

    section(
        "A lock whose holder died",
        "Beyond Python: a process killed while holding a Lock does not deadlock the others. The\n\
         next acquirer gets Error::OwnerDied and the lock works again.",
    );
    let lock = multiprocess::Lock::new()?;
    let held = multiprocess::Event::new()?;
    let mut p = Process::new(hold_and_die, (lock.clone(), held.clone())).with_name("holder");
    p.start()?;
    held.wait();
    p.kill()?;
    p.join()?;
    match lock.acquire_timeout(Duration::from_secs(10)) {
        Err(e) => println!("  acquire: {e}"),
        Ok(got) => println!("  acquire returned {got}"),
    }
    lock.acquire()?;
    println!("  and again: acquired");
    lock.release()?;

    section(
        "SharedMemory",
        "A named segment, attached by name in the child. Python's multiprocessing.shared_memory\n\
         can attach it too.",
    );
    let shm = multiprocess::SharedMemory::create(None, 64)?;
    let mut p = Process::new(write_greeting, (shm.name().to_string(),));
    p.start()?;
    p.join()?;
    println!(
        "  {} ({} bytes) now starts with {:?}",
        shm.name(),
        shm.size(),
        String::from_utf8_lossy(&shm.buf()[..5])
    );
    shm.unlink()?;
    Ok(())
}

fn cube(x: u64) -> u64 {
    x * x * x
}

fn crash_on(x: u64) -> u64 {
    if x == 3 {
        multiprocess::exit(7);
    }
    x
}

fn pool_section() -> multiprocess::Result<()> {
    section(
        "Pool",
        "A Pool of worker processes: map, imap, apply_async. The parent knows which task each\n\
         worker holds, so a worker that dies fails exactly its task (Python's pool hangs), and\n\
         a new worker takes its place.",
    );
    let pool = multiprocess::Pool::new(2)?;
    println!("  map(cube, 0..8) = {:?}", pool.map(cube, 0..8u64)?);
    let firsts: Vec<u64> = pool
        .imap_chunked(cube, 1u64.., 4)?
        .take(5)
        .collect::<multiprocess::Result<_>>()?;
    println!("  imap over an endless input, first five: {firsts:?}");
    let results: Vec<_> = (0..6u64)
        .map(|i| pool.apply_async(crash_on, (i,)))
        .collect::<multiprocess::Result<_>>()?;
    for (i, r) in results.iter().enumerate() {
        match r.get() {
            Ok(v) => println!("  task {i}: {v}"),
            Err(e) => println!("  task {i}: {e}"),
        }
    }
    // Beyond Python: a time limit per task, cancelling, and messages larger than the channel.
    let options = multiprocess::TaskOptions::new().timeout(Duration::from_millis(200));
    let slow = pool.apply_async_with(nap_ms, (10_000,), options)?;
    let running = pool.apply_async(nap_ms, (300,))?;
    let queued = pool.apply_async(nap_ms, (1,))?;
    queued.cancel();
    println!(
        "  a 10 s task with a 200 ms limit: {}",
        slow.get().unwrap_err()
    );
    println!(
        "  a queued task, cancelled: {} (it never ran)",
        queued.get().unwrap_err()
    );
    println!("  the task before it: {} ms", running.get()?);
    let t = Instant::now();
    let sizes: Vec<usize> = (0..8u32)
        .map(|_| pool.apply_async(grown, (multiprocess::Bytes(vec![1; 1 << 20]), 12)))
        .collect::<multiprocess::Result<Vec<_>>>()?
        .iter()
        .map(|r| r.get().map(|b| b.0.len()))
        .collect::<multiprocess::Result<_>>()?;
    println!(
        "  8 tasks of 1 MiB returning {} MiB each (more than a worker's 8 MiB channel): {:.0} ms",
        sizes[0] >> 20,
        t.elapsed().as_secs_f64() * 1e3
    );
    pool.close();
    pool.join()?;
    Ok(())
}

/// Sleeps `ms` milliseconds and returns them.
fn nap_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// `b` repeated `times` times.
fn grown(b: multiprocess::Bytes, times: usize) -> multiprocess::Bytes {
    multiprocess::Bytes(b.0.repeat(times))
}

/// A child that adds to a manager's dict and list through proxies it was given; returns how
/// many words it counted.
fn tally(
    counts: multiprocess::managers::DictProxy<String, u32>,
    log: multiprocess::managers::ListProxy<String>,
) -> usize {
    let words = ["to", "be", "or", "not", "to", "be"];
    for word in words {
        let n = counts.get(&word.to_string()).expect("manager").unwrap_or(0);
        counts.set(&word.to_string(), &(n + 1)).expect("manager");
    }
    let line = format!("child {} counted {} words", std::process::id(), words.len());
    log.append(&line).expect("manager");
    words.len()
}

/// An object of the program's own type, held by a manager.
#[derive(Serialize, Deserialize)]
struct Leaderboard {
    best: Vec<(String, u32)>,
}

#[derive(Serialize, Deserialize)]
enum BoardCall {
    Submit(String, u32),
    Top(usize),
}

impl multiprocess::managers::Managed for Leaderboard {
    type Call = BoardCall;
    type Reply = Vec<(String, u32)>;
    fn handle(&mut self, call: BoardCall) -> Vec<(String, u32)> {
        match call {
            BoardCall::Submit(name, score) => {
                self.best.push((name, score));
                self.best.sort_by_key(|entry| std::cmp::Reverse(entry.1));
                Vec::new()
            }
            BoardCall::Top(n) => self.best.iter().take(n).cloned().collect(),
        }
    }
}

fn play(board: multiprocess::managers::Proxy<Leaderboard>, name: String) -> u32 {
    let score = (std::process::id() % 97) + name.len() as u32;
    board
        .call(&BoardCall::Submit(name, score))
        .expect("manager");
    score
}

fn executor_section() -> multiprocess::Result<()> {
    use multiprocess::executor::{ProcessPoolExecutor, ReturnWhen, as_completed, wait};
    section(
        "ProcessPoolExecutor (concurrent.futures)",
        "The same workers behind Python's concurrent.futures face: submit gives a Future with\n\
         result, exception, cancel and done callbacks; as_completed and wait take them as they\n\
         finish. A worker that dies fails only its own future (Python's BrokenProcessPool\n\
         breaks the whole executor).",
    );
    let executor = ProcessPoolExecutor::new(2)?;
    let futures: Vec<_> = (1..=4u64)
        .map(|i| executor.submit(cube, (i,)))
        .collect::<multiprocess::Result<_>>()?;
    let mut done: Vec<u64> = as_completed(&futures, None)
        .map(|f| f.and_then(|f| f.result()))
        .collect::<multiprocess::Result<_>>()?;
    done.sort();
    println!("  submit(cube, i) for 1..=4, as completed (sorted): {done:?}");
    let crash = executor.submit(crash_on, (3,))?;
    let fine = executor.submit(crash_on, (1,))?;
    let (finished, _) = wait(
        [&crash as &dyn multiprocess::executor::AnyFuture, &fine],
        None,
        ReturnWhen::AllCompleted,
    );
    println!(
        "  {} futures done; the crashed one: {:?}",
        finished.len(),
        crash.exception()?.map(|e| e.to_string())
    );
    println!("  the other: {}", fine.result()?);
    let cubes: Vec<u64> = executor
        .map(cube, 5..8u64)?
        .collect::<multiprocess::Result<_>>()?;
    println!("  map(cube, 5..8) = {cubes:?}");
    executor.shutdown(true, false);
    Ok(())
}

fn logging_section() -> multiprocess::Result<()> {
    use multiprocess::log::{Level, log_to_stderr};
    section(
        "Logging (log_to_stderr)",
        "The library reports what it does as tracing events; Python's log_to_stderr(level) prints\n\
         them as [LEVEL/ProcessName] lines, and children started afterwards inherit the level.\n\
         (Below, on stderr: a child's start and end at INFO.)",
    );
    let logger = log_to_stderr(Some(Level::Info));
    let mut p = Process::new(nap, (10,)).with_name("logged-child");
    p.start()?;
    p.join()?;
    logger.set_level(None);
    println!(
        "  logging off again; the child's exitcode: {:?}",
        p.exitcode()?
    );
    Ok(())
}

fn manager_section() -> multiprocess::Result<()> {
    section(
        "Manager",
        "A Manager is a process that holds shared objects; proxies in any process operate on\n\
         them by messages. Proxies are typed on our side only (any serde type), travel to\n\
         children as arguments, and a failed call keeps Python's exception name.",
    );
    let manager = multiprocess::Manager::start()?;
    let counts = manager.dict::<String, u32>()?;
    let log = manager.list::<String>()?;
    let mut p = Process::new(tally, (counts.clone(), log.clone()));
    p.start()?;
    println!("  the child counted {} words", p.result::<usize>()?);
    println!("  counts, in insertion order: {:?}", counts.items()?);
    println!("  log: {:?}", log.to_vec()?);
    match counts.get_item(&"question".to_string()) {
        Err(e) => println!("  counts[\"question\"] -> {e}"),
        Ok(n) => println!("  counts[\"question\"] = {n}"),
    }

    section(
        "A type of your own in a manager",
        "Python's register('Leaderboard', Leaderboard): here `impl Managed for Leaderboard`\n\
         (an enum of calls, a reply type, `handle`). The manager holds the value itself; three\n\
         children submit scores through their copies of the proxy.",
    );
    let board = manager.create(&Leaderboard { best: Vec::new() })?;
    let mut players: Vec<Process> = ["ada", "grace", "edsger"]
        .iter()
        .map(|name| Process::new(play, (board.clone(), name.to_string())))
        .collect();
    for p in &mut players {
        p.start()?;
    }
    for p in &players {
        p.join()?;
    }
    println!("  top two: {:?}", board.call(&BoardCall::Top(2))?);
    let pool = manager.pool(Some(2))?;
    println!(
        "  a pool run by the manager (Python's manager.Pool): squares {:?}",
        pool.map(square, 0..8u64)?
    );
    drop(pool);
    let before = manager.number_of_objects()?;
    drop(board);
    println!(
        "  objects held: {before}; once our last proxy of the leaderboard is dropped (the \
         children gave theirs back when they ended): {}",
        manager.number_of_objects()?
    );
    Ok(())
}

// The tour

fn main() -> multiprocess::Result<()> {
    multiprocess::init(); // first line: Rust's `if __name__ == "__main__":`
    let tour_start = Instant::now();

    println!("multiprocess tour: Python's multiprocessing, in Rust.");
    println!(
        "main process pid {}; seed sleeps scaled by {} (SEED_SLEEP_SCALE)",
        std::process::id(),
        scale()
    );

    seed_examples()?;
    process_features()?;
    results_and_identity()?;
    start_methods_and_waiting()?;
    exit_policy()?;
    pipes_and_listeners()?;
    shared_state()?;
    pool_section()?;
    executor_section()?;
    logging_section()?;
    manager_section()?;

    // The very last act: a daemonic child that would sleep a minute. Returning from main runs
    // the exit policy, which terminates it, so the tour ends now rather than in 60 s.
    let mut d = Process::new(nap, (60_000,))
        .with_name("last-daemon")
        .with_daemon(true);
    d.start()?;
    println!(
        "tour done in {} ms. main returns now with daemon {:?} (pid {}) still sleeping: the exit \
         policy terminates it, so the program ends at once.",
        ms(tour_start),
        d.name(),
        d.pid().unwrap_or(0)
    );
    Ok(())
}

/// Part 1: the seed's examples.
fn seed_examples() -> multiprocess::Result<()> {
    section(
        "Seed §1.3 — the basic example",
        "p = Process(target=test); p.start(); p.join()\n\
         Rust: Process::new(test, ()), then start() and join(None).\n\
         The Process object is a handle; the child is a new run of this same program.",
    );
    let mut p = Process::new(test_pass, ());
    println!("before start: {p:?}");
    p.start()?;
    p.join()?;
    println!("after join:   {p:?}  (exitcode {:?})", p.exitcode()?);

    section(
        "Seed §1.4.1 — five children",
        "Each child sleeps a random 0-4 s (scaled), then prints `<parent pid> ------- <own pid>`\n\
         and `Testing`. One parent pid, five child pids, in the order the sleeps end.",
    );
    let mut children = Vec::new();
    for _ in 0..5 {
        let mut p = Process::new(test_random_sleep, ());
        p.start()?;
        children.push(p);
    }
    for p in &children {
        p.join()?;
    }

    section(
        "Seed §1.4.2 — positional arguments, and a global rebound after the start",
        "Process::new(worker, (5,)).name(\"child\") — `(5,)` is a one-element tuple, as in Python.\n\
         The parent sets a = 100000 after starting the child: the child, a fresh run of the\n\
         program, still sees its own a = 10. Then the parent calls worker(1) itself.",
    );
    let mut p = Process::new(worker_142, (5,)).with_name("child");
    p.start()?;
    println!("{}", p.pid().expect("started"));
    println!("{}", p.name());
    println!("{}", p.is_alive()?);
    A_142.store(100_000, Ordering::Relaxed);
    p.join()?;
    println!("************main****************");
    worker_142(1);

    section(
        "Seed §1.4.3 — keyword arguments (a struct), one child per second",
        "Python's kwargs={'sec': 2, 'msg': ...} becomes a struct parameter Kwargs { sec, msg },\n\
         passed as the one-element tuple (Kwargs { .. },). Children Child0..Child4 start one\n\
         per (scaled) second; each prints its own a (100), the pids and the message.",
    );
    let mut last = None;
    for i in 0..5 {
        let kwargs = Kwargs {
            sec: 2,
            msg: "child process".into(),
        };
        let mut p = Process::new(worker_143, (kwargs,)).with_name(format!("Child{i}"));
        p.start()?;
        seed_sleep(1);
        last = Some(p);
    }
    A_143.store(100_000, Ordering::Relaxed);
    // As in the seed, only the last is joined; starting a process reaps the finished ones, and
    // the exit policy would join any left.
    if let Some(p) = last {
        p.join()?;
    }
    println!(
        "(the parent's a is now {}; active children left: {})",
        A_143.load(Ordering::Relaxed),
        multiprocess::active_children().len()
    );

    section(
        "Seed §1.4.4 — the __main__ guard",
        "Python on Windows starts a child by running the program again, so process creation\n\
         must sit under `if __name__ == \"__main__\":`. This crate starts children that way on\n\
         every OS, and `multiprocess::init()`, the first line of main, is the guard: in a\n\
         spawned child it runs the target and exits, so the child never reaches the code that\n\
         starts processes. (Code placed before init() would run again in every child, like\n\
         Python's module-level code: see examples/seed_1_4_4_main_guard.rs.)",
    );
    let mut p = Process::new(test_guard, ("nmask".to_string(),));
    p.start()?;
    p.join()?;

    section(
        "Subclassing Process and overriding run()",
        "A serde type implementing `Run` is the subclass: its fields travel to the child, its\n\
         run() is the child's work, and (beyond Python) its return value comes back.",
    );
    let mut p = Process::from_run(Shouter {
        words: "hello from a child".into(),
    });
    p.start()?;
    println!("result: {:?}", p.result::<String>()?);
    Ok(())
}

/// Part 2: the Process object's attributes and controls.
fn process_features() -> multiprocess::Result<()> {
    section(
        "Names, daemon flag, authentication key",
        "Default names count processes made here (Process-N); .name(), .daemon(), .authkey()\n\
         set them before start. The child sees them through current_process().",
    );
    let plain = Process::new(whoami, ());
    println!("default name: {}", plain.name());
    let mut p = Process::new(whoami, ())
        .with_name("worker")
        .with_daemon(true)
        .with_authkey(b"secret key");
    println!(
        "before start: {p:?}  is_daemon={} authkey={:?}",
        p.daemon(),
        p.authkey()
    );
    p.start()?;
    let who = p.result::<Who>()?;
    println!(
        "the child says: name={:?} daemon={} authkey={:?}",
        who.name,
        who.daemon,
        String::from_utf8_lossy(&who.authkey)
    );
    println!(
        "set_daemon after start: {:?}",
        p.set_daemon(false).map_err(|e| e.to_string())
    );
    let mut p = Process::new(whoami, ());
    p.start()?;
    let who = p.result::<Who>()?;
    println!(
        "without .authkey() a child inherits its parent's key ({} random bytes): same key = {}",
        who.authkey.len(),
        who.authkey[..] == *multiprocess::current_process().authkey()
    );

    section(
        "join with a timeout, terminate, kill",
        "join(Some(timeout)) returns when the time is up even if the child still runs.\n\
         terminate() sends SIGTERM (exitcode -15), kill() sends SIGKILL (exitcode -9).",
    );
    let mut p = Process::new(nap, (60_000,)).with_name("sleeper");
    p.start()?;
    let t = Instant::now();
    p.join_timeout(Duration::from_millis(200))?;
    println!(
        "join(200 ms) returned after {} ms: is_alive={} exitcode={:?}",
        ms(t),
        p.is_alive()?,
        p.exitcode()?
    );
    p.terminate()?;
    p.join()?;
    println!(
        "after terminate(): exitcode={:?}, result: {}",
        p.exitcode()?,
        p.result::<()>().unwrap_err()
    );
    let mut p = Process::new(nap, (60_000,)).with_name("sleeper-2");
    p.start()?;
    p.kill()?;
    p.join()?;
    println!("after kill():      exitcode={:?}", p.exitcode()?);
    p.close()?;
    println!(
        "after close(): is_alive -> {}",
        p.is_alive().map_err(|e| e.to_string()).unwrap_err()
    );

    section(
        "Exit codes",
        "0 when the target returns; n & 0xFF after exit(n) (so 256 reads as 0); -N after signal N.",
    );
    let mut p = Process::new(test_pass, ());
    p.start()?;
    p.join()?;
    println!("target returned   -> exitcode {:?}", p.exitcode()?);
    for code in [3, 255, 256] {
        let mut p = Process::new(exit_with, (code,));
        p.start()?;
        p.join()?;
        // A `()` target's value is its exit code 0 (not sent back), so exit(256) reads as Ok.
        let result = match p.result::<()>() {
            Ok(()) => "Ok(()): exit code 0 is a `()` target's return".to_string(),
            Err(e) => e.to_string(),
        };
        println!(
            "exit({code:<3})         -> exitcode {:?}; result(): {result}",
            p.exitcode()?
        );
    }

    section(
        "A panic in the child",
        "The child prints `Process <name>:` and the panic message on stderr (Python prints the\n\
         traceback), exits with code 1, and result() gives Error::Panicked with the message.",
    );
    let mut p = Process::new(boom, ("something went wrong".to_string(),)).with_name("doomed");
    p.start()?;
    p.join()?;
    println!("exitcode {:?}", p.exitcode()?);
    match p.result::<u64>() {
        Err(Error::Panicked { message }) => println!("result(): Error::Panicked {{ {message:?} }}"),
        other => println!("result(): unexpected {other:?}"),
    }

    section(
        "Python's rules, as errors",
        "Misuse gets Python's message as Error::State.",
    );
    let mut p = Process::new(test_pass, ());
    println!("join before start: {}", p.join().unwrap_err());
    p.start()?;
    println!("start twice:       {}", p.start().unwrap_err());
    p.join()?;
    Ok(())
}

/// Part 3: values, identities, the process table.
fn results_and_identity() -> multiprocess::Result<()> {
    section(
        "Typed results (beyond Python)",
        "result::<R>() waits and returns the target's value; R is checked against the target.\n\
         run() calls the target in this process, as Python's p.run() does.",
    );
    let mut p = Process::new(square, (7,));
    p.start()?;
    println!("square(7) in a child: {}", p.result::<u64>()?);
    println!(
        "asking for the wrong type: {}",
        p.result::<String>().unwrap_err()
    );
    let mut local = Process::new(square, (6,));
    println!(
        "square(6) via run(), in this process: {}",
        local.run::<u64>()?
    );

    section(
        "current_process() and parent_process()",
        "The main process is MainProcess with no parent; a child knows its name, identity and\n\
         parent (whose liveness it can test).",
    );
    let me = multiprocess::current_process();
    println!(
        "here: name={} pid={} ident={:?} parent={:?}",
        me.name(),
        me.pid(),
        me.ident(),
        multiprocess::parent_process().map(|p| p.pid())
    );
    let mut p = Process::new(whoami, ());
    p.start()?;
    let who = p.result::<Who>()?;
    println!(
        "child: name={} pid={} ident={:?} parent={:?} (pid {:?}, alive: {:?})",
        who.name, who.pid, who.ident, who.parent_name, who.parent_pid, who.parent_alive
    );

    section(
        "active_children() and cpu_count()",
        "active_children() lists the started children that have not ended (reaping the rest).\n\
         cpu_count() honours the CPU affinity mask and cgroup quota.",
    );
    let mut sleepers = Vec::new();
    for i in 0..3 {
        let mut p = Process::new(nap, (300,)).with_name(format!("napper-{i}"));
        p.start()?;
        sleepers.push(p);
    }
    let names: Vec<String> = multiprocess::active_children()
        .iter()
        .map(Process::name)
        .collect();
    println!("active while napping: {names:?}");
    for p in &sleepers {
        p.join()?;
    }
    println!(
        "active after join:    {:?}",
        multiprocess::active_children()
            .iter()
            .map(Process::name)
            .collect::<Vec<_>>()
    );
    println!("cpu_count() = {}", multiprocess::cpu_count());
    Ok(())
}

/// Part 4: start methods, fork with a closure, waiting on sentinels.
fn start_methods_and_waiting() -> multiprocess::Result<()> {
    section(
        "Start methods",
        "spawn (default, every OS) runs the program again; fork (Unix) copies the parent;\n\
         forkserver (Unix) asks a server process, started once, to fork a child that then\n\
         bootstraps as a spawned one (spawn's rules, without running the program again).",
    );
    println!(
        "get_all_start_methods() = {:?}",
        multiprocess::get_all_start_methods()
    );
    println!(
        "get_start_method()      = {:?}",
        multiprocess::get_start_method()
    );
    match multiprocess::get_context(multiprocess::StartMethod::Forkserver) {
        Ok(ctx) => {
            let time_one = |p: &mut Process| -> multiprocess::Result<u128> {
                let t = Instant::now();
                p.start()?;
                p.join()?;
                Ok(t.elapsed().as_micros())
            };
            let mut first = ctx.process(square, (4u64,));
            let with_server = time_one(&mut first)?;
            let (mut served_us, mut spawned_us) = (u128::MAX, u128::MAX);
            for _ in 0..5 {
                served_us = served_us.min(time_one(&mut ctx.process(square, (5u64,)))?);
                spawned_us = spawned_us.min(time_one(&mut Process::new(square, (6u64,)))?);
            }
            println!(
                "forkserver: {} returned {} (server pid {:?}); start + join took {with_server} µs \
                 the first time (the server starts), then {served_us} µs (best of 5); spawn \
                 {spawned_us} µs",
                first.name(),
                first.result::<u64>()?,
                multiprocess::forkserver::server_pid(),
            );
        }
        Err(e) => println!("get_context(\"forkserver\") -> {e}"),
    }

    section(
        "fork: a closure that captures state",
        "With the fork context a child can run any FnOnce + Send closure, captures included,\n\
         and sees the parent's memory as it was at the fork (a = 100000, where a spawned child\n\
         sees 10). Spawn cannot send captured state, and says so.",
    );
    match multiprocess::get_context(multiprocess::StartMethod::Fork) {
        Ok(ctx) => {
            let words = ["captured", "by", "the", "closure"];
            let base = 1000u64;
            let mut p = ctx.process_closure(move || {
                format!(
                    "{} (base {base}, a = {})",
                    words.join(" "),
                    A_142.load(Ordering::Relaxed)
                )
            });
            println!("made through the fork context: {}", p.name());
            p.start()?;
            println!("fork child returned: {:?}", p.result::<String>()?);
            let mut fork_read = ctx.process(read_a_142, ());
            fork_read.start()?;
            let mut spawn_read = Process::new(read_a_142, ());
            spawn_read.start()?;
            println!(
                "a as a fork child sees it: {}; as a spawn child sees it: {}",
                fork_read.result::<u64>()?,
                spawn_read.result::<u64>()?
            );
        }
        Err(e) => println!("(no fork on this platform: {e})"),
    }
    let mut p = Process::from_closure(move || 1u8);
    println!(
        "a closure with spawn: {}",
        p.start().map_err(|e| e.to_string()).unwrap_err()
    );

    section(
        "wait() on sentinels",
        "multiprocess::wait(&[&s1, &s2, ...], timeout) returns the indices of the sentinels\n\
         whose processes ended: here three children napping 300, 100 and 200 ms.",
    );
    let t = Instant::now();
    let mut procs = Vec::new();
    for nap_ms in [300u64, 100, 200] {
        let mut p = Process::new(nap_and_return, (nap_ms,)).with_name(format!("nap-{nap_ms}"));
        p.start()?;
        procs.push(p);
    }
    let sentinels = procs
        .iter()
        .map(Process::sentinel)
        .collect::<multiprocess::Result<Vec<_>>>()?;
    let mut done = vec![false; procs.len()];
    while done.iter().any(|d| !d) {
        let pending: Vec<usize> = (0..procs.len()).filter(|&i| !done[i]).collect();
        let objects: Vec<&dyn Waitable> = pending
            .iter()
            .map(|&i| &sentinels[i] as &dyn Waitable)
            .collect();
        for k in multiprocess::wait(&objects, None)? {
            let i = pending[k];
            done[i] = true;
            println!(
                "  after {:>3} ms: {} ended, returning {}",
                ms(t),
                procs[i].name(),
                procs[i].result::<u64>()?
            );
        }
    }
    let t = Instant::now();
    let mut p = Process::new(nap, (60_000,));
    p.start()?;
    let ready = multiprocess::wait(&[&p.sentinel()?], Some(Duration::from_millis(100)))?;
    println!(
        "wait with a 100 ms timeout on a long sleeper: {ready:?} after {} ms",
        ms(t)
    );
    p.kill()?;
    p.join()?;
    Ok(())
}

/// Part 5: the exit policy.
fn exit_policy() -> multiprocess::Result<()> {
    section(
        "The exit policy",
        "When a process exits, it terminates its daemonic children, then joins all the others\n\
         (Python's rule). Each child below starts a grandchild and returns at once.",
    );
    let t = Instant::now();
    let mut p = Process::new(start_daemon_grandchild, ()).with_name("parent-of-daemon");
    p.start()?;
    let grandchild = p.result::<u32>()?;
    println!(
        "daemonic grandchild (would sleep 60 s), pid {grandchild}: its parent ended after {} ms,",
        ms(t)
    );
    if cfg!(target_os = "linux") {
        println!(
            "  and the grandchild is {}",
            if std::path::Path::new(&format!("/proc/{grandchild}")).exists() {
                "STILL RUNNING (unexpected)"
            } else {
                "gone (terminated by the exit policy)"
            }
        );
    }
    let t = Instant::now();
    let mut p = Process::new(start_grandchild, (500,)).with_name("parent-of-napper");
    p.start()?;
    let name = p.result::<String>()?;
    println!(
        "non-daemonic grandchild {name} napping 500 ms: its parent ended after {} ms (it waited)",
        ms(t)
    );
    let mut p = Process::new(try_to_start_child, ()).with_daemon(true);
    p.start()?;
    println!(
        "a daemonic process trying to start a child: {}",
        p.result::<String>()?
    );
    Ok(())
}
