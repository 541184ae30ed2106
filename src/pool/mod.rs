//! A pool of worker processes: Python's `multiprocessing.Pool`, as a supervisor that never
//! hangs.
//!
//! Layout: this file is the public API and its builder; `supervisor` makes every decision
//! (which worker gets which task; what a reply, a death, a time limit, a cancel, `close` or
//! `terminate` does) without an OS call, so that schedules can be played against it in tests;
//! `driver` carries its decisions out with a reader thread per CPU (at most one a worker),
//! each reading the replies of a share of the workers; `backend` is where
//! workers live (processes on this machine; threads, for tests), behind one seam; `protocol`
//! is what they say; `worker` is the worker's loop.
//!
//! Each worker is a daemonic process with two rings in shared memory to the parent (tasks in,
//! results out; see `queues`). The parent never sends a worker more than its ring holds (see
//! `supervisor` for why no wait of the pool can be a cycle). Tasks go one to each idle worker
//! first, then more to busy workers when all are busy. The worker counts the tasks it starts
//! in shared memory, so the parent knows exactly which task a worker held. When a worker dies
//! (killed, crashed, `exit(n)`), the task it was running fails with [`Error::WorkerLost`]
//! carrying its exit code, the tasks queued behind it go back to the queue, and a new worker
//! takes its place: Python's pool hangs forever instead (bpo-22393). A task's panic is caught
//! in the worker and returned as [`Error::Panicked`]; the worker goes on.
//!
//! Beyond Python: a per-task time limit (the worker is killed and replaced, the task gets
//! [`Error::TaskTimeout`], unlike a `get` that waited too little: [`Error::Timeout`]),
//! cancelling a queued or running task ([`AsyncResult::cancel`]: a queued one never runs),
//! `imap` with bounded look-ahead, callbacks that cannot hurt the pool.
//!
//! Tasks are function items (or non-capturing closures) with serde arguments and results, found
//! in the worker like a [`Process`](crate::Process) target; with the fork start method too.
//!
//! ```standalone_crate
//! use multiprocess::Pool;
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! # fn main() -> multiprocess::Result<()> {
//! multiprocess::init_test(); // in a program: multiprocess::init(), first line of main
//! let pool = Pool::new(2)?;
//! assert_eq!(pool.map(square, 0..10u64)?, [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]);
//! assert_eq!(pool.apply(square, (7,))?, 49);
//! let pending = pool.apply_async(square, (8,))?;
//! assert_eq!(pending.get()?, 64);
//! pool.close();
//! pool.join()?;
//! # Ok(()) }
//! ```

mod backend;
mod chunk;
mod doorbell;
mod driver;
mod future;
mod options;
mod progress;
mod protocol;
mod remote;
mod result;
mod supervisor;
mod worker;

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use future::ResultFuture;
pub use options::TaskOptions;
pub use result::{AsyncResult, IMap};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::registry::{Data, Target, call_target, target_methods};
use crate::sys::image;
use crate::wire;
#[cfg(all(feature = "mpi", unix))]
pub(crate) use backend::mpi::enter as enter_mpi;
use backend::{Backend, CHANNEL_BYTES};
pub(crate) use driver::Shared;
use protocol::{Args, Code, Setup};
pub(crate) use remote::{
    RemoteJob, RemoteOutcomes, decode_remote_chunks, decode_remote_one, remote_outcome,
};
use result::{JobCore, Outcome, collect_chunks, decode_chunks, decode_one};
use supervisor::{Config, Phase, Supervisor};

/// The most tasks a worker holds at once (one running, the rest waiting in its channel); a
/// worker gets more than one only when every worker is busy.
const DEPTH: usize = 32;
/// A map of at most this many chunks is decoded chunk by chunk as the chunks come (more
/// would mean a wake-up of the caller per small chunk).
const EAGER_CHUNKS: usize = 64;

/// How to build a [`Pool`]: Python's `Pool(processes, initializer, initargs, maxtasksperchild,
/// context)`, plus a default time limit per task.
#[derive(Debug, Default)]
pub struct PoolBuilder {
    processes: Option<usize>,
    initializer: Option<Result<EncodedInit>>,
    maxtasksperchild: Option<u64>,
    context: Option<Context>,
    task_timeout: Option<Duration>,
    progress: bool,
    retries: Option<u32>,
    /// Workers on MPI ranks (see `PoolBuilder::mpi`).
    #[cfg(all(feature = "mpi", unix))]
    mpi: bool,
    #[cfg(all(feature = "mpi", unix))]
    silence: Option<Duration>,
}

