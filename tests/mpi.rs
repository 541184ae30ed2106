//! A `Pool` whose workers are MPI ranks (cargo feature `mpi`). Run under an MPI launcher, one
//! test at a time (the ranks serve one pool after another):
//!
//! ```text
//! CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="mpirun --oversubscribe -n 3" \
//!     cargo test --features mpi --test mpi -- --test-threads=1
//! ```
//!
//! Run any other way (no launcher), the test says so and checks nothing.
//!
//! `a_rank_killed_mid_map` kills a worker rank (and `a_rank_stopped_mid_map` stops one), so it
//! runs alone, in a job that survives a dead rank (`--mca orte_enable_recovery 1`), and only
//! when `MULTIPROCESS_MPI_KILL_TEST` is set:
//!
//! ```text
//! MULTIPROCESS_MPI_KILL_TEST=1 \
//! CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="mpirun --oversubscribe --mca orte_enable_recovery 1 -n 3" \
//!     cargo test --features mpi --test mpi -- --exact a_rank_killed_mid_map
//! ```
//!
//! `a_rank_of_another_build_is_refused` runs with `MULTIPROCESS_MPI_FOREIGN_TEST` set, under
//! `mpirun -n 1 <this binary> --exact a_rank_of_another_build_is_refused : -n 1 <another build>
//! --exact a_rank_of_another_build_is_refused` (another build: for instance this binary without
//! its build id, `objcopy --remove-section .note.gnu.build-id`).
//!
//! Spawn mode (the pool spawns its ranks with `MPI_Comm_spawn`): with
//! `MULTIPROCESS_MPI_SPAWN_TEST` set, run one test at a time, alone (no launcher: MPI starts as
//! a singleton) or under `mpirun -n 1`. `pool_over_spawned_ranks` checks every method there, and
//! `a_rank_killed_mid_map` kills a spawned rank:
//!
//! ```text
//! MULTIPROCESS_MPI_SPAWN_TEST=1 cargo test --features mpi --test mpi -- --exact pool_over_spawned_ranks
//! MULTIPROCESS_MPI_SPAWN_TEST=1 MULTIPROCESS_MPI_KILL_TEST=1 \
//!     cargo test --features mpi --test mpi -- --exact a_rank_killed_mid_map
//! ```
//!
//! `a_spawn_that_never_returns` (about 65 s, the program alone, by hand: see its docs) stops the
//! MPI runtime's daemon so that `MPI_Comm_spawn` never returns, and checks the pool's limit.
#![cfg(all(feature = "mpi", unix))]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use multiprocess::{Error, Pool, TaskOptions};

fn square(x: u64) -> u64 {
    x * x
}

fn add(a: u64, b: u64) -> u64 {
    a + b
}

