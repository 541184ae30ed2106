//! [`Future`]: one task submitted to a [`ProcessPoolExecutor`](super::ProcessPoolExecutor),
//! over the pool's [`AsyncResult`], with Python's states and done callbacks.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::pool::AsyncResult;

/// A done callback of a future.
type Callback<R> = Box<dyn FnOnce(&Future<R>) + Send>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The result of [`ProcessPoolExecutor::submit`](super::ProcessPoolExecutor::submit): Python's
/// `concurrent.futures.Future`. Clones are the same future.
///
/// Its states are Python's: *pending* (queued, or waiting in a worker's channel: it can still
/// be [cancelled](Future::cancel)), *running* (a worker has started it), then *finished* or
/// *cancelled*; both of those are [`done`](Future::done).
///
/// ```standalone_crate
/// use std::time::Duration;
/// use multiprocess::executor::ProcessPoolExecutor;
///
/// fn divide(a: u64, b: u64) -> u64 {
///     a / b
/// }
///
/// # fn main() -> multiprocess::Result<()> {
/// multiprocess::init_test(); // in a program: multiprocess::init(), first line of main
/// let executor = ProcessPoolExecutor::new(2)?;
/// let good = executor.submit(divide, (84, 2))?;
/// let bad = executor.submit(divide, (1, 0))?;
/// assert_eq!(good.result_timeout(Duration::from_secs(30))?, 42);
/// assert!(good.done() && !good.running() && !good.cancelled());
/// // A panic in the task is its error: from `result`, and from `exception`.
/// assert!(matches!(bad.result(), Err(multiprocess::Error::Panicked { .. })));
/// assert!(bad.exception()?.is_some());
/// assert!(good.exception()?.is_none());
/// # Ok(()) }
/// ```
pub struct Future<R> {
    pub(super) inner: Arc<Inner<R>>,
}

impl<R> Clone for Future<R> {
    fn clone(&self) -> Self {
        Future {
            inner: self.inner.clone(),
        }
    }
}

/// What the clones of a future share.
pub(super) struct Inner<R> {
    result: AsyncResult<R>,
    hooks: Mutex<Hooks<R>>,
}

/// What runs when the future is done.
struct Hooks<R> {
    /// The job is done and the hooks below have been taken (later ones run at once).
    finished: bool,
    callbacks: Vec<Callback<R>>,
    /// Waiters of [`wait`](super::wait) and [`as_completed`](super::as_completed), each with
    /// this future's place among theirs.
    waiters: Vec<(Arc<Waiter>, usize)>,
}

/// A `wait` or `as_completed` call: the places of its futures, in the order they finished.
#[derive(Default)]
pub struct Waiter {
    finished: Mutex<VecDeque<usize>>,
    cond: Condvar,
}

impl Waiter {
    fn notify(&self, index: usize) {
        lock(&self.finished).push_back(index);
        self.cond.notify_all();
    }

    /// Waits until `ready(finished)` or the deadline; runs `then` on the list either way and
    /// returns its value and whether `ready` held.
    pub(super) fn wait_until<T>(
        &self,
        deadline: Option<Instant>,
        ready: impl Fn(&VecDeque<usize>) -> bool,
        then: impl FnOnce(&mut VecDeque<usize>) -> T,
    ) -> (T, bool) {
        let mut finished = lock(&self.finished);
        loop {
            if ready(&finished) {
                return (then(&mut finished), true);
            }
            finished = match deadline {
                None => self.cond.wait(finished).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return (then(&mut finished), false);
                    }
                    self.cond
                        .wait_timeout(finished, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }
}

/// A future of any result type, as the executor keeps it for `shutdown(cancel_futures)`.
pub(super) trait Tracked: Send + Sync {
    fn cancel(&self) -> bool;
    fn done(&self) -> bool;
}

impl<R> Tracked for Inner<R> {
    fn cancel(&self) -> bool {
        Inner::cancel(self)
    }

    fn done(&self) -> bool {
        self.result.ready()
    }
}

impl<R> Inner<R> {
    fn cancel(&self) -> bool {
        if self.result.was_cancelled() {
            return true;
        }
        !self.result.ready() && self.result.cancel_unstarted()
    }

    /// The job is done: wakes the waiters, then runs the callbacks (on this thread).
    fn finish(self: &Arc<Self>) {
        let (callbacks, waiters) = {
            let mut hooks = lock(&self.hooks);
            hooks.finished = true;
            (
                std::mem::take(&mut hooks.callbacks),
                std::mem::take(&mut hooks.waiters),
            )
        };
        for (waiter, index) in waiters {
            waiter.notify(index);
        }
        let future = Future {
            inner: self.clone(),
        };
        for callback in callbacks {
            future.run_callback(callback);
        }
    }
}

impl<R> std::fmt::Debug for Future<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = if self.cancelled() {
            "cancelled"
        } else if self.done() {
            "finished"
        } else if self.running() {
            "running"
        } else {
            "pending"
        };
        write!(f, "<Future state={state}>")
    }
}

