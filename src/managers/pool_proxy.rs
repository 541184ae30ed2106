//! A pool run by a manager, and its results.

use super::*;
use crate::pool::{RemoteJob, decode_remote_chunks, decode_remote_one, map_code, starmap_code};
use crate::registry::{Code, Data, target_methods};

/// A pool run by a [`Manager`] (Python's `manager.Pool()`): every process holding a copy of
/// the proxy submits work to the same workers. Targets and arguments follow
/// [`Pool`](crate::Pool)'s rules.
///
/// ```standalone_crate
/// use multiprocess::managers::PoolProxy;
/// use multiprocess::{Manager, Process};
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// /// Another process submits to the same workers.
/// fn submit(pool: PoolProxy) -> Vec<u64> {
///     pool.map(square, 0..4u64).unwrap()
/// }
///
/// # fn main() -> multiprocess::Result<()> {
/// multiprocess::init_test(); // in a program: multiprocess::init(), first in main
/// let manager = Manager::start()?;
/// let pool = manager.pool(Some(2))?; // Python: manager.Pool(2)
/// let pending = pool.apply_async(square, (12,))?; // an AsyncResultProxy
/// let mut p = Process::new(submit, (pool.clone(),));
/// p.start()?;
/// assert_eq!(p.result::<Vec<u64>>()?, [0, 1, 4, 9]);
/// assert_eq!(pending.get()?, 144);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PoolProxy(pub(super) Handle, pub(super) usize);

impl PoolProxy {
    /// The number of workers.
    pub fn processes(&self) -> usize {
        self.1
    }

    fn run(&self, job: RemoteJob) -> Result<crate::pool::RemoteOutcomes> {
        match self.0.call(Op::PoolRun(job))? {
            Reply::Outcomes(o) => Ok(o),
            other => Err(unexpected(other)),
        }
    }

