//! Synchronisation cases S01–S04 of python-reference.md §2.3 with real processes, plus the
//! crash-robust locks that go beyond Python (a holder killed while holding the lock).

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use multiprocess::{
    Array, Barrier, Condition, Error, Event, Lock, Process, RLock, RawArray, RawValue, Semaphore,
    Value,
};

fn secs(s: f64) -> Option<Duration> {
    Some(Duration::from_secs_f64(s))
}

fn release_it(lock: Lock) -> bool {
    lock.release().is_ok()
}

/// S01: Lock basics, release by another process; RLock depth and ownership.
#[test]
fn s01_locks() {
    multiprocess::init_test();
    let _g = common::start();
    let lock = Lock::new().unwrap();
    lock.acquire().unwrap();
    assert!(!lock.try_acquire().unwrap());
    assert!(!lock.acquire_timeout(Duration::from_secs_f64(0.05)).unwrap());
    assert_eq!(
        format!("{lock:?}"),
        format!("<Lock(owner=pid {})>", std::process::id())
    );
    // Python allows any process to release a Lock.
    let mut p = Process::new(release_it, (lock.clone(),));
    p.start().unwrap();
    assert!(p.result::<bool>().unwrap());
    assert!(!lock.is_locked());
    let e = lock.release().unwrap_err();
    assert_eq!(e.to_string(), "semaphore or lock released too many times");
    {
        let _held = lock.guard().unwrap();
        assert!(lock.is_locked());
    }
    assert!(!lock.is_locked());

    let rlock = RLock::new().unwrap();
    for _ in 0..3 {
        rlock.acquire().unwrap();
    }
    // Another thread neither takes it nor may release it.
    std::thread::scope(|s| {
        s.spawn(|| {
            assert!(!rlock.try_acquire().unwrap());
            let e = rlock.release().unwrap_err();
            assert_eq!(e.to_string(), "cannot release un-acquired lock");
        });
    });
    for _ in 0..3 {
        assert!(rlock.is_mine());
        rlock.release().unwrap();
    }
    assert!(!rlock.is_mine());
    assert!(rlock.release().is_err());
    std::thread::scope(|s| {
        s.spawn(|| assert!(rlock.try_acquire().unwrap()));
    });
}

fn set_after(event: Event, ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
    event.set();
}

/// S02: timeouts of every primitive, and an event set by another process waking a waiter.
#[test]
fn s02_timeouts() {
    multiprocess::init_test();
    let _g = common::start();
    let sem = Semaphore::new(0).unwrap();
    let t = Instant::now();
    assert!(!sem.acquire_timeout(Duration::from_secs_f64(0.2)).unwrap());
    let waited = t.elapsed();
    assert!(waited >= Duration::from_millis(200), "{waited:?}");
    assert!(waited < Duration::from_secs(2), "{waited:?}");
    sem.release().unwrap();
    assert_eq!(sem.get_value(), 1);
    assert!(sem.try_acquire().unwrap());

    let bounded = Semaphore::bounded(2).unwrap();
    bounded.acquire().unwrap();
    bounded.release().unwrap();
    let e = bounded.release().unwrap_err();
    assert_eq!(e.to_string(), "semaphore or lock released too many times");
    assert_eq!(
        format!("{bounded:?}"),
        "<BoundedSemaphore(value=2, maxvalue=2)>"
    );

    let cond = Condition::new().unwrap();
    let e = cond.wait_timeout(Duration::from_secs_f64(0.1)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "must acquire() condition before using wait()"
    );
    {
        let g = cond.guard().unwrap();
        let t = Instant::now();
        assert!(!g.wait_timeout(Duration::from_secs_f64(0.1)).unwrap());
        assert!(t.elapsed() >= Duration::from_millis(100));
        // The lock is held again after the wait.
        assert!(matches!(cond.get_lock(), multiprocess::ConditionLock::RLock(l) if l.is_mine()));
    }

    let event = Event::new().unwrap();
    let t = Instant::now();
    assert!(!event.wait_timeout(Duration::from_secs_f64(0.1)));
    assert!(t.elapsed() >= Duration::from_millis(100));
    let mut p = Process::new(set_after, (event.clone(), 100u64));
    p.start().unwrap();
    assert!(
        event.wait_timeout(Duration::from_secs_f64(30.0)),
        "the child's set did not wake us"
    );
    assert!(event.is_set());
    p.join().unwrap();
    event.clear();
    // Python's `<multiprocessing.synchronize.Event at 0x7f... unset>`.
    let shown = format!("{event:?}");
    assert!(
        shown.starts_with("<multiprocess.Event at 0x") && shown.ends_with(" unset>"),
        "{shown}"
    );
    event.set();
    assert!(format!("{event:?}").ends_with(" set>"));
}