impl<R> Future<R> {
    /// The future of a submitted job; its hooks run once the job is done.
    pub(super) fn new(result: AsyncResult<R>) -> Future<R>
    where
        R: 'static,
    {
        let inner = Arc::new(Inner {
            result,
            hooks: Mutex::new(Hooks {
                finished: false,
                callbacks: Vec::new(),
                waiters: Vec::new(),
            }),
        });
        let hook = inner.clone();
        inner.result.when_done(Box::new(move || hook.finish()));
        Future { inner }
    }

    /// Cancels the task if no worker has started it (Python's `cancel`): true if it is (now or
    /// already) cancelled; false if it is running or finished. A cancelled future is done at
    /// once, its callbacks have run, and its [`result`](Future::result) is
    /// [`Error::Cancelled`].
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
    /// let first = executor.submit(nap, (300,))?;
    /// let second = executor.submit(nap, (1,))?; // waits for the only worker
    /// assert!(second.cancel());
    /// assert!(second.cancelled() && second.done());
    /// assert!(matches!(second.result(), Err(multiprocess::Error::Cancelled)));
    /// assert_eq!(first.result()?, 300);
    /// assert!(!first.cancel()); // finished: too late
    /// # Ok(()) }
    /// ```
    pub fn cancel(&self) -> bool {
        self.inner.cancel()
    }

    /// Whether it was cancelled (Python's `cancelled`).
    pub fn cancelled(&self) -> bool {
        self.inner.result.was_cancelled()
    }

    /// Whether a worker is running it now (Python's `running`).
    pub fn running(&self) -> bool {
        !self.done() && self.inner.result.started() != Some(false)
    }

    /// Whether it finished or was cancelled (Python's `done`).
    pub fn done(&self) -> bool {
        self.inner.result.ready()
    }

    /// Waits up to `timeout` (`None`: as long as it takes) until it is done; true if it is.
    fn wait(&self, timeout: Option<Duration>) -> Result<()> {
        if self.inner.result.wait_until(timeout) {
            Ok(())
        } else {
            Err(Error::Timeout)
        }
    }

    /// Calls `f` with this future once it is done, on the thread that finishes it (a pool
    /// thread, or the one that cancels it); at once, on this thread, if it is done already
    /// (Python's `add_done_callback`). Callbacks run in the order they were added, each
    /// exactly once; a panic in one is reported on stderr and contained.
    ///
    /// ```standalone_crate
    /// use std::sync::mpsc;
    /// use multiprocess::executor::ProcessPoolExecutor;
    ///
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// # fn main() -> multiprocess::Result<()> {
    /// multiprocess::init_test(); // in a program: multiprocess::init(), first line of main
    /// let executor = ProcessPoolExecutor::new(2)?;
    /// let (tx, rx) = mpsc::channel();
    /// let future = executor.submit(square, (9,))?;
    /// future.add_done_callback(move |f| tx.send(f.result().ok()).unwrap());
    /// assert_eq!(rx.recv().unwrap(), Some(81));
    /// # Ok(()) }
    /// ```
    pub fn add_done_callback(&self, f: impl FnOnce(&Future<R>) + Send + 'static) {
        let mut hooks = lock(&self.inner.hooks);
        if !hooks.finished {
            hooks.callbacks.push(Box::new(f));
            return;
        }
        drop(hooks);
        self.run_callback(Box::new(f));
    }

    fn run_callback(&self, callback: Callback<R>) {
        if let Err(message) = crate::panics::catch_quietly(|| callback(self)) {
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "exception calling callback for {self:?}: {message}"
            );
        }
    }
}

impl<R> Future<R> {
    /// Waits as long as it takes and returns the task's value (Python's `result()`). It can
    /// be called again (the value is decoded each time).
    ///
    /// # Errors
    /// [`Error::Cancelled`] if it was cancelled; otherwise the task's own error:
    /// [`Error::Panicked`], [`Error::WorkerLost`] (its worker died while running it),
    /// [`Error::TaskTimeout`] (past the executor's time limit per task), [`Error::Codec`].
    pub fn result(&self) -> Result<R> {
        self.result_until(None)
    }

    /// [`result`](Self::result), waiting at most `timeout` (Python's `result(timeout)`).
    ///
    /// # Errors
    /// [`Error::Timeout`] if it is not done in time (the task goes on: call again); otherwise
    /// as [`result`](Self::result).
    pub fn result_timeout(&self, timeout: Duration) -> Result<R> {
        self.result_until(Some(timeout))
    }

    pub(crate) fn result_until(&self, timeout: Option<Duration>) -> Result<R> {
        self.wait(timeout)?;
        self.inner.result.get()
    }

    /// Waits as long as it takes and returns the task's error, `None` if it succeeded
    /// (Python's `exception()`).
    ///
    /// # Errors
    /// [`Error::Cancelled`] if it was cancelled.
    pub fn exception(&self) -> Result<Option<Error>> {
        self.exception_until(None)
    }

