//! Python's `concurrent.futures` for processes: [`ProcessPoolExecutor`], [`Future`], [`wait`]
//! and [`as_completed`].
//!
//! The executor is the other face of the [`Pool`]: the same supervisor and workers, with
//! Python's `Future` on top (its states, cancel, done callbacks, waiting for many). What the
//! pool does better than Python, the executor does too:
//! - **A worker's death fails only its task**, with [`Error::WorkerLost`] (its exit code); a
//!   new worker takes its place and the executor goes on. Python's `ProcessPoolExecutor`
//!   instead becomes *broken*: every pending future fails with `BrokenProcessPool` and the
//!   executor takes no more work.
//! - A time limit per task ([`ExecutorBuilder::task_timeout`]): the worker is killed and
//!   replaced, the task fails with [`Error::TaskTimeout`].
//! - [`map`](ProcessPoolExecutor::map) reads its input lazily, with bounded look-ahead (Python
//!   submits the whole input at once).
//!
//! Tasks are function items (or non-capturing closures) with serde arguments and results, as
//! for the [`Pool`]; a panic in a task is its error ([`Error::Panicked`]).
//!
//! ```standalone_crate
//! use std::time::Duration;
//! use multiprocess::executor::{ProcessPoolExecutor, as_completed};
//!
//! fn is_prime(n: u64) -> bool {
//!     n > 1 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0)
//! }
//!
//! # fn main() -> multiprocess::Result<()> {
//! multiprocess::init_test(); // in a program: multiprocess::init(), first line of main
//! let executor = ProcessPoolExecutor::new(2)?;
//! let future = executor.submit(is_prime, (1_000_000_007,))?;
//! assert!(future.result_timeout(Duration::from_secs(60))?);
//!
//! let primes: Vec<bool> = executor
//!     .map(is_prime, [2, 15, 17, 21])?
//!     .collect::<Result<_, _>>()?;
//! assert_eq!(primes, [true, false, true, false]);
//!
//! let futures = vec![executor.submit(is_prime, (97,))?, executor.submit(is_prime, (99,))?];
//! for future in as_completed(&futures, None) {
//!     future?.result()?;
//! }
//! executor.shutdown(true, false); // or drop it: Python's `with` block
//! # Ok(()) }
//! ```

mod future;
mod wait;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use future::{AnyFuture, Future};
pub use wait::{AsCompleted, ReturnWhen, as_completed, wait};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::pool::{IMap, Pool, PoolBuilder};
use crate::registry::{Target, target_methods};
use future::Tracked;

/// Python's text for work submitted after `shutdown`.
const SHUT_DOWN: &str = "cannot schedule new futures after shutdown";

/// How to build a [`ProcessPoolExecutor`]: Python's `ProcessPoolExecutor(max_workers,
/// mp_context, initializer, initargs, max_tasks_per_child)`, plus a time limit per task.
#[derive(Debug, Default)]
pub struct ExecutorBuilder {
    pool: PoolBuilder,
}

impl ExecutorBuilder {
    /// The number of workers (default: [`cpu_count`](crate::cpu_count)).
    pub fn max_workers(mut self, n: usize) -> Self {
        self.pool = self.pool.processes(n);
        self
    }

    target_methods! {
        /// A function each worker runs once, with `args`, before its first task (Python's
        /// `initializer` and `initargs`). If it panics, every task fails with that message
        /// (Python breaks the executor too).
        pub fn initializer<F, A>(mut self, f, args) -> Self
        where F: Target<A, ()> {
            self.pool = self.pool.initializer(f, args);
            self
        }
    }

    /// Workers exit after this many tasks and are replaced (Python's `max_tasks_per_child`).
    pub fn max_tasks_per_child(mut self, n: u64) -> Self {
        self.pool = self.pool.maxtasksperchild(n);
        self
    }

    /// The start method of the workers (Python's `mp_context`; default: the global one).
    pub fn context(mut self, ctx: Context) -> Self {
        self.pool = self.pool.context(ctx);
        self
    }

    /// A time limit for every task (beyond Python): a worker still running a task after it is
    /// killed and replaced, and the task fails with [`Error::TaskTimeout`].
    pub fn task_timeout(mut self, timeout: Duration) -> Self {
        self.pool = self.pool.task_timeout(timeout);
        self
    }

    /// Starts the workers.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for 0 workers or `max_tasks_per_child` 0; the error of a
    /// worker that could not start.
    pub fn build(self) -> Result<ProcessPoolExecutor> {
        let pool = self.pool.build().map_err(|e| match e {
            Error::InvalidArgument(m) if m.starts_with("Number of processes") => {
                Error::InvalidArgument("max_workers must be greater than 0".into())
            }
            Error::InvalidArgument(m) if m.starts_with("maxtasksperchild") => {
                Error::InvalidArgument("max_tasks_per_child must be >= 1".into())
            }
            e => e,
        })?;
        Ok(ProcessPoolExecutor {
            pool,
            shut_down: AtomicBool::new(false),
            tracked: Mutex::new(Futures::default()),
        })
    }
}

