//! `ProcessPoolExecutor` (Python's `concurrent.futures`) with real worker processes: results
//! and errors, a future's states and cancel, done callbacks, `map`, `as_completed`, `wait`,
//! `shutdown`, a killed worker, the initializer and `max_tasks_per_child`.
//!
//! Tasks that must stay running are held at a gate (a file the test creates), and say that
//! they started with a file of their own: no sleep stands in for a signal. Every test runs
//! under a hard time limit.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use multiprocess::Error;
use multiprocess::executor::{
    AnyFuture, Future, ProcessPoolExecutor, ReturnWhen, as_completed, wait,
};

const TIMEOUT: Duration = Duration::from_secs(30);
const LONG: Option<Duration> = Some(TIMEOUT);

/// Runs `test` on a thread of its own; fails if it takes longer than `limit`.
fn within<T: Send + 'static>(limit: Duration, test: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        let value = test();
        let _ = tx.send(value);
    });
    match rx.recv_timeout(limit) {
        Ok(value) => {
            let _ = handle.join();
            value
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => match handle.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => panic!("the test ended without a value"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("HUNG: not done within {limit:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Tasks (function items: they run in the workers).

fn square(x: u64) -> u64 {
    x * x
}

fn divide(a: u64, b: u64) -> u64 {
    a / b
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn die(code: i32) -> u64 {
    std::process::exit(code)
}

fn my_pid(_: u32) -> u32 {
    std::process::id()
}

/// Writes its pid to `<gate>.started`, then waits (at most a minute) until `<gate>.go`
/// exists; returns the gate.
fn gate(path: String) -> String {
    let _ = std::fs::write(format!("{path}.tmp"), std::process::id().to_string());
    let _ = std::fs::rename(format!("{path}.tmp"), format!("{path}.started"));
    let go = format!("{path}.go");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !Path::new(&go).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    path
}

static SEED: AtomicU32 = AtomicU32::new(0);

fn init_seed(v: u32) {
    SEED.fetch_add(v, Ordering::SeqCst);
}

fn read_seed(_: u32) -> u32 {
    SEED.load(Ordering::SeqCst)
}

fn bad_init() {
    panic!("cannot initialise");
}

// ---------------------------------------------------------------------------------------------
// Gates.

/// A closed gate's path (as the task's argument).
fn new_gate(name: &str) -> String {
    let path = common::scratch(name);
    for ext in ["started", "go", "tmp"] {
        let _ = std::fs::remove_file(with_ext(&path, ext));
    }
    path.to_string_lossy().into_owned()
}

fn with_ext(path: impl AsRef<Path>, ext: &str) -> PathBuf {
    PathBuf::from(format!("{}.{ext}", path.as_ref().display()))
}

/// Waits until the task at `gate` has started; its worker's pid.
fn started(gate: &str) -> u32 {
    let path = with_ext(gate, "started");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(pid) = std::fs::read_to_string(&path) {
            return pid.trim().parse().expect("a pid");
        }
        assert!(Instant::now() < deadline, "{gate} never started");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn open(gate: &str) {
    std::fs::write(with_ext(gate, "go"), b"").expect("open the gate");
}

/// Waits (at most 30 s) until `f` says true.
fn until(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

// ---------------------------------------------------------------------------------------------

/// Values and errors: a panicking task's error comes from `result` and from `exception`; Python's
/// texts for invalid arguments and for work after shutdown.
#[test]
fn results_and_errors() {
    multiprocess::init_test();
    let _g = common::start();
    within(Duration::from_secs(60), || {
        let e = ProcessPoolExecutor::new(0).unwrap_err();
        assert_eq!(e.to_string(), "max_workers must be greater than 0");
        let e = ProcessPoolExecutor::builder()
            .max_workers(1)
            .max_tasks_per_child(0)
            .build()
            .unwrap_err();
        assert_eq!(e.to_string(), "max_tasks_per_child must be >= 1");

        let executor = ProcessPoolExecutor::new(2).unwrap();
        let good = executor.submit(divide, (84, 2)).unwrap();
        let bad = executor.submit(divide, (1, 0)).unwrap();
        assert_eq!(good.result_timeout(TIMEOUT).unwrap(), 42);
        assert_eq!(
            good.result_timeout(TIMEOUT).unwrap(),
            42,
            "a second result is the same"
        );
        assert!(good.exception_timeout(TIMEOUT).unwrap().is_none());
        match bad.result_timeout(TIMEOUT) {
            Err(Error::Panicked { message }) => assert!(message.contains("divide"), "{message}"),
            other => panic!("{other:?}"),
        }
        match bad.exception_timeout(TIMEOUT) {
            Ok(Some(Error::Panicked { message })) => assert!(message.contains("zero")),
            other => panic!("{other:?}"),
        }
        assert!(!bad.cancelled() && bad.done());

        // A result not there in time is a timeout; the task goes on.
        let slow = executor.submit(sleep_ms, (400,)).unwrap();
        let t = Instant::now();
        assert!(matches!(
            slow.result_timeout(Duration::from_millis(50)),
            Err(Error::Timeout)
        ));
        assert!(matches!(
            slow.exception_timeout(Duration::from_millis(1)),
            Err(Error::Timeout)
        ));
        assert!(t.elapsed() < Duration::from_millis(390));
        assert_eq!(slow.result_timeout(TIMEOUT).unwrap(), 400);

        executor.shutdown(true, false);
        executor.shutdown(true, false); // again: harmless
        let e = executor.submit(square, (1,)).unwrap_err();
        assert_eq!(e.to_string(), "cannot schedule new futures after shutdown");
        let e = executor.map(square, [1u64]).unwrap_err();
        assert_eq!(e.to_string(), "cannot schedule new futures after shutdown");
        // Results stay readable after shutdown.
        assert_eq!(good.result().unwrap(), 42);
    });
}

/// A future's states through its life, and `cancel` of a queued, a waiting-in-the-worker,
/// a running and a finished one: only those no worker has started cancel, they are done at
/// once, and the tasks after them still run and answer correctly.
#[test]
fn cancel_and_states() {
    multiprocess::init_test();
    let _g = common::start();
    within(Duration::from_secs(60), || {
        let executor = ProcessPoolExecutor::new(1).unwrap();
        let a = new_gate("cancel-a");
        let running = executor.submit(gate, (a.clone(),)).unwrap();
        // The pool sends a busy worker up to 32 tasks; these wait in its channel, and those
        // after them in the pool's queue.
        let rest: Vec<Future<u64>> = (0..40)
            .map(|i| executor.submit(square, (i,)).unwrap())
            .collect();
        started(&a);
        until("the gate task runs", || running.running());
        assert!(!running.done() && !running.cancelled());
        assert_eq!(format!("{running:?}"), "<Future state=running>");
        let in_channel = &rest[0];
        let in_queue = &rest[39];
        for f in [in_channel, in_queue] {
            assert!(!f.running() && !f.done());
            assert_eq!(format!("{f:?}"), "<Future state=pending>");
        }

        assert!(!running.cancel(), "a running task does not cancel");
        let called = Arc::new(AtomicUsize::new(0));
        for f in [in_channel, in_queue] {
            let c = called.clone();
            f.add_done_callback(move |f| {
                assert!(f.cancelled() && f.done());
                c.fetch_add(1, Ordering::SeqCst);
            });
            assert!(f.cancel(), "a task no worker started cancels");
            assert!(f.cancelled() && f.done() && !f.running());
            assert!(f.cancel(), "cancelling again says true");
            assert!(matches!(f.result(), Err(Error::Cancelled)));
            assert!(matches!(f.exception(), Err(Error::Cancelled)));
            assert_eq!(format!("{f:?}"), "<Future state=cancelled>");
        }
        assert_eq!(called.load(Ordering::SeqCst), 2, "callbacks ran in cancel");

        assert!(running.running(), "still running");
        open(&a);
        assert_eq!(running.result_timeout(TIMEOUT).unwrap(), a);
        assert!(!running.running() && running.done());
        assert!(!running.cancel(), "a finished task does not cancel");
        assert!(!running.cancelled());
        assert_eq!(format!("{running:?}"), "<Future state=finished>");
        for (i, f) in rest.iter().enumerate() {
            if i == 0 || i == 39 {
                continue;
            }
            assert_eq!(
                f.result_timeout(TIMEOUT).unwrap(),
                (i * i) as u64,
                "task {i}"
            );
            assert!(!f.cancelled());
        }
        assert_eq!(called.load(Ordering::SeqCst), 2, "each callback ran once");
    });
}

/// Done callbacks: each runs once, in order, after the future is done (it can read the result
/// there); one added to a done future runs at once on the caller's thread; a panicking one
/// hurts neither the others nor the executor.
#[test]
fn done_callbacks() {
    multiprocess::init_test();
    let _g = common::start();
    within(Duration::from_secs(60), || {
        let executor = ProcessPoolExecutor::new(2).unwrap();
        let a = new_gate("callbacks-a");
        let future = executor.submit(gate, (a.clone(),)).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        for n in 0..3 {
            let seen = seen.clone();
            future.add_done_callback(move |f| {
                let value = f
                    .result_timeout(Duration::ZERO)
                    .expect("done in a callback");
                seen.lock()
                    .unwrap()
                    .push((n, value, std::thread::current().id()));
            });
            if n == 1 {
                future.add_done_callback(|_| panic!("a callback that panics"));
            }
        }
        started(&a);
        assert!(seen.lock().unwrap().is_empty(), "no callback before done");
        open(&a);
        until("the callbacks ran", || seen.lock().unwrap().len() == 3);
        let me = std::thread::current().id();
        {
            let seen = seen.lock().unwrap();
            assert_eq!(
                seen.iter().map(|s| s.0).collect::<Vec<_>>(),
                [0, 1, 2],
                "in order"
            );
            assert!(
                seen.iter().all(|s| s.1 == a && s.2 != me),
                "on a pool thread"
            );
        }
        // Already done: at once, here.
        let here = Arc::new(Mutex::new(None));
        let h = here.clone();
        future.add_done_callback(move |_| *h.lock().unwrap() = Some(std::thread::current().id()));
        assert_eq!(*here.lock().unwrap(), Some(me));
        assert_eq!(
            executor
                .submit(square, (3,))
                .unwrap()
                .result_timeout(TIMEOUT)
                .unwrap(),
            9
        );
        executor.shutdown(true, false);
        assert_eq!(seen.lock().unwrap().len(), 3, "each ran once");
    });
}

/// `map` gives results in input order whatever the order they finish in, and ends after the
/// first error; its timeout counts from the call, and a result not there by then is a
/// timeout after which the iterator ends.
#[test]
fn map_order_errors_and_timeout() {
    multiprocess::init_test();
    let _g = common::start();
    within(Duration::from_secs(60), || {
        let executor = ProcessPoolExecutor::new(3).unwrap();
        let durations = [300u64, 200, 100, 0, 50];
        let got: Vec<u64> = executor
            .map(sleep_ms, durations)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(got, durations);
        let squares: Vec<u64> = executor
            .map_with(square, 0..100u64, LONG, 7)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(squares, (0..100).map(|x| x * x).collect::<Vec<_>>());
        assert!(matches!(
            executor.map_with(square, [1u64], None, 0),
            Err(Error::InvalidArgument(_))
        ));

        let divided: Vec<_> = executor
            .map(sleep_then_divide, [4u64, 2, 0, 1])
            .unwrap()
            .collect();
        assert_eq!(divided.len(), 3, "{divided:?}");
        assert_eq!(divided[0].as_ref().unwrap(), &25);
        assert_eq!(divided[1].as_ref().unwrap(), &50);
        assert!(matches!(divided[2], Err(Error::Panicked { .. })));

        // The first is done before the timeout, the second is held at its gate.
        let fast = new_gate("map-fast");
        open(&fast);
        let slow = new_gate("map-slow");
        let call = Instant::now();
        let mut results = executor
            .map_with(
                gate,
                [fast.clone(), slow.clone()],
                Some(Duration::from_millis(500)),
                1,
            )
            .unwrap();
        started(&slow);
        // Read only after the limit has passed: the one already done still comes.
        while call.elapsed() < Duration::from_millis(600) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(results.next().unwrap().unwrap(), fast);
        let t = Instant::now();
        assert!(matches!(results.next(), Some(Err(Error::Timeout))));
        assert!(
            t.elapsed() < Duration::from_millis(300),
            "timed from the call"
        );
        assert!(results.next().is_none(), "ends after the timeout");
        open(&slow);
    });
}

fn sleep_then_divide(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(20));
    100 / x
}

/// `as_completed` yields the futures done already first, then each as it finishes; with a
/// timeout, an error once it passes, then the end.
#[test]
fn as_completed_order_and_timeout() {
    multiprocess::init_test();
    let _g = common::start();
    within(Duration::from_secs(60), || {
        // A worker for each of the four tasks held at gates.
        let executor = ProcessPoolExecutor::new(4).unwrap();
        let gates: Vec<String> = (0..3).map(|i| new_gate(&format!("asc-{i}"))).collect();
        let futures: Vec<Future<String>> = gates
            .iter()
            .map(|g| executor.submit(gate, (g.clone(),)).unwrap())
            .collect();
        for g in &gates {
            started(g);
        }
        let done_before = executor.submit(gate, (gates[1].clone(),)).unwrap();
        // Gate 1 opens first: the extra future on it and futures[1] finish before the rest.
        open(&gates[1]);
        until("gate 1 done", || done_before.done() && futures[1].done());
        let all: Vec<&Future<String>> = futures.iter().chain([&done_before]).collect();
        let mut order = as_completed(all.iter().copied().chain([&futures[0]]), LONG);
        let first: Vec<String> = (0..2)
            .map(|_| order.next().unwrap().unwrap().result().unwrap())
            .collect();
        assert_eq!(first, [gates[1].clone(), gates[1].clone()]);
        open(&gates[2]);
        assert_eq!(order.next().unwrap().unwrap().result().unwrap(), gates[2]);
        open(&gates[0]);
        assert_eq!(order.next().unwrap().unwrap().result().unwrap(), gates[0]);
        assert!(order.next().is_none(), "each future once");

        let held = new_gate("asc-held");
        let waiting = executor.submit(gate, (held.clone(),)).unwrap();
        let done = executor.submit(square, (5,)).unwrap();
        done.result_timeout(TIMEOUT).unwrap();
        let t = Instant::now();
        let got: Vec<_> = as_completed(
            [&waiting as &dyn AnyFuture, &done],
            Some(Duration::from_millis(300)),
        )
        .map(|r| r.map(|f| f.done()))
        .collect();
        assert!(
            t.elapsed() >= Duration::from_millis(290),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(matches!(got[0], Ok(true)));
        assert!(matches!(got[1], Err(Error::Timeout)));
        open(&held);
        waiting.result_timeout(TIMEOUT).unwrap();
    });
}

/// `wait` for each `ReturnWhen`, with and without a timeout.
#[test]
fn wait_return_when() {
    multiprocess::init_test();
    let _g = common::start();
    within(Duration::from_secs(60), || {
        let executor = ProcessPoolExecutor::new(3).unwrap();
        let (a, b) = (new_gate("wait-a"), new_gate("wait-b"));
        let fa = executor.submit(gate, (a.clone(),)).unwrap();
        let fb = executor.submit(gate, (b.clone(),)).unwrap();
        let both = [fa.clone(), fb.clone()];

        // Nothing done: a timeout returns everything as not done.
        let t = Instant::now();
        let (done, not_done) = wait(
            &both,
            Some(Duration::from_millis(200)),
            ReturnWhen::FirstCompleted,
        );
        assert!(t.elapsed() >= Duration::from_millis(190));
        assert_eq!((done.len(), not_done.len()), (0, 2));

        open(&a);
        let (done, not_done) = wait(&both, LONG, ReturnWhen::FirstCompleted);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].result().unwrap(), a);
        assert_eq!(not_done.len(), 1);
        assert!(!not_done[0].done());

        // FIRST_EXCEPTION returns at the first error, though b is still held.
        let failing = executor.submit(divide_gated, (1, 0)).unwrap();
        let (done, not_done) = wait(
            [&failing as &dyn AnyFuture, &fb],
            LONG,
            ReturnWhen::FirstException,
        );
        assert_eq!((done.len(), not_done.len()), (1, 1));
        assert!(done[0].exception().unwrap().is_some());
        assert!(!not_done[0].done());
        // No error: it waits for all (here, until the timeout).
        let (done, not_done) = wait(
            [&fb],
            Some(Duration::from_millis(100)),
            ReturnWhen::FirstException,
        );
        assert_eq!((done.len(), not_done.len()), (0, 1));

        // A cancelled future does not count as an error. With the three workers busy, e
        // waits in a worker's channel: it can be cancelled.
        let (c, d, e) = (new_gate("wait-c"), new_gate("wait-d"), new_gate("wait-e"));
        let fc = executor.submit(gate, (c.clone(),)).unwrap();
        let fd = executor.submit(gate, (d.clone(),)).unwrap();
        started(&c);
        started(&d);
        let fe = executor.submit(gate, (e.clone(),)).unwrap();
        assert!(fe.cancel());
        let (done, not_done) = wait(
            [&fe, &fc],
            Some(Duration::from_millis(200)),
            ReturnWhen::FirstException,
        );
        assert_eq!((done.len(), not_done.len()), (1, 1));
        assert!(done[0].cancelled());

        // ALL_COMPLETED: once everything is done. A future given twice counts once.
        for g in [&b, &c, &d] {
            open(g);
        }
        let everything = [
            fa.clone(),
            fb.clone(),
            fc.clone(),
            fd.clone(),
            fe.clone(),
            fa.clone(),
        ];
        let (done, not_done) = wait(&everything, LONG, ReturnWhen::AllCompleted);
        assert_eq!((done.len(), not_done.len()), (5, 0));

        let none: [Future<u64>; 0] = [];
        let (done, not_done) = wait(&none, None, ReturnWhen::FirstCompleted);
        assert!(done.is_empty() && not_done.is_empty());
    });
}

/// `a / b` after 20 ms.
fn divide_gated(a: u64, b: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(20));
    a / b
}

/// `shutdown(wait = false, cancel_futures = true)` cancels every future no worker started, at
/// once; the running one finishes; dropping the executor waits for it.
#[test]
fn shutdown_cancel_futures() {
    multiprocess::init_test();
    let _g = common::start();
    within(Duration::from_secs(60), || {
        let executor = ProcessPoolExecutor::new(1).unwrap();
        let a = new_gate("shutdown-a");
        let running = executor.submit(gate, (a.clone(),)).unwrap();
        let waiting: Vec<Future<u64>> = (0..50)
            .map(|i| executor.submit(square, (i,)).unwrap())
            .collect();
        started(&a);
        executor.shutdown(false, true);
        assert!(waiting.iter().all(|f| f.cancelled() && f.done()));
        assert!(running.running());
        assert!(executor.submit(square, (1,)).is_err());
        open(&a);
        drop(executor);
        assert_eq!(running.result_timeout(Duration::ZERO).unwrap(), a);

        // Without cancel_futures, shutdown(wait) runs everything.
        let executor = ProcessPoolExecutor::new(2).unwrap();
        let all: Vec<Future<u64>> = (0..20)
            .map(|i| executor.submit(sleep_ms, (i,)).unwrap())
            .collect();
        executor.shutdown(true, false);
        assert!(executor.worker_pids().is_empty());
        for (i, f) in all.iter().enumerate() {
            assert_eq!(f.result_timeout(Duration::ZERO).unwrap(), i as u64);
        }

        // `shutdown_timeout` gives up waiting (the work goes on), then waits it out.
        let executor = ProcessPoolExecutor::new(1).unwrap();
        let slow = executor.submit(sleep_ms, (1500,)).unwrap();
        let t = Instant::now();
        assert!(
            !executor
                .shutdown_timeout(Duration::from_millis(100), false)
                .unwrap()
        );
        let waited = t.elapsed();
        assert!(waited >= Duration::from_millis(100), "{waited:?}");
        assert!(waited < Duration::from_millis(1400), "{waited:?}");
        assert!(executor.submit(square, (1,)).is_err());
        assert!(
            executor
                .shutdown_timeout(Duration::from_secs(60), false)
                .unwrap()
        );
        assert!(executor.worker_pids().is_empty());
        assert_eq!(slow.result_timeout(Duration::ZERO).unwrap(), 1500);

        // Dropping waits for the work, as Python's `with` block.
        let executor = ProcessPoolExecutor::new(1).unwrap();
        let slow = executor.submit(sleep_ms, (200,)).unwrap();
        drop(executor);
        assert_eq!(slow.result_timeout(Duration::ZERO).unwrap(), 200);
    });
}

/// A worker killed under a task, or one whose task exits the process, fails only that task
/// with `WorkerLost`; the executor replaces it and goes on (Python's would be broken).
#[test]
fn a_lost_worker_fails_only_its_task() {
    multiprocess::init_test();
    let _g = common::start();
    within(Duration::from_secs(60), || {
        let executor = ProcessPoolExecutor::new(2).unwrap();
        let a = new_gate("lost-a");
        let victim = executor.submit(gate, (a.clone(),)).unwrap();
        let pid = started(&a);
        let others: Vec<Future<u64>> = (0..20)
            .map(|i| executor.submit(sleep_ms, (i % 3,)).unwrap())
            .collect();
        common::kill_pid(pid);
        match victim.result_timeout(TIMEOUT) {
            Err(Error::WorkerLost { .. }) => {}
            other => panic!("{other:?}"),
        }
        assert!(victim.exception().unwrap().is_some());
        for (i, f) in others.iter().enumerate() {
            assert_eq!(f.result_timeout(TIMEOUT).unwrap(), (i % 3) as u64);
        }
        let exits = executor.submit(die, (7,)).unwrap();
        match exits.result_timeout(TIMEOUT) {
            Err(Error::WorkerLost { exitcode }) => assert_eq!(exitcode, 7),
            other => panic!("{other:?}"),
        }
        let squares: Vec<u64> = executor
            .map_with(square, 0..10u64, LONG, 1)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(squares[9], 81);
        assert!(!executor.worker_pids().contains(&pid));
        until("two workers again", || executor.worker_pids().len() == 2);
    });
}

/// The initializer runs in each worker before its tasks; one that panics fails every task.
#[test]
fn initializer() {
    multiprocess::init_test();
    let _g = common::start();
    within(Duration::from_secs(60), || {
        let executor = ProcessPoolExecutor::builder()
            .max_workers(2)
            .initializer(init_seed, (5,))
            .build()
            .unwrap();
        let seeds: Vec<u32> = executor
            .map_with(read_seed, 0..20u32, LONG, 1)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(seeds.iter().all(|&s| s == 5), "{seeds:?}");
        drop(executor);

        let executor = ProcessPoolExecutor::builder()
            .max_workers(2)
            .initializer(bad_init, ())
            .build()
            .unwrap();
        let e = executor
            .submit(square, (2,))
            .and_then(|f| f.result_timeout(TIMEOUT));
        let e = e.unwrap_err();
        assert!(e.to_string().contains("initializer failed"), "{e}");
    });
}

/// `max_tasks_per_child`: each worker leaves after that many tasks and a new one takes over.
#[test]
fn max_tasks_per_child() {
    multiprocess::init_test();
    let _g = common::start();
    within(Duration::from_secs(60), || {
        let executor = ProcessPoolExecutor::builder()
            .max_workers(2)
            .max_tasks_per_child(2)
            .build()
            .unwrap();
        let mut pids = Vec::new();
        for i in 0..12 {
            pids.push(
                executor
                    .submit(my_pid, (i,))
                    .unwrap()
                    .result_timeout(TIMEOUT)
                    .unwrap(),
            );
        }
        let distinct: HashSet<u32> = pids.iter().copied().collect();
        assert!(
            distinct.len() >= 6,
            "{} workers for 12 tasks",
            distinct.len()
        );
        let mut counts = std::collections::HashMap::new();
        for p in &pids {
            *counts.entry(p).or_insert(0) += 1;
        }
        assert!(counts.values().all(|&n| n <= 2), "{counts:?}");
    });
}