fn wait_and_notify(cond: Condition, flag: Value<u32>) -> u32 {
    let g = cond.guard().unwrap();
    *flag.lock().unwrap() = 1;
    cond.notify_all().unwrap();
    // Wait for the parent's answer.
    assert!(
        cond.wait_for(|| flag.get().unwrap() == 2, secs(30.0))
            .unwrap()
    );
    drop(g);
    flag.get().unwrap()
}

/// Condition across processes: each side waits for the other's notify.
#[test]
fn condition_between_processes() {
    multiprocess::init_test();
    let _g = common::start();
    let cond = Condition::with_lock(Lock::new().unwrap()).unwrap();
    let flag = Value::new(0u32).unwrap();
    let mut p = Process::new(wait_and_notify, (cond.clone(), flag.clone()));
    let g = cond.guard().unwrap();
    p.start().unwrap();
    assert!(
        cond.wait_for(|| flag.get().unwrap() == 1, secs(30.0))
            .unwrap()
    );
    *flag.lock().unwrap() = 2;
    cond.notify(1).unwrap();
    drop(g);
    assert_eq!(p.result::<u32>().unwrap(), 2);
}

fn pass_barrier(barrier: Barrier, passes: u32) -> Vec<u32> {
    (0..passes).map(|_| barrier.wait().unwrap()).collect()
}

static ACTIONS: AtomicU32 = AtomicU32::new(0);

fn count_action() {
    ACTIONS.fetch_add(1, Ordering::SeqCst);
}

/// S03: 5 processes × 10 passes in lockstep, one index 0 per pass; abort, timeout, reset, action.
#[test]
fn s03_barrier() {
    multiprocess::init_test();
    let _g = common::start();
    let barrier = Barrier::new(5).unwrap();
    let mut ps: Vec<Process> = (0..5)
        .map(|_| Process::new(pass_barrier, (barrier.clone(), 10u32)))
        .collect();
    for p in &mut ps {
        p.start().unwrap();
    }
    let runs: Vec<Vec<u32>> = ps.iter_mut().map(|p| p.result().unwrap()).collect();
    for pass in 0..10 {
        let mut indices: Vec<u32> = runs.iter().map(|r| r[pass]).collect();
        indices.sort();
        assert_eq!(indices, [0, 1, 2, 3, 4], "pass {pass}");
    }

    // Abort: the waiter gets BrokenBarrier, so do later callers, until reset.
    let b = Barrier::new(2).unwrap();
    std::thread::scope(|s| {
        let waiter = s.spawn(|| b.wait_timeout(Duration::from_secs_f64(30.0)));
        while b.n_waiting() == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
        b.abort();
        assert!(matches!(waiter.join().unwrap(), Err(Error::BrokenBarrier)));
    });
    assert!(b.broken());
    assert!(matches!(b.wait(), Err(Error::BrokenBarrier)));
    b.reset();
    assert!(!b.broken());

    // A timed-out wait breaks it for everyone.
    let t = Instant::now();
    assert!(matches!(
        b.wait_timeout(Duration::from_secs_f64(0.5)),
        Err(Error::BrokenBarrier)
    ));
    assert!(t.elapsed() >= Duration::from_millis(500));
    assert!(b.broken());

    // Reset while a party waits: that party gets BrokenBarrier; the barrier is usable after.
    b.reset();
    std::thread::scope(|s| {
        let waiter = s.spawn(|| b.wait_timeout(Duration::from_secs_f64(30.0)));
        while b.n_waiting() == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
        b.reset();
        assert!(matches!(waiter.join().unwrap(), Err(Error::BrokenBarrier)));
    });
    std::thread::scope(|s| {
        let other = s.spawn(|| b.wait_timeout(Duration::from_secs_f64(30.0)).unwrap());
        let mine = b.wait_timeout(Duration::from_secs_f64(30.0)).unwrap();
        let mut both = [mine, other.join().unwrap()];
        both.sort();
        assert_eq!(both, [0, 1]);
    });

    // The action runs once per pass, in the last party to arrive.
    let b = Barrier::new(3).unwrap().action(count_action);
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                for _ in 0..4 {
                    b.wait_timeout(Duration::from_secs_f64(30.0)).unwrap();
                }
            });
        }
    });
    assert_eq!(ACTIONS.load(Ordering::SeqCst), 4);
}

