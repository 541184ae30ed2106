//! Pool cases PL01–PL16 of python-reference.md §2.3 with real worker processes, plus the chaos
//! test (workers killed at random during 10,000 tasks), per-task timeouts and cancellation.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use multiprocess::{Error, Pool, TaskOptions};

fn square(x: u64) -> u64 {
    x * x
}

fn add(a: u64, b: u64) -> u64 {
    a + b
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn my_pid(_: u32) -> u32 {
    std::process::id()
}

/// PL01: map keeps input order with any chunk size; starmap likewise.
#[test]
fn pl01_ordered_map() {
    multiprocess::init_test();
    let _g = common::start();
    let pool = Pool::new(4).unwrap();
    let want: Vec<u64> = (0..100).map(|x| x * x).collect();
    assert_eq!(pool.map_chunked(square, 0..100u64, 20).unwrap(), want);
    assert_eq!(pool.map(square, 0..100u64).unwrap(), want);
    assert_eq!(pool.map_chunked(square, 0..100u64, 1).unwrap(), want);
    let pairs: Vec<(u64, u64)> = (0..50).map(|i| (i, 2 * i)).collect();
    let sums: Vec<u64> = (0..50).map(|i| 3 * i).collect();
    assert_eq!(pool.starmap(add, pairs).unwrap(), sums);
    assert_eq!(pool.apply(add, (2, 3)).unwrap(), 5);
}

/// PL02: an empty input returns at once.
#[test]
fn pl02_empty_input() {
    multiprocess::init_test();
    let _g = common::start();
    let pool = Pool::new(2).unwrap();
    let t = Instant::now();
    assert!(pool.map(square, Vec::<u64>::new()).unwrap().is_empty());
    assert!(t.elapsed() < Duration::from_secs(1));
    assert_eq!(pool.imap(square, Vec::<u64>::new()).unwrap().count(), 0);
}

/// PL03: imap yields input order, imap_unordered completion order; next with a timeout.
#[test]
fn pl03_imap_order() {
    multiprocess::init_test();
    let _g = common::start();
    let pool = Pool::new(4).unwrap();
    let durations = [400u64, 300, 200, 100];
    let ordered: Vec<u64> = pool
        .imap(sleep_ms, durations)
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(ordered, durations);
    let unordered: Vec<u64> = pool
        .imap_unordered(sleep_ms, durations)
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(unordered, [100, 200, 300, 400]);
    let mut slow = pool.imap(sleep_ms, [1000u64]).unwrap();
    let t = Instant::now();
    assert!(matches!(
        slow.next_timeout(Duration::from_secs_f64(0.1)),
        Some(Err(Error::Timeout))
    ));
    assert!(t.elapsed() < Duration::from_millis(900));
    assert_eq!(slow.next().unwrap().unwrap(), 1000);
    assert!(slow.next().is_none());
}

/// Bounded look-ahead: an endless input is fine.
#[test]
fn imap_reads_an_endless_input_lazily() {
    multiprocess::init_test();
    let _g = common::start();
    let pool = Pool::new(2).unwrap();
    let first: Vec<u64> = pool
        .imap_chunked(square, 0u64.., 3)
        .unwrap()
        .take(50)
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(first, (0..50).map(|x| x * x).collect::<Vec<_>>());
}

fn fail_with(code: u32) -> u32 {
    panic!("E({code})");
}

/// PL04: a task's panic comes back with its message; the worker survives.
#[test]
fn pl04_error_propagation() {
    multiprocess::init_test();
    let _g = common::start();
    let pool = Pool::new(1).unwrap();
    let pid = pool.worker_pids();
    match pool.apply(fail_with, (123,)) {
        // (With RUST_BACKTRACE set, the worker's backtrace follows the message.)
        Err(Error::Panicked { message }) => {
            assert_eq!(
                message.split("\n\nRemote backtrace:\n").next(),
                Some("E(123)")
            )
        }
        other => panic!("expected a panic, got {other:?}"),
    }
    assert_eq!(
        pool.worker_pids(),
        pid,
        "the worker survives a task's panic"
    );
    assert_eq!(pool.apply(square, (3,)).unwrap(), 9);
}

fn parse(s: String) -> i32 {
    s.parse().expect("not a number")
}

/// PL05: exactly one callback, once.
#[test]
fn pl05_callbacks() {
    multiprocess::init_test();
    let _g = common::start();
    let pool = Pool::new(2).unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let (tx1, tx2) = (tx.clone(), tx.clone());
    let ok = pool
        .map_async_with(
            parse,
            ["1".to_string()],
            TaskOptions::new()
                .callback(move |v: Vec<i32>| tx1.send(format!("ok {v:?}")).unwrap())
                .error_callback(move |e| tx2.send(format!("err {e}")).unwrap()),
        )
        .unwrap();
    assert_eq!(ok.get().unwrap(), [1]);
    let (tx3, tx4) = (tx.clone(), tx.clone());
    let bad = pool
        .map_async_with(
            parse,
            ["a".to_string()],
            TaskOptions::new()
                .callback(move |v: Vec<i32>| tx3.send(format!("ok {v:?}")).unwrap())
                .error_callback(move |e| tx4.send(format!("err {e}")).unwrap()),
        )
        .unwrap();
    assert!(bad.get().is_err());
    assert!(!bad.successful().unwrap());
    drop(tx);
    let mut got: Vec<String> = rx.iter().collect();
    got.sort();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[1], "ok [1]");
    assert!(
        got[0].starts_with("err the target panicked: not a number"),
        "{got:?}"
    );
}