    /// [`exception`](Self::exception), waiting at most `timeout` (Python's
    /// `exception(timeout)`).
    ///
    /// # Errors
    /// [`Error::Timeout`] if it is not done in time; [`Error::Cancelled`] if it was cancelled.
    pub fn exception_timeout(&self, timeout: Duration) -> Result<Option<Error>> {
        self.exception_until(Some(timeout))
    }

    fn exception_until(&self, timeout: Option<Duration>) -> Result<Option<Error>> {
        self.wait(timeout)?;
        if self.cancelled() {
            return Err(Error::Cancelled);
        }
        match self.inner.result.successful() {
            Ok(true) => Ok(None),
            _ => Ok(self.inner.result.get().err()),
        }
    }
}

pub(super) mod sealed {
    use std::sync::Arc;

    use super::Waiter;

    /// What `wait` and `as_completed` need of a future, kept out of the public API.
    pub trait Watch {
        /// Tells `waiter` (as `index`) when this future is done: at once if it is.
        fn watch(&self, waiter: &Arc<Waiter>, index: usize);
        /// Stops telling `waiter`.
        fn unwatch(&self, waiter: &Arc<Waiter>);
        /// Whether it finished with an error (not by being cancelled).
        fn failed(&self) -> bool;
        /// An address that is the same for every clone (to tell futures apart).
        fn key(&self) -> usize;
    }
}

impl<R> sealed::Watch for Future<R> {
    /// Tells `waiter` (as `index`) when this future is done: at once if it is.
    fn watch(&self, waiter: &Arc<Waiter>, index: usize) {
        let mut hooks = lock(&self.inner.hooks);
        if hooks.finished {
            drop(hooks);
            waiter.notify(index);
        } else {
            hooks.waiters.push((waiter.clone(), index));
        }
    }

    /// Stops telling `waiter`.
    fn unwatch(&self, waiter: &Arc<Waiter>) {
        lock(&self.inner.hooks)
            .waiters
            .retain(|(w, _)| !Arc::ptr_eq(w, waiter));
    }

    /// An address that is the same for every clone (to tell futures apart).
    fn key(&self) -> usize {
        Arc::as_ptr(&self.inner) as *const () as usize
    }
    fn failed(&self) -> bool {
        !self.cancelled() && matches!(self.inner.result.successful(), Ok(false))
    }
}

/// A [`Future`] of any result type: [`wait`](super::wait) and
/// [`as_completed`](super::as_completed) take any of these, so futures of different types can
/// be waited for together as `&dyn AnyFuture` (as Python waits for any futures). Each method is
/// the [`Future`] method of the same name.
///
/// ```standalone_crate
/// use multiprocess::executor::{AnyFuture, ProcessPoolExecutor, ReturnWhen, wait};
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// fn greet(name: String) -> String {
///     format!("hello, {name}")
/// }
///
/// # fn main() -> multiprocess::Result<()> {
/// multiprocess::init_test(); // in a program: multiprocess::init(), first line of main
/// let executor = ProcessPoolExecutor::new(2)?;
/// let number = executor.submit(square, (4,))?;
/// let text = executor.submit(greet, ("world".to_string(),))?;
/// let (done, not_done) = wait([&number as &dyn AnyFuture, &text], None, ReturnWhen::AllCompleted);
/// assert_eq!((done.len(), not_done.len()), (2, 0));
/// assert!(done.iter().all(|f| f.exception().is_ok_and(|e| e.is_none())));
/// assert_eq!(number.result()?, 16);
/// # Ok(()) }
/// ```
pub trait AnyFuture: sealed::Watch {
    /// See [`Future::cancel`].
    fn cancel(&self) -> bool;
    /// See [`Future::cancelled`].
    fn cancelled(&self) -> bool;
    /// See [`Future::running`].
    fn running(&self) -> bool;
    /// See [`Future::done`].
    fn done(&self) -> bool;
    /// See [`Future::exception`].
    ///
    /// # Errors
    /// [`Error::Cancelled`].
    fn exception(&self) -> Result<Option<Error>>;
    /// See [`Future::exception_timeout`].
    ///
    /// # Errors
    /// [`Error::Timeout`], [`Error::Cancelled`].
    fn exception_timeout(&self, timeout: Duration) -> Result<Option<Error>>;
}

impl<R> AnyFuture for Future<R> {
    fn cancel(&self) -> bool {
        Future::cancel(self)
    }
    fn cancelled(&self) -> bool {
        Future::cancelled(self)
    }
    fn running(&self) -> bool {
        Future::running(self)
    }
    fn done(&self) -> bool {
        Future::done(self)
    }
    fn exception(&self) -> Result<Option<Error>> {
        Future::exception(self)
    }
    fn exception_timeout(&self, timeout: Duration) -> Result<Option<Error>> {
        Future::exception_timeout(self, timeout)
    }
}