fn add_to_shared(value: Value<i32>, array: Array<i32>, raw: RawArray<f64>) {
    *value.lock().unwrap() += 5;
    for (i, x) in array.lock().unwrap().iter_mut().enumerate() {
        *x = i as i32 * i as i32;
    }
    raw.set(2, 2.5).unwrap();
}

fn increment(value: Value<u64>, times: u32) {
    for _ in 0..times {
        *value.lock().unwrap() += 1;
    }
}

/// S04: values and arrays changed by a child are visible; zeroed arrays; 4 × 10,000 locked
/// increments add up to 40,000.
#[test]
fn s04_shared_values() {
    multiprocess::init_test();
    let _g = common::start();
    let value = Value::new(10i32).unwrap();
    let array = Array::<i32>::new(10).unwrap();
    assert_eq!(array.to_vec().unwrap(), [0; 10]);
    let raw = RawArray::<f64>::new(4).unwrap();
    let mut p = Process::new(add_to_shared, (value.clone(), array.clone(), raw.clone()));
    p.start().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode().unwrap(), Some(0));
    assert_eq!(value.get().unwrap(), 15);
    assert_eq!(
        array.to_vec().unwrap(),
        [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]
    );
    assert_eq!(raw.to_vec(), [0.0, 0.0, 2.5, 0.0]);
    assert!(array.get(10).is_err());
    assert_eq!(format!("{value:?}"), "<Synchronized wrapper for 15>");
    let rv = RawValue::new(7u8).unwrap();
    rv.set(9);
    assert_eq!(rv.get(), 9);

    let counter = Value::new(0u64).unwrap();
    let mut ps: Vec<Process> = (0..4)
        .map(|_| Process::new(increment, (counter.clone(), 10_000u32)))
        .collect();
    for p in &mut ps {
        p.start().unwrap();
    }
    for p in &mut ps {
        p.join().unwrap();
        assert_eq!(p.exitcode().unwrap(), Some(0));
    }
    assert_eq!(counter.get().unwrap(), 40_000);
}

/// S04 under fork: captured handles are the same shared memory.
#[cfg(unix)]
#[test]
fn s04_fork_shares_captured_objects() {
    multiprocess::init_test();
    let _g = common::start();
    let counter = Value::new(0u64).unwrap();
    let ctx = multiprocess::get_context(multiprocess::StartMethod::Fork).unwrap();
    let mut ps: Vec<Process> = (0..4)
        .map(|_| {
            let c = counter.clone();
            ctx.process_closure(move || increment(c, 10_000))
        })
        .collect();
    for p in &mut ps {
        p.start().unwrap();
    }
    for p in &mut ps {
        p.join().unwrap();
        assert_eq!(p.exitcode().unwrap(), Some(0));
    }
    assert_eq!(counter.get().unwrap(), 40_000);
}

fn hold_forever(lock: Lock, rlock: RLock, slots: Semaphore, held: Event) {
    slots.acquire().unwrap();
    slots.acquire().unwrap();
    lock.acquire().unwrap();
    rlock.acquire().unwrap();
    rlock.acquire().unwrap();
    held.set();
    std::thread::sleep(Duration::from_secs(60));
}