/// An initializer as the builder holds it: its code, its encoded arguments and the OS handles
/// inside them.
type EncodedInit = (Code, Vec<u8>, Vec<wire::Handle>);

/// Implemented by nothing: the bound of [`PoolBuilder::progress`] in a build without the cargo
/// feature `progress`, so that a call says what to do.
#[cfg(not(feature = "progress"))]
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`PoolBuilder::progress` needs the cargo feature `progress` of `multiprocess`",
    label = "the progress bar is not built in",
    note = "turn the feature on: `multiprocess = {{ ..., features = [\"progress\"] }}` in Cargo.toml"
)]
pub trait NeedsFeatureProgress {}

impl PoolBuilder {
    /// The number of workers (default: [`cpu_count`](crate::cpu_count)).
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = Some(n);
        self
    }

    target_methods! {
        /// A function each worker runs once, with `args`, before its first task. If it panics,
        /// the pool is broken: every task fails with that message (Python restarts such workers
        /// in an endless loop).
        pub fn initializer<F, A>(mut self, f, args) -> Self
        where F: Target<A, ()> {
            let _ = f;
            // Sent once to each worker as it starts, inside its `Process` arguments: so, unlike a
            // task's, these arguments may carry OS handles (a Queue, as Python's `initargs=(q,)`).
            let init = wire::encode_with_handles(&args).and_then(|(bytes, handles)| {
                let handles = handles.into_iter().map(wire::Handle::from).collect();
                Code::of(call_target::<F, A, ()>).map(|code| (code, bytes, handles))
            });
            self.initializer = Some(init);
            self
        }
    }

    /// Workers exit after this many tasks and are replaced (Python's `maxtasksperchild`).
    pub fn maxtasksperchild(mut self, n: u64) -> Self {
        self.maxtasksperchild = Some(n);
        self
    }

    /// The start method of the workers (default: the global one).
    pub fn context(mut self, ctx: Context) -> Self {
        self.context = Some(ctx);
        self
    }

    /// A time limit for every task (beyond Python): a worker still running a task after it is
    /// killed and replaced, and the task fails with [`Error::TaskTimeout`].
    pub fn task_timeout(mut self, timeout: Duration) -> Self {
        self.task_timeout = Some(timeout);
        self
    }

    /// Runs a task again, up to `n` times, when its worker is lost while running it (the
    /// worker's process dies, or its MPI rank goes silent); after that the task fails with
    /// [`Error::WorkerLost`]. Default 0 for local workers (a task that kills its worker would
    /// kill the next one too), 1 for MPI ranks (whose hosts may fail under any task). A task
    /// stopped by its time limit or cancelled is never run again.
    ///
    /// ```no_run
    /// # fn square(x: u64) -> u64 { x * x }
    /// multiprocess::init();
    /// let pool = multiprocess::Pool::builder().processes(2).retries(2).build()?;
    /// let squares: Vec<u64> = pool.map(square, 0..100u64)?;
    /// # Ok::<(), multiprocess::Error>(())
    /// ```
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = Some(n);
        self
    }

    /// Shows a progress bar on stderr (when it is a terminal) for every `map`, `starmap` and
    /// `imap` of this pool. Needs the cargo feature `progress`.
    #[cfg(feature = "progress")]
    pub fn progress(mut self, on: bool) -> Self {
        self.progress = on;
        self
    }

    /// Without the cargo feature `progress` a call fails to compile, saying to turn the
    /// feature on (rather than rustc's "private field, not a method").
    #[cfg(not(feature = "progress"))]
    pub fn progress<B: NeedsFeatureProgress>(self, on: B) -> Self {
        let _ = on;
        self
    }

    /// Workers that are MPI ranks (cargo feature `mpi`, Unix), in mpi4py.futures' two modes,
    /// chosen by how the program was started:
    /// - **SPMD**, `mpirun -n N` (N > 1) or `srun`: [`init`](crate::init) lets rank 0 run
    ///   `main` and makes ranks 1 to N−1 serve pool workers until rank 0 ends. The pool has one
    ///   worker a free rank unless [`processes`](Self::processes) says fewer.
    /// - **Spawn**, the program alone or under `mpirun -n 1`: the pool starts MPI and spawns
    ///   its worker ranks with `MPI_Comm_spawn` (this executable with the same arguments, whose
    ///   [`init`](crate::init) makes it serve), [`processes`](Self::processes) of them or by
    ///   default the MPI universe's size minus one (at least one); a worker given up is
    ///   replaced by a newly spawned rank.
    ///
    /// Every method works as with local workers. Every rank must run the same build (a
    /// different one breaks the pool with a clear error). In SPMD mode a worker given up (a
    /// task past its time limit, a cancelled running task, a rank silent for 10 s, or one a
    /// message could not be sent to within those 10 s) is not replaced, so the pool goes on
    /// with fewer. A spawn that has not returned within 60 s fails the worker's start and ends
    /// the job at the program's end. Close and join the pool to give its ranks back
    /// for another pool (dropping or terminating it gives them up). At its end the program
    /// waits up to 2 s for every rank to finish; if one was lost or did not, it ends the job
    /// with `MPI_Abort(0)`, or, over several hosts under `mpirun`, by ending `mpirun` (which
    /// exits with status 1; see the README's "Running on a cluster").
    ///
    /// ```no_run
    /// multiprocess::init(); // first in main: ranks other than 0 serve from here
    /// # fn square(x: u64) -> u64 { x * x }
    /// let pool = multiprocess::Pool::builder().mpi().build()?;
    /// let squares: Vec<u64> = pool.map(square, 0..1000u64)?;
    /// pool.close();
    /// pool.join()?;
    /// # Ok::<(), multiprocess::Error>(())
    /// ```
    #[cfg(all(feature = "mpi", unix))]
    pub fn mpi(mut self) -> Self {
        self.mpi = true;
        self
    }

    /// For workers on MPI ranks ([`mpi`](Self::mpi)): how long a rank may stay silent before
    /// it is given up and the task it held runs elsewhere (see [`retries`](Self::retries)).
    /// Each serving rank says it is alive every second; default 10 s. A shorter limit notices
    /// a lost host sooner; one near a second risks giving up a rank whose messages are merely
    /// slow.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// multiprocess::init();
    /// let pool = multiprocess::Pool::builder()
    ///     .mpi()
    ///     .silence(Duration::from_secs(3))
    ///     .build()?;
    /// # Ok::<(), multiprocess::Error>(())
    /// ```
    #[cfg(all(feature = "mpi", unix))]
    pub fn silence(mut self, limit: Duration) -> Self {
        self.silence = Some(limit);
        self
    }

    /// Starts the workers.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for 0 processes or `maxtasksperchild` 0 (Python's texts);
    /// the error of a worker that could not start (those already started are stopped).
    pub fn build(self) -> Result<Pool> {
        #[cfg(all(feature = "mpi", unix))]
        if self.mpi {
            let n = backend::mpi::workers(self.processes)?;
            let retries = self.retries.unwrap_or(1);
            let ranks = backend::mpi::Ranks {
                silence: self.silence.unwrap_or(backend::mpi::SILENCE),
            };
            return self
                .processes(n)
                .retries(retries)
                .build_on(Backend::Mpi(ranks), CHANNEL_BYTES);
        }
        let context = match self.context {
            Some(c) => c,
            None => crate::default_context(),
        };
        let local = backend::local::Local::new(context, self.readers())?;
        self.build_on(Backend::Local(local), CHANNEL_BYTES)
    }

    /// The pool with workers that are threads of this process, over channels of
    /// `channel_bytes` (for tests of the supervision: no process starts).
    #[cfg(test)]
    pub(crate) fn build_threads(self, channel_bytes: usize) -> Result<Pool> {
        let threads = backend::threads::Threads::new(channel_bytes, self.readers())?;
        self.build_on(Backend::Threads(threads), channel_bytes)
    }

    /// How many threads read the replies of the workers on this machine: one a worker up to
    /// one a CPU (copying replies out is most of a reader's work; more readers than CPUs only
    /// cost threads: issue 19, W11).
    fn readers(&self) -> usize {
        let cpus = crate::cpu_count();
        self.processes.unwrap_or(cpus).clamp(1, cpus)
    }

    fn build_on(self, backend: Backend, channel_bytes: usize) -> Result<Pool> {
        let processes = self.processes.unwrap_or_else(crate::cpu_count);
        if processes < 1 {
            return Err(Error::InvalidArgument(
                "Number of processes must be at least 1".into(),
            ));
        }
        if self.maxtasksperchild == Some(0) {
            return Err(Error::InvalidArgument(
                "maxtasksperchild must be a positive int or None".into(),
            ));
        }
        let (initializer, init_handles) = match self.initializer.transpose()? {
            Some((code, bytes, handles)) => (Some((code, bytes)), handles),
            None => (None, Vec::new()),
        };
        let config = Config {
            processes,
            maxtasks: self.maxtasksperchild,
            channel_bytes,
            depth: DEPTH,
            retries: self.retries.unwrap_or(0),
        };
        let setup = Setup {
            initializer,
            init_handles: Arc::new(init_handles),
            maxtasks: self.maxtasksperchild,
        };
        let shared = Shared::start(
            Supervisor::new(config),
            backend,
            setup,
            processes,
            self.task_timeout,
            self.progress,
        )?;
        Ok(Pool { shared })
    }
}

