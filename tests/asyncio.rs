//! The `tokio` feature's async forms, with real processes: `Process::join_async`,
//! `Connection::{send,recv,send_bytes,recv_bytes}_async`, `AsyncResult` as a future. Every
//! await runs under a hard time limit (`tokio::time::timeout`), and every test under the leak
//! guard (the runtime is made after the guard and dropped before it, so its own descriptors
//! are not counted).
#![cfg(feature = "tokio")]

mod common;

use std::future::Future;
use std::time::{Duration, Instant};

use multiprocess::{Process, Result};

/// The hard limit on any one await in these tests.
const LIMIT: Duration = Duration::from_secs(30);

/// A single-threaded runtime: it proves that nothing here needs a second thread.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Awaits `f` under [`LIMIT`], failing the test past it.
async fn limited<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("an await went past the test's time limit")
}

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

fn exit_with(code: i32) {
    multiprocess::exit(code);
}

/// The number of threads of this process (Linux).
#[cfg(target_os = "linux")]
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

#[test]
fn join_async_waits_for_a_child_that_exits() -> Result<()> {
    multiprocess::init_test();
    let _g = common::start();
    let rt = runtime();
    let mut p = Process::new(exit_with, (7,));
    p.start()?;
    rt.block_on(limited(p.join_async(None)))?;
    assert_eq!(p.exitcode()?, Some(7));
    assert!(!p.is_alive()?);
    Ok(())
}

#[test]
fn join_async_of_a_killed_child_and_its_timeout() -> Result<()> {
    multiprocess::init_test();
    let _g = common::start();
    let rt = runtime();
    let mut p = Process::new(sleep_ms, (60_000,));
    p.start()?;
    rt.block_on(async {
        // The timeout passes without error, the child still running.
        let t = Instant::now();
        limited(p.join_async(Some(Duration::from_millis(100)))).await?;
        assert!(t.elapsed() >= Duration::from_millis(100));
        assert_eq!(p.exitcode()?, None);
        // A cancelled join (dropped mid-wait) leaves the child alone.
        let cancelled = tokio::time::timeout(Duration::from_millis(50), p.join_async(None)).await;
        assert!(cancelled.is_err());
        assert!(p.is_alive()?);
        p.kill()?;
        limited(p.join_async(None)).await
    })?;
    #[cfg(unix)]
    assert_eq!(p.exitcode()?, Some(-9));
    #[cfg(windows)]
    assert_eq!(p.exitcode()?, Some(-15));
    Ok(())
}

/// Many joins at once on one thread: each is a registration with the reactor, not a thread
/// (counted on Linux through /proc/self/task).
#[test]
fn many_concurrent_joins_on_one_thread() -> Result<()> {
    multiprocess::init_test();
    let _g = common::start();
    let rt = runtime();
    let mut children = Vec::new();
    for i in 0..16u64 {
        let mut p = Process::new(sleep_ms, (200 + 10 * i,));
        p.start()?;
        children.push(p);
    }
    #[cfg(target_os = "linux")]
    let before = threads();
    let peak = rt.block_on(async {
        let joins: Vec<_> = children.iter().map(|p| p.join_async(None)).collect();
        let local = tokio::task::LocalSet::new();
        let handles: Vec<_> = joins.into_iter().map(|j| local.spawn_local(j)).collect();
        let mut peak = 0;
        local
            .run_until(async {
                // Let every join start waiting, then look at the threads.
                tokio::time::sleep(Duration::from_millis(50)).await;
                #[cfg(target_os = "linux")]
                {
                    peak = threads();
                }
                for h in handles {
                    limited(h).await.expect("join task")?;
                }
                Ok::<_, multiprocess::Error>(())
            })
            .await?;
        Ok::<_, multiprocess::Error>(peak)
    })?;
    #[cfg(target_os = "linux")]
    assert_eq!(peak, before, "a join used a thread");
    let _ = peak;
    for p in &children {
        assert_eq!(p.exitcode()?, Some(0));
    }
    Ok(())
}