/// The futures not known to be done, for `shutdown(cancel_futures)`.
#[derive(Default)]
struct Futures {
    all: Vec<Arc<dyn Tracked>>,
    /// How many were left at the last sweep of the done ones.
    kept: usize,
}

/// A pool of worker processes behind Python's `concurrent.futures` interface. See the
/// [module docs](self).
///
/// Dropping it is `shutdown(wait = true)`: it waits for the work submitted, like leaving
/// Python's `with ProcessPoolExecutor() as executor:` block.
pub struct ProcessPoolExecutor {
    pool: Pool,
    shut_down: AtomicBool,
    tracked: Mutex<Futures>,
}

impl std::fmt::Debug for ProcessPoolExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "<ProcessPoolExecutor shutdown={} pool={:?}>",
            self.shut_down.load(Ordering::SeqCst),
            self.pool
        )
    }
}

/// Python's texts for a pool that takes no more work.
fn after_shutdown(e: Error) -> Error {
    match e {
        Error::State(m) if m == "Pool not running" => Error::state(SHUT_DOWN),
        e => e,
    }
}

impl ProcessPoolExecutor {
    /// An executor with `max_workers` worker processes (Python's
    /// `ProcessPoolExecutor(max_workers)`); see [`builder`](Self::builder) for the rest.
    ///
    /// # Errors
    /// As [`ExecutorBuilder::build`].
    pub fn new(max_workers: usize) -> Result<ProcessPoolExecutor> {
        Self::builder().max_workers(max_workers).build()
    }

    /// Python's other arguments.
    pub fn builder() -> ExecutorBuilder {
        ExecutorBuilder::default()
    }

    fn check_running(&self) -> Result<()> {
        if self.shut_down.load(Ordering::SeqCst) {
            return Err(Error::state(SHUT_DOWN));
        }
        Ok(())
    }