fn encode_args<A: Serialize + ?Sized>(args: &A) -> Result<Vec<u8>> {
    wire::refusing_handles(protocol::NO_HANDLES, || wire::encode(args))
}

/// Runs `f` over one chunk of items and encodes the results (into a reused buffer).
fn run_chunk<I: DeserializeOwned, R: Serialize>(
    args: &[u8],
    f: impl FnMut(I) -> R,
) -> Result<Vec<u8>> {
    chunk::map_into(args, f, wire::spare_buffer())
}

/// The code of a `map` chunk of `f`'s type (nothing of `f` itself travels: it is its type).
pub(crate) fn map_code<F: Target<(X,), R>, X: DeserializeOwned, R: Serialize>(
    _f: F,
) -> Result<Code> {
    Code::of(call_chunk::<F, X, R>)
}

/// The code of a `starmap` chunk of `f`'s type, as [`map_code`].
pub(crate) fn starmap_code<F: Target<A, R>, A: DeserializeOwned, R: Serialize>(
    _f: F,
) -> Result<Code> {
    Code::of(call_star_chunk::<F, A, R>)
}

/// One `map` chunk: `f(x)` for each `x`. (Decoding the items as one-field tuples for
/// [`call_star_chunk`] would be correct too, but measured 25% slower.)
fn call_chunk<F: Target<(X,), R>, X: DeserializeOwned, R: Serialize>(
    args: &[u8],
) -> Result<Vec<u8>> {
    let f = image::conjure::<F>();
    run_chunk(args, |x: X| f.call((x,)))
}