fn fail_on_7(x: u64) -> u64 {
    assert!(x != 7, "seven is refused");
    x
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Set by the initializer on each worker rank.
static GREETING: AtomicU64 = AtomicU64::new(0);

fn set_greeting(v: u64) {
    GREETING.store(v, Ordering::SeqCst);
}

fn greeting(_: u64) -> u64 {
    GREETING.load(Ordering::SeqCst)
}

/// This rank's number, as its launcher says.
fn my_rank(_: u64) -> String {
    std::env::var("OMPI_COMM_WORLD_RANK")
        .or_else(|_| std::env::var("PMI_RANK"))
        .or_else(|_| std::env::var("PMIX_RANK"))
        .unwrap_or_default()
}

fn launched() -> bool {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"]
        .iter()
        .any(|v| std::env::var_os(v).is_some())
}

/// Whether the spawn-mode tests run (see the file's docs).
fn spawn_mode() -> bool {
    std::env::var_os("MULTIPROCESS_MPI_SPAWN_TEST").is_some()
}

/// A task of 1.2 s with a limit of 0.3 s fails with `TaskTimeout` (its rank is given up; the
/// task ends well within the 2 s the end of the program waits for every rank).
fn a_task_past_its_limit(pool: &Pool) {
    let slow = pool
        .apply_async_with(
            sleep_ms,
            (1_200u64,),
            TaskOptions::new().timeout(Duration::from_millis(300)),
        )
        .unwrap();
    assert!(matches!(
        slow.get_timeout(Duration::from_secs(30)),
        Err(Error::TaskTimeout { .. })
    ));
}

/// apply, map (several chunk sizes), starmap, imap, imap_unordered: each result right.
fn the_mapping_methods(pool: &Pool) {
    assert_eq!(pool.apply(square, (12u64,)).unwrap(), 144);
    let want: Vec<u64> = (0..10_000u64).map(square).collect();
    assert_eq!(pool.map(square, 0..10_000u64).unwrap(), want);
    for chunksize in [1, 777] {
        assert_eq!(
            pool.map_chunked(square, 0..10_000u64, chunksize).unwrap(),
            want
        );
    }
    let pairs: Vec<(u64, u64)> = (0..500).map(|i| (i, 2 * i)).collect();
    let sums: Vec<u64> = pool.starmap(add, pairs.clone()).unwrap();
    assert_eq!(sums, pairs.iter().map(|(a, b)| a + b).collect::<Vec<_>>());
    let ordered: Vec<u64> = pool
        .imap_chunked(square, 0..300u64, 7)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(ordered, (0..300u64).map(square).collect::<Vec<_>>());
    let mut unordered: Vec<u64> = pool
        .imap_unordered_chunked(square, 0..300u64, 7)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    unordered.sort_unstable();
    assert_eq!(unordered, ordered);
}

/// Every Pool method over two worker ranks (`mpirun -n 3`), in one test so that the order is
/// fixed: the time limit, which gives a rank up, comes last.
#[test]
fn pool_over_mpi_ranks() {
    multiprocess::init_test();
    if !launched() || spawn_mode() {
        eprintln!("not started by an MPI launcher: nothing checked (see the file's docs)");
        return;
    }
    let started = Instant::now();
    let pool = Pool::builder()
        .mpi()
        .build()
        .expect("a pool over the ranks");

    the_mapping_methods(&pool);

    // Both worker ranks take part.
    let ranks: std::collections::BTreeSet<String> = pool
        .map_chunked(my_rank, 0..64u64, 1)
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(ranks.len(), 2, "ranks that served: {ranks:?}");
    assert!(!ranks.contains("0"), "rank 0 served a task: {ranks:?}");

    // A panicking task fails alone, with its message; callbacks run before get returns.
    let seen = Arc::new(Mutex::new(None));
    let s = seen.clone();
    let r = pool
        .apply_async_with(
            fail_on_7,
            (7u64,),
            TaskOptions::new().error_callback(move |e| *s.lock().unwrap() = Some(e.to_string())),
        )
        .unwrap();
    match r.get_timeout(Duration::from_secs(30)) {
        Err(Error::Panicked { message }) => assert!(message.contains("seven"), "{message}"),
        other => panic!("{other:?}"),
    }
    assert!(
        seen.lock()
            .unwrap()
            .as_deref()
            .is_some_and(|m| m.contains("seven"))
    );
    assert_eq!(pool.apply(square, (3u64,)).unwrap(), 9);

    // A queued task cancelled at once never runs.
    let busy: Vec<_> = (0..2)
        .map(|_| pool.apply_async(sleep_ms, (300u64,)).unwrap())
        .collect();
    let queued = pool.apply_async(square, (5u64,)).unwrap();
    queued.cancel();
    assert!(matches!(
        queued.get_timeout(Duration::from_secs(30)),
        Err(Error::Cancelled)
    ));
    for b in busy {
        assert_eq!(b.get_timeout(Duration::from_secs(30)).unwrap(), 300);
    }
    pool.close();
    pool.join().unwrap();

    // The ranks serve the next pool: with an initializer, and one task a worker
    // (maxtasksperchild: each rank's worker leaves and a new one starts there).
    let pool = Pool::builder()
        .mpi()
        .initializer(set_greeting, (41u64,))
        .maxtasksperchild(1)
        .build()
        .unwrap();
    let greetings: Vec<u64> = pool.map_chunked(greeting, 0..6u64, 1).unwrap();
    assert_eq!(greetings, vec![41; 6]);

    // A task past its time limit fails with TaskTimeout; its rank is given up and the pool
    // goes on with the other.
    a_task_past_its_limit(&pool);
    assert_eq!(
        pool.map_chunked(square, 0..100u64, 10).unwrap(),
        (0..100u64).map(square).collect::<Vec<_>>()
    );
    pool.close();
    pool.join().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}

fn pid_of(_: u64) -> u32 {
    std::process::id()
}

fn slow_square(x: u64) -> (u64, u32) {
    std::thread::sleep(Duration::from_millis(20));
    (x * x, std::process::id())
}

/// For the tests that lose a rank: a pool over two worker ranks (3 s silence limit) and the pid
/// of one of them, or `None` (said on stderr) unless the test runs alone under mpirun (or in
/// spawn mode) with `MULTIPROCESS_MPI_KILL_TEST`.
fn pool_and_a_victim() -> Option<(Pool, u32)> {
    multiprocess::init_test();
    if !(launched() || spawn_mode()) || std::env::var_os("MULTIPROCESS_MPI_KILL_TEST").is_none() {
        eprintln!(
            "runs only alone under mpirun, with MULTIPROCESS_MPI_KILL_TEST (see the file's docs)"
        );
        return None;
    }
    let pool = Pool::builder()
        .mpi()
        .processes(2)
        .silence(Duration::from_secs(3))
        .build()
        .expect("a pool over the ranks");
    let pids: std::collections::BTreeSet<u32> = pool
        .map_chunked(pid_of, 0..32u64, 1)
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(pids.len(), 2, "{pids:?}");
    let victim = *pids.iter().next().unwrap();
    Some((pool, victim))
}

/// A worker rank (of `mpirun -n 3`, or spawned) killed (SIGKILL) in the middle of a map: rank 0 notices its silence (3 s,
/// `PoolBuilder::silence`), the task it was running runs again on the other rank (`retries`: 1 by default over MPI), and
/// the map completes with every result right. The job then ends with `MPI_Abort(0)` (see
/// `PoolBuilder::mpi`).
#[test]
fn a_rank_killed_mid_map() {
    let Some((pool, victim)) = pool_and_a_victim() else {
        return;
    };
    let started = Instant::now();
    let squares = pool
        .map_async_with(slow_square, 0..200u64, TaskOptions::new().chunksize(1))
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: kill(2) on a pid that a worker rank of this job reported.
    assert_eq!(unsafe { libc::kill(victim as i32, libc::SIGKILL) }, 0);
    let got = squares
        .get_timeout(Duration::from_secs(60))
        .expect("the map completes on the other rank");
    for (x, (square, _)) in (0..200u64).zip(&got) {
        assert_eq!(*square, x * x);
    }
    let survivor = got.last().unwrap().1;
    assert_ne!(survivor, victim);
    eprintln!(
        "map of 200 × 20 ms with rank pid {victim} killed at 0.5 s: done in {:?}",
        started.elapsed()
    );
    pool.close();
    pool.join().unwrap();
}

fn len_of(bytes: Vec<u8>) -> (usize, u32) {
    std::thread::sleep(Duration::from_millis(20));
    (bytes.len(), std::process::id())
}

/// A worker rank that stops answering without dying (SIGSTOP: its link is up, its socket
/// accepts, nothing reads it) while rank 0 sends it orders too large to be sent eagerly
/// (1 MiB each: an MPI send of that size waits for the receiver): rank 0 gives the rank up at
/// its silence limit (3 s) instead of waiting in the send forever, the map completes on the
/// other rank, and the program ends by itself. Run as `a_rank_killed_mid_map` (it loses a rank).
#[test]
fn a_rank_stopped_mid_map() {
    let Some((pool, victim)) = pool_and_a_victim() else {
        return;
    };
    // SAFETY: kill(2) on a pid that a worker rank of this job reported.
    assert_eq!(unsafe { libc::kill(victim as i32, libc::SIGSTOP) }, 0);
    let started = Instant::now();
    let got = pool
        .map_async_with(
            len_of,
            (0..16).map(|_| vec![7u8; 1 << 20]),
            TaskOptions::new().chunksize(1),
        )
        .unwrap()
        .get_timeout(Duration::from_secs(60));
    let took = started.elapsed();
    // SAFETY: as above; the rank is stopped and given up: it is ended here, not left stopped.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    let got = got.expect("the map completes on the other rank");
    assert!(
        got.iter()
            .all(|&(len, pid)| len == 1 << 20 && pid != victim)
    );
    eprintln!("map of 16 × 1 MiB with rank pid {victim} stopped: done in {took:?}");
    pool.close();
    pool.join().unwrap();
}

/// The MPI runtime's daemon of a program alone: Open MPI's `orted`, this process's child.
fn runtime_daemon() -> Option<i32> {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // pid (comm) state ppid ...
            let (comm, rest) = stat.split_once(") ")?;
            let ppid = rest.split_whitespace().nth(1)?;
            (comm.ends_with("(orted") && ppid == me)
                .then(|| entry.file_name().to_str()?.parse().ok())?
        })
}