#[derive(Debug, serde::Deserialize)]
struct Unencodable;

impl serde::Serialize for Unencodable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("no"))
    }
}

fn make_unencodable(_: u32) -> Unencodable {
    Unencodable
}

fn take_unencodable(_: Unencodable) -> u32 {
    0
}

/// PL07: an unencodable argument fails at submission; an unencodable result fails its task
/// with a codec error naming the type; the workers stay.
#[test]
fn pl07_unencodable_arguments_and_results() {
    multiprocess::init_test();
    let _g = common::start();
    let pool = Pool::new(2).unwrap();
    let mut workers = pool.worker_pids();
    workers.sort();
    let e = pool.map(take_unencodable, [Unencodable]).unwrap_err();
    assert!(matches!(e, Error::Codec(_)), "{e}");
    for _ in 0..20 {
        match pool.apply(make_unencodable, (1,)) {
            Err(Error::Codec(m)) => assert!(m.contains("Unencodable"), "{m}"),
            other => panic!("expected a codec error, got {other:?}"),
        }
    }
    let mut now = pool.worker_pids();
    now.sort();
    assert_eq!(now, workers);
}

/// PL08: get with a timeout, then without.
#[test]
fn pl08_async_timeout() {
    multiprocess::init_test();
    let _g = common::start();
    let pool = Pool::new(1).unwrap();
    let r = pool.apply_async(sleep_ms, (1000,)).unwrap();
    let t = Instant::now();
    assert!(matches!(
        r.get_timeout(Duration::from_secs_f64(0.2)),
        Err(Error::Timeout)
    ));
    let waited = t.elapsed();
    assert!(waited >= Duration::from_millis(200) && waited < Duration::from_millis(900));
    assert!(!r.ready());
    assert!(r.successful().is_err());
    assert_eq!(r.get().unwrap(), 1000);
    assert!(r.successful().unwrap());
}

/// PL09: maxtasksperchild replaces workers.
#[test]
fn pl09_worker_lifetime() {
    multiprocess::init_test();
    let _g = common::start();
    let pool = Pool::builder()
        .processes(3)
        .maxtasksperchild(10)
        .build()
        .unwrap();
    let pids: HashSet<u32> = pool
        .map_chunked(my_pid, 0..100u32, 1)
        .unwrap()
        .into_iter()
        .collect();
    assert!(pids.len() >= 10, "{} distinct workers", pids.len());
    drop(pool);
    let pool = Pool::builder()
        .processes(3)
        .maxtasksperchild(1)
        .build()
        .unwrap();
    let results: Vec<_> = (0..6)
        .map(|i| pool.apply_async(square, (i,)).unwrap())
        .collect();
    pool.close();
    pool.join().unwrap();
    let values: Vec<u64> = results.iter().map(|r| r.get().unwrap()).collect();
    assert_eq!(values, [0, 1, 4, 9, 16, 25]);
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

/// PL10: invalid configurations are refused; the initializer runs once per worker.
#[test]
fn pl10_configuration_and_initializer() {
    multiprocess::init_test();
    let _g = common::start();
    let e = Pool::new(0).unwrap_err();
    assert_eq!(e.to_string(), "Number of processes must be at least 1");
    let e = Pool::builder()
        .processes(1)
        .maxtasksperchild(0)
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("maxtasksperchild"), "{e}");
    let pool = Pool::builder()
        .processes(2)
        .initializer(init_seed, (5,))
        .build()
        .unwrap();
    let seeds = pool.map_chunked(read_seed, 0..20u32, 1).unwrap();
    assert!(seeds.iter().all(|&s| s == 5), "{seeds:?}");
    drop(pool);
    // A failing initializer breaks the pool instead of restarting workers forever.
    let pool = Pool::builder()
        .processes(2)
        .initializer(bad_init, ())
        .build()
        .unwrap();
    let e = pool.apply(square, (2,)).unwrap_err();
    assert!(e.to_string().contains("initializer failed"), "{e}");
}