    /// Runs `f(args...)` in a worker (Python's `submit(fn, *args)`): `args` is a tuple,
    /// `executor.submit(f, (x,))`.
    ///
    /// # Errors
    /// [`Error::State`] ("cannot schedule new futures after shutdown"); [`Error::Codec`] if
    /// the arguments cannot be encoded. The task's own errors come from the future.
    pub fn submit<F, A, R>(&self, f: F, args: A) -> Result<Future<R>>
    where
        F: Target<A, R>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        crate::registry::no_capture!(F);
        self.check_running()?;
        let result = self.pool.apply_async(f, args).map_err(after_shutdown)?;
        let future = Future::new(result);
        let mut tracked = crate::sys::lock(&self.tracked);
        if tracked.all.len() >= 2 * tracked.kept.max(64) {
            tracked.all.retain(|f| !f.done());
            tracked.kept = tracked.all.len();
        }
        tracked.all.push(future.inner.clone());
        Ok(future)
    }

    target_methods! {
        /// `f(x)` for every item, as an iterator of the results in input order (Python's `map`).
        /// With a `timeout`, measured from this call: a result not there in time is
        /// `Err(`[`Error::Timeout`]`)`. The iterator ends after its first error (as Python's
        /// generator does once it raises), and the items not started then are cancelled.
        /// `chunksize` items travel to a worker together (Python's default is 1).
        ///
        /// Beyond Python: the input is read lazily, a few chunks per worker ahead of the results
        /// taken, so an endless iterator is fine.
        ///
        /// ```standalone_crate
        /// use multiprocess::executor::ProcessPoolExecutor;
        ///
        /// fn cube(x: i64) -> i64 {
        ///     x * x * x
        /// }
        ///
        /// # fn main() -> multiprocess::Result<()> {
        /// multiprocess::init_test(); // in a program: multiprocess::init(), first line of main
        /// let executor = ProcessPoolExecutor::new(2)?;
        /// let cubes: Vec<i64> = executor.map(cube, -2..3)?.collect::<Result<_, _>>()?;
        /// assert_eq!(cubes, [-8, -1, 0, 1, 8]);
        /// # Ok(()) }
        /// ```
        ///
        /// # Errors
        /// [`Error::State`] after `shutdown`.
        pub fn map<'a, F, X, R>(&self, f, items) -> Result<Map<'a, R>>
        where F: Target<(X,), R> { self.map_with(f, items, None, 1) }

        /// [`map`](Self::map) with Python's other arguments: a `timeout` for the whole map (an
        /// item not ready in time is [`Error::Timeout`]) and `chunksize` items per task.
        ///
        /// # Errors
        /// [`Error::InvalidArgument`] for `chunksize` 0; [`Error::State`] after `shutdown`.
        pub fn map_with<'a, F, X, R>(
            &self, f, items, timeout: Option<Duration>, chunksize: usize
        ) -> Result<Map<'a, R>>
        where F: Target<(X,), R> {
            let deadline = timeout.and_then(crate::sys::deadline_after);
            if chunksize < 1 {
                return Err(Error::InvalidArgument("chunksize must be >= 1.".into()));
            }
            self.check_running()?;
            let mut results = self
                .pool
                .imap_chunked(f, items, chunksize)
                .map_err(after_shutdown)?;
            results.prime().map_err(after_shutdown)?;
            Ok(Map {
                results: Some(results),
                deadline,
            })
        }
    }

    /// Takes no more work, and frees the workers once the work submitted is done (Python's
    /// `shutdown(wait, cancel_futures)`). With `wait`, returns once it is done and the workers
    /// have exited; with `cancel_futures`, first cancels every future no worker has started.
    /// Calling it again is harmless.
    ///
    /// ```standalone_crate
    /// use multiprocess::executor::ProcessPoolExecutor;
    ///
    /// fn nap(ms: u64) -> u64 {
    ///     std::thread::sleep(std::time::Duration::from_millis(ms));
    ///     ms
    /// }
    ///
    /// # fn main() -> multiprocess::Result<()> {
    /// multiprocess::init_test(); // in a program: multiprocess::init(), first line of main
    /// let executor = ProcessPoolExecutor::new(1)?;
    /// let futures: Vec<_> = (0..5).map(|_| executor.submit(nap, (200,))).collect::<Result<_, _>>()?;
    /// executor.shutdown(true, true);
    /// assert!(futures.iter().all(|f| f.done()));
    /// assert!(futures.iter().any(|f| f.cancelled())); // those still waiting
    /// assert!(executor.submit(nap, (1,)).is_err());
    /// # Ok(()) }
    /// ```
    pub fn shutdown(&self, wait: bool, cancel_futures: bool) {
        self.stop(cancel_futures);
        if wait {
            // Its only error is "still running", which a closed pool is not.
            let _ = self.pool.join();
        }
    }

    /// [`shutdown`](ProcessPoolExecutor::shutdown) waiting no longer than `timeout` (beyond
    /// Python, whose `shutdown(wait=True)` waits as long as the work takes): true once the work
    /// submitted is done and the workers have exited; false if some still run then (they go
    /// on: a later `shutdown`, or dropping the executor, waits for them).
    ///
    /// ```standalone_crate
    /// use std::time::Duration;
    /// use multiprocess::executor::ProcessPoolExecutor;
    ///
    /// fn nap(ms: u64) -> u64 {
    ///     std::thread::sleep(Duration::from_millis(ms));
    ///     ms
    /// }
    ///
    /// # fn main() -> multiprocess::Result<()> {
    /// multiprocess::init_test(); // in a program: multiprocess::init(), first line of main
    /// let executor = ProcessPoolExecutor::new(1)?;
    /// let slow = executor.submit(nap, (500,))?;
    /// assert!(!executor.shutdown_timeout(Duration::from_millis(10), false)?);
    /// assert!(executor.shutdown_timeout(Duration::from_secs(60), false)?);
    /// assert_eq!(slow.result()?, 500);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Pool::join_timeout`](crate::Pool::join_timeout) (none for a closed pool).
    pub fn shutdown_timeout(&self, timeout: Duration, cancel_futures: bool) -> Result<bool> {
        self.stop(cancel_futures);
        self.pool.join_timeout(timeout)
    }

    /// Takes no more work, cancels what no worker started (with `cancel_futures`), and closes
    /// the pool.
    fn stop(&self, cancel_futures: bool) {
        self.shut_down.store(true, Ordering::SeqCst);
        if cancel_futures {
            let all = std::mem::take(&mut crate::sys::lock(&self.tracked).all);
            for f in &all {
                f.cancel();
            }
        }
        self.pool.close();
    }

    /// The pids of the workers running now (for tests and monitoring).
    pub fn worker_pids(&self) -> Vec<u32> {
        self.pool.worker_pids()
    }
}

impl Drop for ProcessPoolExecutor {
    /// `shutdown(wait = true, cancel_futures = false)`, as leaving Python's `with` block.
    fn drop(&mut self) {
        self.shutdown(true, false);
    }
}

/// The iterator of [`ProcessPoolExecutor::map`]: each result in input order, as a `Result`.
pub struct Map<'a, R> {
    /// `None` once over (dropping it cancels what no worker has taken).
    results: Option<IMap<'a, R>>,
    deadline: Option<Instant>,
}

impl<R> std::fmt::Debug for Map<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<Map over={}>", self.results.is_none())
    }
}

impl<R: DeserializeOwned> Iterator for Map<'_, R> {
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        let results = self.results.as_mut()?;
        let left = self
            .deadline
            .map(|d| d.saturating_duration_since(Instant::now()));
        let next = results.next_until(left);
        if !matches!(next, Some(Ok(_))) {
            self.results = None;
        }
        next.map(|r| r.map_err(after_shutdown))
    }
}