/// Spawn mode, the program alone, run by hand (it takes about 65 s):
/// `MULTIPROCESS_MPI_SPAWN_TEST=1 MULTIPROCESS_MPI_SPAWN_STALL_TEST=1 <test binary> --exact
/// a_spawn_that_never_returns`. With the MPI runtime's daemon stopped (SIGSTOP),
/// `MPI_Comm_spawn` never returns: the pool gives it up after 60 s with a clear error (no
/// hang), and the program then ends by itself (`MPI_Abort(0)` at its end).
#[test]
fn a_spawn_that_never_returns() {
    multiprocess::init_test();
    if !spawn_mode()
        || launched()
        || std::env::var_os("MULTIPROCESS_MPI_SPAWN_STALL_TEST").is_none()
    {
        eprintln!("runs only alone, by hand (see its docs)");
        return;
    }
    let pool = Pool::builder().mpi().processes(1).build().unwrap();
    assert_eq!(pool.apply(square, (3u64,)).unwrap(), 9);
    pool.close();
    pool.join().unwrap();
    let daemon = runtime_daemon().expect("Open MPI's orted, a child of this process");
    // SAFETY: kill(2) on this process's own child, Open MPI's daemon.
    assert_eq!(unsafe { libc::kill(daemon, libc::SIGSTOP) }, 0);
    let started = Instant::now();
    // One rank is free; the second must be spawned.
    let outcome = Pool::builder().mpi().processes(2).build();
    let took = started.elapsed();
    // SAFETY: as above.
    unsafe { libc::kill(daemon, libc::SIGCONT) };
    match outcome {
        Err(Error::State(m)) => assert!(m.contains("did not return within 60s"), "{m}"),
        Err(e) => panic!("{e:?}"),
        Ok(_) => panic!("the spawn returned with its daemon stopped"),
    }
    assert!(took < Duration::from_secs(70), "{took:?}");
    eprintln!("spawn given up in {took:?}");
}