    /// `f(args...)` in a worker, waiting for its value (Python's `apply`).
    ///
    /// # Errors
    /// As [`Pool::apply`](crate::Pool::apply); [`Error::Remote`] if the pool was closed.
    pub fn apply<F, A, R>(&self, f: F, args: A) -> Result<R>
    where
        F: Target<A, R>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        crate::registry::no_capture!(F);
        decode_remote_one(self.run(RemoteJob::apply(f, &args)?)?)
    }

    fn start<R>(
        &self,
        job: RemoteJob,
        decode: fn(crate::pool::RemoteOutcomes) -> Result<R>,
    ) -> Result<AsyncResultProxy<R>> {
        match self.0.call(Op::PoolStart(job))? {
            Reply::Id(id) => Ok(AsyncResultProxy {
                handle: Handle::new(Arc::clone(&self.0.client), id),
                decode,
            }),
            other => Err(unexpected(other)),
        }
    }

    /// Starts the job of a `map` or `starmap`: the chunks of `items` run by `code`.
    fn start_chunks<X: Serialize, R: DeserializeOwned>(
        &self,
        code: Result<Code>,
        items: impl IntoIterator<Item = X>,
        chunksize: Option<usize>,
    ) -> Result<AsyncResultProxy<Vec<R>>> {
        let job = RemoteJob::chunked(code?, items, chunksize, self.1)?;
        self.start(job, decode_remote_chunks::<R>)
    }

    target_methods! {
        /// `f(x)` for every item, in order (Python's `map`), in chunks of
        /// [`Pool::map`](crate::Pool::map)'s default size.
        ///
        /// # Errors
        /// As [`Pool::map`](crate::Pool::map).
        pub fn map<F, X, R>(&self, f, items) -> Result<Vec<R>>
        where F: Target<(X,), R> { self.map_async(f, items)?.get() }

        /// [`map`](PoolProxy::map) with `chunksize` items per task.
        ///
        /// # Errors
        /// As [`Pool::map`](crate::Pool::map).
        pub fn map_chunked<F, X, R>(&self, f, items, chunksize: usize) -> Result<Vec<R>>
        where F: Target<(X,), R> { self.map_async_chunked(f, items, chunksize)?.get() }

        /// `f(*a)` for every tuple, in order (Python's `starmap`).
        ///
        /// # Errors
        /// As [`Pool::starmap`](crate::Pool::starmap).
        pub fn starmap<F, A, R>(&self, f, items) -> Result<Vec<R>>
        where F: Target<A, R> { self.starmap_async(f, items)?.get() }

        /// [`starmap`](PoolProxy::starmap) with `chunksize` tuples per task.
        ///
        /// # Errors
        /// As [`Pool::starmap`](crate::Pool::starmap).
        pub fn starmap_chunked<F, A, R>(&self, f, items, chunksize: usize) -> Result<Vec<R>>
        where F: Target<A, R> { self.starmap_async_chunked(f, items, chunksize)?.get() }
    }

    /// Starts `f(args...)` in a worker (Python's `apply_async`).
    ///
    /// # Errors
    /// [`Error::Codec`] if the arguments cannot be encoded; [`Error::Remote`] if the pool was
    /// closed.
    pub fn apply_async<F, A, R>(&self, f: F, args: A) -> Result<AsyncResultProxy<R>>
    where
        F: Target<A, R>,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        crate::registry::no_capture!(F);
        self.start(RemoteJob::apply(f, &args)?, decode_remote_one::<R>)
    }

    target_methods! {
        /// Starts a [`map`](PoolProxy::map) (Python's `map_async`).
        ///
        /// # Errors
        /// As [`apply_async`](PoolProxy::apply_async).
        pub fn map_async<F, X, R>(&self, f, items) -> Result<AsyncResultProxy<Vec<R>>>
        where F: Target<(X,), R> { self.start_chunks(map_code(f), items, None) }

        /// [`map_async`](PoolProxy::map_async) with `chunksize` items per task.
        ///
        /// # Errors
        /// As [`apply_async`](PoolProxy::apply_async).
        pub fn map_async_chunked<F, X, R>(&self, f, items, chunksize: usize)
            -> Result<AsyncResultProxy<Vec<R>>>
        where F: Target<(X,), R> { self.start_chunks(map_code(f), items, Some(chunksize)) }

        /// `f(x)` for every item, in order, as the results come (Python's `imap`): each step
        /// gives the next item's result, waiting for its chunk (one item per task, as Python's
        /// `imap`).
        ///
        /// # Errors
        /// As [`apply_async`](PoolProxy::apply_async); each step's result as
        /// [`Pool::imap`](crate::Pool::imap)'s.
        pub fn imap<F, X, R>(&self, f, items) -> Result<RemoteIMap<R>>
        where F: Target<(X,), R> { self.imap_with(f, items, 1, true) }

        /// [`imap`](PoolProxy::imap) with `chunksize` items per task.
        ///
        /// # Errors
        /// As [`imap`](PoolProxy::imap).
        pub fn imap_chunked<F, X, R>(&self, f, items, chunksize: usize) -> Result<RemoteIMap<R>>
        where F: Target<(X,), R> { self.imap_with(f, items, chunksize, true) }

        /// `f(x)` for every item, in the order the results come (Python's `imap_unordered`):
        /// each step gives a result of the next chunk to finish, so a slow item holds up only its
        /// own chunk.
        ///
        /// ```standalone_crate
        /// # fn main() -> multiprocess::Result<()> {
        /// # multiprocess::init_test();
        /// fn square(x: u64) -> u64 {
        ///     x * x
        /// }
        /// let manager = multiprocess::Manager::start()?;
        /// let pool = manager.pool(Some(2))?;
        /// let mut squares = pool
        ///     .imap_unordered(square, 0..10u64)?
        ///     .collect::<multiprocess::Result<Vec<u64>>>()?;
        /// squares.sort();
        /// assert_eq!(squares, [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]);
        /// # Ok(()) }
        /// ```
        ///
        /// # Errors
        /// As [`imap`](PoolProxy::imap).
        pub fn imap_unordered<F, X, R>(&self, f, items) -> Result<RemoteIMap<R>>
        where F: Target<(X,), R> { self.imap_with(f, items, 1, false) }

        /// [`imap_unordered`](PoolProxy::imap_unordered) with `chunksize` items per task.
        ///
        /// # Errors
        /// As [`imap`](PoolProxy::imap).
        pub fn imap_unordered_chunked<F, X, R>(&self, f, items, chunksize: usize)
            -> Result<RemoteIMap<R>>
        where F: Target<(X,), R> { self.imap_with(f, items, chunksize, false) }

        /// Starts a [`starmap`](PoolProxy::starmap) (Python's `starmap_async`).
        ///
        /// # Errors
        /// As [`apply_async`](PoolProxy::apply_async).
        pub fn starmap_async<F, A, R>(&self, f, items) -> Result<AsyncResultProxy<Vec<R>>>
        where F: Target<A, R> { self.start_chunks(starmap_code(f), items, None) }

        /// [`starmap_async`](PoolProxy::starmap_async) with `chunksize` tuples per task.
        ///
        /// # Errors
        /// As [`apply_async`](PoolProxy::apply_async).
        pub fn starmap_async_chunked<F, A, R>(&self, f, items, chunksize: usize)
            -> Result<AsyncResultProxy<Vec<R>>>
        where F: Target<A, R> { self.start_chunks(starmap_code(f), items, Some(chunksize)) }
    }

    fn imap_with<F: Target<(X,), R>, X: Data, R: Data>(
        &self,
        f: F,
        items: impl IntoIterator<Item = X>,
        chunksize: usize,
        ordered: bool,
    ) -> Result<RemoteIMap<R>> {
        let job = RemoteJob::chunked(map_code(f)?, items, Some(chunksize), self.1)?;
        let chunks = job.tasks();
        let result = self.start(job, decode_remote_chunks::<R>)?;
        Ok(RemoteIMap {
            result,
            next_chunk: 0,
            chunks,
            ready: std::collections::VecDeque::new(),
            failed: false,
            ordered,
        })
    }

    /// No more work (Python's `close()`): calls after it fail; [`join`](PoolProxy::join) then
    /// waits for the workers.
    pub fn close(&self) -> Result<()> {
        self.0.done(Op::PoolClose)
    }

    /// Stops the workers at once (Python's `terminate()`).
    pub fn terminate(&self) -> Result<()> {
        self.0.done(Op::PoolTerminate)
    }

    /// Waits for the workers to end, after [`close`](PoolProxy::close) or
    /// [`terminate`](PoolProxy::terminate) (Python's `join()`).
    pub fn join(&self) -> Result<()> {
        self.0.done(Op::PoolJoin(None))
    }

    /// [`join`](PoolProxy::join) for at most `timeout` (beyond Python): true once the workers
    /// have ended, false if some still run (after `close` they finish the queued work first).
    ///
    /// # Errors
    /// As any proxy call: [`Error::Remote`] (`Pool is still running` before `close` or
    /// `terminate`), or the connection's errors.
    pub fn join_timeout(&self, timeout: Duration) -> Result<bool> {
        self.0.flag(Op::PoolJoin(secs(Some(timeout))))
    }
}