thread_local! {
    /// The queue a worker's initializer was given (Python's `global q` set in the initializer).
    static RESULTS: std::cell::RefCell<Option<multiprocess::Queue<u64>>> =
        const { std::cell::RefCell::new(None) };
}

fn keep_queue(q: multiprocess::Queue<u64>) {
    RESULTS.with(|r| *r.borrow_mut() = Some(q));
}

fn square_into_queue(x: u64) -> bool {
    RESULTS.with(|r| match r.borrow().as_ref() {
        Some(q) => q.put(&(x * x)).is_ok(),
        None => false,
    })
}

/// Python's `Pool(initializer=f, initargs=(q,))`: an initializer's arguments may carry OS
/// handles (a Queue), unlike a task's; each worker keeps the queue and its tasks put into it,
/// and the parent reads every result. With `maxtasksperchild`, replaced workers get it too.
#[test]
fn initializer_takes_a_queue() {
    multiprocess::init_test();
    let _g = common::start();
    let q = multiprocess::Queue::<u64>::new().unwrap();
    let pool = Pool::builder()
        .processes(2)
        .maxtasksperchild(3)
        .initializer(keep_queue, (q.clone(),))
        .build()
        .unwrap();
    let put = pool.map_chunked(square_into_queue, 0..10u64, 1).unwrap();
    assert!(put.iter().all(|&ok| ok), "{put:?}");
    let mut got: Vec<u64> = (0..10)
        .map(|_| q.get_timeout(true, Some(Duration::from_secs(20))).unwrap())
        .collect();
    got.sort_unstable();
    assert_eq!(got, (0..10u64).map(|x| x * x).collect::<Vec<_>>());
    // A task's arguments still cannot carry one (they are not sent as Process arguments).
    // `apply` and `map` say the same.
    let e = pool.apply(keep_queue, (q.clone(),)).unwrap_err();
    assert!(
        matches!(&e, Error::Codec(m) if m.contains("pool task arguments cannot carry OS handles")),
        "{e}"
    );
    let e = pool.starmap(keep_queue, vec![(q.clone(),)]).unwrap_err();
    assert!(
        matches!(&e, Error::Codec(m) if m.contains("pool task arguments cannot carry OS handles")),
        "{e}"
    );
    drop(pool);
}

/// PL11: states.
#[test]
fn pl11_states() {
    multiprocess::init_test();
    let _g = common::start();
    let pool = Pool::new(2).unwrap();
    assert_eq!(
        pool.join().unwrap_err().to_string(),
        "Pool is still running"
    );
    let queued: Vec<_> = (0..6)
        .map(|_| pool.apply_async(sleep_ms, (50,)).unwrap())
        .collect();
    pool.close();
    assert_eq!(
        pool.apply_async(square, (1,)).unwrap_err().to_string(),
        "Pool not running"
    );
    pool.join().unwrap();
    for r in &queued {
        assert_eq!(r.get_timeout(Duration::from_secs_f64(0.0)).unwrap(), 50);
    }
    assert!(pool.worker_pids().is_empty());
}