/// One `starmap` chunk: `f(*a)` for each tuple `a`.
fn call_star_chunk<F: Target<A, R>, A: DeserializeOwned, R: Serialize>(
    args: &[u8],
) -> Result<Vec<u8>> {
    let f = image::conjure::<F>();
    run_chunk(args, |a: A| f.call(a))
}

/// A pool of worker processes: Python's `multiprocessing.Pool`. See the [module docs](self).
///
/// Dropping a pool terminates it, like Python's `with Pool() as p:` block.
///
/// ```standalone_crate
/// use multiprocess::Pool;
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// fn add(a: u64, b: u64) -> u64 {
///     a + b
/// }
///
/// # fn main() -> multiprocess::Result<()> {
/// multiprocess::init_test(); // in a program: multiprocess::init(), first in main
/// let pool = Pool::new(2)?;
/// assert_eq!(pool.map(square, 1..=4u64)?, [1, 4, 9, 16]);
/// assert_eq!(pool.starmap(add, [(1, 2), (3, 4)])?, [3, 7]);
/// let pending = pool.apply_async(square, (7,))?; // runs in a worker meanwhile
/// assert_eq!(pending.get()?, 49);
/// let mut any_order: Vec<u64> = pool
///     .imap_unordered(square, 0..5u64)?
///     .collect::<multiprocess::Result<_>>()?;
/// any_order.sort();
/// assert_eq!(any_order, [0, 1, 4, 9, 16]);
/// # Ok(()) }
/// ```
pub struct Pool {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.shared.phase() {
            Phase::Running => "RUN",
            Phase::Closed => "CLOSE",
            Phase::Terminated => "TERMINATE",
        };
        write!(
            f,
            "<multiprocess.pool.Pool state={state} pool_size={}>",
            self.shared.pool_size()
        )
    }
}

/// Python's default `map` chunk size: ceil(n / (4 × workers)).
fn default_chunksize(n: usize, workers: usize) -> usize {
    n.div_ceil(4 * workers).max(1)
}