/// Beyond Python: a holder killed while holding a Lock, an RLock and two slots of a
/// BoundedSemaphore. The next acquirer gets OwnerDied (instead of hanging forever), and the
/// locks and slots work again.
#[test]
fn owner_died_locks_recover() {
    multiprocess::init_test();
    let _g = common::start();
    let lock = Lock::new().unwrap();
    let rlock = RLock::new().unwrap();
    let held = Event::new().unwrap();
    let slots = Semaphore::bounded(3).unwrap();
    let mut p = Process::new(
        hold_forever,
        (lock.clone(), rlock.clone(), slots.clone(), held.clone()),
    );
    p.start().unwrap();
    assert!(held.wait_timeout(Duration::from_secs_f64(30.0)));
    let pid = p.pid().unwrap();
    assert!(
        !lock.acquire_timeout(Duration::from_secs_f64(0.1)).unwrap(),
        "held by a live process"
    );
    p.kill().unwrap();
    p.join().unwrap();
    let t = Instant::now();
    match lock.acquire_timeout(Duration::from_secs_f64(30.0)) {
        Err(Error::OwnerDied { pid: dead }) => assert_eq!(dead, pid),
        other => panic!("expected OwnerDied, got {other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(lock.acquire_timeout(Duration::from_secs_f64(30.0)).unwrap());
    lock.release().unwrap();
    assert!(matches!(rlock.try_acquire(), Err(Error::OwnerDied { .. })));
    assert!(
        rlock
            .acquire_timeout(Duration::from_secs_f64(30.0))
            .unwrap()
    );
    rlock.release().unwrap();
    assert!(!rlock.is_mine());
    // One slot is free; waiting for a second finds the dead holder's two.
    assert_eq!(slots.get_value(), 1);
    slots.acquire().unwrap();
    match slots.acquire_timeout(Duration::from_secs_f64(30.0)) {
        Err(Error::OwnerDied { pid: dead }) => assert_eq!(dead, pid),
        other => panic!("expected OwnerDied, got {other:?}"),
    }
    assert_eq!(slots.get_value(), 2);
    assert!(slots.try_acquire().unwrap());
    assert!(slots.try_acquire().unwrap());
    for _ in 0..3 {
        slots.release().unwrap();
    }
    assert!(slots.release().is_err());
}

/// Many threads of this process and a child contend for one lock without losing updates.
#[test]
fn contended_lock_across_threads_and_processes() {
    multiprocess::init_test();
    let _g = common::start();
    let counter = Value::new(0u64).unwrap();
    let mut p = Process::new(increment, (counter.clone(), 20_000u32));
    p.start().unwrap();
    std::thread::scope(|s| {
        for _ in 0..3 {
            let c = counter.clone();
            s.spawn(move || increment(c, 20_000));
        }
    });
    p.join().unwrap();
    assert_eq!(counter.get().unwrap(), 80_000);
}

fn receive_and_use(conn: multiprocess::Connection) -> u64 {
    let (lock, counter): (Lock, Value<u64>) = conn.recv().unwrap();
    lock.release().unwrap();
    *counter.lock().unwrap() += 41;
    counter.get().unwrap()
}

/// A lock and a shared value sent over a Connection arrive usable (their OS handles travel
/// with the message).
#[test]
fn objects_sent_over_a_connection() {
    multiprocess::init_test();
    let _g = common::start();
    let (ours, theirs) = multiprocess::pipe().unwrap();
    let mut p = Process::new(receive_and_use, (theirs,));
    p.start().unwrap();
    let lock = Lock::new().unwrap();
    lock.acquire().unwrap();
    let counter = Value::new(1u64).unwrap();
    ours.send(&(lock.clone(), counter.clone())).unwrap();
    assert_eq!(p.result::<u64>().unwrap(), 42);
    assert!(!lock.is_locked(), "the child released our lock");
    assert_eq!(counter.get().unwrap(), 42);
}

/// Runs `f` on a thread and gives its value, failing the test if it has not returned within
/// 10 s (a deadlock: the thread is left blocked).
fn within_10s<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("deadlocked: the call waited for a lock its own thread holds")
}

fn is_reentry<T: std::fmt::Debug>(r: multiprocess::Result<T>) -> bool {
    matches!(&r, Err(Error::State(m)) if m.contains("this thread already holds the lock"))
}

/// Holds `lock` for `ms` milliseconds, from another process.
fn hold_lock(lock: Lock, ms: u64) {
    let _held = lock.guard().unwrap();
    std::thread::sleep(Duration::from_millis(ms));
}

/// `*v.lock()? += 1` then `v.get()` in the guard's thread is an error, not a silent deadlock
/// (Python's RLock lets it through; our guard's `&mut` forbids that); the same for `set`,
/// `lock`, an `Array`'s accessors, a lock shared by several objects, and `get_lock()` taken
/// by hand. Another thread or process holding the lock is waited for, as before.
#[test]
fn value_accessors_under_their_own_guard_are_errors() {
    multiprocess::init_test();
    let _g = common::start();
    within_10s(|| {
        let v = Value::new(1u32).unwrap();
        let mut guard = v.lock().unwrap();
        *guard += 1;
        assert!(is_reentry(v.get()));
        assert!(is_reentry(v.set(5)));
        assert!(is_reentry(v.lock().map(|_| ())));
        assert_eq!(*guard, 2);
        drop(guard);
        assert_eq!(v.get().unwrap(), 2);

        let lock = Lock::new().unwrap();
        let a = Array::from_slice_with_lock(&[1u8, 2, 3], lock.clone()).unwrap();
        let w = Value::with_lock(0i64, lock.clone()).unwrap();
        let mut elements = a.lock().unwrap();
        elements[0] = 9;
        assert!(is_reentry(a.get(0)));
        assert!(is_reentry(a.set(1, 0)));
        assert!(is_reentry(a.to_vec()));
        assert!(is_reentry(w.get())); // the same lock, through another object
        drop(elements);
        assert_eq!(a.to_vec().unwrap(), [9, 2, 3]);

        lock.acquire().unwrap();
        assert!(is_reentry(w.set(3)));
        lock.release().unwrap();
        w.set(3).unwrap();
        assert_eq!(w.get().unwrap(), 3);
        // The Lock itself keeps Python's semantics: not re-entrant, a second acquire waits.
        let _held = lock.guard().unwrap();
        assert!(!lock.acquire_timeout(Duration::from_secs_f64(0.05)).unwrap());
    });

    // Held by another thread: waited for, not an error.
    let v = Value::new(0u32).unwrap();
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let holder = {
        let v = v.clone();
        std::thread::spawn(move || {
            let mut guard = v.lock().unwrap();
            held_tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(200));
            *guard = 7;
        })
    };
    held_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let got = within_10s(move || v.get());
    assert_eq!(got.unwrap(), 7);
    holder.join().unwrap();

    // Held by another process (whose thread may have the same number as ours): waited for.
    let v = Value::new(0u32).unwrap();
    let mut p = Process::new(hold_lock, (v.get_lock().clone(), 300u64));
    p.start().unwrap();
    let started = Instant::now();
    while !v.get_lock().is_locked() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the child never took the lock"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let got = within_10s(move || v.get());
    assert_eq!(got.unwrap(), 0);
    p.join_timeout(Duration::from_secs_f64(30.0)).unwrap();
    assert_eq!(p.exitcode().unwrap(), Some(0));
}