/// `join_timeout` (beyond Python): refused while running; after `close`, gives up while a
/// task still runs and comes back on time; after `terminate`, sees the workers end; then
/// returns at once, as `join` does.
#[test]
fn join_timeout_gives_up_then_joins() {
    multiprocess::init_test();
    let _g = common::start();
    let pool = Pool::new(2).unwrap();
    assert_eq!(
        pool.join_timeout(Duration::from_millis(10))
            .unwrap_err()
            .to_string(),
        "Pool is still running"
    );
    let slow = pool.apply_async(sleep_ms, (60_000,)).unwrap();
    let quick = pool.apply_async(square, (7,)).unwrap();
    assert_eq!(quick.get().unwrap(), 49);
    pool.close();
    let t = Instant::now();
    assert!(!pool.join_timeout(Duration::from_millis(300)).unwrap());
    let waited = t.elapsed();
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    // A hang guard only: the timeout is honoured, not overrun by seconds.
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    // The idle worker has left; the one running the slow task has not.
    assert_eq!(pool.worker_pids().len(), 1);
    pool.terminate();
    assert!(pool.join_timeout(Duration::from_secs(60)).unwrap());
    assert!(pool.worker_pids().is_empty());
    assert!(matches!(
        slow.get_timeout(Duration::ZERO),
        Err(Error::Cancelled)
    ));
    assert!(pool.join_timeout(Duration::ZERO).unwrap());
    pool.join().unwrap();
}