impl Pool {
    /// A pool of `processes` workers (Python's `Pool(processes)`); see [`Pool::builder`] for
    /// the other options.
    ///
    /// It does not wait for its workers to start. A worker that ends before taking its
    /// bootstrap (the program's `main` lacks [`init`](crate::init)) breaks the pool: its
    /// tasks, and every call after, fail with [`Error::Bootstrap`] naming the fix (Python
    /// restarts such workers in an endless loop).
    ///
    /// # Errors
    /// As [`Process::start`](crate::Process::start), when a worker cannot be started.
    pub fn new(processes: usize) -> Result<Pool> {
        Pool::builder().processes(processes).build()
    }

    /// Python's other `Pool` arguments.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    fn result<R>(&self, job: Arc<JobCore>, decode: fn(&[&Outcome]) -> Result<R>) -> AsyncResult<R> {
        AsyncResult {
            job,
            pool: Arc::downgrade(&self.shared),
            decode,
            collect: None,
            _r: PhantomData,
        }
    }

    /// Calls `f(args...)` in a worker and waits for the value (Python's `apply`).
    pub fn apply<F, A, R>(&self, f: F, args: A) -> Result<R>
    where
        F: Target<A, R>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        crate::registry::no_capture!(F);
        self.apply_async(f, args)?.get()
    }

    /// Starts `f(args...)` in a worker (Python's `apply_async`).
    ///
    /// # Errors
    /// [`Error::Codec`] if the arguments cannot be encoded; [`Error::State`] ("Pool not
    /// running") after `close`/`terminate`.
    pub fn apply_async<F, A, R>(&self, f: F, args: A) -> Result<AsyncResult<R>>
    where
        F: Target<A, R>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        crate::registry::no_capture!(F);
        self.apply_async_with(f, args, TaskOptions::new())
    }

    /// [`apply_async`](Pool::apply_async) with callbacks and a time limit.
    pub fn apply_async_with<F, A, R>(
        &self,
        f: F,
        args: A,
        options: TaskOptions<R>,
    ) -> Result<AsyncResult<R>>
    where
        F: Target<A, R>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        crate::registry::no_capture!(F);
        let _ = f; // the target is its type (a function item): nothing to send
        let args = Args::value(args)?;
        let code = Code::of(call_target::<F, A, R>)?;
        let timeout = options.timeout;
        let job = JobCore::new(Some(1), options.into_done(decode_one::<R>));
        self.shared.submit(code, [args], &job, 0, timeout)?;
        Ok(self.result(job, decode_one::<R>))
    }

    target_methods! {
        /// `f(x)` for every item, in order, waiting for all (Python's `map(f, items)`), in
        /// chunks of Python's default size, ceil(n / (4 × workers)).
        pub fn map<F, X, R>(&self, f, items) -> Result<Vec<R>>
        where F: Target<(X,), R> { self.map_async(f, items)?.get() }

        /// [`map`](Pool::map) with `chunksize` items per task (Python's `map(f, items, chunksize)`).
        pub fn map_chunked<F, X, R>(&self, f, items, chunksize: usize) -> Result<Vec<R>>
        where F: Target<(X,), R> {
            self.map_async_with(f, items, TaskOptions::new().chunksize(chunksize))?.get()
        }

        /// Starts a [`map`](Pool::map) (Python's `map_async`).
        pub fn map_async<F, X, R>(&self, f, items) -> Result<AsyncResult<Vec<R>>>
        where F: Target<(X,), R> { self.map_async_with(f, items, TaskOptions::new()) }

        /// [`map_async`](Pool::map_async) with a chunk size, callbacks (called once, with the
        /// whole list) and a time limit per chunk.
        pub fn map_async_with<F, X, R>(&self, f, items, options: TaskOptions<Vec<R>>)
            -> Result<AsyncResult<Vec<R>>>
        where F: Target<(X,), R> {
            self.map_like(map_code(f)?, items, options)
        }

        /// `f(*args)` for every tuple, in order (Python's `starmap(f, items)`).
        pub fn starmap<F, A, R>(&self, f, items) -> Result<Vec<R>>
        where F: Target<A, R> { self.starmap_async(f, items)?.get() }

        /// [`starmap`](Pool::starmap) with `chunksize` tuples per task.
        pub fn starmap_chunked<F, A, R>(&self, f, items, chunksize: usize) -> Result<Vec<R>>
        where F: Target<A, R> {
            self.starmap_async_with(f, items, TaskOptions::new().chunksize(chunksize))?.get()
        }

        /// Starts a [`starmap`](Pool::starmap) (Python's `starmap_async`).
        pub fn starmap_async<F, A, R>(&self, f, items) -> Result<AsyncResult<Vec<R>>>
        where F: Target<A, R> { self.starmap_async_with(f, items, TaskOptions::new()) }

        /// [`starmap_async`](Pool::starmap_async) with a chunk size, callbacks and a time limit
        /// per chunk.
        pub fn starmap_async_with<F, A, R>(&self, f, items, options: TaskOptions<Vec<R>>)
            -> Result<AsyncResult<Vec<R>>>
        where F: Target<A, R> {
            self.map_like(starmap_code(f)?, items, options)
        }

        /// `f(x)` for every item, yielded in input order as they complete (Python's
        /// `imap(f, items)`): one item per task. The input is read lazily with bounded look-ahead.
        pub fn imap<'a, F, X, R>(&self, f, items) -> Result<IMap<'a, R>>
        where F: Target<(X,), R> { self.imap_impl(f, items, 1, true) }

        /// [`imap`](Pool::imap) with `chunksize` items per task (Python's `imap(f, items,
        /// chunksize)`).
        pub fn imap_chunked<'a, F, X, R>(&self, f, items, chunksize: usize) -> Result<IMap<'a, R>>
        where F: Target<(X,), R> { self.imap_impl(f, items, chunksize, true) }

        /// Like [`imap`](Pool::imap), yielding results in completion order (Python's
        /// `imap_unordered`).
        pub fn imap_unordered<'a, F, X, R>(&self, f, items) -> Result<IMap<'a, R>>
        where F: Target<(X,), R> { self.imap_impl(f, items, 1, false) }

        /// [`imap_unordered`](Pool::imap_unordered) with `chunksize` items per task.
        pub fn imap_unordered_chunked<'a, F, X, R>(&self, f, items, chunksize: usize)
            -> Result<IMap<'a, R>>
        where F: Target<(X,), R> { self.imap_impl(f, items, chunksize, false) }
    }

    fn map_like<X: Serialize, R: DeserializeOwned + 'static>(
        &self,
        code: Code,
        items: impl IntoIterator<Item = X>,
        options: TaskOptions<Vec<R>>,
    ) -> Result<AsyncResult<Vec<R>>> {
        let chunksize = options.chunksize;
        let items = items.into_iter();
        match items.size_hint() {
            (low, Some(high)) if low == high => {
                self.map_chunks(code, items, low, chunksize, options)
            }
            _ => {
                let all: Vec<X> = items.collect();
                let n = all.len();
                self.map_chunks(code, all.into_iter(), n, chunksize, options)
            }
        }
    }

    fn map_chunks<X: Serialize, R: DeserializeOwned + 'static>(
        &self,
        code: Code,
        mut items: impl Iterator<Item = X>,
        len: usize,
        chunksize: Option<usize>,
        options: TaskOptions<Vec<R>>,
    ) -> Result<AsyncResult<Vec<R>>> {
        let chunksize = chunksize
            .unwrap_or_else(|| default_chunksize(len, self.shared.processes))
            .max(1);
        let count = len.div_ceil(chunksize);
        let timeout = options.timeout;
        let bar = self
            .shared
            .progress
            .then(|| progress::Bar::new(Some(len), chunksize));
        let job = JobCore::with_progress(Some(count), options.into_done(decode_chunks::<R>), bar);
        if count == 0 {
            job.set_total(0);
            return Ok(self.result(job, decode_chunks::<R>));
        }
        // Encode and hand out in batches, so that workers start while the rest is encoded.
        let mut batch = Vec::new();
        let mut batch_bytes = 0;
        let mut first = 0;
        for i in 0..count {
            let n = chunksize.min(len - i * chunksize);
            let encoded = wire::refusing_handles(protocol::NO_HANDLES, || {
                chunk::encode_into(&mut items, n, Vec::new())
            })?;
            batch_bytes += encoded.len();
            batch.push(encoded);
            if batch_bytes >= 64 << 10 || batch.len() >= 256 || i + 1 == count {
                let n = batch.len();
                self.shared
                    .submit(code, std::mem::take(&mut batch), &job, first, timeout)?;
                first += n;
                batch_bytes = 0;
            }
        }
        let mut result = self.result(job, decode_chunks::<R>);
        if count <= EAGER_CHUNKS {
            result.collect = Some(collect_chunks::<R>);
        }
        Ok(result)
    }

    fn imap_impl<'a, F: Target<(X,), R>, X: Data, R: Data>(
        &self,
        f: F,
        items: impl IntoIterator<Item = X> + 'a,
        chunksize: usize,
        ordered: bool,
    ) -> Result<IMap<'a, R>> {
        if self.shared.phase() != Phase::Running {
            return Err(Error::state("Pool not running"));
        }
        let chunksize = chunksize.max(1);
        let mut input = items.into_iter();
        let chunker = Box::new(move || {
            let items: Vec<X> = input.by_ref().take(chunksize).collect();
            (!items.is_empty()).then(|| {
                wire::refusing_handles(protocol::NO_HANDLES, || {
                    chunk::encode_into(&mut items.iter(), items.len(), Vec::new())
                })
            })
        });
        Ok(IMap {
            pool: self.shared.clone(),
            job: JobCore::with_progress(
                None,
                None,
                self.shared
                    .progress
                    .then(|| progress::Bar::new(None, chunksize)),
            ),
            chunker,
            code: map_code(f)?,
            submitted: 0,
            taken: 0,
            lookahead: 2 * self.shared.processes,
            input_done: false,
            ordered,
            buffer: VecDeque::new(),
            input_error: None,
        })
    }

    /// Stops accepting work; the workers exit once the queued work is done (Python's
    /// `close`).
    pub fn close(&self) {
        self.shared.close();
    }

    /// Kills the workers now; unfinished tasks fail with [`Error::Cancelled`] (Python's
    /// `terminate`, whose pending results never become ready).
    pub fn terminate(&self) {
        self.shared.terminate();
    }

    /// Waits for the workers to exit (Python's `join`).
    ///
    /// # Errors
    /// [`Error::State`] ("Pool is still running") before `close` or `terminate`.
    pub fn join(&self) -> Result<()> {
        self.shared.join(None).map(|_| ())
    }

    /// Waits up to `timeout` for the workers to exit (beyond Python, whose `join` has no
    /// timeout): `Ok(true)` once they all have, as after [`join`](Pool::join); `Ok(false)` if
    /// some still run when the time is up (after `close` they finish the queued work first).
    /// Call it again, or [`terminate`](Pool::terminate) the pool.
    ///
    /// ```standalone_crate
    /// use std::time::Duration;
    ///
    /// fn nap(ms: u64) {
    ///     std::thread::sleep(Duration::from_millis(ms));
    /// }
    ///
    /// # fn main() -> multiprocess::Result<()> {
    /// multiprocess::init_test(); // in a program: multiprocess::init(), first line of main
    /// let pool = multiprocess::Pool::new(2)?;
    /// let slow = pool.apply_async(nap, (2_000,))?;
    /// pool.close();
    /// assert!(!pool.join_timeout(Duration::from_millis(100))?); // the task still runs
    /// pool.terminate();
    /// assert!(pool.join_timeout(Duration::from_secs(60))?);
    /// assert!(slow.get().is_err()); // cancelled by the terminate
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::State`] ("Pool is still running") before `close` or `terminate`.
    pub fn join_timeout(&self, timeout: Duration) -> Result<bool> {
        self.shared.join(crate::sys::deadline_after(timeout))
    }

    /// The pids of the workers running now (for tests and monitoring): a worker found dead,
    /// or being reaped, is not listed.
    pub fn worker_pids(&self) -> Vec<u32> {
        self.shared.worker_pids()
    }
}

impl Drop for Pool {
    /// Terminates the pool and waits for its workers, like leaving Python's `with Pool()`.
    fn drop(&mut self) {
        self.terminate();
        let _ = self.join();
    }
}

#[cfg(test)]
mod threads_tests;

#[cfg(test)]
mod tests {
    use super::default_chunksize;

    /// PL02: Python's default chunk size, ceil(n / (4 × workers)): 100 items on 4 workers make
    /// 15 tasks of at most 7.
    #[test]
    fn default_chunks_are_pythons() {
        assert_eq!(default_chunksize(100, 4), 7);
        assert_eq!(100usize.div_ceil(default_chunksize(100, 4)), 15);
        assert_eq!(default_chunksize(10, 4), 1);
        assert_eq!(default_chunksize(1000, 8), 32);
        assert_eq!(default_chunksize(0, 4), 1);
    }
}