/// Spawn mode: a program alone (or under `mpirun -n 1`) spawns its worker ranks; every method
/// works; ranks serve the next pool; a rank given up (a task past its time limit) is replaced
/// by one spawned for it.
#[test]
fn pool_over_spawned_ranks() {
    multiprocess::init_test();
    if !spawn_mode() {
        eprintln!("runs only with MULTIPROCESS_MPI_SPAWN_TEST (see the file's docs)");
        return;
    }
    let started = Instant::now();
    let pool = Pool::builder()
        .mpi()
        .processes(2)
        .build()
        .expect("a pool over spawned ranks");
    the_mapping_methods(&pool);
    match pool.apply(fail_on_7, (7u64,)) {
        Err(Error::Panicked { message }) => assert!(message.contains("seven"), "{message}"),
        other => panic!("{other:?}"),
    }
    let pids: std::collections::BTreeSet<u32> = pool
        .map_chunked(pid_of, 0..64u64, 1)
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(pids.len(), 2, "{pids:?}");
    assert!(!pids.contains(&std::process::id()));
    pool.close();
    pool.join().unwrap();

    // The same ranks serve the next pool, a new worker after each task.
    let pool = Pool::builder()
        .mpi()
        .processes(2)
        .initializer(set_greeting, (41u64,))
        .maxtasksperchild(1)
        .build()
        .unwrap();
    assert_eq!(pool.map_chunked(greeting, 0..6u64, 1).unwrap(), vec![41; 6]);
    let again: std::collections::BTreeSet<u32> = pool
        .map_chunked(pid_of, 0..8u64, 1)
        .unwrap()
        .into_iter()
        .collect();
    assert!(again.is_subset(&pids), "{again:?} not among {pids:?}");

    // A task past its time limit: its rank is given up and a new one spawned in its place.
    a_task_past_its_limit(&pool);
    let after: std::collections::BTreeSet<u32> = pool
        .map_chunked(pid_of, 0..64u64, 1)
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(!after.is_subset(&pids), "no rank was spawned: {after:?}");
    pool.close();
    pool.join().unwrap();
    eprintln!("spawn mode checked in {:?}", started.elapsed());
}

/// A rank running another build of the program (`mpirun -n 1 app : -n 1 other-app`, with
/// `MULTIPROCESS_MPI_FOREIGN_TEST` set) is refused with a clear error, and nothing hangs.
#[test]
fn a_rank_of_another_build_is_refused() {
    multiprocess::init_test();
    if !launched() || std::env::var_os("MULTIPROCESS_MPI_FOREIGN_TEST").is_none() {
        eprintln!(
            "runs only under mpirun with MULTIPROCESS_MPI_FOREIGN_TEST (see the file's docs)"
        );
        return;
    }
    let started = Instant::now();
    let outcome = Pool::builder()
        .mpi()
        .build()
        .and_then(|pool| pool.apply(square, (3u64,)));
    match outcome {
        Err(Error::State(m)) => assert!(
            m.contains("a pool worker could not start")
                && m.contains("runs a different build of the program"),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(30));
}