/// PL12: terminate with 10,000 queued long tasks returns within seconds, and no worker is
/// left (the guard checks); unfinished results report cancellation.
#[test]
fn pl12_terminate_under_load() {
    multiprocess::init_test();
    let _g = common::start();
    let pool = Pool::new(3).unwrap();
    let results: Vec<_> = (0..10_000)
        .map(|_| pool.apply_async(sleep_ms, (60_000,)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    pool.terminate();
    pool.join().unwrap();
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert!(results.iter().all(|r| matches!(
        r.get_timeout(Duration::from_secs_f64(0.0)),
        Err(Error::Cancelled)
    )));
}

#[cfg(unix)]
fn die_on(x: u64, bad: u64) -> u64 {
    if x == bad {
        // SAFETY: signalling ourselves.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
    x
}

#[cfg(windows)]
fn die_on(x: u64, bad: u64) -> u64 {
    if x == bad {
        std::process::exit(9);
    }
    x
}

fn exit_on(x: u64, bad: u64) -> u64 {
    if x == bad {
        multiprocess::exit(3);
    }
    x
}

/// PL13/PL14: a worker killed mid-task (or exiting) fails exactly that task, within a second,
/// with its exit code; the other tasks complete; the worker is replaced.
#[test]
fn pl13_pl14_worker_lost_mid_task() {
    multiprocess::init_test();
    let _g = common::start();
    let pool = Pool::new(2).unwrap();
    let killed_code = if cfg!(unix) { -9 } else { 9 };
    for (f, code) in [(die_on as fn(u64, u64) -> u64, killed_code), (exit_on, 3)] {
        let results: Vec<_> = (0..8u64)
            .map(|i| {
                if code == 3 {
                    pool.apply_async(exit_on, (i, 3)).unwrap()
                } else {
                    pool.apply_async(die_on, (i, 3)).unwrap()
                }
            })
            .collect();
        let _ = f;
        for (i, r) in results.iter().enumerate() {
            let t = Instant::now();
            match (i, r.get_timeout(Duration::from_secs_f64(10.0))) {
                (3, Err(Error::WorkerLost { exitcode })) => assert_eq!(exitcode, code),
                (3, other) => panic!("expected WorkerLost, got {other:?}"),
                (i, Ok(v)) => assert_eq!(v, i as u64),
                (i, Err(e)) => panic!("task {i}: {e}"),
            }
            assert!(t.elapsed() < Duration::from_secs(2));
        }
        let t = Instant::now();
        while pool.worker_pids().len() < 2 && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(pool.worker_pids().len(), 2, "the lost worker is replaced");
    }
}

fn panicking_callback(_: u64) {
    panic!("callback bug");
}

/// PL15: a panicking callback is contained; later jobs complete; terminate works.
#[test]
fn pl15_callback_panics() {
    multiprocess::init_test();
    let _g = common::start();
    let pool = Pool::new(2).unwrap();
    let r = pool
        .apply_async_with(
            square,
            (2,),
            TaskOptions::new().callback(panicking_callback),
        )
        .unwrap();
    assert_eq!(r.get().unwrap(), 4);
    assert_eq!(pool.map(square, 0..10u64).unwrap().len(), 10);
    pool.terminate();
    pool.join().unwrap();
}

fn fail_big(_: u32) -> u32 {
    panic!("{}", "x".repeat(1 << 20));
}

/// PL16: failing tasks with 1 MiB messages: map reports the error, close and join return.
#[test]
fn pl16_no_fail_fast_deadlock() {
    multiprocess::init_test();
    let _g = common::start();
    let pool = Pool::new(2).unwrap();
    let e = pool.map_chunked(fail_big, [1u32, 2], 1).unwrap_err();
    assert!(matches!(e, Error::Panicked { ref message }
        if message.split("\n\nRemote backtrace:\n").next().map(str::len) == Some(1 << 20)));
    pool.close();
    pool.join().unwrap();
}

/// Beyond Python: a per-task time limit kills and replaces the worker.
#[test]
fn task_timeout_kills_and_replaces_the_worker() {
    multiprocess::init_test();
    let _g = common::start();
    let pool = Pool::new(1).unwrap();
    let before = pool.worker_pids();
    let t = Instant::now();
    let r = pool
        .apply_async_with(
            sleep_ms,
            (30_000,),
            TaskOptions::new().timeout(Duration::from_millis(300)),
        )
        .unwrap();
    match r.get_timeout(Duration::from_secs_f64(20.0)) {
        Err(Error::TaskTimeout { limit }) => assert_eq!(limit, Duration::from_millis(300)),
        other => panic!("{other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert_eq!(pool.apply(square, (5,)).unwrap(), 25);
    assert_ne!(pool.worker_pids(), before);
    // The pool default applies to every task.
    let pool = Pool::builder()
        .processes(1)
        .task_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    assert!(matches!(
        pool.apply(sleep_ms, (30_000,)),
        Err(Error::TaskTimeout { .. })
    ));
    assert_eq!(pool.apply(sleep_ms, (1,)).unwrap(), 1);
}

/// Beyond Python: cancelling a queued task drops it; cancelling a running one kills its
/// worker, which is replaced.
#[test]
fn cancel_queued_and_running_tasks() {
    multiprocess::init_test();
    let _g = common::start();
    let pool = Pool::new(1).unwrap();
    let running = pool.apply_async(sleep_ms, (30_000,)).unwrap();
    let queued = pool.apply_async(sleep_ms, (30_000,)).unwrap();
    let third = pool.apply_async(square, (4,)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    queued.cancel();
    running.cancel();
    assert!(matches!(
        running.get_timeout(Duration::from_secs_f64(10.0)),
        Err(Error::Cancelled)
    ));
    assert!(matches!(
        queued.get_timeout(Duration::from_secs_f64(10.0)),
        Err(Error::Cancelled)
    ));
    assert_eq!(
        third.get_timeout(Duration::from_secs_f64(20.0)).unwrap(),
        16
    );
}

fn tiny(x: u32) -> u32 {
    std::thread::sleep(Duration::from_micros(200));
    x
}

/// The chaos test: random workers are SIGKILLed during 10,000 tasks. Every task either
/// returns its value or reports WorkerLost; none is lost or duplicated; nothing hangs.
#[test]
fn chaos_workers_killed_at_random() {
    multiprocess::init_test();
    let _g = common::start();
    let pool = Arc::new(Pool::new(3).unwrap());
    let results: Vec<_> = (0..10_000u32)
        .map(|i| pool.apply_async(tiny, (i,)).unwrap())
        .collect();
    let stop = Arc::new(AtomicU32::new(0));
    let killer = {
        let (pool, stop) = (pool.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut kills = 0;
            let mut rng = 0x9e37_79b9_u32;
            while stop.load(Ordering::SeqCst) == 0 && kills < 20 {
                std::thread::sleep(Duration::from_millis(60));
                let pids = pool.worker_pids();
                rng ^= rng << 13;
                rng ^= rng >> 17;
                rng ^= rng << 5;
                if let Some(&pid) = pids.get(rng as usize % pids.len().max(1)) {
                    common::kill_pid(pid);
                    kills += 1;
                }
            }
            kills
        })
    };
    let mut values = HashSet::new();
    let mut lost = 0;
    for (i, r) in results.iter().enumerate() {
        match r.get_timeout(Duration::from_secs_f64(120.0)) {
            Ok(v) => {
                assert_eq!(v as usize, i);
                assert!(values.insert(v), "duplicate {v}");
            }
            Err(Error::WorkerLost { .. }) => lost += 1,
            Err(e) => panic!("task {i}: {e}"),
        }
    }
    stop.store(1, Ordering::SeqCst);
    let kills = killer.join().unwrap();
    assert_eq!(values.len() + lost, 10_000);
    assert!(lost <= kills, "{lost} lost tasks for {kills} kills");
    println!("chaos: {kills} kills, {lost} tasks lost");
}

/// With the `progress` feature, a pool may draw a bar (hidden here: stderr is not a terminal);
/// results are unchanged.
#[cfg(feature = "progress")]
#[test]
fn progress_bar_does_not_change_results() {
    multiprocess::init_test();
    let _g = common::start();
    let pool = Pool::builder().processes(2).progress(true).build().unwrap();
    assert_eq!(pool.map(square, 0..1000u64).unwrap().len(), 1000);
    assert_eq!(
        pool.imap_chunked(square, 0..100u64, 7).unwrap().count(),
        100
    );
}

#[test]
#[ignore = "scenario: run by workers_die_with_a_killed_owner"]
fn scenario_pool_owner() {
    multiprocess::init_test();
    if !common::in_scenario() {
        return;
    }
    let mut builder = Pool::builder().processes(2);
    if let Ok(method) = std::env::var("SCENARIO_METHOD") {
        builder = builder.context(multiprocess::get_context(method.parse().unwrap()).unwrap());
    }
    let pool = builder.build().unwrap();
    // One worker busy in a long task, the other idle.
    let busy = pool.apply_async(sleep_ms, (60_000,)).unwrap();
    let pids = pool.worker_pids();
    let tracker = common::own_tracker().map_or(String::new(), |t| format!(" {t}"));
    println!("pids {} {}{tracker}", pids[0], pids[1]);
    drop(busy);
    std::thread::sleep(Duration::from_secs(60));
}

/// A pool's owner is SIGKILLed while one worker runs a task and the other waits for one: both
/// die with it within a second (they are daemonic: on Linux the kernel ends each when the
/// owner's end of its channel closes; elsewhere a thread of the worker sees it close).
#[test]
fn workers_die_with_a_killed_owner() {
    multiprocess::init_test();
    let _g = common::start();
    let mut methods = vec![None];
    if cfg!(unix) {
        methods.push(Some("fork"));
    }
    for method in methods {
        let (mut owner, pids) = common::scenario_pids(
            "scenario_pool_owner",
            method.map(|m| ("SCENARIO_METHOD", m)),
        );
        // Let the busy worker get into its task.
        std::thread::sleep(Duration::from_millis(200));
        owner.kill().unwrap();
        owner.wait().unwrap();
        for &worker in &pids[..2] {
            assert!(
                common::wait_gone(worker, Duration::from_secs(1)),
                "worker {worker} outlived its pool's owner ({method:?})"
            );
        }
        for &pid in &pids {
            common::reap_orphan(pid, Duration::from_secs(5));
        }
    }
}

/// The descriptors of this process, each as what it points at (Linux).
#[cfg(target_os = "linux")]
fn descriptors() -> Vec<String> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|p| p.display().to_string())
        .collect()
}

/// A pool's owner lets go of each worker link's region handle once the worker has it (issue
/// 19: every later spawn closes each descriptor its parent holds): a pool of 4 adds no
/// shared-memory descriptor per worker.
#[cfg(target_os = "linux")]
#[test]
fn the_owner_keeps_no_region_handle_per_worker() {
    multiprocess::init_test();
    let _g = common::start();
    let is_region = |d: &String| d.contains("memfd:") || d.starts_with("/dev/shm/");
    let before = descriptors().iter().filter(|d| is_region(d)).count();
    let pool = Pool::new(4).unwrap();
    assert_eq!(pool.map(square, 0..8u64).unwrap().len(), 8);
    let regions: Vec<String> = descriptors().into_iter().filter(is_region).collect();
    assert!(
        regions.len() < before + 4,
        "{} region descriptors for 4 workers (before: {before}): {regions:?}",
        regions.len()
    );
    pool.close();
    pool.join().unwrap();
}