/// The result of a job started on a manager's pool ([`PoolProxy::apply_async`],
/// [`PoolProxy::map_async`]): Python's `AsyncResult` proxy. The job runs whether or not
/// anyone waits for it; its result goes when this proxy is dropped. Example: [`PoolProxy`].
pub struct AsyncResultProxy<R> {
    pub(super) handle: Handle,
    pub(super) decode: fn(crate::pool::RemoteOutcomes) -> Result<R>,
}

impl<R> std::fmt::Debug for AsyncResultProxy<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncResultProxy")
            .field("address", &self.handle.client.address)
            .field("id", &self.handle.id)
            .finish()
    }
}

impl<R> AsyncResultProxy<R> {
    /// Waits for the value, as long as it takes.
    ///
    /// # Errors
    /// The job's own error, as [`AsyncResult::get`](crate::AsyncResult::get).
    pub fn get(&self) -> Result<R> {
        self.get_until(None)
    }

    /// Waits for the value at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Timeout`] if not ready in time (call again); otherwise as
    /// [`get`](Self::get).
    pub fn get_timeout(&self, timeout: Duration) -> Result<R> {
        self.get_until(Some(timeout))
    }

    fn get_until(&self, timeout: Option<Duration>) -> Result<R> {
        match self.handle.call(Op::ResultGet(secs(timeout))) {
            Ok(Reply::Outcomes(o)) => (self.decode)(o),
            Ok(other) => Err(unexpected(other)),
            Err(Error::Remote { kind, .. }) if kind == "TimeoutError" => Err(Error::Timeout),
            Err(e) => Err(e),
        }
    }

    /// Waits until the job has finished.
    ///
    /// # Errors
    /// As other proxies' calls (the manager is gone).
    pub fn wait(&self) -> Result<()> {
        self.handle.flag(Op::ResultWait(secs(None))).map(|_| ())
    }

    /// Waits until the job has finished or `timeout` passes; true if it has.
    ///
    /// # Errors
    /// As [`wait`](Self::wait).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.handle.flag(Op::ResultWait(secs(Some(timeout))))
    }

    /// Whether the job has finished.
    ///
    /// # Errors
    /// As [`wait`](AsyncResultProxy::wait).
    pub fn ready(&self) -> Result<bool> {
        self.wait_timeout(Duration::ZERO)
    }
}

/// The results of [`PoolProxy::imap`] (in order) or [`PoolProxy::imap_unordered`] (as they
/// come).
pub struct RemoteIMap<R> {
    pub(super) result: AsyncResultProxy<Vec<R>>,
    pub(super) next_chunk: usize,
    pub(super) chunks: usize,
    pub(super) ready: std::collections::VecDeque<R>,
    pub(super) failed: bool,
    /// In input order (`imap`), or as the chunks finish (`imap_unordered`).
    pub(super) ordered: bool,
}

impl<R> std::fmt::Debug for RemoteIMap<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteIMap")
            .field("chunk", &self.next_chunk)
            .field("chunks", &self.chunks)
            .finish()
    }
}

impl<R: DeserializeOwned> Iterator for RemoteIMap<R> {
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        loop {
            if let Some(r) = self.ready.pop_front() {
                return Some(Ok(r));
            }
            if self.failed || self.next_chunk == self.chunks {
                return None;
            }
            let i = self.next_chunk as u64;
            self.next_chunk += 1;
            let op = match self.ordered {
                true => Op::ResultChunk(i, None),
                false => Op::ResultNext(None),
            };
            let chunk = match self.result.handle.call(op) {
                Ok(Reply::Outcomes(o)) => (self.result.decode)(o),
                Ok(Reply::Done) => Ok(Vec::new()),
                Ok(other) => Err(unexpected(other)),
                Err(e) => Err(e),
            };
            match chunk {
                Ok(items) => self.ready.extend(items),
                Err(e) => {
                    // Like a local imap: the error is the step's, and the rest are lost.
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
    }
}