/// Writes `values` at `start` of a shared array from another process.
fn write_slice(a: multiprocess::Array<i32>, start: usize, values: Vec<i32>) {
    a.set_slice(start, &values).unwrap();
}

/// Slices of `RawArray` and `Array` (Python's `a[i:j]` and `a[i:j] = ...`): read and written
/// here and from a child; a range past the end is an error, not a panic.
#[test]
fn array_slices() {
    multiprocess::init_test();
    let _g = common::start();
    let raw = multiprocess::RawArray::from_slice(&[1u8, 2, 3, 4, 5]).unwrap();
    assert_eq!(raw.get_slice(1..3).unwrap(), [2, 3]);
    assert_eq!(raw.get_slice(..).unwrap(), [1, 2, 3, 4, 5]);
    assert_eq!(raw.get_slice(5..).unwrap(), Vec::<u8>::new());
    raw.set_slice(3, &[40, 50]).unwrap();
    assert_eq!(raw.to_vec(), [1, 2, 3, 40, 50]);
    assert!(matches!(
        raw.get_slice(2..9),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        raw.set_slice(4, &[1, 2]),
        Err(Error::InvalidArgument(_))
    ));
    #[allow(clippy::reversed_empty_ranges)]
    let backwards = raw.get_slice(3..1);
    assert!(matches!(backwards, Err(Error::InvalidArgument(_))));

    let a = multiprocess::Array::<i32>::new(6).unwrap();
    let mut p = Process::new(write_slice, (a.clone(), 2, vec![7, 8, 9]));
    p.start().unwrap();
    p.join_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(p.exitcode().unwrap(), Some(0));
    assert_eq!(a.get_slice(1..=4).unwrap(), [0, 7, 8, 9]);
    assert!(matches!(
        a.set_slice(5, &[1, 2]),
        Err(Error::InvalidArgument(_))
    ));
}
