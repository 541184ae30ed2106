//! Scripted schedules of the whole pool (supervisor, driver, worker loop, real rings) with
//! workers as threads of this process: the hard cases, in a few milliseconds each, without
//! starting processes. Channels are small (64 KiB), so that messages larger than every buffer
//! on the path are cheap. A "kill" here takes effect at the worker's next step.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::{Pool, TaskOptions};
use crate::error::Error;
use crate::wire::Bytes;

const CHANNEL: usize = 64 << 10;

fn pool(processes: usize) -> Pool {
    Pool::builder()
        .processes(processes)
        .build_threads(CHANNEL)
        .expect("a pool of threads")
}

fn some(ms: u64) -> Option<Duration> {
    Some(Duration::from_millis(ms))
}

fn echo_grown(b: Bytes, times: u32) -> Bytes {
    Bytes(b.0.repeat(times as usize))
}

/// Its argument (not [`counted`]: the cancel test counts runs while other tests run alongside).
fn same(x: u64) -> u64 {
    x
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

static RUNS: AtomicU32 = AtomicU32::new(0);

/// Counts its runs in this process (thread workers share it).
fn counted(x: u64) -> u64 {
    RUNS.fetch_add(1, Ordering::SeqCst);
    x
}

/// Replies and arguments larger than the channel, many queued at once on one worker: every
/// task completes (the reader never writes into a full channel while its worker waits for the
/// reader).
#[test]
fn messages_larger_than_the_channel_each_way() {
    let pool = pool(1);
    let arg = Bytes((0..20_000u32).map(|i| i as u8).collect());
    let pending: Vec<_> = (0..100)
        .map(|i| {
            pool.apply_async(echo_grown, (arg.clone(), 1 + i % 10))
                .expect("submits")
        })
        .collect();
    for (i, r) in pending.iter().enumerate() {
        let v = r.get_until(some(20_000)).expect("a value");
        assert_eq!(v.0.len(), 20_000 * (1 + i % 10));
    }
    // An argument larger than the whole channel goes to an idle worker.
    let huge = Bytes(vec![3; 3 * CHANNEL]);
    assert_eq!(
        pool.apply(echo_grown, (huge, 2)).expect("a value").0.len(),
        6 * CHANNEL
    );
}

/// Sixteen workers have a reader per CPU (at most one a worker), not one each; each reader
/// takes the replies of its share as they come: replies twice the channel's size (streamed
/// through it) from every worker at once all arrive.
#[test]
fn a_reader_per_cpu_reads_many_workers() {
    let pool = pool(16);
    let arg = Bytes(vec![7; 1024]);
    let times = (2 * CHANNEL / 1024) as u32;
    let pending: Vec<_> = (0..64)
        .map(|_| {
            pool.apply_async(echo_grown, (arg.clone(), times))
                .expect("submits")
        })
        .collect();
    for r in &pending {
        let v = r.get_until(some(30_000)).expect("a value");
        assert_eq!(v.0.len(), 2 * CHANNEL);
    }
    assert_eq!(
        pool.shared.readers_for_tests(),
        16.min(crate::cpu_count()),
        "readers started for 16 workers"
    );
}

/// A worker killed with its channel full: the task it ran fails with `WorkerLost`, the others
/// run on its replacement, each exactly once.
#[test]
fn a_worker_killed_with_its_channel_full() {
    let pool = pool(1);
    let arg = Bytes(vec![1; 20_000]);
    let first = pool.apply_async(sleep_ms, (100,)).expect("submits");
    let rest: Vec<_> = (0..12)
        .map(|_| {
            pool.apply_async(echo_grown, (arg.clone(), 1))
                .expect("submits")
        })
        .collect();
    std::thread::sleep(Duration::from_millis(20));
    let core = pool.shared.workers_for_tests();
    core[0].kill();
    assert!(matches!(
        first.get_until(some(10_000)),
        Err(Error::WorkerLost { exitcode: -9 })
    ));
    for r in rest {
        assert_eq!(r.get_until(some(10_000)).expect("requeued").0.len(), 20_000);
    }
}

/// Cancelling a queued task: it never runs; a running one: its worker is killed and
/// replaced; a finished one: nothing changes.
#[test]
fn cancel_queued_running_and_finished() {
    let pool = pool(1);
    let done = pool.apply_async(sleep_ms, (1,)).expect("submits");
    assert_eq!(done.get_until(some(5_000)).expect("finished"), 1);
    let running = pool.apply_async(sleep_ms, (300,)).expect("submits");
    let before = RUNS.load(Ordering::SeqCst);
    let queued = pool.apply_async(counted, (7,)).expect("submits");
    queued.cancel();
    done.cancel();
    assert!(matches!(
        queued.get_until(some(5_000)),
        Err(Error::Cancelled)
    ));
    assert_eq!(done.get_until(some(5_000)).expect("still its value"), 1);
    assert_eq!(running.get_until(some(5_000)).expect("ran"), 300);
    assert_eq!(RUNS.load(Ordering::SeqCst), before, "a cancelled task ran");
    let long = pool.apply_async(sleep_ms, (200,)).expect("submits");
    std::thread::sleep(Duration::from_millis(20));
    long.cancel();
    assert!(matches!(long.get_until(some(5_000)), Err(Error::Cancelled)));
    assert_eq!(pool.apply(counted, (3,)).expect("a new worker"), 3);
}

/// A time limit racing the task's completion: the task ends once, either way, and the pool
/// goes on.
#[test]
fn a_time_limit_racing_a_completion() {
    let pool = pool(2);
    for ms in [18u64, 20, 22] {
        let r = pool
            .apply_async_with(sleep_ms, (ms,), TaskOptions::new().timeout(from_ms(20)))
            .expect("submits");
        match r.get_until(some(5_000)) {
            Ok(v) => assert_eq!(v, ms),
            Err(Error::TaskTimeout { limit }) => assert_eq!(limit, from_ms(20)),
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(pool.apply(sleep_ms, (1,)).expect("usable"), 1);
}

fn from_ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// `close` then `join` with work queued: all of it runs first; `terminate` with work queued
/// and running: all of it ends `Cancelled`, and `join` returns.
#[test]
fn close_and_terminate_with_work_in_every_state() {
    let pool = pool(2);
    let rs: Vec<_> = (0..20)
        .map(|_| pool.apply_async(sleep_ms, (2,)).expect("submits"))
        .collect();
    pool.close();
    assert!(pool.apply_async(sleep_ms, (1,)).is_err());
    pool.join().expect("joins");
    for r in rs {
        assert_eq!(
            r.get_until(some(0)).expect("ran before the workers left"),
            2
        );
    }
    let pool = self::pool(2);
    let rs: Vec<_> = (0..20)
        .map(|_| pool.apply_async(sleep_ms, (5,)).expect("submits"))
        .collect();
    std::thread::sleep(Duration::from_millis(3));
    pool.terminate();
    pool.join().expect("joins");
    for r in rs {
        match r.get_until(some(1_000)) {
            Ok(5) | Err(Error::Cancelled) => {}
            other => panic!("{other:?}"),
        }
    }
}

/// maxtasksperchild during kills, cancels and time limits: every task ends once.
#[test]
fn maxtasksperchild_with_faults() {
    let pool = Pool::builder()
        .processes(2)
        .maxtasksperchild(2)
        .build_threads(CHANNEL)
        .expect("a pool");
    let t = Instant::now();
    let rs: Vec<_> = (0..30u64)
        .map(|i| {
            let options = if i % 7 == 0 {
                TaskOptions::new().timeout(from_ms(1))
            } else {
                TaskOptions::new()
            };
            pool.apply_async_with(sleep_ms, (i % 3,), options)
                .expect("submits")
        })
        .collect();
    rs[5].cancel();
    for w in pool.shared.workers_for_tests() {
        w.kill();
    }
    let mut ended = 0;
    for r in &rs {
        match r.get_until(some(10_000)) {
            Ok(_)
            | Err(Error::WorkerLost { .. })
            | Err(Error::Cancelled)
            | Err(Error::TaskTimeout { .. }) => ended += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(ended, 30);
    assert!(t.elapsed() < Duration::from_secs(10));
    pool.close();
    pool.join().expect("joins");
}

/// Many small tasks through many kills (a thread kills a random worker every few ms): every
/// task ends exactly once with its value or `WorkerLost`.
#[test]
fn kills_during_many_tasks() {
    let pool = Arc::new(pool(3));
    let rs: Vec<_> = (0..3_000u64)
        .map(|i| pool.apply_async(same, (i,)).expect("submits"))
        .collect();
    let killer = {
        let pool = pool.clone();
        std::thread::spawn(move || {
            for i in 0..30usize {
                std::thread::sleep(Duration::from_millis(2));
                let workers = pool.shared.workers_for_tests();
                if let Some(w) = workers.get(i % workers.len().max(1)) {
                    w.kill();
                }
            }
        })
    };
    for (i, r) in rs.iter().enumerate() {
        match r.get_until(some(20_000)) {
            Ok(v) => assert_eq!(v, i as u64),
            Err(Error::WorkerLost { .. }) => {}
            Err(e) => panic!("task {i}: {e}"),
        }
    }
    killer.join().expect("killer");
}
